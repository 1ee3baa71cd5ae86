/**
 * Streamed GetBatch (strm: true) over a real socket, read back by real tools, and AIStore's
 * request forms: GET with a body, the bucket in the path, the provider in the query, POST.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { request as undiciRequest } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run, sha256, tmpDir, writeTree } from '../helpers/tools.js';
import { listen, request, type TestServer } from './helpers.js';

let work: string;
let files: Record<string, Buffer>;
let server: TestServer;
// Files of several read chunks each (src/sources/chunks.ts): their buffers are recycled between requests.
const pooled: Record<string, Buffer> = Object.fromEntries(Array.from({ length: 24 }, (_, i) => [`pool/${i}.bin`, randomBytes((600 << 10) + i * 4099)]));
const names = ['a/small.bin', 'a/empty.bin', 'ünïcødé/日本語.wav', `long/${'n'.repeat(120)}.bin`, 'big/mixed.bin', 'c.txt'];

beforeAll(async () => {
  work = tmpDir('ojs-ml-server-');
  files = writeTree(path.join(work, 'data'), {
    'a/small.bin': randomBytes(1234),
    'a/empty.bin': Buffer.alloc(0),
    'ünïcødé/日本語.wav': randomBytes(70_000),
    [`long/${'n'.repeat(120)}.bin`]: randomBytes(600),
    // more than one gzip member and LZ4 block
    'big/mixed.bin': Buffer.concat([Buffer.alloc(3 << 20, 'abc'), randomBytes(3 << 20)]),
    'c.txt': 'hello\n',
    ...pooled,
  });
  server = await listen({ sources: { file: { roots: { data: path.join(work, 'data') } } } });
});
afterAll(async () => {
  await server.close();
  fs.rmSync(work, { recursive: true, force: true });
});

const batch = (mime?: string) => ({ in: names.map((objname) => ({ objname })), strm: true, ...(mime === undefined ? {} : { mime }) });
const want = () => names.map((n) => [`data/${n}`, sha256(files[n]!)]);

async function ok(cmd: string, args: string[], input?: Buffer): Promise<string> {
  const r = await run(cmd, args, { input });
  expect(r.code, `${cmd} ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r.stdout.toString('utf8');
}

// Random-access modes ('r:gz'), not stream modes ('r|gz'): Python's stream mode stops at the end
// of the first gzip member, and a TGZ over 1 MiB is several members (src/archive/compress.ts).
const PY_TAR = `import sys, io, tarfile, hashlib, json
with tarfile.open(fileobj=io.BytesIO(sys.stdin.buffer.read()), mode=sys.argv[1]) as t:
    print(json.dumps([[m.name, hashlib.sha256(t.extractfile(m).read()).hexdigest()] for m in t]))`;
const PY_ZIP = `import sys, io, zipfile, hashlib, json
with zipfile.ZipFile(io.BytesIO(sys.stdin.buffer.read())) as z:
    assert z.testzip() is None
    print(json.dumps([[i.filename, hashlib.sha256(z.read(i)).hexdigest()] for i in z.infolist()]))`;

describe('streamed GetBatch, every format, checked with real tools', () => {
  it('TAR by GET with a JSON body, bucket in the path, provider in the query: GNU tar and Python read it byte-exact, trailers sum it up', async () => {
    const r = await request(`${server.url}/v1/ml/moss/data?provider=file`, { body: batch() });
    expect(r.status).toBe(200);
    expect(r.complete).toBe(true);
    expect(r.headers['content-type']).toBe('application/x-tar');
    expect(r.headers['transfer-encoding']).toBe('chunked');
    expect(r.headers.trailer).toContain('X-Ojs-Batch-Entries');
    const list = (await ok('tar', ['--list', '--quoting-style=literal', '-f', '-'], r.body)).trim().split('\n');
    expect(list).toEqual(names.map((n) => `data/${n}`));
    expect(JSON.parse(await ok('python3', ['-c', PY_TAR, 'r:'], r.body))).toEqual(want());
    expect(r.trailers['x-ojs-batch-entries']).toBe(String(names.length));
    expect(r.trailers['x-ojs-batch-missing']).toBe('0');
    expect(r.trailers['x-ojs-batch-bytes']).toBe(String(r.body.length));
    expect(r.trailers['x-ojs-batch-uuid']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('TGZ: application/gzip, gzip -t, GNU tar -z, Python', async () => {
    const r = await request(`${server.url}/v1/ml/moss/data`, { method: 'POST', body: batch('.tgz') });
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('application/gzip');
    await ok('gzip', ['-t'], r.body);
    expect((await ok('tar', ['-tz', '--quoting-style=literal', '-f', '-'], r.body)).trim().split('\n')).toEqual(names.map((n) => `data/${n}`));
    expect(JSON.parse(await ok('python3', ['-c', PY_TAR, 'r:gz'], r.body))).toEqual(want());
  });

  it('TAR.LZ4: application/x-lz4, one frame that lz4 -d turns back into the TAR', async () => {
    const r = await request(`${server.url}/v1/ml/moss/data`, { method: 'POST', body: batch('.tar.lz4') });
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('application/x-lz4');
    const tar = (await run('lz4', ['-d', '-c'], { input: r.body })).stdout;
    expect(JSON.parse(await ok('python3', ['-c', PY_TAR, 'r:'], tar))).toEqual(want());
  });

  it('ZIP: application/zip, read by unzip and Python zipfile', async () => {
    const r = await request(`${server.url}/v1/ml/moss/data`, { method: 'POST', body: batch('.zip') });
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('application/zip');
    expect(JSON.parse(await ok('python3', ['-c', PY_ZIP], r.body))).toEqual(want());
    const f = path.join(work, 'b.zip');
    fs.writeFileSync(f, r.body);
    await ok('unzip', ['-tq', f]);
  });

  it('curl with a GET body (form-encoded Content-Type) and with POST; tar lists the entries in request order', async () => {
    const spec = path.join(work, 'batch.json');
    fs.writeFileSync(spec, JSON.stringify(batch()));
    for (const method of ['GET', 'POST']) {
      const r = await run('curl', ['-sS', '--fail', '-X', method, '--data-binary', `@${spec}`, `${server.url}/v1/ml/moss/data`]);
      expect(r.code, r.stderr).toBe(0);
      expect((await ok('tar', ['-t', '--quoting-style=literal', '-f', '-'], r.stdout)).trim().split('\n')).toEqual(names.map((n) => `data/${n}`));
    }
  });

  it('undici: GET with a body, the archive and its trailers', async () => {
    const res = await undiciRequest(`${server.url}/v1/ml/moss/data`, { method: 'GET', body: JSON.stringify(batch()) });
    expect(res.statusCode).toBe(200);
    const body = Buffer.from(await res.body.arrayBuffer());
    expect(JSON.parse(await ok('python3', ['-c', PY_TAR, 'r:'], body))).toEqual(want());
    expect(res.trailers['x-ojs-batch-entries']).toBe(String(names.length));
  });

  it('no bucket in the path: entries name theirs; onob, a range; missing entries under coer are listed in a trailer', async () => {
    const r = await request(`${server.url}/v1/ml/moss`, {
      body: {
        strm: true,
        coer: true,
        onob: true,
        in: [
          { objname: 'c.txt', bucket: 'data', provider: 'file' },
          { objname: 'nope.bin', bucket: 'data', provider: 'file' },
          { objname: 'big/mixed.bin', bucket: 'data', provider: 'file', start: 10, length: 20 },
          { objname: 'a/small.bin', bucket: 'data', provider: 'file', opaque: 'AQID' },
        ],
      },
    });
    expect(r.status).toBe(200);
    expect((await ok('tar', ['-t', '-f', '-'], r.body)).trim().split('\n')).toEqual(['c.txt', '__404__/nope.bin', 'big/mixed.bin', 'a/small.bin']);
    expect(JSON.parse(await ok('python3', ['-c', PY_TAR, 'r:'], r.body))[2]).toEqual(['big/mixed.bin', sha256(files['big/mixed.bin']!.subarray(10, 30))]);
    expect(r.trailers['x-ojs-batch-missing']).toBe('1');
    expect(r.trailers['x-ojs-batch-missing-index']).toBe('1');
  });
});

describe('recycled read chunks', () => {
  it('concurrent batches, one read slowly, all byte-exact: no chunk is reused before its socket took it', async () => {
    const keys = Object.keys(pooled);
    const body = (order: string[]) => ({ in: order.map((objname) => ({ objname })), strm: true });
    const orders = [keys, [...keys].reverse(), keys.filter((_, i) => i % 2 === 0), keys.filter((_, i) => i % 2 === 1)];
    // The slow one holds its socket's buffers full, so its chunks stay out while the others run.
    const slow = new Promise<Buffer>((resolve, reject) => {
      const json = JSON.stringify(body(keys));
      const headers = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) };
      const req = http.request(`${server.url}/v1/ml/moss/data`, { method: 'GET', headers, agent: false });
      req.on('error', reject);
      req.on('response', (res) => {
        const got: Buffer[] = [];
        res.on('data', (c: Buffer) => {
          got.push(c);
          res.pause();
          setTimeout(() => res.resume(), 2);
        });
        res.on('end', () => resolve(Buffer.concat(got)));
        res.on('error', reject);
      });
      req.end(json);
    });
    const fast = await Promise.all(orders.map((o) => request(`${server.url}/v1/ml/moss/data`, { body: body(o) })));
    const all = [...fast.map((r) => r.body), await slow];
    const wants = [...orders, keys];
    for (const [i, tar] of all.entries()) {
      expect(JSON.parse(await ok('python3', ['-c', PY_TAR, 'r:'], tar))).toEqual(wants[i]!.map((n) => [`data/${n}`, sha256(pooled[n]!)]));
    }
  });
});
