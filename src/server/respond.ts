/**
 * Sending a batch over HTTP, for any route that has a BatchRun (GetBatch here; a Lhotse or OJS
 * route builds its own request and calls the same `sendBatch`).
 *
 * - Streaming (`strm`): the archive goes out as the engine builds it, with backpressure. The
 *   status is committed only once the first bytes are ready and the batch has not failed with
 *   them, so that a batch failing early (a missing first entry, a refused range) still gets a
 *   real status and a JSON error. After that, a failure cuts the connection without the final
 *   chunk: every HTTP client sees an error, never a clean shorter archive. On success, trailers
 *   carry the batch's uuid, counts and the indexes of missing entries.
 * - Multipart (`!strm`): the archive is spooled (memory, then a temporary file), then the
 *   metadata part and the archive part go out with a Content-Length. Errors before that are a
 *   status and a JSON error.
 */
import type { ServerResponse } from 'node:http';
import * as os from 'node:os';
import { performance } from 'node:perf_hooks';
import { pipeline } from 'node:stream/promises';
import { setImmediate as nextMacrotask } from 'node:timers/promises';
import type { FastifyReply } from 'fastify';
import type { BatchResult, BatchRun } from '../batch/engine.js';
import type { BytePool } from '../batch/pool.js';
import { chunksOf, readChunks } from '../sources/chunks.js';
import { OjsError, toOjsError } from '../spec/errors.js';
import { CONTENT_TYPES, formatExtension, type ArchiveFormat } from '../spec/format.js';
import type { LineSink, ServerState } from './app.js';
import type { BatchOutcome } from './metrics.js';
import { multipartFrame } from './multipart.js';
import { Spool } from './spool.js';

const WRITE_BATCH_BYTES = 1 << 20; // archive bytes gathered into one writev (see WriteBatch)
const SEND_STALL_MS = 60_000; // a client that takes no bytes for this long, while we have some for it, is cut off
const FAIL_FLUSH_MS = 5_000; // after a failure, time for the bytes already written to leave before the socket is destroyed
const SPOOL_MEMORY_BYTES = 8 << 20; // multipart: archive bytes held in memory per batch before spilling to a file
const TRAILER_MISSING_MAX = 256; // missing-entry indexes listed in the trailer (more are counted, not listed)

/** Trailers of a streamed batch that completed. */
export const TRAILERS = {
  uuid: 'X-Ojs-Batch-Uuid',
  entries: 'X-Ojs-Batch-Entries',
  missing: 'X-Ojs-Batch-Missing',
  missingIndex: 'X-Ojs-Batch-Missing-Index',
  bytes: 'X-Ojs-Batch-Bytes',
} as const;

/** Codes whose status is not their kind's. */
const STATUS_BY_CODE: Record<string, number> = {
  ERR_BODY_TOO_LARGE: 413,
  ERR_LIMIT_ENTRIES: 413,
  ERR_LIMIT_BATCH_BYTES: 413,
};

export function statusOf(err: OjsError): number {
  return STATUS_BY_CODE[err.code] ?? err.httpStatus;
}

/**
 * The JSON error body. `message` and `status` repeat the error at the top level because AIStore's
 * Go client decodes those two fields of its own error body.
 */
export function errorBody(err: OjsError, status = statusOf(err)): Record<string, unknown> {
  return { error: err.toJSON(), message: err.message, status };
}

export interface SendBatchOptions {
  format: ArchiveFormat;
  /** Stream the archive (true) or send metadata + archive as multipart/mixed (false). */
  strm: boolean;
  /** The batch's signal (the one given to runBatch): aborting it stops sending too. */
  signal: AbortSignal;
  /** Archive bytes past which the batch is cut off; default none. */
  maxBytes?: number;
  /** Multipart spool: bytes in memory (default 8 MiB), directory for the file (os.tmpdir()). */
  spool?: { memoryBytes?: number; dir?: string; onSpill?: () => void; pool?: BytePool };
  /** Archive bytes as they are sent. */
  onBytes?: (n: number) => void;
}

export interface SentBatch {
  outcome: BatchOutcome;
  /** Whether a 200 went out, after which an error can only cut the response short. */
  committed: boolean;
  /** Archive bytes sent. */
  archiveBytes: number;
  result?: BatchResult;
  error?: OjsError;
}

const bodyBytesSent = new WeakMap<ServerResponse, number>();

/** Body bytes a hijacked response sent (for the access log); undefined for others. */
export function sentBodyBytes(res: ServerResponse): number | undefined {
  return bodyBytesSent.get(res);
}

/** Aborts `ac` when the client goes away before the response is complete. */
export function watchClient(res: ServerResponse, ac: AbortController): void {
  const onClose = () => {
    if (!res.writableFinished) ac.abort(new OjsError('Aborted', 'the client went away'));
  };
  if (res.destroyed) onClose();
  else res.once('close', onClose);
}

/** What sendAndRecord needs to know of the batch beyond its run. */
export interface SendRecordOptions {
  format: ArchiveFormat;
  strm: boolean;
  signal: AbortSignal;
  requestId: string;
  /** performance.now() when the batch was taken. */
  t0: number;
}

/**
 * Sends a batch (both endpoints) and counts it in the metrics: batches by outcome, their seconds,
 * entries found and missing; an internal error goes to the error log with its stack.
 */
export async function sendAndRecord(
  reply: FastifyReply,
  run: BatchRun,
  o: SendRecordOptions,
  state: ServerState,
  ctx: { spool: SendBatchOptions['spool']; errorLog?: LineSink | null },
): Promise<void> {
  const m = state.metrics;
  const sent = await sendBatch(reply, run, {
    format: o.format,
    strm: o.strm,
    signal: o.signal,
    maxBytes: state.limits.maxBatchBytes,
    spool: { ...ctx.spool, onSpill: () => m.spills.inc() },
    onBytes: (n) => m.bytes.inc({ format: o.format }, n),
  });
  const labels = { format: o.format, mode: o.strm ? 'stream' : 'multipart', outcome: sent.outcome };
  m.batches.inc(labels);
  m.batchSeconds.observe(labels, (performance.now() - o.t0) / 1000);
  if (sent.result !== undefined) {
    const missing = sent.result.progress.missing;
    m.entries.inc({ outcome: 'ok' }, sent.result.progress.done - missing);
    if (missing > 0) m.entries.inc({ outcome: 'missing' }, missing);
  }
  if (sent.error?.kind === 'Internal') ctx.errorLog?.write(`ojs-ml serve: internal error in batch ${o.requestId}: ${sent.error.stack ?? sent.error.message}\n`);
}

/** Sends one batch; owns the response from here on (fastify's reply is hijacked). */
export async function sendBatch(reply: FastifyReply, run: BatchRun, opts: SendBatchOptions): Promise<SentBatch> {
  reply.hijack();
  const res = reply.raw;
  bodyBytesSent.set(res, 0);
  try {
    return await (opts.strm ? sendStream(res, run, opts) : sendMultipart(res, run, opts));
  } catch (e) {
    // A bug here must not leave the client waiting on a response nobody will finish.
    run.stream.destroy();
    const error = toOjsError(e);
    if (res.headersSent) res.destroy();
    else writeError(res, error);
    return { outcome: 'failed', committed: res.headersSent, archiveBytes: 0, error };
  }
}

async function sendStream(res: ServerResponse, run: BatchRun, opts: SendBatchOptions): Promise<SentBatch> {
  const maxBytes = opts.maxBytes ?? Infinity;
  const chunks = chunksOf(run.stream);
  const seen: { failure?: OjsError } = {};
  run.result.catch((e: unknown) => {
    seen.failure = toOjsError(e);
  });
  let first: IteratorResult<Buffer>;
  try {
    first = await chunks.next();
    // A failed writer hands out its last (poisoned) bytes and the engine rejects its result in
    // the same turn; one macrotask later such a failure is known, and nothing is sent yet.
    await nextMacrotask();
    if (seen.failure !== undefined) throw seen.failure;
    if (!first.done && first.value.length > maxBytes) throw batchTooLarge(maxBytes);
  } catch (e) {
    void chunks.return();
    return refuse(res, await batchError(run, e));
  }

  // Trailers need chunked framing, which HTTP/1.0 has not (Node throws on a Trailer header there).
  const chunked = res.req.httpVersionMajor > 1 || (res.req.httpVersionMajor === 1 && res.req.httpVersionMinor >= 1);
  res.writeHead(200, {
    'Content-Type': CONTENT_TYPES[opts.format],
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
    ...(chunked ? { Trailer: Object.values(TRAILERS).join(', ') } : {}),
  });
  let archiveBytes = 0;
  const batch = new WriteBatch(res);
  try {
    for (let r = first; !r.done; ) {
      if (batch.mustWait) await batch.ready();
      archiveBytes += r.value.length;
      if (archiveBytes > maxBytes) throw batchTooLarge(maxBytes);
      batch.write(r.value);
      opts.onBytes?.(r.value.length);
      const queued = batch.full ? undefined : chunks.takeQueued();
      if (queued !== undefined) {
        r = { value: queued, done: false };
        continue;
      }
      if (batch.full) batch.flush();
      else batch.flushSoon();
      r = await chunks.next();
    }
    batch.flush();
    const result = await run.result;
    if (chunked) res.addTrailers(trailers(result, archiveBytes));
    await end(res);
    return { outcome: 'ok', committed: true, archiveBytes, result };
  } catch (e) {
    batch.flush(); // what was written goes out before the cut
    void chunks.return(); // destroys the archive: the engine stops every upstream read
    const error = await batchError(run, e);
    cutOff(res);
    return { outcome: outcomeOf(error), committed: true, archiveBytes, error };
  }
}

async function sendMultipart(res: ServerResponse, run: BatchRun, opts: SendBatchOptions): Promise<SentBatch> {
  const spool = new Spool({
    memoryBytes: opts.spool?.memoryBytes ?? SPOOL_MEMORY_BYTES,
    dir: opts.spool?.dir ?? os.tmpdir(),
    maxBytes: opts.maxBytes ?? Infinity,
    onSpill: opts.spool?.onSpill,
    pool: opts.spool?.pool,
  });
  let committed = false;
  let archiveBytes = 0;
  try {
    let result: BatchResult;
    try {
      await pipeline(run.stream, spool.writable());
      result = await run.result;
    } catch (e) {
      const error = await batchError(run, e);
      await spool.dispose(); // before the answer: a client that sees it finds no spool file left
      return refuse(res, error);
    }
    const meta = JSON.stringify({ uuid: result.uuid, out: result.out });
    const frame = multipartFrame(meta, `${result.uuid}${formatExtension(opts.format)}`);
    res.writeHead(200, {
      'Content-Type': frame.contentType,
      'Content-Length': String(frame.head.length + spool.size + frame.tail.length),
      'Cache-Control': 'no-store',
    });
    committed = true;
    await write(res, frame.head);
    for await (const chunk of spool.read(opts.signal)) {
      await write(res, chunk);
      archiveBytes += chunk.length;
      opts.onBytes?.(chunk.length);
    }
    if (archiveBytes !== spool.size) throw new OjsError('Internal', `spool gave ${archiveBytes} of ${spool.size} bytes`, { code: 'ERR_SPOOL' });
    await write(res, frame.tail);
    await end(res);
    return { outcome: 'ok', committed, archiveBytes, result };
  } catch (e) {
    const error = toOjsError(e);
    // With a Content-Length, a short body is an error for every client; destroy drops the rest.
    res.destroy();
    return { outcome: outcomeOf(error), committed, archiveBytes, error };
  } finally {
    await spool.dispose();
  }
}

/** A status and a JSON error, when nothing was sent yet. */
function refuse(res: ServerResponse, error: OjsError): SentBatch {
  writeError(res, error);
  return { outcome: outcomeOf(error), committed: false, archiveBytes: 0, error };
}

/** Writes a JSON error on a raw response, if it can still take one. */
export function writeError(res: ServerResponse, err: OjsError, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const status = statusOf(err);
  const body = Buffer.from(JSON.stringify(errorBody(err, status)));
  res.writeHead(status, { ...headers, 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': String(body.length) });
  res.end(body);
  bodyBytesSent.set(res, body.length);
}

/** The batch's own error when it has one: a consumer-side abort is only the echo of it. */
async function batchError(run: BatchRun, e: unknown): Promise<OjsError> {
  if (e instanceof OjsError && e.kind !== 'Aborted') return e;
  const fromRun = await run.result.then(
    () => undefined,
    (x: unknown) => toOjsError(x),
  );
  return fromRun ?? toOjsError(e);
}

function outcomeOf(err: OjsError): BatchOutcome {
  return err.kind === 'Aborted' ? 'aborted' : 'failed';
}

function batchTooLarge(max: number): OjsError {
  return new OjsError('BadSpec', `the batch's archive is larger than this server's limit of ${max} bytes`, { code: 'ERR_LIMIT_BATCH_BYTES' });
}

function clientGone(): OjsError {
  return new OjsError('Aborted', 'the client went away');
}

/** Writes one chunk, waiting for the client to take it when the socket's buffer is full. */
function write(res: ServerResponse, chunk: Buffer): Promise<void> {
  return writeNow(res, chunk) ? Promise.resolve() : drained(res);
}

/** Hands one chunk to the response; false when the socket's buffer is over its mark. */
function writeNow(res: ServerResponse, chunk: Buffer): boolean {
  if (res.destroyed || res.writableEnded) throw clientGone();
  bodyBytesSent.set(res, (bodyBytesSent.get(res) ?? 0) + chunk.length);
  // Once the socket took a read chunk's bytes, the file source may read into it again.
  const written = readChunks.owns(chunk) ? (err?: Error | null) => {
    if (err == null) readChunks.give(chunk);
  } : undefined;
  return res.write(chunk, written);
}

/**
 * A streamed archive's chunks gathered into one writev of up to WRITE_BATCH_BYTES: the socket is
 * corked while chunks come in the same turn (a 1 MiB file is four read chunks and a header) and
 * uncorked when the batch is full or the turn ends. The kernel's cost per byte sent falls with
 * the write's size (a bare Node server on this machine: 0.35 s/GiB of system time in 256 KiB
 * writes, 0.27 in 1 MiB ones). Backpressure: past a full socket buffer, at most one batch more
 * is handed over before the next waits for 'drain'.
 */
class WriteBatch {
  private bytes = 0;
  private needDrain = false;
  private later: NodeJS.Immediate | undefined;

  constructor(private readonly res: ServerResponse) {}

  write(chunk: Buffer): void {
    const socket = this.res.socket;
    if (socket === null) throw clientGone();
    if (this.bytes === 0) socket.cork();
    this.bytes += chunk.length;
    if (!writeNow(this.res, chunk)) this.needDrain = true;
  }

  get full(): boolean {
    return this.bytes >= WRITE_BATCH_BYTES;
  }

  /** Whether the next write must wait: the last batch went out to a socket that was full. */
  get mustWait(): boolean {
    return this.needDrain && this.bytes === 0;
  }

  ready(): Promise<void> {
    this.needDrain = false;
    return drained(this.res);
  }

  flush(): void {
    clearImmediate(this.later);
    this.later = undefined;
    if (this.bytes === 0) return;
    this.bytes = 0;
    this.res.socket?.uncork();
  }

  /** Flushes once this turn's I/O is done, unless more comes first. */
  flushSoon(): void {
    this.later ??= setImmediate(() => this.flush());
  }
}

/** Resolves once the response's socket took what it was given; rejects if it closes or stalls. */
function drained(res: ServerResponse): Promise<void> {
  if (res.destroyed) return Promise.reject(clientGone());
  if (!res.writableNeedDrain) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = (err?: OjsError) => {
      clearTimeout(timer);
      res.off('drain', onDrain);
      res.off('close', onClose);
      if (err === undefined) resolve();
      else reject(err);
    };
    const onDrain = () => done();
    const onClose = () => done(clientGone());
    const timer = setTimeout(() => done(new OjsError('Timeout', `the client took no data for ${SEND_STALL_MS / 1000} s`)), SEND_STALL_MS);
    res.once('drain', onDrain);
    res.once('close', onClose);
  });
}

function end(res: ServerResponse): Promise<void> {
  return new Promise((resolve, reject) => {
    const onClose = () => (res.writableFinished ? resolve() : reject(clientGone()));
    res.once('close', onClose);
    res.end(() => {
      res.off('close', onClose);
      resolve();
    });
  });
}

/**
 * Ends a committed response that failed. Not res.end(): its final chunk would make the cut
 * archive look complete. The bytes written so far (the writer ends them inside an entry) are
 * flushed and the connection is closed, so the chunked body never ends properly; an HTTP/1.0
 * client still gets an archive that every reader rejects.
 */
function cutOff(res: ServerResponse): void {
  const socket = res.socket;
  if (socket === null || socket.destroyed) {
    res.destroy();
    return;
  }
  socket.end();
  const timer = setTimeout(() => socket.destroy(), FAIL_FLUSH_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}

function trailers(result: BatchResult, archiveBytes: number): Record<string, string> {
  const missing = result.missingAt;
  const t: Record<string, string> = {
    [TRAILERS.uuid]: result.uuid,
    [TRAILERS.entries]: String(result.progress.done),
    [TRAILERS.missing]: String(missing.length),
    [TRAILERS.bytes]: String(archiveBytes),
  };
  if (missing.length > 0) {
    t[TRAILERS.missingIndex] = missing.slice(0, TRAILER_MISSING_MAX).join(',') + (missing.length > TRAILER_MISSING_MAX ? ',...' : '');
  }
  return t;
}
