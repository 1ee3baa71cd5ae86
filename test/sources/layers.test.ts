/**
 * The layers around a remote source, against a real HTTP server that misbehaves on demand:
 * retries (only what is temporary; Retry-After), resumed bodies (Range from the byte reached,
 * same etag, answers checked), timeouts per attempt and idle bodies, the concurrency limit,
 * metrics and error context. The provider is the real http provider; nothing is mocked.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { HttpSource } from '../../src/sources/http.js';
import { ChaosLayer, Semaphore, withLayers, type LayerOptions } from '../../src/sources/layers/index.js';
import { parseRetryAfter } from '../../src/sources/remote.js';
import type { ObjectSource, OpenedObject } from '../../src/sources/types.js';
import { OjsError } from '../../src/spec/errors.js';
import { startFileServer, type Fault, type FileServer } from '../helpers/servers/files.js';
import { waitUntil } from '../helpers/servers/track.js';
import { failure } from '../helpers/errors.js';

const SIZE = 2 << 20;
const data = randomBytes(SIZE);
const small = randomBytes(1000);

let server: FileServer;
let http: HttpSource;
const signal = () => new AbortController().signal;

beforeAll(async () => {
  server = await startFileServer();
  server.put('big.bin', data);
  server.put('small.bin', small);
  http = new HttpSource('http', { policy: { allowPrivate: true } });
});
afterAll(async () => {
  await http.close();
  await server.close();
});
afterEach(() => {
  server.fault = undefined;
});

/** Layers with no waiting between retries and short timeouts, unless a test says otherwise. */
function layered(opts: LayerOptions = {}): ObjectSource {
  return withLayers(http, {
    ...opts,
    retry: { random: () => 0, ...opts.retry },
    timeout: { attemptMs: 2000, idleMs: 2000, ...opts.timeout },
  });
}

const ref = (key: string) => ({ bucket: server.host, key });

async function read(o: OpenedObject): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of o.body as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

/** Faults for the first `n` requests for `key`, then none; counts what the server saw. */
function faultFirst(key: string, n: number, fault: Fault | ((req: IncomingMessage) => Fault)): { seen: IncomingMessage[] } {
  const seen: IncomingMessage[] = [];
  server.fault = (req) => {
    if (!(req.url ?? '').endsWith(key)) return undefined;
    seen.push(req);
    if (seen.length > n) return undefined;
    return typeof fault === 'function' ? fault(req) : fault;
  };
  return { seen };
}

describe('retry', () => {
  it('retries 503 and 429 (temporary) and then succeeds', async () => {
    const s = layered();
    const { seen } = faultFirst('small.bin', 2, (req) => ({ status: seenCount(req) === 1 ? 503 : 429, headers: { 'retry-after': '0' } }));
    let n = 0;
    function seenCount(_req: IncomingMessage): number {
      return ++n;
    }
    const o = await s.open(ref('small.bin'), { signal: signal() });
    expect((await read(o)).equals(small)).toBe(true);
    expect(seen).toHaveLength(3);
  });

  it('does not retry what will not change: 404, 403, 401', async () => {
    const s = layered();
    for (const status of [404, 403, 401]) {
      const { seen } = faultFirst('small.bin', 100, { status });
      const e = await failure(s.open(ref('small.bin'), { signal: signal() }));
      expect(e.temporary, String(status)).toBe(false);
      expect(seen, String(status)).toHaveLength(1);
    }
  });

  it('gives up after the configured attempts, saying how many', async () => {
    const s = layered({ retry: { retries: 2 } });
    const { seen } = faultFirst('small.bin', 100, { status: 500 });
    const e = await failure(s.open(ref('small.bin'), { signal: signal() }));
    expect(e.kind).toBe('Upstream');
    expect(e.message).toMatch(/gave up after 3 attempts/);
    expect(seen).toHaveLength(3);
  });

  it('waits as long as Retry-After says, and not at all for one beyond the maximum', async () => {
    const s = layered({ retry: { maxRetryAfterMs: 5000 } });
    faultFirst('small.bin', 1, { status: 503, headers: { 'retry-after': '1' } });
    const t0 = Date.now();
    await read(await s.open(ref('small.bin'), { signal: signal() }));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(950);

    const { seen } = faultFirst('small.bin', 1, { status: 503, headers: { 'retry-after': '60' } });
    const t1 = Date.now();
    const e = await failure(s.open(ref('small.bin'), { signal: signal() }));
    expect(e.kind).toBe('Unavailable');
    expect(seen).toHaveLength(1);
    expect(Date.now() - t1).toBeLessThan(900);
  });

  it('stops waiting to retry when the signal aborts', async () => {
    const s = layered({ retry: { random: () => 0.999, baseMs: 10_000, capMs: 10_000 } });
    faultFirst('small.bin', 1, { status: 503 });
    const ac = new AbortController();
    const p = s.open(ref('small.bin'), { signal: ac.signal });
    setTimeout(() => ac.abort(), 100);
    const t0 = Date.now();
    expect((await failure(p)).kind).toBe('Aborted');
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('parses Retry-After as seconds or an HTTP date', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(parseRetryAfter('3', now)).toBe(3000);
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:00:05 GMT', now)).toBe(5000);
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter('-1', now)).toBeUndefined();
  });
});

describe('resuming a broken body', () => {
  it('reopens from the byte reached with the same etag, and the bytes are exact', async () => {
    const s = layered();
    const cuts = [300_000, 700_000];
    const { seen } = faultFirst('big.bin', 2, () => ({ cutAfter: cuts.shift()! }));
    const o = await s.open(ref('big.bin'), { signal: signal() });
    const got = await read(o);
    expect(got.length).toBe(SIZE);
    expect(got.equals(data)).toBe(true);
    expect(seen).toHaveLength(3);
    expect(seen[0]!.headers.range).toBeUndefined();
    expect(seen[1]!.headers.range).toBe(`bytes=300000-${SIZE - 1}`);
    expect(seen[2]!.headers.range).toBe(`bytes=1000000-${SIZE - 1}`);
    expect(seen[1]!.headers['if-match']).toBe(o.etag);
    expect(seen[2]!.headers['if-match']).toBe(o.etag);
  });

  it('resumes a ranged read inside its range', async () => {
    const s = layered();
    const { seen } = faultFirst('big.bin', 1, { cutAfter: 300_000 });
    const o = await s.open(ref('big.bin'), { signal: signal(), range: { start: 5000, length: 1_000_000 } });
    expect((await read(o)).equals(data.subarray(5000, 1_005_000))).toBe(true);
    expect(seen[0]!.headers.range).toBe('bytes=5000-1004999');
    expect(seen[1]!.headers.range).toBe('bytes=305000-1004999');
  });

  it('retries a small body broken while it is read whole at open, from its start', async () => {
    const s = layered();
    const { seen } = faultFirst('big.bin', 1, { cutAfter: 1000 });
    const o = await s.open(ref('big.bin'), { signal: signal(), range: { start: 5000, length: 100_000 } });
    expect(o.bytes?.equals(data.subarray(5000, 105_000))).toBe(true);
    expect(seen.map((r) => r.headers.range)).toEqual(['bytes=5000-104999', 'bytes=5000-104999']);
  });

  it('fails with Conflict, never splices, when the object changed in between', async () => {
    const s = layered();
    const key = 'changing.bin';
    server.put(key, data);
    faultFirst(key, 1, { cutAfter: 100_000 });
    const o = await s.open(ref(key), { signal: signal() });
    server.put(key, randomBytes(SIZE)); // a new version, with a new etag
    const e = await failure(read(o));
    expect(e.kind).toBe('Conflict');
  });

  it('refuses a resumed answer that ignores the Range or sends other bytes', async () => {
    const s = layered();
    for (const wrong of [{ range: null }, { range: 'bytes=0-99' }] as Fault[]) {
      let n = 0;
      server.fault = (req) => ((req.url ?? '').endsWith('big.bin') ? (++n === 1 ? { cutAfter: 50_000 } : n === 2 ? wrong : undefined) : undefined);
      const o = await s.open(ref('big.bin'), { signal: signal() });
      const e = await failure(read(o));
      expect(['Unsupported', 'Upstream']).toContain(e.kind);
      expect(e.message).toMatch(/ignored the Range|asked for bytes 50000-/);
    }
  });

  it('gives up when the body keeps breaking without progress', async () => {
    const s = layered({ retry: { retries: 2 } });
    let n = 0;
    server.fault = (req) => ((req.url ?? '').endsWith('big.bin') ? (++n === 1 ? { cutAfter: 10_000 } : { cutAfter: 0 }) : undefined);
    const o = await s.open(ref('big.bin'), { signal: signal() });
    const e = await failure(read(o));
    expect(e.temporary).toBe(true);
    expect(e.message).toMatch(/gave up after 3 attempts/);
    expect(n).toBe(3); // the first read, then two retries without a new byte
  });
});

describe('timeouts', () => {
  it('times out an attempt that gets no answer, closes it, and retries', async () => {
    const s = layered({ timeout: { attemptMs: 200 }, retry: { retries: 1 } });
    const { seen } = faultFirst('small.bin', 100, { hang: true });
    const t0 = Date.now();
    const e = await failure(s.open(ref('small.bin'), { signal: signal() }));
    expect(e.kind).toBe('Timeout');
    expect(e.code).toBe('ERR_TIMEOUT');
    expect(e.message).toMatch(/within 200 ms.*gave up after 2 attempts/);
    expect(seen).toHaveLength(2);
    expect(Date.now() - t0).toBeLessThan(2000);
    await waitUntil(() => server.inFlight() === 0, 2000, 'the hung requests to be closed');
  });

  it('times out a body that stalls while the consumer waits, and resumes it', async () => {
    const s = layered({ timeout: { idleMs: 300 } });
    const { seen } = faultFirst('big.bin', 1, { stallAfter: 500_000 });
    const o = await s.open(ref('big.bin'), { signal: signal() });
    expect((await read(o)).equals(data)).toBe(true);
    expect(seen).toHaveLength(2);
    expect(seen[1]!.headers.range).toMatch(/^bytes=\d+-2097151$/);
  });

  it('does not count a paused consumer as an idle upstream', async () => {
    const s = layered({ timeout: { idleMs: 200 } });
    server.fault = () => undefined;
    const before = server.requests.length;
    const o = await s.open(ref('big.bin'), { signal: signal() });
    const first = await new Promise<Buffer>((resolve) => o.body.once('data', (c: Buffer) => resolve(c)));
    o.body.pause();
    await new Promise((r) => setTimeout(r, 600));
    const rest = await read(o);
    expect(Buffer.concat([first, rest]).equals(data)).toBe(true);
    expect(server.requests.length - before).toBe(1);
  });
});

describe('concurrency limit', () => {
  it('never has more than the limit in flight; an open body holds its slot until it ends', async () => {
    const s = layered({ concurrency: 3 });
    const before = server.requests.length;
    const open = await Promise.all([0, 1, 2].map(() => s.open(ref('big.bin'), { signal: signal() })));
    let fourth: OpenedObject | undefined;
    const waiting = s.open(ref('small.bin'), { signal: signal() }).then((o) => (fourth = o));
    await new Promise((r) => setTimeout(r, 200));
    expect(fourth).toBeUndefined();
    expect(server.requests.length - before).toBe(3);
    expect((await read(open[0]!)).equals(data)).toBe(true); // ends: its slot goes to the fourth
    await waiting;
    expect((await read(fourth!)).equals(small)).toBe(true);
    for (const o of open.slice(1)) expect((await read(o)).equals(data)).toBe(true);
  });

  it('a waiter whose signal aborts leaves the queue; a destroyed body frees its slot', async () => {
    const sem = new Semaphore(1);
    const release = await sem.acquire(signal());
    const ac = new AbortController();
    const waiting = sem.acquire(ac.signal);
    expect(sem.waiting).toBe(1);
    ac.abort();
    await expect(waiting).rejects.toThrow();
    expect(sem.waiting).toBe(0);
    release();
    expect(sem.inUse).toBe(0);

    const s = layered({ concurrency: 1 });
    const a = await s.open(ref('big.bin'), { signal: signal() });
    a.body.destroy();
    const b = await s.open(ref('small.bin'), { signal: signal() });
    expect((await read(b)).equals(small)).toBe(true);
  });
});

describe('metrics and error context', () => {
  it('reports each operation with its outcome, and every body byte', async () => {
    const calls: [string, string, string][] = [];
    let bytes = 0;
    const s = layered({ metrics: { onRequest: (p, op, outcome) => calls.push([p, op, outcome]), onBytes: (_p, n) => (bytes += n) } });
    await read(await s.open(ref('big.bin'), { signal: signal() }));
    await s.stat(ref('small.bin'), { signal: signal() });
    await failure(s.open(ref('nope.bin'), { signal: signal() }));
    expect(calls).toEqual([
      ['http', 'open', 'ok'],
      ['http', 'read', 'ok'],
      ['http', 'stat', 'ok'],
      ['http', 'open', 'ERR_NOT_FOUND'],
    ]);
    expect(bytes).toBe(SIZE);
  });

  it('names the object as a URI in every message, with provider, bucket and key in the context', async () => {
    const s = layered();
    const e = await failure(s.open(ref('nope.bin'), { signal: signal() }));
    expect(e.message).toBe(`http://${server.host}/nope.bin: no such object: not found (HTTP 404)`);
    expect(e.context).toMatchObject({ provider: 'http', bucket: server.host, key: 'nope.bin' });
  });
});

describe('chaos layer', () => {
  it('breaks the share of bodies it is told to, with a temporary error, and closes their requests', async () => {
    const chaos = new ChaosLayer(http, { bodyFailRate: 0.5, seed: 7 });
    let broken = 0;
    for (let i = 0; i < 20; i++) {
      const o = await chaos.open(ref('big.bin'), { signal: signal() });
      const e = await read(o).then(
        () => undefined,
        (x: unknown) => x as OjsError,
      );
      if (e !== undefined) {
        expect(e.temporary).toBe(true);
        broken++;
      }
    }
    expect(broken).toBe(chaos.injected.bodies);
    expect(broken).toBeGreaterThan(4);
    expect(broken).toBeLessThan(16);
    // A body broken before the server sent it all closed its request; none is left open.
    await waitUntil(() => server.inFlight() === 0, 3000, 'broken bodies to close their requests');
  });
});
