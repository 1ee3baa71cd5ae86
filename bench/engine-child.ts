/**
 * Runs one batch through the library (dist/src/index.js) in this fresh process, counting the
 * archive's bytes into a null sink, and prints one JSON line: archive bytes, payload bytes, bytes
 * the file source delivered, seconds (module loading excluded) and the process's peak RSS (KiB).
 * Usage: node dist/bench/engine-child.js BUCKET DIR SPEC_JSON
 */
import * as fs from 'node:fs';
import { SourceRegistry, parseBatchRequest, readChunks, runBatch } from '../src/index.js';

const [bucket, root, spec] = process.argv.slice(2);
if (bucket === undefined || root === undefined || spec === undefined) throw new Error('usage: engine-child BUCKET DIR SPEC_JSON');
const t0 = process.hrtime.bigint();
const req = parseBatchRequest(JSON.parse(fs.readFileSync(spec, 'utf8')), { bucket, provider: 'file' });
const registry = new SourceRegistry({ file: { roots: { [bucket]: root } } });
// Bytes the source delivers, to measure ranged reads of shards: every open is counted.
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
// Counted, a chunk is done with: it goes back to the read pool, as serve and the CLI give theirs
// back once written (so the process's garbage is what those leave, not a worse one).
run.stream.on('data', (c: Buffer) => {
  bytes += c.length;
  readChunks.give(c);
});
const [result] = await Promise.all([run.result, new Promise((resolve, reject) => run.stream.once('end', resolve).once('error', reject))]);
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
const report = { bytes, payloadBytes: result.progress.bytes, entries: result.progress.done, sourceBytes, seconds, maxRssKiB: process.resourceUsage().maxRSS };
process.stdout.write(`${JSON.stringify(report)}\n`);
