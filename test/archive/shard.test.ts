import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { createGunzip, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { extractTarMembers } from '../../src/archive/shard-stream.js';
import { runBatch } from '../../src/batch/engine.js';
import { FileSource } from '../../src/sources/file.js';
import { SourceRegistry } from '../../src/sources/registry.js';
import type { ObjectRef, ObjectSource, OpenOptions, OpenedObject } from '../../src/sources/types.js';
import { OjsError } from '../../src/spec/errors.js';
import { parseBatchRequest, type MossIn } from '../../src/spec/request.js';
import { run, sha256, tmpDir, writeTree } from '../helpers/tools.js';

let dir: string;
let files: Record<string, Buffer>;
const LONG = `${'L'.repeat(120)}/ünï.txt`;

beforeAll(async () => {
  dir = tmpDir();
  files = writeTree(path.join(dir, 'src'), {
    'a.bin': randomBytes(3000),
    'sub/b.txt': Buffer.from(Array.from({ length: 20000 }, (_, i) => `${i}\n`).join('')),
    'empty.bin': Buffer.alloc(0),
    [LONG]: Buffer.from('long and unicode\n'),
  });
  const src = path.join(dir, 'src');
  const names = Object.keys(files);
  for (const [out, args] of [
    ['pax.tar', ['--format=pax']],
    ['gnu.tar', ['--format=gnu']],
  ] as const) {
    const r = await run('tar', ['cf', path.join(dir, out), ...args, '-C', src, ...names]);
    expect(r.code, r.stderr).toBe(0);
  }
  for (const [out, args] of [
    ['pax.tgz', ['--format=pax']],
    ['gnu.tar.gz', ['--format=gnu']],
  ] as const) {
    const r = await run('tar', ['czf', path.join(dir, out), ...args, '-C', src, ...names]);
    expect(r.code, r.stderr).toBe(0);
  }
  // LZ4 as the lz4 tool writes it: independent blocks, linked blocks with checksums, and two
  // frames back to back (cut mid-header), as `cat a.lz4 b.lz4` makes.
  for (const [out, args] of [
    ['pax.tar.lz4', ['-1']],
    ['linked.tar.lz4', ['-1', '-BD', '-BX', '--content-size', '-B4']],
  ] as const) {
    const r = await run('lz4', ['-q', '-f', ...args, path.join(dir, 'pax.tar'), path.join(dir, out)]);
    expect(r.code, r.stderr).toBe(0);
  }
  // Two gzip members, cut mid-header, as parallel compressors (pigz, ours) write them; no extension.
  const pax = fs.readFileSync(path.join(dir, 'pax.tar'));
  fs.writeFileSync(path.join(dir, 'multi-member.shard'), Buffer.concat([gzipSync(pax.subarray(0, 700)), gzipSync(pax.subarray(700))]));
  const frames = await Promise.all([pax.subarray(0, 700), pax.subarray(700)].map((part) => run('lz4', ['-q', '-c', '-1'], { input: part })));
  fs.writeFileSync(path.join(dir, 'multi-frame.tar.lz4'), Buffer.concat(frames.map((f) => f.stdout)));
  // Our own archives of the same files, in every output format, as shards in turn.
  for (const format of ['tar', 'tgz', 'zip', 'tar.lz4']) {
    const req = parseBatchRequest({ mime: `.${format}`, onob: true, in: names.map((n) => ({ objname: `src/${n}` })) }, { bucket: 'r', provider: 'file' });
    const r = runBatch(req, new SourceRegistry({ file: { roots: { r: dir } } }));
    const chunks: Buffer[] = [];
    for await (const c of r.stream as AsyncIterable<Buffer>) chunks.push(c);
    await r.result;
    fs.writeFileSync(path.join(dir, `ours.${format}`), Buffer.concat(chunks));
  }
  const py = `import sys, zipfile, os
src, out, method = sys.argv[1], sys.argv[2], int(sys.argv[3])
with zipfile.ZipFile(out, 'w', method) as z:
    for n in sys.argv[4:]: z.write(os.path.join(src, n), n)`;
  for (const [out, method] of [
    ['store.zip', '0'],
    ['deflate.zip', '8'],
  ] as const) {
    const r = await run('python3', ['-c', py, src, path.join(dir, out), method, ...names]);
    expect(r.code, r.stderr).toBe(0);
  }
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** The real file source, with the bytes its opens deliver counted (the measuring instrument). */
class Counting implements ObjectSource {
  readonly provider = 'file' as const;
  bytes = 0;
  opens = 0;
  constructor(private readonly inner: FileSource) {}
  get capabilities() {
    return this.inner.capabilities;
  }
  stat(ref: ObjectRef, o: { signal: AbortSignal }) {
    return this.inner.stat(ref, o);
  }
  async open(ref: ObjectRef, o: OpenOptions): Promise<OpenedObject> {
    const opened = await this.inner.open(ref, o);
    this.opens++;
    this.bytes += opened.length;
    return opened;
  }
  list(bucket: string, prefix: string, o: { signal: AbortSignal }) {
    return this.inner.list(bucket, prefix, o);
  }
}

async function batch(entries: MossIn[], coer = false, source: ObjectSource = new FileSource({ roots: { r: dir } })) {
  const req = parseBatchRequest({ coer, onob: true, in: entries }, { bucket: 'r', provider: 'file' });
  const r = runBatch(req, new SourceRegistry().register(source));
  const chunks: Buffer[] = [];
  const consumed = (async () => {
    for await (const c of r.stream as Readable) chunks.push(c as Buffer);
  })();
  const [result] = await Promise.all([r.result, consumed]);
  const tar = path.join(dir, `out-${Math.random().toString(16).slice(2)}.tar`);
  fs.writeFileSync(tar, Buffer.concat(chunks));
  const py = `import sys, tarfile, hashlib, json
with tarfile.open(sys.argv[1]) as t:
    print(json.dumps([[m.name, hashlib.sha256(t.extractfile(m).read()).hexdigest()] for m in t]))`;
  const listed = await run('python3', ['-c', py, tar]);
  expect(listed.code, listed.stderr).toBe(0);
  return { result, members: JSON.parse(listed.stdout.toString()) as [string, string][] };
}

describe('shard members (archpath)', () => {
  for (const shard of ['pax.tar', 'gnu.tar', 'store.zip', 'deflate.zip', 'pax.tgz', 'gnu.tar.gz', 'multi-member.shard', 'pax.tar.lz4', 'linked.tar.lz4', 'multi-frame.tar.lz4']) {
    it(`reads members of ${shard} byte-exact, ranges and long/unicode names included`, async () => {
      const b = files['sub/b.txt']!;
      const { members } = await batch([
        { objname: shard, archpath: 'sub/b.txt' },
        { objname: shard, archpath: LONG },
        { objname: shard, archpath: 'a.bin', start: 100, length: 200 },
        { objname: shard, archpath: '/sub/b.txt', start: b.length - 9, length: -1 },
        { objname: shard, archpath: 'empty.bin' },
      ]);
      expect(members).toEqual([
        [`${shard}/sub/b.txt`, sha256(b)],
        [`${shard}/${LONG}`, sha256(files[LONG]!)],
        [`${shard}/a.bin`, sha256(files['a.bin']!.subarray(100, 300))],
        [`${shard}/sub/b.txt`, sha256(b.subarray(b.length - 9))],
        [`${shard}/empty.bin`, sha256(Buffer.alloc(0))],
      ]);
    });
  }

  for (const format of ['tar', 'tgz', 'zip', 'tar.lz4']) {
    it(`reads back members of its own .${format} output`, async () => {
      const { members } = await batch([
        { objname: `ours.${format}`, archpath: `src/${LONG}` },
        { objname: `ours.${format}`, archpath: 'src/empty.bin' },
        { objname: `ours.${format}`, archpath: 'src/a.bin', start: 2990, length: -1 },
        { objname: `ours.${format}`, archpath: 'src/sub/b.txt' },
      ]);
      expect(members).toEqual([
        [`ours.${format}/src/${LONG}`, sha256(files[LONG]!)],
        [`ours.${format}/src/empty.bin`, sha256(Buffer.alloc(0))],
        [`ours.${format}/src/a.bin`, sha256(files['a.bin']!.subarray(2990))],
        [`ours.${format}/src/sub/b.txt`, sha256(files['sub/b.txt']!)],
      ]);
    });
  }

  it('serves every member of a compressed shard from one pass, in request order', async () => {
    const counting = new Counting(new FileSource({ roots: { r: dir } }));
    const { members } = await batch(
      [
        { objname: 'pax.tgz', archpath: 'empty.bin' },
        { objname: 'pax.tgz', archpath: 'a.bin' },
        { objname: 'pax.tgz', archpath: 'nope.bin' },
        { objname: 'pax.tgz', archpath: 'a.bin', start: 1, length: -1 },
      ],
      true,
      counting,
    );
    expect(members).toEqual([
      ['pax.tgz/empty.bin', sha256(Buffer.alloc(0))],
      ['pax.tgz/a.bin', sha256(files['a.bin']!)],
      ['__404__/pax.tgz/nope.bin', sha256(Buffer.alloc(0))],
      ['pax.tgz/a.bin', sha256(files['a.bin']!.subarray(1))],
    ]);
    expect(counting.opens).toBe(1);
  });

  it('spills members past the memory budget to temporary files, removed by dispose', async () => {
    const shard = fs.createReadStream(path.join(dir, 'gnu.tar.gz')).pipe(createGunzip());
    const ex = await extractTarMembers(shard, new Set(['a.bin', 'sub/b.txt', LONG]), new AbortController().signal, 'gnu.tar.gz', { spoolMemory: 4000 });
    const spilled = [...ex.members.values()].flatMap((m) => ('file' in m ? [m.file] : []));
    expect(spilled.length).toBe(1); // a.bin and the 17-byte long name fit the 4,000 bytes, b.txt does not
    const b = ex.members.get('sub/b.txt')!;
    expect('file' in b && sha256(fs.readFileSync(b.file))).toBe(sha256(files['sub/b.txt']!));
    await ex.dispose();
    for (const f of spilled) expect(fs.existsSync(f)).toBe(false);
  });

  it('puts a missing member as __404__ with coer, and fails without it', async () => {
    const { members, result } = await batch([{ objname: 'pax.tar', archpath: 'nope.bin' }, { objname: 'store.zip', archpath: 'a.bin' }], true);
    expect(members.map((m) => m[0])).toEqual(['__404__/pax.tar/nope.bin', 'store.zip/a.bin']);
    expect(result.out[0]!.err_msg).toMatch(/no member 'nope.bin'/);
    await expect(batch([{ objname: 'deflate.zip', archpath: 'nope.bin' }])).rejects.toMatchObject({ code: 'ERR_NO_SUCH_MEMBER', kind: 'NotFound' });
  });

  it('reads under 1 MiB of a 64 MiB shard to extract one member (TAR and ZIP)', async () => {
    const big: Record<string, Buffer> = {};
    for (let i = 0; i < 64; i++) big[`m/${String(i).padStart(3, '0')}.bin`] = randomBytes(1 << 20);
    const src = path.join(dir, 'bigsrc');
    writeTree(src, big);
    const names = Object.keys(big);
    expect((await run('tar', ['cf', path.join(dir, 'big.tar'), '-C', src, ...names])).code).toBe(0);
    const py = `import sys, zipfile, os
with zipfile.ZipFile(sys.argv[2], 'w', 0) as z:
    for n in sys.argv[3:]: z.write(os.path.join(sys.argv[1], n), n)`;
    expect((await run('python3', ['-c', py, src, path.join(dir, 'big.zip'), ...names])).code).toBe(0);
    for (const shard of ['big.tar', 'big.zip']) {
      const counting = new Counting(new FileSource({ roots: { r: dir } }));
      const { members } = await batch([{ objname: shard, archpath: 'm/050.bin' }], false, counting);
      expect(members).toEqual([[`${shard}/m/050.bin`, sha256(big['m/050.bin']!)]]);
      expect(counting.bytes - (1 << 20), shard).toBeLessThan(1 << 20);
    }
  });

  it('says clearly when a shard is truncated, corrupt or not an archive', async () => {
    const tar = fs.readFileSync(path.join(dir, 'pax.tar'));
    fs.writeFileSync(path.join(dir, 'cut.tar'), tar.subarray(0, 1536 + 700));
    const corrupt = Buffer.from(tar);
    corrupt[0] = corrupt[0]! ^ 0xff;
    fs.writeFileSync(path.join(dir, 'corrupt.tar'), corrupt);
    const zip = fs.readFileSync(path.join(dir, 'store.zip'));
    fs.writeFileSync(path.join(dir, 'cut.zip'), zip.subarray(0, zip.length - 40));
    fs.writeFileSync(path.join(dir, 'x.tgz'), Buffer.from([0x1f, 0x8b, 8, 0]));
    const lz4 = fs.readFileSync(path.join(dir, 'pax.tar.lz4'));
    fs.writeFileSync(path.join(dir, 'cut.tar.lz4'), lz4.subarray(0, lz4.length - 30));
    const badLz4 = Buffer.from(lz4);
    badLz4[5] = badLz4[5]! ^ 0x40; // block size id: the header checksum no longer matches
    fs.writeFileSync(path.join(dir, 'bad.tar.lz4'), badLz4);
    fs.writeFileSync(path.join(dir, 'plain.bin'), randomBytes(2000));
    const cases: [string, string][] = [
      ['cut.tar', 'ERR_BAD_SHARD'],
      ['corrupt.tar', 'ERR_BAD_SHARD'],
      ['cut.zip', 'ERR_BAD_SHARD'],
      ['x.tgz', 'ERR_BAD_SHARD'],
      ['cut.tar.lz4', 'ERR_BAD_SHARD'],
      ['bad.tar.lz4', 'ERR_BAD_SHARD'],
      ['plain.bin', 'ERR_NOT_A_SHARD'],
    ];
    for (const [shard, code] of cases) {
      const e = await batch([{ objname: shard, archpath: 'zzz-not-there.bin' }]).catch((x: unknown) => x);
      expect(e, shard).toBeInstanceOf(OjsError);
      expect((e as OjsError).code, shard).toBe(code);
    }
  });
});
