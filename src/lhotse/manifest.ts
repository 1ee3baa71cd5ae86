/**
 * Reading cut manifests as a stream of lines: plain `cuts.jsonl`, gzip (`.jsonl.gz`, `.gzip`;
 * every member of a multi-member file) and LZ4 frames (`.jsonl.lz4`; concatenated and skippable
 * frames too, where Go's reader, and so AIStore's CLI, stops after the first). The compression
 * is chosen by the first bytes, and only when they say nothing by the extension, so a misnamed
 * file still reads. Memory: one line (at most MAX_LINE_BYTES) plus the decoder's buffers.
 */
import { Readable, type Transform } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { Lz4FrameDecoder } from '../archive/lz4-decode.js';
import { OjsError, abortedError } from '../spec/errors.js';

export const MAX_LINE_BYTES = 16 << 20; // as AIStore's CLI (bufio.Scanner max): longer lines are an error, not a silent cut
const SNIFF_BYTES = 64; // every magic below, and past leading blank lines to a '{'

export type ManifestCompression = 'none' | 'gzip' | 'lz4';

/** One line of a manifest: its 1-based number and its JSON, or why it is not JSON. */
export type ManifestLine = { line: number; value: unknown; error?: undefined } | { line: number; value?: undefined; error: OjsError };

/** The compression a manifest's first bytes show (a JSON line starts with '{'), else its name. */
export function detectCompression(head: Buffer, name: string): ManifestCompression {
  const first = head.find((b) => b !== 0x20 && b !== 0x0a && b !== 0x0d && b !== 0x09);
  if (first === 0x7b /* { */) return 'none';
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4) {
    const magic = head.readUInt32LE(0);
    if (magic === 0x184d2204 || (magic & 0xfffffff0) >>> 0 === 0x184d2a50) return 'lz4';
    if (magic === 0xfd2fb528) {
      throw new OjsError('Unsupported', `${name} is zstd-compressed, which is not read; recompress with gzip or lz4`, { code: 'ERR_MANIFEST_COMPRESSION' });
    }
  }
  const lower = name.toLowerCase().replace(/[?#].*$/, '');
  if (lower.endsWith('.gz') || lower.endsWith('.gzip')) return 'gzip';
  if (lower.endsWith('.lz4')) return 'lz4';
  return 'none';
}

/** The decompressed bytes of a manifest body. */
export async function decompressed(body: Readable, name: string): Promise<Readable> {
  const { head, rest } = await sniff(body, SNIFF_BYTES);
  const kind = detectCompression(head, name);
  if (kind === 'none') return rest;
  const decoder: Transform = kind === 'gzip' ? createGunzip() : new Lz4FrameDecoder();
  rest.once('error', (e) => decoder.destroy(e));
  decoder.once('close', () => rest.destroy());
  return rest.pipe(decoder);
}

/**
 * The first `n` bytes of a stream (fewer if it is shorter), put back in front of it. Plain
 * reads, not an async iterator: destroying a stream made from an iterator waits for the iterator,
 * which a pipe with nothing to say (stdin) never finishes, and Ctrl-C would hang.
 */
async function sniff(body: Readable, n: number): Promise<{ head: Buffer; rest: Readable }> {
  const got: Buffer[] = [];
  let len = 0;
  while (len < n && !body.readableEnded) {
    const c = body.read() as Buffer | string | null;
    if (c !== null) {
      const b = typeof c === 'string' ? Buffer.from(c) : c;
      got.push(b);
      len += b.length;
      continue;
    }
    await readableOrEnd(body);
  }
  const head = Buffer.concat(got);
  if (body.readableEnded) return { head: head.subarray(0, n), rest: Readable.from([head]) };
  if (head.length > 0) body.unshift(head);
  return { head: head.subarray(0, n), rest: body };
}

function readableOrEnd(s: Readable): Promise<void> {
  if (s.errored) return Promise.reject(s.errored);
  if (s.destroyed) return Promise.reject(new OjsError('Upstream', 'the manifest stream closed before its end'));
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      s.off('readable', ok);
      s.off('end', ok);
      s.off('error', fail);
      s.off('close', ok);
      if (err === undefined) resolve();
      else reject(err);
    };
    const ok = () => done();
    const fail = (e: Error) => done(e);
    s.once('readable', ok);
    s.once('end', ok);
    s.once('close', ok);
    s.once('error', fail);
  });
}

/**
 * The lines of a manifest, parsed, in order. A line that is not JSON comes with its error (the
 * caller decides to skip it or stop); blank lines are skipped, but counted.
 */
export async function* manifestLines(body: Readable, name: string, signal: AbortSignal): AsyncGenerator<ManifestLine> {
  const text = await decompressed(body, name);
  const onAbort = () => text.destroy(abortedError(signal));
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    let line = 0;
    for await (const raw of splitLines(text, name)) {
      line++;
      if (isBlank(raw)) continue;
      yield parseLine(raw, line, name);
    }
  } catch (e) {
    if (signal.aborted) throw abortedError(signal);
    throw manifestReadError(e, name);
  } finally {
    signal.removeEventListener('abort', onAbort);
    text.destroy();
  }
}

/** Lines of a body already in memory (a request body): the same rules as a file. */
export function* bufferLines(body: Buffer, name: string): Generator<ManifestLine> {
  let line = 0;
  let start = 0;
  while (start < body.length) {
    const nl = body.indexOf(0x0a, start);
    const end = nl < 0 ? body.length : nl;
    line++;
    const raw = body.subarray(start, end);
    start = end + 1;
    if (raw.length > MAX_LINE_BYTES) throw tooLong(line, name);
    if (!isBlank(raw)) yield parseLine(raw, line, name);
  }
}

/** Splits bytes at '\n' without decoding them first, so a UTF-8 sequence across chunks is whole. */
async function* splitLines(text: Readable, name: string): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [];
  let pendingLen = 0;
  let line = 1;
  for await (const chunk of text as AsyncIterable<Buffer>) {
    let start = 0;
    while (true) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl < 0) break;
      const piece = chunk.subarray(start, nl);
      if (pendingLen + piece.length > MAX_LINE_BYTES) throw tooLong(line, name);
      yield pending.length === 0 ? piece : Buffer.concat([...pending, piece]);
      pending = [];
      pendingLen = 0;
      line++;
      start = nl + 1;
    }
    if (start < chunk.length) {
      pending.push(chunk.subarray(start));
      pendingLen += chunk.length - start;
      if (pendingLen > MAX_LINE_BYTES) throw tooLong(line, name);
    }
  }
  if (pendingLen > 0) yield Buffer.concat(pending);
}

function isBlank(raw: Buffer): boolean {
  for (const b of raw) if (b !== 0x20 && b !== 0x09 && b !== 0x0d) return false;
  return true;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function parseLine(raw: Buffer, line: number, name: string): ManifestLine {
  try {
    return { line, value: JSON.parse(utf8.decode(raw)) as unknown };
  } catch (e) {
    const why = e instanceof SyntaxError ? e.message : 'not valid UTF-8';
    return { line, error: new OjsError('BadSpec', `${name}: line ${line}: not a JSON cut: ${why}`, { code: 'ERR_BAD_MANIFEST_LINE' }) };
  }
}

function tooLong(line: number, name: string): OjsError {
  return new OjsError('BadSpec', `${name}: line ${line} is longer than ${MAX_LINE_BYTES >> 20} MiB`, { code: 'ERR_BAD_MANIFEST_LINE' });
}

function manifestReadError(e: unknown, name: string): OjsError {
  if (e instanceof OjsError) {
    if (e.code === 'ERR_BAD_LZ4') return new OjsError('BadSpec', `${name}: ${e.message}`, { code: 'ERR_BAD_MANIFEST', cause: e });
    return e;
  }
  const err = e as NodeJS.ErrnoException;
  if (err.code?.startsWith('Z_') === true) return new OjsError('BadSpec', `${name}: not valid gzip: ${err.message}`, { code: 'ERR_BAD_MANIFEST', cause: e });
  return new OjsError('Upstream', `${name}: reading failed: ${err.message}`, { cause: e });
}
