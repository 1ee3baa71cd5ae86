import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileSource } from '../../src/sources/file.js';
import { OjsError } from '../../src/spec/errors.js';
import { sourceConformance } from '../conformance/source.suite.js';
import { tmpDir, writeTree } from '../helpers/tools.js';

function fileTarget(syncIo: boolean) {
  return async () => {
    const dir = tmpDir();
    return {
      source: new FileSource({ roots: { r: dir }, syncIo }),
      bucket: 'r',
      put: async (key: string, data: Buffer) => void writeTree(dir, { [key]: data }),
      cleanup: async () => fs.rmSync(dir, { recursive: true, force: true }),
    };
  };
}

sourceConformance('file (sync reads for small bodies)', fileTarget(true));
sourceConformance('file (thread-pool reads only)', fileTarget(false));

describe('file source: roots and safety', () => {
  let base: string;
  let root: string;
  let src: FileSource;
  const signal = new AbortController().signal;

  beforeAll(() => {
    base = tmpDir();
    root = path.join(base, 'root');
    writeTree(base, { 'root/in.txt': 'inside\n', 'root/sub/x.txt': 'x\n', 'outside.txt': 'secret\n' });
    fs.symlinkSync(path.join(base, 'outside.txt'), path.join(root, 'escape.txt'));
    fs.symlinkSync(base, path.join(root, 'escape-dir'));
    fs.symlinkSync(path.join(root, 'in.txt'), path.join(root, 'alias.txt'));
    src = new FileSource({ roots: { r: root } });
  });
  afterAll(() => fs.rmSync(base, { recursive: true, force: true }));

  const fail = async (p: Promise<unknown>) => (await p.then(() => undefined, (e: unknown) => e)) as OjsError;

  it("refuses '..' and symlinks that leave the root, with Forbidden", async () => {
    for (const key of ['../outside.txt', 'sub/../../outside.txt', 'escape.txt', 'escape-dir/outside.txt']) {
      const e = await fail(src.open({ bucket: 'r', key }, { signal }));
      expect(e, key).toBeInstanceOf(OjsError);
      expect(e.kind, key).toBe('Forbidden');
    }
    expect((await fail(src.stat({ bucket: 'r', key: 'escape.txt' }, { signal }))).kind).toBe('Forbidden');
  });

  it('follows a symlink that stays inside the root', async () => {
    const o = await src.open({ bucket: 'r', key: 'alias.txt' }, { signal });
    expect(o.bytes?.toString()).toBe('inside\n');
  });

  it('names unknown roots, and refuses absolute paths unless allowed', async () => {
    const e = await fail(src.open({ bucket: 'nope', key: 'in.txt' }, { signal }));
    expect(e.code).toBe('ERR_NO_SUCH_BUCKET');
    expect(e.message).toMatch(/known roots: r/);
    expect((await fail(src.open({ bucket: '', key: path.join(root, 'in.txt').slice(1) }, { signal }))).code).toBe('ERR_NO_SUCH_BUCKET');
    const abs = new FileSource({ roots: {}, allowAbsolute: true });
    const o = await abs.open({ bucket: '', key: path.join(root, 'in.txt').slice(1) }, { signal });
    expect(o.bytes?.toString()).toBe('inside\n');
  });

  it('treats a directory as not found', async () => {
    expect((await fail(src.open({ bucket: 'r', key: 'sub' }, { signal }))).kind).toBe('NotFound');
  });

  it('fails a body whose file shrinks while it is read (never a short body)', async () => {
    writeTree(root, { 'shrink.bin': Buffer.alloc(2 << 20, 1) });
    const o = await src.open({ bucket: 'r', key: 'shrink.bin' }, { signal });
    fs.truncateSync(path.join(root, 'shrink.bin'), 1 << 20);
    let got = 0;
    const e = await fail(
      (async () => {
        for await (const c of o.body as AsyncIterable<Buffer>) got += c.length;
      })(),
    );
    expect(e.kind).toBe('SizeMismatch');
    expect(got).toBeLessThan(2 << 20);
  });

  it('refuses a read when the etag no longer matches', async () => {
    const st = await src.stat({ bucket: 'r', key: 'in.txt' }, { signal });
    expect(st.etag).toBeDefined();
    const ok = await src.open({ bucket: 'r', key: 'in.txt' }, { signal, ifMatch: st.etag! });
    expect(ok.length).toBe(7);
    expect((await fail(src.open({ bucket: 'r', key: 'in.txt' }, { signal, ifMatch: '"stale"' }))).kind).toBe('Conflict');
  });
});
