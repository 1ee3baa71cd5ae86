// `npm run example`: one get-batch over the bundled sample data, then a listing of what came out.
// Needs only Node (npm ci builds dist/ through the prepare script).
import { spawnSync } from 'node:child_process';
import { createReadStream, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import tarStream from 'tar-stream';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(repo, 'dist/cli/main.js');
if (!existsSync(cli)) {
  console.error('dist/ is missing: run `npm ci` (or `npm run build`) first');
  process.exit(1);
}
const outDir = path.join(repo, 'example-out');
mkdirSync(outDir, { recursive: true });
const archive = path.join(outDir, 'batch.tar');
const metadata = path.join(outDir, 'batch.json');

const args = ['get-batch', '--root', 'demo=examples/data', '--spec', 'examples/batch.yaml', '--metadata', metadata, '--yes', archive];
console.log(`$ ojs-ml ${args.map((a) => (a.includes(' ') ? `'${a}'` : a)).join(' ')}`);
const r = spawnSync(process.execPath, [cli, ...args], { cwd: repo, stdio: 'inherit' });
if (r.status !== 0) process.exit(r.status ?? 1);

const meta = JSON.parse(readFileSync(metadata, 'utf8'));
const extract = tarStream.extract();
const rows = [];
extract.on('entry', (header, stream, next) => {
  rows.push(header);
  stream.on('end', next);
  stream.resume();
});
await new Promise((resolve, reject) => {
  extract.on('finish', resolve);
  extract.on('error', reject);
  createReadStream(archive).pipe(extract);
});

console.log(`\nThe archive, in request order (${rows.length} entries):`);
rows.forEach((h, i) => {
  const err = meta.out[i]?.err_msg ? `   <- ${meta.out[i].err_msg}` : '';
  console.log(`  ${String(h.size).padStart(6)}  ${h.name}${err}`);
});
console.log(`\nArchive:  ${archive}\nMetadata: ${metadata}\nTry: tar tvf ${path.relative(process.cwd(), archive)}`);
