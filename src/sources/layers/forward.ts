/** What every layer starts from: a source that hands each call to the one inside it. */
import type { Readable } from 'node:stream';
import { abortedError } from '../../spec/errors.js';
import type { Provider } from '../../spec/uri.js';
import type { ListedObject, ObjectRef, ObjectSource, ObjectStat, OpenOptions, OpenedObject, SourceCapabilities } from '../types.js';

export class Forward implements ObjectSource {
  constructor(protected readonly inner: ObjectSource) {}

  get provider(): Provider {
    return this.inner.provider;
  }

  get capabilities(): SourceCapabilities {
    return this.inner.capabilities;
  }

  stat(ref: ObjectRef, opts: { signal: AbortSignal }): Promise<ObjectStat> {
    return this.inner.stat(ref, opts);
  }

  open(ref: ObjectRef, opts: OpenOptions): Promise<OpenedObject> {
    return this.inner.open(ref, opts);
  }

  list(bucket: string, prefix: string, opts: { signal: AbortSignal }): AsyncIterable<ListedObject> {
    return this.inner.list(bucket, prefix, opts);
  }

  async close(): Promise<void> {
    await this.inner.close?.();
  }
}

/** The same object with another body (the fields copied one by one: an object may have getters). */
export function withBody(o: OpenedObject, body: Readable): OpenedObject {
  const out: OpenedObject = { length: o.length, range: o.range, size: o.size, body };
  if (o.etag !== undefined) out.etag = o.etag;
  if (o.mtime !== undefined) out.mtime = o.mtime;
  return out;
}

/** An AbortController that follows `outer` until disposed; a layer aborts it on its own too. */
export interface LinkedAbort {
  signal: AbortSignal;
  abort(reason: unknown): void;
  dispose(): void;
}

export function linkedAbort(outer: AbortSignal): LinkedAbort {
  const ac = new AbortController();
  const follow = () => ac.abort(outer.reason);
  if (outer.aborted) follow();
  else outer.addEventListener('abort', follow, { once: true });
  return {
    signal: ac.signal,
    abort: (reason) => ac.abort(reason),
    dispose: () => outer.removeEventListener('abort', follow),
  };
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(abortedError(signal));
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortedError(signal));
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
