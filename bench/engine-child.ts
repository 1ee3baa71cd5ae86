/**
 * Runs one batch through the engine in this (fresh) process and prints, as JSON, the archive
 * bytes, the bytes read from the source, the seconds the batch took (module loading excluded)
 * and the process's peak RSS.
 * Usage: node dist/bench/engine-child.js ROOT_DIR SPEC_JSON
 */
import * as fs from 'node:fs';
import { runBatch } from '../src/batch/engine.js';
import { SourceRegistry } from '../src/sources/registry.js';
import { parseBatchRequest } from '../src/spec/request.js';

const [root, spec] = process.argv.slice(2);
if (root === undefined || spec === undefined) throw new Error('usage: engine-child ROOT_DIR SPEC_JSON');
const t0 = process.hrtime.bigint();
const req = parseBatchRequest(JSON.parse(fs.readFileSync(spec, 'utf8')), { bucket: 'd', provider: 'file' });
// Bytes the source delivered (to measure ranged reads of shards); every open is counted.
const registry = new SourceRegistry({ file: { roots: { d: root } } });
const file = registry.get('file');
let sourceBytes = 0;
registry.register({
  provider: 'file',
  capabilities: file.capabilities,
  stat: (ref, o) => file.stat(ref, o),
  list: (b, p, o) => file.list(b, p, o),
  open: async (ref, o) => {
    const opened = await file.open(ref, o);
    sourceBytes += opened.length;
    return opened;
  },
});
const run = runBatch(req, registry);
let bytes = 0;
run.stream.on('data', (c: Buffer) => {
  bytes += c.length;
});
await Promise.all([run.result, new Promise((resolve, reject) => run.stream.once('end', resolve).once('error', reject))]);
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
process.stdout.write(JSON.stringify({ bytes, seconds, sourceBytes, maxRssKiB: process.resourceUsage().maxRSS }));
