/**
 * Timeouts: one per attempt (stat, open until headers, each page of a listing) and an idle one
 * on bodies, counted only while the consumer wants bytes and none come (a paused consumer is
 * not an idle upstream). Either aborts the attempt's own signal, which closes its request, and
 * fails with a temporary Timeout error that the retry layer may take again.
 */
import type { Readable } from 'node:stream';
import { OjsError, type ErrorContext } from '../../spec/errors.js';
import { Relay } from '../relay.js';
import type { ListedObject, ObjectRef, ObjectSource, ObjectStat, OpenOptions, OpenedObject } from '../types.js';
import { Forward, linkedAbort, withBody, type LinkedAbort } from './forward.js';

export interface TimeoutOptions {
  /** Milliseconds an attempt may take to get its answer (headers, for open). */
  attemptMs: number;
  /** Milliseconds a body may go without a byte while its consumer waits for one. */
  idleMs: number;
}

export class TimeoutLayer extends Forward {
  constructor(
    inner: ObjectSource,
    private readonly opts: TimeoutOptions,
  ) {
    super(inner);
  }

  override stat(ref: ObjectRef, opts: { signal: AbortSignal }): Promise<ObjectStat> {
    return this.attempt('stat', ref, opts.signal, (signal) => this.inner.stat(ref, { signal }), true);
  }

  override async open(ref: ObjectRef, opts: OpenOptions): Promise<OpenedObject> {
    let link: LinkedAbort | undefined;
    const o = await this.attempt('open', ref, opts.signal, (signal, l) => {
      link = l;
      return this.inner.open(ref, { ...opts, signal });
    }, false);
    if (o.bytes !== undefined) {
      link?.dispose();
      return o;
    }
    return withBody(o, new IdleBody(o.body, this.opts.idleMs, link!, this.ctx(ref)));
  }

  override async *list(bucket: string, prefix: string, opts: { signal: AbortSignal }): AsyncIterable<ListedObject> {
    const link = linkedAbort(opts.signal);
    const it = this.inner.list(bucket, prefix, { signal: link.signal })[Symbol.asyncIterator]();
    try {
      while (true) {
        const next = await this.race('list', { bucket, key: prefix }, link, () => it.next());
        if (next.done === true) return;
        yield next.value;
      }
    } finally {
      link.dispose();
      await it.return?.().catch(() => undefined);
    }
  }

  /** Runs one attempt under its own signal and timer; `dispose` says whether the signal is done with after it. */
  private async attempt<T>(op: string, ref: ObjectRef, outer: AbortSignal, fn: (signal: AbortSignal, link: LinkedAbort) => Promise<T>, dispose: boolean): Promise<T> {
    const link = linkedAbort(outer);
    try {
      const v = await this.race(op, ref, link, () => fn(link.signal, link));
      if (dispose) link.dispose();
      return v;
    } catch (e) {
      link.dispose();
      throw e;
    }
  }

  private async race<T>(op: string, ref: ObjectRef, link: LinkedAbort, fn: () => Promise<T>): Promise<T> {
    let timedOut: OjsError | undefined;
    const timer = setTimeout(() => {
      timedOut = new OjsError('Timeout', `${op} got no answer within ${this.opts.attemptMs} ms`, { temporary: true, context: this.ctx(ref) });
      link.abort(timedOut);
    }, this.opts.attemptMs);
    try {
      return await fn();
    } catch (e) {
      throw timedOut ?? e;
    } finally {
      clearTimeout(timer);
    }
  }

  private ctx(ref: ObjectRef): ErrorContext {
    return { provider: this.provider, bucket: ref.bucket, key: ref.key };
  }
}

class IdleBody extends Relay {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    inner: Readable,
    private readonly idleMs: number,
    private readonly link: LinkedAbort,
    private readonly context: ErrorContext,
  ) {
    super(inner);
  }

  override _read(): void {
    this.arm();
    super._read();
  }

  protected override onChunk(chunk: Buffer): Buffer | undefined {
    this.disarm();
    return chunk;
  }

  protected override onInnerEnd(): void {
    this.disarm();
    super.onInnerEnd();
  }

  private arm(): void {
    if (this.timer !== undefined || this.destroyed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const e = new OjsError('Timeout', `no body bytes for ${this.idleMs} ms`, { temporary: true, context: this.context });
      this.link.abort(e);
      this.destroy(e);
    }, this.idleMs);
  }

  private disarm(): void {
    if (this.timer === undefined) return;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.disarm();
    this.link.dispose();
    super._destroy(err, cb);
  }
}
