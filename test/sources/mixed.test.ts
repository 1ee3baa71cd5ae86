/**
 * One batch across all six providers (file, s3, gs, az, hf, http), through the registry and its
 * default layers: one archive, entries in request order, every byte exact, read back by Python's
 * tarfile. The same batch through the CLI, configured only by the providers' environment
 * variables (AWS_ENDPOINT_URL_S3, STORAGE_EMULATOR_HOST, AZURE_STORAGE_CONNECTION_STRING,
 * HF_ENDPOINT, HF_TOKEN).
 */
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBatch } from '../../src/batch/engine.js';
import { SourceRegistry } from '../../src/sources/registry.js';
import { parseBatchRequest } from '../../src/spec/request.js';
import { startAll, REMOTE, type AllServers } from '../helpers/servers/all.js';
import { pythonTarMembers, run, CLI, tmpDir, writeTree } from '../helpers/tools.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let all: AllServers;
let work: string;
const objects: Record<string, Buffer> = {
  'a.bin': randomBytes(1000),
  'big/b.bin': randomBytes(3 << 20),
  'empty.bin': Buffer.alloc(0),
  'with space/ünï.txt': Buffer.from('spaces and unicode\n'),
};

beforeAll(async () => {
  all = await startAll();
  for (const [k, v] of Object.entries(objects)) await all.seed(k, v);
  work = tmpDir('ojs-ml-mixed-');
  writeTree(path.join(work, 'root'), objects);
}, 60_000);
afterAll(async () => {
  await all?.stop();
  fs.rmSync(work, { recursive: true, force: true });
});

interface Want {
  uri: string;
  bytes: Buffer;
  start?: number;
  length?: number;
}

/** Every object from every provider, interleaved, with a range per provider. */
function batch(): Want[] {
  const want: Want[] = [];
  const providers = ['file', ...REMOTE] as const;
  for (const [i, key] of Object.keys(objects).entries()) {
    for (const p of providers) {
      const uri = p === 'file' ? `file://${path.join(work, 'root', key)}` : all.uri(p, key);
      want.push({ uri, bytes: objects[key]! });
    }
    if (i === 1) for (const p of providers) want.push({ uri: p === 'file' ? `file://${path.join(work, 'root', key)}` : all.uri(p, key), bytes: objects[key]!.subarray(1000, 1000 + 4321), start: 1000, length: 4321 });
  }
  return want;
}

function spec(want: Want[]): Record<string, unknown> {
  return { in: want.map((w) => ({ uri: w.uri, ...(w.start === undefined ? {} : { start: w.start, length: w.length }) })) };
}

async function checkTar(file: string, want: Want[]): Promise<void> {
  const members = await pythonTarMembers(file);
  expect(members.map((m) => m.sha256)).toEqual(want.map((w) => sha(w.bytes)));
  expect(members.map((m) => m.size)).toEqual(want.map((w) => w.bytes.length));
}

describe('a batch across every provider', () => {
  it('yields one correct archive through the engine and the registry layers', async () => {
    const want = batch();
    const registry = new SourceRegistry({ ...all.config(), file: { roots: {}, allowAbsolute: true } });
    const req = parseBatchRequest(spec(want));
    const run = runBatch(req, registry);
    const chunks: Buffer[] = [];
    for await (const c of run.stream) chunks.push(c as Buffer);
    const result = await run.result;
    expect(result.out).toHaveLength(want.length);
    const file = path.join(work, 'mixed.tar');
    fs.writeFileSync(file, Buffer.concat(chunks));
    await checkTar(file, want);
    await registry.close();
  });

  it('yields the same archive through the CLI, configured by environment variables', async () => {
    const want = batch();
    const specFile = path.join(work, 'mixed.json');
    fs.writeFileSync(specFile, JSON.stringify(spec(want)));
    const out = path.join(work, 'mixed-cli.tar');
    const r = await run(process.execPath, [CLI, 'get-batch', '--spec', specFile, '--nv', out], { env: all.env() });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    await checkTar(out, want);
  });
});
