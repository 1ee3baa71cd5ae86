/**
 * What every remote provider shares about answers: the checks on a (ranged) response, and the
 * body that delivers exactly the part asked for (read whole when small, else streamed).
 */
import { Readable } from 'node:stream';
import { OjsError, abortedError, type ErrorContext } from '../spec/errors.js';
import { resolveRange, type ByteRange, type ResolvedRange } from '../spec/range.js';
import { ChunkFiller, joinPieces } from './chunks.js';
import { Relay } from './relay.js';
import type { OpenedObject } from './types.js';

// Bodies up to this size are read whole at open (as the file source does for small files): a
// stream per small object costs more CPU than the object, and the engine takes bytes as they are.
// The engine's window (64 entries) bounds what that holds: 64 x 256 KiB = 16 MiB.
export const SMALL_BODY_MAX = 256 << 10;

export interface ContentRange {
  first: number;
  last: number;
  /** Undefined for `*` (size unknown). */
  total?: number;
}

/** `bytes FIRST-LAST/TOTAL` or `bytes * /TOTAL`; undefined if absent or malformed. */
export function parseContentRange(v: string | null | undefined): (ContentRange | { total: number; unsatisfied: true }) | undefined {
  if (v === undefined || v === null) return undefined;
  const m = /^bytes\s+(?:(\d+)-(\d+)|\*)\/(\d+|\*)\s*$/i.exec(v.trim());
  if (m === null) return undefined;
  const total = m[3] === '*' ? undefined : Number(m[3]);
  if (m[1] === undefined) return total === undefined ? undefined : { total, unsatisfied: true };
  return { first: Number(m[1]), last: Number(m[2]), total };
}

export interface ResponseShape {
  status: number;
  contentLength?: number;
  contentRange?: string | null;
}

/** What a checked response holds: the part of the object asked for, and how to cut it from the body. */
export interface CheckedResponse {
  range: ResolvedRange;
  size: number;
  /** Body bytes before the part asked for (a server that sent more than asked; 0 normally). */
  skip: number;
  /** Bytes the body carries in all. */
  sent: number;
}

/**
 * Checks what a server sent against what was asked and returns the exact part and the object
 * size. A 206 must carry a Content-Range that covers the resolved range (some S3-compatible
 * servers send more than a 1-byte range asks; the extra is cut off); a 200 to a ranged request
 * is accepted only when the range is the whole object.
 */
export function checkResponse(asked: ByteRange | undefined, res: ResponseShape, context: ErrorContext): CheckedResponse {
  const upstream = (m: string) => new OjsError('Upstream', m, { context });
  if (res.status === 206) {
    // The size first: a range outside the object is a Range error however the server wrote
    // the rest (Azurite answers `bytes 0--1/0` for any range of an empty blob).
    const total = /\/(\d+)\s*$/.exec(res.contentRange ?? '')?.[1];
    if (total !== undefined) resolveRange(asked ?? { start: 0, length: -1 }, Number(total), context);
    const cr = parseContentRange(res.contentRange);
    if (cr === undefined || 'unsatisfied' in cr || cr.total === undefined) throw upstream(`206 response without a usable Content-Range (${String(res.contentRange)})`);
    const want = resolveRange(asked ?? { start: 0, length: -1 }, cr.total, context);
    const end = want.offset + want.length - 1;
    if (cr.first > want.offset || cr.last < end || cr.last >= cr.total) {
      throw upstream(`asked for bytes ${want.offset}-${end}, the server sent ${cr.first}-${cr.last}/${cr.total}`);
    }
    const sent = cr.last - cr.first + 1;
    if (res.contentLength !== undefined && res.contentLength !== sent) {
      throw upstream(`Content-Length ${res.contentLength} does not match Content-Range ${cr.first}-${cr.last}`);
    }
    return { range: want, size: cr.total, skip: want.offset - cr.first, sent };
  }
  if (res.contentLength === undefined || !Number.isSafeInteger(res.contentLength) || res.contentLength < 0) {
    throw upstream('the response has no Content-Length; the size must be known before reading');
  }
  const size = res.contentLength;
  const want = resolveRange(asked, size, context);
  if (want.offset !== 0 || want.length !== size) {
    throw new OjsError('Unsupported', `the server ignored the Range header (answered 200 with the whole ${size}-byte object)`, { context });
  }
  return { range: want, size, skip: 0, sent: size };
}

/** The Range error for a 416, with the object's size when the server told it. */
export function rangeNotSatisfiable(asked: ByteRange | undefined, contentRange: string | null | undefined, context: ErrorContext, size?: number): OjsError {
  const cr = parseContentRange(contentRange);
  const total = size ?? (cr !== undefined && cr.total !== undefined ? cr.total : undefined);
  if (asked !== undefined && total !== undefined) {
    try {
      resolveRange(asked, total, context);
    } catch (e) {
      return e as OjsError;
    }
  }
  const what = asked === undefined ? 'the object' : asked.length === -1 ? `bytes ${asked.start}-end` : `bytes ${asked.start}-${asked.start + asked.length - 1}`;
  return new OjsError('Range', `range not satisfiable: ${what}`, { context: { ...context, range: asked } });
}

/** The HTTP Range header for a range to read (explicit first-last; open-ended only for "to the end"). */
export function rangeHeader(r: ByteRange | undefined): string | undefined {
  if (r === undefined) return undefined;
  return r.length === -1 ? `bytes=${r.start}-` : `bytes=${r.start}-${r.start + r.length - 1}`;
}

/**
 * A response body that delivers exactly the part asked for, or fails: a body that ends short is
 * a temporary SizeMismatch (the connection broke; a retry can resume), one that runs long a
 * permanent one. Aborting the signal destroys the upstream stream, which closes its socket.
 */
export class CheckedBody extends Relay {
  private got = 0;
  private delivered = 0;
  private readonly onAbort: () => void;
  // SDK bodies (stage): their pieces are copied into read chunks of the pool.
  private readonly filler: ChunkFiller | undefined;

  constructor(
    inner: Readable,
    private readonly part: CheckedResponse,
    private readonly signal: AbortSignal,
    private readonly mapError: (e: unknown) => OjsError,
    private readonly context: ErrorContext,
    stage = false,
  ) {
    super();
    this.filler = stage ? new ChunkFiller((c) => this.pass(c)) : undefined;
    this.onAbort = () => this.fail(abortedError(signal));
    if (signal.aborted) {
      inner.destroy();
      this.destroy(abortedError(signal));
      return;
    }
    signal.addEventListener('abort', this.onAbort, { once: true });
    this.attach(inner);
  }

  protected override onChunk(chunk: Buffer): Buffer | undefined {
    const at = this.got;
    this.got += chunk.length;
    if (this.got > this.part.sent) {
      this.fail(new OjsError('SizeMismatch', `the body went past the ${this.part.sent} bytes announced`, { context: this.context }));
      return undefined;
    }
    const { skip, range } = this.part;
    if (skip === 0 && this.part.sent === range.length) {
      if (this.filler === undefined) return chunk;
      this.filler.add(chunk);
      return undefined;
    }
    const from = Math.max(0, skip - at);
    const to = Math.min(chunk.length, skip + range.length - at);
    const out = from < to ? chunk.subarray(from, to) : undefined;
    if (out !== undefined) this.delivered += out.length;
    if (this.delivered === range.length && this.got < this.part.sent) {
      // The rest is not wanted: the connection goes (it cannot be reused mid-body).
      if (out !== undefined) this.push(out);
      this.detach();
      this.push(null);
      return undefined;
    }
    return out;
  }

  protected override onInnerEnd(): void {
    if (this.got === this.part.sent) {
      this.filler?.flush();
      this.push(null);
      return;
    }
    this.fail(new OjsError('SizeMismatch', `the body ended after ${this.got} of ${this.part.sent} bytes`, { context: this.context, temporary: true }));
  }

  protected override onInnerError(e: Error): void {
    this.fail(this.signal.aborted ? abortedError(this.signal) : this.mapError(e));
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.signal.removeEventListener('abort', this.onAbort);
    this.filler?.close();
    super._destroy(err, cb);
  }
}

/**
 * Reads a small body whole, with the same checks as CheckedBody (exact count, the part cut out
 * of a larger answer), and returns the object with its bytes in memory.
 */
export function readWhole(
  inner: Readable,
  part: CheckedResponse,
  signal: AbortSignal,
  mapError: (e: unknown) => OjsError,
  context: ErrorContext,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const onAbort = () => finish(abortedError(signal));
    const finish = (err?: OjsError) => {
      signal.removeEventListener('abort', onAbort);
      inner.off('data', onData);
      if (err === undefined) {
        const all = joinPieces(chunks, got);
        resolve(part.skip === 0 && part.sent === part.range.length ? all : all.subarray(part.skip, part.skip + part.range.length));
        return;
      }
      inner.on('error', () => undefined);
      inner.destroy();
      reject(err);
    };
    const onData = (c: Buffer) => {
      chunks.push(c);
      got += c.length;
      if (got > part.sent) finish(new OjsError('SizeMismatch', `the body went past the ${part.sent} bytes announced`, { context }));
    };
    if (signal.aborted) return finish(abortedError(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    inner.on('data', onData);
    inner.once('end', () => {
      if (got === part.sent) finish();
      else finish(new OjsError('SizeMismatch', `the body ended after ${got} of ${part.sent} bytes`, { context, temporary: true }));
    });
    inner.once('error', (e) => finish(signal.aborted ? abortedError(signal) : mapError(e)));
  });
}

/** An opened object whose bytes are in memory; its body is made only for a consumer that asks. */
export function inMemory(o: Omit<OpenedObject, 'body' | 'bytes'>, bytes: Buffer): OpenedObject {
  return {
    ...o,
    bytes,
    get body(): Readable {
      return Readable.from(bytes.length === 0 ? [] : [bytes]);
    },
  };
}

/** A body that can be had whole without a stream (exchange.ts), or as one. */
export interface CollectableBody {
  collect(limit: number): Promise<Buffer>;
  stream(): Readable;
}

/** collect() with the checks and errors of readWhole. */
async function collectWhole(inner: CollectableBody, part: CheckedResponse, signal: AbortSignal, mapError: (e: unknown) => OjsError, context: ErrorContext): Promise<Buffer> {
  let all: Buffer;
  try {
    all = await inner.collect(part.sent);
  } catch (e) {
    if (signal.aborted) throw abortedError(signal);
    throw e instanceof OjsError && e.kind === 'SizeMismatch' ? e.withContext(context) : mapError(e);
  }
  if (all.length !== part.sent) throw new OjsError('SizeMismatch', `the body ended after ${all.length} of ${part.sent} bytes`, { context, temporary: true });
  return part.skip === 0 && part.sent === part.range.length ? all : all.subarray(part.skip, part.skip + part.range.length);
}

/**
 * The body of a checked response: read whole when small, else a CheckedBody. Providers call
 * this once the status, range and version are checked.
 */
export async function bodyOf(
  inner: Readable | CollectableBody,
  part: CheckedResponse,
  meta: Omit<OpenedObject, 'body' | 'bytes' | 'length' | 'range' | 'size'>,
  signal: AbortSignal,
  mapError: (e: unknown) => OjsError,
  context: ErrorContext,
): Promise<OpenedObject> {
  const base = { length: part.range.length, range: part.range, size: part.size, ...meta };
  const stream = inner instanceof Readable;
  if (part.sent <= SMALL_BODY_MAX) {
    return inMemory(base, stream ? await readWhole(inner, part, signal, mapError, context) : await collectWhole(inner, part, signal, mapError, context));
  }
  // An exchange's stream is in read chunks already; an SDK's stream is staged into them.
  return { ...base, body: new CheckedBody(stream ? inner : inner.stream(), part, signal, mapError, context, stream) };
}
