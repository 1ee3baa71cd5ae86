/**
 * The engine over each remote provider with 30% of reads breaking mid-body: the archive is
 * still byte-exact (the retry layer resumes every break). And a batch aborted mid-way leaves no
 * request open on any server.
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runBatch } from '../../src/batch/engine.js';
import { AzureSource } from '../../src/sources/azure.js';
import { GcsSource } from '../../src/sources/gcs.js';
import { HfSource } from '../../src/sources/hf.js';
import { HttpSource } from '../../src/sources/http.js';
import { ChaosLayer, withLayers } from '../../src/sources/layers/index.js';
import { SourceRegistry, type SourcesConfig } from '../../src/sources/registry.js';
import { S3Source } from '../../src/sources/s3.js';
import type { ObjectSource } from '../../src/sources/types.js';
import { parseBatchRequest } from '../../src/spec/request.js';
import { startAll, REMOTE, type AllServers, type Remote } from '../helpers/servers/all.js';
import { pacing } from '../helpers/servers/bytes.js';
import { waitUntil } from '../helpers/servers/track.js';

const OBJECTS = 24; // per provider
const BIG = 4 << 20; // one object this size, so that breaks land deep in a body too
const FAIL_RATE = 0.3;
const ABORT_OBJECTS = 12; // per provider, streamed (over the size read whole at open), for the abort case
const ABORT_SIZE = 1 << 20;

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let all: AllServers;
const data: Record<string, Buffer> = {};

beforeAll(async () => {
  all = await startAll();
  for (let i = 0; i < OBJECTS; i++) data[`c/obj-${i}.bin`] = randomBytes(i === 0 ? BIG : 50_000 + i * 7919);
  for (const [k, v] of Object.entries(data)) await all.seed(k, v);
  for (let i = 0; i < ABORT_OBJECTS; i++) await all.seed(`abort/obj-${i}.bin`, randomBytes(ABORT_SIZE));
}, 60_000);
afterAll(async () => all?.stop());

function provider(p: Remote, config: SourcesConfig): ObjectSource {
  const r = config.remote ?? {};
  switch (p) {
    case 's3':
      return new S3Source(r.s3 as ConstructorParameters<typeof S3Source>[0]);
    case 'gs':
      return new GcsSource(r.gs as ConstructorParameters<typeof GcsSource>[0]);
    case 'az':
      return new AzureSource(r.az as ConstructorParameters<typeof AzureSource>[0]);
    case 'hf':
      return new HfSource(r.hf as ConstructorParameters<typeof HfSource>[0]);
    case 'http':
      return new HttpSource('http', { policy: { allowPrivate: true } });
  }
}

async function archive(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** The payloads of a TAR in order (names and sizes from the headers). */
function tarPayloads(tar: Buffer): { name: string; body: Buffer }[] {
  const out: { name: string; body: Buffer }[] = [];
  for (let at = 0; at + 512 <= tar.length; ) {
    const h = tar.subarray(at, at + 512);
    if (h.every((b) => b === 0)) break;
    const name = h.subarray(0, 100).toString('utf8').replace(/\0.*$/s, '');
    const size = parseInt(h.subarray(124, 136).toString('ascii').replace(/\0.*$/s, '').trim(), 8);
    out.push({ name, body: tar.subarray(at + 512, at + 512 + size) });
    at += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

describe('chaos: 30% of reads break mid-body', () => {
  for (const p of REMOTE) {
    it(`${p}: the archive is byte-exact`, async () => {
      const config = all.config();
      const chaos = new ChaosLayer(provider(p, config), { bodyFailRate: FAIL_RATE, seed: 42 });
      const registry = new SourceRegistry().register(withLayers(chaos, { retry: { baseMs: 1, capMs: 5 } }));
      const keys = Object.keys(data);
      const req = parseBatchRequest({ in: keys.map((k) => ({ uri: all.uri(p, k) })) });
      const run = runBatch(req, registry);
      const tar = await archive(run.stream);
      await run.result;
      const got = tarPayloads(tar);
      expect(got.map((g) => sha(g.body))).toEqual(keys.map((k) => sha(data[k]!)));
      expect(chaos.injected.bodies).toBeGreaterThanOrEqual(Math.floor(OBJECTS * FAIL_RATE * 0.5));
      await registry.close();
      await waitUntil(() => all.tracked[p].inFlight() === 0, 5000, `${p}: requests to finish`);
    });
  }
});

describe('an aborted batch', () => {
  afterEach(() => {
    pacing.ms = 0;
  });

  it('leaves no request open on any server', async () => {
    // Slow upstreams, so that responses are still being sent when the batch is aborted.
    pacing.ms = 5;
    let got = 0;
    const registry = new SourceRegistry(all.config());
    const keys = Array.from({ length: ABORT_OBJECTS }, (_, i) => `abort/obj-${i}.bin`);
    const entries = keys.flatMap((k) => REMOTE.map((p) => ({ uri: all.uri(p, k) })));
    const ac = new AbortController();
    const run = runBatch(parseBatchRequest({ in: entries }), registry, ac.signal);
    let openAtAbort = 0;
    const consumed = (async () => {
      for await (const c of run.stream) {
        got += (c as Buffer).length;
        if (got > 2 << 20 && !ac.signal.aborted) {
          openAtAbort = all.inFlight();
          ac.abort();
        }
      }
    })();
    await expect(consumed).rejects.toThrow();
    await expect(run.result).rejects.toMatchObject({ kind: 'Aborted' });
    expect(openAtAbort, 'requests in flight when the batch was aborted').toBeGreaterThan(0);
    await waitUntil(() => all.inFlight() === 0, 5000, 'every upstream request to close');
    await registry.close();
  });
});
