/**
 * A plain HTTP file server on 127.0.0.1 and a random port: objects by path, Range, ETag and
 * Last-Modified, HEAD; and faults on demand (cut bodies, error statuses, redirects) for the
 * retry, resume and policy tests.
 */
import { createHash } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { sendBytes } from './bytes.js';
import { track, type Tracked } from './track.js';

export interface FileServer extends Tracked {
  url: string;
  /** host:port, the bucket of http entries. */
  host: string;
  port: number;
  put(path: string, data: Buffer): void;
  /** What to do with a request instead of serving it; undefined serves it. */
  fault?: (req: http.IncomingMessage) => Fault | undefined;
  close(): Promise<void>;
}

export type Fault =
  /** The body stops after this many bytes: the socket is destroyed. */
  | { cutAfter: number }
  /** The body stalls after this many bytes (the socket stays open, nothing more comes). */
  | { stallAfter: number }
  /** No answer at all: the request hangs until the client gives up. */
  | { hang: true }
  | { status: number; headers?: Record<string, string> }
  | { redirect: string; status?: number }
  /** Serve as if the client had sent this Range header (null: none), to fake a wrong answer. */
  | { range: string | null };

export async function startFileServer(opts: { etag?: boolean } = {}): Promise<FileServer> {
  const files = new Map<string, { data: Buffer; etag: string; mtime: Date }>();
  const server = http.createServer();
  const tracked = track(server);
  const fs: FileServer = { ...tracked, url: '', host: '', port: 0, put: () => undefined, close: async () => undefined };
  server.on('request', (req, res) => {
    // The path as the client sent it, decoded: what a file server maps to a file name.
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname.slice(1));
    const fault = fs.fault?.(req);
    if (fault !== undefined && 'hang' in fault) return;
    if (fault !== undefined && 'range' in fault) {
      if (fault.range === null) delete req.headers.range;
      else req.headers.range = fault.range;
    }
    if (fault !== undefined && 'redirect' in fault) {
      res.writeHead(fault.status ?? 302, { location: fault.redirect, 'content-length': '0' });
      res.end();
      return;
    }
    if (fault !== undefined && 'status' in fault) {
      res.writeHead(fault.status, { 'content-type': 'text/plain', ...fault.headers });
      res.end(`injected ${fault.status}\n`);
      return;
    }
    const f = files.get(path);
    if (f === undefined || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'text/plain', 'content-length': '10' });
      res.end('not found\n');
      return;
    }
    const headers: Record<string, string> = { 'last-modified': f.mtime.toUTCString() };
    if (opts.etag !== false) headers.etag = f.etag;
    const ifMatch = req.headers['if-match'];
    if (ifMatch !== undefined && ifMatch !== f.etag) {
      res.writeHead(412, { 'content-length': '0' });
      res.end();
      return;
    }
    const cutAfter = fault !== undefined && 'cutAfter' in fault ? fault.cutAfter : undefined;
    const stallAfter = fault !== undefined && 'stallAfter' in fault ? fault.stallAfter : undefined;
    sendBytes(req, res, f.data, { headers, cutAfter, stallAfter });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  Object.assign(fs, {
    port,
    host: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    put: (path: string, data: Buffer) => files.set(path, { data, etag: `"${createHash('sha1').update(data).digest('hex')}"`, mtime: new Date(Math.floor(Date.now() / 1000) * 1000) }),
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  });
  return fs;
}
