/**
 * Members of compressed TAR shards (.tgz, .tar.lz4). A compressed stream has no offsets to seek
 * to, so a batch makes ONE pass over the shard: it decompresses, walks the headers, keeps the
 * members the batch wants and stops (closing the upstream read) once it has them all. Kept
 * members stay in memory up to SPOOL_MEMORY per pass; bigger ones go to a temporary file that
 * lives until the batch ends (`dispose`), since the request order may ask for them much later.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { OjsError, abortedError } from '../spec/errors.js';
import { TAR_BLOCK, checksumOk, octal, paxValue, tarSize, ustarName } from './tar-read.js';

const SPOOL_MEMORY = 64 << 20; // member bytes one pass keeps in memory; beyond, members spill to disk
const SPILL_PREFIX = 'ojs-ml-shard-'; // temporary directories, one per pass that spills

export type Extracted = { size: number; mtime?: Date } & ({ chunks: Buffer[] } | { file: string });

export interface ExtractedMembers {
  members: Map<string, Extracted>;
  /** Removes spilled files; the members are unusable afterwards. */
  dispose(): Promise<void>;
}

/**
 * Walks the TAR stream `tar` (already decompressed) and keeps the members named in `wanted`.
 * Every wanted name that is absent from the map afterwards is not in the shard.
 * `what` names the shard in errors.
 */
export async function extractTarMembers(
  tar: Readable,
  wanted: ReadonlySet<string>,
  signal: AbortSignal,
  what: string,
  opts: { spoolMemory?: number } = {},
): Promise<ExtractedMembers> {
  const spoolMemory = opts.spoolMemory ?? SPOOL_MEMORY;
  const members = new Map<string, Extracted>();
  let spillDir: string | undefined;
  const dispose = async () => {
    if (spillDir !== undefined) await fs.promises.rm(spillDir, { recursive: true, force: true });
  };
  const reader = new TarStreamReader(tar, `shard ${what}`);
  let inMemory = 0;
  try {
    while (members.size < wanted.size) {
      if (signal.aborted) throw abortedError(signal);
      // An archive cut at an entry boundary: tar reads it as complete, so do we.
      const m = await reader.next();
      if (m === undefined) break;
      if (m.regular && wanted.has(m.name) && !members.has(m.name)) {
        if (inMemory + m.size <= spoolMemory) {
          const chunks: Buffer[] = [];
          for await (const c of reader.body()) chunks.push(c);
          inMemory += m.size;
          members.set(m.name, { size: m.size, mtime: m.mtime, chunks });
        } else {
          spillDir ??= await fs.promises.mkdtemp(path.join(os.tmpdir(), SPILL_PREFIX));
          const file = path.join(spillDir, String(members.size));
          await pipeline(Readable.from(reader.body()), fs.createWriteStream(file, { flags: 'wx' }), { signal });
          members.set(m.name, { size: m.size, mtime: m.mtime, file });
        }
      }
    }
    return { members, dispose };
  } catch (e) {
    await dispose();
    throw e;
  } finally {
    await reader.close(); // stops the decompression and closes the upstream read when we stopped early
  }
}

/** One entry of a TAR stream, extended headers (PAX path and size, GNU long names) applied. */
export interface TarStreamEntry {
  name: string;
  size: number;
  mtime: Date;
  /** A regular file (type 0, NUL or 7): the only kind with a body worth reading. */
  regular: boolean;
  /** The type flag as written. */
  type: string;
}

/**
 * Reads a TAR stream front to back: `next()` gives the next entry's header, `body()` its bytes
 * (the part not read is skipped by the following `next()`). `next()` resolves undefined at the
 * end-of-archive marker, or where the stream ends at an entry boundary without one; `sawEnd`
 * tells which. A stream that ends inside an entry is an error.
 */
export class TarStreamReader {
  private readonly it: AsyncIterator<Buffer>;
  private readonly seq: Sequential;
  private owed = 0; // body bytes of the current entry not read yet
  private padding = 0;
  private ended = false;
  /** Whether the end-of-archive marker was read. */
  sawEnd = false;

  constructor(private readonly tar: Readable, private readonly what: string) {
    this.it = tar[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    this.seq = new Sequential(this.it);
  }

  async next(): Promise<TarStreamEntry | undefined> {
    if (this.ended) return undefined;
    if (!(await this.seq.skip(this.owed))) throw this.bad('ends inside an entry (truncated?)');
    if (!(await this.seq.skip(this.padding))) throw this.bad('ends inside the padding of an entry (truncated?)');
    this.owed = 0;
    this.padding = 0;
    let longName: string | undefined;
    let paxSize: number | undefined;
    for (;;) {
      const at = this.seq.pos;
      const h = await this.seq.read(TAR_BLOCK);
      if (h === undefined) return this.end(false);
      if (h.every((b) => b === 0)) return this.end(true);
      if (!checksumOk(h)) throw this.bad(`has a corrupt header at byte ${at} of its TAR stream`);
      const type = String.fromCharCode(h[156]!);
      if (type === 'x' || type === 'L') {
        const size = tarSize(h);
        const meta = await this.seq.read(size);
        if (meta === undefined || !(await this.seq.skip(pad(size)))) throw this.bad('ends inside a TAR extended header (truncated?)');
        const text = meta.toString('utf8');
        if (type === 'L') longName = text.replace(/\0+$/, '');
        else {
          longName = paxValue(text, 'path') ?? longName;
          const s = paxValue(text, 'size');
          if (s !== undefined) paxSize = Number(s);
        }
        continue;
      }
      const size = paxSize ?? tarSize(h);
      this.owed = size;
      this.padding = pad(size);
      return {
        name: (longName ?? ustarName(h)).replace(/^\/+/, ''),
        size,
        mtime: new Date(octal(h, 136, 12) * 1000),
        regular: type === '0' || type === '\0' || type === '7',
        type,
      };
    }
  }

  /** The current entry's bytes as they come. */
  async *body(): AsyncGenerator<Buffer> {
    while (this.owed > 0) {
      const c = await this.seq.chunk(this.owed);
      if (c === undefined) throw this.bad('ends inside an entry (truncated?)');
      this.owed -= c.length;
      yield c;
    }
  }

  /** Stops reading: the stream is destroyed (and with it the decompressor and upstream). */
  async close(): Promise<void> {
    await this.it.return?.();
    this.tar.destroy();
  }

  private end(marker: boolean): undefined {
    this.ended = true;
    this.sawEnd = marker;
    return undefined;
  }

  private bad(why: string): OjsError {
    return new OjsError('Upstream', `${this.what} ${why}`, { code: 'ERR_BAD_SHARD' });
  }
}

function pad(size: number): number {
  return (TAR_BLOCK - (size % TAR_BLOCK)) % TAR_BLOCK;
}

/** Reads a stream of chunks front to back, in exact byte counts. */
class Sequential {
  pos = 0;
  private readonly chunks: Buffer[] = [];
  private have = 0;
  private done = false;

  constructor(private readonly it: AsyncIterator<Buffer>) {}

  /** Exactly `n` bytes, or undefined when the stream ends first. */
  async read(n: number): Promise<Buffer | undefined> {
    if (!(await this.fill(n))) return undefined;
    const parts: Buffer[] = [];
    for (let left = n; left > 0; ) {
      const c = this.shift(left);
      parts.push(c);
      left -= c.length;
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, n);
  }

  /** The next chunk, at most `max` bytes; undefined when the stream has ended. */
  async chunk(max: number): Promise<Buffer | undefined> {
    if (!(await this.fill(1))) return undefined;
    return this.shift(max);
  }

  /** Drops `n` bytes; false when the stream ends first. */
  async skip(n: number): Promise<boolean> {
    for (let left = n; left > 0; ) {
      if (!(await this.fill(1))) return false;
      left -= this.shift(left).length;
    }
    return true;
  }

  private shift(max: number): Buffer {
    const head = this.chunks[0]!;
    let c = head;
    if (head.length <= max) this.chunks.shift();
    else {
      c = head.subarray(0, max);
      this.chunks[0] = head.subarray(max);
    }
    this.have -= c.length;
    this.pos += c.length;
    return c;
  }

  private async fill(n: number): Promise<boolean> {
    while (this.have < n && !this.done) {
      const r = await this.it.next();
      if (r.done === true) this.done = true;
      else if (r.value.length > 0) {
        this.chunks.push(r.value);
        this.have += r.value.length;
      }
    }
    return this.have >= n;
  }
}
