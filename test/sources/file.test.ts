import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FileSource } from '../../src/sources/file.js';
import { OjsError } from '../../src/spec/errors.js';
import { sourceConformance } from '../conformance/source.suite.js';
import { failure } from '../helpers/errors.js';

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'ojs-ml-file-'));
}

function write(dir: string, files: Record<string, Buffer | string>): void {
  for (const [name, data] of Object.entries(files)) {
    const p = path.join(dir, name);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, data);
  }
}

function fileTarget(syncIo: boolean) {
  return async () => {
    const dir = tmpDir();
    return {
      source: new FileSource({ roots: { r: dir }, syncIo }),
      bucket: 'r',
      put: async (key: string, data: Buffer) => write(dir, { [key]: data }),
      cleanup: async () => fs.rmSync(dir, { recursive: true, force: true }),
    };
  };
}

sourceConformance('file (sync reads for small bodies)', fileTarget(true));
sourceConformance('file (thread-pool reads only)', fileTarget(false));

async function text(src: FileSource, key: string): Promise<string> {
  const o = await src.open({ bucket: 'r', key }, { signal: new AbortController().signal });
  const chunks: Buffer[] = [];
  for await (const c of o.body as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}

for (const syncIo of [true, false]) {
  describe(`file source: roots and safety (syncIo ${syncIo})`, () => {
    let base: string;
    let root: string;
    let src: FileSource;
    const signal = new AbortController().signal;
    const r = (key: string) => ({ bucket: 'r', key });

    beforeAll(() => {
      base = tmpDir();
      root = path.join(base, 'root');
      write(base, { 'root/in.txt': 'inside\n', 'root/sub/x.txt': 'x\n', 'outside.txt': 'secret\n', 'outdir/o.txt': 'secret too\n' });
      fs.symlinkSync(path.join(base, 'outside.txt'), path.join(root, 'escape.txt'));
      fs.symlinkSync(path.join(base, 'outdir'), path.join(root, 'escape-dir'));
      fs.symlinkSync('../outside.txt', path.join(root, 'sub-escape.txt')); // relative target
      fs.symlinkSync(path.join(root, 'in.txt'), path.join(root, 'alias.txt'));
      fs.symlinkSync('sub', path.join(root, 'sub-alias'));
      fs.symlinkSync(path.join(root, 'nowhere.txt'), path.join(root, 'dangling.txt'));
      src = new FileSource({ roots: { r: root }, syncIo });
    });
    afterAll(() => fs.rmSync(base, { recursive: true, force: true }));

    it("refuses '..' components with Forbidden, for open and stat", async () => {
      for (const key of ['../outside.txt', 'sub/../../outside.txt', 'sub/../in.txt', '..', './in.txt']) {
        const e = await failure(src.open(r(key), { signal }));
        expect(e.kind, key).toBe('Forbidden');
        expect(e.code, key).toBe('ERR_FORBIDDEN');
        expect((await failure(src.stat(r(key), { signal }))).kind, key).toBe('Forbidden');
      }
    });

    it('refuses symlinks inside the root that point outside it, with Forbidden', async () => {
      for (const key of ['escape.txt', 'sub-escape.txt', 'escape-dir/o.txt']) {
        const e = await failure(src.open(r(key), { signal }));
        expect(e.kind, key).toBe('Forbidden');
        expect(e.message, key).not.toMatch(/secret/);
        expect((await failure(src.stat(r(key), { signal }))).kind, key).toBe('Forbidden');
        // Opened again (directory cache warm): still refused.
        expect((await failure(src.open(r(key), { signal }))).kind, key).toBe('Forbidden');
      }
    });

    it('follows symlinks (to a file or a folder) that stay inside the root', async () => {
      expect(await text(src, 'alias.txt')).toBe('inside\n');
      expect(await text(src, 'sub-alias/x.txt')).toBe('x\n');
      expect((await src.stat(r('alias.txt'), { signal })).size).toBe(7);
    });

    it('answers a dangling symlink with NotFound', async () => {
      expect((await failure(src.open(r('dangling.txt'), { signal }))).kind).toBe('NotFound');
    });

    it('lists neither escaping symlinks nor what they point to', async () => {
      const keys: string[] = [];
      for await (const o of src.list('r', '', { signal })) keys.push(o.key);
      expect(keys).toContain('in.txt');
      expect(keys).toContain('alias.txt');
      expect(keys).not.toContain('escape.txt');
      expect(keys).not.toContain('sub-escape.txt');
      expect(keys.filter((k) => k.startsWith('escape-dir'))).toEqual([]);
    });

    it('names an unknown root with NotFound, code ERR_NO_SUCH_BUCKET, and lists the known ones', async () => {
      for (const p of [src.open({ bucket: 'nope', key: 'in.txt' }, { signal }), src.stat({ bucket: 'nope', key: 'in.txt' }, { signal })]) {
        const e = await failure(p);
        expect(e.kind).toBe('NotFound');
        expect(e.code).toBe('ERR_NO_SUCH_BUCKET');
        expect(e.message).toMatch(/known roots: r/);
      }
      const listed = await failure(
        (async () => {
          for await (const _ of src.list('nope', '', { signal })) break;
        })(),
      );
      expect(listed.code).toBe('ERR_NO_SUCH_BUCKET');
    });

    it("refuses bucket '' (absolute paths) unless allowAbsolute", async () => {
      const absKey = path.join(root, 'in.txt').slice(1);
      const e = await failure(src.open({ bucket: '', key: absKey }, { signal }));
      expect(e.kind).toBe('NotFound');
      expect(e.code).toBe('ERR_NO_SUCH_BUCKET');
      expect((await failure(src.stat({ bucket: '', key: absKey }, { signal }))).code).toBe('ERR_NO_SUCH_BUCKET');
      const abs = new FileSource({ roots: {}, allowAbsolute: true, syncIo });
      const o = await abs.open({ bucket: '', key: absKey }, { signal });
      const chunks: Buffer[] = [];
      for await (const c of o.body as AsyncIterable<Buffer>) chunks.push(c);
      expect(Buffer.concat(chunks).toString()).toBe('inside\n');
      expect((await abs.stat({ bucket: '', key: absKey }, { signal })).size).toBe(7);
    });

    it('treats a directory as not found, for open and stat', async () => {
      for (const key of ['sub', 'sub-alias']) {
        expect((await failure(src.open(r(key), { signal }))).kind, key).toBe('NotFound');
        expect((await failure(src.stat(r(key), { signal }))).kind, key).toBe('NotFound');
      }
    });

    it('fails a body whose file was truncated after open with SizeMismatch (never a short body)', async () => {
      const size = 2 << 20;
      write(root, { 'shrink.bin': Buffer.alloc(size, 1) });
      const o = await src.open(r('shrink.bin'), { signal });
      expect(o.length).toBe(size);
      fs.truncateSync(path.join(root, 'shrink.bin'), 1 << 20);
      let got = 0;
      let ended = false;
      o.body.once('end', () => (ended = true));
      const e = await failure(
        (async () => {
          for await (const c of o.body as AsyncIterable<Buffer>) got += c.length;
        })(),
      );
      expect(e.kind).toBe('SizeMismatch');
      expect(e.code).toBe('ERR_SIZE_MISMATCH');
      expect(got).toBeLessThanOrEqual(1 << 20);
      expect(ended).toBe(false);
    });

    it('fails a ranged body whose file was truncated after open with SizeMismatch', async () => {
      write(root, { 'shrink2.bin': Buffer.alloc(3 << 20, 2) });
      const o = await src.open(r('shrink2.bin'), { signal, range: { start: 1 << 20, length: -1 } });
      expect(o.length).toBe(2 << 20);
      fs.truncateSync(path.join(root, 'shrink2.bin'), 0);
      const e = await failure(
        (async () => {
          for await (const _ of o.body as AsyncIterable<Buffer>) void _;
        })(),
      );
      expect(e.kind).toBe('SizeMismatch');
    });

    it('refuses a read when the etag no longer matches, with Conflict', async () => {
      write(root, { 'changing.txt': 'version 1\n' });
      const st = await src.stat(r('changing.txt'), { signal });
      expect(st.etag).toBeDefined();
      const ok = await src.open(r('changing.txt'), { signal, ifMatch: st.etag! });
      expect(ok.length).toBe(10);
      fs.writeFileSync(path.join(root, 'changing.txt'), 'version two\n');
      fs.utimesSync(path.join(root, 'changing.txt'), new Date(), new Date(Date.now() + 5000));
      const e = await failure(src.open(r('changing.txt'), { signal, ifMatch: st.etag! }));
      expect(e.kind).toBe('Conflict');
      expect(e.httpStatus).toBe(409);
      expect((await failure(src.open(r('in.txt'), { signal, ifMatch: '"stale"' }))).kind).toBe('Conflict');
    });

    it("refuses a '..' prefix when listing", async () => {
      const e = await failure(
        (async () => {
          for await (const _ of src.list('r', '../', { signal })) break;
        })(),
      );
      expect(e.kind).toBe('BadSpec');
    });
  });
}

describe('file source: configuration', () => {
  it("refuses root names that are empty or hold '/'", () => {
    for (const name of ['', 'a/b']) {
      expect(() => new FileSource({ roots: { [name]: os.tmpdir() } }), name).toThrow(OjsError);
    }
  });

  it('names a root whose directory is missing with ERR_NO_SUCH_BUCKET', async () => {
    const src = new FileSource({ roots: { gone: path.join(os.tmpdir(), 'ojs-ml-no-such-dir-' + process.pid) } });
    const e = await failure(src.open({ bucket: 'gone', key: 'x' }, { signal: new AbortController().signal }));
    expect(e.kind).toBe('NotFound');
    expect(e.code).toBe('ERR_NO_SUCH_BUCKET');
  });
});

describe('file source: synchronous reads leave the event loop its turns', () => {
  const MIB = 1 << 20;
  let dir: string;
  let src: FileSource;
  const signal = new AbortController().signal;

  beforeAll(() => {
    dir = tmpDir();
    const files: Record<string, Buffer> = { 'big.bin': Buffer.alloc(16 * MIB, 1) };
    for (let i = 0; i < 64; i++) files[`small/${i}.bin`] = Buffer.alloc(200 << 10, i);
    write(dir, files);
  });
  beforeEach(() => {
    // A source of its own per test: a slow read (a busy machine) sends reads to the thread pool for
    // a second, and must not carry over. Both tests hold either way: they bound what one turn takes.
    src = new FileSource({ roots: { r: dir }, syncIo: true });
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('a flowing body of 16 MiB lets a macrotask run after about 1 MiB', async () => {
    const o = await src.open({ bucket: 'r', key: 'big.bin' }, { signal });
    let got = 0;
    let atTurn = -1;
    setImmediate(() => {
      atTurn = got;
    });
    o.body.on('data', (c: Buffer) => {
      got += c.length;
    });
    await new Promise((resolve, reject) => o.body.on('end', resolve).on('error', reject));
    expect(got).toBe(16 * MIB);
    // One turn's budget (1 MiB) plus the read that crossed it, not the whole file.
    expect(atTurn).toBeLessThanOrEqual(2 * MIB);
  });

  it('64 opens of 200 KiB files, started together, spread their reads over several turns', async () => {
    await new Promise((r) => setImmediate(r)); // a fresh turn
    let opened = 0;
    let atTurn = -1;
    setImmediate(() => {
      atTurn = opened;
    });
    const all = await Promise.all(
      Array.from({ length: 64 }, (_, i) =>
        src.open({ bucket: 'r', key: `small/${i}.bin` }, { signal }).then((o) => {
          opened++;
          return o;
        }),
      ),
    );
    for (const [i, o] of all.entries()) expect(o.bytes?.equals(Buffer.alloc(200 << 10, i)), `file ${i}`).toBe(true);
    // 1 MiB a turn is 5 of these files (6 with the read that crosses it), not all 64.
    expect(atTurn).toBeGreaterThanOrEqual(0);
    expect(atTurn).toBeLessThan(16);
  });
});
