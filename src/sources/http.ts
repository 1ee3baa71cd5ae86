/**
 * `http` / `https`: plain URLs (`https://host[:port]/path?query`; bucket = host[:port], key =
 * path and query as the URL has them). Reads use explicit Range requests; the version is the
 * ETag, or Last-Modified when there is none. Every host, redirects included, is checked against
 * the SSRF policy (SourcesConfig.http): the allow-list, and no loopback/private/link-local
 * address unless allowed (checked on connect, after DNS).
 */
import { OjsError, throwIfAborted, type ErrorContext } from '../spec/errors.js';
import type { SourceFactory, SourcesConfig } from './registry.js';
import { header, networkError, statusError } from './remote.js';
import { bodyOf, checkResponse, rangeHeader, rangeNotSatisfiable } from './response.js';
import type { ListedObject, ObjectRef, ObjectSource, ObjectStat, OpenOptions, OpenedObject, SourceCapabilities } from './types.js';
import { WebClient, discard, drain, readText, type HostPolicy, type WebResponse } from './web.js';

const CONNECTIONS = 64; // sockets per origin: the engine's window of entries in flight
const MAX_REDIRECTS = 5; // as browsers and curl -L allow, roughly
const ERROR_BODY_MAX = 2048; // bytes of an error response shown in the message

export interface HttpSourceOptions {
  /** Which hosts may be reached; the registry passes SourcesConfig.http. Default: any public host. */
  policy?: HostPolicy;
  /** Sockets kept per origin. Default 64, the engine's window. */
  connections?: number;
  /** Redirects followed per request, each hop checked against the policy. Default 5. */
  maxRedirects?: number;
  /** Extra request headers (an API key, say). Never shown in messages. */
  headers?: Record<string, string>;
}

export class HttpSource implements ObjectSource {
  readonly capabilities: SourceCapabilities = { ranges: true, list: false, conditionalRead: true, network: true };
  private readonly client: WebClient;
  private readonly maxRedirects: number;
  private readonly headers: Record<string, string>;

  constructor(
    readonly provider: 'http' | 'https',
    opts: HttpSourceOptions = {},
  ) {
    this.client = new WebClient(opts.policy ?? {}, opts.connections ?? CONNECTIONS);
    this.maxRedirects = opts.maxRedirects ?? MAX_REDIRECTS;
    this.headers = lowerKeys(opts.headers ?? {});
  }

  async stat(ref: ObjectRef, opts: { signal: AbortSignal }): Promise<ObjectStat> {
    throwIfAborted(opts.signal);
    const ctx = this.ctx(ref);
    const res = await this.send('HEAD', ref, { 'accept-encoding': 'identity' }, opts.signal);
    await drain(res);
    const length = header(res.headers, 'content-length');
    if (res.status === 200 && length !== undefined) return { size: Number(length), ...version(res) };
    if (res.status !== 200 && res.status !== 405 && res.status !== 501) throw await failure(res, ctx);
    // HEAD not allowed, or no length: one byte of the object tells its size.
    return this.probe(ref, opts.signal);
  }

  async open(ref: ObjectRef, opts: OpenOptions): Promise<OpenedObject> {
    throwIfAborted(opts.signal);
    const ctx = this.ctx(ref);
    const headers: Record<string, string> = { 'accept-encoding': 'identity' };
    const range = rangeHeader(opts.range);
    if (range !== undefined) headers.range = range;
    // A weak or Last-Modified version cannot go in If-Match; it is compared below instead.
    if (opts.ifMatch !== undefined && /^"/.test(opts.ifMatch)) headers['if-match'] = opts.ifMatch;
    const res = await this.send('GET', ref, headers, opts.signal);
    try {
      if (res.status === 416) throw rangeNotSatisfiable(opts.range, header(res.headers, 'content-range'), ctx);
      if (res.status !== 200 && res.status !== 206) throw await failure(res, ctx);
      const v = version(res);
      if (opts.ifMatch !== undefined && v.etag !== opts.ifMatch) {
        throw new OjsError('Conflict', `the object changed (version ${opts.ifMatch} -> ${v.etag ?? 'none'})`, { context: ctx });
      }
      const length = header(res.headers, 'content-length');
      const got = checkResponse(opts.range, { status: res.status, contentLength: length === undefined ? undefined : Number(length), contentRange: header(res.headers, 'content-range') }, ctx);
      return await bodyOf(res.body, got, v, opts.signal, (e) => networkError(e, `${this.provider}: the body broke off`, ctx, opts.signal), ctx);
    } catch (e) {
      discard(res);
      throw e;
    }
  }

  // eslint-disable-next-line require-yield
  async *list(bucket: string, prefix: string): AsyncIterable<ListedObject> {
    throw new OjsError('Unsupported', `${this.provider}: plain URLs cannot be listed (prefix '${prefix}' on ${bucket})`, {
      context: { provider: this.provider, bucket, key: prefix },
    });
  }

  private async probe(ref: ObjectRef, signal: AbortSignal): Promise<ObjectStat> {
    const ctx = this.ctx(ref);
    const res = await this.send('GET', ref, { 'accept-encoding': 'identity', range: 'bytes=0-0' }, signal);
    await drain(res);
    const cr = header(res.headers, 'content-range');
    const total = cr === undefined ? undefined : /\/(\d+)\s*$/.exec(cr)?.[1];
    if ((res.status === 206 || res.status === 416) && total !== undefined) return { size: Number(total), ...version(res) };
    const length = header(res.headers, 'content-length');
    if (res.status === 200 && length !== undefined) return { size: Number(length), ...version(res) };
    if (res.status >= 400) throw await failure(res, ctx);
    throw new OjsError('Upstream', `${this.provider}: the server tells no size (no Content-Length, no Content-Range)`, { context: ctx });
  }

  private send(method: 'GET' | 'HEAD', ref: ObjectRef, headers: Record<string, string>, signal: AbortSignal): Promise<WebResponse> {
    return this.client.send({
      method,
      url: this.url(ref),
      headers: { ...this.headers, ...headers },
      signal,
      context: this.ctx(ref),
      maxRedirects: this.maxRedirects,
      provider: this.provider,
    });
  }

  /** The key is the URL's path and query; the URL parser encodes what needs it (spaces, non-ASCII). */
  private url(ref: ObjectRef): URL {
    const key = ref.key.replace(/#/g, '%23');
    try {
      return new URL(`${this.provider}://${ref.bucket}/${key}`);
    } catch {
      throw new OjsError('BadSpec', `'${this.provider}://${ref.bucket}/${ref.key}' is not a valid URL`, { context: this.ctx(ref) });
    }
  }

  private ctx(ref: ObjectRef): ErrorContext {
    return { provider: this.provider, bucket: ref.bucket, key: ref.key };
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}

/** The version to detect a change by: the ETag, else Last-Modified. */
function version(res: WebResponse): { etag?: string; mtime?: Date } {
  const etag = header(res.headers, 'etag');
  const lm = header(res.headers, 'last-modified');
  const t = lm === undefined ? NaN : Date.parse(lm); // once: V8 parses HTTP dates slowly (~2 us)
  const mtime = Number.isNaN(t) ? undefined : new Date(t);
  const v = etag ?? (lm === undefined ? undefined : `lm:${lm}`);
  return { ...(v === undefined ? {} : { etag: v }), ...(mtime === undefined ? {} : { mtime }) };
}

const MESSAGES: Record<number, string> = {
  401: 'the server asks for credentials',
  403: 'access denied',
  404: 'no such object',
  410: 'no such object (gone)',
  412: 'the object changed (If-Match failed)',
  429: 'too many requests',
};

/** An error for a failed response, with the start of its body when it is text. */
async function failure(res: WebResponse, ctx: ErrorContext): Promise<OjsError> {
  let detail = '';
  const type = header(res.headers, 'content-type') ?? '';
  if (/^text\/|json|xml/.test(type)) {
    detail = await readText(res, ERROR_BODY_MAX);
  } else {
    discard(res);
  }
  const base = MESSAGES[res.status] ?? `the server answered ${res.status}`;
  const message = detail === '' ? base : `${base}: ${detail.replace(/\s+/g, ' ').trim().slice(0, 200)}`;
  return statusError(res.status, message, { context: ctx, retryAfter: header(res.headers, 'retry-after') });
}

function lowerKeys(h: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toLowerCase(), v]));
}

/** Options for `scheme` from the config: its own block, and the SSRF policy. */
function optionsFor(scheme: 'http' | 'https', config: SourcesConfig): HttpSourceOptions {
  return { ...(config.remote?.[scheme] as HttpSourceOptions | undefined), policy: config.http ?? {} };
}

export const createHttp: SourceFactory = async (config) => new HttpSource('http', optionsFor('http', config));
export const createHttps: SourceFactory = async (config) => new HttpSource('https', optionsFor('https', config));
