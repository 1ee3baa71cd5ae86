/**
 * One error type for the whole project. Clients, metrics and the CLI branch on `code`, never on
 * the message text. `temporary` is the only thing a retry layer looks at.
 */

export type ErrorKind =
  | 'BadSpec'
  | 'Unauthorized'
  | 'Forbidden'
  | 'NotFound'
  | 'Range'
  | 'Unsupported'
  | 'Conflict'
  | 'TooMany'
  | 'Upstream'
  | 'Unavailable'
  | 'Timeout'
  | 'SizeMismatch'
  | 'Aborted'
  | 'Internal';

/** Stable codes, one per kind; a kind may grow more specific codes later. */
export const ERROR_CODES: Record<ErrorKind, string> = {
  BadSpec: 'ERR_BAD_SPEC',
  Unauthorized: 'ERR_UNAUTHORIZED',
  Forbidden: 'ERR_FORBIDDEN',
  NotFound: 'ERR_NOT_FOUND',
  Range: 'ERR_RANGE',
  Unsupported: 'ERR_UNSUPPORTED',
  Conflict: 'ERR_CONFLICT',
  TooMany: 'ERR_TOO_MANY',
  Upstream: 'ERR_UPSTREAM',
  Unavailable: 'ERR_UNAVAILABLE',
  Timeout: 'ERR_TIMEOUT',
  SizeMismatch: 'ERR_SIZE_MISMATCH',
  Aborted: 'ERR_ABORTED',
  Internal: 'ERR_INTERNAL',
};

/** What a server answers for each kind, before the first byte of a response. */
export const HTTP_STATUS: Record<ErrorKind, number> = {
  BadSpec: 400,
  Unauthorized: 401,
  Forbidden: 403,
  NotFound: 404,
  Range: 416,
  Unsupported: 501,
  Conflict: 409,
  TooMany: 429,
  Upstream: 502,
  Unavailable: 503,
  Timeout: 504,
  SizeMismatch: 502,
  Aborted: 499,
  Internal: 500,
};

/** Where an error happened: enough to find the object again, never a secret. */
export interface ErrorContext {
  provider?: string;
  bucket?: string;
  key?: string;
  range?: { start: number; length: number };
  entry?: number;
  field?: string;
}

export interface OjsErrorOptions {
  temporary?: boolean;
  context?: ErrorContext;
  cause?: unknown;
  code?: string;
  /** How long the upstream asked us to wait before trying again (Retry-After). */
  retryAfterMs?: number;
}

export class OjsError extends Error {
  readonly kind: ErrorKind;
  readonly code: string;
  readonly temporary: boolean;
  readonly context: ErrorContext;
  readonly retryAfterMs?: number;

  constructor(kind: ErrorKind, message: string, opts: OjsErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'OjsError';
    this.kind = kind;
    this.code = opts.code ?? ERROR_CODES[kind];
    this.temporary = opts.temporary ?? false;
    this.context = opts.context ?? {};
    if (opts.retryAfterMs !== undefined) this.retryAfterMs = opts.retryAfterMs;
  }

  get httpStatus(): number {
    return HTTP_STATUS[this.kind];
  }

  /** The same error with more context; used by layers that know what the provider did not. */
  withContext(extra: ErrorContext): OjsError {
    const e = new OjsError(this.kind, this.message, {
      temporary: this.temporary,
      context: { ...extra, ...this.context },
      cause: this.cause,
      code: this.code,
      retryAfterMs: this.retryAfterMs,
    });
    e.stack = this.stack;
    return e;
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, kind: this.kind, message: this.message, temporary: this.temporary, context: this.context };
  }
}

export function isOjsError(e: unknown): e is OjsError {
  return e instanceof OjsError;
}

/** Any thrown value as an OjsError; unknown failures are Internal and not retried. */
export function toOjsError(e: unknown, fallback: ErrorKind = 'Internal'): OjsError {
  if (e instanceof OjsError) return e;
  if (isAbortError(e)) return new OjsError('Aborted', 'the operation was aborted', { cause: e });
  const message = e instanceof Error ? e.message : String(e);
  return new OjsError(fallback, message, { cause: e });
}

export function isAbortError(e: unknown): boolean {
  return (
    e instanceof Error &&
    (e.name === 'AbortError' || (e as { code?: string }).code === 'ABORT_ERR' || (e instanceof OjsError && e.kind === 'Aborted'))
  );
}

/** The error to throw when a signal fires; keeps the caller's reason as the cause. */
export function abortedError(signal: AbortSignal): OjsError {
  const reason: unknown = signal.reason;
  if (reason instanceof OjsError) return reason;
  return new OjsError('Aborted', 'the operation was aborted', { cause: reason });
}

export function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted) throw abortedError(signal);
}
