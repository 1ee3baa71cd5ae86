/**
 * `gs` (alias `gcp`): `gs://bucket/object` on @google-cloud/storage. Credentials are the
 * standard Google ones (GOOGLE_APPLICATION_CREDENTIALS, gcloud's application-default login,
 * the metadata server) through the SDK's auth client. An emulator or another endpoint is set
 * with `apiEndpoint` (JSON API under `{apiEndpoint}/storage/v1`); the SDK's
 * STORAGE_EMULATOR_HOST works too, but is used verbatim as the JSON API base (no `/storage/v1`).
 *
 * The SDK does metadata (stat), listings and credentials. Media downloads are plain ranged GETs
 * with undici against the SDK's own base URL and auth headers: the SDK's download stream (node-
 * fetch 2 underneath) cannot be cancelled, so on an abort it destroys its whole HTTP agent,
 * every socket of every download in flight, and it retries on its own. The version is the
 * object's generation; a read at a version asks `ifGenerationMatch`.
 */
import { Storage, type File, type StorageOptions } from '@google-cloud/storage';
import { OjsError, abortedError, throwIfAborted, type ErrorContext } from '../spec/errors.js';
import type { SourceFactory } from './registry.js';
import { header, networkError, statusError } from './remote.js';
import { bodyOf, checkResponse, rangeHeader, rangeNotSatisfiable } from './response.js';
import type { ListedObject, ObjectRef, ObjectSource, ObjectStat, OpenOptions, OpenedObject, SourceCapabilities } from './types.js';
import { WebClient, discard, readText, type WebResponse } from './web.js';

const CONNECTIONS = 128; // sockets to the JSON API: GCS serves many small objects best over many connections
const LIST_PAGE = 1000; // objects per listing page, the API's maximum
const ERROR_BODY_MAX = 4096; // bytes of an error answer read for its message

export interface GcsSourceOptions {
  /** JSON API endpoint of an emulator or another universe, e.g. http://127.0.0.1:4443. Default: OJS_ML_GCS_ENDPOINT, then the SDK's (storage.googleapis.com, or STORAGE_EMULATOR_HOST). */
  apiEndpoint?: string;
  /** Project for requests that need one; default the credentials' project. */
  projectId?: string;
  /** A service account key file; default GOOGLE_APPLICATION_CREDENTIALS and the standard chain. */
  keyFilename?: string;
  /** Send credentials to a custom apiEndpoint too (emulators need none). Default false, as the SDK. */
  useAuthWithCustomEndpoint?: boolean;
  /** Sockets kept for media downloads. Default 128. */
  connections?: number;
}

interface ApiErrorLike {
  code?: number | string;
  message?: string;
  errors?: { reason?: string }[];
}

export class GcsSource implements ObjectSource {
  readonly provider = 'gs' as const;
  readonly capabilities: SourceCapabilities = { ranges: true, list: true, conditionalRead: true, network: true };
  readonly storage: Storage;
  private readonly client: WebClient;
  private readonly baseUrl: string;
  private readonly needsAuth: boolean;

  constructor(opts: GcsSourceOptions = {}, env: NodeJS.ProcessEnv = process.env) {
    // OJS_ML_GCS_ENDPOINT: the same as apiEndpoint, for the CLI and the server (no option to pass there).
    const apiEndpoint = opts.apiEndpoint ?? (env.OJS_ML_GCS_ENDPOINT || undefined);
    const options: StorageOptions = {
      retryOptions: { autoRetry: false, maxRetries: 0 },
      ...(apiEndpoint === undefined ? {} : { apiEndpoint }),
      ...(opts.projectId === undefined ? {} : { projectId: opts.projectId }),
      ...(opts.keyFilename === undefined ? {} : { keyFilename: opts.keyFilename }),
      ...(opts.useAuthWithCustomEndpoint === undefined ? {} : { useAuthWithCustomEndpoint: opts.useAuthWithCustomEndpoint }),
    };
    this.storage = new Storage(options);
    this.baseUrl = this.storage.baseUrl.replace(/\/+$/, '');
    this.needsAuth = !this.storage.customEndpoint || opts.useAuthWithCustomEndpoint === true;
    // The endpoint is configuration, not request input: no SSRF policy.
    this.client = new WebClient({ allowPrivate: true }, opts.connections ?? CONNECTIONS);
  }

  // https://cloud.google.com/storage/docs/json_api/v1/objects/get
  async stat(ref: ObjectRef, opts: { signal: AbortSignal }): Promise<ObjectStat> {
    throwIfAborted(opts.signal);
    const [md] = await this.call(ref, opts.signal, () => this.file(ref).getMetadata());
    return { size: Number(md.size ?? 0), ...(md.generation === undefined ? {} : { etag: String(md.generation) }), ...(md.updated === undefined ? {} : { mtime: new Date(md.updated) }) };
  }

  // https://cloud.google.com/storage/docs/json_api/v1/objects/get (alt=media)
  async open(ref: ObjectRef, opts: OpenOptions): Promise<OpenedObject> {
    throwIfAborted(opts.signal);
    const ctx = this.ctx(ref);
    const url = new URL(`${this.baseUrl}/b/${encodeURIComponent(ref.bucket)}/o/${encodeURIComponent(ref.key)}`);
    url.searchParams.set('alt', 'media');
    if (opts.ifMatch !== undefined) url.searchParams.set('ifGenerationMatch', opts.ifMatch);
    // gzip: the stored bytes as they are, so ranges and sizes mean stored bytes (no transcoding).
    const headers: Record<string, string> = { ...(await this.authHeaders(ref, opts.signal)), 'accept-encoding': 'gzip' };
    const range = rangeHeader(opts.range);
    if (range !== undefined) headers.range = range;
    const res = await this.client.send({ method: 'GET', url, headers, signal: opts.signal, context: ctx, maxRedirects: 0, provider: 'gs' });
    try {
      if (res.status === 416) throw rangeNotSatisfiable(opts.range, header(res.headers, 'content-range'), ctx, await this.sizeAfter416(res, ref, opts.signal));
      if (res.status !== 200 && res.status !== 206) throw await this.failure(res, ref);
      const generation = header(res.headers, 'x-goog-generation');
      if (opts.ifMatch !== undefined && generation !== opts.ifMatch) {
        throw new OjsError('Conflict', `gs: the object changed (generation ${opts.ifMatch} -> ${generation ?? 'none'})`, { context: ctx });
      }
      const length = header(res.headers, 'content-length');
      const got = checkResponse(opts.range, { status: res.status, contentLength: length === undefined ? undefined : Number(length), contentRange: header(res.headers, 'content-range') }, ctx);
      const meta = generation === undefined ? {} : { etag: generation };
      return await bodyOf(res.body, got, meta, opts.signal, (e) => networkError(e, 'gs: the body broke off', ctx, opts.signal), ctx);
    } catch (e) {
      discard(res);
      throw e;
    }
  }

  // https://cloud.google.com/storage/docs/json_api/v1/objects/list (lexicographic order, which is byte order)
  async *list(bucket: string, prefix: string, opts: { signal: AbortSignal }): AsyncIterable<ListedObject> {
    const ref = { bucket, key: prefix };
    let pageToken: string | undefined;
    do {
      throwIfAborted(opts.signal);
      const query = { prefix, autoPaginate: false, maxResults: LIST_PAGE, ...(pageToken === undefined ? {} : { pageToken }) };
      const [files, next] = await this.call(ref, opts.signal, () => this.storage.bucket(bucket).getFiles(query));
      for (const f of files) yield { key: f.name, size: Number(f.metadata.size ?? 0) };
      pageToken = (next as { pageToken?: string } | null)?.pageToken;
    } while (pageToken !== undefined);
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  private file(ref: ObjectRef): File {
    return this.storage.bucket(ref.bucket).file(ref.key);
  }

  /** An SDK call that cannot be cancelled: an abort stops waiting for it (it finishes on its own). */
  private async call<T>(ref: ObjectRef, signal: AbortSignal, fn: () => Promise<T>): Promise<T> {
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(abortedError(signal));
      signal.addEventListener('abort', onAbort, { once: true });
    });
    const call = fn();
    call.catch(() => undefined);
    try {
      return await Promise.race([call, aborted]);
    } catch (e) {
      throw this.sdkError(e, ref, signal);
    } finally {
      signal.removeEventListener('abort', onAbort!);
    }
  }

  /** Whatever fails here is about credentials, except a token server that cannot be reached. */
  private async authHeaders(ref: ObjectRef, signal: AbortSignal): Promise<Record<string, string>> {
    if (!this.needsAuth) return {};
    let h: unknown;
    try {
      h = await this.call(ref, signal, () => this.storage.authClient.getRequestHeaders());
    } catch (e) {
      const err = e as OjsError;
      if (err.kind === 'Aborted' || err.kind === 'Unauthorized' || err.temporary) throw e;
      throw this.noCredentials(err.cause ?? e, ref);
    }
    return Object.fromEntries(Object.entries(h as Record<string, string>).map(([k, v]) => [k.toLowerCase(), v]));
  }

  private noCredentials(e: unknown, ref: ObjectRef): OjsError {
    const msg = (e as Error).message ?? String(e);
    return new OjsError('Unauthorized', `gs: no usable Google credentials: ${msg.split('\n')[0]} (set GOOGLE_APPLICATION_CREDENTIALS or run gcloud auth application-default login)`, {
      context: this.ctx(ref),
      cause: e,
    });
  }

  /** GCS's 416 gives no size; the metadata does. */
  private async sizeAfter416(res: WebResponse, ref: ObjectRef, signal: AbortSignal): Promise<number | undefined> {
    await readText(res, ERROR_BODY_MAX);
    return this.stat(ref, { signal }).then((s) => s.size, () => undefined);
  }

  private async failure(res: WebResponse, ref: ObjectRef): Promise<OjsError> {
    const text = await readText(res, ERROR_BODY_MAX);
    let err: ApiErrorLike = { code: res.status, message: text.trim().slice(0, 200) };
    try {
      err = { ...((JSON.parse(text) as { error?: ApiErrorLike }).error ?? {}), code: res.status };
    } catch {
      // not JSON: the text is the message
    }
    return this.statusFailure(res.status, err, ref, header(res.headers, 'retry-after'));
  }

  private sdkError(e: unknown, ref: ObjectRef, signal: AbortSignal): OjsError {
    if (e instanceof OjsError) return e;
    const err = e as ApiErrorLike & { response?: { status?: number } };
    const status = typeof err.code === 'number' ? err.code : err.response?.status;
    if (status !== undefined && status >= 300) return this.statusFailure(status, err, ref);
    if (/credentials|invalid_grant|private key/i.test(err.message ?? '')) return this.noCredentials(e, ref);
    return networkError(e, `gs: cannot reach ${this.baseUrl}`, this.ctx(ref), signal);
  }

  private statusFailure(status: number, err: ApiErrorLike, ref: ObjectRef, retryAfter?: string): OjsError {
    const ctx = this.ctx(ref);
    const reason = err.errors?.[0]?.reason ?? '';
    const said = (err.message ?? '').split('\n')[0] ?? '';
    if (status === 404 && /bucket/i.test(said)) {
      return statusError(404, `gs: no such bucket '${ref.bucket}'`, { context: ctx, providerCode: reason, code: 'ERR_NO_SUCH_BUCKET' });
    }
    const message =
      status === 404 ? 'gs: no such object' : status === 412 ? 'gs: the object changed (generation does not match)' : status === 401 ? `gs: the credentials were rejected: ${said}` : `gs: ${said || `the service answered ${status}`}`;
    return statusError(status, message, { context: ctx, providerCode: reason, retryAfter });
  }

  private ctx(ref: ObjectRef): ErrorContext {
    return { provider: 'gs', bucket: ref.bucket, key: ref.key };
  }
}

export const createGcs: SourceFactory = async (config) => new GcsSource((config.remote?.gs ?? {}) as GcsSourceOptions);
