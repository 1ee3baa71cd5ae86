/**
 * TAR on tar-stream: USTAR headers, PAX for names that do not fit (over 100/155 bytes, or not
 * ASCII). tar-stream is a streamx stream; it is converted here so the rest of the code only sees
 * node:stream.
 */
import { Readable } from 'node:stream';
import tarStream from 'tar-stream';
import { OjsError, abortedError } from '../spec/errors.js';
import type { ArchiveWriter, EntryBody, EntryHeader } from './types.js';

const OUTPUT_HIGH_WATER = 1 << 20; // bytes buffered between the tar packer and the consumer
const EPOCH = new Date(0);
const FILE_MODE = 0o644;

type Sink = ReturnType<tarStream.Pack['entry']>;

export class TarWriter implements ArchiveWriter {
  readonly output: Readable;
  private readonly pack: tarStream.Pack;
  private failure: Error | undefined;

  constructor() {
    const pack = tarStream.pack({ highWaterMark: OUTPUT_HIGH_WATER } as never);
    this.pack = pack;
    this.output = new Readable({
      highWaterMark: OUTPUT_HIGH_WATER,
      read: () => pack.resume(),
      destroy: (err, cb) => {
        this.fail(err ?? new OjsError('Aborted', 'archive output closed before the end'));
        cb(err);
      },
    });
    pack.on('data', (chunk: unknown) => {
      if (!this.output.push(chunk as Buffer)) pack.pause();
    });
    pack.on('end', () => this.output.push(null));
    pack.on('error', (e: Error) => this.fail(e));
  }

  async add(h: EntryHeader, body: EntryBody, signal: AbortSignal): Promise<void> {
    this.check(signal);
    const header = { name: h.name, size: h.size, mtime: h.mtime ?? EPOCH, mode: h.mode ?? FILE_MODE, type: 'file' as const };
    let sink!: Sink;
    const done = new Promise<void>((resolve, reject) => {
      sink = this.pack.entry(header, (err) => (err ? reject(this.failure ?? err) : resolve()));
    });
    done.catch(() => undefined); // observed below; a failure before that point must not go unhandled
    let written = 0;
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        written += chunk.length;
        if (written > h.size) throw sizeMismatch(h, `more than ${h.size} bytes`);
        if (!sink.write(chunk)) await drained(sink, signal);
        this.check(signal);
      }
      if (written !== h.size) throw sizeMismatch(h, `${written} bytes`);
      sink.end(undefined as never);
      await done;
    } catch (e) {
      const err = signal.aborted ? abortedError(signal) : (e as Error);
      this.destroy(err);
      throw err;
    }
  }

  async finalize(): Promise<void> {
    this.check();
    const ended = new Promise<void>((resolve, reject) => {
      this.pack.once('end', resolve);
      this.pack.once('close', () => (this.failure ? reject(this.failure) : resolve()));
    });
    this.pack.finalize();
    await ended;
  }

  destroy(err: Error): void {
    this.fail(err);
  }

  private fail(err: Error): void {
    if (this.failure !== undefined) return;
    this.failure = err;
    this.pack.destroy(err);
    if (!this.output.destroyed) this.output.destroy(err);
  }

  private check(signal?: AbortSignal): void {
    if (this.failure !== undefined) throw this.failure;
    if (signal?.aborted) throw abortedError(signal);
  }
}

function sizeMismatch(h: EntryHeader, got: string): OjsError {
  return new OjsError('SizeMismatch', `archive entry '${h.name}': expected ${h.size} bytes, got ${got}`);
}

/** Waits for a streamx writable to drain, or fails if it closes or the signal fires first. */
function drained(sink: Sink, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      sink.off('drain', onDrain);
      sink.off('close', onClose);
      signal.removeEventListener('abort', onAbort);
    };
    const onDrain = () => { cleanup(); resolve(); };
    const onClose = () => { cleanup(); reject(new OjsError('Aborted', 'archive entry closed before its body was written')); };
    const onAbort = () => { cleanup(); reject(abortedError(signal)); };
    sink.on('drain', onDrain);
    sink.on('close', onClose);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
