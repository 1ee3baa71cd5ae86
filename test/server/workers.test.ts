/**
 * `ojs-ml serve --workers 2`, the built CLI as a user runs it: connections spread over two
 * processes, /metrics sums both, a worker that dies is replaced, SIGTERM stops all, a port that
 * is taken fails the start. ParallelBatchClient reads one batch over both workers.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ParallelBatchClient } from '../../src/client/parallel.js';
import { BatchStreamClient } from '../../src/client/stream.js';
import { CLI, run, sha256, tmpDir, writeTree } from '../helpers/tools.js';
import { request, waitFor } from './helpers.js';

let work: string;
let data: string;
let child: ChildProcess;
let stderr = '';
let url: string;
let exited: Promise<number | null>;

beforeAll(async () => {
  work = tmpDir('ojs-ml-workers-');
  data = path.join(work, 'data');
  const tree: Record<string, Buffer> = {};
  for (let i = 0; i < 64; i++) tree[`f${i}.bin`] = randomBytes(1000 + i * 4099);
  writeTree(data, tree);
  child = spawn(process.execPath, [CLI, 'serve', '--port', '0', '--workers', '2', '--root', `data=${data}`, '--access-log', path.join(work, 'access.log'), '--grace', '2'], { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  await waitFor(() => /listening on (http:\/\/\S+)/.test(stderr), 15_000, `the URL (stderr: ${stderr})`);
  url = /listening on (http:\/\/\S+)/.exec(stderr)![1]!;
});
afterAll(async () => {
  if (child.exitCode === null) child.kill('SIGKILL');
  fs.rmSync(work, { recursive: true, force: true });
});

async function pids(n: number): Promise<Set<number>> {
  const seen = new Set<number>();
  for (let i = 0; i < n; i++) {
    const r = await request(`${url}/varz`);
    seen.add((JSON.parse(r.body.toString()) as { pid: number }).pid);
  }
  return seen;
}

const batch = (count: number) => ({ in: Array.from({ length: count }, (_, i) => ({ objname: `f${i % 64}.bin` })) });

describe('ojs-ml serve --workers 2', () => {
  it('says once that it listens, naming the workers; connections go to both processes', async () => {
    expect(stderr.match(/listening on/g)).toHaveLength(1);
    expect(stderr).toContain('workers: 2');
    const seen = await pids(6);
    expect(seen.size).toBe(2);
    expect(seen.has(child.pid!)).toBe(false);
  });

  it('/metrics on either worker counts the batches of both', async () => {
    const before = await batchesOk();
    for (let i = 0; i < 4; i++) expect((await request(`${url}/v1/ml/moss/data`, { body: { ...batch(3), strm: true } })).status).toBe(200);
    expect(await batchesOk()).toBe(before + 4);
    expect(await batchesOk()).toBe(before + 4);
  });

  it('ParallelBatchClient reads one batch over both workers: the same bytes as one connection', async () => {
    const req = batch(256);
    const parts: Buffer[] = [];
    const par = new ParallelBatchClient(url, { bucket: 'data' }, { streams: 2, partEntries: 16 });
    const one = new BatchStreamClient(url, { bucket: 'data' });
    const whole: Buffer[] = [];
    try {
      const r = await par.stream(req, (c) => void parts.push(Buffer.from(c)));
      await one.stream(req, (c) => void whole.push(Buffer.from(c)));
      expect(r.summary).toMatchObject({ entries: 256, missing: 0 });
    } finally {
      par.close();
      one.close();
    }
    expect(sha256(Buffer.concat(parts))).toBe(sha256(Buffer.concat(whole)));
  });

  it('a worker that dies is replaced', async () => {
    const [victim] = [...(await pids(4))];
    process.kill(victim!, 'SIGKILL');
    await waitFor(() => stderr.includes(`worker ${victim} exited (SIGKILL); starting another`), 5000, 'the restart line');
    let seen = new Set<number>();
    for (let i = 0; i < 20 && !(seen.size === 2 && !seen.has(victim!)); i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      seen = await pids(4);
    }
    expect(seen.size).toBe(2);
    expect(seen.has(victim!)).toBe(false);
  });

  it('SIGTERM stops every worker; exit 0, one "stopped" line', async () => {
    const workers = [...(await pids(4))];
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(stderr.match(/stopped/g)).toHaveLength(1);
    for (const pid of workers) expect(() => process.kill(pid, 0)).toThrow();
  });

  it('a port that is taken fails the start with the reason, exit 1', async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    try {
      const r = await run(process.execPath, [CLI, 'serve', '--port', String((taken.address() as net.AddressInfo).port), '--workers', '2', '--root', `data=${data}`]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('EADDRINUSE');
      expect(r.stderr).toContain('a worker stopped before it listened');
    } finally {
      taken.close();
    }
  });

  it('--workers takes a positive count or auto', async () => {
    const r = await run(process.execPath, [CLI, 'serve', '--workers', '0']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--workers');
  });
});

async function batchesOk(): Promise<number> {
  const text = (await request(`${url}/metrics`)).body.toString();
  const m = /^ojs_ml_batches_total\{format="tar",mode="stream",outcome="ok"\} (\d+)$/m.exec(text);
  return m === null ? 0 : Number(m[1]);
}
