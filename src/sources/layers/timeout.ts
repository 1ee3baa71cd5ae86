/**
 * Timeouts: one per attempt (stat, open until headers, each page of a listing) and an idle one
 * on bodies, counted only while the consumer wants bytes and none come (a paused consumer is
 * not an idle upstream). Either aborts the attempt's own signal, which closes its request, and
 * fails with a temporary Timeout error that the retry layer may take again.
 */
import { OjsError, type ErrorContext } from '../../spec/errors.js';
import { asRelay, type Relay, type RelayTap } from '../relay.js';
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
    const body = asRelay(o.body);
    body.tap(idleTap(body, this.opts.idleMs, link!, this.ctx(ref)));
    return body === o.body ? o : withBody(o, body);
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

/**
 * Fails `body` when no byte comes for `idleMs` while its consumer waits: armed on a read,
 * disarmed by the next chunk or a pause (which stops the upstream too), so a paused consumer
 * never trips it.
 */
function idleTap(body: Relay, idleMs: number, link: LinkedAbort, context: ErrorContext): RelayTap {
  let timer: NodeJS.Timeout | undefined;
  const disarm = () => {
    if (timer === undefined) return;
    clearTimeout(timer);
    timer = undefined;
  };
  return {
    read: () => {
      if (timer !== undefined) return;
      timer = setTimeout(() => {
        timer = undefined;
        const e = new OjsError('Timeout', `no body bytes for ${idleMs} ms`, { temporary: true, context });
        link.abort(e);
        body.fail(e);
      }, idleMs);
    },
    chunk: disarm,
    pause: disarm,
    close: () => {
      disarm();
      link.dispose();
    },
  };
}
