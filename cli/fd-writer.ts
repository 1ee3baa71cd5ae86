/**
 * A Writable for a file descriptor (stdout) whose write(2) calls run on a worker thread.
 * process.stdout writes to a pipe synchronously, so while the reader of the pipe is slow the
 * event loop stops, and with it every read in flight; here reads and writes overlap.
 */
import { Writable } from 'node:stream';
import { Worker } from 'node:worker_threads';

const MAX_IN_FLIGHT = 8 << 20; // bytes handed to the worker and not yet written
const DESTROY_GRACE_MS = 10_000; // how long a destroyed writer may take to write what it was given

// Plain JS, run with eval: the worker needs nothing of ours. Once anything touches
// process.stdout, Node makes a pipe on fd 1 non-blocking; O_NONBLOCK belongs to the open file
// description, so the worker opens the pipe afresh (Linux /proc) to write with blocking calls.
// Elsewhere EAGAIN is waited out a millisecond at a time.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const nap = new Int32Array(new SharedArrayBuffer(4));
let fd = workerData.fd;
try {
  if (fs.fstatSync(fd).isFIFO()) fd = fs.openSync('/proc/self/fd/' + fd, fs.constants.O_WRONLY);
} catch {}
parentPort.on('message', (msg) => {
  if (msg === null) return parentPort.postMessage({ done: true });
  const buf = Buffer.from(msg.buffer, msg.byteOffset, msg.byteLength);
  try {
    for (let off = 0; off < buf.length; ) {
      try {
        off += fs.writeSync(fd, buf, off, buf.length - off);
      } catch (e) {
        if (e.code !== 'EAGAIN') throw e;
        Atomics.wait(nap, 0, 0, 1);
      }
    }
    parentPort.postMessage({ written: buf.length });
  } catch (e) {
    parentPort.postMessage({ error: String(e.message), code: e.code });
  }
});
`;

interface Reply {
  done?: boolean;
  written?: number;
  error?: string;
  code?: string;
}

export class FdWriter extends Writable {
  private readonly worker: Worker;
  private inFlight = 0;
  private waiting: ((err?: Error | null) => void) | undefined;
  private finishing: ((err?: Error | null) => void) | undefined;
  private writeFailed = false;

  constructor(fd: number) {
    super({ highWaterMark: 1 << 20 });
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { fd } });
    this.worker.on('message', (m: Reply) => this.onReply(m));
    this.worker.on('error', (e) => this.destroy(e));
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    // A buffer that owns its whole memory moves to the worker; a slice of a shared pool is copied.
    const owns = chunk.byteOffset === 0 && chunk.byteLength === chunk.buffer.byteLength && chunk.buffer instanceof ArrayBuffer;
    const length = chunk.byteLength; // a transferred buffer reads 0 afterwards
    const msg = new Uint8Array(chunk.buffer, chunk.byteOffset, length);
    this.worker.postMessage(msg, owns ? [chunk.buffer as ArrayBuffer] : []);
    this.inFlight += length;
    if (this.inFlight < MAX_IN_FLIGHT) cb();
    else this.waiting = cb;
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.finishing = cb;
    this.worker.postMessage(null);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // Bytes already handed over are written first: a failed archive's last bytes are what make
    // it invalid for its reader (see src/archive/fail.ts).
    const stop = () => void this.worker.terminate().then(() => cb(err), () => cb(err));
    if (this.inFlight === 0 || this.writeFailed) return stop();
    const timer = setTimeout(stop, DESTROY_GRACE_MS);
    this.finishing = () => {
      clearTimeout(timer);
      stop();
    };
    this.worker.postMessage(null);
  }

  private onReply(m: Reply): void {
    if (m.error !== undefined) {
      this.writeFailed = true;
      const e = Object.assign(new Error(m.error), { code: m.code });
      const w = this.waiting ?? this.finishing;
      this.waiting = this.finishing = undefined;
      if (w !== undefined) w(e);
      else this.destroy(e);
      return;
    }
    if (m.done) {
      this.inFlight = 0;
      const f = this.finishing;
      this.finishing = undefined;
      void this.worker.terminate();
      f?.();
      return;
    }
    this.inFlight -= m.written ?? 0;
    if (this.waiting !== undefined && this.inFlight < MAX_IN_FLIGHT) {
      const w = this.waiting;
      this.waiting = undefined;
      w();
    }
  }
}
