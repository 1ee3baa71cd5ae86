/**
 * Retries temporary failures (and only those), with full-jitter exponential backoff or the
 * upstream's Retry-After. A body that breaks is resumed: the rest is opened again with a Range
 * from the byte reached and the first answer's etag as If-Match, and the new answer must cover
 * exactly that rest (offset, length) with the same etag. A listing that breaks starts over and
 * skips the keys already given (listings come in byte order).
 */
import { Readable } from 'node:stream';
import { OjsError, abortedError, type ErrorContext } from '../../spec/errors.js';
import type { ResolvedRange } from '../../spec/range.js';
import { Relay } from '../relay.js';
import type { ListedObject, ObjectRef, ObjectSource, ObjectStat, OpenOptions, OpenedObject } from '../types.js';
import { Forward, sleep, withBody } from './forward.js';

export interface RetryOptions {
  /** Attempts after the first, for one call; for a body, failures in a row without a new byte. */
  retries: number;
  /** Backoff before retry n (from 0) is uniform in [0, min(capMs, baseMs * 2^n)]. */
  baseMs: number;
  capMs: number;
  /** A Retry-After longer than this is not waited for: the error is final. */
  maxRetryAfterMs: number;
  /** For tests: a source of numbers in [0, 1). */
  random?: () => number;
  /** Told of each retry (metrics, logs). */
  onRetry?: (op: string, err: OjsError, attempt: number) => void;
}

export class RetryLayer extends Forward {
  constructor(
    inner: ObjectSource,
    private readonly opts: RetryOptions,
  ) {
    super(inner);
  }

  override stat(ref: ObjectRef, opts: { signal: AbortSignal }): Promise<ObjectStat> {
    return this.withRetries('stat', opts.signal, () => this.inner.stat(ref, opts));
  }

  override async open(ref: ObjectRef, opts: OpenOptions): Promise<OpenedObject> {
    const o = await this.withRetries('open', opts.signal, () => this.inner.open(ref, opts));
    // Without a version, a resumed read could splice two versions of an object: not resumed.
    if (o.bytes !== undefined || o.etag === undefined || o.length === 0) return o;
    return withBody(o, new ResumingBody(o, (range, etag) => this.reopen(ref, opts.signal, range, etag), this.opts, opts.signal));
  }

  override async *list(bucket: string, prefix: string, opts: { signal: AbortSignal }): AsyncIterable<ListedObject> {
    let last: Buffer | undefined;
    for (let failures = 0; ; ) {
      try {
        for await (const item of this.inner.list(bucket, prefix, opts)) {
          const key = Buffer.from(item.key, 'utf8');
          if (last !== undefined && Buffer.compare(key, last) <= 0) continue;
          last = key;
          failures = 0;
          yield item;
        }
        return;
      } catch (e) {
        await this.backoff('list', e, failures++, opts.signal);
      }
    }
  }

  /** The rest of a broken body: exactly `range`, still at `etag`. */
  private async reopen(ref: ObjectRef, signal: AbortSignal, range: ResolvedRange, etag: string): Promise<OpenedObject> {
    const o = await this.inner.open(ref, { signal, range: { start: range.offset, length: range.length }, ifMatch: etag });
    const ctx: ErrorContext = { provider: this.provider, bucket: ref.bucket, key: ref.key, range: { start: range.offset, length: range.length } };
    const fail = (why: string) => {
      if (o.bytes === undefined) o.body.destroy();
      return new OjsError('Conflict', `cannot resume the body: ${why}`, { context: ctx });
    };
    if (o.etag !== etag) throw fail(`the etag changed (${etag} -> ${o.etag ?? 'none'})`);
    if (o.range.offset !== range.offset || o.length !== range.length) {
      throw fail(`asked for ${range.length} bytes at ${range.offset}, got ${o.length} at ${o.range.offset}`);
    }
    return o;
  }

  private async withRetries<T>(op: string, signal: AbortSignal, fn: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (e) {
        await this.backoff(op, e, attempt, signal);
      }
    }
  }

  /** Waits before retry `attempt`, or throws `e` when it is final. */
  private async backoff(op: string, e: unknown, attempt: number, signal: AbortSignal): Promise<void> {
    const delay = retryDelay(e, attempt, signal, this.opts);
    if (delay === undefined) throw giveUp(e, attempt);
    this.opts.onRetry?.(op, e as OjsError, attempt + 1);
    await sleep(delay, signal);
  }
}

/** Milliseconds to wait before retrying after `e`, or undefined if it must not be retried. */
export function retryDelay(e: unknown, attempt: number, signal: AbortSignal, opts: RetryOptions): number | undefined {
  if (signal.aborted || !(e instanceof OjsError) || !e.temporary || attempt >= opts.retries) return undefined;
  if (e.retryAfterMs !== undefined) return e.retryAfterMs <= opts.maxRetryAfterMs ? e.retryAfterMs : undefined;
  const ceiling = Math.min(opts.capMs, opts.baseMs * 2 ** attempt);
  return (opts.random ?? Math.random)() * ceiling;
}

/** The final error; it says how many attempts it took when there were several. */
function giveUp(e: unknown, attempt: number): unknown {
  if (!(e instanceof OjsError) || attempt === 0 || !e.temporary) return e;
  const err = new OjsError(e.kind, `${e.message} (gave up after ${attempt + 1} attempts)`, {
    temporary: e.temporary,
    context: e.context,
    cause: e.cause,
    code: e.code,
    retryAfterMs: e.retryAfterMs,
  });
  err.stack = e.stack;
  return err;
}

type Reopen = (range: ResolvedRange, etag: string) => Promise<OpenedObject>;

/** A body that reopens the rest of its range when the one it reads from breaks. */
class ResumingBody extends Relay {
  private delivered = 0;
  private failures = 0;
  private deliveredAtFailure = -1;
  private readonly range: ResolvedRange;
  private readonly etag: string;

  constructor(
    first: OpenedObject,
    private readonly reopen: Reopen,
    private readonly opts: RetryOptions,
    private readonly signal: AbortSignal,
  ) {
    super(first.body);
    this.range = first.range;
    this.etag = first.etag!;
  }

  protected override onChunk(chunk: Buffer): Buffer | undefined {
    this.delivered += chunk.length;
    return chunk;
  }

  protected override onInnerError(e: Error): void {
    if (this.delivered === this.range.length && !this.signal.aborted) {
      // Every byte came before the break: nothing to resume.
      this.detach();
      this.push(null);
      return;
    }
    if (this.delivered > this.deliveredAtFailure) this.failures = 0; // progress since the last failure
    this.deliveredAtFailure = this.delivered;
    const delay = retryDelay(e, this.failures, this.signal, this.opts);
    if (delay === undefined) {
      this.destroy(this.signal.aborted ? abortedError(this.signal) : (giveUp(e, this.failures) as Error));
      return;
    }
    this.failures++;
    this.opts.onRetry?.('read', e as OjsError, this.failures);
    this.detach();
    void this.continueFrom(delay);
  }

  private async continueFrom(delay: number): Promise<void> {
    const rest = { offset: this.range.offset + this.delivered, length: this.range.length - this.delivered };
    let o: OpenedObject;
    try {
      await sleep(delay, this.signal);
      if (this.destroyed) return;
      o = await this.reopen(rest, this.etag);
    } catch (e) {
      if (this.destroyed) return;
      // A reopen that fails for a temporary reason counts as one more failure of the body.
      this.onInnerError(e as Error);
      return;
    }
    if (this.destroyed) {
      if (o.bytes === undefined) o.body.destroy();
      return;
    }
    this.attach(o.bytes === undefined ? o.body : Readable.from([o.bytes]));
  }
}
