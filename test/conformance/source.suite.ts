/**
 * The behaviour every ObjectSource must show, whatever the provider. A provider's test file calls
 * `sourceConformance(name, setup)` with a way to seed objects; the cases that depend on an
 * optional feature (list, conditional reads) follow the capabilities the source declares.
 * Byte ranges are not optional: a source without cheap ranges still has to deliver them exactly.
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OjsError } from '../../src/spec/errors.js';
import type { ObjectSource, OpenedObject } from '../../src/sources/types.js';

export interface ConformanceTarget {
  source: ObjectSource;
  /** The bucket (root, container, repository) that `put` writes into. */
  bucket: string;
  put(key: string, data: Buffer): Promise<void>;
  cleanup(): Promise<void>;
  /**
   * The server's view, for remote sources: requests seen, responses in flight, and responses
   * whose client closed the connection before the end. With it, the abort cases also prove
   * that the upstream request was really closed.
   */
  upstream?: { requests: unknown[]; inFlight(): number; closedEarly(): number };
}

const BIG = 64 << 20; // streams on every provider; the memory cases read it
const PAUSED_MAX_BUFFERED = 4 << 20; // what a paused body may hold
const CONCURRENT = 32;
const RANGE_SEED = 0x0badf00d; // the random ranges are the same on every run

const UPSTREAM_CLOSE_MS = 5000; // how long the server may take to see an aborted request closed

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const signal = () => new AbortController().signal;

/** mulberry32: a small seeded generator, so that a failing range can be reproduced. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function readBody(o: OpenedObject): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of o.body as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

/** The bytes as the engine takes them: the in-memory copy when the source has one. */
async function readAll(o: OpenedObject): Promise<Buffer> {
  return o.bytes ?? readBody(o);
}

/** The rejection of a promise that must reject. */
async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error('expected a rejection, got a result');
    },
    (e: unknown) => e,
  );
}

async function ojsRejection(p: Promise<unknown>): Promise<OjsError> {
  const e = await rejection(p);
  expect(e).toBeInstanceOf(OjsError);
  return e as OjsError;
}

/** Abort errors may be ours (kind Aborted) or the platform's (name AbortError). */
function expectAborted(e: unknown): void {
  expect(e).toBeInstanceOf(Error);
  const aborted = (e instanceof OjsError && e.kind === 'Aborted') || (e as Error).name === 'AbortError';
  expect(aborted, `not an abort error: ${String(e)}`).toBe(true);
}

/** Resolves once the server saw a request cut short after `before` and has nothing in flight. */
async function upstreamClosed(t: ConformanceTarget, before: number): Promise<void> {
  const up = t.upstream;
  if (up === undefined) return;
  const t0 = Date.now();
  while (!(up.inFlight() === 0 && up.closedEarly() > before)) {
    if (Date.now() - t0 > UPSTREAM_CLOSE_MS) {
      throw new Error(`the upstream request stayed open: ${up.inFlight()} in flight, ${up.closedEarly() - before} closed early`);
    }
    await sleep(10);
  }
}

function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

export function sourceConformance(name: string, setup: () => Promise<ConformanceTarget>): void {
  describe(`ObjectSource conformance: ${name}`, () => {
    let t: ConformanceTarget;
    const objects: Record<string, Buffer> = {
      'small.bin': randomBytes(1000),
      'medium.bin': randomBytes(300_000),
      'big.bin': randomBytes(BIG),
      'empty.bin': Buffer.alloc(0),
      'a b+c=d&e(1).bin': randomBytes(333),
      'ünï/cødé.txt': Buffer.from('unicode key\n'),
      'nested/deeper/still/leaf.bin': randomBytes(77),
      'dir/abc.bin': randomBytes(10),
      'dir/abd.bin': randomBytes(11),
      'dir/b.bin': randomBytes(12),
      // '-' and '.' sort before '/', '0' after it: a listing must not put a folder's keys first.
      'order/a-b.bin': randomBytes(1),
      'order/a.bin': randomBytes(2),
      'order/a/x.bin': randomBytes(3),
      'order/a0.bin': randomBytes(4),
      // U+FF5E is EF BD 9E in UTF-8, U+1F600 is F0 9F 98 80: byte order puts U+FF5E first,
      // while UTF-16 (JavaScript's string order) puts the surrogate pair D83D DE00 first.
      'sort/\u{FF5E}.bin': randomBytes(5),
      'sort/\u{1F600}.bin': randomBytes(6),
    };
    for (let i = 0; i < CONCURRENT; i++) {
      // Every fourth is large enough to stream on sources that read small bodies at open.
      const size = i % 4 === 0 ? 400_000 + i : 5000 + i * 1000;
      objects[`many/obj-${String(i).padStart(2, '0')}.bin`] = randomBytes(size);
    }
    const manyKeys = Object.keys(objects).filter((k) => k.startsWith('many/'));

    beforeAll(async () => {
      t = await setup();
      for (const [k, v] of Object.entries(objects)) await t.put(k, v);
    }, 120_000);
    afterAll(async () => t?.cleanup());

    const ref = (key: string) => ({ bucket: t.bucket, key });
    const data = (key: string) => objects[key]!;

    describe('stat', () => {
      it('gives the exact size, and an etag that stays the same and matches open', async () => {
        for (const key of ['small.bin', 'medium.bin', 'big.bin', 'empty.bin']) {
          const st = await t.source.stat(ref(key), { signal: signal() });
          expect(st.size, key).toBe(data(key).length);
          if (st.mtime !== undefined) expect(st.mtime).toBeInstanceOf(Date);
          const again = await t.source.stat(ref(key), { signal: signal() });
          expect(again.etag, key).toBe(st.etag);
          if (st.etag === undefined) continue;
          expect(typeof st.etag).toBe('string');
          expect(st.etag.length).toBeGreaterThan(0);
          const o = await t.source.open(ref(key), { signal: signal() });
          expect(o.etag, key).toBe(st.etag);
          o.body.destroy();
        }
      });

      it('answers a missing object with NotFound', async () => {
        for (const key of ['no/such/object.bin', 'small.bin/child', 'smal']) {
          const e = await ojsRejection(t.source.stat(ref(key), { signal: signal() }));
          expect(e.kind, key).toBe('NotFound');
          expect(e.httpStatus).toBe(404);
        }
      });
    });

    describe('reads', () => {
      it('reads whole objects byte-exact, with exact length, size and range', async () => {
        for (const key of ['small.bin', 'medium.bin', 'big.bin']) {
          const o = await t.source.open(ref(key), { signal: signal() });
          expect(o.length, key).toBe(data(key).length);
          expect(o.size, key).toBe(data(key).length);
          expect(o.range, key).toEqual({ offset: 0, length: data(key).length });
          expect(sha(await readAll(o)), key).toBe(sha(data(key)));
        }
      });

      it('delivers the same bytes through body as through an in-memory copy', async () => {
        for (const key of ['small.bin', 'medium.bin']) {
          const o = await t.source.open(ref(key), { signal: signal() });
          const viaBody = await readBody(o);
          expect(viaBody.equals(data(key)), key).toBe(true);
          if (o.bytes !== undefined) expect(o.bytes.equals(data(key)), key).toBe(true);
        }
      });

      it('reads 20 random ranges byte-exact (explicit length and to the end)', async () => {
        const rand = rng(RANGE_SEED);
        for (let i = 0; i < 20; i++) {
          const key = i % 2 === 0 ? 'medium.bin' : 'big.bin';
          const whole = data(key);
          const start = Math.floor(rand() * (whole.length - 1));
          const maxLength = Math.min(whole.length - start, 3 << 20);
          const toEnd = i % 4 === 0 || (key === 'big.bin' && i % 5 === 0 && whole.length - start <= 8 << 20);
          const length = toEnd ? -1 : 1 + Math.floor(rand() * maxLength);
          const want = length === -1 ? whole.subarray(start) : whole.subarray(start, start + length);
          const what = `${key} start=${start} length=${length}`;
          const o = await t.source.open(ref(key), { signal: signal(), range: { start, length } });
          expect(o.length, what).toBe(want.length);
          expect(o.size, what).toBe(whole.length);
          expect(o.range, what).toEqual({ offset: start, length: want.length });
          const got = await readAll(o);
          expect(got.length, what).toBe(want.length);
          expect(got.equals(want), what).toBe(true);
        }
      });

      it('reads the edges: first byte, last byte, last byte to the end', async () => {
        for (const key of ['medium.bin', 'big.bin']) {
          const whole = data(key);
          const n = whole.length;
          for (const [start, length, want] of [
            [0, 1, whole.subarray(0, 1)],
            [n - 1, 1, whole.subarray(n - 1)],
            [n - 1, -1, whole.subarray(n - 1)],
            [0, n, whole],
            [0, -1, whole],
          ] as const) {
            const o = await t.source.open(ref(key), { signal: signal(), range: { start, length } });
            expect(o.length, `${key} ${start},${length}`).toBe(want.length);
            expect((await readAll(o)).equals(want), `${key} ${start},${length}`).toBe(true);
          }
        }
      });

      it('refuses ranges outside the object with a Range error (ERR_RANGE, 416)', async () => {
        for (const key of ['small.bin', 'big.bin']) {
          const n = data(key).length;
          for (const range of [
            { start: n, length: 1 },
            { start: 10, length: n },
            { start: n, length: -1 },
            { start: n + 1000, length: -1 },
            { start: n - 1, length: 2 },
          ]) {
            const e = await ojsRejection(t.source.open(ref(key), { signal: signal(), range }));
            expect(e.kind, `${key} ${JSON.stringify(range)}`).toBe('Range');
            expect(e.code).toBe('ERR_RANGE');
            expect(e.httpStatus).toBe(416);
          }
        }
      });

      it('reads a zero-byte object; any range on it is a Range error', async () => {
        const st = await t.source.stat(ref('empty.bin'), { signal: signal() });
        expect(st.size).toBe(0);
        const o = await t.source.open(ref('empty.bin'), { signal: signal() });
        expect(o.length).toBe(0);
        expect(o.size).toBe(0);
        expect((await readAll(o)).length).toBe(0);
        expect((await readBody(await t.source.open(ref('empty.bin'), { signal: signal() }))).length).toBe(0);
        for (const range of [
          { start: 0, length: 1 },
          { start: 0, length: -1 },
          { start: 1, length: -1 },
        ]) {
          const e = await ojsRejection(t.source.open(ref('empty.bin'), { signal: signal(), range }));
          expect(e.kind, JSON.stringify(range)).toBe('Range');
          expect(e.code).toBe('ERR_RANGE');
        }
      });

      it('reads keys with spaces, special characters, unicode, and nesting', async () => {
        for (const key of ['a b+c=d&e(1).bin', 'ünï/cødé.txt', 'nested/deeper/still/leaf.bin', 'sort/\u{1F600}.bin']) {
          const st = await t.source.stat(ref(key), { signal: signal() });
          expect(st.size, key).toBe(data(key).length);
          const o = await t.source.open(ref(key), { signal: signal() });
          expect(sha(await readAll(o)), key).toBe(sha(data(key)));
        }
        const o = await t.source.open(ref('a b+c=d&e(1).bin'), { signal: signal(), range: { start: 100, length: 33 } });
        expect((await readAll(o)).equals(data('a b+c=d&e(1).bin').subarray(100, 133))).toBe(true);
      });

      it('answers a missing object with NotFound (ERR_NOT_FOUND) on open', async () => {
        for (const key of ['no/such/object.bin', 'small.bin/child', 'a b+c=d&e(2).bin', 'nested/deeper']) {
          const e = await ojsRejection(t.source.open(ref(key), { signal: signal() }));
          expect(e.kind, key).toBe('NotFound');
          expect(e.code, key).toBe('ERR_NOT_FOUND');
        }
        const ranged = await ojsRejection(t.source.open(ref('no/such/object.bin'), { signal: signal(), range: { start: 0, length: 1 } }));
        expect(ranged.kind).toBe('NotFound');
      });

      it('honours ifMatch when it declares conditional reads', async ({ skip }) => {
        skip(!t.source.capabilities.conditionalRead, `${name} declares no conditional reads`);
        const st = await t.source.stat(ref('medium.bin'), { signal: signal() });
        expect(st.etag).toBeDefined();
        const o = await t.source.open(ref('medium.bin'), { signal: signal(), ifMatch: st.etag!, range: { start: 5, length: 10 } });
        expect((await readAll(o)).equals(data('medium.bin').subarray(5, 15))).toBe(true);
        const e = await ojsRejection(t.source.open(ref('medium.bin'), { signal: signal(), ifMatch: '"not-the-etag"' }));
        expect(e.kind).toBe('Conflict');
        expect(e.code).toBe('ERR_CONFLICT');
      });
    });

    describe('cancellation and memory', () => {
      it('does not stat or open with a signal already aborted', async () => {
        const ac = new AbortController();
        ac.abort();
        const seen = t.upstream?.requests.length;
        for (const key of ['small.bin', 'big.bin']) {
          expectAborted(await rejection(t.source.open(ref(key), { signal: ac.signal })));
        }
        expectAborted(await rejection(t.source.stat(ref('small.bin'), { signal: ac.signal })));
        expect(t.upstream?.requests.length, 'requests sent with an aborted signal').toBe(seen);
      });

      it('stops a body mid-way when the signal aborts, and the upstream request is closed', async () => {
        const ac = new AbortController();
        const before = t.upstream?.closedEarly() ?? 0;
        const o = await t.source.open(ref('big.bin'), { signal: ac.signal });
        expect(o.bytes).toBeUndefined(); // 64 MiB must stream
        let got = 0;
        let afterAbort = 0;
        let ended = false;
        o.body.once('end', () => (ended = true));
        const consumed = (async () => {
          for await (const c of o.body as AsyncIterable<Buffer>) {
            if (ac.signal.aborted) afterAbort += c.length;
            got += c.length;
            if (got > 1 << 20 && !ac.signal.aborted) ac.abort();
          }
        })();
        expectAborted(await rejection(consumed));
        expect(got).toBeGreaterThan(1 << 20);
        expect(got).toBeLessThan(16 << 20);
        expect(afterAbort).toBeLessThan(1 << 20);
        expect(o.body.destroyed).toBe(true);
        await sleep(50);
        expect(ended).toBe(false);
        await upstreamClosed(t, before);
      });

      it('closes the upstream request when a consumer destroys the body mid-way', async () => {
        const before = t.upstream?.closedEarly() ?? 0;
        const o = await t.source.open(ref('big.bin'), { signal: signal() });
        await new Promise<void>((resolve) => o.body.once('data', () => resolve()));
        o.body.destroy();
        await upstreamClosed(t, before);
        expect(o.body.destroyed).toBe(true);
      });

      it('errors and closes a paused body when the signal aborts, without delivering more', async () => {
        const ac = new AbortController();
        const before = t.upstream?.closedEarly() ?? 0;
        const o = await t.source.open(ref('big.bin'), { signal: ac.signal });
        const body = o.body;
        await new Promise<void>((resolve) => body.once('data', () => resolve()));
        body.pause();
        let later = 0;
        const closed = new Promise<unknown>((resolve) => {
          body.on('error', (e) => resolve(e));
          body.on('close', () => resolve(body.errored));
        });
        ac.abort();
        body.on('data', (c: Buffer) => (later += c.length));
        const err = await Promise.race([closed, sleep(2000).then(() => 'timed out')]);
        expectAborted(err);
        expect(body.destroyed).toBe(true);
        expect(body.readableEnded).toBe(false);
        body.resume();
        await sleep(20);
        expect(later).toBe(0);
        await upstreamClosed(t, before);
      });

      it('keeps memory bounded while the consumer pauses', async () => {
        const o = await t.source.open(ref('big.bin'), { signal: signal() });
        const body = o.body;
        let first = 0;
        await new Promise<void>((resolve) =>
          body.once('data', (c: Buffer) => {
            first = c.length;
            body.pause();
            resolve();
          }),
        );
        expect(first).toBeGreaterThan(0);
        await sleep(300);
        expect(body.readableLength).toBeLessThan(PAUSED_MAX_BUFFERED);
        expect(body.readableEnded).toBe(false);
        // Still correct after the pause: the rest follows the first chunk exactly.
        const rest: Buffer[] = [];
        for await (const c of body as AsyncIterable<Buffer>) rest.push(c);
        expect(first + rest.reduce((n, c) => n + c.length, 0)).toBe(BIG);
        expect(Buffer.concat(rest).equals(data('big.bin').subarray(first))).toBe(true);
      });

      it(`serves ${CONCURRENT} concurrent opens of different objects byte-exact`, async () => {
        expect(manyKeys).toHaveLength(CONCURRENT);
        const s = signal();
        const got = await Promise.all(
          manyKeys.map(async (k) => {
            const o = await t.source.open(ref(k), { signal: s });
            expect(o.length, k).toBe(data(k).length);
            return sha(await readBody(o));
          }),
        );
        expect(got).toEqual(manyKeys.map((k) => sha(data(k))));
      });
    });

    describe('list', () => {
      const list = async (prefix: string): Promise<[string, number][]> => {
        const out: [string, number][] = [];
        for await (const o of t.source.list(t.bucket, prefix, { signal: signal() })) out.push([o.key, o.size]);
        return out;
      };
      const expected = (prefix: string): [string, number][] =>
        Object.keys(objects)
          .filter((k) => k.startsWith(prefix))
          .sort(byteOrder)
          .map((k) => [k, data(k).length]);

      it('lists every key in byte order with its size', async ({ skip }) => {
        skip(!t.source.capabilities.list, `${name} declares no list capability`);
        const all = await list('');
        expect(all).toEqual(expected(''));
      });

      it('lists a prefix that is not a whole directory', async ({ skip }) => {
        skip(!t.source.capabilities.list, `${name} declares no list capability`);
        expect(await list('dir/ab')).toEqual([
          ['dir/abc.bin', 10],
          ['dir/abd.bin', 11],
        ]);
        expect(await list('dir/')).toEqual(expected('dir/'));
        expect(await list('smal')).toEqual([['small.bin', 1000]]);
        expect(await list('many/obj-1')).toEqual(expected('many/obj-1'));
        expect((await list('many/obj-1')).length).toBe(10);
        expect(await list('nested/deeper/still/leaf.bin')).toEqual([['nested/deeper/still/leaf.bin', 77]]);
        expect(await list('ünï/')).toEqual([['ünï/cødé.txt', 12]]);
      });

      it("orders keys by bytes across folders ('a-' < 'a.' < 'a/' < 'a0') and past the BMP", async ({ skip }) => {
        skip(!t.source.capabilities.list, `${name} declares no list capability`);
        expect((await list('order/')).map(([k]) => k)).toEqual(['order/a-b.bin', 'order/a.bin', 'order/a/x.bin', 'order/a0.bin']);
        expect((await list('order/a/')).map(([k]) => k)).toEqual(['order/a/x.bin']);
        expect((await list('sort/')).map(([k]) => k)).toEqual(['sort/\u{FF5E}.bin', 'sort/\u{1F600}.bin']);
      });

      it('lists nothing under a prefix that matches nothing', async ({ skip }) => {
        skip(!t.source.capabilities.list, `${name} declares no list capability`);
        expect(await list('nothing-here/')).toEqual([]);
        expect(await list('dir/c')).toEqual([]);
        expect(await list('small.bin/')).toEqual([]);
      });
    });
  });
}
