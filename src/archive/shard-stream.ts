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
  const it = tar[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const seq = new Sequential(it);
  const bad = (why: string) => new OjsError('Upstream', `shard ${what} ${why}`, { code: 'ERR_BAD_SHARD' });
  let inMemory = 0;
  try {
    let longName: string | undefined;
    let paxSize: number | undefined;
    while (members.size < wanted.size) {
      if (signal.aborted) throw abortedError(signal);
      const at = seq.pos;
      const h = await seq.read(TAR_BLOCK);
      if (h === undefined) break; // an archive cut at an entry boundary: tar reads it as complete, so do we
      if (h.every((b) => b === 0)) break;
      if (!checksumOk(h)) throw bad(`has a corrupt header at byte ${at} of its TAR stream`);
      const type = String.fromCharCode(h[156]!);
      const size = type === 'x' || type === 'L' ? tarSize(h) : (paxSize ?? tarSize(h));
      const padding = (TAR_BLOCK - (size % TAR_BLOCK)) % TAR_BLOCK;
      if (type === 'x' || type === 'L') {
        const meta = await seq.read(size);
        if (meta === undefined) throw bad('ends inside a TAR extended header (truncated?)');
        const text = meta.toString('utf8');
        if (type === 'L') longName = text.replace(/\0+$/, '');
        else {
          longName = paxValue(text, 'path') ?? longName;
          const s = paxValue(text, 'size');
          if (s !== undefined) paxSize = Number(s);
        }
      } else {
        const name = (longName ?? ustarName(h)).replace(/^\/+/, '');
        const regular = type === '0' || type === '\0' || type === '7';
        if (regular && wanted.has(name) && !members.has(name)) {
          const mtime = new Date(octal(h, 136, 12) * 1000);
          if (inMemory + size <= spoolMemory) {
            const chunks: Buffer[] = [];
            for await (const c of seq.take(size, () => bad(`ends inside '${name}' (truncated?)`))) chunks.push(c);
            inMemory += size;
            members.set(name, { size, mtime, chunks });
          } else {
            spillDir ??= await fs.promises.mkdtemp(path.join(os.tmpdir(), SPILL_PREFIX));
            const file = path.join(spillDir, String(members.size));
            await pipeline(Readable.from(seq.take(size, () => bad(`ends inside '${name}' (truncated?)`))), fs.createWriteStream(file, { flags: 'wx' }), { signal });
            members.set(name, { size, mtime, file });
          }
        } else if (!(await seq.skip(size))) throw bad(`ends inside '${name}' (truncated?)`);
        longName = undefined;
        paxSize = undefined;
      }
      if (!(await seq.skip(padding))) throw bad('ends inside the padding of an entry (truncated?)');
    }
    return { members, dispose };
  } catch (e) {
    await dispose();
    throw e;
  } finally {
    // Stops the decompression and closes the upstream read when we stopped early.
    await it.return?.();
    tar.destroy();
  }
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

  /** `n` bytes as they come; `truncated` makes the error when the stream ends first. */
  async *take(n: number, truncated: () => Error): AsyncGenerator<Buffer> {
    for (let left = n; left > 0; ) {
      if (!(await this.fill(1))) throw truncated();
      const c = this.shift(left);
      left -= c.length;
      yield c;
    }
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
