/**
 * Remote cases (issue 6): ONE get-batch of N objects through the engine (library, in a fresh
 * process) against a Node client doing individual GETs one by one, 16 and 64 at a time, on the
 * same server on loopback, for 10 KiB, 100 KiB and 1 MiB objects; each side in a fresh process,
 * timed on its first run (cold: code not yet compiled, connections not yet open) and again once
 * the process has done a second of the same work (warm: a long-lived server or loader).
 *   remote-s3    s3rver (S3 API); the client is @aws-sdk/client-s3
 *   remote-http  nginx from Debian serving the same files; the client is Node's fetch
 * Servers are started here on 127.0.0.1 and stopped after; nginx is skipped with a note when
 * it is not installed. Rows are objects/s (medians of the repeats), ratio = ours / client.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { S3Client, PutObjectCommand } from '@aws-sdk/client-s3';
import { freePort, startNginx } from './servers.js';
import { dataset, type DataSet, NODE, q, round, type Row, sh, summarize, tarSize, writeList } from './util.js';

export const REMOTE_SIZES = [10 << 10, 100 << 10, 1 << 20]; // the object sizes
const CLIENT_WAYS = [1, 16, 64]; // individual GETs at a time
const WARM_SECONDS_DEFAULT = 1; // work a child does before its warm run
const BATCH_BYTES_MAX = 512 << 20; // objects per size: ctx.count, fewer where they would carry more (1 MiB: 512; s3rver one by one takes ~7 s for 1,000)
const S3_BUCKET = 'bench';
const S3_KEY = 'S3RVER'; // s3rver's built-in credentials
const SEED_CONCURRENCY = 16; // PUTs at a time while seeding s3rver (once; the data is kept)
const START_TIMEOUT_MS = 20_000; // a server that does not listen by then fails the bench
const RUN_TIMEOUT_MS = 300_000; // one timed run

export interface RemoteCtx {
  work: string;
  repeats: number;
  count: number;
  /** Object sizes (default REMOTE_SIZES). */
  sizes?: number[];
  /** Seconds of work a child does before its warm run (default WARM_SECONDS_DEFAULT). */
  warmSeconds?: number;
  repo: string;
  slack: number;
}

interface Report {
  bytes: number;
  payloadBytes: number;
  entries: number;
  seconds: number;
}

const label = (size: number) => (size >= 1 << 20 ? `${size >> 20} MiB` : `${size >> 10} KiB`);

async function waitForPort(port: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (true) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() - t0 > START_TIMEOUT_MS) throw new Error(`${what} did not listen on ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function stop(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  proc.kill('SIGTERM');
  await exited;
}

function countFor(ctx: RemoteCtx, size: number): number {
  return Math.min(ctx.count, Math.floor(BATCH_BYTES_MAX / size));
}

/** s3rver on its own data directory; objects are uploaded once and kept for later runs. */
async function startS3rver(ctx: RemoteCtx, dir: string): Promise<{ url: string; stop: () => Promise<void> }> {
  fs.mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const bin = path.join(ctx.repo, 'node_modules/s3rver/bin/s3rver.js');
  const proc = spawn(process.execPath, [bin, '-d', dir, '-a', '127.0.0.1', '-p', String(port), '--silent', '--configure-bucket', S3_BUCKET], { stdio: 'ignore' });
  await waitForPort(port, 's3rver');
  return { url: `http://127.0.0.1:${port}`, stop: () => stop(proc) };
}

async function seedS3(url: string, dir: string, prefix: string, data: DataSet): Promise<void> {
  const marker = path.join(dir, `.complete-${prefix}-${data.names.length}`);
  if (fs.existsSync(marker)) return;
  process.stderr.write(`uploading ${data.names.length} objects to s3rver (${prefix})\n`);
  const s3 = new S3Client({
    endpoint: url,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: S3_KEY, secretAccessKey: S3_KEY },
    requestChecksumCalculation: 'WHEN_REQUIRED',
  });
  let next = 0;
  await Promise.all(
    Array.from({ length: SEED_CONCURRENCY }, async () => {
      while (next < data.names.length) {
        const n = data.names[next++]!;
        await s3.send(new PutObjectCommand({ Bucket: S3_BUCKET, Key: `${prefix}/${n}`, Body: fs.readFileSync(path.join(data.dir, n)) }));
      }
    }),
  );
  s3.destroy();
  fs.writeFileSync(marker, '');
}

/** The child's runs: [fresh] or [fresh, warm]. */
async function child(ctx: RemoteCtx, args: string[]): Promise<Report[]> {
  const bin = path.join(ctx.repo, 'dist/bench/remote-child.js');
  const env = `OJS_ML_BENCH_WARM_SECONDS=${ctx.warmSeconds ?? WARM_SECONDS_DEFAULT}`;
  const { stdout } = await sh(`${env} ${NODE} ${q(bin)} ${args.map(q).join(' ')}`, RUN_TIMEOUT_MS);
  return (JSON.parse(stdout) as { runs: Report[] }).runs;
}

function check(what: string, r: Report, want: { bytes: number; payloadBytes: number; entries: number }): void {
  const got = { bytes: r.bytes, payloadBytes: r.payloadBytes, entries: r.entries };
  if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`${what}: got ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
}

/** Runs ours and every client `repeats` times, interleaved, fresh and warm, and returns the rows of one server and size. */
async function compare(ctx: RemoteCtx, caseName: string, server: string, kind: 's3' | 'http', endpoint: string, keys: string[], size: number, entryName: (k: string) => string): Promise<Row[]> {
  const list = writeList(path.join(ctx.work, `${caseName}-${size}.list`), keys);
  const payload = keys.length * size;
  const wantOurs = { bytes: tarSize(keys.map((k) => ({ name: entryName(k), size }))), payloadBytes: payload, entries: keys.length };
  const wantClient = { bytes: payload, payloadBytes: payload, entries: keys.length };
  // An untimed first run warms the page cache and the server, and checks ours (the clients are
  // checked on every timed run below).
  for (const r of await child(ctx, ['ojs', kind, endpoint, list, '0', '1'])) check(`${caseName} ours`, r, wantOurs);
  // Each child times a fresh run and then a warm one: [fresh, warm] objects/s per side.
  const ours: [number[], number[]] = [[], []];
  const clients = new Map<number, [number[], number[]]>(CLIENT_WAYS.map((k) => [k, [[], []]]));
  // The four sides take turns, starting one later each repeat: a server that drifts (s3rver's
  // heap grows over a run) must not always favour the same side.
  const sides: (number | 'ours')[] = [...CLIENT_WAYS, 'ours'];
  for (let r = 0; r < ctx.repeats; r++) {
    for (let i = 0; i < sides.length; i++) {
      const side = sides[(i + r) % sides.length]!;
      const reps = await child(ctx, side === 'ours' ? ['ojs', kind, endpoint, list, '0', '2'] : ['client', kind, endpoint, list, String(side), '2']);
      if (reps.length !== 2) throw new Error(`${caseName}: the child reported ${reps.length} runs, expected 2`);
      const into = side === 'ours' ? ours : clients.get(side)!;
      reps.forEach((rep, w) => {
        check(side === 'ours' ? `${caseName} ours` : `${caseName} client ${side}`, rep, side === 'ours' ? wantOurs : wantClient);
        into[w]!.push(keys.length / rep.seconds);
      });
    }
  }
  const rows: Row[] = [];
  for (const w of [0, 1] as const) {
    const warm = w === 1;
    const o = summarize(ours[w]);
    const c = CLIENT_WAYS.map((k) => ({ k, s: summarize(clients.get(k)![w]) }));
    const best = c.filter((x) => x.k > 1).reduce((a, b) => (b.s.median > a.s.median ? b : a));
    const one = c.find((x) => x.k === 1)!;
    const name = `${server} ${keys.length} x ${label(size)}, ${warm ? 'warm process' : 'fresh process'}`;
    const all = c.map((x) => `${x.k}-way ${x.s.median}/s`).join(', ');
    const how = warm ? `a run after ${ctx.warmSeconds ?? WARM_SECONDS_DEFAULT} s of the same work in the same process (code compiled, connections open)` : 'the first run of a fresh process';
    const row = (vs: string, b: (typeof c)[number], note: string): Row => ({
      name: `${name}: one get-batch vs ${vs}`,
      case: caseName,
      ours: o.median,
      baseline: b.s.median,
      unit: 'objects/s',
      ratio: round(o.median / b.s.median, 3),
      note: `${note}; clients: ${all}; ours = engine in process, module loading excluded, ${how}`,
      repeats: { ours: o, baseline: b.s },
    });
    rows.push(row('GETs one by one', one, 'ratio = ours / 1-by-1 client'), row(`the best of 16/64-way GETs (${best.k}-way)`, best, 'ratio = ours / best of the 16- and 64-way clients'));
  }
  return rows;
}

/** remote-s3: the engine's one batch vs the AWS SDK's GETs, on s3rver. */
export async function s3Case(ctx: RemoteCtx): Promise<Row[]> {
  const s3dir = path.join(ctx.work, 's3rver-data');
  const rows: Row[] = [];
  const srv = await startS3rver(ctx, s3dir);
  try {
    for (const size of ctx.sizes ?? REMOTE_SIZES) {
      const data = dataset(ctx.work, 'remote', countFor(ctx, size), size, ctx.slack);
      const prefix = `s${size}`;
      await seedS3(srv.url, s3dir, prefix, data);
      const keys = data.names.map((n) => `${S3_BUCKET}/${prefix}/${n}`);
      rows.push(...(await compare(ctx, 'remote-s3', 's3rver', 's3', srv.url, keys, size, (k) => k)));
    }
  } finally {
    await srv.stop();
  }
  return rows;
}

/** remote-http: the engine's one batch vs fetch, on nginx serving the same files. */
export async function httpCase(ctx: RemoteCtx): Promise<Row[]> {
  const rows: Row[] = [];
  for (const size of ctx.sizes ?? REMOTE_SIZES) {
    const data = dataset(ctx.work, 'remote', countFor(ctx, size), size, ctx.slack);
    const srv = await startNginx(data.dir, ctx.work);
    try {
      const host = new URL(srv.url).host;
      rows.push(...(await compare(ctx, 'remote-http', 'nginx', 'http', srv.url, data.names, size, (k) => `${host}/${k}`)));
    } finally {
      await srv.stop();
    }
  }
  return rows;
}
