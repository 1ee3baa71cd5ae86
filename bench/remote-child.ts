/**
 * Timed runs against a remote server, in a fresh process, printing one JSON line `{ runs: [...] }`:
 *   node dist/bench/remote-child.js ojs    s3|http ENDPOINT LIST K RUNS   one get-batch through the engine (library, in process; K unused)
 *   node dist/bench/remote-child.js client s3|http ENDPOINT LIST K RUNS   individual GETs, K at a time
 * LIST holds one key per line (S3: bucket/key; HTTP: a path). The engine's archive goes to a
 * null sink (bytes counted, chunks given back to the read pool); the client reads every body to
 * its end (bytes counted). Seconds exclude module loading; every run is checked by the caller.
 * The first run is a fresh
 * process's (code not compiled, no connection open); the second comes once the process has done
 * WARM_SECONDS of the same work (untimed runs fill up what the fresh run did not), as a
 * long-lived process (the server, a training loop's loader) runs it: code compiled, connections
 * open. Both sides get the same treatment.
 * Clients: HTTP with Node's fetch; S3 with @aws-sdk/client-s3, keep-alive, one attempt, no checksums.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { SourceRegistry, parseBatchRequest, readChunks, runBatch } from '../src/index.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const S3_KEY = 'S3RVER'; // s3rver's built-in access key and secret
const WARM_SECONDS = Number(process.env.OJS_ML_BENCH_WARM_SECONDS ?? '1'); // work done before the warm run (quick runs: less)
const [mode, kind, endpoint, listFile, kArg, runsArg] = process.argv.slice(2);
if ((mode !== 'ojs' && mode !== 'client') || (kind !== 's3' && kind !== 'http') || endpoint === undefined || listFile === undefined) {
  throw new Error('usage: remote-child ojs|client s3|http ENDPOINT LIST [K] [RUNS]');
}
const keys = fs.readFileSync(listFile, 'utf8').split('\n').filter((l) => l !== '');

/** The URI of a key for the engine. */
function uri(key: string): string {
  return kind === 's3' ? `s3://${key}` : `${endpoint}/${key}`;
}

const registry = new SourceRegistry({
  http: { allowPrivate: true },
  remote: { s3: { endpoint, credentials: { accessKeyId: S3_KEY, secretAccessKey: S3_KEY } } },
});
// The registry imports a provider's module on first use; the client's SDK is imported before
// timing, so ours is too (`s3.js` and `http.js` are what the registry's loaders import).
await import(kind === 's3' ? '../src/sources/s3.js' : '../src/sources/http.js');

async function ojs(): Promise<{ bytes: number; payloadBytes: number; entries: number }> {
  const req = parseBatchRequest({ in: keys.map((k) => ({ uri: uri(k) })) });
  const run = runBatch(req, registry);
  let bytes = 0;
  // Counted, a chunk is done with: it goes back to the read pool, as serve and the CLI give theirs
  // back once written (and as the RSS child does); the clients' bodies have no pool to go back to.
  run.stream.on('data', (c: Buffer) => {
    bytes += c.length;
    readChunks.give(c);
  });
  const [result] = await Promise.all([run.result, new Promise((resolve, reject) => run.stream.once('end', resolve).once('error', reject))]);
  return { bytes, payloadBytes: result.progress.bytes, entries: result.progress.done };
}

/** A client of K at a time; the same one serves the warm-up run and the timed run. */
function makeClient(k: number): { run: () => Promise<{ bytes: number; payloadBytes: number; entries: number }>; done: () => Promise<void> } {
  let get: (key: string) => Promise<number>;
  let done = async (): Promise<void> => undefined;
  if (kind === 's3') {
    const agent = new http.Agent({ keepAlive: true, maxSockets: Math.max(k, 1) });
    const s3 = new S3Client({
      endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: S3_KEY, secretAccessKey: S3_KEY },
      maxAttempts: 1,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: { httpAgent: agent },
    });
    get = async (key) => {
      const slash = key.indexOf('/');
      const r = await s3.send(new GetObjectCommand({ Bucket: key.slice(0, slash), Key: key.slice(slash + 1) }));
      return countBody(r.Body as AsyncIterable<Uint8Array>);
    };
    done = async () => s3.destroy();
  } else {
    get = async (key) => {
      const res = await fetch(`${endpoint}/${key}`);
      if (res.status !== 200 || res.body === null) throw new Error(`GET ${key}: ${res.status}`);
      return countBody(res.body as unknown as AsyncIterable<Uint8Array>);
    };
  }
  const run = async () => {
    let next = 0;
    let payloadBytes = 0;
    let entries = 0;
    const worker = async () => {
      while (next < keys.length) {
        const key = keys[next++]!;
        const n = await get(key); // not `payloadBytes += await ...`: that reads the sum before the wait
        payloadBytes += n;
        entries++;
      }
    };
    await Promise.all(Array.from({ length: k }, worker));
    return { bytes: payloadBytes, payloadBytes, entries };
  };
  return { run, done };
}

async function countBody(body: AsyncIterable<Uint8Array>): Promise<number> {
  let n = 0;
  for await (const c of body) n += c.length;
  return n;
}

const c = mode === 'client' ? makeClient(Number(kArg ?? '1')) : undefined;
const work = c?.run ?? ojs;
const runs = [];
const started = performance.now();
for (let i = 0; i < Math.max(1, Number(runsArg ?? '1')); i++) {
  // Before the warm run: untimed runs until the process has done WARM_SECONDS of this work (the
  // fresh run included), so the warm figure is a long-lived process's, code compiled by the JIT,
  // not merely a second run; slow runs need no extra one.
  while (i === 1 && performance.now() - started < WARM_SECONDS * 1000) await work();
  const t0 = process.hrtime.bigint();
  const cpu0 = process.cpuUsage();
  const got = await work();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  runs.push({ ...got, seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6 });
}
await c?.done();
await registry.close();
process.stdout.write(`${JSON.stringify({ runs })}\n`);
