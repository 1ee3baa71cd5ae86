/**
 * TGZ and TAR.LZ4: the TAR writer's output through a block compressor. Blocks are compressed on
 * the thread pool, a few at a time, and emitted in order, so both cores work:
 * - gzip: every block is a gzip member of its own; concatenated members are one valid gzip
 *   stream for every reader (gzip, tar xz, Python);
 * - lz4: ONE frame (Go's reader and lz4-napi read only the first of several frames), independent
 *   256 KiB blocks (the header allows up to 4 MiB), no checksums, encoded on lz4-napi's block API (it has no streaming one).
 * A failed archive ends in a truncated member or block: `gzip -t` and `lz4 -t` both accept a
 * stream cut at a member or block boundary (no trailer, no end mark) as complete.
 */
import { promisify } from 'node:util';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { gzip as gzipCb } from 'node:zlib';
import { compress as lz4Compress } from 'lz4-napi';
import { failAfterDrain } from './fail.js';
import { TarWriter } from './tar.js';
import type { ArchiveWriter, EntryBody, EntryHeader } from './types.js';

const GZIP_BLOCK = 1 << 20; // bytes of TAR per gzip member
const GZIP_LEVEL = 1; // AIStore's choice: deflate on incompressible bytes is the bottleneck
const LZ4_BLOCK = 256 << 10; // AIStore's block size too; lz4-napi's memory for 4 MiB blocks stays resident (~900 MB RSS per GiB)
const IN_FLIGHT = 2; // blocks compressing at once: one per core
const OUTPUT_HIGH_WATER = 1 << 20; // compressed bytes queued for the consumer

const gzip = promisify(gzipCb);

interface BlockCodec {
  blockSize: number;
  /** Written once, first. */
  prologue: Buffer;
  /** Written once, last, on success only. */
  epilogue: Buffer;
  /** Written on failure: the start of a member/block that never comes. */
  poison: Buffer;
  encode(block: Buffer): Promise<Buffer>;
}

export function gzipCodec(level = GZIP_LEVEL): BlockCodec {
  return {
    blockSize: GZIP_BLOCK,
    prologue: Buffer.alloc(0),
    epilogue: Buffer.alloc(0),
    poison: Buffer.from('1f8b0800000000000003', 'hex'), // a member header, and nothing after
    encode: (block) => gzip(block, { level }),
  };
}

export function lz4Codec(): BlockCodec {
  const uncompressedBit = 0x80000000;
  return {
    blockSize: LZ4_BLOCK,
    // magic; FLG 0x60: version 1, independent blocks, no checksums; BD 0x70: 4 MiB; header checksum
    prologue: Buffer.from('04224d18607073', 'hex'),
    epilogue: Buffer.alloc(4), // end mark
    poison: u32le(16 | uncompressedBit), // a 16-byte block whose bytes never come
    async encode(block) {
      // lz4-napi puts the input length (4 bytes LE) before the raw block.
      const raw = (await lz4Compress(block)).subarray(4);
      return raw.length < block.length ? Buffer.concat([u32le(raw.length), raw]) : Buffer.concat([u32le(block.length | uncompressedBit), block]);
    },
  };
}

function u32le(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
}

class BlockCompressor extends Transform {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private readonly queue: Promise<Buffer>[] = [];
  private failed = false;

  constructor(private readonly codec: BlockCodec) {
    super({ readableHighWaterMark: OUTPUT_HIGH_WATER });
    if (codec.prologue.length > 0) this.push(codec.prologue);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    this.compressBlocks(false).then(() => cb(), cb);
  }

  override _flush(cb: TransformCallback): void {
    this.compressBlocks(true).then(() => {
      if (!this.failed) this.push(this.codec.epilogue);
      cb();
    }, cb);
  }

  fail(err: Error): void {
    if (this.failed) return;
    this.failed = true;
    failAfterDrain(this, this.codec.poison, err);
  }

  private async compressBlocks(final: boolean): Promise<void> {
    const size = this.codec.blockSize;
    while (this.pendingBytes >= size || (final && this.pendingBytes > 0)) {
      const all = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
      const n = Math.min(size, all.length);
      const rest = all.subarray(n);
      this.pending = rest.length > 0 ? [rest] : [];
      this.pendingBytes = rest.length;
      const job = this.codec.encode(all.subarray(0, n));
      job.catch(() => undefined); // awaited in order below
      this.queue.push(job);
      if (this.queue.length >= IN_FLIGHT) this.emitBlock(await this.queue.shift()!);
    }
    if (final) while (this.queue.length > 0) this.emitBlock(await this.queue.shift()!);
  }

  private emitBlock(b: Buffer): void {
    if (!this.failed) this.push(b);
  }
}

/** TAR through a block compressor; everything else is the TAR writer's. */
export class CompressedTarWriter implements ArchiveWriter {
  readonly output: Readable;
  private readonly tar = new TarWriter();
  private readonly compressor: BlockCompressor;

  constructor(codec: BlockCodec) {
    this.compressor = new BlockCompressor(codec);
    this.output = this.compressor;
    this.tar.output.pipe(this.compressor);
    this.tar.output.on('error', (e) => this.compressor.fail(e));
    this.compressor.on('close', () => {
      if (!this.compressor.readableEnded) this.tar.destroy(new Error('archive output closed before the end'));
    });
  }

  add(header: EntryHeader, body: EntryBody, signal: AbortSignal): Promise<void> {
    return this.tar.add(header, body, signal);
  }

  finalize(): Promise<void> {
    return this.tar.finalize();
  }

  destroy(err: Error): void {
    this.tar.output.unpipe(this.compressor);
    this.compressor.fail(err);
    this.tar.destroy(err);
  }
}
