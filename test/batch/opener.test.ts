import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tarStream from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBatch, type EntryOpener, type OpenedEntry } from '../../src/batch/engine.js';
import { FileSource } from '../../src/sources/file.js';
import { SourceRegistry } from '../../src/sources/registry.js';
import type { ObjectRef, OpenOptions, OpenedObject } from '../../src/sources/types.js';
import { OjsError } from '../../src/spec/errors.js';
import { parseBatchRequest } from '../../src/spec/request.js';
import { run, tmpDir, writeTree } from '../helpers/tools.js';

let dir: string;
let files: Record<string, Buffer>;

beforeAll(async () => {
  dir = tmpDir();
  files = writeTree(dir, { 'a.bin': randomBytes(5000), 'm/x.bin': randomBytes(3000), 'm/y.bin': randomBytes(700_000) });
  const r = await run('tar', ['-C', path.join(dir, 'm'), '-cf', path.join(dir, 'shard.tar'), 'x.bin', 'y.bin']);
  expect(r.code, r.stderr).toBe(0);
});

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function readTar(stream: Readable): Promise<{ name: string; data: Buffer }[]> {
  const out: { name: string; data: Buffer }[] = [];
  const extract = tarStream.extract();
  extract.on('entry', (h, body, next) => {
    const chunks: Buffer[] = [];
    body.on('error', () => undefined); // the extractor reports it too
    body.on('data', (c: unknown) => chunks.push(c as Buffer));
    body.on('end', () => {
      out.push({ name: h.name, data: Buffer.concat(chunks) });
      next();
    });
  });
  await pipeline(stream, extract as unknown as Writable);
  return out;
}

/** A file source that counts opens per key. */
class Counting extends FileSource {
  opens = new Map<string, number>();
  override open(ref: ObjectRef, opts: OpenOptions): Promise<OpenedObject> {
    this.opens.set(ref.key, (this.opens.get(ref.key) ?? 0) + 1);
    return super.open(ref, opts);
  }
}

/** Each entry: an 8-byte prefix holding the first 8 bytes of the object, then bytes 100..199, renamed. */
const prefixing: EntryOpener = {
  async open(entry, signal, next): Promise<OpenedEntry> {
    const head = await next(entry.withRange({ start: 0, length: 8 }), signal);
    const h = head.bytes ?? Buffer.alloc(0);
    const body = await next(entry.withRange({ start: 100, length: 100 }), signal);
    const bytes = Buffer.concat([h, body.bytes ?? Buffer.alloc(0)]);
    return { name: `${entry.name}.new`, length: bytes.length, range: { offset: 0, length: bytes.length }, size: bytes.length, bytes, body: Readable.from([bytes]) };
  },
};

describe('engine: an EntryOpener', () => {
  it('opens entries through the engine (objects and shard members alike), may rename them, and the shard is indexed once', async () => {
    const src = new Counting({ roots: { r: dir } });
    const sources = new SourceRegistry().register(src);
    const req = parseBatchRequest({ in: [{ objname: 'a.bin' }, { objname: 'shard.tar', archpath: 'x.bin' }, { objname: 'shard.tar', archpath: 'y.bin' }] }, { bucket: 'r', provider: 'file' });
    const r = runBatch(req, sources, undefined, { opener: prefixing });
    const got = await readTar(r.stream);
    const want = (b: Buffer) => Buffer.concat([b.subarray(0, 8), b.subarray(100, 200)]);
    expect(got.map((m) => m.name)).toEqual(['r/a.bin.new', 'r/shard.tar/x.bin.new', 'r/shard.tar/y.bin.new']);
    expect(got.map((m) => m.data)).toEqual([want(files['a.bin']!), want(files['m/x.bin']!), want(files['m/y.bin']!)]);
    const res = await r.result;
    expect(res.out.map((o) => o.size)).toEqual([108, 108, 108]);
    // Two member reads each, plus the one header walk of the shard (it reads ahead 64 KiB).
    expect(src.opens.get('shard.tar')).toBe(5);
  });

  it('entries the opener makes itself skip the provider check; others still get it', async () => {
    const made: EntryOpener = {
      readsSource: (e) => e.location.provider !== 'ais',
      async open(entry, signal, next) {
        if (entry.location.provider !== 'ais') return next(entry, signal);
        const bytes = Buffer.from(`made ${entry.name}`);
        return { length: bytes.length, range: { offset: 0, length: bytes.length }, size: bytes.length, bytes, body: Readable.from([bytes]) };
      },
    };
    const sources = new SourceRegistry({ file: { roots: { r: dir } } });
    const req = parseBatchRequest({ in: [{ uri: 'ais://b/k' }, { bucket: 'r', provider: 'file', objname: 'a.bin' }] });
    const got = await readTar(runBatch(req, sources, undefined, { opener: made }).stream);
    expect(got.map((m) => [m.name, m.data.toString('latin1', 0, 8)])).toEqual([['b/k', 'made b/k'], ['r/a.bin', files['a.bin']!.toString('latin1', 0, 8)]]);
    expect(() => runBatch(req, sources, undefined, { opener: { open: made.open } })).toThrow(/provider 'ais'/);
  });

  it('an opener that fails: a soft error is a __404__ entry under coer, anything else fails the batch', async () => {
    const failing = (kind: 'NotFound' | 'Internal'): EntryOpener => ({
      async open(entry, signal, next) {
        if (entry.location.key === 'a.bin') throw new OjsError(kind, `no ${entry.name} (test)`);
        return next(entry, signal);
      },
    });
    const sources = new SourceRegistry({ file: { roots: { r: dir } } });
    const req = parseBatchRequest({ coer: true, in: [{ objname: 'a.bin' }, { objname: 'm/x.bin' }] }, { bucket: 'r', provider: 'file' });
    const soft = runBatch(req, sources, undefined, { opener: failing('NotFound') });
    expect((await readTar(soft.stream)).map((m) => [m.name, m.data.length])).toEqual([['__404__/r/a.bin', 0], ['r/m/x.bin', 3000]]);
    expect((await soft.result).out[0]!.err_msg).toBe('no r/a.bin (test)');
    const hard = runBatch(req, sources, undefined, { opener: failing('Internal') });
    await expect(Promise.all([readTar(hard.stream), hard.result])).rejects.toThrow(/no r\/a.bin/);
  });
});
