/** Operations: /ok, /varz, /metrics, the access log, request ids, graceful shutdown, the CLI. */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer } from '../../src/server/server.js';
import { SourceRegistry } from '../../src/sources/registry.js';
import type { ObjectRef, OpenOptions, OpenedObject } from '../../src/sources/types.js';
import { CLI, tmpDir, writeTree } from '../helpers/tools.js';
import { CountingSource, listen, request, waitFor, type TestServer } from './helpers.js';

let work: string;
let data: string;
let server: TestServer;

beforeAll(async () => {
  work = tmpDir('ojs-ml-server-ops-');
  data = path.join(work, 'data');
  const tree: Record<string, Buffer> = { 'a.bin': randomBytes(1000), 'gated.bin': randomBytes(10) };
  for (let i = 0; i < 20; i++) tree[`s/${i}.bin`] = randomBytes(64 << 10);
  writeTree(data, tree);
  server = await listen({ sources: { file: { roots: { data } } }, processMetrics: true, limits: { maxConcurrent: 100 } });
});
afterAll(async () => {
  await server.close();
  fs.rmSync(work, { recursive: true, force: true });
});

describe('operations endpoints', () => {
  it('/ok and /varz: version, uptime, effective config without secrets, batches in flight', async () => {
    const ok = await request(`${server.url}/ok`);
    expect(ok.status).toBe(200);
    expect(ok.body.toString()).toBe('ok\n');
    const v = JSON.parse((await request(`${server.url}/varz`)).body.toString()) as Record<string, unknown>;
    expect(v).toMatchObject({
      version: JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version,
      config: {
        providers: ['file', 's3', 'gs', 'az', 'hf'],
        disabled: ['http', 'https'],
        file_roots: { data },
        http: { allowHosts: [], allowPrivate: false },
        auth: { tokens: 0 },
        limits: { maxConcurrent: 100, maxBatchBytes: null },
      },
      in_flight: [],
    });
    expect(typeof v.uptime_s).toBe('number');
  });

  it('/metrics counts requests, batches, entries and bytes served; upstream hooks feed the provider counters', async () => {
    let bytes = 0;
    for (let i = 0; i < 3; i++) {
      const r = await request(`${server.url}/v1/ml/moss/data`, { method: 'POST', body: { in: [{ objname: 'a.bin' }, { objname: 'nope' }], coer: true, strm: true } });
      expect(r.status).toBe(200);
      bytes += r.body.length;
    }
    expect((await request(`${server.url}/v1/ml/moss/data`, { body: { in: [{ objname: 'nope' }] } })).status).toBe(404);
    server.app.ojs.metricsHooks.onRequest('s3', 'open', 'ok', 12);
    server.app.ojs.metricsHooks.onRequest('s3', 'open', 'ERR_NOT_FOUND', 3);
    server.app.ojs.metricsHooks.onBytes('s3', 4096);
    const m = await request(`${server.url}/metrics`);
    expect(m.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = m.body.toString();
    const value = (line: string) => Number(new RegExp(`^${line.replace(/[{}"+.]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1]);
    expect(value('ojs_ml_http_requests_total{route="/v1/ml/moss/:bucket",method="POST",code="200"}')).toBe(3);
    expect(value('ojs_ml_http_requests_total{route="/v1/ml/moss/:bucket",method="GET",code="404"}')).toBe(1);
    expect(value('ojs_ml_batches_total{format="tar",mode="stream",outcome="ok"}')).toBe(3);
    expect(value('ojs_ml_batches_total{format="tar",mode="multipart",outcome="failed"}')).toBe(1);
    expect(value('ojs_ml_entries_total{outcome="ok"}')).toBe(3);
    expect(value('ojs_ml_entries_total{outcome="missing"}')).toBe(3);
    expect(value('ojs_ml_archive_bytes_total{format="tar"}')).toBe(bytes);
    expect(value('ojs_ml_batch_duration_seconds_count{format="tar",mode="stream",outcome="ok"}')).toBe(3);
    expect(value('ojs_ml_batches_in_flight')).toBe(0);
    expect(value('ojs_ml_upstream_requests_total{provider="s3",op="open",outcome="ok"}')).toBe(1);
    expect(value('ojs_ml_upstream_requests_total{provider="s3",op="open",outcome="ERR_NOT_FOUND"}')).toBe(1);
    expect(value('ojs_ml_upstream_bytes_total{provider="s3"}')).toBe(4096);
    expect(value('ojs_ml_process_resident_memory_bytes')).toBeGreaterThan(0);
  });

  it('one NCSA Combined line per request, with the request id it echoes in X-Request-Id', async () => {
    const r = await request(`${server.url}/v1/ml/moss/data?provider=file`, {
      method: 'POST',
      body: { in: [{ objname: 'a.bin' }], strm: true },
      headers: { 'x-request-id': 'trace-42.a', 'user-agent': 'loader/1 "q"', referer: 'http://x/' },
    });
    expect(r.headers['x-request-id']).toBe('trace-42.a');
    await waitFor(() => server.log.some((l) => l.includes('rid=trace-42.a')), 2000, 'the log line');
    const line = server.log.find((l) => l.includes('rid=trace-42.a'))!;
    expect(line).toMatch(
      /^127\.0\.0\.1 - - \[\d{2}\/[A-Z][a-z]{2}\/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] "POST \/v1\/ml\/moss\/data\?provider=file HTTP\/1\.1" 200 \d+ "http:\/\/x\/" "loader\/1 \\x22q\\x22" rid=trace-42\.a ms=\d+ -\n$/,
    );
    expect(Number(/" 200 (\d+) "/.exec(line)![1])).toBe(r.body.length);
    // An id that could forge a log line is replaced.
    const bad = await request(`${server.url}/ok`, { headers: { 'x-request-id': 'a b" 200' } });
    expect(bad.headers['x-request-id']).toMatch(/^[0-9a-f]{16}$/);
  });

  it('64 clients at once all get the right archive', async () => {
    const body = { in: Array.from({ length: 20 }, (_, i) => ({ objname: `s/${i}.bin` })), strm: true };
    const digest = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    const first = await request(`${server.url}/v1/ml/moss/data`, { body });
    const rs = await Promise.all(Array.from({ length: 64 }, () => request(`${server.url}/v1/ml/moss/data`, { body })));
    for (const r of rs) {
      expect(r.status).toBe(200);
      expect(r.complete).toBe(true);
      expect(digest(r.body)).toBe(digest(first.body));
    }
  });
});

describe('graceful shutdown', () => {
  let release: () => void = () => undefined;
  class Gated extends CountingSource {
    override async open(ref: ObjectRef, opts: OpenOptions): Promise<OpenedObject> {
      if (ref.key === 'gated.bin') await new Promise<void>((r) => (release = r));
      return super.open(ref, opts);
    }
  }
  const start = () => startServer({ sources: new SourceRegistry().register(new Gated({ data })), host: '127.0.0.1', port: 0, accessLog: null, processMetrics: false });

  it('a batch in flight finishes within the grace period; new connections are refused', async () => {
    const s = await start();
    const r = request(`${s.url}/v1/ml/moss/data`, { body: { in: [{ objname: 'a.bin' }, { objname: 'gated.bin' }], strm: true } });
    await waitFor(() => s.app.ojs.batches.size === 1, 2000, 'the batch');
    const closed = s.close(5000);
    await expect(request(`${s.url}/ok`)).rejects.toThrow(/ECONNREFUSED/);
    release();
    const res = await r;
    expect(res.status).toBe(200);
    expect(res.complete).toBe(true);
    await closed;
  });

  it('past the grace period the batch is aborted: a client that got bytes sees the response cut', async () => {
    const s = await start();
    const r = request(`${s.url}/v1/ml/moss/data`, { body: { in: [{ objname: 'a.bin' }, { objname: 'gated.bin' }], strm: true } });
    await waitFor(() => s.app.ojs.batches.size === 1, 2000, 'the batch');
    const t0 = Date.now();
    await s.close(200);
    expect(Date.now() - t0).toBeLessThan(2000);
    const res = await r;
    expect(res.status).toBe(200);
    expect(res.complete).toBe(false);
  });

  it('past the grace period, a batch with nothing sent yet gets 503', async () => {
    const s = await start();
    const r = request(`${s.url}/v1/ml/moss/data`, { body: { in: [{ objname: 'gated.bin' }], strm: true } });
    await waitFor(() => s.app.ojs.batches.size === 1, 2000, 'the batch');
    await s.close(100);
    const res = await r;
    expect(res.status).toBe(503);
    expect(JSON.parse(res.body.toString()).error.code).toBe('ERR_SHUTTING_DOWN');
  });
});

describe('ojs-ml serve', () => {
  it('prints its URL, serves, logs to a file, and exits 0 on SIGTERM', async () => {
    const log = path.join(work, 'access.log');
    const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', '--root', `data=${data}`, '--access-log', log, '--grace', '2'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await waitFor(() => /listening on (http:\/\/\S+)/.test(stderr), 10_000, `the URL (stderr: ${stderr})`);
    const url = /listening on (http:\/\/\S+)/.exec(stderr)![1]!;
    const r = await request(`${url}/v1/ml/moss/data`, { body: { in: [{ objname: 'a.bin' }], strm: true } });
    expect(r.status).toBe(200);
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(fs.readFileSync(log, 'utf8')).toMatch(/"GET \/v1\/ml\/moss\/data HTTP\/1\.1" 200 \d+ /);
    expect(stderr).toContain('stopped');
  });

  it('a bad flag is a usage error (exit 2)', async () => {
    const child = spawn(process.execPath, [CLI, 'serve', '--max-entries', 'many'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    expect(await new Promise((resolve) => child.on('exit', resolve))).toBe(2);
    expect(stderr).toContain('--max-entries');
  });
});
