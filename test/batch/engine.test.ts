import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tarStream from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBatch } from '../../src/batch/engine.js';
import { BytePool } from '../../src/batch/pool.js';
import { SourceRegistry } from '../../src/sources/registry.js';
import { OjsError } from '../../src/spec/errors.js';
import { parseBatchRequest, type MossIn } from '../../src/spec/request.js';
import { tmpDir, writeTree } from '../helpers/tools.js';

let dir: string;
let files: Record<string, Buffer>;
let sources: SourceRegistry;

beforeAll(() => {
  dir = tmpDir();
  files = writeTree(dir, {
    'a.bin': randomBytes(5000),
    'sub/b.bin': randomBytes(1),
    'c.bin': randomBytes(70_000),
    'empty.bin': Buffer.alloc(0),
    'big/d.bin': randomBytes(3 << 20),
  });
  sources = new SourceRegistry({ file: { roots: { r: dir } } });
});

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

interface Member {
  name: string;
  data: Buffer;
}

/** Reads a TAR stream with tar-stream's extractor, an implementation independent of ours. */
async function readTar(stream: Readable): Promise<Member[]> {
  const members: Member[] = [];
  const extract = tarStream.extract();
  extract.on('entry', (h, body, next) => {
    const chunks: Buffer[] = [];
    body.on('error', () => undefined); // the extractor reports it too
    body.on('data', (c: unknown) => chunks.push(c as Buffer));
    body.on('end', () => {
      members.push({ name: h.name, data: Buffer.concat(chunks) });
      next();
    });
  });
  await pipeline(stream, extract as unknown as Writable);
  return members;
}

type Missing = 'none' | 'first' | 'middle' | 'last';
type RangeCase = 'none' | 'exact' | 'to-end';

const BASE = ['a.bin', 'sub/b.bin', 'c.bin', 'empty.bin'];

function caseEntries(missing: Missing, range: RangeCase): { entries: MossIn[]; expect: { key: string; data: Buffer | null }[] } {
  const keys = [...BASE];
  if (missing === 'first') keys.unshift('nope-1.bin');
  if (missing === 'middle') keys.splice(2, 0, 'dir/nope-2.bin');
  if (missing === 'last') keys.push('nope-3.bin');
  const entries: MossIn[] = keys.map((k) => ({ objname: k }));
  const expected = keys.map((k) => ({ key: k, data: files[k] ?? null }));
  const ci = keys.indexOf('c.bin');
  const c = files['c.bin']!;
  if (range === 'exact') {
    entries[ci] = { objname: 'c.bin', start: 1000, length: 4321 };
    expected[ci] = { key: 'c.bin', data: c.subarray(1000, 5321) };
  } else if (range === 'to-end') {
    entries[ci] = { objname: 'c.bin', start: 69_000, length: -1 };
    expected[ci] = { key: 'c.bin', data: c.subarray(69_000) };
  }
  return { entries, expect: expected };
}

describe('engine matrix: coer x onob x missing x range', () => {
  const cases: [boolean, boolean, Missing, RangeCase][] = [];
  for (const coer of [false, true])
    for (const onob of [false, true])
      for (const missing of ['none', 'first', 'middle', 'last'] as Missing[])
        for (const range of ['none', 'exact', 'to-end'] as RangeCase[]) cases.push([coer, onob, missing, range]);

  it.each(cases)('coer=%s onob=%s missing=%s range=%s', async (coer, onob, missing, range) => {
    const { entries, expect: want } = caseEntries(missing, range);
    const req = parseBatchRequest({ in: entries, coer, onob }, { bucket: 'r', provider: 'file' });
    const run = runBatch(req, sources, undefined, { windowEntries: 2, windowBytes: 8192 });
    const name = (k: string) => (onob ? k : `r/${k}`);
    if (missing !== 'none' && !coer) {
      await expect(readTar(run.stream)).rejects.toThrow();
      const err = await run.result.catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OjsError);
      expect((err as OjsError).kind).toBe('NotFound');
      expect((err as OjsError).context.entry).toBe(want.findIndex((w) => w.data === null));
      return;
    }
    const members = await readTar(run.stream);
    const result = await run.result;
    expect(members.map((m) => m.name)).toEqual(want.map((w) => (w.data === null ? `__404__/${name(w.key)}` : name(w.key))));
    members.forEach((m, i) => expect(m.data.equals(want[i]!.data ?? Buffer.alloc(0)), m.name).toBe(true));
    expect(result.out.map((o) => [o.objname, o.size, o.err_msg !== undefined])).toEqual(
      want.map((w) => [w.key, w.data?.length ?? 0, w.data === null]),
    );
    expect(result.progress.missing).toBe(missing === 'none' ? 0 : 1);
    expect(result.missingAt).toEqual(want.flatMap((w, i) => (w.data === null ? [i] : [])));
  });
});

describe('engine', () => {
  it('keeps read-ahead within its byte window, whatever the batch size', async () => {
    const keys = Array.from({ length: 40 }, (_, i) => (i % 2 ? 'big/d.bin' : 'c.bin'));
    const req = parseBatchRequest({ in: keys.map((objname) => ({ objname })) }, { bucket: 'r', provider: 'file' });
    const windowBytes = 1 << 20;
    const windowEntries = 4;
    const run = runBatch(req, sources, undefined, { windowEntries, windowBytes });
    // A slow consumer: the engine must wait for it rather than read ahead without bound.
    let total = 0;
    for await (const chunk of run.stream) {
      total += (chunk as Buffer).length;
      await new Promise((r) => setImmediate(r));
    }
    const result = await run.result;
    expect(total).toBeGreaterThan(20 * (3 << 20));
    // Each flowing body may land one chunk (256 KiB for files) before it is paused; no body, the
    // one being written included, may run ahead of a slow consumer (3 MiB bodies here).
    expect(result.progress.maxBufferedBytes).toBeLessThanOrEqual(windowBytes + windowEntries * (256 << 10));
    expect(result.progress.maxBufferedBytes).toBeGreaterThan(0);
  });

  it('batches sharing a pool stay within it together, and give every byte back, failed ones too', async () => {
    const pool = new BytePool(2 << 20);
    let peak = 0;
    const watch = setInterval(() => (peak = Math.max(peak, pool.used)), 1);
    const keys = Array.from({ length: 30 }, (_, i) => (i % 3 ? 'big/d.bin' : 'c.bin'));
    const batch = (extra: MossIn[] = []) => {
      const req = parseBatchRequest({ in: [...keys.map((objname) => ({ objname })), ...extra] }, { bucket: 'r', provider: 'file' });
      return runBatch(req, sources, undefined, { pool });
    };
    const slowly = async (run: ReturnType<typeof runBatch>) => {
      let total = 0;
      for await (const chunk of run.stream) {
        total += (chunk as Buffer).length;
        peak = Math.max(peak, pool.used);
        await new Promise((r) => setImmediate(r));
      }
      return total;
    };
    const runs = [batch(), batch(), batch([{ objname: 'nope.bin' }])];
    const [a, b] = await Promise.all([slowly(runs[0]!), slowly(runs[1]!), slowly(runs[2]!).catch(() => -1)]);
    clearInterval(watch);
    expect(a).toBe(b);
    await expect(runs[2]!.result).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
    // Each of the 3 batches may run one chunk per flowing body over (the head always moves on).
    expect(peak).toBeLessThanOrEqual((2 << 20) + 3 * 4 * (256 << 10));
    expect(peak).toBeGreaterThan(1 << 20);
    expect(pool.used).toBe(0);
  });

  it('fails the batch once more than max_soft_errs entries are missing', async () => {
    const req = parseBatchRequest(
      { coer: true, max_soft_errs: 1, in: [{ objname: 'x1' }, { objname: 'a.bin' }, { objname: 'x2' }, { objname: 'c.bin' }] },
      { bucket: 'r', provider: 'file' },
    );
    const run = runBatch(req, sources);
    await expect(readTar(run.stream)).rejects.toThrow();
    await expect(run.result).rejects.toMatchObject({ code: 'ERR_TOO_MANY_MISSING' });
  });

  it('rejects, before any byte, what this build cannot do', () => {
    const ais = parseBatchRequest({ in: [{ uri: 'ais://b/k' }] });
    expect(() => runBatch(ais, sources)).toThrow(expect.objectContaining({ kind: 'Unsupported', code: 'ERR_UNSUPPORTED_PROVIDER' }));
  });

  it('fails with 416 on an unsatisfiable range even with coer', async () => {
    const req = parseBatchRequest({ coer: true, in: [{ objname: 'a.bin', start: 5000, length: 1 }] }, { bucket: 'r', provider: 'file' });
    const run = runBatch(req, sources);
    await expect(readTar(run.stream)).rejects.toThrow();
    const err = (await run.result.catch((e: unknown) => e)) as OjsError;
    expect(err.kind).toBe('Range');
    expect(err.httpStatus).toBe(416);
  });

  it('stops every upstream read when the caller aborts, and errors the stream', async () => {
    const keys = Array.from({ length: 50 }, () => 'big/d.bin');
    const req = parseBatchRequest({ in: keys.map((objname) => ({ objname })) }, { bucket: 'r', provider: 'file' });
    const ac = new AbortController();
    const run = runBatch(req, sources, ac.signal);
    let got = 0;
    const consumed = (async () => {
      for await (const chunk of run.stream) {
        got += (chunk as Buffer).length;
        if (got > 4 << 20) ac.abort();
      }
    })();
    await expect(consumed).rejects.toThrow();
    await expect(run.result).rejects.toMatchObject({ kind: 'Aborted' });
    expect(got).toBeLessThan(20 << 20);
  });

  it('stops when the consumer destroys the stream', async () => {
    const keys = Array.from({ length: 50 }, () => 'big/d.bin');
    const req = parseBatchRequest({ in: keys.map((objname) => ({ objname })) }, { bucket: 'r', provider: 'file' });
    const run = runBatch(req, sources);
    run.stream.once('data', () => run.stream.destroy());
    await expect(run.result).rejects.toMatchObject({ kind: 'Aborted' });
    expect(run.progress.done).toBeLessThan(50);
  });

  it('ends a failed archive inside an entry, so no reader can take it for complete', async () => {
    const req = parseBatchRequest({ in: [{ objname: 'a.bin' }, { objname: 'empty.bin' }, { objname: 'missing' }] }, { bucket: 'r', provider: 'file' });
    const run = runBatch(req, sources);
    const chunks: Buffer[] = [];
    await expect(
      (async () => {
        for await (const c of run.stream) chunks.push(c as Buffer);
      })(),
    ).rejects.toThrow(/no such file/);
    const bytes = Buffer.concat(chunks);
    expect(bytes.length).toBeGreaterThan(0);
    // Even read while ignoring the error, the bytes are not a complete archive.
    await expect(readTar(Readable.from([bytes]))).rejects.toThrow();
    const p = path.join(dir, 'partial.tar');
    fs.writeFileSync(p, bytes);
    const { gnuTarList } = await import('../helpers/tools.js');
    await expect(gnuTarList(p)).rejects.toThrow(/Unexpected EOF/);
  });
});
