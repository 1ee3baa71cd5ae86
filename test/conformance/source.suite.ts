/**
 * The behaviour every ObjectSource must show, whatever the provider. A provider's test file calls
 * `sourceConformance(name, setup)` with a way to seed objects; cases follow the capabilities
 * the source declares.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OjsError } from '../../src/spec/errors.js';
import type { ObjectSource, OpenedObject } from '../../src/sources/types.js';

export interface ConformanceTarget {
  source: ObjectSource;
  bucket: string;
  put(key: string, data: Buffer): Promise<void>;
  cleanup(): Promise<void>;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function readAll(o: OpenedObject): Promise<Buffer> {
  if (o.bytes !== undefined) return o.bytes;
  const chunks: Buffer[] = [];
  for await (const c of o.body as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

async function kindOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (e instanceof OjsError) return e.kind;
    if ((e as Error).name === 'AbortError') return 'Aborted';
    throw e;
  }
  return 'no error';
}

export function sourceConformance(name: string, setup: () => Promise<ConformanceTarget>): void {
  describe(`ObjectSource conformance: ${name}`, () => {
    let t: ConformanceTarget;
    const signal = () => new AbortController().signal;
    const objects: Record<string, Buffer> = {
      'small.bin': randomBytes(1000),
      'medium.bin': randomBytes(300_000),
      'big.bin': randomBytes(64 << 20),
      'empty.bin': Buffer.alloc(0),
      'a b+c=d&e(1).bin': randomBytes(333),
      'ünï/cødé.txt': Buffer.from('unicode key\n'),
      'nested/deeper/still/leaf.bin': randomBytes(77),
      'dir/abc.bin': randomBytes(10),
      'dir/abd.bin': randomBytes(11),
      'dir/b.bin': randomBytes(12),
    };
    for (let i = 0; i < 32; i++) objects[`many/obj-${String(i).padStart(2, '0')}.bin`] = randomBytes(5000 + i * 1000);

    beforeAll(async () => {
      t = await setup();
      for (const [k, v] of Object.entries(objects)) await t.put(k, v);
    }, 120_000);
    afterAll(async () => t?.cleanup());

    const ref = (key: string) => ({ bucket: t.bucket, key });

    it('stats an object: exact size', async () => {
      const st = await t.source.stat(ref('medium.bin'), { signal: signal() });
      expect(st.size).toBe(objects['medium.bin']!.length);
    });

    it('reads whole objects byte-exact, with exact length and range', async () => {
      for (const key of ['small.bin', 'medium.bin', 'big.bin']) {
        const o = await t.source.open(ref(key), { signal: signal() });
        expect(o.length).toBe(objects[key]!.length);
        expect(o.size).toBe(objects[key]!.length);
        expect(o.range).toEqual({ offset: 0, length: objects[key]!.length });
        expect(sha(await readAll(o))).toBe(sha(objects[key]!));
      }
    });

    it('reads 20 random ranges byte-exact (explicit and to-the-end)', async () => {
      if (!t.source.capabilities.ranges) return expect(t.source.capabilities.ranges).toBe(false);
      const data = objects['medium.bin']!;
      for (let i = 0; i < 20; i++) {
        const start = Math.floor(Math.random() * (data.length - 1));
        const length = i % 4 === 0 ? -1 : 1 + Math.floor(Math.random() * (data.length - start));
        const want = length === -1 ? data.subarray(start) : data.subarray(start, start + length);
        const o = await t.source.open(ref('medium.bin'), { signal: signal(), range: { start, length } });
        expect(o.length).toBe(want.length);
        expect(o.range.offset).toBe(start);
        expect((await readAll(o)).equals(want)).toBe(true);
      }
    });

    it('refuses ranges outside the object with a Range error (416)', async () => {
      const n = objects['small.bin']!.length;
      for (const range of [{ start: n, length: 1 }, { start: 10, length: n }, { start: n, length: -1 }]) {
        const e = await t.source.open(ref('small.bin'), { signal: signal(), range }).catch((x: unknown) => x);
        expect(e).toBeInstanceOf(OjsError);
        expect((e as OjsError).kind).toBe('Range');
        expect((e as OjsError).httpStatus).toBe(416);
      }
    });

    it('reads a zero-byte object; any range on it is a Range error', async () => {
      const o = await t.source.open(ref('empty.bin'), { signal: signal() });
      expect(o.length).toBe(0);
      expect((await readAll(o)).length).toBe(0);
      expect(await kindOf(t.source.open(ref('empty.bin'), { signal: signal(), range: { start: 0, length: 1 } }))).toBe('Range');
    });

    it('reads keys with spaces, special characters, unicode, and nesting', async () => {
      for (const key of ['a b+c=d&e(1).bin', 'ünï/cødé.txt', 'nested/deeper/still/leaf.bin']) {
        const o = await t.source.open(ref(key), { signal: signal() });
        expect(sha(await readAll(o))).toBe(sha(objects[key]!));
      }
    });

    it('answers a missing object with NotFound, for stat and open', async () => {
      expect(await kindOf(t.source.stat(ref('no/such/object.bin'), { signal: signal() }))).toBe('NotFound');
      expect(await kindOf(t.source.open(ref('no/such/object.bin'), { signal: signal() }))).toBe('NotFound');
    });

    it('does not open with a signal already aborted', async () => {
      const ac = new AbortController();
      ac.abort();
      expect(await kindOf(t.source.open(ref('small.bin'), { signal: ac.signal }))).toBe('Aborted');
    });

    it('stops a body mid-way when the signal aborts', async () => {
      const ac = new AbortController();
      const o = await t.source.open(ref('big.bin'), { signal: ac.signal });
      expect(o.bytes).toBeUndefined(); // 64 MiB must stream
      let got = 0;
      const consumed = (async () => {
        for await (const c of o.body as AsyncIterable<Buffer>) {
          got += c.length;
          if (got > 1 << 20) ac.abort();
        }
      })();
      expect(await kindOf(consumed)).toBe('Aborted');
      expect(got).toBeLessThan(32 << 20);
      expect(o.body.destroyed).toBe(true);
    });

    it('keeps memory bounded while the consumer pauses', async () => {
      const o = await t.source.open(ref('big.bin'), { signal: signal() });
      const body: Readable = o.body;
      await new Promise<void>((resolve) => body.once('data', () => resolve()));
      body.pause();
      await new Promise((r) => setTimeout(r, 300));
      expect(body.readableLength).toBeLessThan(4 << 20);
      body.destroy();
    });

    it('serves 32 concurrent opens byte-exact', async () => {
      const keys = Object.keys(objects).filter((k) => k.startsWith('many/'));
      expect(keys).toHaveLength(32);
      const got = await Promise.all(keys.map(async (k) => sha(await readAll(await t.source.open(ref(k), { signal: signal() })))));
      expect(got).toEqual(keys.map((k) => sha(objects[k]!)));
    });

    it('lists a prefix in byte order with sizes, also a prefix that is not a whole directory', async () => {
      if (!t.source.capabilities.list) return expect(t.source.capabilities.list).toBe(false);
      const list = async (prefix: string) => {
        const out: [string, number][] = [];
        for await (const o of t.source.list(t.bucket, prefix, { signal: signal() })) out.push([o.key, o.size]);
        return out;
      };
      expect(await list('dir/ab')).toEqual([
        ['dir/abc.bin', 10],
        ['dir/abd.bin', 11],
      ]);
      const all = (await list('')).map(([k]) => k);
      expect(all).toEqual([...all].sort((a, b) => (Buffer.from(a) < Buffer.from(b) ? -1 : Buffer.from(a) > Buffer.from(b) ? 1 : 0)));
      expect(all).toEqual(expect.arrayContaining(Object.keys(objects)));
      expect(await list('nothing-here/')).toEqual([]);
    });
  });
}
