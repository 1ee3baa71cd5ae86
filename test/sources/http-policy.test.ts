/**
 * The SSRF policy of the http provider: the host allow-list and the private-address rule, on
 * the first request and on every redirect, checked after DNS (a name for 127.0.0.1 is refused
 * like the address). A refused request never reaches the server.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpSource } from '../../src/sources/http.js';
import { hostAllowed, isPrivateAddress } from '../../src/sources/web.js';
import { OjsError } from '../../src/spec/errors.js';
import { startFileServer, type FileServer } from '../helpers/servers/files.js';
import { listen, type TestServer } from '../server/helpers.js';

let a: FileServer;
let b: FileServer;
const signal = () => new AbortController().signal;

beforeAll(async () => {
  a = await startFileServer();
  b = await startFileServer();
  a.put('x.bin', Buffer.from('from a'));
  b.put('x.bin', Buffer.from('from b'));
});
afterAll(async () => {
  await a.close();
  await b.close();
});

async function refused(src: HttpSource, url: URL): Promise<OjsError> {
  const e = await src.open({ bucket: url.host, key: url.pathname.slice(1) }, { signal: signal() }).then(
    () => new Error('expected a refusal'),
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(OjsError);
  return e as OjsError;
}

describe('http provider: SSRF policy', () => {
  it('refuses loopback by address and by name unless private addresses are allowed', async () => {
    const strict = new HttpSource('http', { policy: {} });
    const seen = a.requests.length;
    for (const host of [`127.0.0.1:${a.port}`, `localhost:${a.port}`, `[::1]:${a.port}`]) {
      const e = await refused(strict, new URL(`http://${host}/x.bin`));
      expect(e.kind, host).toBe('Forbidden');
      expect(e.code, host).toBe('ERR_HOST_NOT_ALLOWED');
      expect(e.message, host).toMatch(/loopback, private or link-local/);
    }
    expect(a.requests.length).toBe(seen);
    await strict.close();
    const open = new HttpSource('http', { policy: { allowPrivate: true } });
    const o = await open.open({ bucket: a.host, key: 'x.bin' }, { signal: signal() });
    o.body.resume();
    expect(o.length).toBe(6);
    await open.close();
  });

  it('refuses hosts outside the allow-list, and redirects that leave it', async () => {
    const src = new HttpSource('http', { policy: { allowHosts: [`127.0.0.1:${a.port}`], allowPrivate: true } });
    expect((await refused(src, new URL(`${b.url}/x.bin`))).code).toBe('ERR_HOST_NOT_ALLOWED');
    const seenB = b.requests.length;
    a.fault = (req) => ((req.url ?? '').startsWith('/hop') ? { redirect: `${b.url}/x.bin` } : undefined);
    const e = await refused(src, new URL(`${a.url}/hop`));
    expect(e.code).toBe('ERR_HOST_NOT_ALLOWED');
    expect(e.message).toMatch(/not allowed/);
    expect(b.requests.length).toBe(seenB);
    a.fault = undefined;
    await src.close();
  });

  it('follows redirects the policy allows, keeping the range', async () => {
    const src = new HttpSource('http', { policy: { allowPrivate: true } });
    a.fault = (req) => ((req.url ?? '').startsWith('/hop') ? { redirect: `${b.url}/x.bin`, status: 307 } : undefined);
    const o = await src.open({ bucket: a.host, key: 'hop' }, { signal: signal(), range: { start: 5, length: 1 } });
    const chunks: Buffer[] = [];
    for await (const c of o.body as AsyncIterable<Buffer>) chunks.push(c);
    expect(Buffer.concat(chunks).toString()).toBe('b');
    expect(b.requests.at(-1)?.headers.range).toBe('bytes=5-5');
    a.fault = undefined;
    await src.close();
  });

  it('classifies addresses', () => {
    for (const ip of ['127.0.0.1', '10.1.2.3', '172.16.0.1', '172.31.255.255', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '::1', '::', 'fe80::1', 'fd00::1', '::ffff:127.0.0.1', '::ffff:10.0.0.1', '224.0.0.1']) {
      expect(isPrivateAddress(ip), ip).toBe(true);
    }
    for (const ip of ['8.8.8.8', '172.32.0.1', '1.1.1.1', '2001:4860:4860::8888', '::ffff:8.8.8.8']) {
      expect(isPrivateAddress(ip), ip).toBe(false);
    }
  });

  it('matches host patterns: exact, wildcard, with and without port', () => {
    const u = (s: string) => new URL(s);
    expect(hostAllowed(u('https://data.example.com/x'), ['data.example.com'])).toBe(true);
    expect(hostAllowed(u('https://data.example.com:8443/x'), ['data.example.com:443'])).toBe(false);
    expect(hostAllowed(u('https://data.example.com/x'), ['data.example.com:443'])).toBe(true);
    expect(hostAllowed(u('https://a.b.example.com/x'), ['*.example.com'])).toBe(true);
    expect(hostAllowed(u('https://example.com/x'), ['*.example.com'])).toBe(false);
    expect(hostAllowed(u('https://evilexample.com/x'), ['*.example.com'])).toBe(false);
    expect(hostAllowed(u('http://[::1]:8080/x'), ['[::1]:8080'])).toBe(true);
    expect(hostAllowed(u('http://[::1]:8080/x'), ['[::1]'])).toBe(true);
  });
});

describe('serve: http entries under the server policy', () => {
  let srv: TestServer;
  afterAll(async () => srv?.close());

  it('refuses a private upstream unless --allow-private, naming the entry', async () => {
    srv = await listen({ sources: { http: { allowHosts: [`127.0.0.1:${a.port}`] } } });
    const body = JSON.stringify({ in: [{ uri: `${a.url}/x.bin` }], strm: true });
    const res = await fetch(`${srv.url}/v1/ml/moss`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
    expect(res.status).toBe(403);
    const err = (await res.json()) as { error: { code: string; message: string } };
    expect(err.error.code).toBe('ERR_HOST_NOT_ALLOWED');
    expect(err.error.message).toContain(`http://127.0.0.1:${a.port}/x.bin`);
    await srv.close();

    srv = await listen({ sources: { http: { allowHosts: [`127.0.0.1:${a.port}`], allowPrivate: true } } });
    const ok = await fetch(`${srv.url}/v1/ml/moss`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
    expect(ok.status).toBe(200);
    expect((await ok.arrayBuffer()).byteLength).toBe(512 * 2 + 512 * 2);
  });

  it('counts upstream operations and bytes in /metrics, through the metrics layer', async () => {
    const metrics = await (await fetch(`${srv.url}/metrics`)).text();
    expect(metrics).toMatch(/^ojs_ml_upstream_requests_total\{provider="http",op="open",outcome="ok"\} 1$/m);
    expect(metrics).toMatch(/^ojs_ml_upstream_requests_total\{provider="http",op="read",outcome="ok"\} 1$/m);
    expect(metrics).toMatch(/^ojs_ml_upstream_bytes_total\{provider="http"\} 6$/m);
    expect(metrics).toMatch(/^ojs_ml_upstream_request_duration_seconds_count\{provider="http",op="open"\} 1$/m);
  });
});
