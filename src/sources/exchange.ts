/**
 * One HTTP request and its response on undici's dispatch API, with a body that is either
 * collected into one Buffer (small objects, error texts) or streamed (large ones), chosen once
 * the headers are in. undici's own `request()` puts every body into a full Readable; for a 10 KiB
 * object that stream costs more CPU than the object, so this is the one place that talks to
 * undici below `request()`.
 *
 * Backpressure: a streamed body pauses the socket when its buffer is full. Abort: the signal,
 * or destroying the body before its end, aborts the request, which closes its socket.
 */
import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { OjsError, abortedError } from '../spec/errors.js';
import { ChunkFiller, joinPieces } from './chunks.js';
import { FedReadable } from './relay.js';

const UNCLAIMED_MAX = 256 << 10; // bytes held for a body nobody has claimed yet before the socket is paused
const STREAM_HIGH_WATER = 256 << 10; // a streamed body's buffer: one read chunk of the pool (chunks.ts)

type Headers = Record<string, string | string[] | undefined>;

interface Sink {
  data(chunk: Buffer): void;
  end(): void;
  error(e: Error): void;
}

export interface ExchangeHead {
  status: number;
  headers: Headers;
  body: ExchangeBody;
}

/** Sends one request; resolves with status and headers, or rejects (network error, abort). */
export function exchange(dispatcher: Dispatcher, url: URL, method: string, headers: Record<string, string>, signal: AbortSignal): Promise<ExchangeHead> {
  return new Promise((resolve, reject) => {
    const body = new ExchangeBody(signal);
    body.onHead = (status, h) => resolve({ status, headers: h, body });
    body.onFail = reject;
    if (signal.aborted) return reject(abortedError(signal));
    dispatcher.dispatch({ origin: url.origin, path: `${url.pathname}${url.search}`, method, headers }, body);
  });
}

/** The handler undici calls, and the body its caller reads. */
export class ExchangeBody implements Dispatcher.DispatchHandler {
  onHead: ((status: number, headers: Headers) => void) | undefined;
  onFail: ((e: Error) => void) | undefined;
  private controller: Dispatcher.DispatchController | undefined;
  private queued: Buffer[] = [];
  private queuedBytes = 0;
  private ended = false;
  private failed: Error | undefined;
  private sink: Sink | undefined;
  private readonly onAbort: () => void;

  constructor(private readonly signal: AbortSignal) {
    this.onAbort = () => this.abort(abortedError(signal));
    signal.addEventListener('abort', this.onAbort, { once: true });
  }

  /** True once the response ended, failed or was aborted. */
  get done(): boolean {
    return this.ended || this.failed !== undefined;
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.failed !== undefined) controller.abort(this.failed);
  }

  onResponseStart(_c: Dispatcher.DispatchController, status: number, headers: Headers): void {
    const head = this.onHead;
    this.onHead = undefined;
    this.onFail = undefined;
    head?.(status, headers);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.sink !== undefined) return this.sink.data(chunk);
    this.queued.push(chunk);
    this.queuedBytes += chunk.length;
    if (this.queuedBytes > UNCLAIMED_MAX) controller.pause();
  }

  onResponseEnd(): void {
    this.ended = true;
    this.finish();
    this.sink?.end();
  }

  onResponseError(_c: Dispatcher.DispatchController | undefined, e: Error): void {
    this.fail(this.signal.aborted ? abortedError(this.signal) : e);
  }

  /** The whole body; with `truncate`, at most `limit` bytes (the rest is dropped, the socket closed), else one more is an error. */
  collect(limit: number, truncate = false): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let n = 0;
      const all = () => joinPieces(chunks, n);
      this.claim({
        data: (c) => {
          chunks.push(c);
          n += c.length;
          if (n <= limit) return;
          if (truncate) {
            this.abort(new OjsError('Aborted', 'the rest of the body is not wanted'));
            resolve(all().subarray(0, limit));
          } else {
            const e = new OjsError('SizeMismatch', `the body went past the ${limit} bytes announced`);
            this.abort(e);
            reject(e);
          }
        },
        end: () => resolve(all()),
        error: (e) => (truncate && n > limit ? undefined : reject(e)),
      });
    });
  }

  /** The body as a stream, paced by its consumer, in read chunks of the shared pool (ChunkFiller). */
  stream(): Readable {
    const r = new StreamedBody(this);
    this.claim({
      data: (c) => r.filler.add(c),
      end: () => {
        r.filler.flush();
        r.push(null);
      },
      error: (e) => {
        // What arrived before the break is delivered, so that a resume starts where it ended.
        r.filler.flush();
        r.destroy(e);
      },
    });
    return r;
  }

  /** Reads a body that is not needed, so that its socket serves the next request; a long one is cut. */
  async dump(limit: number): Promise<void> {
    await this.collect(limit, true).catch(() => undefined);
  }

  /** Closes the request (and its socket, if the response is not complete). */
  destroy(e?: Error): void {
    if (!this.done) this.abort(e ?? new OjsError('Aborted', 'the body is not wanted'));
  }

  /** Lets the socket deliver (again). */
  resume(): void {
    this.controller?.resume();
  }

  /** Stops reading the socket; what undici has already read still arrives. */
  pause(): void {
    this.controller?.pause();
  }

  private claim(sink: Sink): void {
    if (this.sink !== undefined) throw new OjsError('Internal', 'a response body is read once');
    this.sink = sink;
    const queued = this.queued;
    this.queued = [];
    this.queuedBytes = 0;
    for (const c of queued) sink.data(c);
    if (this.ended) sink.end();
    else if (this.failed !== undefined) sink.error(this.failed);
    else this.controller?.resume();
  }

  private abort(e: Error): void {
    if (this.done) return;
    this.fail(e);
    this.controller?.abort(e);
  }

  /** The first failure wins; whoever waits (for the head, or on the body) hears of it once. */
  private fail(e: Error): void {
    if (this.done) return;
    this.failed = e;
    this.finish();
    const onFail = this.onFail;
    this.onFail = undefined;
    this.onHead = undefined;
    if (onFail !== undefined) onFail(e);
    else this.sink?.error(e);
  }

  private finish(): void {
    this.signal.removeEventListener('abort', this.onAbort);
  }
}

/** A streamed body: the socket is paused whenever the buffer is full or the consumer paused. */
class StreamedBody extends FedReadable {
  readonly filler = new ChunkFiller((c) => {
    if (!this.push(c)) this.source.pause();
  });

  constructor(private readonly source: ExchangeBody) {
    super({ highWaterMark: STREAM_HIGH_WATER });
  }

  protected feed(): void {
    this.source.resume();
  }

  protected stopFeed(): void {
    this.source.pause();
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.filler.close();
    this.source.destroy(err ?? new OjsError('Aborted', 'the body was closed before its end'));
    cb(err);
  }
}
