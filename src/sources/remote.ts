/**
 * What every remote provider shares about failures: HTTP statuses and network errors as our
 * error kinds. `temporary` is set only for what may succeed on retry: 5xx, 408, 429, resets,
 * refused connections and timeouts. Everything else fails at once.
 */
import { OjsError, abortedError, isAbortError, type ErrorContext, type ErrorKind } from '../spec/errors.js';

/** Network error codes (Node, undici, the SDKs) that a new attempt may get past. */
const TEMPORARY_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'ERR_STREAM_PREMATURE_CLOSE',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
  'REQUEST_SEND_ERROR',
]);
const RETRY_AFTER_MAX_S = 3600; // a Retry-After beyond an hour is taken as garbage

/** The kind (and whether to retry) for an HTTP status that is not a success. */
export function statusKind(status: number): { kind: ErrorKind; temporary: boolean } {
  switch (status) {
    case 401:
      return { kind: 'Unauthorized', temporary: false };
    case 403:
      return { kind: 'Forbidden', temporary: false };
    case 404:
    case 410:
      return { kind: 'NotFound', temporary: false };
    case 408:
      return { kind: 'Timeout', temporary: true };
    case 409:
    case 412:
      return { kind: 'Conflict', temporary: false };
    case 416:
      return { kind: 'Range', temporary: false };
    case 429:
      return { kind: 'TooMany', temporary: true };
    case 503:
      return { kind: 'Unavailable', temporary: true };
    case 504:
      return { kind: 'Timeout', temporary: true };
    default:
      return { kind: 'Upstream', temporary: status >= 500 };
  }
}

export interface StatusErrorOptions {
  context: ErrorContext;
  /** The provider's own error code (NoSuchKey, BlobNotFound, ...), shown in the message. */
  providerCode?: string;
  retryAfter?: string | null;
  cause?: unknown;
  /** Our more specific code (ERR_NO_SUCH_BUCKET), when the provider said which. */
  code?: string;
  /** The kind, where the provider's own code says more than the status (a 403 for bad credentials). */
  kind?: ErrorKind;
}

/** An error for a response with this status. */
export function statusError(status: number, message: string, opts: StatusErrorOptions): OjsError {
  const byStatus = statusKind(status);
  const kind = opts.kind ?? byStatus.kind;
  const temporary = byStatus.temporary;
  const detail = opts.providerCode === undefined || opts.providerCode === '' ? `HTTP ${status}` : `${opts.providerCode}, HTTP ${status}`;
  return new OjsError(kind, `${message} (${detail})`, {
    temporary,
    context: opts.context,
    cause: opts.cause,
    code: opts.code,
    retryAfterMs: parseRetryAfter(opts.retryAfter),
  });
}

/** Milliseconds from a Retry-After header (seconds or an HTTP date); undefined if absent or odd. */
export function parseRetryAfter(v: string | null | undefined, now = Date.now()): number | undefined {
  if (v === undefined || v === null || v.trim() === '') return undefined;
  const s = Number(v);
  if (Number.isFinite(s)) return s >= 0 && s <= RETRY_AFTER_MAX_S ? s * 1000 : undefined;
  const t = Date.parse(v);
  if (Number.isNaN(t)) return undefined;
  return Math.min(Math.max(0, t - now), RETRY_AFTER_MAX_S * 1000);
}

/** The code of a network error, looking through the causes that clients wrap it in. */
export function errorCode(e: unknown): string | undefined {
  for (let cur = e, depth = 0; cur !== undefined && cur !== null && depth < 5; depth++) {
    const c = (cur as { code?: unknown }).code;
    if (typeof c === 'string' && c !== '') return c;
    cur = (cur as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * A failure that never got an HTTP status (a refused connection, a reset, a timeout, an
 * abort) as our error. `what` says what was being done, e.g. "cannot reach http://host:1".
 */
export function networkError(e: unknown, what: string, context: ErrorContext, signal?: AbortSignal): OjsError {
  if (signal?.aborted === true) return abortedError(signal);
  if (e instanceof OjsError) return e.withContext(context);
  const inner = findOjsError(e);
  if (inner !== undefined) return inner.withContext(context);
  if (isAbortError(e)) return new OjsError('Aborted', 'the operation was aborted', { cause: e, context });
  const code = errorCode(e);
  const message = e instanceof Error ? e.message : String(e);
  const temporary = code !== undefined && TEMPORARY_CODES.has(code);
  const kind: ErrorKind = code === 'ETIMEDOUT' || code?.includes('TIMEOUT') === true ? 'Timeout' : temporary ? 'Unavailable' : 'Upstream';
  const detail = code === undefined || message.includes(code) ? message : `${code}: ${message}`;
  return new OjsError(kind, `${what}: ${detail}`, { temporary, context, cause: e });
}

/** An OjsError a client wrapped (our DNS policy check fails inside the connector). */
function findOjsError(e: unknown): OjsError | undefined {
  for (let cur = e, depth = 0; cur !== undefined && cur !== null && depth < 5; depth++) {
    if (cur instanceof OjsError) return cur;
    cur = (cur as { cause?: unknown }).cause;
  }
  return undefined;
}

/** The first value of a header that may come as a list. */
export function header(h: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}
