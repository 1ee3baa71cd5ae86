/** Real tools and the built CLI, run as child processes; shared by the CLI and engine tests. */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const CLI = path.join(REPO, 'dist/cli/main.js');

export interface RunResult {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

export function run(cmd: string, args: string[], opts: { cwd?: string; input?: Buffer | string; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    // A variable given as undefined is removed (spawn would pass the string "undefined").
    const env = Object.fromEntries(Object.entries({ ...process.env, ...opts.env }).filter(([, v]) => v !== undefined));
    const child = spawn(cmd, args, { cwd: opts.cwd, env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8') }));
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input);
  });
}

/** The built CLI; `npm test` builds before vitest runs. */
export function ojs(args: string[], opts: { cwd?: string; input?: Buffer | string } = {}): Promise<RunResult> {
  return run(process.execPath, [CLI, ...args], opts);
}

export function tmpDir(prefix = 'ojs-ml-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** Writes files under dir (creating folders) and returns their contents by relative name. */
export function writeTree(dir: string, files: Record<string, Buffer | string>): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const [name, data] of Object.entries(files)) {
    const p = path.join(dir, name);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    fs.writeFileSync(p, buf);
    out[name] = buf;
  }
  return out;
}

export interface TarMember {
  name: string;
  size: number;
  sha256: string;
}

/** Every member of a TAR file as Python's tarfile reads it (name, size, sha256 of content). */
export async function pythonTarMembers(file: string): Promise<TarMember[]> {
  const script = [
    'import sys, tarfile, hashlib, json',
    'out = []',
    'with tarfile.open(sys.argv[1], "r:") as t:',
    '    for m in t:',
    '        data = t.extractfile(m).read() if m.isfile() else b""',
    '        assert len(data) == m.size, (m.name, len(data), m.size)',
    '        out.append({"name": m.name, "size": m.size, "sha256": hashlib.sha256(data).hexdigest()})',
    'print(json.dumps(out))',
  ].join('\n');
  const r = await run('python3', ['-c', script, file]);
  if (r.code !== 0) throw new Error(`python tarfile failed: ${r.stderr}`);
  return JSON.parse(r.stdout.toString('utf8')) as TarMember[];
}

/** Names as GNU tar lists them; throws with tar's message if tar rejects the archive. */
export async function gnuTarList(file: string): Promise<string[]> {
  const r = await run('tar', ['--list', '--quoting-style=literal', '--file', file]);
  if (r.code !== 0) throw new Error(`tar tf failed (${r.code}): ${r.stderr}`);
  return r.stdout.toString('utf8').split('\n').filter((l) => l !== '');
}
