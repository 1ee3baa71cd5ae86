/**
 * A Writable for stdout whose writes run on libuv's thread pool with blocking calls.
 *
 * process.stdout writes to a pipe synchronously, so while the reader of the pipe is slow the
 * event loop stops, and with it every read in flight. Once anything touches process.stdout, Node
 * makes a pipe on fd 1 non-blocking, and O_NONBLOCK belongs to the open file description, so a
 * pipe is opened afresh (Linux /proc) to get blocking writes that wait on a pool thread instead.
 * (A worker thread did the same before; its own V8 heap and message copies cost ~110 MiB of RSS.)
 */
import * as fs from 'node:fs';
import { Writable } from 'node:stream';
import { readChunks } from '../src/sources/chunks.js';

const MAX_QUEUED = 8 << 20; // bytes accepted and not yet written; write() is held back beyond
const MAX_IOV = 64; // buffers per writev call
const EAGAIN_WAIT_MS = 1; // a non-blocking fd we could not reopen (socket) is retried this often
const DESTROY_GRACE_MS = 10_000; // how long a destroyed writer may take to write what it was given

export class FdWriter extends Writable {
  private readonly fd: number;
  private readonly ownFd: boolean;
  private readonly queue: Buffer[] = [];
  private headOrigin: Buffer | undefined; // what queue[0] is the unwritten rest of, after a partial write
  private queued = 0;
  private writing = false;
  private writeError: Error | undefined;
  private waiting: ((err?: Error | null) => void) | undefined;
  private idle: (() => void) | undefined;

  constructor(fd: number) {
    super({ highWaterMark: 1 << 20 });
    let own = -1;
    try {
      if (fs.fstatSync(fd).isFIFO()) own = fs.openSync(`/proc/self/fd/${fd}`, fs.constants.O_WRONLY);
    } catch {
      // not Linux, or no /proc: EAGAIN is waited out below
    }
    this.ownFd = own >= 0;
    this.fd = own >= 0 ? own : fd;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.accept([chunk], cb);
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    this.accept(
      chunks.map((c) => c.chunk),
      cb,
    );
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.whenIdle(() => cb(this.writeError));
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // Bytes already accepted are written first: a failed archive's last bytes are what make it
    // invalid for its reader (see src/archive/fail.ts).
    const close = () => {
      this.queue.length = 0;
      this.headOrigin = undefined;
      if (this.ownFd) fs.close(this.fd, () => cb(err));
      else cb(err);
    };
    if (this.writeError !== undefined || (!this.writing && this.queued === 0)) return close();
    const timer = setTimeout(close, DESTROY_GRACE_MS);
    this.whenIdle(() => {
      clearTimeout(timer);
      close();
    });
  }

  private accept(chunks: Buffer[], cb: (err?: Error | null) => void): void {
    if (this.writeError !== undefined) return cb(this.writeError);
    for (const c of chunks) {
      this.queue.push(c);
      this.queued += c.length;
    }
    this.pump();
    if (this.queued < MAX_QUEUED) cb();
    else this.waiting = cb;
  }

  private whenIdle(fn: () => void): void {
    if (!this.writing && this.queued === 0) return fn();
    this.idle = fn;
  }

  private pump(): void {
    if (this.writing || this.queue.length === 0 || this.writeError !== undefined) return;
    this.writing = true;
    const iov = this.queue.slice(0, MAX_IOV);
    fs.writev(this.fd, iov, (err, written) => {
      this.writing = false;
      if (err !== null) {
        if (err.code === 'EAGAIN') {
          setTimeout(() => this.pump(), EAGAIN_WAIT_MS);
          return;
        }
        return this.fail(err);
      }
      this.consume(written);
      if (this.waiting !== undefined && this.queued < MAX_QUEUED) {
        const w = this.waiting;
        this.waiting = undefined;
        w();
      }
      if (this.queue.length > 0) return this.pump();
      const f = this.idle;
      this.idle = undefined;
      f?.();
    });
  }

  /**
   * Drops `n` written bytes from the head of the queue; a partly written buffer keeps its rest.
   * A file read chunk whose bytes are all written goes back to its pool (see src/sources/chunks.ts):
   * the writer is the archive's last consumer.
   */
  private consume(n: number): void {
    this.queued -= n;
    while (n > 0) {
      const head = this.queue[0]!;
      if (head.length <= n) {
        n -= head.length;
        this.queue.shift();
        readChunks.give(this.headOrigin ?? head);
        this.headOrigin = undefined;
      } else {
        this.headOrigin ??= head;
        this.queue[0] = head.subarray(n);
        n = 0;
      }
    }
  }

  private fail(err: Error): void {
    this.writeError = err;
    const w = this.waiting ?? this.idle;
    this.waiting = this.idle = undefined;
    if (w !== undefined) w(err);
    else this.destroy(err);
  }
}
