/**
 * The clients of `ojs-ml serve`, over a real socket: the library's getBatch (both modes, every
 * format), `ojs-ml get-batch --endpoint` (same archive bytes and exit codes as in-process), and
 * the standard-library Python training loop in docs/examples.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getBatch, type ReceivedEntry } from '../../src/client/entries.js';
import { requestBatch } from '../../src/client/http.js';
import { SourceRegistry } from '../../src/sources/registry.js';
import type { MossReq } from '../../src/spec/request.js';
import { CountingSource, listen, type TestServer } from '../server/helpers.js';
import { REPO, ojs, run, sha256, tmpDir, writeTree } from '../helpers/tools.js';
import { failure } from '../helpers/errors.js';

const TOKEN = 'sekrit-client-token';

let work: string;
let data: string;
let files: Record<string, Buffer>;
let server: TestServer;
let open: TestServer; // no token

beforeAll(async () => {
  work = tmpDir('ojs-ml-client-');
  data = path.join(work, 'data');
  files = writeTree(data, {
    'a.bin': randomBytes(5000),
    'sub/b.txt': 'bee\n'.repeat(3000),
    'empty.bin': Buffer.alloc(0),
    'big.bin': randomBytes(3 << 20),
    'x-fail-after-100000.bin': randomBytes(1 << 20),
    [`${'ü'.repeat(70)}.txt`]: 'long unicode name\n',
  });
  const registry = new SourceRegistry().register(new CountingSource({ data }));
  server = await listen({ sources: registry, tokens: [TOKEN] });
  open = await listen({ sources: { file: { roots: { data } } } });
});
afterAll(async () => {
  await server.close();
  await open.close();
  fs.rmSync(work, { recursive: true, force: true });
});

const names = ['sub/b.txt', 'a.bin', 'empty.bin', 'big.bin', 'a.bin', `${'ü'.repeat(70)}.txt`];

async function collect(it: AsyncIterable<ReceivedEntry>): Promise<ReceivedEntry[]> {
  const out: ReceivedEntry[] = [];
  for await (const e of it) out.push(e);
  return out;
}

describe('getBatch (library client)', () => {
  for (const mime of ['.tar', '.tgz', '.tar.lz4', '.zip']) {
    for (const strm of [true, false]) {
      it(`${mime}, ${strm ? 'streamed' : 'multipart'}: every entry byte-exact, in order, duplicates too`, async () => {
        const req: MossReq = { mime, strm, in: names.map((objname) => ({ objname })) };
        const got = await collect(getBatch(server.url, req, { bucket: 'data', provider: 'file', token: TOKEN }));
        expect(got.map((e) => [e.index, e.name, e.size, sha256(e.data)])).toEqual(names.map((n, i) => [i, `data/${n}`, files[n]!.length, sha256(files[n]!)]));
        expect(got.every((e) => !e.missing)).toBe(true);
        if (!strm) expect(got.map((e) => e.out?.objname)).toEqual(names);
      });
    }
  }

  it('multipart: metadata rows come with their entries (opaque echoed, err_msg on __404__)', async () => {
    const req: MossReq = { coer: true, in: [{ objname: 'a.bin', opaque: 'aWQtMQ==' }, { objname: 'nope.bin' }, { objname: 'sub/b.txt', start: 4, length: 8 }] };
    const got = await collect(getBatch(server.url, req, { bucket: 'data', token: TOKEN }));
    expect(got.map((e) => [e.name, e.missing, e.data.toString('latin1')])).toEqual([
      ['data/a.bin', false, files['a.bin']!.toString('latin1')],
      ['__404__/data/nope.bin', true, ''],
      ['data/sub/b.txt', false, 'bee\nbee\n'],
    ]);
    expect(got[0]!.out?.opaque).toBe('aWQtMQ==');
    expect(got[1]!.out?.err_msg).toMatch(/nope\.bin/);
  });

  it("the server's errors come back with its code and kind", async () => {
    const opts = { bucket: 'data', token: TOKEN };
    expect(await failure(collect(getBatch(server.url, { in: [{ objname: 'nope.bin' }] }, opts)))).toMatchObject({ code: 'ERR_NOT_FOUND', kind: 'NotFound' });
    expect(await failure(collect(getBatch(server.url, { in: [{ objname: 'a.bin', start: 9000, length: 1 }] }, opts)))).toMatchObject({ kind: 'Range' });
    expect(await failure(collect(getBatch(server.url, { in: [{ objname: 'a.bin' }] }, { bucket: 'data' })))).toMatchObject({ code: 'ERR_UNAUTHORIZED' });
    expect(await failure(requestBatch('http://127.0.0.1:1', { in: [{ objname: 'a' }] }))).toMatchObject({ code: 'ERR_UNREACHABLE', kind: 'Unavailable' });
  });

  it('a batch that fails mid-stream is an error, never a shorter batch', async () => {
    const req: MossReq = { strm: true, in: [{ objname: 'big.bin' }, { objname: 'x-fail-after-100000.bin' }, { objname: 'a.bin' }] };
    const seen: string[] = [];
    const e = await failure(
      (async () => {
        for await (const entry of getBatch(server.url, req, { bucket: 'data', token: TOKEN })) seen.push(entry.name);
      })(),
    );
    expect(e.code).toBe('ERR_BATCH_CUT');
    expect(seen).not.toContain('data/a.bin');
  });

  it('aborting the signal stops the request', async () => {
    const ac = new AbortController();
    const req: MossReq = { strm: true, in: Array.from({ length: 20 }, () => ({ objname: 'big.bin' })) };
    const it = getBatch(server.url, req, { bucket: 'data', token: TOKEN, signal: ac.signal });
    await it.next();
    ac.abort();
    expect((await failure(it.next())).kind).toBe('Aborted');
  });
});

describe('ojs-ml get-batch --endpoint', () => {
  const list = ['a.bin', 'sub/b.txt', 'empty.bin', 'big.bin'].join(',');

  for (const [fmt, extra] of [
    ['tar', []],
    ['tgz', ['--streaming']],
    ['tar.lz4', []],
    ['zip', ['--streaming']],
  ] as const) {
    it(`.${fmt}${extra.length > 0 ? ' (streamed)' : ' (multipart)'}: the same bytes as the in-process run`, async () => {
      const local = path.join(work, `local.${fmt}`);
      const remote = path.join(work, `remote.${fmt}`);
      const a = await ojs(['get-batch', 'data', '--root', `data=${data}`, '--list', list, '--nv', '-y', local]);
      expect(a.code, a.stderr).toBe(0);
      const b = await ojs(['get-batch', 'data', '--list', list, '--endpoint', open.url, '-y', ...extra, remote]);
      expect(b.code, b.stderr).toBe(0);
      expect(b.stderr).toMatch(/Created .*remote\./);
      if (fmt === 'zip') {
        // ZIP stamps each entry with the time of writing.
        const z = await run('unzip', ['-tq', remote]);
        expect(z.code, z.stdout.toString()).toBe(0);
      } else {
        expect(sha256(fs.readFileSync(remote))).toBe(sha256(fs.readFileSync(local)));
      }
    });
  }

  it('OJS_ML_ENDPOINT, stdout, --metadata, --cont-on-err', async () => {
    const meta = path.join(work, 'meta.json');
    const r = await run(process.execPath, [path.join(REPO, 'dist/cli/main.js'), 'get-batch', 'data', '--list', 'a.bin,nope.bin', '--cont-on-err', '--metadata', meta, '-'], {
      env: { OJS_ML_ENDPOINT: open.url },
    });
    expect(r.code, r.stderr).toBe(0);
    const listed = await run('tar', ['tf', '-'], { input: r.stdout });
    expect(listed.stdout.toString().trim().split('\n')).toEqual(['data/a.bin', '__404__/data/nope.bin']);
    const m = JSON.parse(fs.readFileSync(meta, 'utf8')) as { out: { err_msg?: string }[] };
    expect(m.out.length).toBe(2);
    expect(m.out[1]!.err_msg).toMatch(/nope/);
    expect(r.stderr).toMatch(/1 missing/);
  });

  it('a failed batch: exit 1, one line with the server code, no DST; a cut-off stream too', async () => {
    const dst = path.join(work, 'failed.tar');
    const missing = await ojs(['get-batch', 'data', '--list', 'a.bin,nope.bin', '--endpoint', open.url, dst]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^ojs-ml: error: .*nope\.bin.*\[ERR_NOT_FOUND\]\n$/);
    expect(fs.existsSync(dst)).toBe(false);
    const cut = await ojs(['get-batch', 'data', '--list', 'big.bin,x-fail-after-100000.bin', '--streaming', '--endpoint', server.url, '--token', TOKEN, dst]);
    expect(cut.code).toBe(1);
    expect(cut.stderr).toMatch(/\[ERR_BATCH_CUT\]/);
    expect(fs.readdirSync(work).filter((f) => f.includes('failed.tar'))).toEqual([]);
    const unreachable = await ojs(['get-batch', 'data', '--list', 'a.bin', '--endpoint', 'http://127.0.0.1:1', dst]);
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toMatch(/cannot reach the server.*\[ERR_UNREACHABLE\]/);
  });

  it('flags that only mean something in-process are usage errors (exit 2)', async () => {
    for (const args of [
      ['--root', `data=${data}`],
      ['--level', '5'],
      ['--metadata', '-', '--streaming'],
    ]) {
      const r = await ojs(['get-batch', 'data', '--list', 'a.bin', '--endpoint', open.url, ...args, path.join(work, 'x.tar')]);
      expect(r.code, args.join(' ')).toBe(2);
    }
    const prefix = await ojs(['get-batch', 'data/sub/', '--endpoint', open.url, path.join(work, 'x.tar')]);
    expect(prefix.code).toBe(2);
    expect(prefix.stderr).toMatch(/--prefix/);
  });
});

describe('docs/examples/train_loop.py (standard library only)', () => {
  it('iterates two batches as a training loop would, byte-exact', async () => {
    const r = await run('python3', [path.join(REPO, 'docs/examples/train_loop.py'), '--endpoint', server.url, '--bucket', 'data', '--token', TOKEN, '--batch', 'a.bin,sub/b.txt', '--batch', 'big.bin,nope.bin']);
    expect(r.code, r.stderr).toBe(0);
    const rows = r.stdout.toString().trim().split('\n').map((l) => l.split('\t'));
    expect(rows).toEqual([
      ['0', 'data/a.bin', String(files['a.bin']!.length), sha256(files['a.bin']!)],
      ['0', 'data/sub/b.txt', String(files['sub/b.txt']!.length), sha256(files['sub/b.txt']!)],
      ['1', 'data/big.bin', String(files['big.bin']!.length), sha256(files['big.bin']!)],
      ['1', '__404__/data/nope.bin', '0', sha256(Buffer.alloc(0))],
    ]);
  });

  it('fails, not shortens, when the stream is cut off', async () => {
    const r = await run('python3', [path.join(REPO, 'docs/examples/train_loop.py'), '--endpoint', server.url, '--bucket', 'data', '--token', TOKEN, '--strict', '--batch', 'big.bin,x-fail-after-100000.bin,a.bin']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/tarfile|ReadError|IncompleteRead|unexpected end/i);
    expect(r.stdout.toString()).not.toContain('data/a.bin');
  });
});
