/**
 * Serving bytes over node:http the way file servers do (RFC 9110 ranges): 200 or 206 with
 * Content-Range, 416 with `bytes * /size`, HEAD without a body, backpressure on the socket.
 * Shared by the plain HTTP, Hub-shaped and GCS-shaped test servers.
 */
import type * as http from 'node:http';

const WRITE_CHUNK = 64 << 10; // bytes per write: the body streams, a paused client is felt

/** Milliseconds between body writes of every test server in this process (0: none); a test slows upstreams with it. */
export const pacing = { ms: 0 };

export type Parsed = { start: number; end: number } | 'unsatisfiable' | undefined;

/** A single `bytes=` range against `size`; undefined when there is none (or it is not one we read). */
export function parseRange(h: string | undefined, size: number): Parsed {
  if (h === undefined) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(h.trim());
  if (m === null || (m[1] === '' && m[2] === '')) return undefined;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (start >= size || end < start) return 'unsatisfiable';
  return { start, end };
}

export interface SendOptions {
  headers?: Record<string, string>;
  /** Cut the connection after this many body bytes (a broken upstream). */
  cutAfter?: number;
  /** Send nothing more after this many body bytes, keeping the connection open (a stalled upstream). */
  stallAfter?: number;
}

/** Answers `req` with `data` (honouring Range), and the given headers. */
export function sendBytes(req: http.IncomingMessage, res: http.ServerResponse, data: Buffer, opts: SendOptions = {}): void {
  const range = parseRange(req.headers.range, data.length);
  const headers: Record<string, string> = { 'accept-ranges': 'bytes', 'content-type': 'application/octet-stream', ...opts.headers };
  if (range === 'unsatisfiable') {
    res.writeHead(416, { ...headers, 'content-range': `bytes */${data.length}`, 'content-length': '0' });
    res.end();
    return;
  }
  const part = range === undefined ? data : data.subarray(range.start, range.end + 1);
  if (range !== undefined) headers['content-range'] = `bytes ${range.start}-${range.end}/${data.length}`;
  res.writeHead(range === undefined ? 200 : 206, { ...headers, 'content-length': String(part.length) });
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  stream(res, part, opts.cutAfter, opts.stallAfter);
}

function stream(res: http.ServerResponse, part: Buffer, cutAfter: number | undefined, stallAfter: number | undefined): void {
  let at = 0;
  const limit = Math.min(cutAfter ?? part.length, stallAfter ?? part.length, part.length);
  const next = (): void => {
    while (at < limit) {
      const end = Math.min(limit, at + WRITE_CHUNK);
      const ok = res.write(part.subarray(at, end));
      at = end;
      if (pacing.ms > 0 && at < limit) {
        // A drain may come during the wait: ask again after it.
        setTimeout(() => (res.destroyed ? undefined : res.writableNeedDrain ? res.once('drain', next) : next()), pacing.ms);
        return;
      }
      if (!ok) {
        res.once('drain', next);
        return;
      }
    }
    if (limit === part.length) res.end();
    // Cut: what was written goes out first (FIN, not a reset that could drop it), then nothing.
    else if (cutAfter !== undefined) {
      if (at === 0) res.flushHeaders();
      res.socket?.end();
    }
    // stalled: the response stays open until the client goes away
  };
  res.on('close', () => res.off('drain', next));
  next();
}

/** A small JSON answer. */
export function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(text)), ...headers });
  res.end(text);
}
