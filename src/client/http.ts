/**
 * The HTTP client side of GetBatch: sends a batch to a running `ojs-ml serve` (or an AIStore
 * proxy) and hands back the archive as it arrives, with the metadata when there is some.
 *
 * - `strm: true`: the body is the archive. A server that fails mid-archive cuts the connection,
 *   which surfaces here as an error on `archive`; success carries a summary in HTTP trailers.
 * - `strm: false`: multipart/mixed, metadata part first (parsed before `requestBatch` resolves),
 *   then the archive part, streamed without its closing delimiter.
 * Errors before the first byte come back as the server's JSON error, rebuilt as an OjsError
 * with the server's code and kind.
 */
import { Readable, Transform, type TransformCallback } from 'node:stream';
import type { request as undiciRequestFn } from 'undici';
import { OjsError, isAbortError, type ErrorKind } from '../spec/errors.js';
import { parseFormat, type ArchiveFormat } from '../spec/format.js';
import type { MossReq, MossResp } from '../spec/request.js';

export const ERROR_BODY_MAX = 64 << 10; // bytes of an error response read for its message
const METADATA_MAX = 256 << 20; // the metadata part: one row per entry, so big batches get big ones
const HEADERS_TIMEOUT_MS = 300_000; // a multipart answer comes only once the whole archive is built
const TRAILER = { uuid: 'x-ojs-batch-uuid', entries: 'x-ojs-batch-entries', missing: 'x-ojs-batch-missing', bytes: 'x-ojs-batch-bytes' };

export interface ClientOptions {
  /** Bearer token for a server started with --token. */
  token?: string;
  signal?: AbortSignal;
  /** Default bucket for entries that name none (the URL path, as AIStore clients send it). */
  bucket?: string;
  /** Default provider for entries that name none (`?provider=`). */
  provider?: string;
  /** Sent as is, after ours. */
  headers?: Record<string, string>;
}

/** What a completed stream's trailers say; absent where the server sent none. */
export interface StreamSummary {
  uuid?: string;
  entries?: number;
  missing?: number;
  bytes?: number;
}

export interface BatchResponse {
  format: ArchiveFormat;
  /** The response metadata (multipart mode only), known before the archive's first byte. */
  metadata?: MossResp;
  /** The archive bytes; errors if the server cuts the batch off. */
  archive: Readable;
  /** Once `archive` has ended: the trailers' summary (stream mode) or an empty one. */
  summary(): StreamSummary;
}

/** `POST {endpoint}/v1/ml/moss[/bucket]?provider=` with the request; resolves at the status line. */
export async function requestBatch(endpoint: string, req: MossReq, opts: ClientOptions = {}): Promise<BatchResponse> {
  const format = parseFormat(req.mime);
  const url = batchUrl(endpoint, opts);
  let res: Awaited<ReturnType<typeof undiciRequestFn>>;
  try {
    // undici costs ~30 ms to import; a process that only runs batches itself never pays it.
    const { request: undiciRequest } = await import('undici');
    res = await undiciRequest(url, {
      method: 'POST',
      body: JSON.stringify(req),
      headers: {
        'content-type': 'application/json',
        accept: req.strm === true ? 'application/octet-stream' : 'multipart/mixed',
        ...(opts.token === undefined ? {} : { authorization: `Bearer ${opts.token}` }),
        ...opts.headers,
      },
      signal: opts.signal,
      headersTimeout: HEADERS_TIMEOUT_MS,
      bodyTimeout: HEADERS_TIMEOUT_MS,
    });
  } catch (e) {
    throw transportError(e, url, opts.signal);
  }
  if (res.statusCode !== 200) throw await serverError(res.statusCode, res.body, url);
  const body = res.body as unknown as Readable;
  const contentType = String(res.headers['content-type'] ?? '');
  const summary = (): StreamSummary => readTrailers(res.trailers as Record<string, string | undefined>);
  if (!contentType.startsWith('multipart/')) {
    return { format, archive: guard(body, url, opts.signal), summary };
  }
  const boundary = /boundary="?([^";]+)"?/i.exec(contentType)?.[1];
  if (boundary === undefined) {
    body.destroy();
    throw new OjsError('Upstream', `${url}: multipart response without a boundary`, { code: 'ERR_BAD_RESPONSE' });
  }
  const parts = new MultipartReader(boundary, url);
  const archive = guard(body, url, opts.signal).pipe(parts);
  body.once('error', (e) => archive.destroy(e));
  const metadata = await parts.metadata;
  return { format, metadata, archive, summary };
}

/** The GetBatch URL of `endpoint` for these options; a usage error for anything but http(s). */
export function batchUrl(endpoint: string, opts: ClientOptions): string {
  let base: URL;
  try {
    base = new URL(endpoint);
  } catch {
    throw new OjsError('BadSpec', `endpoint '${endpoint}' is not a URL (expected http://host:port)`, { code: 'ERR_USAGE' });
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') {
    throw new OjsError('BadSpec', `endpoint '${endpoint}' is not http(s)`, { code: 'ERR_USAGE' });
  }
  const path = `${base.pathname.replace(/\/+$/, '')}/v1/ml/moss${opts.bucket === undefined ? '' : `/${encodeURIComponent(opts.bucket)}`}`;
  const url = new URL(path, base);
  if (opts.provider !== undefined) url.searchParams.set('provider', opts.provider);
  return url.toString();
}

/** The server's JSON error as an OjsError with its code and kind; anything else as Upstream. */
async function serverError(status: number, body: AsyncIterable<Buffer> & { destroy(): void }, url: string): Promise<OjsError> {
  const chunks: Buffer[] = [];
  let n = 0;
  try {
    for await (const c of body) {
      chunks.push(c);
      n += c.length;
      if (n > ERROR_BODY_MAX) break;
    }
  } catch {
    // what came is all the message there is
  } finally {
    body.destroy();
  }
  return errorFromBody(status, Buffer.concat(chunks).toString('utf8'), url);
}

/** An error answer's body (`text`, as much as came of it) as an OjsError. */
export function errorFromBody(status: number, body: string, url: string): OjsError {
  const text = body.slice(0, ERROR_BODY_MAX);
  try {
    const parsed = JSON.parse(text) as { error?: { code?: string; kind?: string; message?: string; temporary?: boolean }; message?: string };
    const e = parsed.error;
    const message = e?.message ?? parsed.message;
    if (message !== undefined) {
      const kind = (e?.kind ?? kindOfStatus(status)) as ErrorKind;
      return new OjsError(kind, message, { code: e?.code, temporary: e?.temporary ?? status >= 500 });
    }
  } catch {
    // not JSON: an AIStore or proxy error page
  }
  const kind = kindOfStatus(status);
  return new OjsError(kind, `${url}: HTTP ${status}${text.trim() === '' ? '' : `: ${text.trim().slice(0, 200)}`}`, { temporary: status >= 500 || status === 429 });
}

function kindOfStatus(status: number): ErrorKind {
  const byStatus: Record<number, ErrorKind> = { 400: 'BadSpec', 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound', 413: 'BadSpec', 416: 'Range', 429: 'TooMany', 501: 'Unsupported', 503: 'Unavailable', 504: 'Timeout' };
  return byStatus[status] ?? (status >= 500 ? 'Upstream' : 'BadSpec');
}

/** A failure to reach or talk to the server, as an OjsError (Aborted when `signal` was). */
export function transportError(e: unknown, url: string, signal: AbortSignal | undefined): OjsError {
  if (signal?.aborted === true || isAbortError(e)) return new OjsError('Aborted', 'the request was aborted', { cause: e });
  const err = e as NodeJS.ErrnoException;
  const code = err.code ?? (err.cause as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    return new OjsError('Unavailable', `cannot reach the server at ${new URL(url).origin} (${code})`, { code: 'ERR_UNREACHABLE', temporary: true, cause: e });
  }
  return new OjsError('Upstream', `${new URL(url).origin}: ${err.message} (${code ?? 'no code'})`, { temporary: true, cause: e });
}

/** The body, with transport errors turned into one clear error about a cut-off batch. */
function guard(body: Readable, url: string, signal: AbortSignal | undefined): Readable {
  const out = new Transform({ transform: (c: Buffer, _e, cb) => cb(null, c) });
  body.on('error', (e) => {
    out.destroy(
      signal?.aborted === true
        ? new OjsError('Aborted', 'the request was aborted', { cause: e })
        : new OjsError('Upstream', `the server at ${new URL(url).origin} cut the batch off before its end (${(e as Error).message}); what came is incomplete`, {
            code: 'ERR_BATCH_CUT',
            cause: e,
          }),
    );
  });
  out.once('close', () => {
    if (!out.readableEnded) body.destroy();
  });
  return body.pipe(out);
}

/** The batch summary in a streamed answer's trailers (names in lower case). */
export function readTrailers(t: Record<string, string | undefined> | undefined): StreamSummary {
  if (t === undefined) return {};
  const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
  return { uuid: t[TRAILER.uuid], entries: num(t[TRAILER.entries]), missing: num(t[TRAILER.missing]), bytes: num(t[TRAILER.bytes]) };
}

/**
 * multipart/mixed with two parts, in order: `metadata` (JSON) and `archive`. Passes the archive
 * part's bytes through as they come, holding back only what could be the start of the closing
 * delimiter; `metadata` resolves once the first part is complete.
 */
class MultipartReader extends Transform {
  readonly metadata: Promise<MossResp>;
  private resolveMeta!: (m: MossResp) => void;
  private rejectMeta!: (e: Error) => void;
  private buf: Buffer = Buffer.alloc(0);
  private stage: 'preamble' | 'meta-headers' | 'meta' | 'archive-headers' | 'archive' | 'done' = 'preamble';
  private readonly delimiter: Buffer;

  constructor(boundary: string, private readonly url: string) {
    super();
    this.delimiter = Buffer.from(`\r\n--${boundary}`, 'latin1');
    this.metadata = new Promise((resolve, reject) => {
      this.resolveMeta = resolve;
      this.rejectMeta = reject;
    });
    this.metadata.catch(() => undefined);
    this.once('error', (e) => this.rejectMeta(e));
    this.once('close', () => this.rejectMeta(this.bad('ended before its metadata part')));
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    try {
      this.advance();
      cb();
    } catch (e) {
      cb(e as Error);
    }
  }

  override _flush(cb: TransformCallback): void {
    cb(this.stage === 'done' ? null : this.bad('ended before its closing delimiter (cut off?)'));
  }

  private advance(): void {
    for (;;) {
      switch (this.stage) {
        case 'preamble': {
          // The first delimiter may come without its leading CRLF.
          const at = Buffer.concat([Buffer.from('\r\n'), this.buf]).indexOf(this.delimiter);
          if (at < 0) return;
          this.buf = this.buf.subarray(at - 2 + this.delimiter.length);
          this.stage = 'meta-headers';
          break;
        }
        case 'meta-headers':
        case 'archive-headers': {
          const end = this.buf.indexOf('\r\n\r\n');
          if (end < 0) return;
          const headers = this.buf.toString('latin1', 0, end);
          const want = this.stage === 'meta-headers' ? 'metadata' : 'archive';
          if (!new RegExp(`name="${want}"`, 'i').test(headers)) throw this.bad(`has no '${want}' part where it belongs`);
          this.buf = this.buf.subarray(end + 4);
          this.stage = this.stage === 'meta-headers' ? 'meta' : 'archive';
          break;
        }
        case 'meta': {
          const end = this.buf.indexOf(this.delimiter);
          if (end < 0) {
            if (this.buf.length > METADATA_MAX) throw this.bad(`has a metadata part over ${METADATA_MAX} bytes`);
            return;
          }
          let meta: MossResp;
          try {
            meta = JSON.parse(this.buf.toString('utf8', 0, end)) as MossResp;
          } catch (e) {
            throw this.bad(`has metadata that is not JSON (${(e as Error).message})`);
          }
          this.resolveMeta(meta);
          this.buf = this.buf.subarray(end + this.delimiter.length + 2); // and its CRLF
          this.stage = 'archive-headers';
          break;
        }
        case 'archive': {
          const end = this.buf.indexOf(this.delimiter);
          if (end >= 0) {
            if (end > 0) this.push(this.buf.subarray(0, end));
            this.buf = Buffer.alloc(0);
            this.stage = 'done';
            return;
          }
          const keep = Math.min(this.buf.length, this.delimiter.length - 1);
          if (this.buf.length > keep) this.push(this.buf.subarray(0, this.buf.length - keep));
          this.buf = this.buf.subarray(this.buf.length - keep);
          return;
        }
        case 'done':
          this.buf = Buffer.alloc(0); // the epilogue
          return;
      }
    }
  }

  private bad(why: string): OjsError {
    return new OjsError('Upstream', `the multipart response from ${new URL(this.url).origin} ${why}`, { code: 'ERR_BAD_RESPONSE' });
  }
}
