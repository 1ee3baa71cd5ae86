/**
 * `s3` (alias `aws`): `s3://bucket/key` on @aws-sdk/client-s3. Credentials come from the
 * standard AWS chain (environment, shared files, SSO, web identity, container and instance
 * metadata) unless given. `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` point it at another
 * S3 API (MinIO, Ceph, s3rver), addressed path-style; `AWS_REGION` / `AWS_DEFAULT_REGION` set
 * the region, and a bucket in another region is followed there.
 *
 * The SDK's own retries are off (one attempt) and so are its payload checksums on reads: the
 * layers retry and the body checks its byte count. Ranges are explicit first-last.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import type { Readable } from 'node:stream';
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, S3Client, type GetObjectCommandOutput } from '@aws-sdk/client-s3';
import { OjsError, throwIfAborted, type ErrorContext } from '../spec/errors.js';
import type { ByteRange } from '../spec/range.js';
import type { SourceFactory } from './registry.js';
import { networkError, statusError } from './remote.js';
import { bodyOf, checkResponse, rangeHeader, rangeNotSatisfiable } from './response.js';
import type { ListedObject, ObjectRef, ObjectSource, ObjectStat, OpenOptions, OpenedObject, SourceCapabilities } from './types.js';

// The SDK warns on every start that its releases after January 2027 need Node 22; this build
// pins a release that supports Node 20, so the warning only clutters the CLI's one-line errors.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const SOCKETS = 256; // per host: the concurrency layer's limit, so the SDK's pool is never the queue
const DEFAULT_REGION = 'us-east-1'; // where an unset region points; other regions are followed by redirect

export interface S3SourceOptions {
  /** Region; default AWS_REGION, then AWS_DEFAULT_REGION, then us-east-1. */
  region?: string;
  /** Endpoint URL of an S3-compatible service; default AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL. */
  endpoint?: string;
  /** Path-style addressing (`endpoint/bucket/key`); default on when an endpoint is set. */
  forcePathStyle?: boolean;
  /** Static credentials; default the SDK's standard chain. */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Sockets kept per host. Default 256. */
  sockets?: number;
}

/** What the SDK's errors carry that we look at. */
interface SdkError {
  name?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  $response?: { headers?: Record<string, string | undefined> };
}

export class S3Source implements ObjectSource {
  readonly provider = 's3' as const;
  readonly capabilities: SourceCapabilities = { ranges: true, list: true, conditionalRead: true, network: true };
  readonly client: S3Client;
  private readonly endpoint: string | undefined;

  constructor(opts: S3SourceOptions = {}, env: NodeJS.ProcessEnv = process.env) {
    this.endpoint = opts.endpoint ?? env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL;
    const sockets = opts.sockets ?? SOCKETS;
    this.client = new S3Client({
      region: opts.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? DEFAULT_REGION,
      ...(this.endpoint === undefined ? {} : { endpoint: this.endpoint }),
      forcePathStyle: opts.forcePathStyle ?? this.endpoint !== undefined,
      ...(opts.credentials === undefined ? {} : { credentials: opts.credentials }),
      followRegionRedirects: true,
      maxAttempts: 1,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: {
        httpAgent: new http.Agent({ keepAlive: true, maxSockets: sockets }),
        httpsAgent: new https.Agent({ keepAlive: true, maxSockets: sockets }),
      },
    });
  }

  // https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html
  async stat(ref: ObjectRef, opts: { signal: AbortSignal }): Promise<ObjectStat> {
    throwIfAborted(opts.signal);
    try {
      const r = await this.client.send(new HeadObjectCommand({ Bucket: ref.bucket, Key: ref.key }), { abortSignal: opts.signal });
      return { size: r.ContentLength ?? 0, ...(r.ETag === undefined ? {} : { etag: r.ETag }), ...(r.LastModified === undefined ? {} : { mtime: r.LastModified }) };
    } catch (e) {
      throw this.error(e, ref, opts.signal);
    }
  }

  // https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html
  async open(ref: ObjectRef, opts: OpenOptions): Promise<OpenedObject> {
    throwIfAborted(opts.signal);
    const ctx = this.ctx(ref);
    let r: GetObjectCommandOutput;
    try {
      r = await this.client.send(
        new GetObjectCommand({ Bucket: ref.bucket, Key: ref.key, Range: rangeHeader(opts.range), IfMatch: opts.ifMatch }),
        { abortSignal: opts.signal },
      );
    } catch (e) {
      throw await this.openError(e, ref, opts);
    }
    const body = r.Body as Readable;
    try {
      // Not every S3-compatible server honours If-Match (s3rver does not): compared here too.
      if (opts.ifMatch !== undefined && r.ETag !== opts.ifMatch) {
        throw new OjsError('Conflict', `s3: the object changed (etag ${opts.ifMatch} -> ${r.ETag ?? 'none'})`, { context: ctx });
      }
      const got = checkResponse(opts.range, { status: r.$metadata.httpStatusCode ?? 200, contentLength: r.ContentLength, contentRange: r.ContentRange }, ctx);
      const meta = { ...(r.ETag === undefined ? {} : { etag: r.ETag }), ...(r.LastModified === undefined ? {} : { mtime: r.LastModified }) };
      return await bodyOf(body, got, meta, opts.signal, (e) => this.error(e, ref, opts.signal), ctx);
    } catch (e) {
      body.destroy();
      throw e;
    }
  }

  // https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html
  async *list(bucket: string, prefix: string, opts: { signal: AbortSignal }): AsyncIterable<ListedObject> {
    const ref = { bucket, key: prefix };
    let token: string | undefined;
    let last: Buffer | undefined;
    do {
      throwIfAborted(opts.signal);
      let page;
      try {
        page = await this.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }), { abortSignal: opts.signal });
      } catch (e) {
        throw this.error(e, ref, opts.signal);
      }
      const items = (page.Contents ?? []).map((c) => ({ key: c.Key ?? '', size: c.Size ?? 0 }));
      // S3 lists in UTF-8 byte order; some compatible servers (s3rver) list a page in directory
      // order. A page is put in order here; pages out of order with each other are an error.
      items.sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)));
      for (const item of items) {
        const key = Buffer.from(item.key);
        if (last !== undefined && Buffer.compare(key, last) <= 0) {
          throw new OjsError('Upstream', `the listing is out of byte order ('${item.key}' after '${last.toString()}')`, { context: this.ctx(ref) });
        }
        last = key;
        yield item;
      }
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  /** A 416 says no size: a HEAD tells it, for the same message every source gives. */
  private async openError(e: unknown, ref: ObjectRef, opts: OpenOptions): Promise<OjsError> {
    const err = this.error(e, ref, opts.signal);
    if (err.kind !== 'Range') return err;
    const size = await this.stat(ref, { signal: opts.signal }).then((s) => s.size, () => undefined);
    return rangeNotSatisfiable(opts.range as ByteRange | undefined, undefined, this.ctx(ref), size);
  }

  private error(e: unknown, ref: ObjectRef, signal: AbortSignal): OjsError {
    const ctx = this.ctx(ref);
    const err = e as SdkError;
    const status = err.$metadata?.httpStatusCode;
    const name = err.name ?? '';
    if (status === undefined || status < 300) {
      if (name === 'CredentialsProviderError' || /credential/i.test(err.message ?? '')) {
        return new OjsError('Unauthorized', `s3: no usable AWS credentials: ${err.message ?? name} (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE)`, { context: ctx, cause: e });
      }
      return networkError(e, `s3: cannot reach ${this.endpoint ?? 'S3'}`, ctx, signal);
    }
    const retryAfter = err.$response?.headers?.['retry-after'];
    const { message, code, rejected } = describe(name, status, ref);
    // S3 says "rejected credentials" with a 403; that is our Unauthorized, not Forbidden.
    return statusError(status, message, { context: ctx, providerCode: name, retryAfter, cause: e, code, ...(rejected === true ? { kind: 'Unauthorized' as const } : {}) });
  }

  private ctx(ref: ObjectRef): ErrorContext {
    return { provider: 's3', bucket: ref.bucket, key: ref.key };
  }
}

function describe(name: string, status: number, ref: ObjectRef): { message: string; code?: string; rejected?: boolean } {
  switch (name) {
    case 'NoSuchBucket':
      return { message: `s3: no such bucket '${ref.bucket}'`, code: 'ERR_NO_SUCH_BUCKET' };
    case 'NoSuchKey':
      return { message: 's3: no such object' };
    case 'NotFound':
      return { message: 's3: no such object (or bucket)' };
    case 'InvalidAccessKeyId':
    case 'SignatureDoesNotMatch':
    case 'ExpiredToken':
    case 'InvalidToken':
      return { message: 's3: the credentials were rejected', rejected: true };
    case 'AccessDenied':
      return { message: 's3: access denied' };
    case 'PreconditionFailed':
      return { message: 's3: the object changed (If-Match failed)' };
    case 'SlowDown':
      return { message: 's3: asked to slow down' };
    default:
      if (status === 403) return { message: 's3: access denied (or the credentials were rejected)' };
      return { message: `s3: the service answered ${status}` };
  }
}

export const createS3: SourceFactory = async (config) => new S3Source((config.remote?.s3 ?? {}) as S3SourceOptions);
