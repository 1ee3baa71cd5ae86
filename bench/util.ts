/**
 * Helpers for the bench: shell commands with a time limit, statistics, generated data sets,
 * expected archive sizes and the markdown table. No ojs-ml code is imported here: the bench
 * measures the built CLI and library from the outside.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const TAR_BLOCK = 512;
const USTAR_NAME_MAX = 100; // longer names get a PAX header, which tarSize() does not count

export interface Summary {
  min: number;
  median: number;
  max: number;
  samples: number[];
}

export interface Row {
  name: string;
  /** Which case made it (what --only matches). */
  case: string;
  /** Median of the repeats (or the one measurement). */
  ours: number;
  /** GNU tar's median for throughput rows; the target for RSS and bytes-read rows. */
  baseline: number | null;
  unit: 'MiB/s' | 'MiB' | 'ms' | 'objects/s' | 'x';
  ratio: number | null;
  /** What the ratio means for this row. */
  note: string;
  /** Every measurement, in the row's unit, and its min/median/max. */
  repeats: { ours: Summary; baseline: Summary | null };
  /** Raw wall seconds of each repeat, where the row is a throughput. */
  seconds?: { ours: number[]; baseline: number[] };
}

export interface DataSet {
  dir: string;
  names: string[];
  bytes: number;
}

export function round(x: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function summarize(xs: number[], digits = 1): Summary {
  if (xs.length === 0) throw new Error('no samples');
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { min: round(s[0]!, digits), median: round(median, digits), max: round(s[s.length - 1]!, digits), samples: xs.map((x) => round(x, digits)) };
}

/** Quotes a string for bash. */
export const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * The node flags the `ojs-ml` command runs with, read from its shebang (dist/cli/main.js): the
 * processes the bench starts (CLI, serve, engine children) get them too, so that they measure
 * what the installed command does.
 */
export const NODE_FLAGS: readonly string[] = (() => {
  const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../cli/main.js');
  const words = (fs.readFileSync(cli, 'utf8').split('\n', 1)[0] ?? '').split(/\s+/);
  const at = words.indexOf('node');
  return at < 0 ? [] : words.slice(at + 1).filter((w) => w !== '');
})();

/** `node` with NODE_FLAGS, quoted for sh. */
export const NODE = [process.execPath, ...NODE_FLAGS].map(q).join(' ');

const running = new Set<number>();

/** Kills the process groups of commands still running (Ctrl-C, or the bench failing). */
export function killRunning(): void {
  for (const pid of running) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/**
 * Runs `script` with `bash -o pipefail -c` in its own process group and resolves with its wall
 * seconds and stdout; a failure, or running past `timeoutMs`, rejects (and kills the group).
 */
export function sh(script: string, timeoutMs: number): Promise<{ seconds: number; stdout: string }> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn('bash', ['-o', 'pipefail', '-c', script], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const pid = child.pid;
    if (pid !== undefined) running.add(pid);
    const out: Buffer[] = [];
    let err = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      if (pid !== undefined) process.kill(-pid, 'SIGKILL');
    }, timeoutMs);
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      clearTimeout(timer);
      if (pid !== undefined) running.delete(pid);
      if (code === 0 && !timedOut) resolve({ seconds, stdout: Buffer.concat(out).toString() });
      else reject(new Error(`${timedOut ? `timed out after ${timeoutMs / 1000} s` : `failed (exit ${code})`}: ${script}\n${err.slice(-2000)}`));
    });
  });
}

/** Fails early, with a clear message, when generating `need` bytes would leave less than `slack` free. */
export function ensureDisk(dir: string, need: number, slack: number, what: string): void {
  const st = fs.statfsSync(dir);
  const free = st.bavail * st.bsize;
  if (free < need + slack) {
    const gib = (n: number) => `${(n / 2 ** 30).toFixed(1)} GiB`;
    throw new Error(`${what} needs ${gib(need)} in ${dir} (plus ${gib(slack)} to spare) but ${gib(free)} is free; use --work DIR elsewhere or --quick`);
  }
}

/** `count` files of `size` bytes named dNN/fNNNNNN.bin (100 directories), kept and reused between runs. */
export function dataset(work: string, prefix: string, count: number, size: number, slack: number, content: (i: number, size: number) => Buffer = (_i, n) => randomBytes(n)): DataSet {
  const dir = path.join(work, `${prefix}-${count}x${size}`);
  const names = Array.from({ length: count }, (_, i) => `d${String(i % 100).padStart(2, '0')}/f${String(i).padStart(6, '0')}.bin`);
  const bytes = count * size;
  if (!isComplete(dir, names, size)) {
    ensureDisk(work, bytes, slack, `data set ${path.basename(dir)}`);
    process.stderr.write(`generating ${count} x ${size} B in ${dir}\n`);
    fs.rmSync(dir, { recursive: true, force: true });
    for (const [i, n] of names.entries()) {
      fs.mkdirSync(path.join(dir, path.dirname(n)), { recursive: true });
      fs.writeFileSync(path.join(dir, n), content(i, size));
    }
    fs.writeFileSync(path.join(dir, '.complete'), `${count} x ${size}\n`);
  }
  return { dir, names, bytes };
}

/** A data set from an earlier run is reused only if it finished and every file has the right size. */
function isComplete(dir: string, names: string[], size: number): boolean {
  if (!fs.existsSync(path.join(dir, '.complete'))) return false;
  return names.every((n) => fs.statSync(path.join(dir, n), { throwIfNoEntry: false })?.size === size);
}

/** One file of `mib` MiB of random bytes, kept between runs. */
export function bigFile(file: string, mib: number, slack: number): void {
  if (fs.statSync(file, { throwIfNoEntry: false })?.size === mib * 2 ** 20) return;
  fs.mkdirSync(path.dirname(file), { recursive: true });
  ensureDisk(path.dirname(file), mib * 2 ** 20, slack, file);
  process.stderr.write(`generating ${mib} MiB in ${file}\n`);
  const fd = fs.openSync(file, 'w');
  try {
    for (let i = 0; i < mib; i++) fs.writeSync(fd, randomBytes(1 << 20));
  } finally {
    fs.closeSync(fd);
  }
}

/** Writes a request spec naming `names` (default bucket from the command line) and returns its path. */
export function writeSpec(file: string, names: string[], extra: Record<string, unknown> = {}): string {
  fs.writeFileSync(file, JSON.stringify({ in: names.map((objname) => ({ objname, ...extra })) }));
  return file;
}

/** Writes a name list for `tar -T` and returns its path. */
export function writeList(file: string, names: string[]): string {
  fs.writeFileSync(file, `${names.join('\n')}\n`);
  return file;
}

/** Bytes of a TAR with these entry names and sizes: header, padded body, two zero blocks at the end. */
export function tarSize(entries: { name: string; size: number }[]): number {
  let n = 2 * TAR_BLOCK;
  for (const e of entries) {
    if (e.name.length > USTAR_NAME_MAX || !/^[\x20-\x7e]*$/.test(e.name)) throw new Error(`bench names must fit a USTAR header: ${e.name}`);
    n += TAR_BLOCK + Math.ceil(e.size / TAR_BLOCK) * TAR_BLOCK;
  }
  return n;
}

/** Throws unless `listed` (tar tf output) is exactly `want`, in order; says where they part. */
export function checkListing(what: string, listed: string, want: string[]): void {
  const got = listed.split('\n').filter((l) => l !== '');
  const at = got.findIndex((n, i) => n !== want[i]);
  if (got.length === want.length && at < 0) return;
  const i = at < 0 ? Math.min(got.length, want.length) : at;
  throw new Error(`${what}: the archive lists ${got.length} names, expected ${want.length}; first difference at #${i}: '${got[i] ?? '(end)'}' vs '${want[i] ?? '(end)'}'`);
}

export function table(rows: Row[]): string {
  const lines = ['| case | ojs-ml | baseline | unit | ratio | ours min..max | baseline min..max |', '|---|---|---|---|---|---|---|'];
  for (const r of rows) {
    const range = (s: Summary | null) => (s === null || s.samples.length < 2 ? '' : `${s.min}..${s.max}`);
    lines.push(`| ${r.name} | ${r.ours} | ${r.baseline ?? ''} | ${r.unit} | ${r.ratio ?? ''} | ${range(r.repeats.ours)} | ${range(r.repeats.baseline)} |`);
  }
  return lines.join('\n');
}
