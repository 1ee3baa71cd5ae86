/**
 * A server that speaks the part of the GCS JSON API our client uses, on 127.0.0.1 and a random
 * port: object metadata (`GET /storage/v1/b/B/o/NAME`), media downloads (`?alt=media`, Range,
 * `ifGenerationMatch`, `x-goog-hash` with a correct crc32c and md5, `x-goog-generation`), and
 * listings (`GET /storage/v1/b/B/o?prefix=&pageToken=&maxResults=`, in byte order). Paths
 * without `/storage/v1` are accepted too, as STORAGE_EMULATOR_HOST makes the SDK send them.
 */
import { createHash } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { sendBytes, sendJson } from './bytes.js';
import { track, type Tracked } from './track.js';

const LIST_MAX = 1000;

export interface GcsServer extends Tracked {
  /** The apiEndpoint to give the client. */
  url: string;
  put(bucket: string, name: string, data: Buffer): void;
  createBucket(bucket: string): void;
  close(): Promise<void>;
}

interface Obj {
  data: Buffer;
  generation: string;
  md5: string;
  crc32c: string;
  updated: string;
}

const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32C (Castagnoli), as GCS reports it: big-endian, base64. */
export function crc32c(data: Buffer): string {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = CRC32C_TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  const out = Buffer.alloc(4);
  out.writeUInt32BE((c ^ 0xffffffff) >>> 0);
  return out.toString('base64');
}

export async function startGcs(): Promise<GcsServer> {
  const buckets = new Map<string, Map<string, Obj>>();
  let generation = 1_700_000_000_000_000;
  const server = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    const m = /^(?:\/storage\/v1)?\/b\/([^/]+)\/o(?:\/(.+))?$/.exec(u.pathname);
    if (m === null || req.method !== 'GET') return apiError(res, 404, 'notFound', `no such route: ${req.method} ${u.pathname}`);
    const bucket = buckets.get(decodeURIComponent(m[1]!));
    if (bucket === undefined) return apiError(res, 404, 'notFound', 'The specified bucket does not exist.');
    if (m[2] === undefined) return list(res, u, bucket);
    const name = decodeURIComponent(m[2]);
    const o = bucket.get(name);
    if (o === undefined) return apiError(res, 404, 'notFound', `No such object: ${m[1]}/${name}`);
    const want = u.searchParams.get('ifGenerationMatch');
    if (want !== null && want !== o.generation) return apiError(res, 412, 'conditionNotMet', 'At least one of the pre-conditions you specified did not hold.');
    if (u.searchParams.get('alt') === 'media') {
      sendBytes(req, res, o.data, {
        headers: {
          'x-goog-hash': `crc32c=${o.crc32c},md5=${o.md5}`,
          'x-goog-generation': o.generation,
          'x-goog-metageneration': '1',
          'x-goog-stored-content-length': String(o.data.length),
          'x-goog-stored-content-encoding': 'identity',
          etag: `"${o.md5}"`,
        },
      });
      return;
    }
    sendJson(res, 200, metadata(decodeURIComponent(m[1]!), name, o));
  });
  const tracked = track(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  function list(res: http.ServerResponse, u: URL, bucket: Map<string, Obj>): void {
    const prefix = u.searchParams.get('prefix') ?? '';
    const max = Math.min(Number(u.searchParams.get('maxResults') ?? LIST_MAX), LIST_MAX);
    const after = u.searchParams.get('pageToken');
    const names = [...bucket.keys()].filter((n) => n.startsWith(prefix)).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    const start = after === null ? 0 : names.findIndex((n) => Buffer.compare(Buffer.from(n), Buffer.from(after, 'base64url')) > 0);
    const page = start < 0 ? [] : names.slice(start, start + max);
    const more = start >= 0 && start + max < names.length;
    const bucketName = decodeURIComponent(/\/b\/([^/]+)\//.exec(u.pathname)![1]!);
    sendJson(res, 200, {
      kind: 'storage#objects',
      items: page.map((n) => metadata(bucketName, n, bucket.get(n)!)),
      ...(more ? { nextPageToken: Buffer.from(page[page.length - 1]!).toString('base64url') } : {}),
    });
  }

  return {
    ...tracked,
    url: `http://127.0.0.1:${port}`,
    createBucket: (b) => {
      if (!buckets.has(b)) buckets.set(b, new Map());
    },
    put: (b, name, data) => {
      if (!buckets.has(b)) buckets.set(b, new Map());
      buckets.get(b)!.set(name, {
        data,
        generation: String(generation++),
        md5: createHash('md5').update(data).digest('base64'),
        crc32c: crc32c(data),
        updated: new Date().toISOString(),
      });
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function metadata(bucket: string, name: string, o: Obj): Record<string, unknown> {
  return {
    kind: 'storage#object',
    id: `${bucket}/${name}/${o.generation}`,
    name,
    bucket,
    generation: o.generation,
    metageneration: '1',
    contentType: 'application/octet-stream',
    size: String(o.data.length),
    md5Hash: o.md5,
    crc32c: o.crc32c,
    etag: o.md5,
    updated: o.updated,
    timeCreated: o.updated,
  };
}

function apiError(res: http.ServerResponse, code: number, reason: string, message: string): void {
  sendJson(res, code, { error: { code, message, errors: [{ domain: 'global', reason, message }] } });
}
