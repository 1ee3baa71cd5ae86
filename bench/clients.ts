/**
 * The clients of the paper's experiment, as a training loop would run them, with per-object
 * timing: individual GETs (one by one, or N at a time) and one get-batch, read with ojs-ml's
 * own client (as a loader built on ojs-ml would) or with undici (as any HTTP client would).
 * Every object's "ready" time is taken when its last byte arrived; the wait a consumer sees,
 * taking objects in request order, is how long after the previous one (or the start) each
 * became available.
 */
import { Agent, request } from 'undici';
import type { ChunkHandler, StreamedBatch } from '../src/client/stream.js';
import type { MossReq } from '../src/spec/request.js';

export interface Timing {
  /** Wall seconds for the whole set. */
  seconds: number;
  /** Milliseconds from the start until each object was complete, in request order. */
  ready: Float64Array;
}

/** One agent per server and run: keep-alive sockets, as many as the client's parallelism. */
export function agentFor(parallel: number): Agent {
  return new Agent({ connections: Math.max(1, parallel), pipelining: 1, keepAliveTimeout: 60_000 });
}

/** GETs `urls` `parallel` at a time; each body must have `sizes[i]` bytes. */
export async function individualGets(urls: string[], sizes: number[], parallel: number, agent: Agent): Promise<Timing> {
  const ready = new Float64Array(urls.length);
  let next = 0;
  const t0 = performance.now();
  const worker = async () => {
    for (let i = next++; i < urls.length; i = next++) {
      const res = await request(urls[i]!, { dispatcher: agent });
      if (res.statusCode !== 200) {
        await res.body.dump();
        throw new Error(`GET ${urls[i]}: HTTP ${res.statusCode}`);
      }
      let n = 0;
      for await (const c of res.body) n += (c as Buffer).length;
      if (n !== sizes[i]) throw new Error(`GET ${urls[i]}: ${n} bytes, expected ${sizes[i]}`);
      ready[i] = performance.now() - t0;
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, urls.length) }, worker));
  return { seconds: (performance.now() - t0) / 1000, ready };
}

const TAR_BLOCK = 512;

/** Where each entry's last data byte lies in the TAR, and the archive's length (short USTAR names, no PAX headers). */
function tarLayout(sizes: number[]): { ends: number[]; total: number } {
  const ends: number[] = [];
  let at = 0;
  for (const s of sizes) {
    ends.push(at + TAR_BLOCK + s);
    at += TAR_BLOCK + Math.ceil(s / TAR_BLOCK) * TAR_BLOCK;
  }
  return { ends, total: at + 2 * TAR_BLOCK };
}

/**
 * One streamed get-batch read with undici (POST `endpoint` with `body`); the TAR's entry
 * boundaries are known in advance from the sizes, so an entry is ready once the bytes up to its
 * last data byte arrived. The whole archive must have exactly the expected length.
 */
export async function batchGet(endpoint: string, body: unknown, sizes: number[], agent: Agent): Promise<Timing> {
  const { ends, total } = tarLayout(sizes);
  const ready = new Float64Array(sizes.length);
  const t0 = performance.now();
  const res = await request(endpoint, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' }, dispatcher: agent });
  if (res.statusCode !== 200) throw new Error(`batch: HTTP ${res.statusCode}: ${(await res.body.text()).slice(0, 300)}`);
  let got = 0;
  let k = 0;
  for await (const c of res.body) {
    got += (c as Buffer).length;
    const now = performance.now() - t0;
    while (k < ends.length && ends[k]! <= got) ready[k++] = now;
  }
  if (got !== total || k !== sizes.length) throw new Error(`batch: ${got} bytes and ${k} entries, expected ${total} and ${sizes.length}`);
  return { seconds: (performance.now() - t0) / 1000, ready };
}

/** The same get-batch read with ojs-ml's own client (BatchStreamClient: one reused read buffer; or ParallelBatchClient). */
export async function batchStream(client: { stream(req: MossReq, onChunk: ChunkHandler): Promise<StreamedBatch> }, req: MossReq, sizes: number[]): Promise<Timing> {
  const { ends, total } = tarLayout(sizes);
  const ready = new Float64Array(sizes.length);
  let got = 0;
  let k = 0;
  const t0 = performance.now();
  const r = await client.stream(req, (c) => {
    got += c.length;
    const now = performance.now() - t0;
    while (k < ends.length && ends[k]! <= got) ready[k++] = now;
  });
  if (got !== total || r.bytes !== total || k !== sizes.length) throw new Error(`batch: ${got} bytes and ${k} entries, expected ${total} and ${sizes.length}`);
  return { seconds: (performance.now() - t0) / 1000, ready };
}

/** The waits of a consumer taking objects in request order (ms). */
export function orderedWaits(ready: Float64Array): number[] {
  const waits: number[] = [];
  let seen = 0;
  for (const r of ready) {
    waits.push(Math.max(0, r - seen));
    seen = Math.max(seen, r);
  }
  return waits;
}

/** The p-th percentile (0-100), nearest rank. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}
