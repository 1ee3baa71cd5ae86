import { randomBytes } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { HttpSource } from '../../src/sources/http.js';
import { SourceRegistry } from '../../src/sources/registry.js';
import { sourceConformance } from '../conformance/source.suite.js';
import { startFileServer } from '../helpers/servers/files.js';

sourceConformance('http (local file server)', async () => {
  const server = await startFileServer();
  const source = new HttpSource('http', { policy: { allowPrivate: true } });
  return {
    source,
    bucket: server.host,
    put: async (key, data) => server.put(key, data),
    upstream: server,
    cleanup: async () => {
      await source.close();
      await server.close();
    },
  };
});

// The same contract through everything the registry wraps a remote provider in.
sourceConformance('http (through the registry and its default layers)', async () => {
  const server = await startFileServer();
  const registry = new SourceRegistry({ http: { allowPrivate: true } });
  return {
    source: registry.get('http'),
    bucket: server.host,
    put: async (key, data) => server.put(key, data),
    upstream: server,
    cleanup: async () => {
      await registry.close();
      await server.close();
    },
  };
});

describe('http: a slow upstream', () => {
  it('passes on bytes that trickle in, without waiting for a full read chunk', async () => {
    const body = randomBytes(300 << 10); // streamed, not read whole (over SMALL_BODY_MAX)
    let release: () => void = () => undefined;
    const released = new Promise<void>((r) => (release = r));
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-length': String(body.length) });
      res.write(body.subarray(0, 1024));
      void released.then(() => res.end(body.subarray(1024)));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    const source = new HttpSource('http', { policy: { allowPrivate: true } });
    try {
      const o = await source.open({ bucket: `127.0.0.1:${port}`, key: 'slow.bin' }, { signal: new AbortController().signal });
      expect(o.bytes).toBeUndefined();
      const it = (o.body as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
      const first = await Promise.race([it.next(), new Promise<'late'>((r) => setTimeout(() => r('late'), 2000))]);
      expect(first).not.toBe('late');
      const parts = [(first as IteratorResult<Buffer>).value as Buffer];
      expect(parts[0]!.equals(body.subarray(0, 1024))).toBe(true);
      release();
      for (let r = await it.next(); r.done !== true; r = await it.next()) parts.push(r.value);
      expect(Buffer.concat(parts).equals(body)).toBe(true);
    } finally {
      release();
      await source.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});
