/**
 * The streamed response gathers chunks into large writes (src/server/respond.ts, WriteBatch);
 * bytes that are ready must still leave at once when the next entry is slow to come, not wait
 * for the batch to fill.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SourceRegistry } from '../../src/sources/registry.js';
import { FileSource } from '../../src/sources/file.js';
import type { ObjectRef, ObjectSource, OpenOptions, OpenedObject } from '../../src/sources/types.js';
import { OjsError } from '../../src/spec/errors.js';
import { run, tmpDir, writeTree } from '../helpers/tools.js';
import { listen, type TestServer } from './helpers.js';

const FIRST = 300_000; // under the write batch (1 MiB): only the flush at the end of a turn sends it
const HELD = 5_000;

/** An http-provider stand-in whose one object opens only when the test lets it. */
class HeldSource implements ObjectSource {
  readonly provider = 'http' as const;
  readonly capabilities = { ranges: false, list: false, conditionalRead: false, network: true };
  release!: () => void;
  private readonly gate = new Promise<void>((resolve) => (this.release = resolve));
  readonly bytes = randomBytes(HELD);
  stat(): never {
    throw new OjsError('Unsupported', 'not in this test');
  }
  list(): never {
    throw new OjsError('Unsupported', 'not in this test');
  }
  async open(_ref: ObjectRef, opts: OpenOptions): Promise<OpenedObject> {
    await this.gate;
    if (opts.signal.aborted) throw new OjsError('Aborted', 'aborted');
    return { length: HELD, size: HELD, range: { offset: 0, length: HELD }, body: Readable.from([this.bytes]) };
  }
}

let work: string;
let server: TestServer;
let held: HeldSource;
let first: Buffer;

beforeAll(async () => {
  work = tmpDir('ojs-ml-server-flush-');
  first = writeTree(path.join(work, 'data'), { 'first.bin': randomBytes(FIRST) })['first.bin']!;
  held = new HeldSource();
  const registry = new SourceRegistry().register(new FileSource({ roots: { data: path.join(work, 'data') } })).register(held);
  server = await listen({ sources: registry });
});
afterAll(async () => {
  held.release();
  await server.close();
  fs.rmSync(work, { recursive: true, force: true });
});

describe('serve: streamed writes', () => {
  it('an entry that is ready goes out while the next one is still opening', async () => {
    const body = JSON.stringify({ in: [{ objname: 'first.bin', bucket: 'data', provider: 'file' }, { uri: 'http://held.test/x.bin' }], strm: true });
    const chunks: Buffer[] = [];
    let got = 0;
    let reached!: () => void;
    const firstArrived = new Promise<void>((resolve) => (reached = resolve));
    const done = new Promise<void>((resolve, reject) => {
      const req = http.request(`${server.url}/v1/ml/moss`, { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }, agent: false });
      req.on('error', reject);
      req.on('response', (res) => {
        res.on('data', (c: Buffer) => {
          chunks.push(c);
          got += c.length;
          if (got >= 512 + FIRST) reached();
        });
        res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`HTTP ${res.statusCode}: ${Buffer.concat(chunks).toString()}`))));
        res.on('error', reject);
      });
      req.end(body);
    });
    // The held entry does not open until the first one's bytes are here: corked bytes that
    // waited for more would never arrive, and this would time out.
    await Promise.race([firstArrived, done]);
    held.release();
    await done;
    const tar = Buffer.concat(chunks);
    expect(tar.subarray(512, 512 + FIRST).equals(first)).toBe(true);
    const list = await run('tar', ['-t', '-f', '-'], { input: tar });
    expect(list.code).toBe(0);
    expect(list.stdout.toString().trim().split('\n')).toEqual(['data/first.bin', 'held.test/x.bin']);
  }, 10_000);
});
