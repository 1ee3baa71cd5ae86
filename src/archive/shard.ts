/**
 * Members of shard archives (`archpath`), read through any ObjectSource with ranged reads
 * instead of downloading the shard:
 * - TAR: walk the headers (USTAR, PAX `path`, GNU long names), reading a header and skipping each
 *   body, until every member the batch wants from this shard is found;
 * - ZIP: read the end records (zip64 too) and the central directory, then one ranged read per
 *   member (STORE as is, DEFLATE inflated).
 * A member is a contiguous byte range of the shard (or a deflated one), so opening it is one more
 * ranged open. Compressed TAR shards (.tgz, .tar.lz4) have no offsets: shard-stream.ts makes one
 * decompressing pass per shard per batch that keeps the wanted members.
 */
import { Readable, Transform, type TransformCallback } from 'node:stream';
import * as fs from 'node:fs';
import { createGunzip, createInflateRaw } from 'node:zlib';
import { OjsError } from '../spec/errors.js';
import { resolveRange, type ByteRange } from '../spec/range.js';
import type { ObjectRef, ObjectSource, OpenedObject } from '../sources/types.js';
import { Lz4FrameDecoder } from './lz4-decode.js';
import { extractTarMembers, type ExtractedMembers } from './shard-stream.js';
import { TAR_BLOCK, checksumOk, octal, paxValue, tarSize, ustarName } from './tar-read.js';

const TAR_SMALL_READ = 64 << 10; // after a small member, read this much at once: the next headers are likely in it
const ZIP_TAIL = (64 << 10) + 22 + 20; // the end record, its longest comment, and the zip64 locator

export type ShardFormat = 'tar' | 'zip' | 'tgz' | 'tar.lz4';

interface Member {
  /** TAR: where the data starts; ZIP: where the local header starts (its length is read at open). */
  offset: number;
  /** ZIP compression method (0 STORE, 8 DEFLATE); absent for TAR. */
  method?: number;
  size: number; // uncompressed
  compressedSize: number;
  deflated: boolean;
  mtime?: Date;
}

export interface ShardIndex {
  format: ShardFormat;
  /** Where members are (TAR, ZIP). */
  members: Map<string, Member>;
  /** Members already taken out of a compressed shard, by its one pass. */
  extracted?: ExtractedMembers;
}

/** The shard's format by its name, then by its first bytes. */
export async function detectShardFormat(source: ObjectSource, ref: ObjectRef, signal: AbortSignal): Promise<ShardFormat> {
  const lower = ref.key.toLowerCase();
  if (lower.endsWith('.tgz') || lower.endsWith('.tar.gz')) return 'tgz';
  if (lower.endsWith('.tar.lz4')) return 'tar.lz4';
  if (lower.endsWith('.tar')) return 'tar';
  if (lower.endsWith('.zip')) return 'zip';
  const size = (await source.stat(ref, { signal })).size;
  const head = await readRange(source, ref, 0, Math.min(size, TAR_BLOCK), signal);
  if (head.length >= 4 && head.readUInt32LE(0) === 0x04034b50) return 'zip';
  if (head.length === TAR_BLOCK && head.toString('latin1', 257, 262) === 'ustar') return 'tar';
  if (head[0] === 0x1f && head[1] === 0x8b) return 'tgz';
  if (head.length >= 4 && head.readUInt32LE(0) === 0x184d2204) return 'tar.lz4';
  throw new OjsError('BadSpec', `'${ref.key}' is not a TAR, TGZ, TAR.LZ4 or ZIP shard (by name or content), so it has no members`, { code: 'ERR_NOT_A_SHARD', context: ctx(ref) });
}

/** Indexes a shard far enough to find `wanted` (all of it when a name is missing). */
export async function indexShard(source: ObjectSource, ref: ObjectRef, wanted: ReadonlySet<string>, signal: AbortSignal): Promise<ShardIndex> {
  const format = await detectShardFormat(source, ref, signal);
  if (format === 'tgz' || format === 'tar.lz4') return { format, members: new Map(), extracted: await extractCompressed(source, ref, format, wanted, signal) };
  const size = (await source.stat(ref, { signal })).size;
  const members = format === 'tar' ? await walkTar(source, ref, size, wanted, signal) : await readZipDirectory(source, ref, size, signal);
  return { format, members };
}

/** Opens a member like a whole object: exact length, range within the member, a body. */
export async function openMember(source: ObjectSource, ref: ObjectRef, index: ShardIndex, name: string, range: ByteRange | undefined, signal: AbortSignal): Promise<OpenedObject> {
  if (index.extracted !== undefined) return openExtracted(ref, index.extracted, name, range, signal);
  const m = index.members.get(stripSlash(name));
  if (m === undefined) {
    throw new OjsError('NotFound', `no member '${name}' in shard ${ref.bucket}/${ref.key}`, { code: 'ERR_NO_SUCH_MEMBER', context: ctx(ref) });
  }
  return openAt(source, ref, index.format, m, name, range, signal);
}

/** Every file of a ZIP in directory order, duplicates of a name included, each with its opener. */
export async function zipMembersInOrder(source: ObjectSource, ref: ObjectRef, signal: AbortSignal): Promise<{ name: string; open(): Promise<OpenedObject> }[]> {
  const size = (await source.stat(ref, { signal })).size;
  return (await zipDirectory(source, ref, size, signal)).map(([name, m]) => ({ name, open: () => openAt(source, ref, 'zip', m, name, undefined, signal) }));
}

async function openAt(source: ObjectSource, ref: ObjectRef, format: ShardFormat, m: Member, name: string, range: ByteRange | undefined, signal: AbortSignal): Promise<OpenedObject> {
  if (m.method !== undefined && m.method !== 0 && m.method !== 8) {
    throw new OjsError('Unsupported', `member '${name}' of ${ref.key} uses ZIP method ${m.method}; STORE and DEFLATE are read`, { code: 'ERR_UNSUPPORTED_SHARD', context: ctx(ref) });
  }
  const r = resolveRange(range, m.size, ctx(ref));
  let dataAt = m.offset;
  if (format === 'zip') {
    const lh = await readRange(source, ref, m.offset, 30, signal);
    if (lh.length < 30 || lh.readUInt32LE(0) !== 0x04034b50) throw badShard(ref, `has no local header for '${name}' where its directory says`);
    dataAt = m.offset + 30 + lh.readUInt16LE(26) + lh.readUInt16LE(28);
  }
  if (!m.deflated) {
    if (r.length === 0) return { length: 0, range: r, size: m.size, mtime: m.mtime, bytes: Buffer.alloc(0), body: Readable.from([]) };
    const o = await source.open(ref, { signal, range: { start: dataAt + r.offset, length: r.length } });
    const meta = { length: r.length, range: r, size: m.size, mtime: m.mtime ?? o.mtime, etag: o.etag };
    // Not a spread of `o`: that would make the stream of an in-memory body for nothing.
    return o.bytes === undefined ? { ...meta, body: o.body } : { ...meta, bytes: o.bytes, get body() { return o.body; } };
  }
  const o = await source.open(ref, { signal, range: { start: dataAt, length: m.compressedSize } });
  const compressed = o.bytes !== undefined ? Readable.from([o.bytes]) : o.body;
  const body = compressed.pipe(createInflateRaw()).pipe(new Slice(r.offset, r.length, m.size, name));
  compressed.on('error', (e) => body.destroy(e));
  return { length: r.length, range: r, size: m.size, mtime: m.mtime ?? o.mtime, body };
}

async function extractCompressed(source: ObjectSource, ref: ObjectRef, format: 'tgz' | 'tar.lz4', wanted: ReadonlySet<string>, signal: AbortSignal): Promise<ExtractedMembers> {
  const o = await source.open(ref, { signal });
  const raw = o.bytes !== undefined ? Readable.from([o.bytes]) : o.body;
  // Node's gunzip reads every member of a multi-member file (ours, pigz, bgzip); our LZ4 decoder
  // reads every frame of a concatenated one.
  const tar = raw.pipe(format === 'tgz' ? createGunzip() : new Lz4FrameDecoder());
  raw.once('error', (e) => tar.destroy(e));
  tar.once('close', () => raw.destroy());
  try {
    return await extractTarMembers(tar, wanted, signal, `${ref.bucket}/${ref.key}`);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code?.startsWith('Z_') === true) throw badShard(ref, `is not valid gzip: ${err.message}`);
    if (err.code === 'ERR_BAD_LZ4') throw badShard(ref, `is not valid LZ4: ${err.message}`);
    throw e;
  }
}

function openExtracted(ref: ObjectRef, ex: ExtractedMembers, name: string, range: ByteRange | undefined, signal: AbortSignal): OpenedObject {
  const m = ex.members.get(stripSlash(name));
  if (m === undefined) {
    throw new OjsError('NotFound', `no member '${name}' in shard ${ref.bucket}/${ref.key}`, { code: 'ERR_NO_SUCH_MEMBER', context: ctx(ref) });
  }
  const r = resolveRange(range, m.size, ctx(ref));
  const meta = { length: r.length, range: r, size: m.size, mtime: m.mtime };
  if ('file' in m) {
    if (r.length === 0) return { ...meta, bytes: Buffer.alloc(0), body: Readable.from([]) };
    return { ...meta, body: fs.createReadStream(m.file, { start: r.offset, end: r.offset + r.length - 1, signal }) };
  }
  const bytes = sliceChunks(m.chunks, r.offset, r.length);
  return { ...meta, bytes, get body() { return Readable.from([bytes]); } };
}

function sliceChunks(chunks: readonly Buffer[], offset: number, length: number): Buffer {
  const parts: Buffer[] = [];
  let pos = 0;
  for (const c of chunks) {
    const from = Math.max(offset - pos, 0);
    const to = Math.min(offset + length - pos, c.length);
    if (to > from) parts.push(c.subarray(from, to));
    pos += c.length;
    if (pos >= offset + length) break;
  }
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts, length);
}

/** Bytes [skip, skip+take) of an inflated member whose full size is known; anything else is an error. */
class Slice extends Transform {
  private pos = 0;

  constructor(private readonly skip: number, private readonly count: number, private readonly total: number, private readonly name: string) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const start = this.pos;
    this.pos += chunk.length;
    if (this.pos > this.total) return cb(new OjsError('SizeMismatch', `member '${this.name}' inflates to more than ${this.total} bytes`));
    const from = Math.max(this.skip - start, 0);
    const to = Math.min(this.skip + this.count - start, chunk.length);
    if (to > from) this.push(chunk.subarray(from, to));
    cb();
  }

  override _flush(cb: TransformCallback): void {
    cb(this.pos === this.total ? null : new OjsError('SizeMismatch', `member '${this.name}' inflates to ${this.pos} bytes, its directory says ${this.total}`));
  }
}

async function readRange(source: ObjectSource, ref: ObjectRef, start: number, length: number, signal: AbortSignal): Promise<Buffer> {
  if (length === 0) return Buffer.alloc(0);
  const o = await source.open(ref, { signal, range: { start, length } });
  if (o.bytes !== undefined) return o.bytes;
  const chunks: Buffer[] = [];
  for await (const c of o.body as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

// --- TAR ---------------------------------------------------------------------------------

async function walkTar(source: ObjectSource, ref: ObjectRef, size: number, wanted: ReadonlySet<string>, signal: AbortSignal): Promise<Map<string, Member>> {
  const members = new Map<string, Member>();
  let found = 0;
  let pos = 0;
  let win: Buffer = Buffer.alloc(0);
  let winStart = 0;
  let readAhead = TAR_SMALL_READ;
  const block = async (at: number, n: number): Promise<Buffer> => {
    if (at + n > size) throw badShard(ref, `ends inside the entry at byte ${at} (truncated?)`);
    if (at < winStart || at + n > winStart + win.length) {
      winStart = at;
      win = await readRange(source, ref, at, Math.min(size - at, Math.max(n, readAhead)), signal);
    }
    return win.subarray(at - winStart, at - winStart + n);
  };
  let longName: string | undefined;
  while (pos + TAR_BLOCK <= size) {
    const h = await block(pos, TAR_BLOCK);
    if (h.every((b) => b === 0)) break; // end of archive
    if (!checksumOk(h)) throw badShard(ref, `has a corrupt header at byte ${pos}`);
    const type = String.fromCharCode(h[156]!);
    const bodySize = tarSize(h);
    const dataAt = pos + TAR_BLOCK;
    const next = dataAt + Math.ceil(bodySize / TAR_BLOCK) * TAR_BLOCK;
    if (type === 'x' || type === 'L') {
      const meta = (await block(dataAt, bodySize)).toString('utf8');
      longName = type === 'L' ? meta.replace(/\0+$/, '') : (paxValue(meta, 'path') ?? longName);
    } else {
      if (type === '0' || type === '\0' || type === '7') {
        const name = stripSlash(longName ?? ustarName(h));
        const mtime = new Date(octal(h, 136, 12) * 1000);
        members.set(name, { offset: dataAt, size: bodySize, compressedSize: bodySize, deflated: false, mtime });
        if (wanted.has(name)) found++;
        if (next > size) throw badShard(ref, `ends inside '${name}' (truncated?)`);
        if (found >= wanted.size && wanted.size > 0) break;
      }
      longName = undefined;
    }
    readAhead = bodySize > TAR_SMALL_READ ? TAR_BLOCK : TAR_SMALL_READ;
    pos = next;
  }
  return members;
}

// --- ZIP ---------------------------------------------------------------------------------

async function readZipDirectory(source: ObjectSource, ref: ObjectRef, size: number, signal: AbortSignal): Promise<Map<string, Member>> {
  return new Map(await zipDirectory(source, ref, size, signal));
}

/** The central directory's files (not folders), in its order. */
async function zipDirectory(source: ObjectSource, ref: ObjectRef, size: number, signal: AbortSignal): Promise<[string, Member][]> {
  const tailStart = Math.max(0, size - ZIP_TAIL);
  const tail = await readRange(source, ref, tailStart, size - tailStart, signal);
  let eocd = -1;
  for (let i = tail.length - 22; i >= 0; i--) {
    if (tail.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw badShard(ref, 'has no ZIP end record (truncated, or not a ZIP)');
  let count = tail.readUInt16LE(eocd + 10);
  let cdSize = tail.readUInt32LE(eocd + 12);
  let cdOffset = tail.readUInt32LE(eocd + 16);
  if (eocd >= 20 && tail.readUInt32LE(eocd - 20) === 0x07064b50) {
    const z64at = Number(tail.readBigUInt64LE(eocd - 20 + 8));
    const z64 = await readRange(source, ref, z64at, 56, signal);
    if (z64.readUInt32LE(0) !== 0x06064b50) throw badShard(ref, 'has a broken zip64 end record');
    count = Number(z64.readBigUInt64LE(32));
    cdSize = Number(z64.readBigUInt64LE(40));
    cdOffset = Number(z64.readBigUInt64LE(48));
  }
  if (cdOffset + cdSize > size) throw badShard(ref, 'has a central directory past its end (truncated?)');
  const cd = await readRange(source, ref, cdOffset, cdSize, signal);
  const entries: { name: string; method: number; csize: number; usize: number; local: number; mtime: Date }[] = [];
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cd.length || cd.readUInt32LE(p) !== 0x02014b50) throw badShard(ref, `has a corrupt central directory at entry ${i}`);
    const method = cd.readUInt16LE(p + 10);
    let csize = cd.readUInt32LE(p + 20);
    let usize = cd.readUInt32LE(p + 24);
    const nameLen = cd.readUInt16LE(p + 28);
    const extraLen = cd.readUInt16LE(p + 30);
    const commentLen = cd.readUInt16LE(p + 32);
    let local = cd.readUInt32LE(p + 42);
    const name = cd.toString('utf8', p + 46, p + 46 + nameLen);
    // zip64 extra field: the 64-bit values, in this order, for those whose 32-bit field is all ones
    for (let e = p + 46 + nameLen; e + 4 <= p + 46 + nameLen + extraLen; ) {
      const id = cd.readUInt16LE(e);
      const len = cd.readUInt16LE(e + 2);
      if (id === 0x0001) {
        let q = e + 4;
        if (usize === 0xffffffff) {
          usize = Number(cd.readBigUInt64LE(q));
          q += 8;
        }
        if (csize === 0xffffffff) {
          csize = Number(cd.readBigUInt64LE(q));
          q += 8;
        }
        if (local === 0xffffffff) local = Number(cd.readBigUInt64LE(q));
      }
      e += 4 + len;
    }
    entries.push({ name, method, csize, usize, local, mtime: dosTime(cd.readUInt16LE(p + 14), cd.readUInt16LE(p + 12)) });
    p += 46 + nameLen + extraLen + commentLen;
  }
  return entries
    .filter((e) => !e.name.endsWith('/'))
    .map((e) => [stripSlash(e.name), { offset: e.local, size: e.usize, compressedSize: e.csize, deflated: e.method === 8, method: e.method, mtime: e.mtime }]);
}

function dosTime(date: number, time: number): Date {
  return new Date(Date.UTC(1980 + (date >> 9), ((date >> 5) & 0xf) - 1, date & 0x1f, time >> 11, (time >> 5) & 0x3f, (time & 0x1f) * 2));
}

/** Member names compare without a leading '/' or './' (what `tar -C dir .` writes). */
function stripSlash(name: string): string {
  return name.replace(/^(?:\.?\/)+/, '');
}

function ctx(ref: ObjectRef): { bucket: string; key: string } {
  return { bucket: ref.bucket, key: ref.key };
}

function badShard(ref: ObjectRef, why: string): OjsError {
  return new OjsError('Upstream', `shard ${ref.bucket}/${ref.key} ${why}`, { code: 'ERR_BAD_SHARD', context: ctx(ref) });
}
