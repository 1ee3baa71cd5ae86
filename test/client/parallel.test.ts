/**
 * ParallelBatchClient: one TAR batch cut into parts read over several connections to a real
 * `ojs-ml serve` app, handed over as one archive. The reference is the same batch read on one
 * connection; Python's tarfile and GNU tar read what came.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ParallelBatchClient } from '../../src/client/parallel.js';
import { BatchStreamClient } from '../../src/client/stream.js';
import { SourceRegistry } from '../../src/sources/registry.js';
import type { MossReq } from '../../src/spec/request.js';
import { CountingSource, listen, type TestServer } from '../server/helpers.js';
import { run, sha256, tmpDir, writeTree } from '../helpers/tools.js';
import { failure } from '../helpers/errors.js';

let work: string;
let server: TestServer;
const names: string[] = [];

beforeAll(async () => {
  work = tmpDir('ojs-ml-parallel-');
  const tree: Record<string, Buffer> = { 'empty.bin': Buffer.alloc(0), 'big.bin': randomBytes(3 << 20), 'mid.bin': randomBytes(300_000), [`${'long-'.repeat(30)}.bin`]: randomBytes(300_000), 'x-fail-after-100000.bin': randomBytes(1 << 20) };
  // Sizes that leave every kind of tail: under a block, exact blocks, odd, over a read chunk.
  tree['a4k.bin'] = randomBytes(4096);
  for (let i = 0; i < 60; i++) tree[`d${i % 4}/f${i}.bin`] = randomBytes([0, 1, 511, 512, 1023, 4096, 70_001, 300_000][i % 8]!);
  writeTree(path.join(work, 'data'), tree);
  names.push(...Object.keys(tree).filter((n) => !n.includes('fail')));
  server = await listen({ sources: new SourceRegistry().register(new CountingSource({ data: path.join(work, 'data') })) });
});
afterAll(async () => {
  await server.close();
  fs.rmSync(work, { recursive: true, force: true });
});

const req = (list: string[], extra: Partial<MossReq> = {}): MossReq => ({ in: list.map((objname) => ({ objname })), ...extra });

async function single(r: MossReq): Promise<Buffer> {
  const c = new BatchStreamClient(server.url, { bucket: 'data' });
  const parts: Buffer[] = [];
  try {
    await c.stream(r, (b) => void parts.push(Buffer.from(b)));
  } finally {
    c.close();
  }
  return Buffer.concat(parts);
}

/** Runs `f` and counts the connections the server accepted meanwhile. */
async function counting<T>(f: () => Promise<T>): Promise<{ value: T; connections: number }> {
  let connections = 0;
  const on = (_s: net.Socket) => connections++;
  server.app.server.on('connection', on);
  try {
    return { value: await f(), connections };
  } finally {
    server.app.server.off('connection', on);
  }
}

describe('ParallelBatchClient', () => {
  it('parts over 3 connections make the same bytes as one connection; tar and tarfile read every entry in order', async () => {
    const r = req([...names, 'big.bin', ...names.slice(0, 10)]);
    const client = new ParallelBatchClient(server.url, { bucket: 'data' }, { streams: 3, partEntries: 7 });
    const parts: Buffer[] = [];
    const { value: res, connections } = await counting(async () => {
      try {
        return await client.stream(r, (b) => void parts.push(Buffer.from(b)));
      } finally {
        client.close();
      }
    });
    const got = Buffer.concat(parts);
    expect(connections).toBe(3);
    expect(sha256(got)).toBe(sha256(await single(r)));
    expect(res.bytes).toBe(got.length);
    expect(res.summary).toMatchObject({ entries: r.in.length, missing: 0, bytes: got.length });
    const file = path.join(work, 'parts.tar');
    fs.writeFileSync(file, got);
    const listed = await run('tar', ['-tf', file]);
    expect(listed.code).toBe(0);
    expect(listed.stdout.toString().trim().split('\n')).toEqual(r.in.map((e) => `data/${e.objname}`));
    const py = await run('python3', ['-c', 'import sys,tarfile; print(len(tarfile.open(sys.argv[1]).getmembers()))', file]);
    expect(py.stdout.toString().trim()).toBe(String(r.in.length));
  });

  it('a stalled consumer with 1 MiB of room for parts ahead: the part ahead waits on its connection, and the bytes are the same', async () => {
    const r = req(Array.from({ length: 12 }, () => 'big.bin'));
    const client = new ParallelBatchClient(server.url, { bucket: 'data' }, { streams: 2, partEntries: 4, aheadBytes: 1 << 20 });
    const parts: Buffer[] = [];
    let inFlight = -1;
    try {
      await client.stream(r, async (b) => {
        parts.push(Buffer.from(b));
        if (inFlight === -1 && parts.length > 2) {
          // 12 MiB parts: with nowhere to go, the second one cannot have been sent whole meanwhile.
          await new Promise((resolve) => setTimeout(resolve, 300));
          inFlight = server.app.ojs.batches.size;
        }
      });
    } finally {
      client.close();
    }
    expect(inFlight).toBe(2);
    expect(sha256(Buffer.concat(parts))).toBe(sha256(await single(r)));
  });

  it('TGZ, max_soft_errs and batches too small to cut go over one connection, as they are', async () => {
    for (const r of [req(names, { mime: '.tgz' }), req(names, { max_soft_errs: 3 }), req(names.slice(0, 5))]) {
      const client = new ParallelBatchClient(server.url, { bucket: 'data' }, { streams: 4 });
      const parts: Buffer[] = [];
      const { connections } = await counting(async () => {
        try {
          await client.stream(r, (b) => void parts.push(Buffer.from(b)));
        } finally {
          client.close();
        }
      });
      expect(connections).toBe(1);
      if (r.mime === undefined) expect(sha256(Buffer.concat(parts))).toBe(sha256(await single(r)));
    }
  });

  it('with coer, a missing entry in a middle part is its __404__ entry and counts in the summary', async () => {
    const r = req([...names.slice(0, 20), 'nope.bin', ...names.slice(20, 40)], { coer: true });
    const client = new ParallelBatchClient(server.url, { bucket: 'data' }, { streams: 2, partEntries: 8 });
    const parts: Buffer[] = [];
    try {
      const res = await client.stream(r, (b) => void parts.push(Buffer.from(b)));
      expect(res.summary).toMatchObject({ entries: 41, missing: 1 });
    } finally {
      client.close();
    }
    const got = Buffer.concat(parts);
    expect(sha256(got)).toBe(sha256(await single(r)));
    const file = path.join(work, 'coer.tar');
    fs.writeFileSync(file, got);
    expect((await run('tar', ['-tf', file])).stdout.toString()).toContain('__404__/data/nope.bin');
  });

  it('a part that fails mid-body fails the batch; the consumer never sees the end of the archive, and the client works after', async () => {
    const r = req([...names.slice(0, 30), 'x-fail-after-100000.bin', ...names.slice(30)]);
    const client = new ParallelBatchClient(server.url, { bucket: 'data' }, { streams: 2, partEntries: 6 });
    const parts: Buffer[] = [];
    try {
      const e = await failure(client.stream(r, (b) => void parts.push(Buffer.from(b))));
      // Cut off mid-archive, or refused before it began (the read-ahead may reach the bad entry first).
      expect(e.code).toMatch(/^ERR_(BATCH_CUT|UPSTREAM)$/);
      const whole = await single(req(names));
      expect(Buffer.concat(parts).length).toBeLessThan(whole.length);
      // The same client, next batch: fresh connections where the failed ones were dropped.
      const again: Buffer[] = [];
      await client.stream(req(names), (b) => void again.push(Buffer.from(b)));
      expect(sha256(Buffer.concat(again))).toBe(sha256(whole));
    } finally {
      client.close();
    }
  });

  it('an abort mid-batch rejects as Aborted and closes every connection', async () => {
    const r = req(Array.from({ length: 20 }, () => 'big.bin'));
    const client = new ParallelBatchClient(server.url, { bucket: 'data' }, { streams: 2, partEntries: 2 });
    const ac = new AbortController();
    let bytes = 0;
    try {
      const e = await failure(
        client.stream(
          r,
          async (b) => {
            bytes += b.length;
            if (bytes > 4 << 20) ac.abort();
            await new Promise((resolve) => setImmediate(resolve));
          },
          ac.signal,
        ),
      );
      expect(e.kind).toBe('Aborted');
    } finally {
      client.close();
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(server.app.ojs.batches.size).toBe(0);
  });

  it('unsized: 8 entries first; from its first header (or, for a PAX one, the whole part) the rest of a small batch follows on the same connection, a big one (in bytes or entries) is cut over both', async () => {
    const cases: [string[], number | undefined, number, number][] = [
      // entries, splitMinBytes, connections, parts
      [Array.from({ length: 300 }, () => 'a4k.bin'), 32 << 20, 1, 2], // 1.2 MiB: the rest in one part
      [Array.from({ length: 600 }, () => 'a4k.bin'), undefined, 2, 3], // 2.4 MiB, but 512 entries or more: one part per stream
      [Array.from({ length: 300 }, () => 'mid.bin'), undefined, 2, 3], // 86 MiB, over the default 64
      [Array.from({ length: 300 }, () => 'mid.bin'), 256 << 20, 1, 2], // 86 MiB, under the default
      [Array.from({ length: 300 }, () => 'mid.bin'), 32 << 20, 2, 3], // over: one part per stream (84 MiB of rest)
      [[`${'long-'.repeat(30)}.bin`, ...Array.from({ length: 299 }, () => 'mid.bin')], 32 << 20, 2, 3],
      [Array.from({ length: 100 }, () => 'mid.bin'), 1, 1, 1], // under 256 entries: whole
    ];
    for (const [list, splitMinBytes, conns, parts] of cases) {
      const r = req(list);
      const client = new ParallelBatchClient(server.url, { bucket: 'data' }, { streams: 2, ...(splitMinBytes === undefined ? {} : { splitMinBytes }) });
      const got: Buffer[] = [];
      const logged = server.log.length;
      const { connections } = await counting(async () => {
        try {
          await client.stream(r, (b) => void got.push(Buffer.from(b)));
        } finally {
          client.close();
        }
      });
      expect([connections, server.log.length - logged]).toEqual([conns, parts]);
      expect(sha256(Buffer.concat(got))).toBe(sha256(await single(r)));
    }
  });

  it('bad options are usage errors', () => {
    expect(() => new ParallelBatchClient(server.url, {}, { streams: 0 })).toThrow(/streams/);
    expect(() => new ParallelBatchClient(server.url, {}, { partEntries: 1.5 })).toThrow(/partEntries/);
  });
});
