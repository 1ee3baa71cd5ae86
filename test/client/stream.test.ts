/**
 * BatchStreamClient: the reused-buffer reader of streamed batches, against `ojs-ml serve` on a
 * real socket (bytes identical to requestBatch's, keep-alive, backpressure, errors, abort), and
 * against small raw TCP servers for what a real server rarely does (odd framing, cuts, stale
 * keep-alive connections). GNU tar reads what it received.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requestBatch } from '../../src/client/http.js';
import { BatchStreamClient, ResponseParser, streamBatch } from '../../src/client/stream.js';
import { SourceRegistry } from '../../src/sources/registry.js';
import type { MossReq } from '../../src/spec/request.js';
import { CountingSource, listen, type TestServer } from '../server/helpers.js';
import { run, sha256, tmpDir, writeTree } from '../helpers/tools.js';
import { failure } from '../helpers/errors.js';

let work: string;
let files: Record<string, Buffer>;
let server: TestServer;

beforeAll(async () => {
  work = tmpDir('ojs-ml-stream-');
  const data = path.join(work, 'data');
  files = writeTree(data, {
    'a.bin': randomBytes(5000),
    'big.bin': randomBytes(3 << 20),
    'empty.bin': Buffer.alloc(0),
    'x-fail-after-100000.bin': randomBytes(1 << 20),
  });
  server = await listen({ sources: new SourceRegistry().register(new CountingSource({ data })) });
});
afterAll(async () => {
  await server.close();
  fs.rmSync(work, { recursive: true, force: true });
});

const req = (names: string[], extra: Partial<MossReq> = {}): MossReq => ({ in: names.map((objname) => ({ objname })), ...extra });

async function undiciBytes(r: MossReq): Promise<Buffer> {
  const res = await requestBatch(server.url, { ...r, strm: true }, { bucket: 'data' });
  const parts: Buffer[] = [];
  for await (const c of res.archive as AsyncIterable<Buffer>) parts.push(c);
  return Buffer.concat(parts);
}

describe('BatchStreamClient against ojs-ml serve', () => {
  it('the same archive bytes as requestBatch, batch after batch on one connection; tar reads them', async () => {
    const client = new BatchStreamClient(server.url, { bucket: 'data' });
    const peers = new Set<number>();
    const onConnection = (s: net.Socket) => peers.add(s.remotePort ?? 0);
    server.app.server.on('connection', onConnection);
    const reqs = [req(['big.bin', 'a.bin', 'empty.bin', 'big.bin']), req(['a.bin']), req(['a.bin', 'big.bin'], { mime: '.tar.lz4' })];
    const got: { bytes: Buffer; r: Awaited<ReturnType<BatchStreamClient['stream']>> }[] = [];
    try {
      for (const r of reqs) {
        const parts: Buffer[] = [];
        const res = await client.stream(r, (c) => void parts.push(Buffer.from(c)));
        got.push({ bytes: Buffer.concat(parts), r: res });
      }
    } finally {
      client.close();
      server.app.server.off('connection', onConnection);
    }
    expect(peers.size).toBe(1);
    for (const [i, r] of reqs.entries()) {
      const { bytes, r: res } = got[i]!;
      expect(sha256(bytes)).toBe(sha256(await undiciBytes(r)));
      expect(res.bytes).toBe(bytes.length);
      expect(res.summary).toMatchObject({ entries: r.in.length, missing: 0, bytes: bytes.length });
      expect(res.format).toBe(r.mime === undefined ? 'tar' : 'tar.lz4');
    }
    const out = path.join(work, 'one.tar');
    const parts: Buffer[] = [];
    await streamBatch(server.url, req(['a.bin', 'big.bin']), (c) => void parts.push(Buffer.from(c)), { bucket: 'data' });
    fs.writeFileSync(out, Buffer.concat(parts));
    const listed = await run('tar', ['-tvf', out]);
    expect(listed.code).toBe(0);
    expect(listed.stdout.toString()).toMatch(/data\/big\.bin/);
  });

  it('a handler that returns a promise holds the stream: its view stays intact until it settles', async () => {
    const parts: Buffer[] = [];
    let calls = 0;
    await streamBatch(
      server.url,
      req(['big.bin', 'big.bin']),
      (c) =>
        new Promise<void>((resolve) => {
          calls++;
          // Copied only after a macrotask: had the socket kept reading, these bytes would be new ones.
          setTimeout(() => {
            parts.push(Buffer.from(c));
            resolve();
          }, 1);
        }),
      { bucket: 'data' },
    );
    expect(calls).toBeGreaterThan(1);
    expect(sha256(Buffer.concat(parts))).toBe(sha256(await undiciBytes(req(['big.bin', 'big.bin']))));
  });

  it("errors: the server's own, a batch cut mid-stream, an unreachable server, an abort", async () => {
    const opts = { bucket: 'data' };
    expect(await failure(streamBatch(server.url, req(['nope.bin']), () => undefined, opts))).toMatchObject({ code: 'ERR_NOT_FOUND', kind: 'NotFound' });
    let seen = 0;
    const cut = await failure(streamBatch(server.url, req(['big.bin', 'x-fail-after-100000.bin', 'a.bin']), (c) => void (seen += c.length), opts));
    expect(cut.code).toBe('ERR_BATCH_CUT');
    expect(seen).toBeGreaterThan(files['big.bin']!.length);
    expect(await failure(streamBatch('http://127.0.0.1:1', req(['a.bin']), () => undefined))).toMatchObject({ code: 'ERR_UNREACHABLE' });
    const ac = new AbortController();
    const many = req(Array.from({ length: 50 }, () => 'big.bin'));
    const aborted = await failure(streamBatch(server.url, many, () => ac.abort(), { ...opts, signal: ac.signal }));
    expect(aborted.kind).toBe('Aborted');
    // A handler's own error comes back as it is.
    const mine = new Error('mine');
    await expect(
      streamBatch(server.url, req(['big.bin']), () => {
        throw mine;
      }, opts),
    ).rejects.toBe(mine);
  });
});

/** A TCP server that answers every request on a connection with `answer(n)` (n counts requests). */
async function rawServer(answer: (socket: net.Socket, n: number, head: string) => void): Promise<{ url: string; close(): Promise<void>; connections: () => number }> {
  let connections = 0;
  const open = new Set<net.Socket>();
  const srv = net.createServer((socket) => {
    connections++;
    open.add(socket);
    socket.once('close', () => open.delete(socket));
    let n = 0;
    let head = '';
    socket.on('data', (d) => {
      head += d.toString('latin1');
      // The test requests are small: one read holds head and body; answer once per request.
      const m = /content-length: (\d+)\r\n/i.exec(head);
      const headEnd = head.indexOf('\r\n\r\n');
      if (m === null || headEnd < 0) return;
      const end = headEnd + 4 + Number(m[1]);
      if (head.length < end) return;
      const request = head.slice(0, headEnd);
      head = head.slice(end);
      answer(socket, n++, request);
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    connections: () => connections,
    close: () =>
      new Promise((r) => {
        for (const s of open) s.destroy();
        srv.close(() => r());
      }),
  };
}

const OK_HEAD = 'HTTP/1.1 200 OK\r\ncontent-type: application/x-tar\r\ntransfer-encoding: chunked\r\ntrailer: X-Ojs-Batch-Bytes\r\n\r\n';

describe('BatchStreamClient against raw servers', () => {
  it('chunk extensions, trailers and a counted body; a trailer that disagrees with the bytes is an error', async () => {
    const heads: string[] = [];
    const srv = await rawServer((s, n, head) => {
      heads.push(head);
      if (n === 0) s.write(`${OK_HEAD}5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Ojs-Batch-Bytes: 11\r\nX-Ojs-Batch-Entries: 2\r\n\r\n`);
      else if (n === 1) s.write('HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc');
      else s.write(`${OK_HEAD}3\r\nabc\r\n0\r\nX-Ojs-Batch-Bytes: 4\r\n\r\n`);
    });
    const client = new BatchStreamClient(srv.url, { headers: { 'Content-Length': '1', 'X-Extra': 'yes' } });
    try {
      let text = '';
      const a = await client.stream(req(['x']), (c) => void (text += c.toString()));
      expect([text, a.bytes, a.summary.entries]).toEqual(['hello world', 11, 2]);
      text = '';
      expect((await client.stream(req(['x']), (c) => void (text += c.toString()))).bytes).toBe(3);
      expect(text).toBe('abc');
      expect((await failure(client.stream(req(['x']), () => undefined))).code).toBe('ERR_BATCH_CUT');
      expect(srv.connections()).toBe(1);
      // The caller's headers go out, but a Content-Length of theirs does not replace ours.
      expect(heads[0]!.match(/^content-length:/gim)).toHaveLength(1);
      expect(heads[0]).toMatch(/^x-extra: yes$/m);
    } finally {
      client.close();
      await srv.close();
    }
  });

  it('an HTTP/1.0 answer without a length ends with its connection; a counted body cut short is an error', async () => {
    for (const [wire, want] of [
      ['HTTP/1.0 200 OK\r\ncontent-type: application/x-tar\r\n\r\nabc', 3],
      ['HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc', 'ERR_BATCH_CUT'],
    ] as const) {
      const srv = await rawServer((s) => s.end(wire));
      try {
        const p = streamBatch(srv.url, req(['x']), () => undefined);
        if (typeof want === 'number') expect((await p).bytes).toBe(want);
        else expect((await failure(p)).code).toBe(want);
      } finally {
        await srv.close();
      }
    }
  });

  it('a connection that closes inside the chunked body is a cut batch, not a shorter one', async () => {
    const srv = await rawServer((s) => {
      s.write(`${OK_HEAD}400\r\n${'x'.repeat(1024)}\r\n400\r\n${'y'.repeat(10)}`);
      s.end();
    });
    try {
      let seen = 0;
      const e = await failure(streamBatch(srv.url, req(['x']), (c) => void (seen += c.length)));
      expect(e.code).toBe('ERR_BATCH_CUT');
      expect(seen).toBe(1034);
    } finally {
      await srv.close();
    }
  });

  it('garbled framing is a clear error', async () => {
    for (const bad of [`${OK_HEAD}zz\r\nabc\r\n`, `${OK_HEAD}3\r\nabcX\r\n0\r\n\r\n`, 'SMTP ready\r\n\r\n', 'HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n']) {
      const srv = await rawServer((s) => s.write(bad));
      try {
        expect((await failure(streamBatch(srv.url, req(['x']), () => undefined))).code).toBe('ERR_BAD_RESPONSE');
      } finally {
        await srv.close();
      }
    }
  });

  it('a kept-alive connection the server closed meanwhile is replaced, once', async () => {
    const srv = await rawServer((s) => {
      s.write(`${OK_HEAD}2\r\nok\r\n0\r\n\r\n`);
      s.end(); // keep-alive said, then not kept: the next batch finds the connection dead
    });
    const client = new BatchStreamClient(srv.url);
    try {
      for (let i = 0; i < 3; i++) expect((await client.stream(req(['x']), () => undefined)).bytes).toBe(2);
      expect(srv.connections()).toBe(3);
    } finally {
      client.close();
      await srv.close();
    }
  });
});

describe('ResponseParser', () => {
  it('reads the same response split at every byte', () => {
    const wire = Buffer.from(`HTTP/1.1 100 Continue\r\n\r\n${OK_HEAD}4\r\nabcd\r\n1A\r\n${'z'.repeat(26)}\r\n0\r\nX-Ojs-Batch-Bytes: 30\r\n\r\n`);
    for (let cut = 1; cut < wire.length; cut++) {
      let body = '';
      let trailers: Map<string, string> | undefined;
      const p = new ResponseParser({
        head: (status) => expect(status).toBe(200),
        body: (v) => void (body += v.toString()),
        complete: (t) => (trailers = t),
      });
      // Each piece from a buffer of its own, with stale bytes after it (a reused read buffer).
      for (const [from, to] of [
        [0, cut],
        [cut, wire.length],
      ] as const) {
        const buf = Buffer.concat([wire.subarray(from, to), Buffer.from('\n\r\nGARBAGE')]);
        expect(p.execute(buf, 0, to - from).at).toBe(to - from);
      }
      expect(p.done).toBe(true);
      expect(body).toBe(`abcd${'z'.repeat(26)}`);
      expect(trailers?.get('x-ojs-batch-bytes')).toBe('30');
    }
  });
});

describe('BatchStreamClient with a handler that returns promises', () => {
  it('the connection goes on to the next batch after the last chunk was held (it used to stay paused)', async () => {
    const client = new BatchStreamClient(server.url, { bucket: 'data' });
    try {
      for (let i = 0; i < 3; i++) {
        let bytes = 0;
        const r = await client.stream(req(['a.bin', 'big.bin']), async (c) => {
          bytes += c.length;
          await new Promise((resolve) => setImmediate(resolve));
        });
        expect(r.bytes).toBe(bytes);
        expect(bytes).toBeGreaterThan(3 << 20);
      }
    } finally {
      client.close();
    }
  }, 10_000);
});
