import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ojs, run, sha256, tmpDir, writeTree } from '../helpers/tools.js';

let work: string;
let data: string;
let files: Record<string, Buffer>;
const names = [
  'a/small.bin',
  'a/empty.bin',
  `long/${'n'.repeat(120)}.bin`,
  'ünïcødé/日本語.wav',
  'big/one-mib.bin',
  'big/mixed.bin',
];

beforeAll(() => {
  work = tmpDir();
  data = path.join(work, 'data');
  files = writeTree(data, {
    'a/small.bin': randomBytes(1234),
    'a/empty.bin': Buffer.alloc(0),
    [`long/${'n'.repeat(120)}.bin`]: randomBytes(600),
    'ünïcødé/日本語.wav': randomBytes(70_000),
    'big/one-mib.bin': randomBytes(1 << 20),
    // compressible and incompressible halves, more than one gzip member and LZ4 block in all
    'big/mixed.bin': Buffer.concat([Buffer.alloc(3 << 20, 'abc'), randomBytes(3 << 20)]),
  });
});
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

const PY_TAR = `import sys, tarfile, hashlib, json
with tarfile.open(sys.argv[1], sys.argv[2]) as t:
    print(json.dumps([[m.name, hashlib.sha256(t.extractfile(m).read()).hexdigest()] for m in t]))`;
const PY_ZIP = `import sys, zipfile, hashlib, json
with zipfile.ZipFile(sys.argv[1]) as z:
    assert z.testzip() is None
    print(json.dumps([[i.filename, hashlib.sha256(z.read(i)).hexdigest()] for i in z.infolist()]))`;

async function ok(cmd: string, args: string[], input?: Buffer): Promise<string> {
  const r = await run(cmd, args, { input });
  expect(r.code, `${cmd} ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r.stdout.toString('utf8');
}

const expected = () => names.map((n) => [`d/${n}`, sha256(files[n]!)]);

async function make(dst: string, extra: string[] = []): Promise<string> {
  const out = path.join(work, dst);
  const r = await ojs(['get-batch', 'd', '--root', `d=${data}`, '--list', names.join(','), '--yes', '--nv', ...extra, out]);
  expect(r.code, r.stderr).toBe(0);
  return out;
}

describe('output formats, read back by real tools', () => {
  it('.tgz and .tar.gz: gzip -t, GNU tar, Python tarfile (several gzip members)', async () => {
    for (const dst of ['b.tgz', 'b.tar.gz']) {
      const f = await make(dst);
      await ok('gzip', ['-t', f]);
      expect((await ok('tar', ['--quoting-style=literal', '-tzf', f])).trim().split('\n')).toEqual(names.map((n) => `d/${n}`));
      const x = fs.mkdtempSync(path.join(work, 'x-'));
      await ok('tar', ['-xzf', f, '-C', x]);
      for (const n of names) expect(sha256(fs.readFileSync(path.join(x, 'd', n)))).toBe(sha256(files[n]!));
      expect(JSON.parse(await ok('python3', ['-c', PY_TAR, f, 'r:gz']))).toEqual(expected());
    }
  });

  it('.tgz honours --level (9 compresses better than 1)', async () => {
    const fast = fs.statSync(await make('l1.tgz')).size;
    const best = fs.statSync(await make('l9.tgz', ['--level', '9'])).size;
    expect(best).toBeLessThan(fast);
  });

  it('.tar.lz4: one LZ4 frame read by lz4 -t, tar -I lz4 and Python', async () => {
    const f = await make('b.tar.lz4');
    await ok('lz4', ['-t', f]);
    const head = fs.readFileSync(f).subarray(0, 7).toString('hex');
    expect(head).toBe('04224d18607073');
    expect((await ok('tar', ['--quoting-style=literal', '-I', 'lz4', '-tf', f])).trim().split('\n')).toEqual(names.map((n) => `d/${n}`));
    const plain = await run('lz4', ['-dc', f]);
    expect(plain.code).toBe(0);
    const p = path.join(work, 'from-lz4.tar');
    fs.writeFileSync(p, plain.stdout);
    expect(JSON.parse(await ok('python3', ['-c', PY_TAR, p, 'r:']))).toEqual(expected());
  });

  it('.zip: STORE by default, DEFLATE with --level; unzip -t and Python zipfile', async () => {
    const store = await make('b.zip');
    await ok('unzip', ['-t', store]);
    expect(JSON.parse(await ok('python3', ['-c', PY_ZIP, store]))).toEqual(expected());
    const deflated = await make('d.zip', ['--level', '6']);
    await ok('unzip', ['-t', deflated]);
    expect(JSON.parse(await ok('python3', ['-c', PY_ZIP, deflated]))).toEqual(expected());
    expect(fs.statSync(deflated).size).toBeLessThan(fs.statSync(store).size - (2 << 20));
  });

  it('a failed batch on stdout is rejected by every tool, whatever the format', async () => {
    const checks: Record<string, (f: string) => Promise<{ code: number | null }>> = {
      tgz: (f) => run('gzip', ['-t', f]),
      'tar.lz4': (f) => run('lz4', ['-t', f]),
      zip: (f) => run('unzip', ['-tq', f]),
      tar: (f) => run('tar', ['-tf', f]),
    };
    for (const [fmt, check] of Object.entries(checks)) {
      const r = await ojs(['get-batch', 'd', '--root', `d=${data}`, '--list', [...names, 'missing.bin'].join(','), '--format', fmt, '--nv', '-']);
      expect(r.code, fmt).toBe(1);
      expect(r.stdout.length, fmt).toBeGreaterThan(0);
      const f = path.join(work, `failed.${fmt}`);
      fs.writeFileSync(f, r.stdout);
      expect((await check(f)).code, `${fmt} must not pass its checker`).not.toBe(0);
    }
  });

  it('writes 70,000 entries into one zip (zip64 end records)', async () => {
    const many = path.join(work, 'many');
    const tree: Record<string, Buffer> = {};
    for (let i = 0; i < 70_000; i++) tree[`d${i % 100}/f${i}.txt`] = Buffer.from(String(i));
    writeTree(many, tree);
    const spec = path.join(work, 'many.json');
    fs.writeFileSync(spec, JSON.stringify({ onob: true, in: Object.keys(tree).map((objname) => ({ objname })) }));
    const f = path.join(work, 'many.zip');
    const r = await ojs(['get-batch', 'm', '--root', `m=${many}`, '--spec', spec, '--nv', f]);
    expect(r.code, r.stderr).toBe(0);
    const py = `import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
names = z.namelist()
assert len(names) == 70000, len(names)
assert z.read(names[69999]) == b'69999'
print(len(names))`;
    expect((await ok('python3', ['-c', py, f])).trim()).toBe('70000');
    await ok('unzip', ['-tq', f]);
  }, 120_000);
});
