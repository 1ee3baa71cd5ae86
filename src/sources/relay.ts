/**
 * A Readable that passes on the bytes of another one, with backpressure both ways: the inner
 * stream is paused whenever our buffer is full and resumed when the consumer reads. Destroying
 * the relay destroys the inner stream (which closes an upstream socket); an inner error
 * destroys the relay unless a subclass handles it (the retry layer reopens instead).
 *
 * Every remote body is one of these, so "destroy reaches both ends" is written once. A layer
 * that only watches a body (error context, idle timeout, metrics) adds a tap to it instead of
 * wrapping it in another stream: each stream a chunk passes costs more than the watching.
 */
import { Readable } from 'node:stream';

const RELAY_HIGH_WATER = 64 << 10; // bytes a relay holds before it pauses its inner stream: one socket read

/** What a layer may watch on a body; every hook is optional. */
export interface RelayTap {
  /** The consumer wants more bytes (a read reached the inner stream). */
  read?(): void;
  /** The consumer paused: it wants no bytes until the next read. */
  pause?(): void;
  /** A chunk of this many bytes was passed on. */
  chunk?(bytes: number): void;
  /** The body failed with `e`: returns the error to fail with instead (context), or nothing. */
  error?(e: Error): Error | undefined;
  /** The body is done: ended (null), failed or destroyed. Called once. */
  close?(err: Error | null, ended: boolean): void;
}

/**
 * A Readable fed by something it can stop: pausing it stops the feed at once, and the reads Node
 * makes to fill the buffer up to the high-water mark (it makes them even while paused) do not
 * restart it. Left to backpressure alone, every stream of a chain took one more chunk before
 * pausing the one that feeds it, so a batch's paused bodies each held a chunk per stage (1 MiB
 * objects over HTTP, 64 bodies open: ~40 MiB beyond the read-ahead window).
 */
export abstract class FedReadable extends Readable {
  private held = false; // paused by its consumer, not merely full

  /** More bytes are wanted: let the feed go on. */
  protected abstract feed(): void;
  /** The consumer paused: stop the feed. */
  protected abstract stopFeed(): void;

  override pause(): this {
    this.held = true;
    super.pause();
    this.stopFeed();
    return this;
  }

  override resume(): this {
    const held = this.held;
    this.held = false;
    super.resume();
    // A read that came while held fed nothing, and Node asks again only after a push.
    if (held) this.feed();
    return this;
  }

  override read(n?: number): unknown {
    // A consumer's own read (Node's read-ahead reads 0 bytes) wants bytes, paused or not: an
    // async iterator over a paused stream never calls resume().
    if (n !== 0 && this.held) {
      this.held = false;
      this.feed();
    }
    return super.read(n);
  }

  override _read(): void {
    if (!this.held) this.feed();
  }
}

export class Relay extends FedReadable {
  protected inner: Readable | undefined;
  private taps: RelayTap[] = [];
  private readonly handlers: {
    data: (c: Buffer) => void;
    end: () => void;
    error: (e: Error) => void;
  };

  constructor(inner?: Readable) {
    super({ highWaterMark: RELAY_HIGH_WATER });
    this.handlers = {
      data: (c) => {
        const out = this.onChunk(c);
        if (out !== undefined) this.pass(out);
      },
      end: () => this.onInnerEnd(),
      error: (e) => this.onInnerError(e),
    };
    if (inner !== undefined) this.attach(inner);
  }

  /** Adds a watcher; taps see chunks and errors in the order they were added. */
  tap(t: RelayTap): this {
    this.taps.push(t);
    return this;
  }

  /** Fails the body with `e`, as the taps map it (a layer's idle timer fails the body this way). */
  fail(e: Error): void {
    let err = e;
    for (const t of this.taps) err = t.error?.(err) ?? err;
    this.destroy(err);
  }

  /** Starts relaying `inner` (after `detach`, when a subclass switches streams). */
  protected attach(inner: Readable): void {
    this.inner = inner;
    inner.on('data', this.handlers.data);
    inner.once('end', this.handlers.end);
    inner.on('error', this.handlers.error);
    if (this.destroyed) inner.destroy();
  }

  /** Stops listening to the inner stream and destroys it; returns nothing of it. */
  protected detach(): void {
    const inner = this.inner;
    if (inner === undefined) return;
    this.inner = undefined;
    inner.off('data', this.handlers.data);
    inner.off('end', this.handlers.end);
    // Keep swallowing errors: a destroyed socket may still report one.
    inner.off('error', this.handlers.error);
    inner.on('error', () => undefined);
    inner.destroy();
  }

  /** Passes bytes on (what onChunk returns goes here too), pausing the inner stream when our buffer is full. */
  protected pass(out: Buffer): void {
    for (const t of this.taps) t.chunk?.(out.length);
    if (!this.push(out)) this.inner?.pause();
  }

  /** A chunk from the inner stream; returns what to pass on (undefined: nothing). */
  protected onChunk(chunk: Buffer): Buffer | undefined {
    return chunk;
  }

  protected onInnerEnd(): void {
    this.push(null);
  }

  protected onInnerError(e: Error): void {
    this.fail(e);
  }

  protected feed(): void {
    for (const t of this.taps) t.read?.();
    this.inner?.resume();
  }

  protected stopFeed(): void {
    for (const t of this.taps) t.pause?.();
    this.inner?.pause();
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.detach();
    const taps = this.taps;
    this.taps = [];
    for (const t of taps) t.close?.(err, this.readableEnded);
    cb(err);
  }
}

/** `body` as a Relay, to tap: ours already are; any other stream gets one around it. */
export function asRelay(body: Readable): Relay {
  return body instanceof Relay ? body : new Relay(body);
}
