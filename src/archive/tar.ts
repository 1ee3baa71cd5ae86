/**
 * The TAR writer. It frames entries itself (headers from tar-header.ts) so that it always knows
 * where its output stands; that is what makes a failed archive safe: on destroy it ends the bytes
 * it hands out inside an entry (cutting a body short, or adding a header whose body never comes),
 * never at an entry boundary, so GNU tar, Python's tarfile and friends report a truncated
 * archive even if the consumer ignores the stream error. Then the stream errors.
 */
import { Readable } from 'node:stream';
import { readChunks, smallBodies } from '../sources/chunks.js';
import { OjsError, abortedError } from '../spec/errors.js';
import { failAfterDrain } from './fail.js';
import { BLOCK_SIZE, encodeHeaders, padding } from './tar-header.js';
import type { ArchiveWriter, EntryBody, EntryHeader } from './types.js';

const OUTPUT_HIGH_WATER = 256 << 10; // bytes queued for the consumer before add() waits
const COALESCE_BELOW = 64 << 10; // chunks smaller than this are copied into one output chunk (a read chunk, 256 KiB): one consumer write per many small entries
const EPOCH = new Date(0);
const FILE_MODE = 0o644;
const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK_SIZE);
const ZEROS = Buffer.alloc(BLOCK_SIZE); // padding is copied out of it, never handed on
const POISON_NAME = '__ojs-ml__/BATCH-FAILED-ARCHIVE-INCOMPLETE';

export class TarWriter implements ArchiveWriter {
  readonly output: Readable;
  private failure: Error | undefined;
  private finalized = false;
  private readonly waiters: (() => void)[] = [];
  /** Body bytes still owed by the entry being written; 0 between entries. */
  private owed = 0;
  private owedPadding = 0;
  // Small pieces are copied into a read chunk, which a consumer that gives chunks back recycles
  // (fresh 256 KiB buffers for every 256 KiB of small entries were most of such a batch's garbage).
  private staged: Buffer | undefined;
  private stagedBytes = 0;
  private flushTimer: NodeJS.Immediate | undefined;

  constructor() {
    this.output = new Readable({
      highWaterMark: OUTPUT_HIGH_WATER,
      read: () => this.wakeAll(),
      destroy: (err, cb) => {
        // After a clean end the stream destroys itself: no failure (nor an Error's stack trace) then.
        if (this.failure === undefined && (err !== null || !this.output.readableEnded)) this.failure = err ?? new OjsError('Aborted', 'archive output closed before the end');
        this.wakeAll();
        cb(err);
      },
    });
  }

  async add(h: EntryHeader, body: EntryBody, signal: AbortSignal): Promise<void> {
    this.check(signal);
    if (this.finalized) throw new OjsError('Internal', 'archive already finalized');
    if (!Number.isSafeInteger(h.size) || h.size < 0) throw new OjsError('Internal', `archive entry '${h.name}': bad size ${h.size}`);
    await this.put(encodeHeaders({ name: h.name, size: h.size, mtime: h.mtime ?? EPOCH, mode: h.mode ?? FILE_MODE }), signal);
    this.owed = h.size;
    this.owedPadding = padding(h.size);
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        if (chunk.length > this.owed) throw sizeMismatch(h, `more than ${h.size} bytes`);
        this.owed -= chunk.length;
        await this.put(chunk, signal);
      }
      if (this.owed !== 0) throw sizeMismatch(h, `${h.size - this.owed} bytes`);
      if (this.owedPadding > 0) await this.put(ZEROS.subarray(0, this.owedPadding), signal);
      this.owedPadding = 0;
      // Small entries that are ready back to back share output chunks; one that is not ready
      // must not hold the previous ones back from a streaming consumer.
      if (this.stagedBytes > 0 && this.flushTimer === undefined) {
        this.flushTimer = setImmediate(() => {
          this.flushTimer = undefined;
          this.flushStaged();
        });
      }
    } catch (e) {
      const err = signal.aborted ? abortedError(signal) : (e as Error);
      this.destroy(err);
      throw err;
    }
  }

  async finalize(): Promise<void> {
    this.check();
    this.finalized = true;
    this.flushStaged();
    this.output.push(END_OF_ARCHIVE);
    this.output.push(null);
  }

  destroy(err: Error): void {
    if (this.failure !== undefined || this.output.destroyed) return;
    this.failure = err;
    this.wakeAll();
    if (this.finalized) return;
    this.flushStaged();
    failAfterDrain(this.output, this.poison(), err);
  }

  /** Bytes that leave the archive inside an entry, so that no reader can take it for complete. */
  private poison(): Buffer {
    if (this.owed > 0) return Buffer.alloc(0); // a body is already cut short
    const parts: Buffer[] = [Buffer.alloc(this.owedPadding)];
    parts.push(encodeHeaders({ name: POISON_NAME, size: BLOCK_SIZE, mtime: EPOCH, mode: FILE_MODE }));
    this.owedPadding = 0;
    return Buffer.concat(parts);
  }

  private flushStaged(): void {
    if (this.staged === undefined || this.stagedBytes === 0) return;
    const chunk = readChunks.viewOf(this.staged, this.stagedBytes);
    this.staged = undefined;
    this.stagedBytes = 0;
    this.output.push(chunk);
  }

  private async put(chunk: Buffer, signal: AbortSignal): Promise<void> {
    this.check(signal);
    if (chunk.length < COALESCE_BELOW) {
      if (this.staged !== undefined && this.stagedBytes + chunk.length > this.staged.length) this.flushStaged();
      this.staged ??= readChunks.take();
      chunk.copy(this.staged, this.stagedBytes);
      this.stagedBytes += chunk.length;
      // Copied, the piece is done with (the engine hands bodies over; see ChunkPool.give): a small
      // file's slab piece, or the short end of a network body's read chunk, which was otherwise
      // lost to the pool (1 MiB objects from nginx, a fresh process: ~200 of 400 chunks).
      smallBodies.give(chunk);
      readChunks.give(chunk);
      if (this.stagedBytes === this.staged.length) {
        chunk = this.staged;
        this.staged = undefined;
        this.stagedBytes = 0;
        this.output.push(chunk);
      }
    } else {
      this.flushStaged();
      this.output.push(chunk);
    }
    // The output's length, not one push's answer: staged chunks are pushed from several places,
    // and a writer that only heeded its own pushes ran a whole batch of small entries ahead of a
    // consumer that had stopped reading (1,000 x 10 KiB: all 11 MB buffered).
    if (this.output.readableLength < OUTPUT_HIGH_WATER) return;
    await new Promise<void>((resolve) => {
      const onAbort = () => resolve();
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      });
    });
    this.check(signal);
  }

  private wakeAll(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  private check(signal?: AbortSignal): void {
    if (this.failure !== undefined) throw this.failure;
    if (signal?.aborted) throw abortedError(signal);
  }
}

function sizeMismatch(h: EntryHeader, got: string): OjsError {
  return new OjsError('SizeMismatch', `archive entry '${h.name}': expected ${h.size} bytes, got ${got}`);
}
