/**
 * Servers the bench starts and stops itself, on 127.0.0.1: nginx (Debian's, a fast real object
 * server) over a directory, and `ojs-ml serve` (the built CLI) over file roots.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { NODE_FLAGS } from './util.js';

const START_TIMEOUT_MS = 20_000; // a server that does not answer by then fails the bench

export interface Running {
  url: string;
  port: number;
  pid: number;
  stop(): Promise<void>;
}

/** A port free right now (the server that takes it is started next). */
export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

async function waitForHttp(url: string, child: ChildProcess, what: string): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let exited: number | null | undefined;
  child.once('exit', (code) => (exited = code));
  while (Date.now() < deadline) {
    if (exited !== undefined) throw new Error(`${what} exited (${exited}) before answering`);
    try {
      const r = await fetch(url);
      await r.arrayBuffer();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(`${what} did not answer ${url} within ${START_TIMEOUT_MS / 1000} s`);
}

function stopper(child: ChildProcess): () => Promise<void> {
  return () =>
    new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 5000).unref();
    });
}

/** The nginx binary: on PATH, or where Debian puts it (/usr/sbin is not on every user's PATH). */
export function nginxBinary(): string | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/sbin']) {
    const p = path.join(dir, 'nginx');
    if (dir !== '' && fs.existsSync(p)) return p;
  }
  return undefined;
}

/** nginx serving `root` as static files: sendfile, keep-alive, no access log. */
export async function startNginx(root: string, work: string): Promise<Running> {
  const prefix = path.join(work, 'nginx');
  fs.mkdirSync(path.join(prefix, 'logs'), { recursive: true });
  const port = await freePort();
  const asRoot = process.getuid?.() === 0;
  const conf = `${asRoot ? 'user root;\n' : ''}worker_processes 2;
pid ${prefix}/nginx.pid;
error_log ${prefix}/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  client_body_temp_path ${prefix}/body; proxy_temp_path ${prefix}/proxy; fastcgi_temp_path ${prefix}/fcgi;
  uwsgi_temp_path ${prefix}/uwsgi; scgi_temp_path ${prefix}/scgi;
  default_type application/octet-stream;
  server { listen 127.0.0.1:${port}; root ${root}; location / { } }
}
`;
  const file = path.join(prefix, 'nginx.conf');
  fs.writeFileSync(file, conf);
  const child = spawn(nginxBinary() ?? 'nginx', ['-p', prefix, '-c', file, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const url = `http://127.0.0.1:${port}`;
  await waitForHttp(`${url}/`, child, 'nginx');
  return { url, port, pid: child.pid!, stop: stopper(child) };
}

/** `ojs-ml serve` (the built CLI) with these roots and extra flags; its URL comes from its stderr. */
export async function startServe(cli: string, roots: Record<string, string>, extra: string[] = []): Promise<Running> {
  const args = [...(process.env.OJS_ML_BENCH_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.OJS_ML_BENCH_PROF] : []), cli, 'serve', '--port', '0', '--access-log', '/dev/null', '--max-concurrent', '256', ...extra];
  for (const [name, dir] of Object.entries(roots)) args.push('--root', `${name}=${dir}`);
  const child = spawn(process.execPath, [...NODE_FLAGS, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  const url = await new Promise<string>((resolve, reject) => {
    let err = '';
    const timer = setTimeout(() => reject(new Error(`ojs-ml serve did not start: ${err}`)), START_TIMEOUT_MS);
    child.stderr!.on('data', (c: Buffer) => {
      err += c.toString();
      const m = /listening on (http:\/\/\S+)/.exec(err);
      if (m !== null) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.once('exit', (code) => reject(new Error(`ojs-ml serve exited ${code}: ${err}`)));
  });
  return { url, port: Number(new URL(url).port), pid: child.pid!, stop: stopper(child) };
}
