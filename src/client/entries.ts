/**
 * `getBatch(endpoint, request)`: the entries of a batch from a running service, one at a time as
 * they arrive, for training loops written in TypeScript. Each entry's bytes are held in memory
 * while it is yielded (one entry at a time); for entries bigger than memory, take the archive
 * itself from `requestBatch`.
 *
 * TAR, TGZ and TAR.LZ4 are read as they stream in. ZIP keeps its directory at the end, so a ZIP
 * batch is spooled to a temporary file first and read from there (removed afterwards).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { Lz4FrameDecoder } from '../archive/lz4-decode.js';
import { TarStreamReader } from '../archive/shard-stream.js';
import { zipMembersInOrder } from '../archive/shard.js';
import { FileSource } from '../sources/file.js';
import { OjsError } from '../spec/errors.js';
import { MISSING_DIR, type MossOut, type MossReq } from '../spec/request.js';
import { requestBatch, type BatchResponse, type ClientOptions } from './http.js';

const ZIP_SPOOL_PREFIX = 'ojs-ml-client-'; // temporary directory of a spooled ZIP batch

export interface ReceivedEntry {
  /** Position in the request. */
  index: number;
  /** Name in the archive (`__404__/...` for a missing item). */
  name: string;
  size: number;
  /** A `coer` placeholder: the item could not be had. */
  missing: boolean;
  data: Buffer;
  /** The metadata row (multipart mode only): err_msg, opaque, ... */
  out?: MossOut;
}

/** Sends the batch and yields its entries in request order; throws if the batch fails or is cut off. */
export async function* getBatch(endpoint: string, req: MossReq, opts: ClientOptions = {}): AsyncGenerator<ReceivedEntry> {
  const res = await requestBatch(endpoint, req, opts);
  const rows = res.metadata?.out;
  let index = 0;
  try {
    for await (const e of res.format === 'zip' ? zipEntries(res, opts.signal) : tarEntries(res)) {
      const row = rows?.[index];
      yield { index, ...e, missing: e.name.startsWith(`${MISSING_DIR}/`), out: row };
      index++;
    }
  } finally {
    res.archive.destroy();
  }
  if (index !== req.in.length) {
    throw new OjsError('Upstream', `the batch has ${index} entries, the request ${req.in.length}`, { code: 'ERR_BAD_RESPONSE' });
  }
}

type Plain = Pick<ReceivedEntry, 'name' | 'size' | 'data'>;

async function* tarEntries(res: BatchResponse): AsyncGenerator<Plain> {
  const tar = res.format === 'tgz' ? res.archive.pipe(createGunzip()) : res.format === 'tar.lz4' ? res.archive.pipe(new Lz4FrameDecoder()) : res.archive;
  if (tar !== res.archive) res.archive.once('error', (e) => tar.destroy(e));
  const reader = new TarStreamReader(tar, 'the batch archive');
  try {
    for (let e = await reader.next(); e !== undefined; e = await reader.next()) {
      if (!e.regular) continue;
      const chunks: Buffer[] = [];
      for await (const c of reader.body()) chunks.push(c);
      yield { name: e.name, size: e.size, data: Buffer.concat(chunks, e.size) };
    }
    // Every archive we (and AIStore) send ends with the marker; without it, something was lost.
    if (!reader.sawEnd) throw new OjsError('Upstream', 'the batch archive ends without its end-of-archive marker (cut off?)', { code: 'ERR_BATCH_CUT' });
  } finally {
    await reader.close();
  }
}

async function* zipEntries(res: BatchResponse, signal: AbortSignal | undefined): AsyncGenerator<Plain> {
  const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), ZIP_SPOOL_PREFIX));
  try {
    const sig = signal ?? new AbortController().signal;
    await pipeline(res.archive, fs.createWriteStream(path.join(dir, 'batch.zip')), { signal: sig });
    const source = new FileSource({ roots: { spool: dir } });
    const ref = { bucket: 'spool', key: 'batch.zip' };
    for (const m of await zipMembersInOrder(source, ref, sig)) {
      const o = await m.open();
      const data = o.bytes ?? Buffer.concat((await o.body.toArray()) as Buffer[]);
      yield { name: m.name, size: o.length, data };
    }
  } finally {
    await fs.promises.rm(dir, { recursive: true, force: true });
  }
}
