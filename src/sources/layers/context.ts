/**
 * Error context: every error out of the provider (from stat, open, list, or a body) becomes an
 * OjsError that names the object as a URI (`s3://bucket/key: ...`) and carries provider,
 * bucket, key and range. The CLI prints the message alone, so the message must say where.
 */
import { OjsError, toOjsError, type ErrorContext } from '../../spec/errors.js';
import { formatLocation } from '../../spec/uri.js';
import { asRelay } from '../relay.js';
import type { ListedObject, ObjectRef, OpenOptions, OpenedObject, ObjectStat } from '../types.js';
import { Forward, withBody } from './forward.js';

export class ErrorContextLayer extends Forward {
  override async stat(ref: ObjectRef, opts: { signal: AbortSignal }): Promise<ObjectStat> {
    try {
      return await this.inner.stat(ref, opts);
    } catch (e) {
      throw this.wrap(e, ref);
    }
  }

  override async open(ref: ObjectRef, opts: OpenOptions): Promise<OpenedObject> {
    let o: OpenedObject;
    try {
      o = await this.inner.open(ref, opts);
    } catch (e) {
      throw this.wrap(e, ref, opts);
    }
    if (o.bytes !== undefined) return o;
    const body = asRelay(o.body).tap({ error: (e) => this.wrap(e, ref, opts) });
    return body === o.body ? o : withBody(o, body);
  }

  override async *list(bucket: string, prefix: string, opts: { signal: AbortSignal }): AsyncIterable<ListedObject> {
    try {
      yield* this.inner.list(bucket, prefix, opts);
    } catch (e) {
      throw this.wrap(e, { bucket, key: prefix });
    }
  }

  private wrap(e: unknown, ref: ObjectRef, opts?: OpenOptions): OjsError {
    const err = toOjsError(e, 'Upstream');
    const ctx: ErrorContext = { provider: this.provider, bucket: ref.bucket, key: ref.key };
    if (opts?.range !== undefined) ctx.range = opts.range;
    if (err.kind === 'Aborted') return err.withContext(ctx);
    const where = formatLocation({ provider: this.provider, bucket: ref.bucket, key: ref.key });
    if (err.message.startsWith(where)) return err.withContext(ctx);
    const named = new OjsError(err.kind, `${where}: ${err.message}`, {
      temporary: err.temporary,
      context: { ...ctx, ...err.context },
      cause: err.cause ?? e,
      code: err.code,
      retryAfterMs: err.retryAfterMs,
    });
    named.stack = err.stack;
    return named;
  }
}
