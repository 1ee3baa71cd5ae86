/**
 * A streaming LZ4 frame decoder (https://github.com/lz4/lz4/blob/dev/doc/lz4_Frame_format.md):
 * concatenated frames (what `cat a.lz4 b.lz4` and parallel writers make; Go's reader stops after
 * the first), skippable frames, independent and linked blocks, block and content checksums
 * (verified), and the content size when the header carries it (checked). Blocks are decoded by
 * lz4-napi's block API on the thread pool; for linked blocks the last 64 KiB of output is passed
 * as its dictionary, which is how the format defines them. Legacy frames (`lz4 -l`) and frames
 * that need an external dictionary (a DictID in the header) are refused with a clear error.
 *
 * Memory: one compressed block (at most 4 MiB) plus the 64 KiB history, whatever the input size.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { uncompress } from 'lz4-napi';
import { OjsError } from '../spec/errors.js';

const MAGIC = 0x184d2204;
const LEGACY_MAGIC = 0x184c2102;
const SKIPPABLE_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;
const HISTORY = 64 << 10; // how far back a linked block may reach, by the format
const BLOCK_MAX: Record<number, number> = { 4: 64 << 10, 5: 256 << 10, 6: 1 << 20, 7: 4 << 20 };

/** Decodes LZ4 frames; the output is the concatenated content of every frame. */
export class Lz4FrameDecoder extends Transform {
  private buf: Buffer = Buffer.alloc(0);
  // Chunks not yet joined to `buf`: joining only once a whole block is here keeps a 4 MiB block
  // arriving in 64 KiB chunks from being copied 64 times.
  private more: Buffer[] = [];
  private moreLen = 0;
  private state: State = { at: 'magic' };
  private consumed = 0; // input bytes before `buf`, for error offsets

  constructor() {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.more.push(chunk);
    this.moreLen += chunk.length;
    this.drain().then(() => cb(), cb);
  }

  override _flush(cb: TransformCallback): void {
    this.drain()
      .then(() => {
        const left = this.buf.length + this.moreLen;
        if (this.state.at === 'magic' && left === 0) return cb();
        cb(bad(`ends inside ${describe(this.state)} (${left} bytes left over)`, this.consumed));
      })
      .catch(cb);
  }

  /** Takes what the buffer holds as far as it goes. */
  private async drain(): Promise<void> {
    while (true) {
      const need = this.step();
      if (need === 'wait') return;
      if (need !== 'ok') await need;
    }
  }

  /** True once `n` bytes are here, joined in `buf`. */
  private have(n: number): boolean {
    if (this.buf.length >= n) return true;
    if (this.buf.length + this.moreLen < n) return false;
    this.buf = Buffer.concat([this.buf, ...this.more]);
    this.more = [];
    this.moreLen = 0;
    return true;
  }

  private consume(n: number): Buffer {
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    this.consumed += n;
    return out;
  }

  /** One step of the state machine: 'wait' for more input, 'ok' to go on, or a block to await. */
  private step(): 'wait' | 'ok' | Promise<void> {
    const s = this.state;
    switch (s.at) {
      case 'magic': {
        if (!this.have(4)) return 'wait';
        const magic = this.buf.readUInt32LE(0);
        if (magic === MAGIC) {
          if (!this.have(7)) return 'wait';
          const flg = this.buf[4]!;
          const len = 7 + (flg & 0x08 ? 8 : 0) + (flg & 0x01 ? 4 : 0);
          if (!this.have(len)) return 'wait';
          this.state = this.header(this.consume(len));
          return 'ok';
        }
        if ((magic & SKIPPABLE_MASK) >>> 0 === SKIPPABLE_MAGIC) {
          if (!this.have(8)) return 'wait';
          const size = this.buf.readUInt32LE(4);
          this.consume(8);
          this.state = { at: 'skip', left: size };
          return 'ok';
        }
        if (magic === LEGACY_MAGIC) throw bad('uses the legacy LZ4 format (lz4 -l), which is not read; recompress without -l', this.consumed);
        throw bad(`holds no LZ4 frame here (magic ${magic.toString(16).padStart(8, '0')})`, this.consumed);
      }
      case 'skip': {
        this.have(Math.min(s.left, this.buf.length + this.moreLen));
        const n = Math.min(s.left, this.buf.length);
        this.consume(n);
        s.left -= n;
        if (s.left > 0) return 'wait';
        this.state = { at: 'magic' };
        return 'ok';
      }
      case 'block': {
        const f = s.frame;
        if (!this.have(4)) return 'wait';
        const word = this.buf.readUInt32LE(0);
        if (word === 0) {
          const tail = f.contentChecksum ? 8 : 4;
          if (!this.have(tail)) return 'wait';
          this.consume(4);
          this.endFrame(f, f.contentChecksum ? this.consume(4).readUInt32LE(0) : undefined);
          this.state = { at: 'magic' };
          return 'ok';
        }
        const stored = (word & 0x80000000) !== 0;
        const size = word & 0x7fffffff;
        if (size > f.blockMax) throw bad(`has a block of ${size} bytes, over the frame's maximum of ${f.blockMax}`, this.consumed);
        const total = 4 + size + (f.blockChecksum ? 4 : 0);
        if (!this.have(total)) return 'wait';
        const at = this.consumed;
        const raw = this.consume(total);
        const data = raw.subarray(4, 4 + size);
        if (f.blockChecksum && xxh32(data) !== raw.readUInt32LE(4 + size)) throw bad('has a block whose checksum does not match (corrupt data)', at);
        if (stored) {
          this.output(f, Buffer.from(data));
          return 'ok';
        }
        return this.decodeBlock(f, data, at);
      }
    }
  }

  private header(h: Buffer): State {
    const flg = h[4]!;
    const bd = h[5]!;
    if (flg >> 6 !== 1) throw bad(`has frame version ${flg >> 6}; only version 1 exists`, this.consumed - h.length);
    if ((flg & 0x02) !== 0 || (bd & 0x8f) !== 0) throw bad('sets reserved bits in its frame header', this.consumed - h.length);
    const blockMax = BLOCK_MAX[(bd >> 4) & 0x7];
    if (blockMax === undefined) throw bad(`names an unknown block size (id ${(bd >> 4) & 0x7})`, this.consumed - h.length);
    if (((xxh32(h.subarray(4, h.length - 1)) >>> 8) & 0xff) !== h[h.length - 1]) throw bad('has a frame header whose checksum does not match', this.consumed - h.length);
    if (flg & 0x01) throw bad('needs an external dictionary (DictID set), which is not available', this.consumed - h.length);
    const frame: Frame = {
      linked: (flg & 0x20) === 0,
      blockChecksum: (flg & 0x10) !== 0,
      contentChecksum: (flg & 0x04) !== 0,
      contentSize: flg & 0x08 ? Number(h.readBigUInt64LE(6)) : undefined,
      blockMax,
      produced: 0,
      hash: (flg & 0x04) !== 0 ? new Xxh32() : undefined,
      history: Buffer.alloc(0),
    };
    return { at: 'block', frame };
  }

  private async decodeBlock(f: Frame, data: Buffer, at: number): Promise<void> {
    // lz4-napi wants the output size in front; the frame gives only the maximum, which it
    // accepts as an upper bound and returns what the block really holds.
    const input = Buffer.allocUnsafe(4 + data.length);
    input.writeUInt32LE(f.blockMax, 0);
    data.copy(input, 4);
    let out: Buffer;
    try {
      out = await uncompress(input, f.linked && f.history.length > 0 ? f.history : undefined);
    } catch (e) {
      throw bad(`has a block that does not decode (${(e as Error).message})`, at);
    }
    this.output(f, out);
  }

  private output(f: Frame, out: Buffer): void {
    f.produced += out.length;
    f.hash?.update(out);
    if (f.linked) {
      f.history = out.length >= HISTORY ? Buffer.from(out.subarray(out.length - HISTORY)) : keepTail(f.history, out);
    }
    if (out.length > 0) this.push(out);
  }

  private endFrame(f: Frame, checksum: number | undefined): void {
    if (f.contentSize !== undefined && f.contentSize !== f.produced) {
      throw bad(`frame says it holds ${f.contentSize} bytes but decodes to ${f.produced}`, this.consumed);
    }
    if (checksum !== undefined && f.hash!.digest() !== checksum) throw bad('has a frame whose content checksum does not match (corrupt data)', this.consumed);
  }
}

interface Frame {
  linked: boolean;
  blockChecksum: boolean;
  contentChecksum: boolean;
  contentSize?: number;
  blockMax: number;
  produced: number;
  hash?: Xxh32;
  history: Buffer;
}

type State = { at: 'magic' } | { at: 'skip'; left: number } | { at: 'block'; frame: Frame };

function describe(s: State): string {
  return s.at === 'magic' ? 'a frame header' : s.at === 'skip' ? 'a skippable frame' : 'a block';
}

function keepTail(history: Buffer, out: Buffer): Buffer {
  const all = Buffer.concat([history, out]);
  return all.length <= HISTORY ? all : Buffer.from(all.subarray(all.length - HISTORY));
}

function bad(why: string, offset: number): OjsError {
  return new OjsError('BadSpec', `LZ4 input ${why} (at input byte ${offset})`, { code: 'ERR_BAD_LZ4' });
}

// xxHash32 (https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md), the checksum of
// LZ4 frames: header, blocks and content, all with seed 0.
const P1 = 0x9e3779b1;
const P2 = 0x85ebca77;
const P3 = 0xc2b2ae3d;
const P4 = 0x27d4eb2f;
const P5 = 0x165667b1;

function rotl(x: number, r: number): number {
  return ((x << r) | (x >>> (32 - r))) >>> 0;
}

function round(acc: number, lane: number): number {
  return Math.imul(rotl((acc + Math.imul(lane, P2)) >>> 0, 13), P1) >>> 0;
}

/** xxHash32 of a buffer, seed 0. */
export function xxh32(b: Buffer): number {
  const h = new Xxh32();
  h.update(b);
  return h.digest();
}

/** Streaming xxHash32, seed 0. */
export class Xxh32 {
  private v = [(P1 + P2) >>> 0, P2, 0, (0 - P1) >>> 0];
  private total = 0;
  private tail = Buffer.alloc(16);
  private tailLen = 0;

  update(b: Buffer): void {
    this.total += b.length;
    let p = 0;
    if (this.tailLen > 0) {
      const n = Math.min(16 - this.tailLen, b.length);
      b.copy(this.tail, this.tailLen, 0, n);
      this.tailLen += n;
      p = n;
      if (this.tailLen < 16) return;
      this.stripe(this.tail, 0);
      this.tailLen = 0;
    }
    const v = this.v;
    for (; p + 16 <= b.length; p += 16) {
      v[0] = round(v[0]!, b.readUInt32LE(p));
      v[1] = round(v[1]!, b.readUInt32LE(p + 4));
      v[2] = round(v[2]!, b.readUInt32LE(p + 8));
      v[3] = round(v[3]!, b.readUInt32LE(p + 12));
    }
    if (p < b.length) {
      b.copy(this.tail, 0, p);
      this.tailLen = b.length - p;
    }
  }

  private stripe(b: Buffer, p: number): void {
    const v = this.v;
    for (let i = 0; i < 4; i++) v[i] = round(v[i]!, b.readUInt32LE(p + 4 * i));
  }

  digest(): number {
    const v = this.v;
    let h = this.total >= 16 ? (rotl(v[0]!, 1) + rotl(v[1]!, 7) + rotl(v[2]!, 12) + rotl(v[3]!, 18)) >>> 0 : P5;
    h = (h + this.total) >>> 0;
    let p = 0;
    const t = this.tail;
    for (; p + 4 <= this.tailLen; p += 4) h = Math.imul(rotl((h + Math.imul(t.readUInt32LE(p), P3)) >>> 0, 17), P4) >>> 0;
    for (; p < this.tailLen; p++) h = Math.imul(rotl((h + Math.imul(t[p]!, P5)) >>> 0, 11), P1) >>> 0;
    h = Math.imul(h ^ (h >>> 15), P2) >>> 0;
    h = Math.imul(h ^ (h >>> 13), P3) >>> 0;
    return (h ^ (h >>> 16)) >>> 0;
  }
}
