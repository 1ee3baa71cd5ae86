/**
 * Failures after the first byte and clients that go away, over real sockets: every client sees
 * an error (never a clean shorter archive), and every upstream read of the batch stops.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { request as undiciRequest } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SourceRegistry } from '../../src/sources/registry.js';
import type { ObjectRef, ObjectSource, OpenOptions, OpenedObject } from '../../src/sources/types.js';
import { OjsError } from '../../src/spec/errors.js';
import { run, tmpDir, writeTree } from '../helpers/tools.js';
import { CountingSource, listen, openFds, request, waitFor, type TestServer } from './helpers.js';

const MANY = 200; // files in the disconnect tests
const FILE_SIZE = 200_000;
const SLOW_SIZE = 1 << 20; // bytes of each slow upstream object
const SLOW_CHUNK = 16 << 10; // ...sent one chunk every SLOW_TICK_MS
const SLOW_TICK_MS = 10;

let work: string;
let source: CountingSource;
let server: TestServer;
let upstream: http.Server;
let upstreamOpen = 0; // upstream responses started and not finished or closed

/** A minimal http provider for the test: one undici request per open, cancelled by the signal. */
class TestHttpSource implements ObjectSource {
  readonly provider = 'http' as const;
  readonly capabilities = { ranges: false, list: false, conditionalRead: false };
  stat(): never {
    throw new OjsError('Unsupported', 'not in this test');
  }
  list(): never {
    throw new OjsError('Unsupported', 'not in this test');
  }
  async open(ref: ObjectRef, opts: OpenOptions): Promise<OpenedObject> {
    const res = await undiciRequest(`http://${ref.bucket}/${ref.key}`, { signal: opts.signal });
    const size = Number(res.headers['content-length']);
    return { length: size, size, range: { offset: 0, length: size }, body: res.body as unknown as Readable };
  }
}

beforeAll(async () => {
  work = tmpDir('ojs-ml-server-abort-');
  const data = path.join(work, 'data');
  const tree: Record<string, Buffer> = { 'big.bin': randomBytes(3 << 20), 'x-fail-after-200000.bin': randomBytes(1 << 20) };
  for (let i = 0; i < MANY; i++) tree[`many/f${String(i).padStart(4, '0')}.bin`] = randomBytes(FILE_SIZE);
  writeTree(data, tree);
  source = new CountingSource({ data });
  upstream = http.createServer((_req, res) => {
    upstreamOpen++;
    let sent = 0;
    res.once('close', () => {
      upstreamOpen--;
      clearInterval(timer);
    });
    res.writeHead(200, { 'content-length': String(SLOW_SIZE) });
    const timer = setInterval(() => {
      res.write(Buffer.alloc(SLOW_CHUNK, 7));
      sent += SLOW_CHUNK;
      if (sent >= SLOW_SIZE) {
        clearInterval(timer);
        res.end();
      }
    }, SLOW_TICK_MS);
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  const registry = new SourceRegistry().register(source).register(new TestHttpSource());
  server = await listen({ sources: registry, limits: { maxConcurrent: 256 } });
});
afterAll(async () => {
  await server.close();
  upstream.close();
  fs.rmSync(work, { recursive: true, force: true });
});

const failing = { in: [{ objname: 'big.bin' }, { objname: 'x-fail-after-200000.bin' }], strm: true };

describe('a batch that fails after the first byte', () => {
  it('node:http sees an aborted body; GNU tar and Python reject the bytes that came', async () => {
    const r = await request(`${server.url}/v1/ml/moss/data`, { body: failing });
    expect(r.status).toBe(200);
    expect(r.complete).toBe(false);
    expect(r.error).toBeDefined();
    expect(r.trailers).toEqual({});
    expect(r.body.length).toBeGreaterThan(3 << 20);
    const f = path.join(work, 'cut.tar');
    fs.writeFileSync(f, r.body);
    const tar = await run('tar', ['-tf', f]);
    expect(tar.code).not.toBe(0);
    expect(tar.stderr).toMatch(/Unexpected EOF/);
    const py = await run('python3', ['-c', 'import sys, tarfile\nwith tarfile.open(sys.argv[1], "r:") as t:\n    for m in t: t.extractfile(m).read()', f]);
    expect(py.code).not.toBe(0);
    await waitFor(() => source.open_ === 0 && server.app.ojs.batches.size === 0, 2000, 'bodies and batch to close');
  });

  it('undici and curl report an error too', async () => {
    const res = await undiciRequest(`${server.url}/v1/ml/moss/data`, { method: 'POST', body: JSON.stringify(failing) });
    expect(res.statusCode).toBe(200);
    await expect(res.body.arrayBuffer()).rejects.toThrow();
    const curl = await run('curl', ['-sS', '-o', '/dev/null', '-X', 'GET', '--data-binary', JSON.stringify(failing), `${server.url}/v1/ml/moss/data`]);
    expect(curl.code).not.toBe(0);
    expect(curl.stderr).toMatch(/curl: \(18\)|transfer closed|curl: \(56\)/);
  });

  it('a failure between two entries, to an HTTP/1.0 client (no chunked framing): the bytes that came end inside an entry', async () => {
    const body = JSON.stringify({ in: [{ objname: 'big.bin' }, { objname: 'nope.bin' }], strm: true });
    const port = Number(new URL(server.url).port);
    const raw = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      const sock = net.connect(port, '127.0.0.1', () => {
        sock.write(`POST /v1/ml/moss/data HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      });
      sock.on('data', (c: Buffer) => chunks.push(c));
      sock.on('error', reject);
      sock.on('close', () => resolve(Buffer.concat(chunks)));
    });
    const split = raw.indexOf('\r\n\r\n');
    expect(raw.subarray(0, split).toString()).toMatch(/^HTTP\/1\.1 200 OK/);
    const archive = raw.subarray(split + 4);
    expect(archive.length).toBeGreaterThan(3 << 20);
    const f = path.join(work, 'cut-1.0.tar');
    fs.writeFileSync(f, archive);
    const tar = await run('tar', ['-tf', f]);
    expect(tar.code).not.toBe(0);
    expect(tar.stdout.toString()).toContain('data/big.bin');
  });

  it('multipart: a failure is a status, since nothing is sent before the archive is complete', async () => {
    const r = await request(`${server.url}/v1/ml/moss/data`, { body: { ...failing, strm: false } });
    expect(r.status).toBe(502);
    expect(JSON.parse(r.body.toString('utf8')).error.code).toBe('ERR_UPSTREAM');
  });
});

describe('a client that goes away', () => {
  const many = { in: Array.from({ length: MANY }, (_, i) => ({ objname: `many/f${String(i).padStart(4, '0')}.bin` })), strm: true };

  it('mid-archive: the batch aborts at once and every open file is closed', async () => {
    const aborted = async () => (await server.app.ojs.metrics.batches.get()).values.find((v) => v.labels.outcome === 'aborted')?.value ?? 0;
    const before = await aborted();
    const opened = source.opened;
    const r = await request(`${server.url}/v1/ml/moss/data`, { body: many, abortAfter: 1 << 20 });
    expect(r.complete).toBe(false);
    const t0 = Date.now();
    await waitFor(() => source.open_ === 0 && server.app.ojs.batches.size === 0, 2000, 'bodies and batch to close');
    expect(Date.now() - t0).toBeLessThan(1000);
    // It stopped early: the read-ahead window, not the whole batch, was opened.
    expect(source.opened - opened).toBeLessThan(MANY);
    expect(await aborted()).toBe(before + 1);
    await waitFor(() => server.log.some((l) => / 200 \d+ .* aborted\n$/.test(l)), 2000, 'the access log line');
  });

  it(`${MANY} clients that disconnect mid-archive leave no open file, socket or descriptor`, async () => {
    const fds = openFds();
    const WAVE = 50;
    for (let w = 0; w < MANY; w += WAVE) {
      const rs = await Promise.all(Array.from({ length: WAVE }, () => request(`${server.url}/v1/ml/moss/data`, { body: many, abortAfter: 256 << 10 })));
      for (const r of rs) expect(r.complete).toBe(false);
    }
    await waitFor(() => source.open_ === 0 && server.app.ojs.batches.size === 0, 5000, 'bodies and batches to close');
    await waitFor(() => openFds() <= fds, 3000, `descriptors back to ${fds} (now ${openFds()})`);
    const conns = await new Promise<number>((resolve, reject) => server.app.server.getConnections((e, n) => (e ? reject(e) : resolve(n))));
    expect(conns).toBe(0);
  });

  it('a slow http upstream: its requests are cancelled when the client goes away', async () => {
    const port = (upstream.address() as { port: number }).port;
    const batch = { in: Array.from({ length: 20 }, (_, i) => ({ uri: `http://127.0.0.1:${port}/obj-${i}` })), strm: true };
    const r = request(`${server.url}/v1/ml/moss`, { body: batch, abortAfter: 64 << 10 });
    await waitFor(() => upstreamOpen >= 2, 3000, 'upstream requests');
    expect((await r).complete).toBe(false);
    await waitFor(() => upstreamOpen === 0 && server.app.ojs.batches.size === 0, 2000, `upstream requests to close (${upstreamOpen} open)`);
  });
});
