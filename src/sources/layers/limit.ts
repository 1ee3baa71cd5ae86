/**
 * A concurrency limit per provider: at most `max` upstream operations at once, a body counting
 * as one until it ends or is destroyed. Waiters are served first come, first served, so a batch's
 * head entry (always asked for before the entries after it) is never starved by them.
 */
import { abortedError } from '../../spec/errors.js';
import type { ListedObject, ObjectRef, ObjectSource, ObjectStat, OpenOptions, OpenedObject } from '../types.js';
import { Forward } from './forward.js';

/** A counting semaphore whose waits end when their signal aborts. */
export class Semaphore {
  private used = 0;
  private readonly waiters: { grant: () => void; signal: AbortSignal; onAbort: () => void }[] = [];

  constructor(readonly max: number) {}

  get inUse(): number {
    return this.used;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  /** Resolves with a release function, to be called exactly once. */
  acquire(signal: AbortSignal): Promise<() => void> {
    if (signal.aborted) return Promise.reject(abortedError(signal));
    if (this.used < this.max && this.waiters.length === 0) {
      this.used++;
      return Promise.resolve(this.releaser());
    }
    return new Promise((resolve, reject) => {
      const w = {
        signal,
        grant: () => {
          signal.removeEventListener('abort', w.onAbort);
          resolve(this.releaser());
        },
        onAbort: () => {
          const i = this.waiters.indexOf(w);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(abortedError(signal));
        },
      };
      signal.addEventListener('abort', w.onAbort, { once: true });
      this.waiters.push(w);
    });
  }

  private releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const next = this.waiters.shift();
      if (next === undefined) this.used--;
      else next.grant(); // the permit passes on: `used` stays
    };
  }
}

export class LimitLayer extends Forward {
  readonly semaphore: Semaphore;

  constructor(inner: ObjectSource, max: number) {
    super(inner);
    this.semaphore = new Semaphore(max);
  }

  override async stat(ref: ObjectRef, opts: { signal: AbortSignal }): Promise<ObjectStat> {
    const release = await this.semaphore.acquire(opts.signal);
    try {
      return await this.inner.stat(ref, opts);
    } finally {
      release();
    }
  }

  override async open(ref: ObjectRef, opts: OpenOptions): Promise<OpenedObject> {
    const release = await this.semaphore.acquire(opts.signal);
    let o: OpenedObject;
    try {
      o = await this.inner.open(ref, opts);
    } catch (e) {
      release();
      throw e;
    }
    if (o.bytes !== undefined || o.body.destroyed) release();
    else o.body.once('close', release);
    return o;
  }

  override async *list(bucket: string, prefix: string, opts: { signal: AbortSignal }): AsyncIterable<ListedObject> {
    const release = await this.semaphore.acquire(opts.signal);
    try {
      yield* this.inner.list(bucket, prefix, opts);
    } finally {
      release();
    }
  }
}
