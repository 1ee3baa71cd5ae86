/** Errors before the first byte: status, stable code, JSON body; auth, policy and limits. */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SourceRegistry } from '../../src/sources/registry.js';
import type { ObjectRef, OpenOptions, OpenedObject } from '../../src/sources/types.js';
import { abortedError } from '../../src/spec/errors.js';
import { run, tmpDir, writeTree } from '../helpers/tools.js';
import { CountingSource, json, listen, request, waitFor, type TestServer } from './helpers.js';

const TOKEN = 'tok-3f9a1c-not-in-any-log';
let work: string;
let secure: TestServer;
let limited: TestServer;
let upstream: http.Server;
let upstreamHits = 0;
let gate: { open: () => void; wait: Promise<void> };

function newGate(): typeof gate {
  let open!: () => void;
  const wait = new Promise<void>((r) => (open = r));
  return { open, wait };
}

/** Opens wait for the gate: a batch that holds its slot until the test lets it go. */
class GatedSource extends CountingSource {
  override async open(ref: ObjectRef, opts: OpenOptions): Promise<OpenedObject> {
    if (ref.key.startsWith('gated')) {
      await Promise.race([
        gate.wait,
        new Promise((_r, reject) => opts.signal.addEventListener('abort', () => reject(abortedError(opts.signal)), { once: true })),
      ]);
    }
    return super.open(ref, opts);
  }
}

beforeAll(async () => {
  work = tmpDir('ojs-ml-server-err-');
  const data = path.join(work, 'data');
  writeTree(data, { 'a.bin': randomBytes(1000), 'big.bin': randomBytes(3 << 20), 'gated.bin': randomBytes(10) });
  writeTree(work, { 'secret.txt': 'outside every root' });
  fs.symlinkSync(path.join(work, 'secret.txt'), path.join(data, 'link.txt'));
  upstream = http.createServer((_req, res) => {
    upstreamHits++;
    res.end('x');
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  secure = await listen({ sources: { file: { roots: { data } } }, tokens: [TOKEN, 'another-token'] });
  const registry = new SourceRegistry().register(new GatedSource({ data }));
  limited = await listen({ sources: registry, limits: { maxBodyBytes: 2048, maxEntries: 3, maxBatchBytes: 1 << 20, maxConcurrent: 1 } });
});
afterAll(async () => {
  await secure.close();
  await limited.close();
  upstream.close();
  fs.rmSync(work, { recursive: true, force: true });
});

const auth = { authorization: `Bearer ${TOKEN}` };

describe('authentication', () => {
  it('no token: 401 with WWW-Authenticate; a wrong one: invalid_token; /ok is open', async () => {
    const none = await request(`${secure.url}/v1/ml/moss/data`, { body: { in: [{ objname: 'a.bin' }] } });
    expect(none.status).toBe(401);
    expect(none.headers['www-authenticate']).toBe('Bearer realm="ojs-ml"');
    expect(json(none).error.code).toBe('ERR_UNAUTHORIZED');
    const wrong = await request(`${secure.url}/v1/ml/moss/data`, { body: { in: [{ objname: 'a.bin' }] }, headers: { authorization: `Bearer ${TOKEN}x` } });
    expect(wrong.status).toBe(401);
    expect(wrong.headers['www-authenticate']).toBe('Bearer realm="ojs-ml", error="invalid_token"');
    expect((await request(`${secure.url}/ok`)).status).toBe(200);
    expect((await request(`${secure.url}/varz`)).status).toBe(401);
    expect((await request(`${secure.url}/metrics`)).status).toBe(401);
  });

  it('either token works, and no token ever reaches the access log', async () => {
    for (const t of [TOKEN, 'another-token']) {
      const r = await request(`${secure.url}/v1/ml/moss/data`, { body: { in: [{ objname: 'a.bin' }], strm: true }, headers: { authorization: `Bearer ${t}` } });
      expect(r.status).toBe(200);
    }
    expect((await request(`${secure.url}/varz`, { headers: auth })).status).toBe(200);
    await waitFor(() => secure.log.length >= 8, 2000, 'log lines');
    expect(secure.log.join('')).not.toContain(TOKEN);
    expect(secure.log.join('')).not.toContain('another-token');
  });
});

describe('policy: only the roots, no http(s) unless allowed', () => {
  it('an absolute file:// URI is 403 before anything is opened', async () => {
    const r = await request(`${secure.url}/v1/ml/moss`, { body: { in: [{ uri: `file://${path.join(work, 'secret.txt')}` }], strm: true }, headers: auth });
    expect(r.status).toBe(403);
    expect(json(r).error.code).toBe('ERR_FORBIDDEN');
  });

  it('a symlink out of the root is 403; ".." is 400', async () => {
    const link = await request(`${secure.url}/v1/ml/moss/data`, { body: { in: [{ objname: 'link.txt' }], strm: true }, headers: auth });
    expect(link.status).toBe(403);
    expect(json(link).error.message).toContain('outside its root');
    const dots = await request(`${secure.url}/v1/ml/moss/data`, { body: { in: [{ objname: '../secret.txt' }] }, headers: auth });
    expect(dots.status).toBe(400);
    expect(json(dots).error.code).toBe('ERR_BAD_SPEC');
  });

  it('http(s) entries are 403 when no host is allowed, and the upstream sees no request', async () => {
    const port = (upstream.address() as { port: number }).port;
    for (const uri of [`http://127.0.0.1:${port}/x`, `https://example.com/y`]) {
      const r = await request(`${secure.url}/v1/ml/moss`, { body: { in: [{ uri }], coer: true }, headers: auth });
      expect(r.status).toBe(403);
      expect(json(r).error.code).toBe('ERR_PROVIDER_DISABLED');
    }
    expect(upstreamHits).toBe(0);
  });
});

describe('request errors', () => {
  it('bad JSON, no body, an unknown field, a bad coloc: 400 ERR_BAD_SPEC', async () => {
    const cases: [string, string | undefined][] = [
      ['/v1/ml/moss/data', '{"in": ['],
      ['/v1/ml/moss/data', undefined],
      ['/v1/ml/moss/data', '{"in": [{"objname": "a.bin", "nope": 1}]}'],
      ['/v1/ml/moss/data?coloc=5', '{"in": [{"objname": "a.bin"}]}'],
    ];
    for (const [url, body] of cases) {
      const r = await request(`${limited.url}${url}`, { method: 'POST', body });
      expect(r.status, `${url} ${body}`).toBe(400);
      expect(json(r).error.code).toBe('ERR_BAD_SPEC');
      expect(json(r).status).toBe(400);
    }
  });

  it('a missing item without coer is 404 in both modes; a range out of bounds is 416', async () => {
    for (const strm of [true, false]) {
      const r = await request(`${limited.url}/v1/ml/moss/data`, { body: { in: [{ objname: 'a.bin' }, { objname: 'nope.bin' }], strm } });
      expect(r.status).toBe(404);
      expect(json(r).error).toMatchObject({ code: 'ERR_NOT_FOUND', kind: 'NotFound' });
    }
    const range = await request(`${limited.url}/v1/ml/moss/data`, { body: { in: [{ objname: 'a.bin', start: 5000, length: 1 }], strm: true } });
    expect(range.status).toBe(416);
    expect(json(range).error.code).toBe('ERR_RANGE');
  });

  it('an unknown path is a JSON 404', async () => {
    const r = await request(`${limited.url}/v1/ml/nope`);
    expect(r.status).toBe(404);
    expect(json(r).error.code).toBe('ERR_NOT_FOUND');
  });
});

describe('limits', () => {
  it('body and entry limits: 413', async () => {
    const big = await request(`${limited.url}/v1/ml/moss/data`, { body: { in: [{ objname: 'x'.repeat(3000) }] } });
    expect(big.status).toBe(413);
    expect(json(big).error.code).toBe('ERR_BODY_TOO_LARGE');
    const many = await request(`${limited.url}/v1/ml/moss/data`, { body: { in: [1, 2, 3, 4].map(() => ({ objname: 'a.bin' })) } });
    expect(many.status).toBe(413);
    expect(json(many).error.code).toBe('ERR_LIMIT_ENTRIES');
  });

  it('bytes per batch: multipart is refused with 413; a stream is cut off past the limit and tar rejects what came', async () => {
    const mp = await request(`${limited.url}/v1/ml/moss/data`, { body: { in: [{ objname: 'big.bin' }] } });
    expect(mp.status).toBe(413);
    expect(json(mp).error.code).toBe('ERR_LIMIT_BATCH_BYTES');
    const st = await request(`${limited.url}/v1/ml/moss/data`, { body: { in: [{ objname: 'big.bin' }], strm: true } });
    expect(st.status).toBe(200);
    expect(st.complete).toBe(false);
    expect(st.body.length).toBeLessThanOrEqual(1 << 20);
    const tar = await run('tar', ['-tf', '-'], { input: st.body });
    expect(tar.code).not.toBe(0);
  });

  it('one batch too many: 429 with Retry-After, before the body is read; the slot frees when the batch ends', async () => {
    gate = newGate();
    const first = request(`${limited.url}/v1/ml/moss/data`, { body: { in: [{ objname: 'gated.bin' }], strm: true } });
    await waitFor(() => limited.app.ojs.batches.size === 1, 2000, 'the first batch');
    const second = await request(`${limited.url}/v1/ml/moss/data`, { body: { in: [{ objname: 'a.bin' }], strm: true } });
    expect(second.status).toBe(429);
    expect(second.headers['retry-after']).toBe('1');
    expect(json(second).error).toMatchObject({ code: 'ERR_BUSY', temporary: true });
    gate.open();
    expect((await first).status).toBe(200);
    await waitFor(() => limited.app.ojs.batches.size === 0, 2000, 'the slot');
    expect((await request(`${limited.url}/v1/ml/moss/data`, { body: { in: [{ objname: 'a.bin' }], strm: true } })).status).toBe(200);
  });
});
