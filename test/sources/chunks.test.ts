import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { setImmediate as turn } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { ChunkPool, SlabPool, chunksOf } from '../../src/sources/chunks.js';

describe('ChunkPool', () => {
  it('hands out chunks of its size and reuses the ones given back', () => {
    const pool = new ChunkPool(1024, 4);
    const a = pool.take();
    expect(a.length).toBe(1024);
    expect(pool.owns(a)).toBe(true);
    pool.give(a);
    expect(pool.freeCount).toBe(1);
    expect(pool.take()).toBe(a);
    expect(pool.freeCount).toBe(0);
    expect(pool.take()).not.toBe(a);
  });

  it('gives each chunk its own memory, never a slice of a shared pool', () => {
    const pool = new ChunkPool(1024, 4);
    const a = pool.take();
    const b = pool.take();
    expect(a.byteOffset).toBe(0);
    expect(a.buffer.byteLength).toBe(1024);
    expect(a.buffer).not.toBe(b.buffer);
  });

  it('ignores views, copies, foreign buffers and a chunk given back twice', () => {
    const pool = new ChunkPool(1024, 4);
    const a = pool.take();
    pool.give(a.subarray(0, 10));
    pool.give(Buffer.from(a));
    pool.give(Buffer.alloc(1024));
    expect(pool.freeCount).toBe(0);
    expect(pool.owns(a.subarray(0, 1024))).toBe(false);
    pool.give(a);
    pool.give(a);
    expect(pool.freeCount).toBe(1);
    // Were it kept twice, two readers would share one buffer.
    const x = pool.take();
    const y = pool.take();
    expect(x).not.toBe(y);
  });

  it('hands out smaller sizes as views of half and quarter chunks, which come back as those chunks', () => {
    const pool = new ChunkPool(1024, 4);
    expect(pool.minBytes).toBe(256);
    const v = pool.take(400); // a 512-byte chunk
    expect(v.length).toBe(400);
    expect(v.buffer.byteLength).toBe(512);
    expect(pool.owns(v)).toBe(true);
    pool.give(v);
    pool.give(v); // twice: kept once
    expect(pool.freeCount).toBe(1);
    const again = pool.take(300);
    expect(again.buffer).toBe(v.buffer);
    expect(pool.freeCount).toBe(0);
    expect(pool.take(100).buffer.byteLength).toBe(256); // below minBytes: still the smallest class
    expect(pool.take(1024).buffer.byteLength).toBe(1024);
    expect(() => pool.take(1025)).toThrow(RangeError);
    expect(() => pool.take(0)).toThrow(RangeError);
  });

  it('lends views of its chunks (a writer filling one part-way), and only of its own', () => {
    const pool = new ChunkPool(1024, 4);
    const c = pool.take();
    const v = pool.viewOf(c, 100);
    expect(v.length).toBe(100);
    expect(pool.viewOf(c, 1024)).toBe(c);
    expect(() => pool.viewOf(Buffer.alloc(1024), 10)).toThrow(RangeError);
    pool.give(v);
    expect(pool.take()).toBe(c);
  });

  it('keeps at most keepMax free chunks', () => {
    const pool = new ChunkPool(64, 2);
    const taken = [pool.take(), pool.take(), pool.take()];
    for (const c of taken) pool.give(c);
    expect(pool.freeCount).toBe(2);
    // The bound is in bytes: two full chunks' worth of half chunks is four.
    const halves = new ChunkPool(64, 2);
    const hs = Array.from({ length: 5 }, () => halves.take(32));
    for (const h of hs) halves.give(h);
    expect(halves.freeCount).toBe(4);
  });
});

describe('SlabPool', () => {
  it('carves 8-byte aligned pieces that do not overlap while they are out', () => {
    const pool = new SlabPool(64, 2);
    const a = pool.take(5);
    const b = pool.take(16);
    const c = pool.take(8);
    expect([a.length, b.length, c.length]).toEqual([5, 16, 8]);
    expect(a.buffer).toBe(b.buffer);
    expect([a.byteOffset, b.byteOffset, c.byteOffset]).toEqual([0, 8, 24]);
    // The next piece does not fit what is left (32 + 40 > 64): a new slab.
    const d = pool.take(40);
    expect(d.buffer).not.toBe(a.buffer);
    expect(pool.allocated).toBe(2);
    expect(() => pool.take(0)).toThrow(RangeError);
    expect(() => pool.take(65)).toThrow(RangeError);
  });

  it('reuses a slab only once every piece of it came back', () => {
    const pool = new SlabPool(64, 2);
    const a = pool.take(32);
    const b = pool.take(32);
    const c = pool.take(32); // a second slab; the first is left behind with two pieces out
    pool.give(a);
    pool.give(a); // twice: ignored, or b's memory would be handed out while b is out
    pool.give(a.subarray(0, 8)); // a view: ignored
    pool.give(Buffer.alloc(32)); // foreign: ignored
    expect(pool.take(32).buffer).toBe(c.buffer); // the second slab's rest
    const e = pool.take(32); // neither slab has room, none is free: a third
    expect(e.buffer).not.toBe(a.buffer);
    expect(pool.allocated).toBe(3);
    pool.give(b); // the first slab is whole again
    const f = pool.take(40); // more than the third slab has left
    expect(f.buffer).toBe(a.buffer);
    expect(f.byteOffset).toBe(0);
    expect(pool.allocated).toBe(3);
  });

  it('starts over in the slab it carves from once all its pieces came back', () => {
    const pool = new SlabPool(64, 2);
    for (let i = 0; i < 100; i++) {
      const p = pool.take(24);
      expect(p.byteOffset).toBe(0);
      pool.give(p);
    }
    expect(pool.allocated).toBe(1);
  });

  it('keeps at most keepMax free slabs', () => {
    const pool = new SlabPool(16, 1);
    const pieces = Array.from({ length: 4 }, () => pool.take(16)); // four slabs
    for (const p of pieces) pool.give(p);
    // The last one is current (starts over); of the three left behind one is kept.
    const again = Array.from({ length: 3 }, () => pool.take(16));
    expect(pool.allocated).toBe(5);
    expect(new Set(again.map((p) => p.buffer)).size).toBe(3);
  });
});

function source(chunks: Buffer[]): Readable {
  let i = 0;
  return new Readable({
    highWaterMark: 16,
    read() {
      const c = chunks[i++];
      setImmediate(() => this.push(c ?? null));
    },
  });
}

async function drain(it: AsyncIterator<Buffer>): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for (;;) {
    const r = await it.next();
    if (r.done === true) return out;
    out.push(r.value);
  }
}

describe('chunksOf', () => {
  it('yields the very buffers that were pushed, in order, joined nowhere', async () => {
    const pushed = Array.from({ length: 20 }, (_, i) => randomBytes(100 + i));
    const got = await drain(chunksOf(source(pushed)));
    expect(got.length).toBe(pushed.length);
    got.forEach((c, i) => expect(c).toBe(pushed[i]));
  });

  it('yields buffers pushed all at once one by one (a Readable iterator would join them)', async () => {
    const pushed = [Buffer.from('a'), Buffer.from('b'), Buffer.from('c')];
    const r = new Readable({ read() {} });
    for (const c of pushed) r.push(c);
    r.push(null);
    const got = await drain(chunksOf(r));
    got.forEach((c, i) => expect(c).toBe(pushed[i]));
  });

  it('pauses its stream once it holds 256 KiB the consumer has not taken', async () => {
    let produced = 0;
    const r = new Readable({
      read() {
        produced += 64 << 10;
        setImmediate(() => this.push(Buffer.alloc(64 << 10)));
      },
    });
    const it = chunksOf(r);
    await it.next();
    for (let i = 0; i < 20; i++) await turn();
    // Bounded: what chunksOf holds (256 KiB) plus the stream's own buffer (16 KiB mark, one push).
    expect(produced).toBeLessThanOrEqual((256 + 64 + 64) << 10);
    expect(r.isPaused()).toBe(true);
    await it.return();
    expect(r.destroyed).toBe(true);
  });

  it('destroys its stream on return() and ends', async () => {
    const r = source([Buffer.from('x'), Buffer.from('y')]);
    const it = chunksOf(r);
    await it.next();
    expect((await it.return()).done).toBe(true);
    expect(r.destroyed).toBe(true);
    expect((await it.next()).done).toBe(true);
  });

  it('rejects with the stream error, after the chunks that came before it', async () => {
    const r = new Readable({ read() {} });
    r.push(Buffer.from('before'));
    const it = chunksOf(r);
    expect((await it.next()).value?.toString()).toBe('before');
    const pending = it.next();
    r.destroy(new Error('boom'));
    await expect(pending).rejects.toThrow('boom');
  });

  it('rejects with ERR_STREAM_PREMATURE_CLOSE when the stream closes before its end', async () => {
    const r = new Readable({ read() {} });
    const it = chunksOf(r);
    const pending = it.next();
    r.destroy();
    await expect(pending).rejects.toMatchObject({ code: 'ERR_STREAM_PREMATURE_CLOSE' });
  });

  it('ends an empty stream at once', async () => {
    const r = new Readable({ read() {} });
    r.push(null);
    expect((await chunksOf(r).next()).done).toBe(true);
  });
});
