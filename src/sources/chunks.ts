/**
 * Read buffers that come back. A server streaming 1 GiB/s of files allocates 4,000 fresh 256 KiB
 * buffers a second; V8 answers that external memory with a full GC every ~30 MiB, and its helper
 * threads then burned as much CPU as the event loop itself (measured on 1 MiB objects: ~45% of
 * the server's CPU). Readers take chunks here; the one consumer that knows when the bytes are
 * gone (the HTTP response, once the socket took them) gives them back. A chunk nobody gives back
 * is simply collected, so a consumer that keeps chunks (the library's own users) loses nothing.
 *
 * Giving back is a promise that nothing else holds the buffer or a view of it: only exact
 * buffers handed out here are taken back, never their views or copies.
 */
import type { Readable } from 'node:stream';

const CHUNK_BYTES = 256 << 10; // one read(2) of a file body (the file source's highWaterMark)
const KEEP_MAX = 64; // free chunks kept for reuse at most (16 MiB)
const ITERATOR_AHEAD = 256 << 10; // bytes chunksOf takes from its stream before it pauses it

export class ChunkPool {
  private readonly free: Buffer[] = [];
  private readonly isFree = new WeakSet<Buffer>();
  private readonly issued = new WeakSet<Buffer>();

  constructor(
    readonly chunkBytes: number,
    private readonly keepMax: number,
  ) {}

  /** A chunk of chunkBytes, recycled when one is free; its contents are whatever was there. */
  take(): Buffer {
    const b = this.free.pop();
    if (b !== undefined) {
      this.isFree.delete(b);
      return b;
    }
    // Slow: a chunk of its own, not a slice of Node's shared 8 KiB pool (which could never come back whole).
    const fresh = Buffer.allocUnsafeSlow(this.chunkBytes);
    this.issued.add(fresh);
    return fresh;
  }

  /** Whether `b` is a chunk of this pool (a consumer decides from it whether to give it back). */
  owns(b: Buffer): boolean {
    return this.issued.has(b);
  }

  /** Takes back a chunk whose bytes nobody needs any more; anything else is ignored. */
  give(b: Buffer): void {
    if (!this.issued.has(b) || this.isFree.has(b) || this.free.length >= this.keepMax) return;
    this.isFree.add(b);
    this.free.push(b);
  }

  /** Free chunks held (for tests and metrics). */
  get freeCount(): number {
    return this.free.length;
  }
}

/** The process's pool of file read chunks. */
export const readChunks = new ChunkPool(CHUNK_BYTES, KEEP_MAX);

/**
 * A byte stream's chunks one at a time, as they were pushed. A Readable's own async iterator
 * calls read() with no size, which joins everything buffered into one new buffer: a copy of
 * every byte, and read chunks that can no longer come back. `return()` destroys the stream;
 * a stream that closes before its end makes next() reject, as Node's iterator does.
 */
export function chunksOf(stream: Readable): AsyncIterator<Buffer> & { return(): Promise<IteratorResult<Buffer>> } {
  const queue: Buffer[] = [];
  let queued = 0;
  let ended = false;
  let failure: Error | undefined;
  let wake: (() => void) | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  stream.on('data', (c: Buffer) => {
    queue.push(c);
    queued += c.length;
    // Taking all that is buffered at once (up to a bound) lets the consumer write it in one
    // turn: an HTTP response corks its socket for a turn, so that becomes one writev.
    if (queued >= ITERATOR_AHEAD) stream.pause();
    notify();
  });
  stream.once('end', () => {
    ended = true;
    notify();
  });
  stream.once('error', (e) => {
    failure ??= e;
    notify();
  });
  stream.once('close', () => {
    if (!ended) failure ??= Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
    notify();
  });
  return {
    async next(): Promise<IteratorResult<Buffer>> {
      for (;;) {
        const c = queue.shift();
        if (c !== undefined) {
          queued -= c.length;
          return { value: c, done: false };
        }
        if (failure !== undefined) throw failure;
        if (ended) return { value: undefined, done: true };
        await new Promise<void>((resolve) => {
          wake = resolve;
          stream.resume();
        });
      }
    },
    return(): Promise<IteratorResult<Buffer>> {
      ended = true;
      queue.length = 0;
      queued = 0;
      if (!stream.destroyed) stream.destroy();
      return Promise.resolve({ value: undefined, done: true });
    },
  };
}
