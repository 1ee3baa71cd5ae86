import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TarWriter } from '../../src/archive/tar.js';
import { encodeHeaders } from '../../src/archive/tar-header.js';
import { readChunks, smallBodies } from '../../src/sources/chunks.js';
import { OjsError } from '../../src/spec/errors.js';
import { gnuTarList, pythonTarMembers, run, sha256, tmpDir } from '../helpers/tools.js';

let dir: string;
beforeAll(() => (dir = tmpDir()));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const signal = new AbortController().signal;

async function writeTar(file: string, entries: { name: string; data: Buffer; asStream?: boolean }[]): Promise<void> {
  const w = new TarWriter();
  const done = pipeline(w.output, fs.createWriteStream(file));
  for (const e of entries) {
    const body = e.asStream ? Readable.from(chunks(e.data, 7777)) : [e.data];
    await w.add({ name: e.name, size: e.data.length, mtime: new Date(1_700_000_000_000) }, body, signal);
  }
  await w.finalize();
  await done;
}

function* chunks(b: Buffer, n: number): Generator<Buffer> {
  for (let i = 0; i < b.length; i += n) yield b.subarray(i, i + n);
}

/**
 * A TAR writer into `name`, whose consumer gives every chunk back once written (the writer's next
 * chunk may reuse that memory); `seen` looks at each chunk first; `end` finishes it.
 */
function recyclingTar(name: string, seen?: (c: Buffer) => void): { w: TarWriter; file: string; end: () => Promise<void> } {
  const w = new TarWriter();
  const file = path.join(dir, name);
  const out = fs.openSync(file, 'w');
  w.output.on('data', (c: Buffer) => {
    fs.writeSync(out, c);
    seen?.(c);
    readChunks.give(c);
  });
  const ended = new Promise((resolve) => w.output.once('end', resolve));
  return {
    w,
    file,
    end: async () => {
      await w.finalize();
      await ended;
      fs.closeSync(out);
    },
  };
}

/** Python's tarfile reads `file` as exactly `entries`, in order, byte-exact. */
async function expectMembers(file: string, entries: { name: string; data: Buffer }[]): Promise<void> {
  const members = await pythonTarMembers(file);
  expect(members.map((m) => [m.name, m.sha256])).toEqual(entries.map((e) => [e.name, sha256(e.data)]));
}

describe('TAR writer', () => {
  it('packs small entries into read chunks; a consumer that gives each back after writing it still gets a byte-exact archive', async () => {
    const entries = Array.from({ length: 400 }, (_, i) => ({ name: `s/${i}.bin`, data: randomBytes(1 + ((i * 997) % 3000)) }));
    let owned = 0;
    let total = 0;
    const { w, file, end } = recyclingTar('recycled.tar', (c) => {
      total++;
      if (readChunks.owns(c)) owned++;
    });
    for (const e of entries) await w.add({ name: e.name, size: e.data.length }, [e.data], signal);
    await end();
    expect(total).toBeGreaterThan(2);
    expect(owned).toBe(total - 1); // all but the end-of-archive blocks
    await expectMembers(file, entries);
  });

  it('gives the slab pieces of small bodies back once copied: 6 MB of them reuse one or two slabs, byte-exact', async () => {
    const entries = Array.from({ length: 3000 }, (_, i) => ({ name: `p/${i}.bin`, data: randomBytes(1 + ((i * 7919) % 4000)) }));
    const { w, file, end } = recyclingTar('slabs.tar');
    const before = smallBodies.allocated;
    for (const e of entries) {
      const piece = smallBodies.take(e.data.length);
      e.data.copy(piece);
      await w.add({ name: e.name, size: piece.length }, [piece], signal);
    }
    await end();
    expect(smallBodies.allocated - before).toBeLessThanOrEqual(2);
    await expectMembers(file, entries);
  });

  it('gives back the short read chunks it copies (the end of a network body): 2,000 of them reuse a few chunks, byte-exact', async () => {
    const entries = Array.from({ length: 2000 }, (_, i) => ({ name: `n/${i}.bin`, data: randomBytes(1 + ((i * 7919) % 20_000)) }));
    const { w, file, end } = recyclingTar('short-chunks.tar');
    const before = readChunks.allocated;
    for (const e of entries) {
      // As ChunkFiller hands on a body's last, part-filled chunk: a view of a pool chunk.
      const chunk = readChunks.take();
      e.data.copy(chunk);
      await w.add({ name: e.name, size: e.data.length }, [readChunks.viewOf(chunk, e.data.length)], signal);
    }
    await end();
    // Not given back, every entry took a fresh 256 KiB chunk (2,000 of them, 500 MiB).
    expect(readChunks.allocated - before).toBeLessThanOrEqual(4);
    await expectMembers(file, entries);
  });

  it('writes names of every length and script, read back byte-exact by GNU tar and Python', async () => {
    const names = [
      'short.bin',
      `${'d'.repeat(60)}/${'f'.repeat(90)}.bin`, // fits USTAR only with the prefix field
      `${'x'.repeat(120)}.bin`, // one component over 100 bytes: PAX
      `${'deep/'.repeat(60)}leaf.bin`, // 300 bytes: PAX
      'ünïcødé/日本語/файл.wav', // not ASCII: PAX
      'empty.bin',
      'exact-512.bin',
    ];
    const entries = names.map((name, i) => ({
      name,
      data: name === 'empty.bin' ? Buffer.alloc(0) : name === 'exact-512.bin' ? randomBytes(512) : randomBytes(1 + i * 3001),
      asStream: i % 2 === 1,
    }));
    const file = path.join(dir, 'names.tar');
    await writeTar(file, entries);
    expect(await gnuTarList(file)).toEqual(names);
    const members = await pythonTarMembers(file);
    expect(members.map((m) => [m.name, m.size, m.sha256])).toEqual(entries.map((e) => [e.name, e.data.length, sha256(e.data)]));
    const x = path.join(dir, 'x');
    fs.mkdirSync(x);
    const r = await run('tar', ['-xf', file, '-C', x]);
    expect(r.code, r.stderr).toBe(0);
    for (const e of entries) expect(fs.readFileSync(path.join(x, e.name)).equals(e.data)).toBe(true);
    const verbose = await run('tar', ['-tvf', file, '--utc']);
    expect(verbose.stdout.toString()).toMatch(/-rw-r--r-- 0\/0 .* 2023-11-14 22:13 short\.bin/);
  });

  it('rejects a body with fewer or more bytes than declared, and the output fails', async () => {
    for (const [declared, actual] of [
      [10, 5],
      [5, 10],
    ] as const) {
      const w = new TarWriter();
      const got: Buffer[] = [];
      const consumed = (async () => {
        for await (const c of w.output) got.push(c as Buffer);
      })();
      await w.add({ name: 'ok.bin', size: 3 }, [Buffer.from('abc')], signal);
      const e = await w.add({ name: 'bad.bin', size: declared }, Readable.from([Buffer.alloc(actual)]), signal).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(OjsError);
      expect((e as OjsError).kind).toBe('SizeMismatch');
      await expect(consumed).rejects.toThrow(/expected/);
      const file = path.join(dir, `mismatch-${declared}.tar`);
      fs.writeFileSync(file, Buffer.concat(got));
      await expect(gnuTarList(file)).rejects.toThrow(/Unexpected EOF/);
      await expect(pythonTarMembers(file)).rejects.toThrow(/python tarfile failed/);
    }
  });

  it('waits for a consumer that does not read, holding about its high-water mark', async () => {
    const w = new TarWriter();
    let resolved = false;
    const adding = w.add({ name: 'big.bin', size: 32 << 20 }, Readable.from(chunks(Buffer.alloc(32 << 20), 1 << 20)), signal).then(() => (resolved = true));
    await new Promise((r) => setTimeout(r, 200));
    expect(resolved).toBe(false);
    expect(w.output.readableLength).toBeLessThanOrEqual(3 << 20);
    w.output.resume();
    await adding;
    expect(resolved).toBe(true);
  });

  it('waits for a consumer that does not read when the entries are small (coalesced into shared chunks) too', async () => {
    const w = new TarWriter();
    const body = Buffer.alloc(10 << 10, 7);
    let added = 0;
    const adding = (async () => {
      for (let i = 0; i < 1000; i++) {
        await w.add({ name: `s/${i}`, size: body.length }, [body], signal);
        added++;
      }
      await w.finalize();
    })();
    await new Promise((r) => setTimeout(r, 200));
    // 1000 entries are ~11 MB; about two output chunks' worth (~50 entries) may go ahead.
    expect(added).toBeLessThan(100);
    expect(w.output.readableLength).toBeLessThanOrEqual(1 << 20);
    const got = await new Promise<number>((resolve) => {
      let n = 0;
      w.output.on('data', (c: Buffer) => (n += c.length));
      w.output.once('end', () => resolve(n));
    });
    await adding;
    expect(added).toBe(1000);
    expect(got).toBe(1000 * (512 + (10 << 10)) + 1024);
  });

  it('encodes sizes of 8 GiB and more in the base-256 field, as Python reads it', async () => {
    const size = 9 * 2 ** 30 + 123;
    const file = path.join(dir, 'header.bin');
    fs.writeFileSync(file, encodeHeaders({ name: 'huge.bin', size, mtime: new Date(0), mode: 0o644 }));
    const r = await run('python3', ['-c', 'import sys,tarfile; t=tarfile.TarInfo.frombuf(open(sys.argv[1],"rb").read(512),"utf-8","strict"); print(t.name, t.size)', file]);
    expect(r.stdout.toString().trim()).toBe(`huge.bin ${size}`);
  });
});
