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
 *
 * The pool keeps as many free chunks as a batch has out at once, or more: a batch at full
 * read-ahead holds its 16 MiB window, 256 KiB for each entry opened ahead, and what its writer
 * has in hand, ~160 chunks for 1 MiB files. Keeping fewer (64) made every such batch allocate
 * anew what it had just dropped: 1,000 x 1 MiB through `serve`, 2,700 fresh chunks in 11
 * batches against 100, and 1.6 against 2.1 GiB/s. What is kept never exceeds what was out at
 * once, so peak memory does not grow; an idle server holds at most KEEP_MAX chunks.
 */
import type { Readable } from 'node:stream';

const CHUNK_BYTES = 256 << 10; // one read(2) of a file body (the file source's highWaterMark)
const KEEP_MAX = 256; // free bytes kept for reuse at most, in full chunks (64 MiB): a batch of large files holds ~160 at once (see below)
const SIZE_CLASSES = 3; // 256, 128 and 64 KiB: a 100 KiB body takes a 128 KiB chunk, not a fresh buffer
const ITERATOR_AHEAD = 256 << 10; // bytes chunksOf takes from its stream before it pauses it
const FILL_HOLD_MS = 10; // a part-filled chunk goes on after this long: a slow upstream's bytes must not wait for 256 KiB (the idle timeout watches them)
const SLAB_BYTES = 1 << 20; // small bodies are carved from slabs of this size: one allocation for many files
const SLABS_KEPT = 8; // free slabs kept for reuse at most (8 MiB)

export class ChunkPool {
  // One free list per size class: chunkBytes, and halves of it down to chunkBytes / 2^(CLASSES-1).
  private readonly free: Buffer[][] = Array.from({ length: SIZE_CLASSES }, () => []);
  private freeBytes = 0;
  private allocatedCount = 0;
  private readonly isFree = new WeakSet<Buffer>();
  private readonly issued = new WeakSet<Buffer>();
  // A body shorter than its class gets a view of the class's chunk; the view is what comes back.
  private readonly views = new WeakMap<Buffer, Buffer>();

  constructor(
    readonly chunkBytes: number,
    private readonly keepMax: number,
  ) {}

  /** The smallest size this pool hands out chunks for; below it, allocate (or carve from a slab). */
  get minBytes(): number {
    return this.chunkBytes >>> (SIZE_CLASSES - 1);
  }

  /**
   * A buffer of `n` bytes (default chunkBytes, at most that), recycled when one is free; its
   * contents are whatever was there. Under chunkBytes it is a view of the next size class up.
   */
  take(n = this.chunkBytes): Buffer {
    if (!(n > 0 && n <= this.chunkBytes)) throw new RangeError(`a chunk of ${n} bytes: this pool hands out 1 to ${this.chunkBytes}`);
    let c = 0;
    while (c < SIZE_CLASSES - 1 && n <= this.chunkBytes >>> (c + 1)) c++;
    const size = this.chunkBytes >>> c;
    let b = this.free[c]!.pop();
    if (b !== undefined) {
      this.isFree.delete(b);
      this.freeBytes -= size;
    } else {
      // Slow: a chunk of its own, not a slice of Node's shared 8 KiB pool (which could never come back whole).
      b = Buffer.allocUnsafeSlow(size);
      this.issued.add(b);
      this.allocatedCount++;
    }
    return this.viewOf(b, n);
  }

  /** The first `n` bytes of a chunk taken here, as a buffer that comes back as the chunk would. */
  viewOf(chunk: Buffer, n: number): Buffer {
    if (!this.issued.has(chunk)) throw new RangeError('viewOf: not a chunk of this pool');
    if (n === chunk.length) return chunk;
    const view = chunk.subarray(0, n);
    this.views.set(view, chunk);
    return view;
  }

  /** Whether `b` came from this pool (a consumer decides from it whether to give it back). */
  owns(b: Buffer): boolean {
    return this.issued.has(b) || this.views.has(b);
  }

  /** Takes back a buffer whose bytes nobody needs any more; anything not handed out is ignored. */
  give(b: Buffer): void {
    const chunk = this.issued.has(b) ? b : this.views.get(b);
    if (chunk === undefined || this.isFree.has(chunk)) return;
    this.views.delete(b);
    if (this.freeBytes + chunk.length > this.keepMax * this.chunkBytes) return;
    this.isFree.add(chunk);
    this.freeBytes += chunk.length;
    this.free[Math.round(Math.log2(this.chunkBytes / chunk.length))]!.push(chunk);
  }

  /** Chunks allocated afresh so far, not reused (for tests and metrics). */
  get allocated(): number {
    return this.allocatedCount;
  }

  /** Free chunks held (for tests and metrics). */
  get freeCount(): number {
    return this.free.reduce((a, l) => a + l.length, 0);
  }
}

/** The process's pool of file read chunks. */
export const readChunks = new ChunkPool(CHUNK_BYTES, KEEP_MAX);

interface Slab {
  buf: Buffer;
  used: number;
  live: number; // pieces handed out and not given back
}

/**
 * Memory for small bodies, carved from slabs: allocating each file's buffer on its own costs more
 * than reading it. A slab whose every piece came back is used again: fresh memory costs a page
 * fault per 4 KiB on first touch (10,000 x 10 KiB files through the engine, 6 A/B pairs: 17,000-
 * 20,000 minor faults and 0.63-0.78 s with a fresh slab per MiB, 9,700-11,000 and 0.48-0.54 s with
 * slabs reused). The TAR writer gives a piece back once it copied it. A piece nobody gives back
 * keeps its slab out of reuse, and the GC takes the slab once no piece of it is referenced.
 */
export class SlabPool {
  private current: Slab | undefined;
  private readonly free: Slab[] = [];
  private readonly owner = new WeakMap<Buffer, Slab>();
  private allocatedCount = 0;

  constructor(
    readonly slabBytes: number,
    private readonly keepMax: number,
  ) {}

  /** `n` bytes (at most slabBytes), contents undefined; 8-byte aligned. */
  take(n: number): Buffer {
    if (!(n > 0 && n <= this.slabBytes)) throw new RangeError(`a piece of ${n} bytes: slabs hand out 1 to ${this.slabBytes}`);
    let s = this.current;
    if (s === undefined || s.used + n > s.buf.length) {
      // The slab left behind is reused once its last piece comes back (give).
      s = this.free.pop();
      if (s === undefined) {
        s = { buf: Buffer.allocUnsafeSlow(this.slabBytes), used: 0, live: 0 };
        this.allocatedCount++;
      }
      this.current = s;
    }
    const piece = s.buf.subarray(s.used, s.used + n);
    s.used += (n + 7) & ~7;
    s.live++;
    this.owner.set(piece, s);
    return piece;
  }

  /** Takes back a piece whose bytes nobody needs any more (the same promise as ChunkPool.give); others are ignored. */
  give(piece: Buffer): void {
    const s = this.owner.get(piece);
    if (s === undefined) return;
    this.owner.delete(piece);
    if (--s.live > 0) return;
    s.used = 0;
    if (s !== this.current && this.free.length < this.keepMax) this.free.push(s);
  }

  /** Slabs allocated afresh so far (for tests and metrics). */
  get allocated(): number {
    return this.allocatedCount;
  }
}

/** The process's slabs for small file bodies. */
export const smallBodies = new SlabPool(SLAB_BYTES, SLABS_KEPT);

/**
 * A small body's pieces (`n` bytes in all) as one buffer: a chunk of the pool when the pieces
 * must be joined anyway and fit one (the same copy as Buffer.concat, into memory that comes back
 * once written), else the one piece or a plain concat.
 */
export function joinPieces(pieces: Buffer[], n: number): Buffer {
  if (pieces.length === 1) return pieces[0]!;
  if (n < readChunks.minBytes || n > readChunks.chunkBytes) return Buffer.concat(pieces, n);
  const out = readChunks.take(n);
  let at = 0;
  for (const p of pieces) at += p.copy(out, at);
  return out;
}

/**
 * Copies a network body's pieces into read chunks of the pool as they arrive and hands each one
 * on when full, or part-filled once FILL_HOLD_MS passed without it filling. An HTTP client or SDK
 * hands over a fresh buffer per socket read; held in a batch's read-ahead window those live long
 * enough to need full collections (1 MiB objects from nginx through `serve`: GC was a fifth of
 * its CPU). Copied at once they die young, and the chunks come back once written.
 */
export class ChunkFiller {
  private chunk: Buffer | undefined;
  private filled = 0;
  private hold: NodeJS.Timeout | undefined;
  private closed = false;

  /** `emit` gets each chunk once nobody here holds it (it may close the filler from inside). */
  constructor(private readonly emit: (chunk: Buffer) => void) {}

  add(piece: Buffer): void {
    for (let at = 0; at < piece.length && !this.closed; ) {
      if (this.chunk === undefined) {
        this.chunk = readChunks.take();
        this.hold = setTimeout(() => this.flush(), FILL_HOLD_MS);
        this.hold.unref();
      }
      const n = piece.copy(this.chunk, this.filled, at);
      this.filled += n;
      at += n;
      if (this.filled === this.chunk.length) this.flush();
    }
  }

  /** Hands on the chunk being filled, if any (at the body's end, or after a break). */
  flush(): void {
    clearTimeout(this.hold);
    if (this.chunk === undefined || this.closed) return;
    const out = readChunks.viewOf(this.chunk, this.filled);
    // Let go first: emit may close the filler, which gives back what it still holds.
    this.chunk = undefined;
    this.filled = 0;
    this.emit(out);
  }

  /** Stops: the chunk being filled (seen by nobody) goes back to the pool. */
  close(): void {
    this.closed = true;
    clearTimeout(this.hold);
    if (this.chunk !== undefined) readChunks.give(this.chunk);
    this.chunk = undefined;
  }
}

/**
 * A byte stream's chunks one at a time, as they were pushed. A Readable's own async iterator
 * calls read() with no size, which joins everything buffered into one new buffer: a copy of
 * every byte, and read chunks that can no longer come back. `return()` destroys the stream;
 * a stream that closes before its end makes next() reject, as Node's iterator does.
 */
export function chunksOf(stream: Readable): AsyncIterator<Buffer> & { return(): Promise<IteratorResult<Buffer>>; takeQueued(): Buffer | undefined } {
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
    /** The next chunk if it is already here, without waiting: a writer takes these in the same turn. */
    takeQueued(): Buffer | undefined {
      const c = queue.shift();
      if (c !== undefined) queued -= c.length;
      return c;
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
