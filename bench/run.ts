/**
 * `npm run bench [-- --quick] [--repeats N] [--work DIR] [--only NAME]`
 *
 * Cases (issue 5):
 *   tar-10k   file -> TAR, 10,000 x 10 KiB, ojs-ml CLI vs GNU tar, both piped through `cat`
 *             (GNU tar skips reading file contents when its archive is /dev/null)
 *   tar-1m    the same with 1,000 x 1 MiB
 *   engine    the same batches through runBatch in a fresh process, module loading excluded
 *   tgz, lz4  TGZ / TAR.LZ4 of 256 x 1 MiB mixed files vs tar | gzip -1 / tar | lz4 -1 (issue 2)
 *   shard     bytes read to extract one member of a ~1 GiB TAR / ZIP shard (issue 2)
 *   rss       peak RSS of a 4 GiB batch (a 256 MiB file 16 times) streamed to a sink
 * Page cache is warm: every case runs once untimed first. Results: bench/results/latest.json
 * (rows { name, ours, baseline, unit, ratio, ... }) and a markdown table on stdout.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = path.join(REPO, 'dist/cli/main.js');
const CHILD = path.join(REPO, 'dist/bench/engine-child.js');
const RESULTS = path.join(REPO, 'bench/results');

const FULL = { small: 10_000, big: 1_000, mixed: 256, rssFileMiB: 256, rssRepeat: 16, repeats: 5 }; // issue 5's sizes
const QUICK = { small: 2_000, big: 200, mixed: 32, rssFileMiB: 64, rssRepeat: 16, repeats: 2 }; // under two minutes
const RSS_TARGET_MIB = 200; // acceptance: peak RSS of the 4 GiB batch under 200 MB

interface Args {
  quick: boolean;
  repeats?: number;
  work: string;
  only?: string;
}

export interface Row {
  name: string;
  ours: number;
  baseline: number | null;
  unit: string;
  ratio: number | null;
  /** What the ratio means for this row. */
  note: string;
  samples?: { ours: number[]; baseline: number[] };
  stats?: { ours: Stats; baseline: Stats | null };
}

interface Stats {
  min: number;
  median: number;
  max: number;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { quick: false, work: path.join(REPO, 'bench/work') };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i];
    if (v === '--quick') a.quick = true;
    else if (v === '--repeats') a.repeats = Number(argv[++i]);
    else if (v === '--work') a.work = path.resolve(argv[++i] ?? '');
    else if (v === '--only') a.only = argv[++i];
    else throw new Error(`unknown argument ${v}; use --quick, --repeats N, --work DIR, --only NAME`);
  }
  return a;
}

function stats(xs: number[]): Stats {
  const s = [...xs].sort((a, b) => a - b);
  return { min: s[0]!, median: s[Math.floor(s.length / 2)]!, max: s[s.length - 1]! };
}

/** A directory of `count` files of `size` random bytes (kept between runs), and its name list. */
/** Half incompressible, half JSON-lines-like text: what a compressor meets in ML data. */
function mixedBytes(i: number, size: number): Buffer {
  if (i % 2 === 0) return randomBytes(size);
  const line = `{"id": ${i}, "text": "the quick brown fox ${i % 97} jumps", "label": ${i % 7}, "score": 0.${i % 1000}}\n`;
  return Buffer.from(line.repeat(Math.ceil(size / line.length)).slice(0, size));
}

function dataset(root: string, name: string, count: number, size: number, content: (i: number, size: number) => Buffer = (_i, n) => randomBytes(n)): { dir: string; names: string[] } {
  const dir = path.join(root, `${name}-${count}x${size}`);
  const names = Array.from({ length: count }, (_, i) => `d${String(i % 100).padStart(2, '0')}/f${String(i).padStart(6, '0')}.bin`);
  const marker = path.join(dir, '.complete');
  if (!fs.existsSync(marker)) {
    process.stderr.write(`generating ${count} x ${size} B in ${dir}\n`);
    fs.rmSync(dir, { recursive: true, force: true });
    names.forEach((n, i) => {
      fs.mkdirSync(path.join(dir, path.dirname(n)), { recursive: true });
      fs.writeFileSync(path.join(dir, n), content(i, size));
    });
    fs.writeFileSync(marker, '');
  }
  return { dir, names };
}

function writeSpec(file: string, names: string[]): void {
  fs.writeFileSync(file, JSON.stringify({ in: names.map((objname) => ({ objname })) }));
}

/** Wall seconds of a shell pipeline; fails loudly if it fails. */
function timeShell(script: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn('bash', ['-o', 'pipefail', '-c', script], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('close', (code) => {
      const secs = Number(process.hrtime.bigint() - t0) / 1e9;
      if (code === 0) resolve(secs);
      else reject(new Error(`'${script}' failed (${code}): ${err}`));
    });
  });
}

interface ChildReport {
  bytes: number;
  sourceBytes: number;
  seconds: number;
  maxRssKiB: number;
}

/** Runs the engine in a fresh process over a spec; it reports bytes, batch seconds and peak RSS. */
function engineChild(root: string, spec: string): Promise<ChildReport> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, root, spec], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out) as ChildReport) : reject(new Error(`engine child failed: ${err}`))));
  });
}

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

async function throughputCase(name: string, data: { dir: string; names: string[] }, work: string, repeats: number): Promise<Row[]> {
  const spec = path.join(work, `${name}.spec.json`);
  const list = path.join(work, `${name}.list`);
  writeSpec(spec, data.names);
  fs.writeFileSync(list, `${data.names.join('\n')}\n`);
  const bytes = data.names.reduce((n, f) => n + fs.statSync(path.join(data.dir, f)).size, 0);
  const mib = bytes / (1 << 20);
  const ours = `node ${q(CLI)} get-batch d --root d=${q(data.dir)} --spec ${q(spec)} --nv - | cat > /dev/null`;
  const gnu = `tar cf - -C ${q(data.dir)} -T ${q(list)} | cat > /dev/null`;

  // The run must be right before it is timed: same names, same order as GNU tar's.
  const listed = execFileSync('bash', ['-o', 'pipefail', '-c', `node ${q(CLI)} get-batch d --root d=${q(data.dir)} --spec ${q(spec)} --nv --omit-src-bck - | tar tf -`], {
    maxBuffer: 1 << 30,
  })
    .toString()
    .trim()
    .split('\n');
  if (listed.length !== data.names.length || listed.some((n, i) => n !== data.names[i])) throw new Error(`${name}: ojs-ml's archive does not list the requested names in order`);

  await timeShell(gnu); // warm the page cache
  const oursS: number[] = [];
  const gnuS: number[] = [];
  const engineS: number[] = [];
  for (let r = 0; r < repeats; r++) {
    gnuS.push(await timeShell(gnu));
    oursS.push(await timeShell(ours));
    const rep = await engineChild(data.dir, spec);
    if (rep.bytes < bytes) throw new Error(`${name}: engine delivered ${rep.bytes} bytes, expected more than ${bytes}`);
    engineS.push(rep.seconds);
  }
  const tput = (xs: number[]) => xs.map((s) => mib / s);
  const mk = (rowName: string, oursSecs: number[], note: string): Row => {
    const o = stats(tput(oursSecs));
    const b = stats(tput(gnuS));
    return {
      name: rowName,
      ours: round(o.median),
      baseline: round(b.median),
      unit: 'MiB/s',
      ratio: round(o.median / b.median, 3),
      note,
      samples: { ours: tput(oursSecs).map((x) => round(x)), baseline: tput(gnuS).map((x) => round(x)) },
      stats: { ours: roundStats(o), baseline: roundStats(b) },
    };
  };
  return [
    mk(`${name} CLI (${data.names.length} files, ${mib.toFixed(0)} MiB)`, oursS, 'ojs-ml get-batch | cat vs tar cf - | cat, median throughput; ratio = ours / GNU tar'),
    mk(`${name} engine, start-up excluded`, engineS, 'runBatch to a null sink in a fresh process, module loading excluded, vs GNU tar | cat; ratio = ours / GNU tar'),
  ];
}

/** ojs-ml writing a compressed format vs GNU tar piped through the matching compressor. */
async function compressCase(name: string, format: string, compressor: string, data: { dir: string; names: string[] }, work: string, repeats: number): Promise<Row> {
  const spec = path.join(work, `${name}.spec.json`);
  const list = path.join(work, `${name}.list`);
  writeSpec(spec, data.names);
  fs.writeFileSync(list, `${data.names.join('\n')}\n`);
  const mib = data.names.reduce((n, f) => n + fs.statSync(path.join(data.dir, f)).size, 0) / (1 << 20);
  const ours = `node ${q(CLI)} get-batch d --root d=${q(data.dir)} --spec ${q(spec)} --format ${format} --nv - | cat > /dev/null`;
  const base = `tar cf - -C ${q(data.dir)} -T ${q(list)} | ${compressor} | cat > /dev/null`;
  await timeShell(base);
  const o: number[] = [];
  const b: number[] = [];
  for (let r = 0; r < repeats; r++) {
    b.push(mib / (await timeShell(base)));
    o.push(mib / (await timeShell(ours)));
  }
  const so = stats(o);
  const sb = stats(b);
  return {
    name: `${name} (${data.names.length} mixed files, ${mib.toFixed(0)} MiB)`,
    ours: round(so.median),
    baseline: round(sb.median),
    unit: 'MiB/s',
    ratio: round(so.median / sb.median, 3),
    note: `ojs-ml get-batch --format ${format} | cat vs tar cf - | ${compressor} | cat; ratio = ours / baseline`,
    samples: { ours: o.map((x) => round(x)), baseline: b.map((x) => round(x)) },
    stats: { ours: roundStats(so), baseline: roundStats(sb) },
  };
}

/** Bytes read from the source to take one 1 MiB member out of a ~1 GiB TAR and ZIP shard. */
async function shardCase(data: { dir: string; names: string[] }, work: string): Promise<Row[]> {
  const shards = path.join(work, 'shards');
  fs.mkdirSync(shards, { recursive: true });
  const list = path.join(work, 'shard.list');
  fs.writeFileSync(list, `${data.names.join('\n')}\n`);
  const tar = path.join(shards, 'big.tar');
  const zip = path.join(shards, 'big.zip');
  if (!fs.existsSync(tar)) execFileSync('tar', ['cf', tar, '-C', data.dir, '-T', list]);
  if (!fs.existsSync(zip)) {
    const py = 'import sys, zipfile, os\nwith zipfile.ZipFile(sys.argv[2], "w", 0, allowZip64=True) as z:\n    for n in open(sys.argv[3]).read().split():\n        z.write(os.path.join(sys.argv[1], n), n)';
    execFileSync('python3', ['-c', py, data.dir, zip, list]);
  }
  const member = data.names[Math.floor(data.names.length * 0.75)]!;
  const rows: Row[] = [];
  for (const shard of ['big.tar', 'big.zip']) {
    const spec = path.join(work, `shard-${shard}.json`);
    fs.writeFileSync(spec, JSON.stringify({ in: [{ objname: shard, archpath: member }] }));
    const rep = await engineChild(shards, spec);
    const shardMiB = fs.statSync(path.join(shards, shard)).size / (1 << 20);
    const overhead = (rep.sourceBytes - (1 << 20)) / (1 << 20);
    rows.push({
      name: `bytes read beyond the member, one 1 MiB member of a ${shardMiB.toFixed(0)} MiB ${shard.endsWith('.zip') ? 'ZIP' : 'TAR'} shard`,
      ours: round(overhead, 3),
      baseline: 1,
      unit: 'MiB',
      ratio: round(overhead, 3),
      note: 'source bytes read minus the member itself; baseline is the target (under 1 MiB)',
    });
  }
  return rows;
}

async function rssCase(work: string, fileMiB: number, times: number): Promise<Row[]> {
  const dir = path.join(work, `rss-${fileMiB}m`);
  const file = path.join(dir, 'blob.bin');
  if (!fs.existsSync(file) || fs.statSync(file).size !== fileMiB << 20) {
    fs.mkdirSync(dir, { recursive: true });
    const fd = fs.openSync(file, 'w');
    for (let i = 0; i < fileMiB; i++) fs.writeSync(fd, randomBytes(1 << 20));
    fs.closeSync(fd);
  }
  const spec = path.join(work, 'rss.spec.json');
  writeSpec(spec, Array.from({ length: times }, () => 'blob.bin'));
  const total = (fileMiB << 20) * times;
  const rep = await engineChild(dir, spec);
  if (rep.bytes < total) throw new Error(`rss: engine delivered ${rep.bytes} bytes, expected more than ${total}`);
  const rows: Row[] = [
    {
      name: `peak RSS, engine, ${(total / 2 ** 30).toFixed(0)} GiB batch`,
      ours: round(rep.maxRssKiB / 1024),
      baseline: RSS_TARGET_MIB,
      unit: 'MiB',
      ratio: round(rep.maxRssKiB / 1024 / RSS_TARGET_MIB, 3),
      note: `baseline is the target (${RSS_TARGET_MIB} MiB); ratio < 1 meets it`,
    },
  ];
  // The CLI's peak too, where GNU time is installed (Debian package `time`).
  if (fs.existsSync('/usr/bin/time')) {
    const r = spawnSync('/usr/bin/time', ['-f', '%M', process.execPath, CLI, 'get-batch', 'd', '--root', `d=${dir}`, '--spec', spec, '--nv', '-'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const kib = Number(r.stderr.toString().trim().split('\n').pop());
    if (r.status !== 0 || !Number.isFinite(kib)) throw new Error(`rss: the CLI failed: ${r.stderr.toString()}`);
    rows.push({
      name: `peak RSS, CLI to stdout, ${(total / 2 ** 30).toFixed(0)} GiB batch`,
      ours: round(kib / 1024),
      baseline: RSS_TARGET_MIB,
      unit: 'MiB',
      ratio: round(kib / 1024 / RSS_TARGET_MIB, 3),
      note: `baseline is the target (${RSS_TARGET_MIB} MiB); ratio < 1 meets it`,
    });
  }
  return rows;
}

function round(x: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

function roundStats(s: Stats): Stats {
  return { min: round(s.min), median: round(s.median), max: round(s.max) };
}

function table(rows: Row[]): string {
  const lines = ['| case | ojs-ml | baseline | unit | ratio | min..max (ours) |', '|---|---|---|---|---|---|'];
  for (const r of rows) {
    const range = r.stats ? `${r.stats.ours.min}..${r.stats.ours.max}` : '';
    lines.push(`| ${r.name} | ${r.ours} | ${r.baseline ?? ''} | ${r.unit} | ${r.ratio ?? ''} | ${range} |`);
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const size = args.quick ? QUICK : FULL;
  const repeats = args.repeats ?? size.repeats;
  fs.mkdirSync(args.work, { recursive: true });
  if (!fs.existsSync(CLI) || !fs.existsSync(CHILD)) throw new Error('dist/ is missing: run `npm run build` first');
  const started = Date.now();
  const want = (n: string) => args.only === undefined || n.startsWith(args.only);
  const rows: Row[] = [];
  if (want('tar-10k')) rows.push(...(await throughputCase('tar-10k', dataset(args.work, 'small', size.small, 10 << 10), args.work, repeats)));
  if (want('tar-1m')) rows.push(...(await throughputCase('tar-1m', dataset(args.work, 'big', size.big, 1 << 20), args.work, repeats)));
  if (want('shard')) rows.push(...(await shardCase(dataset(args.work, 'big', size.big, 1 << 20), args.work)));
  if (want('tgz') || want('lz4')) {
    const mixed = dataset(args.work, 'mixed', size.mixed, 1 << 20, mixedBytes);
    if (want('tgz')) rows.push(await compressCase('tgz', 'tgz', 'gzip -1', mixed, args.work, Math.min(repeats, 3)));
    if (want('lz4')) rows.push(await compressCase('tar.lz4', 'tar.lz4', 'lz4 -1', mixed, args.work, repeats));
  }
  if (want('rss')) rows.push(...(await rssCase(args.work, size.rssFileMiB, size.rssRepeat)));

  const machine = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: os.cpus().length,
    memGiB: round(os.totalmem() / 2 ** 30),
    tar: execFileSync('tar', ['--version']).toString().split('\n')[0],
    quick: args.quick,
    repeats,
    seconds: round((Date.now() - started) / 1000),
  };
  const md = `${table(rows)}\n\nMachine: ${machine.cpus} cores, ${machine.memGiB} GiB, Node ${machine.node}, ${machine.tar}; ${repeats} repeats, medians; ${machine.date}; took ${machine.seconds} s.\n`;
  process.stdout.write(`\n${md}`);
  if (!args.quick && args.only === undefined) {
    fs.mkdirSync(RESULTS, { recursive: true });
    fs.writeFileSync(path.join(RESULTS, 'latest.json'), `${JSON.stringify(rows.map((r) => ({ ...r, machine })), null, 2)}\n`);
    fs.writeFileSync(path.join(RESULTS, 'latest.md'), md);
    process.stderr.write(`wrote bench/results/latest.json and latest.md\n`);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench failed: ${(e as Error).message}\n`);
  process.exit(1);
});
