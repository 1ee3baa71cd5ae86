/** Shared by the server tests: a server on a real socket, a raw HTTP client, test sources. */
import * as http from 'node:http';
import * as fs from 'node:fs';
import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { buildApp, type AppConfig, type LineSink } from '../../src/server/app.js';
import { FileSource } from '../../src/sources/file.js';
import type { ObjectRef, ObjectSource, ObjectStat, OpenOptions, OpenedObject, ListedObject } from '../../src/sources/types.js';
import { OjsError } from '../../src/spec/errors.js';

export interface TestServer {
  app: FastifyInstance;
  url: string;
  log: string[];
  close(): Promise<void>;
}

/** buildApp listening on 127.0.0.1 and a free port; the access log goes to `log`. */
export async function listen(config: Omit<AppConfig, 'accessLog'> & { accessLog?: LineSink | null }): Promise<TestServer> {
  const log: string[] = [];
  const app = await buildApp({ processMetrics: false, errorLog: null, accessLog: { write: (l: string) => log.push(l) }, ...config });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address() as { port: number };
  return {
    app,
    url: `http://127.0.0.1:${addr.port}`,
    log,
    close: async () => {
      app.server.closeAllConnections();
      await app.close();
    },
  };
}

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  trailers: NodeJS.Dict<string>;
  body: Buffer;
  /** Whether the body ended properly (the final chunk, or all of Content-Length). */
  complete: boolean;
  error?: Error;
}

export interface RawRequestOptions {
  method?: string;
  headers?: http.OutgoingHttpHeaders;
  body?: string | Buffer | object;
  /** Destroy the connection once this many body bytes arrived. */
  abortAfter?: number;
}

/** One request with node:http, the way a plain client sees it: status, body, trailers, errors. */
export function request(url: string, opts: RawRequestOptions = {}): Promise<RawResponse> {
  const body = opts.body === undefined ? undefined : typeof opts.body === 'string' || Buffer.isBuffer(opts.body) ? opts.body : JSON.stringify(opts.body);
  return new Promise((resolve, reject) => {
    // node:http sends a GET body with neither Content-Length nor chunked framing: say the length.
    const framing = body === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) };
    const req = http.request(url, { method: opts.method ?? 'GET', headers: { ...framing, ...opts.headers }, agent: false });
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let got = 0;
      let error: Error | undefined;
      res.on('data', (c: Buffer) => {
        chunks.push(c);
        got += c.length;
        if (opts.abortAfter !== undefined && got >= opts.abortAfter) req.destroy();
      });
      res.on('error', (e) => {
        error = e;
      });
      res.on('aborted', () => {
        error ??= new Error('aborted');
      });
      res.on('close', () => {
        resolve({ status: res.statusCode ?? 0, headers: res.headers, trailers: res.trailers, body: Buffer.concat(chunks), complete: res.complete, error });
      });
    });
    req.end(body);
  });
}

export function json(r: RawResponse): { error: { code: string; kind: string; message: string }; status: number; message: string } {
  return JSON.parse(r.body.toString('utf8')) as ReturnType<typeof json>;
}

/** Number of open file descriptors of this process. */
export function openFds(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

/** Open descriptors of this process on files under dir (deleted files included). */
export function fdsUnder(dir: string): string[] {
  const out: string[] = [];
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      const target = fs.readlinkSync(`/proc/self/fd/${fd}`);
      if (target.startsWith(dir)) out.push(target);
    } catch {
      // closed while we looked
    }
  }
  return out;
}

export async function waitFor(cond: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * A file source that counts bodies opened and not yet closed, and can make a key fail after
 * some of its bytes (keys containing `fail-after-<N>`).
 */
export class CountingSource implements ObjectSource {
  readonly provider = 'file' as const;
  readonly inner: FileSource;
  open_ = 0;
  opened = 0;

  constructor(roots: Record<string, string>) {
    // No synchronous small reads: every entry gets a real stream that must be closed.
    this.inner = new FileSource({ roots, syncIo: false });
  }

  get capabilities() {
    return this.inner.capabilities;
  }

  stat(ref: ObjectRef, opts: { signal: AbortSignal }): Promise<ObjectStat> {
    return this.inner.stat(ref, opts);
  }

  list(bucket: string, prefix: string, opts: { signal: AbortSignal }): AsyncIterable<ListedObject> {
    return this.inner.list(bucket, prefix, opts);
  }

  async open(ref: ObjectRef, opts: OpenOptions): Promise<OpenedObject> {
    const o = await this.inner.open(ref, opts);
    this.opened++;
    this.open_++;
    let closed = false;
    const done = () => {
      if (!closed) this.open_--;
      closed = true;
    };
    const m = /fail-after-(\d+)/.exec(ref.key);
    const body = m === null ? o.body : failingAfter(o.body, Number(m[1]));
    body.once('close', done);
    return { ...o, bytes: undefined, body };
  }
}

/** The body's first n bytes, then an upstream error. */
function failingAfter(body: Readable, n: number): Readable {
  let left = n;
  const out = new Readable({
    read() {
      body.resume();
    },
    destroy(err, cb) {
      body.destroy();
      cb(err);
    },
  });
  body.on('data', (c: Buffer) => {
    const take = c.subarray(0, Math.max(0, left));
    left -= take.length;
    if (take.length > 0 && !out.push(take)) body.pause();
    if (left <= 0) {
      body.destroy();
      out.destroy(new OjsError('Upstream', 'connection reset by the upstream (test)', { temporary: true }));
    }
  });
  body.on('error', (e) => out.destroy(e));
  return out;
}
