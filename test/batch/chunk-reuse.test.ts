/**
 * A batch of large files, read by a consumer that gives its chunks back (as serve and the CLI
 * do), runs on the chunks the last batch left: the pool keeps as many as a batch has out at once.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { setImmediate as turn } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBatch } from '../../src/batch/engine.js';
import { chunksOf, readChunks } from '../../src/sources/chunks.js';
import { FileSource } from '../../src/sources/file.js';
import { SourceRegistry } from '../../src/sources/registry.js';
import { parseBatchRequest } from '../../src/spec/request.js';
import { sha256, tmpDir } from '../helpers/tools.js';

const FILES = 120; // 1 MiB each: enough for the read-ahead window and the entries opened ahead to fill
const FILE_BYTES = 1 << 20;

let work: string;
let registry: SourceRegistry;
const sums: string[] = [];

beforeAll(() => {
  work = tmpDir('ojs-ml-chunk-reuse-');
  fs.mkdirSync(path.join(work, 'data'));
  for (let i = 0; i < FILES; i++) {
    const b = randomBytes(FILE_BYTES);
    sums.push(sha256(b));
    fs.writeFileSync(path.join(work, 'data', `f${i}.bin`), b);
  }
  registry = new SourceRegistry().register(new FileSource({ roots: { data: path.join(work, 'data') } }));
});
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

/** One batch to a consumer that checks each body, gives every chunk back, and lets the reads run ahead. */
async function batch(): Promise<void> {
  const req = parseBatchRequest({ in: Array.from({ length: FILES }, (_, i) => ({ objname: `f${i}.bin` })) }, { bucket: 'data', provider: 'file' });
  const run = runBatch(req, registry);
  const tar: Buffer[] = [];
  let n = 0;
  // chunksOf, not the stream's own iterator: that one joins what is buffered into new buffers.
  const chunks = chunksOf(run.stream);
  for (let r = await chunks.next(); !r.done; r = await chunks.next()) {
    const c = r.value;
    tar.push(Buffer.from(c)); // a copy: the chunk itself goes back, to be read into again
    readChunks.give(c);
    if (++n % 4 === 0) await turn();
  }
  await run.result;
  const all = Buffer.concat(tar);
  for (let i = 0; i < FILES; i++) {
    const at = i * (512 + FILE_BYTES) + 512;
    expect(sha256(all.subarray(at, at + FILE_BYTES))).toBe(sums[i]);
  }
}

describe('read chunks across batches', () => {
  it('a second batch of 1 MiB files allocates (almost) no fresh chunks', async () => {
    await batch();
    const before = readChunks.allocated;
    expect(before).toBeGreaterThan(64); // the batch had more out at once than the old limit kept
    await batch();
    expect(readChunks.allocated - before).toBeLessThanOrEqual(8);
  }, 60_000);
});
