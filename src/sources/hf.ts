/**
 * `hf`: files in Hugging Face Hub repositories. `hf://datasets/ORG/NAME[@REV]/path`,
 * `hf://ORG/MODEL[@REV]/path` (models; `models/` may be written) and `hf://spaces/ORG/NAME/...`;
 * the bucket is the repository with its revision (default `main`; a revision holding '/' is
 * written percent-encoded, `@refs%2Fpr%2F1`).
 *
 * Reads are `GET {endpoint}/{repo}/resolve/{rev}/{path}` with an explicit Range, following the
 * Hub's redirects (LFS and Xet files go to a CDN; the token is not sent off the Hub). The
 * version is the Hub's ETag (`X-Linked-Etag` for LFS: the file's sha256), read from the Hub's
 * own answer, before any redirect to a CDN. `HF_TOKEN` and `HF_ENDPOINT` are honoured.
 */
import { OjsError, throwIfAborted, type ErrorContext } from '../spec/errors.js';
import type { SourceFactory } from './registry.js';
import { header, networkError, statusError } from './remote.js';
import { bodyOf, checkResponse, rangeHeader, rangeNotSatisfiable } from './response.js';
import type { ListedObject, ObjectRef, ObjectSource, ObjectStat, OpenOptions, OpenedObject, SourceCapabilities } from './types.js';
import { WebClient, discard, drain, readText, type WebResponse } from './web.js';

const DEFAULT_ENDPOINT = 'https://huggingface.co';
const CONNECTIONS = 64; // per origin (the Hub, and each CDN host): the engine's window
const MAX_REDIRECTS = 5; // the Hub answers with one or two (resolve-cache, then the CDN)
const ERROR_BODY_MAX = 2048; // bytes of an error answer read for its message

export interface HfSourceOptions {
  /** The Hub; default HF_ENDPOINT, then https://huggingface.co. */
  endpoint?: string;
  /** Access token (private and gated repositories); default HF_TOKEN, then HUGGING_FACE_HUB_TOKEN. */
  token?: string;
  /** Sockets kept per origin. Default 64. */
  connections?: number;
}

interface Repo {
  /** `datasets/`, `spaces/` or '' (models) */
  kind: 'datasets/' | 'spaces/' | '';
  name: string;
  revision: string;
}

export class HfSource implements ObjectSource {
  readonly provider = 'hf' as const;
  readonly capabilities: SourceCapabilities = { ranges: true, list: true, conditionalRead: true, network: true };
  private readonly client: WebClient;
  private readonly endpoint: URL;
  private readonly token: string | undefined;

  constructor(opts: HfSourceOptions = {}, env: NodeJS.ProcessEnv = process.env) {
    this.endpoint = new URL(opts.endpoint ?? env.HF_ENDPOINT ?? DEFAULT_ENDPOINT);
    this.token = (opts.token ?? env.HF_TOKEN ?? env.HUGGING_FACE_HUB_TOKEN) || undefined;
    // The Hub is named by configuration, not by requests: no SSRF policy applies to it.
    this.client = new WebClient({ allowPrivate: true }, opts.connections ?? CONNECTIONS);
  }

  /** HEAD on the Hub only: its answer carries size and version; CDN links are signed for GET. */
  async stat(ref: ObjectRef, opts: { signal: AbortSignal }): Promise<ObjectStat> {
    throwIfAborted(opts.signal);
    const ctx = this.ctx(ref);
    const res = await this.send('HEAD', ref, {}, opts.signal, true);
    await drain(res);
    if (res.status >= 400) throw await this.failure(res, ref);
    const hub = res.headers;
    const size = header(hub, 'x-linked-size') ?? (res.status === 200 ? header(hub, 'content-length') : undefined);
    if (size !== undefined) return { size: Number(size), ...versionOf(res) };
    // An answer without a size: one byte of the file tells it.
    const probe = await this.send('GET', ref, { range: 'bytes=0-0' }, opts.signal, false);
    await drain(probe);
    if (probe.status >= 400 && probe.status !== 416) throw await this.failure(probe, ref);
    const total = /\/(\d+)\s*$/.exec(header(probe.headers, 'content-range') ?? '')?.[1];
    if (total === undefined) throw new OjsError('Upstream', 'hf: the Hub tells no size for this file', { context: ctx });
    return { size: Number(total), ...versionOf(probe) };
  }

  async open(ref: ObjectRef, opts: OpenOptions): Promise<OpenedObject> {
    throwIfAborted(opts.signal);
    const ctx = this.ctx(ref);
    const range = rangeHeader(opts.range);
    const res = await this.send('GET', ref, range === undefined ? {} : { range }, opts.signal, false);
    try {
      if (res.status === 416) throw rangeNotSatisfiable(opts.range, header(res.headers, 'content-range'), ctx);
      if (res.status !== 200 && res.status !== 206) throw await this.failure(res, ref);
      const v = versionOf(res);
      if (opts.ifMatch !== undefined && v.etag !== opts.ifMatch) {
        throw new OjsError('Conflict', `hf: the file changed (etag ${opts.ifMatch} -> ${v.etag ?? 'none'})`, { context: ctx });
      }
      const length = header(res.headers, 'content-length');
      const got = checkResponse(opts.range, { status: res.status, contentLength: length === undefined ? undefined : Number(length), contentRange: header(res.headers, 'content-range') }, ctx);
      return await bodyOf(res.body, got, v, opts.signal, (e) => networkError(e, 'hf: the body broke off', ctx, opts.signal), ctx);
    } catch (e) {
      discard(res);
      throw e;
    }
  }

  /**
   * The tree API (`/api/{kind}/{repo}/tree/{rev}/{dir}?recursive=true`, paged by Link headers)
   * under the prefix's folder. The Hub gives no order, so a listing is gathered and sorted
   * before the first key (repositories hold thousands of files, not billions).
   */
  async *list(bucket: string, prefix: string, opts: { signal: AbortSignal }): AsyncIterable<ListedObject> {
    const repo = parseRepo(bucket);
    const ref = { bucket, key: prefix };
    const slash = prefix.lastIndexOf('/');
    const dir = slash < 0 ? '' : prefix.slice(0, slash);
    const api = repo.kind === '' ? 'models/' : repo.kind;
    let url: URL | undefined = new URL(
      `api/${api}${repo.name}/tree/${encodeURIComponent(repo.revision)}${dir === '' ? '' : `/${encodePath(dir)}`}?recursive=true&expand=false`,
      withSlash(this.endpoint),
    );
    const found: { key: Buffer; item: ListedObject }[] = [];
    while (url !== undefined) {
      const res = await this.client.send({ method: 'GET', url, headers: this.auth(), signal: opts.signal, context: this.ctx(ref), maxRedirects: MAX_REDIRECTS, provider: 'hf' });
      if (res.status === 404 && dir !== '' && (header(res.headers, 'x-error-code') ?? '') === 'EntryNotFound') {
        await drain(res);
        break;
      }
      if (res.status !== 200) throw await this.failure(res, ref);
      const page = JSON.parse(await readText(res, Number.MAX_SAFE_INTEGER)) as { type: string; path: string; size?: number; lfs?: { size?: number } }[];
      for (const e of page) {
        if (e.type !== 'file' || !e.path.startsWith(prefix)) continue;
        found.push({ key: Buffer.from(e.path), item: { key: e.path, size: e.lfs?.size ?? e.size ?? 0 } });
      }
      const next = /<([^>]+)>;\s*rel="next"/.exec(header(res.headers, 'link') ?? '')?.[1];
      url = next === undefined ? undefined : new URL(next, url);
    }
    found.sort((a, b) => Buffer.compare(a.key, b.key));
    for (const f of found) yield f.item;
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  private send(method: 'GET' | 'HEAD', ref: ObjectRef, headers: Record<string, string>, signal: AbortSignal, hubOnly: boolean): Promise<WebResponse> {
    return this.client.send({
      method,
      url: this.url(ref),
      headers: { ...this.auth(), 'accept-encoding': 'identity', ...headers },
      signal,
      context: this.ctx(ref),
      maxRedirects: MAX_REDIRECTS,
      sameOriginOnly: hubOnly,
      provider: 'hf',
    });
  }

  private url(ref: ObjectRef): URL {
    const repo = parseRepo(ref.bucket);
    return new URL(`${repo.kind}${repo.name}/resolve/${encodeURIComponent(repo.revision)}/${encodePath(ref.key)}`, withSlash(this.endpoint));
  }

  private auth(): Record<string, string> {
    return this.token === undefined ? {} : { authorization: `Bearer ${this.token}` };
  }

  /** The Hub's error codes (X-Error-Code) say what is missing: the repository, the revision or the file. */
  private async failure(res: WebResponse, ref: ObjectRef): Promise<OjsError> {
    const ctx = this.ctx(ref);
    const errorCode = header(res.headers, 'x-error-code') ?? '';
    const text = (await readText(res, ERROR_BODY_MAX)).trim();
    const said = (header(res.headers, 'x-error-message') ?? (text.startsWith('{') ? safeJson(text) : text)).slice(0, 200);
    const repo = parseRepo(ref.bucket);
    const withMsg = (m: string) => (said === '' ? m : `${m}: ${said}`);
    if (errorCode === 'RepoNotFound' || (res.status === 401 && this.token === undefined)) {
      const hint = this.token === undefined ? ' (or private or gated: set HF_TOKEN)' : ' (or the token has no access to it)';
      return new OjsError('NotFound', withMsg(`hf: repository '${repo.kind}${repo.name}' not found${hint}`), { code: 'ERR_NO_SUCH_BUCKET', context: ctx });
    }
    if (errorCode === 'RevisionNotFound') {
      return new OjsError('NotFound', withMsg(`hf: no revision '${repo.revision}' in '${repo.kind}${repo.name}'`), { code: 'ERR_NO_SUCH_BUCKET', context: ctx });
    }
    if (errorCode === 'EntryNotFound' || res.status === 404) return statusError(404, withMsg('hf: no such file'), { context: ctx, providerCode: errorCode });
    if (res.status === 401) return statusError(401, withMsg('hf: the token was rejected'), { context: ctx, providerCode: errorCode });
    if (errorCode === 'GatedRepo') return statusError(res.status, withMsg('hf: gated repository: accept its conditions on the Hub first'), { context: ctx, providerCode: errorCode, kind: 'Forbidden' });
    return statusError(res.status, withMsg(`hf: the Hub answered ${res.status}`), { context: ctx, providerCode: errorCode, retryAfter: header(res.headers, 'retry-after') });
  }

  private ctx(ref: ObjectRef): ErrorContext {
    return { provider: 'hf', bucket: ref.bucket, key: ref.key };
  }
}

/** The version from the Hub's own answer (the last hop on the Hub before a CDN). */
function versionOf(res: WebResponse): { etag?: string } {
  const origin = res.hops[0]?.url.origin;
  const hub = res.hops.filter((h) => h.url.origin === origin);
  for (const h of hub.reverse()) {
    const v = header(h.headers, 'x-linked-etag') ?? header(h.headers, 'etag');
    if (v !== undefined) return { etag: v };
  }
  const last = header(res.headers, 'etag');
  return last === undefined ? {} : { etag: last };
}

/** `datasets/ORG/NAME@REV` -> its parts. */
export function parseRepo(bucket: string): Repo {
  const parts = bucket.split('/');
  let kind: Repo['kind'] = '';
  if (parts[0] === 'datasets' || parts[0] === 'spaces') kind = `${parts.shift()}/` as Repo['kind'];
  else if (parts[0] === 'models') parts.shift();
  const [org, nameRev, ...rest] = parts;
  if (org === undefined || org === '' || nameRev === undefined || nameRev === '' || rest.length > 0) {
    throw new OjsError('BadSpec', `hf: '${bucket}' is not a repository (expected [datasets/|spaces/]ORG/NAME[@REV])`, { context: { provider: 'hf', bucket } });
  }
  const at = nameRev.indexOf('@');
  const name = at < 0 ? nameRev : nameRev.slice(0, at);
  const revision = at < 0 ? 'main' : decodeURIComponent(nameRev.slice(at + 1));
  if (name === '' || revision === '') throw new OjsError('BadSpec', `hf: '${bucket}' has an empty name or revision`, { context: { provider: 'hf', bucket } });
  return { kind, name: `${org}/${name}`, revision };
}

function encodePath(p: string): string {
  return p.split('/').map(encodeURIComponent).join('/');
}

function withSlash(u: URL): URL {
  return u.pathname.endsWith('/') ? u : new URL(`${u.href}/`);
}

function safeJson(text: string): string {
  try {
    const v = JSON.parse(text) as { error?: unknown };
    return typeof v.error === 'string' ? v.error : text;
  } catch {
    return text;
  }
}

export const createHf: SourceFactory = async (config) => new HfSource((config.remote?.hf ?? {}) as HfSourceOptions);
