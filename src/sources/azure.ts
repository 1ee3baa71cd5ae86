/**
 * `az` (alias `azure`): `az://container/blob` on @azure/storage-blob. Credentials, first found:
 * a connection string (AZURE_STORAGE_CONNECTION_STRING), an account with its key
 * (AZURE_STORAGE_ACCOUNT + AZURE_STORAGE_KEY), an account with a SAS (AZURE_STORAGE_SAS_TOKEN),
 * or an account alone (anonymous: public containers). AZURE_STORAGE_BLOB_ENDPOINT (or the
 * connection string's BlobEndpoint) points at Azurite or another cloud.
 *
 * The SDK's retries are off, both the pipeline's and the download stream's own: the layers
 * retry, and resume a broken body with the blob's etag as If-Match.
 */
import { AnonymousCredential, BlobServiceClient, StorageSharedKeyCredential, type BlobDownloadResponseParsed, type StoragePipelineOptions } from '@azure/storage-blob';
import type { Readable } from 'node:stream';
import { OjsError, throwIfAborted, type ErrorContext } from '../spec/errors.js';
import type { SourceFactory } from './registry.js';
import { networkError, statusError } from './remote.js';
import { bodyOf, checkResponse, rangeNotSatisfiable } from './response.js';
import type { ListedObject, ObjectRef, ObjectSource, ObjectStat, OpenOptions, OpenedObject, SourceCapabilities } from './types.js';

const LIST_PAGE = 5000; // blobs per listing page, the service's maximum

export interface AzureSourceOptions {
  /** A storage connection string; default AZURE_STORAGE_CONNECTION_STRING. */
  connectionString?: string;
  /** Storage account name; default AZURE_STORAGE_ACCOUNT. */
  account?: string;
  /** Account key (shared key); default AZURE_STORAGE_KEY, then AZURE_STORAGE_ACCESS_KEY. */
  key?: string;
  /** A SAS token (with or without the leading '?'); default AZURE_STORAGE_SAS_TOKEN. */
  sasToken?: string;
  /** Blob endpoint URL; default AZURE_STORAGE_BLOB_ENDPOINT, then https://ACCOUNT.blob.core.windows.net. */
  endpoint?: string;
}

interface RestErrorLike {
  name?: string;
  message?: string;
  code?: string;
  statusCode?: number;
  details?: { errorCode?: string };
  response?: { headers?: { get(name: string): string | undefined } };
}

export class AzureSource implements ObjectSource {
  readonly provider = 'az' as const;
  readonly capabilities: SourceCapabilities = { ranges: true, list: true, conditionalRead: true, network: true };
  readonly service: BlobServiceClient;
  private readonly where: string;

  constructor(opts: AzureSourceOptions = {}, env: NodeJS.ProcessEnv = process.env) {
    const pipeline: StoragePipelineOptions = { retryOptions: { maxTries: 1 }, keepAliveOptions: { enable: true } };
    const cs = opts.connectionString ?? env.AZURE_STORAGE_CONNECTION_STRING;
    if (cs !== undefined && cs !== '') {
      this.service = BlobServiceClient.fromConnectionString(cs, pipeline);
      this.where = this.service.url;
      return;
    }
    const account = opts.account ?? env.AZURE_STORAGE_ACCOUNT;
    if (account === undefined || account === '') {
      throw new OjsError(
        'Unauthorized',
        'az: no Azure credentials: set AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN',
        { context: { provider: 'az' } },
      );
    }
    const endpoint = (opts.endpoint ?? env.AZURE_STORAGE_BLOB_ENDPOINT ?? `https://${account}.blob.core.windows.net`).replace(/\/+$/, '');
    const key = opts.key ?? env.AZURE_STORAGE_KEY ?? env.AZURE_STORAGE_ACCESS_KEY;
    const sas = (opts.sasToken ?? env.AZURE_STORAGE_SAS_TOKEN ?? '').replace(/^\?/, '');
    if (key !== undefined && key !== '') {
      this.service = new BlobServiceClient(endpoint, new StorageSharedKeyCredential(account, key), pipeline);
    } else {
      this.service = new BlobServiceClient(sas === '' ? endpoint : `${endpoint}?${sas}`, new AnonymousCredential(), pipeline);
    }
    this.where = endpoint;
  }

  // https://learn.microsoft.com/rest/api/storageservices/get-blob-properties
  async stat(ref: ObjectRef, opts: { signal: AbortSignal }): Promise<ObjectStat> {
    throwIfAborted(opts.signal);
    try {
      const p = await this.blob(ref).getProperties({ abortSignal: opts.signal });
      return { size: p.contentLength ?? 0, ...(p.etag === undefined ? {} : { etag: p.etag }), ...(p.lastModified === undefined ? {} : { mtime: p.lastModified }) };
    } catch (e) {
      throw this.error(e, ref, opts.signal);
    }
  }

  // https://learn.microsoft.com/rest/api/storageservices/get-blob
  async open(ref: ObjectRef, opts: OpenOptions): Promise<OpenedObject> {
    throwIfAborted(opts.signal);
    const ctx = this.ctx(ref);
    const r = opts.range;
    let res: BlobDownloadResponseParsed;
    try {
      res = await this.blob(ref).download(r?.start ?? 0, r === undefined || r.length === -1 ? undefined : r.length, {
        abortSignal: opts.signal,
        maxRetryRequests: 0,
        ...(opts.ifMatch === undefined ? {} : { conditions: { ifMatch: opts.ifMatch } }),
      });
    } catch (e) {
      const err = this.error(e, ref, opts.signal);
      if (err.kind !== 'Range') throw err;
      const size = await this.stat(ref, { signal: opts.signal }).then((s) => s.size, () => undefined);
      throw rangeNotSatisfiable(r, undefined, ctx, size);
    }
    const body = res.readableStreamBody as Readable | undefined;
    try {
      if (body === undefined) throw new OjsError('Upstream', 'az: the download has no body stream', { context: ctx });
      if (opts.ifMatch !== undefined && res.etag !== opts.ifMatch) {
        throw new OjsError('Conflict', `az: the blob changed (etag ${opts.ifMatch} -> ${res.etag ?? 'none'})`, { context: ctx });
      }
      // The SDK sends no range for offset 0 to the end: a 200, which checkResponse accepts for that range.
      const got = checkResponse(r, { status: res._response.status, contentLength: res.contentLength, contentRange: res.contentRange }, ctx);
      const meta = { ...(res.etag === undefined ? {} : { etag: res.etag }), ...(res.lastModified === undefined ? {} : { mtime: res.lastModified }) };
      return await bodyOf(body, got, meta, opts.signal, (e) => this.error(e, ref, opts.signal), ctx);
    } catch (e) {
      body?.destroy();
      throw e;
    }
  }

  // https://learn.microsoft.com/rest/api/storageservices/list-blobs (lexicographic order)
  async *list(bucket: string, prefix: string, opts: { signal: AbortSignal }): AsyncIterable<ListedObject> {
    const ref = { bucket, key: prefix };
    const pages = this.service.getContainerClient(bucket).listBlobsFlat({ prefix, abortSignal: opts.signal }).byPage({ maxPageSize: LIST_PAGE });
    let last: Buffer | undefined;
    while (true) {
      let page: Awaited<ReturnType<typeof pages.next>>;
      try {
        page = await pages.next();
      } catch (e) {
        throw this.error(e, ref, opts.signal);
      }
      if (page.done === true) return;
      // Azure documents "lexicographic" order, not byte order (Azurite sorts as JavaScript does,
      // by UTF-16 units): a page is put in byte order; pages out of order with each other fail.
      const items = page.value.segment.blobItems.map((b) => ({ b, key: Buffer.from(b.name) }));
      items.sort((x, y) => Buffer.compare(x.key, y.key));
      for (const { b, key } of items) {
        if (last !== undefined && Buffer.compare(key, last) <= 0) {
          throw new OjsError('Upstream', `az: the listing is out of byte order ('${b.name}' after '${last.toString()}')`, { context: this.ctx(ref) });
        }
        last = key;
        yield { key: b.name, size: b.properties.contentLength ?? 0 };
      }
    }
  }

  /** The SDK's HTTP client keeps no pool of ours to close. */
  async close(): Promise<void> {}

  private blob(ref: ObjectRef) {
    return this.service.getContainerClient(ref.bucket).getBlobClient(ref.key);
  }

  private error(e: unknown, ref: ObjectRef, signal: AbortSignal): OjsError {
    if (e instanceof OjsError) return e;
    const ctx = this.ctx(ref);
    const err = e as RestErrorLike;
    const status = err.statusCode;
    if (status === undefined || status < 300) return networkError(e, `az: cannot reach ${this.where}`, ctx, signal);
    const code = err.details?.errorCode ?? err.code ?? '';
    const retryAfter = err.response?.headers?.get('retry-after');
    switch (code) {
      case 'ContainerNotFound':
        return statusError(status, `az: no such container '${ref.bucket}'`, { context: ctx, providerCode: code, code: 'ERR_NO_SUCH_BUCKET' });
      case 'BlobNotFound':
        return statusError(status, 'az: no such blob', { context: ctx, providerCode: code });
      case 'AuthenticationFailed':
      case 'InvalidAuthenticationInfo':
        return statusError(status, 'az: the credentials were rejected', { context: ctx, providerCode: code, kind: 'Unauthorized' });
      case 'ConditionNotMet':
        return statusError(status, 'az: the blob changed (If-Match failed)', { context: ctx, providerCode: code });
      default: {
        const what = status === 404 ? 'az: no such blob (or container)' : status === 403 ? 'az: access denied (or the credentials were rejected)' : `az: the service answered ${status}`;
        return statusError(status, what, { context: ctx, providerCode: code, retryAfter });
      }
    }
  }

  private ctx(ref: ObjectRef): ErrorContext {
    return { provider: 'az', bucket: ref.bucket, key: ref.key };
  }
}

export const createAzure: SourceFactory = async (config) => new AzureSource((config.remote?.az ?? {}) as AzureSourceOptions);
