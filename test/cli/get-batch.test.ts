import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, gnuTarList, ojs, pythonTarMembers, run, sha256, tmpDir, writeTree } from '../helpers/tools.js';

let work: string;
let data: string;
let files: Record<string, Buffer>;
const N = 1000;

beforeAll(() => {
  work = tmpDir();
  data = path.join(work, 'data');
  const tree: Record<string, Buffer> = {};
  for (let i = 0; i < N; i++) tree[`dir${i % 7}/obj-${String(i).padStart(4, '0')}.bin`] = randomBytes(i % 50 === 0 ? 0 : 1 + ((i * 7919) % 20_000));
  tree['audio/long-name-' + 'x'.repeat(150) + '.wav'] = randomBytes(3000);
  tree['ünïcødé/файл.txt'] = Buffer.from('unicode body\n');
  files = writeTree(data, tree);
});

afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

function spec(entries: object[], extra: object = {}): string {
  const p = path.join(work, `spec-${randomBytes(4).toString('hex')}.json`);
  fs.writeFileSync(p, JSON.stringify({ in: entries, ...extra }));
  return p;
}

function out(name: string): string {
  return path.join(work, name);
}

function leftovers(): string[] {
  return fs.readdirSync(work).filter((f) => f.includes('.partial'));
}

describe('ojs-ml get-batch', () => {
  it('writes 1,000 files in exactly the requested order, byte-exact for GNU tar and Python', async () => {
    const names = Object.keys(files).filter((n) => n.startsWith('dir'));
    // A deterministic shuffle so order is the request's, not the file system's.
    const order = names.map((n, i) => ({ n, k: (i * 7907) % names.length })).sort((a, b) => a.k - b.k).map((x) => x.n);
    const dst = out('thousand.tar');
    const r = await ojs(['get-batch', '--root', `data=${data}`, '--spec', spec(order.map((objname) => ({ bucket: 'data', objname }))), dst]);
    expect(r.stderr).toMatch(/Created .*thousand\.tar: 1000 entries/);
    expect(r.code).toBe(0);
    expect(await gnuTarList(dst)).toEqual(order.map((n) => `data/${n}`));
    const members = await pythonTarMembers(dst);
    expect(members.map((m) => m.name)).toEqual(order.map((n) => `data/${n}`));
    members.forEach((m, i) => {
      const want = files[order[i]!]!;
      expect(m.size).toBe(want.length);
      expect(m.sha256).toBe(sha256(want));
    });
  });

  it('writes large files byte-exact to a file and to stdout (their read chunks are recycled once written)', async () => {
    const big: Record<string, Buffer> = {};
    for (let i = 0; i < 12; i++) big[`big/${i}.bin`] = randomBytes((600 << 10) + i * 4099);
    writeTree(data, big);
    const names = Object.keys(big);
    const check = async (tarPath: string) => {
      const members = await pythonTarMembers(tarPath);
      expect(members.map((m) => m.name)).toEqual(names.map((n) => `data/${n}`));
      members.forEach((m, i) => expect(m.sha256, names[i]).toBe(sha256(big[names[i]!]!)));
    };
    const dst = out('big.tar');
    const r = await ojs(['get-batch', 'data', '--root', `data=${data}`, '--list', names.join(','), '--nv', dst]);
    expect(r.code).toBe(0);
    await check(dst);
    const piped = await ojs(['get-batch', 'data', '--root', `data=${data}`, '--list', names.join(','), '--nv', '-']);
    expect(piped.code).toBe(0);
    const fromStdout = out('big-stdout.tar');
    fs.writeFileSync(fromStdout, piped.stdout);
    await check(fromStdout);
  });

  it('keeps long and unicode names (PAX) readable by GNU tar and Python', async () => {
    const names = ['audio/long-name-' + 'x'.repeat(150) + '.wav', 'ünïcødé/файл.txt'];
    const dst = out('names.tar');
    const r = await ojs(['get-batch', 'data', '--root', `data=${data}`, '--list', names.join(','), '--omit-src-bck', dst]);
    expect(r.code, r.stderr).toBe(0);
    expect(await gnuTarList(dst)).toEqual(names);
    const members = await pythonTarMembers(dst);
    expect(members.map((m) => [m.name, m.sha256])).toEqual(names.map((n) => [n, sha256(files[n]!)]));
  });

  it('puts __404__/<name> (size 0) in place of a missing file with --cont-on-err, and says why in the metadata', async () => {
    const dst = out('coer.tar');
    const meta = out('coer.json');
    const r = await ojs(['get-batch', 'data', '--root', `data=${data}`, '--list', 'dir1/obj-0001.bin,nope/missing.bin,dir2/obj-0002.bin', '--cont-on-err', '--metadata', meta, dst]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('1 missing');
    const members = await pythonTarMembers(dst);
    expect(members.map((m) => [m.name, m.size])).toEqual([
      ['data/dir1/obj-0001.bin', files['dir1/obj-0001.bin']!.length],
      ['__404__/data/nope/missing.bin', 0],
      ['data/dir2/obj-0002.bin', files['dir2/obj-0002.bin']!.length],
    ]);
    const m = JSON.parse(fs.readFileSync(meta, 'utf8')) as { out: { objname: string; err_msg?: string; size: number }[] };
    expect(m.out.map((o) => o.objname)).toEqual(['dir1/obj-0001.bin', 'nope/missing.bin', 'dir2/obj-0002.bin']);
    expect(m.out[1]!.err_msg).toMatch(/no such file/);
    expect(m.out[0]!.err_msg).toBeUndefined();
  });

  it('fails without --cont-on-err: non-zero exit, one clear line, no DST and no temp file left', async () => {
    const dst = out('fail.tar');
    const r = await ojs(['get-batch', '--root', `data=${data}`, '--spec', spec([{ bucket: 'data', objname: 'dir1/obj-0001.bin' }, { bucket: 'data', objname: 'nope.bin' }]), dst]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/error: .*nope\.bin.*\[ERR_NOT_FOUND\]/);
    expect(fs.existsSync(dst)).toBe(false);
    expect(leftovers()).toEqual([]);
  });

  it('leaves no temp file when the archive fails while its file is still being written', async () => {
    const dst = out('fail-first.tar');
    fs.writeFileSync(path.join(data, 'big-first.bin'), randomBytes(1 << 20));
    const r = await ojs(['get-batch', '--root', `data=${data}`, '--spec', spec([{ bucket: 'data', objname: 'big-first.bin' }, { bucket: 'data', objname: 'nope-first.bin' }]), dst]);
    expect(r.code).toBe(1);
    expect(fs.existsSync(dst)).toBe(false);
    expect(leftovers()).toEqual([]);
  });

  it('does not replace an existing DST on failure', async () => {
    const dst = out('keep.tar');
    fs.writeFileSync(dst, 'precious');
    const r = await ojs(['get-batch', 'data', '--root', `data=${data}`, '--list', 'nope.bin', '--yes', dst]);
    expect(r.code).toBe(1);
    expect(fs.readFileSync(dst, 'utf8')).toBe('precious');
  });

  it('writes exactly the requested byte ranges', async () => {
    const f = files['dir3/obj-0003.bin']!;
    const dst = out('ranges.tar');
    const r = await ojs([
      'get-batch', '--root', `data=${data}`, '--spec',
      spec([
        { bucket: 'data', objname: 'dir3/obj-0003.bin', start: 10, length: 100 },
        { bucket: 'data', objname: 'dir3/obj-0003.bin', start: f.length - 7, length: -1 },
        { bucket: 'data', objname: 'dir3/obj-0003.bin' },
      ]),
      dst,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const members = await pythonTarMembers(dst);
    expect(members.map((m) => m.sha256)).toEqual([sha256(f.subarray(10, 110)), sha256(f.subarray(f.length - 7)), sha256(f)]);
  });

  it('rejects an out-of-range request like HTTP 416, leaving nothing behind', async () => {
    const f = files['dir3/obj-0003.bin']!;
    const dst = out('416.tar');
    const r = await ojs(['get-batch', '--root', `data=${data}`, '--spec', spec([{ bucket: 'data', objname: 'dir3/obj-0003.bin', start: f.length, length: 1 }]), dst]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/range not satisfiable.*\[ERR_RANGE\]/);
    expect(fs.existsSync(dst)).toBe(false);
  });

  it('streams to stdout, and cuts the stream before the end marker when a later entry fails', async () => {
    const ok = await ojs(['get-batch', 'data', '--root', `data=${data}`, '--template', 'dir0/obj-{0000..0069..7}.bin', '--nv', '-']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stderr).toBe('');
    const listed = await run('tar', ['tf', '-'], { input: ok.stdout });
    expect(listed.stdout.toString().trim().split('\n')).toEqual(Array.from({ length: 10 }, (_, i) => `data/dir0/obj-${String(i * 7).padStart(4, '0')}.bin`));

    // Enough entries before the missing one that bytes are already on their way out when it fails.
    const before = Object.keys(files).filter((n) => n.startsWith('dir')).slice(0, 600);
    const bad = await ojs(['get-batch', 'data', '--root', `data=${data}`, '--list', [...before, 'missing.bin'].join(','), '--nv', '-']);
    expect(bad.code).toBe(1);
    expect(bad.stdout.length).toBeGreaterThan(0);
    const t = await run('tar', ['tf', '-'], { input: bad.stdout });
    expect(t.code).not.toBe(0);
    expect(t.stderr).toMatch(/Unexpected EOF/);
  });

  it('says so when the reader of stdout goes away before the end', async () => {
    const names = Object.keys(files).filter((n) => n.startsWith('dir'));
    const r = await run('bash', ['-c', `node ${JSON.stringify(CLI)} get-batch data --root data=${JSON.stringify(data)} --list ${names.join(',')} --nv - | head -c 1000 > /dev/null; echo "rc=\${PIPESTATUS[0]}" >&2`]);
    expect(r.stderr).toMatch(/stdout was closed before the archive was complete.*\[ERR_OUTPUT_CLOSED\]/);
    expect(r.stderr).toMatch(/rc=1/);
  });

  it('reads YAML specs, including AIStore spellings of the keys', async () => {
    const p = path.join(work, 'spec.yaml');
    fs.writeFileSync(p, ['continueonerr: true', 'onlyobjname: true', 'in:', '  - {bucket: data, objname: dir4/obj-0004.bin}', '  - {bucket: data, objname: gone.bin}'].join('\n'));
    const dst = out('yaml.tar');
    const r = await ojs(['get-batch', '--root', `data=${data}`, '--spec', p, dst]);
    expect(r.code, r.stderr).toBe(0);
    expect(await gnuTarList(dst)).toEqual(['dir4/obj-0004.bin', '__404__/gone.bin']);
  });

  it('lists a prefix in name order, and reads file:/// sources', async () => {
    const dst = out('prefix.tar');
    const r = await ojs(['get-batch', `file://${data}`, '--prefix', 'dir5/obj-00', dst]);
    expect(r.code, r.stderr).toBe(0);
    const want = Object.keys(files).filter((n) => n.startsWith('dir5/obj-00')).sort();
    expect(want.length).toBeGreaterThan(5);
    expect(await gnuTarList(dst)).toEqual(want.map((n) => `data/${n}`));
  });

  it('refuses to overwrite an existing DST without --yes when there is no terminal', async () => {
    const dst = out('exists.tar');
    fs.writeFileSync(dst, 'x');
    const r = await ojs(['get-batch', 'data', '--root', `data=${data}`, '--list', 'dir1/obj-0001.bin', dst]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/exists; pass --yes/);
    expect(fs.readFileSync(dst, 'utf8')).toBe('x');
    const y = await ojs(['get-batch', 'data', '--root', `data=${data}`, '--list', 'dir1/obj-0001.bin', '--yes', '--nv', dst]);
    expect(y.code, y.stderr).toBe(0);
    expect(await gnuTarList(dst)).toEqual(['data/dir1/obj-0001.bin']);
  });

  it('gives clear usage errors (exit 2) for bad specs, formats and flags', async () => {
    const cases: [string[], RegExp][] = [
      [['get-batch', '--root', `data=${data}`, '--spec', spec([{ bucket: 'data', objname: 'a', start: 'x' }]), out('e1.tar')], /in\[0\]\.start: must be integer/],
      [['get-batch', '--root', `data=${data}`, '--spec', spec([{ bucket: 'data', objnme: 'a' }]), out('e2.tar')], /in\[0\]: unknown field 'objnme'/],
      [['get-batch', 'data', '--root', `data=${data}`, '--list', 'a', '--format', 'zip', out('e3.tgz')], /--format zip contradicts DST/],
      [['get-batch', 'data', '--root', `data=${data}`, '--list', 'a', out('e4.bin')], /cannot tell the archive format/],
      [['get-batch', 'data', '--root', `data=${data}`, '--list', 'a', '--template', 'b{1..2}', out('e5.tar')], /mutually exclusive/],
      [['get-batch', '--root', `data=${data}`, '--spec', spec([{ uri: 'ais://bucket/key' }]), out('e6.tar')], /provider 'ais': not supported yet/],
      [['get-batch', 'nosuch', '--list', 'a', out('e7.tar')], /not a file root/],
    ];
    for (const [args, re] of cases) {
      const r = await ojs(args);
      expect(r.stderr, args.join(' ')).toMatch(re);
      expect(r.code, args.join(' ')).toBe(2);
    }
    expect(leftovers()).toEqual([]);
  });

  it('prints help for the command', async () => {
    const r = await ojs(['get-batch', '--help']);
    expect(r.code).toBe(0);
    for (const flag of ['--spec', '--list', '--template', '--prefix', '--cont-on-err', '--omit-src-bck', '--streaming', '--yes', '--nv', '--root']) {
      expect(r.stdout.toString()).toContain(flag);
    }
  });
});
