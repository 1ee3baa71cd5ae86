/**
 * Holds a whole archive so that a multipart response can send the metadata first (it is known
 * only once the archive is complete). The first `memoryBytes` stay in memory; the rest goes to a
 * temporary file in `dir`, unlinked as soon as it is created: its space is freed when the handle
 * closes, also if the process dies, and no name is left behind for anyone to read.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import type { BytePool } from '../batch/pool.js';
import { OjsError, throwIfAborted } from '../spec/errors.js';

const READ_CHUNK = 256 << 10; // bytes per read of the file part, and per chunk handed on
const WRITE_HIGH_WATER = 256 << 10; // archive bytes queued in front of the spool before the engine waits

export interface SpoolOptions {
  /** Bytes kept in memory before spilling to a file. */
  memoryBytes: number;
  /** Directory for the temporary file (os.tmpdir() by default, chosen by the caller). */
  dir: string;
  /** Bytes past which writing fails with ERR_LIMIT_BATCH_BYTES. */
  maxBytes: number;
  /** Called once, when the spool starts a file. */
  onSpill?: () => void;
  /** Memory shared with other spools: past it, this one spills even below `memoryBytes`. */
  pool?: BytePool;
}

export class Spool {
  private readonly mem: Buffer[] = [];
  private memBytes = 0;
  private file: fs.promises.FileHandle | undefined;
  /** Set only when the file could not be unlinked at once (not POSIX): removed at dispose. */
  private leftover: string | undefined;
  private fileBytes = 0;
  private disposed = false;
  /** The write in progress: a pipeline that fails does not wait for it, dispose must. */
  private pending: Promise<void> | undefined;

  constructor(private readonly opts: SpoolOptions) {}

  get size(): number {
    return this.memBytes + this.fileBytes;
  }

  get spilled(): boolean {
    return this.file !== undefined;
  }

  /** Where the archive is written; one per spool. */
  writable(): Writable {
    return new Writable({
      highWaterMark: WRITE_HIGH_WATER,
      write: (chunk: Buffer, _enc, cb) => {
        this.pending = this.append(chunk);
        this.pending.then(() => cb(), cb);
      },
    });
  }

  private async append(chunk: Buffer): Promise<void> {
    if (this.disposed) throw new OjsError('Aborted', 'spool already disposed');
    if (this.size + chunk.length > this.opts.maxBytes) {
      throw new OjsError('BadSpec', `the batch's archive is larger than this server's limit of ${this.opts.maxBytes} bytes`, {
        code: 'ERR_LIMIT_BATCH_BYTES',
      });
    }
    if (this.file === undefined && this.memBytes + chunk.length <= this.opts.memoryBytes && (this.opts.pool?.tryTake(chunk.length) ?? true)) {
      // A view into a larger slab would keep all of it alive: copy those, keep the others.
      this.mem.push(chunk.byteLength < chunk.buffer.byteLength ? Buffer.from(chunk) : chunk);
      this.memBytes += chunk.length;
      return;
    }
    const file = this.file ?? (await this.openFile());
    let done = 0;
    while (done < chunk.length) {
      const { bytesWritten } = await file.write(chunk, done, chunk.length - done, this.fileBytes);
      done += bytesWritten;
      this.fileBytes += bytesWritten;
    }
  }

  private async openFile(): Promise<fs.promises.FileHandle> {
    const name = path.join(this.opts.dir, `ojs-ml-spool-${process.pid}-${randomBytes(8).toString('hex')}.tmp`);
    const file = await fs.promises.open(name, 'wx+', 0o600);
    this.file = file;
    await fs.promises.unlink(name).catch(() => {
      this.leftover = name;
    });
    this.opts.onSpill?.();
    return file;
  }

  /** The archive as written, checked to be exactly `size` bytes. */
  read(signal: AbortSignal): AsyncGenerator<Buffer> {
    return this.chunks(signal);
  }

  private async *chunks(signal: AbortSignal): AsyncGenerator<Buffer> {
    for (const c of this.mem) {
      throwIfAborted(signal);
      yield c;
    }
    const file = this.file;
    if (file === undefined) return;
    let pos = 0;
    while (pos < this.fileBytes) {
      throwIfAborted(signal);
      const want = Math.min(READ_CHUNK, this.fileBytes - pos);
      const buf = Buffer.allocUnsafe(want);
      const { bytesRead } = await file.read(buf, 0, want, pos);
      if (bytesRead === 0) throw new OjsError('Internal', `spool file ended ${this.fileBytes - pos} bytes early`, { code: 'ERR_SPOOL' });
      pos += bytesRead;
      yield bytesRead === want ? buf : buf.subarray(0, bytesRead);
    }
  }

  /** Frees the memory and closes (so frees) the file; safe to call more than once. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.pending?.catch(() => undefined);
    this.mem.length = 0;
    this.opts.pool?.give(this.memBytes);
    const file = this.file;
    this.file = undefined;
    await file?.close().catch(() => undefined);
    if (this.leftover !== undefined) await fs.promises.rm(this.leftover, { force: true });
  }
}
