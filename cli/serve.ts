/**
 * `ojs-ml serve`: the HTTP service (AIStore GetBatch compatible). Prints the URL it listens on
 * (stderr), writes one access log line per request (stdout by default), and shuts down
 * gracefully on SIGTERM / SIGINT: in-flight batches get --grace seconds, a second signal exits
 * at once.
 */
import cluster from 'node:cluster';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { Command, Option } from 'commander';
import type { LineSink } from '../src/server/app.js';
import { DEFAULT_LIMITS, type ServerLimits } from '../src/server/limits.js';
import { EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, collectRoot, reportError } from './common.js';
import { usage } from './output.js';

const DEFAULT_GRACE_S = 30;

interface ServeFlags {
  host: string;
  port: string;
  root: Record<string, string>;
  token: string[];
  allowHttpHost: string[];
  allowPrivate?: boolean;
  maxBodyBytes?: string;
  maxEntries?: string;
  maxBatchBytes?: string;
  maxConcurrent?: string;
  accessLog: string;
  grace: string;
  workers: string;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export function serveCommand(): Command {
  return new Command('serve')
    .description('Run the HTTP service: AIStore-compatible GetBatch (GET|POST /v1/ml/moss[/BUCKET]), Lhotse cuts (POST /v1/lhotse/batch), /ok, /varz, /metrics')
    .addOption(new Option('--host <H>', 'address to listen on').default('127.0.0.1'))
    .addOption(new Option('--port <P>', 'port to listen on (0: any free port)').default('8080'))
    .addOption(new Option('--root <NAME=DIR>', 'serve directory DIR as file bucket NAME (repeatable)').argParser(collectRoot).default({}, 'none'))
    .addOption(new Option('--token <T>', 'accept this bearer token (repeatable; also OJS_ML_TOKENS=t1,t2); none: no authentication').argParser(collect).default([], 'none'))
    .addOption(new Option('--allow-http-host <H>', 'let http(s) entries reach host H (exact, or *.example.com, optionally :port; repeatable)').argParser(collect).default([], 'none: http(s) off'))
    .addOption(new Option('--allow-private', 'let http(s) entries reach loopback and private addresses (off: SSRF guard)'))
    .addOption(new Option('--max-body-bytes <N>', `largest request body (default ${DEFAULT_LIMITS.maxBodyBytes / (1 << 20)}MiB)`))
    .addOption(new Option('--max-entries <N>', `most entries in one batch (default ${DEFAULT_LIMITS.maxEntries})`))
    .addOption(new Option('--max-batch-bytes <N>', 'most archive bytes one batch may produce; past it the batch is cut off (default: no limit)'))
    .addOption(new Option('--max-concurrent <N>', `batches at once; more get 429 + Retry-After (default ${DEFAULT_LIMITS.maxConcurrent})`))
    .addOption(new Option('--access-log <FILE>', "access log (NCSA combined), appended to FILE, or '-' for stdout").default('-'))
    .addOption(new Option('--grace <S>', 'at shutdown, seconds in-flight batches get to finish').default(String(DEFAULT_GRACE_S)))
    .addOption(new Option('--workers <N>', "processes serving the port, each with its own limits ('auto': one per CPU)").default('1'))
    .addHelpText(
      'after',
      `
Sizes take a unit: 512KiB, 64MiB, 2GiB (or KB/MB/GB, powers of 1000).

Examples:
  ojs-ml serve --root data=./my-dataset --port 8080
  curl -sS -X GET --data '{"in":[{"objname":"a.wav"}],"strm":true}' http://127.0.0.1:8080/v1/ml/moss/data?provider=file | tar tv

One batch is sent by one process: --workers lets batches (or the parts of a batch that
ParallelBatchClient reads over several connections) use several cores.

Files are read only inside --root directories. http(s) entries are refused unless
--allow-http-host names the host. See docs/http-api.md.`,
    )
    .action(async (flags: ServeFlags) => {
      process.exitCode = await serve(flags);
      // The IPC channel would keep a worker alive.
      if (cluster.isWorker && process.connected) process.disconnect();
    });
}

async function serve(flags: ServeFlags): Promise<number> {
  let log: (LineSink & { end?: () => void }) | undefined;
  try {
    const limits = parseLimits(flags);
    const port = parseCount(flags.port, '--port');
    if (port > 65535) throw usage(`--port expects 0-65535, got '${flags.port}'`);
    const grace = Number(flags.grace);
    if (!Number.isFinite(grace) || grace < 0) throw usage(`--grace expects seconds (>= 0), got '${flags.grace}'`);
    const tokens = [...flags.token, ...(process.env.OJS_ML_TOKENS ?? '').split(',').map((t) => t.trim()).filter((t) => t !== '')];
    if (tokens.some((t) => /\s/.test(t))) throw usage('a token must hold no white space');
    const workers = parseWorkers(flags.workers);
    const roots = flags.root;
    const rootList = Object.keys(roots).join(', ') || 'none';
    const banner = (url: string) => `ojs-ml serve: listening on ${url} (file roots: ${rootList}; auth: ${tokens.length > 0 ? 'bearer' : 'off'}${workers > 1 ? `; workers: ${workers}` : ''})\n`;
    if (workers > 1 && cluster.isPrimary) return await primary(workers, grace, banner);
    const worker = cluster.isWorker ? cluster.worker : undefined;
    log = await openLog(flags.accessLog);
    // fastify and prom-client cost ~0.25 s to import: only this command pays it.
    const { startServer } = await import('../src/server/server.js');
    let side: { listening(url: string): void; metricsText(): Promise<string> } | undefined;
    const server = await startServer({
      ...(worker === undefined ? {} : { worker: worker.id, metricsText: () => side!.metricsText() }),
      host: flags.host,
      port,
      limits,
      tokens,
      accessLog: log,
      sources: {
        file: Object.keys(roots).length > 0 ? { roots } : undefined,
        http: { allowHosts: flags.allowHttpHost, allowPrivate: flags.allowPrivate === true },
      },
    });
    await new Promise<void>((resolve) => {
      let signals = 0;
      let closing = false;
      const close = () => {
        if (closing) return;
        closing = true;
        server.close(grace * 1000).then(resolve, (e: unknown) => {
          process.stderr.write(`ojs-ml serve: error while closing: ${(e as Error).message}\n`);
          resolve();
        });
      };
      const onSignal = (sig: NodeJS.Signals) => {
        if (++signals > 1) process.exit(EXIT_INTERRUPTED);
        // A worker hears of the shutdown from the primary, which says it once for all.
        if (worker === undefined) process.stderr.write(`ojs-ml serve: ${sig}: no new requests; in-flight batches get ${grace} s\n`);
        close();
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      if (worker !== undefined) {
        // Imported here: a process without workers never loads node:cluster's IPC side.
        void import('../src/server/cluster.js').then(({ workerSide }) => {
          side = workerSide(server.app.ojs.metrics.registry, close);
          side.listening(server.url);
        });
      } else process.stderr.write(banner(server.url));
    });
    if (worker === undefined) process.stderr.write('ojs-ml serve: stopped\n');
    return EXIT_OK;
  } catch (e) {
    const code = reportError(e, false);
    return code === EXIT_OK ? EXIT_FAILURE : code;
  } finally {
    log?.end?.();
  }
}

/** The primary of `--workers N`: forks the workers, says once that they listen, and passes shutdown on. */
async function primary(workers: number, grace: number, banner: (url: string) => string): Promise<number> {
  const { runPrimary } = await import('../src/server/cluster.js');
  const run = runPrimary(workers, { listening: (url) => process.stderr.write(banner(url)), log: (line) => process.stderr.write(`${line}\n`) });
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    if (++signals > 1) {
      run.kill();
      process.exit(EXIT_INTERRUPTED);
    }
    process.stderr.write(`ojs-ml serve: ${sig}: no new requests; in-flight batches get ${grace} s\n`);
    run.shutdown();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    await run.done;
  } catch (e) {
    process.stderr.write(`ojs-ml serve: ${(e as Error).message}\n`);
    return EXIT_FAILURE;
  }
  process.stderr.write('ojs-ml serve: stopped\n');
  return EXIT_OK;
}

function parseWorkers(v: string): number {
  if (v.trim() === 'auto') return os.availableParallelism();
  return positive(parseCount(v, '--workers'), '--workers');
}

async function openLog(dest: string): Promise<LineSink & { end?: () => void }> {
  if (dest === '-') return process.stdout;
  const stream = fs.createWriteStream(dest, { flags: 'a' });
  await new Promise<void>((resolve, reject) => {
    stream.once('open', () => resolve());
    stream.once('error', (e) => reject(usage(`cannot open access log ${dest}: ${e.message}`)));
  });
  return { write: (line: string) => stream.write(line), end: () => stream.end() };
}

function parseLimits(flags: ServeFlags): Partial<ServerLimits> {
  const limits: Partial<ServerLimits> = {};
  if (flags.maxBodyBytes !== undefined) limits.maxBodyBytes = parseSize(flags.maxBodyBytes, '--max-body-bytes');
  if (flags.maxEntries !== undefined) limits.maxEntries = positive(parseCount(flags.maxEntries, '--max-entries'), '--max-entries');
  if (flags.maxBatchBytes !== undefined) limits.maxBatchBytes = parseSize(flags.maxBatchBytes, '--max-batch-bytes');
  if (flags.maxConcurrent !== undefined) limits.maxConcurrent = positive(parseCount(flags.maxConcurrent, '--max-concurrent'), '--max-concurrent');
  return limits;
}

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kib: 1024,
  kb: 1000,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  mb: 1000 ** 2,
  g: 1024 ** 3,
  gib: 1024 ** 3,
  gb: 1000 ** 3,
  t: 1024 ** 4,
  tib: 1024 ** 4,
  tb: 1000 ** 4,
};

/** `1048576`, `512KiB`, `64MiB`, `1.5GB`. */
export function parseSize(v: string, flag: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(v);
  const unit = m === null ? undefined : UNITS[m[2]!.toLowerCase()];
  if (m === null || unit === undefined) throw usage(`${flag} expects a size such as 1048576, 512KiB or 64MiB, got '${v}'`);
  const n = Math.floor(Number(m[1]) * unit);
  if (!Number.isSafeInteger(n) || n <= 0) throw usage(`${flag} expects a positive size, got '${v}'`);
  return n;
}

function parseCount(v: string, flag: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n)) throw usage(`${flag} expects a non-negative integer, got '${v}'`);
  return n;
}

function positive(n: number, flag: string): number {
  if (n === 0) throw usage(`${flag} must be at least 1`);
  return n;
}
