/**
 * Metrics hooks: one call per upstream operation (stat, open to headers, list, and each body
 * when it ends or fails, as `read`) with its outcome and milliseconds, and one per chunk of
 * body bytes. The server's Prometheus metrics (src/server/metrics.ts) implement these hooks.
 */
import { toOjsError } from '../../spec/errors.js';
import { asRelay, type RelayTap } from '../relay.js';
import type { ListedObject, ObjectRef, ObjectSource, ObjectStat, OpenOptions, OpenedObject } from '../types.js';
import { Forward, withBody } from './forward.js';

/** `outcome` is `ok` or the error's stable code: a bounded set, fit for a metric label. */
export interface SourceMetricsHooks {
  onRequest(provider: string, op: string, outcome: string, ms: number): void;
  onBytes(provider: string, bytes: number): void;
}

const outcomeOf = (e: unknown): string => toOjsError(e).code;

export class MetricsLayer extends Forward {
  constructor(
    inner: ObjectSource,
    private readonly hooks: SourceMetricsHooks,
  ) {
    super(inner);
  }

  override stat(ref: ObjectRef, opts: { signal: AbortSignal }): Promise<ObjectStat> {
    return this.timed('stat', () => this.inner.stat(ref, opts));
  }

  override async open(ref: ObjectRef, opts: OpenOptions): Promise<OpenedObject> {
    const o = await this.timed('open', () => this.inner.open(ref, opts));
    if (o.bytes !== undefined) {
      this.hooks.onBytes(this.provider, o.bytes.length);
      this.hooks.onRequest(this.provider, 'read', 'ok', 0);
      return o;
    }
    const body = asRelay(o.body).tap(countingTap(this.provider, this.hooks));
    return body === o.body ? o : withBody(o, body);
  }

  override async *list(bucket: string, prefix: string, opts: { signal: AbortSignal }): AsyncIterable<ListedObject> {
    const t0 = performance.now();
    try {
      yield* this.inner.list(bucket, prefix, opts);
      this.hooks.onRequest(this.provider, 'list', 'ok', performance.now() - t0);
    } catch (e) {
      this.hooks.onRequest(this.provider, 'list', outcomeOf(e), performance.now() - t0);
      throw e;
    }
  }

  private async timed<T>(op: string, fn: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    try {
      const v = await fn();
      this.hooks.onRequest(this.provider, op, 'ok', performance.now() - t0);
      return v;
    } catch (e) {
      this.hooks.onRequest(this.provider, op, outcomeOf(e), performance.now() - t0);
      throw e;
    }
  }
}

/** Bytes as they pass, and one `read` outcome when the body is done. */
function countingTap(provider: string, hooks: SourceMetricsHooks): RelayTap {
  const t0 = performance.now();
  return {
    chunk: (n) => hooks.onBytes(provider, n),
    close: (err, ended) => hooks.onRequest(provider, 'read', ended ? 'ok' : err === null ? 'ERR_ABORTED' : outcomeOf(err), performance.now() - t0),
  };
}
