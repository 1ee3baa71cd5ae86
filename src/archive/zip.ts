/**
 * ZIP on archiver: streamed entries (data descriptors), STORE by default or DEFLATE, zip64 where
 * sizes or the entry count need it. archiver's streams stay in here; `output` is node:stream.
 * A failed archive has no central directory (unzip and Python refuse it) and ends in a local
 * header whose data never comes (for readers that walk local headers in order).
 */
import { Readable } from 'node:stream';
import type { ZipArchive } from 'archiver';
import { OjsError, abortedError } from '../spec/errors.js';
import { failAfterDrain } from './fail.js';
import type { ArchiveWriter, EntryBody, EntryHeader } from './types.js';

const OUTPUT_HIGH_WATER = 1 << 20; // bytes queued for the consumer
const DOS_EPOCH = new Date(Date.UTC(1980, 0, 1)); // ZIP times cannot go earlier
const FILE_MODE = 0o644;

export interface ZipOptions {
  /** DEFLATE entries at this zlib level (1-9); STORE when absent. */
  deflateLevel?: number;
}

// archiver takes ~140 ms to import; only ZIP batches pay it, when their first entry comes.
let archiverModule: Promise<typeof import('archiver')> | undefined;

export class ZipWriter implements ArchiveWriter {
  readonly output: Readable;
  private zip: ZipArchive | undefined;
  private loading: Promise<ZipArchive> | undefined;
  private failure: Error | undefined;

  constructor(private readonly opts: ZipOptions = {}) {
    this.output = new Readable({
      highWaterMark: OUTPUT_HIGH_WATER,
      read: () => this.zip?.resume(),
      destroy: (err, cb) => {
        this.failure ??= err ?? new OjsError('Aborted', 'archive output closed before the end');
        this.zip?.destroy();
        cb(err);
      },
    });
  }

  private archive(): Promise<ZipArchive> {
    this.loading ??= (archiverModule ??= import('archiver')).then(({ ZipArchive }) => {
      const deflate = this.opts.deflateLevel !== undefined;
      const zip = new ZipArchive({ store: !deflate, zlib: deflate ? { level: this.opts.deflateLevel } : undefined });
      zip.on('data', (c: Buffer) => {
        if (!this.output.push(c)) zip.pause();
      });
      zip.on('end', () => this.output.push(null));
      zip.on('error', (e: Error) => this.destroy(e));
      this.zip = zip;
      return zip;
    });
    return this.loading;
  }

  async add(h: EntryHeader, body: EntryBody, signal: AbortSignal): Promise<void> {
    this.check(signal);
    const zip = this.zip ?? (await this.archive());
    this.check(signal);
    const source = Array.isArray(body) ? exactBuffer(h, body as readonly Buffer[]) : Readable.from(exactly(h, body as AsyncIterable<Buffer>));
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => done(abortedError(signal));
      const done = (e?: Error) => {
        zip.off('entry', onEntry);
        zip.off('error', done);
        signal.removeEventListener('abort', onAbort);
        if (e === undefined) resolve();
        else reject(e);
      };
      const onEntry = () => done();
      zip.once('entry', onEntry);
      zip.once('error', done);
      signal.addEventListener('abort', onAbort, { once: true });
      if (!Buffer.isBuffer(source)) source.once('error', done);
      zip.append(source, { name: h.name, date: h.mtime && h.mtime > DOS_EPOCH ? h.mtime : DOS_EPOCH, mode: h.mode ?? FILE_MODE });
    }).catch((e: unknown) => {
      this.destroy(e as Error);
      throw e;
    });
  }

  async finalize(): Promise<void> {
    this.check();
    const zip = this.zip ?? (await this.archive());
    this.check();
    await zip.finalize();
  }

  destroy(err: Error): void {
    if (this.failure !== undefined) return;
    this.failure = err;
    this.zip?.abort();
    failAfterDrain(this.output, truncatedLocalHeader(), err);
  }

  private check(signal?: AbortSignal): void {
    if (this.failure !== undefined) throw this.failure;
    if (signal?.aborted) throw abortedError(signal);
  }
}

function exactBuffer(h: EntryHeader, chunks: readonly Buffer[]): Buffer {
  const b = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  if (b.length !== h.size) throw sizeMismatch(h, b.length);
  return b;
}

async function* exactly(h: EntryHeader, body: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let n = 0;
  for await (const c of body) {
    n += c.length;
    if (n > h.size) throw sizeMismatch(h, n);
    yield c;
  }
  if (n !== h.size) throw sizeMismatch(h, n);
}

function sizeMismatch(h: EntryHeader, got: number): OjsError {
  return new OjsError('SizeMismatch', `archive entry '${h.name}': expected ${h.size} bytes, got ${got}${got > h.size ? ' or more' : ''}`);
}

/** A STORE local file header announcing 16 bytes that never come. */
function truncatedLocalHeader(): Buffer {
  const name = Buffer.from('__ojs-ml__/BATCH-FAILED-ARCHIVE-INCOMPLETE');
  const b = Buffer.alloc(30);
  b.writeUInt32LE(0x04034b50, 0); // signature
  b.writeUInt16LE(20, 4); // version needed
  b.writeUInt32LE(16, 18); // compressed size
  b.writeUInt32LE(16, 22); // uncompressed size
  b.writeUInt16LE(name.length, 26);
  return Buffer.concat([b, name]);
}
