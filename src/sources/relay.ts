/**
 * A Readable that passes on the bytes of another one, with backpressure both ways: the inner
 * stream is paused whenever our buffer is full and resumed when the consumer reads. Destroying
 * the relay destroys the inner stream (which closes an upstream socket); an inner error
 * destroys the relay unless a subclass handles it (the retry layer reopens instead).
 *
 * Every remote body and every layer that looks at a body is one of these, so "destroy reaches
 * both ends" is written once.
 */
import { Readable } from 'node:stream';

const RELAY_HIGH_WATER = 64 << 10; // bytes a relay holds before it pauses its inner stream: one socket read

export class Relay extends Readable {
  protected inner: Readable | undefined;
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
        if (out !== undefined && !this.push(out)) this.inner?.pause();
      },
      end: () => this.onInnerEnd(),
      error: (e) => this.onInnerError(e),
    };
    if (inner !== undefined) this.attach(inner);
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

  /** A chunk from the inner stream; returns what to pass on (undefined: nothing). */
  protected onChunk(chunk: Buffer): Buffer | undefined {
    return chunk;
  }

  protected onInnerEnd(): void {
    this.push(null);
  }

  protected onInnerError(e: Error): void {
    this.destroy(e);
  }

  override _read(): void {
    this.inner?.resume();
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.detach();
    cb(err);
  }
}
