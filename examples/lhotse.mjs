// `npm run example:lhotse`: a Lhotse cut manifest over the bundled sample WAVs, then
// lhotse-get-batch three ways (one archive, batches, Shar), and what came out.
// Needs only Node (npm ci builds dist/ through the prepare script).
import { spawnSync } from 'node:child_process';
import { createReadStream, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import path from 'node:path';
import tarStream from 'tar-stream';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(repo, 'dist/cli/main.js');
if (!existsSync(cli)) {
  console.error('dist/ is missing: run `npm ci` (or `npm run build`) first');
  process.exit(1);
}
const out = path.join(repo, 'example-out', 'lhotse');
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

// Each sample is 0.25 s of 16 kHz 16-bit mono; two cuts per recording, the second starting between
// two samples (Lhotse rounds 0.10003125 s * 16000 = 1600.5 up to 1601).
const cuts = [];
for (const n of ['0001', '0002', '0003']) {
  const source = path.join(repo, 'examples/data/audio', `utt-${n}.wav`);
  const recording = { id: `utt-${n}`, sources: [{ type: 'file', channels: [0], source }], sampling_rate: 16000, num_samples: 4000, duration: 0.25, channel_ids: [0] };
  for (const [k, start, duration] of [[0, 0, 0.1], [1, 0.10003125, 0.125]]) {
    const id = `utt-${n}-seg-${k}`;
    cuts.push({ id, start, duration, channel: 0, supervisions: [{ id, recording_id: recording.id, start: 0, duration, channel: 0, text: 'HELLO' }], recording, type: 'MonoCut' });
  }
}
const manifest = path.join(out, 'cuts.jsonl.gz');
writeFileSync(manifest, gzipSync(cuts.map((c) => JSON.stringify(c)).join('\n') + '\n'));
console.log(`Wrote ${path.relative(repo, manifest)}: ${cuts.length} cuts over 3 recordings\n`);

function ojs(args) {
  console.log(`$ ojs-ml ${args.map((a) => (/[ {}]/.test(a) ? `'${a}'` : a)).join(' ')}`);
  const r = spawnSync(process.execPath, [cli, ...args], { cwd: repo, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

async function list(file) {
  const rows = [];
  const extract = tarStream.extract();
  extract.on('entry', (h, stream, next) => {
    const chunks = [];
    stream.on('data', (c) => chunks.push(c));
    stream.on('end', () => {
      const b = Buffer.concat(chunks);
      const wav = b.toString('latin1', 0, 4) === 'RIFF' ? `  ${(b.length - 44) / 2} samples after a 44-byte header` : '';
      rows.push(`  ${String(h.size).padStart(6)}  ${h.name}${wav}`);
      next();
    });
  });
  await new Promise((resolve, reject) => {
    extract.on('finish', resolve);
    extract.on('error', reject);
    createReadStream(file).pipe(extract);
  });
  console.log(`${path.relative(repo, file)}:\n${rows.join('\n')}\n`);
}

const rel = (p) => path.relative(repo, p);
ojs(['lhotse-get-batch', '--cuts', rel(manifest), rel(path.join(out, 'cuts.tar'))]);
await list(path.join(out, 'cuts.tar'));

ojs(['lhotse-get-batch', '--cuts', rel(manifest), '--batch-size', '4', '--output-template', rel(path.join(out, 'batch-{00..99}.tar'))]);
ojs(['lhotse-get-batch', '--cuts', rel(manifest), '--batch-size', '4', '--output-template', rel(path.join(out, 'batch-{00..99}.tar'))]); // resumes: keeps both
await list(path.join(out, 'batch-01.tar'));

ojs(['lhotse-get-batch', '--cuts', rel(manifest), '--shar', rel(path.join(out, 'shar')), '--batch-size', '4']);
console.log(`${rel(path.join(out, 'shar'))}: ${readdirSync(path.join(out, 'shar')).join(', ')}`);
await list(path.join(out, 'shar', 'recording.000000.tar'));
