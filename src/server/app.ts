/**
 * The HTTP service as a fastify app, without listening (server.ts listens). It adapts HTTP to
 * the engine and nothing more: parse and check a request, runBatch, sendBatch.
 *
 * Routes: GetBatch (`GET|POST /v1/ml/moss[/{bucket}]`, AIStore's wire format), Lhotse cuts
 * (`POST /v1/lhotse/batch`, lhotse-route.ts), `/ok`, `/varz`, `/metrics`. Every request gets an id (X-Request-Id in and out), an access log line and a
 * count in the metrics. With tokens configured, everything but `/ok` needs a bearer token.
 */
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Registry } from 'prom-client';
import { runBatch, type BatchOptions, type BatchProgress } from '../batch/engine.js';
import { BytePool } from '../batch/pool.js';
import { SourceRegistry, type SourcesConfig } from '../sources/registry.js';
import { OjsError, toOjsError } from '../spec/errors.js';
import type { ArchiveFormat } from '../spec/format.js';
import { parseBatchRequest, type BatchRequest } from '../spec/request.js';
import type { Provider } from '../spec/uri.js';
import { combinedLogLine } from './access-log.js';
import { BearerAuth } from './auth.js';
import { DEFAULT_LIMITS, type ServerLimits } from './limits.js';
import { ServerMetrics, type MetricsHooks } from './metrics.js';
import { lhotseRoutes } from './lhotse-route.js';
import { errorBody, sendAndRecord, sentBodyBytes, statusOf, watchClient } from './respond.js';

const RETRY_AFTER_S = 1; // what a 429 (too many batches at once) asks the client to wait
const REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/; // ids taken from X-Request-Id; others are replaced (log injection)
const SPOOL_MEMORY_BYTES = 8 << 20; // multipart: archive bytes held in memory per batch before a temp file
const READ_AHEAD_POOL_BYTES = 48 << 20; // read-ahead of all batches together (each also has its own 16 MiB window)
const SPOOL_POOL_BYTES = 32 << 20; // multipart spools of all batches together; past it, spools spill to files
const DEFAULT_PROVIDER = 'file'; // for entries that name no provider, when the URL names none either

export { DEFAULT_LIMITS, type ServerLimits };

/** Anything with write(line): process.stdout, a file stream, a test's array. */
export interface LineSink {
  write(line: string): unknown;
}

export interface AppConfig {
  /**
   * Where items are read from: the config to build a registry from (made safe for a server by
   * serverSourcesConfig), or a ready registry (tests, embedders), used as it is.
   */
  sources: SourcesConfig | SourceRegistry;
  /** Bearer tokens; none means no authentication. */
  tokens?: readonly string[];
  limits?: Partial<ServerLimits>;
  /** Access log lines; default stdout, null for none. */
  accessLog?: LineSink | null;
  /** Server-side failures (bugs, not client errors); default stderr. */
  errorLog?: LineSink | null;
  spool?: { memoryBytes?: number; dir?: string };
  /**
   * Memory all batches share: read-ahead, and multipart spools held in memory. A batch alone
   * gets its full window; many at once share these, so the process stays bounded however many
   * batches run.
   */
  memory?: { readAheadBytes?: number; spoolBytes?: number };
  /** Engine options for every batch (read-ahead windows, compression level). */
  batch?: BatchOptions;
  /** Shown in /varz; read from package.json when absent. */
  version?: string;
  /** Process metrics (memory, CPU, event loop lag) in /metrics; default on. */
  processMetrics?: boolean;
  /** What /metrics answers, given this app's registry: under `serve --workers`, every worker's, summed (cluster.ts). */
  metricsText?: (registry: Registry) => Promise<string>;
  /** Shown in /varz as `worker` (serve --workers: which process answered). */
  worker?: number;
}

/** One batch being fetched or sent, as /varz shows it. */
export interface InFlightBatch {
  requestId: string;
  started: Date;
  remote: string;
  entries: number;
  format: ArchiveFormat;
  mode: 'stream' | 'multipart';
  progress?: Readonly<BatchProgress>;
  controller: AbortController;
}

/** What the app holds besides its routes: in-flight batches, metrics, the shutdown controls. */
export class ServerState {
  readonly started = new Date();
  readonly batches = new Map<number, InFlightBatch>();
  private nextId = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(
    readonly metrics: ServerMetrics,
    readonly registry: SourceRegistry,
    readonly limits: Readonly<ServerLimits>,
    readonly config: Readonly<Record<string, unknown>>,
    readonly version: string,
  ) {}

  /** For the sources' metrics layer: upstream operations and bytes, by provider. */
  get metricsHooks(): MetricsHooks {
    return this.metrics.hooks;
  }

  add(b: InFlightBatch): number {
    const id = this.nextId++;
    this.batches.set(id, b);
    this.metrics.inFlight.set(this.batches.size);
    return id;
  }

  remove(id: number): void {
    this.batches.delete(id);
    this.metrics.inFlight.set(this.batches.size);
    if (this.batches.size === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  /** Resolves once no batch is in flight. */
  idle(): Promise<void> {
    if (this.batches.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Aborts every batch in flight (a shutdown past its grace period). */
  abortAll(reason: OjsError): void {
    for (const b of this.batches.values()) b.controller.abort(reason);
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    ojs: ServerState;
  }
}

/**
 * A SourcesConfig as a server must use it: no absolute file paths (only the named roots), and
 * http(s) off unless hosts are allowed, without private addresses unless allowed explicitly.
 */
export function serverSourcesConfig(c: SourcesConfig): SourcesConfig {
  const hosts = c.http?.allowHosts ?? [];
  const disable = new Set<Provider>(c.disable ?? []);
  if (hosts.length === 0) {
    disable.add('http');
    disable.add('https');
  }
  return {
    ...c,
    file: c.file === undefined ? undefined : { ...c.file, allowAbsolute: false },
    disable: [...disable],
    http: { allowHosts: hosts, allowPrivate: c.http?.allowPrivate ?? false },
  };
}

export async function buildApp(config: AppConfig): Promise<FastifyInstance> {
  const limits: ServerLimits = { ...DEFAULT_LIMITS, ...config.limits };
  const metrics = new ServerMetrics({ processMetrics: config.processMetrics });
  const sourcesConfig = config.sources instanceof SourceRegistry ? undefined : serverSourcesConfig(config.sources);
  // Upstream metrics come from the sources' metrics layer, through the hooks.
  const registry =
    config.sources instanceof SourceRegistry ? config.sources : new SourceRegistry({ ...sourcesConfig, layers: { ...sourcesConfig?.layers, metrics: metrics.hooks } });
  const disabled = new Set<Provider>(sourcesConfig?.disable ?? []);
  const auth = new BearerAuth(config.tokens ?? []);
  const accessLog = config.accessLog === undefined ? process.stdout : config.accessLog;
  const errorLog = config.errorLog === undefined ? process.stderr : config.errorLog;
  const spool = { memoryBytes: config.spool?.memoryBytes ?? SPOOL_MEMORY_BYTES, dir: config.spool?.dir ?? os.tmpdir() };
  const readAhead = new BytePool(config.memory?.readAheadBytes ?? READ_AHEAD_POOL_BYTES);
  const spoolPool = new BytePool(config.memory?.spoolBytes ?? SPOOL_POOL_BYTES);
  // What every batch route runs with: the shared pools, then the embedder's engine options.
  const shared = { batch: { pool: readAhead, ...config.batch }, spool: { ...spool, pool: spoolPool } };
  const effective = {
    limits: { ...limits, maxBatchBytes: Number.isFinite(limits.maxBatchBytes) ? limits.maxBatchBytes : null },
    providers: registry.available(),
    disabled: [...disabled],
    file_roots: sourcesConfig?.file?.roots ?? null,
    http: sourcesConfig?.http ?? null,
    auth: { tokens: auth.count },
    spool,
    memory: { read_ahead_bytes: readAhead.limit, spool_bytes: spoolPool.limit },
  };
  const state = new ServerState(metrics, registry, limits, effective, config.version ?? packageVersion());

  const app = Fastify({
    logger: false,
    bodyLimit: limits.maxBodyBytes,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID().replaceAll('-', '').slice(0, 16);
    },
    exposeHeadRoutes: false,
    return503OnClosing: true,
  });
  // AIStore clients send GetBatch as a GET with a JSON body.
  app.addHttpMethod('GET', { hasBody: true, overrideExisting: true });
  app.decorate('ojs', state);
  // A registry the app built holds connection pools that go with it.
  if (!(config.sources instanceof SourceRegistry)) app.addHook('onClose', async () => registry.close());

  app.addHook('onRequest', (request, reply, done) => {
    observe(request, reply, metrics, accessLog);
    done();
  });
  app.addHook('onRequest', async (request) => {
    if (request.url === '/ok' || !auth.enabled) return;
    const outcome = auth.check(request.headers.authorization);
    if (outcome === 'ok') return;
    metrics.rejected.inc({ reason: 'unauthorized' });
    throw new OjsError('Unauthorized', outcome === 'missing' ? 'this server needs a bearer token (Authorization: Bearer ...)' : 'the bearer token is not valid');
  });

  app.setErrorHandler((error, _request, reply) => {
    const err = fromFastifyError(error, limits);
    const status = statusOf(err);
    if (status >= 500 && err.kind === 'Internal') errorLog?.write(`ojs-ml serve: internal error: ${err.stack ?? err.message}\n`);
    if (status === 401) reply.header('WWW-Authenticate', `Bearer realm="ojs-ml"${err.message.includes('not valid') ? ', error="invalid_token"' : ''}`);
    if (status === 429) reply.header('Retry-After', String(RETRY_AFTER_S));
    return reply.code(status).type('application/json; charset=utf-8').send(errorBody(err, status));
  });
  app.setNotFoundHandler((request, reply) => {
    const err = new OjsError('NotFound', `no such endpoint: ${request.method} ${request.url.split('?')[0]}; see /v1/ml/moss, /ok, /varz, /metrics`);
    return reply.code(404).type('application/json; charset=utf-8').send(errorBody(err));
  });

  app.get('/ok', async (_request, reply) => reply.type('text/plain; charset=utf-8').send('ok\n'));
  app.get('/varz', async () => ({ ...varz(state), ...(config.worker === undefined ? {} : { worker: config.worker, pid: process.pid }) }));
  const metricsText = config.metricsText ?? ((r: Registry) => r.metrics());
  app.get('/metrics', async (_request, reply) => reply.type(metrics.registry.contentType).send(await metricsText(metrics.registry)));

  await app.register(async (scope) => {
    // The batch is JSON whatever the Content-Type says: `curl --data @batch.json` sends
    // application/x-www-form-urlencoded, and AIStore's clients do not all set one.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
    const busy = async () => {
      if (state.batches.size >= limits.maxConcurrent) {
        metrics.rejected.inc({ reason: 'busy' });
        throw new OjsError('TooMany', `this server runs ${limits.maxConcurrent} batches at once; retry in ${RETRY_AFTER_S} s`, {
          code: 'ERR_BUSY',
          temporary: true,
        });
      }
    };
    const handler = (request: FastifyRequest, reply: FastifyReply) => getBatch(request, reply, { state, limits, disabled, spool: shared.spool, batch: shared.batch, busy, errorLog });
    // Checked before the body is read, and again once it is (the slot is taken only then).
    scope.route({ method: ['GET', 'POST'], url: '/v1/ml/moss', onRequest: busy, handler });
    scope.route({ method: ['GET', 'POST'], url: '/v1/ml/moss/:bucket', onRequest: busy, handler });
  });
  await app.register(lhotseRoutes, { batch: shared.batch, spool: shared.spool, errorLog });
  return app;
}

interface HandlerContext {
  state: ServerState;
  limits: ServerLimits;
  disabled: ReadonlySet<Provider>;
  spool: { memoryBytes: number; dir: string; pool: BytePool };
  batch: BatchOptions;
  busy: () => Promise<void>;
  errorLog: LineSink | null;
}

async function getBatch(request: FastifyRequest, reply: FastifyReply, ctx: HandlerContext): Promise<void> {
  const { state, limits } = ctx;
  await ctx.busy();
  const req = parseRequest(request, limits);
  const ac = new AbortController();
  watchClient(reply.raw, ac);
  const mode = req.strm ? 'stream' : 'multipart';
  const batch: InFlightBatch = {
    requestId: request.id,
    started: new Date(),
    remote: request.ip,
    entries: req.entries.length,
    format: req.format,
    mode,
    controller: ac,
  };
  const id = state.add(batch);
  const t0 = performance.now();
  try {
    let run;
    try {
      run = runBatch(req, state.registry, ac.signal, ctx.batch);
    } catch (e) {
      throw refusedProvider(toOjsError(e), ctx.disabled);
    }
    batch.progress = run.progress;
    await sendAndRecord(reply, run, { format: req.format, strm: req.strm, signal: ac.signal, requestId: request.id, t0 }, state, ctx);
  } finally {
    state.remove(id);
  }
}

/** The request body and URL as a validated batch, within this server's limits and policy. */
function parseRequest(request: FastifyRequest, limits: ServerLimits): BatchRequest {
  const body = request.body;
  if (!Buffer.isBuffer(body) || body.length === 0) {
    throw new OjsError('BadSpec', 'the request needs a JSON body: {"in": [{"objname": ...}, ...]}');
  }
  let raw: unknown;
  try {
    raw = JSON.parse(body.toString('utf8'));
  } catch (e) {
    throw new OjsError('BadSpec', `the request body is not valid JSON: ${(e as Error).message}`);
  }
  const params = request.params as { bucket?: string };
  const query = request.query as Record<string, string | string[] | undefined>;
  const provider = single(query.provider, 'provider');
  const coloc = single(query.coloc, 'coloc');
  if (coloc !== undefined && !/^[0-2]$/.test(coloc)) throw new OjsError('BadSpec', `invalid 'coloc=${coloc}' (expecting 0, 1, or 2)`, { context: { field: 'coloc' } });
  single(query.namespace, 'namespace'); // accepted as AIStore does; buckets here have no namespaces
  // No provider at all means AIStore's own buckets there; here, as in the CLI, the file roots.
  const req = parseBatchRequest(raw, { bucket: params.bucket, provider: provider === undefined || provider === '' ? DEFAULT_PROVIDER : provider });
  if (req.entries.length > limits.maxEntries) {
    throw new OjsError('BadSpec', `the batch has ${req.entries.length} entries; this server takes at most ${limits.maxEntries}`, { code: 'ERR_LIMIT_ENTRIES' });
  }
  for (const e of req.entries) {
    if (e.location.provider === 'file' && e.location.bucket === '') {
      throw new OjsError('Forbidden', `in[${e.index}]: absolute file paths are not served; name a file root as the bucket`, {
        context: { entry: e.index, provider: 'file' },
      });
    }
  }
  return req;
}

function single(v: string | string[] | undefined, name: string): string | undefined {
  if (Array.isArray(v)) throw new OjsError('BadSpec', `query parameter '${name}' given more than once`, { context: { field: name } });
  return v;
}

/** A provider this server turned off is a refusal (403), not a missing feature (501). */
function refusedProvider(err: OjsError, disabled: ReadonlySet<Provider>): OjsError {
  const p = err.context.provider as Provider | undefined;
  if (err.code !== 'ERR_UNSUPPORTED_PROVIDER' || p === undefined || !disabled.has(p)) return err;
  const hint = p === 'http' || p === 'https' ? ' (start it with --allow-http-host HOST)' : '';
  return new OjsError('Forbidden', `provider '${p}' is disabled on this server${hint}`, { code: 'ERR_PROVIDER_DISABLED', context: err.context, cause: err });
}

function fromFastifyError(error: unknown, limits: ServerLimits): OjsError {
  if (error instanceof OjsError) return error;
  const e = error as { code?: string; statusCode?: number; message?: string };
  if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
    return new OjsError('BadSpec', `the request body is larger than this server's limit of ${limits.maxBodyBytes} bytes`, { code: 'ERR_BODY_TOO_LARGE' });
  }
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return new OjsError('BadSpec', e.message ?? 'bad request', { code: 'ERR_BAD_REQUEST', cause: error });
  }
  return toOjsError(error);
}

/** Counts the request and writes its access log line once the response is over. */
function observe(request: FastifyRequest, reply: FastifyReply, metrics: ServerMetrics, accessLog: LineSink | null): void {
  const res = reply.raw;
  const time = new Date();
  const t0 = performance.now();
  res.setHeader('X-Request-Id', request.id);
  res.once('close', () => {
    // 499 (nginx's "client closed request"): the client left before any status went out.
    const status = res.headersSent ? res.statusCode : 499;
    metrics.requests.inc({ route: request.routeOptions.url ?? '(unmatched)', method: request.method, code: String(status) });
    if (accessLog === null) return;
    const length = res.getHeader('content-length');
    accessLog.write(
      combinedLogLine({
        remote: request.ip,
        time,
        method: request.method,
        url: request.url,
        httpVersion: request.raw.httpVersion,
        status,
        bytes: sentBodyBytes(res) ?? (length === undefined ? undefined : Number(length)),
        referer: header(request, 'referer'),
        userAgent: header(request, 'user-agent'),
        requestId: request.id,
        ms: performance.now() - t0,
        aborted: !res.writableFinished,
      }),
    );
  });
}

function header(request: FastifyRequest, name: string): string | undefined {
  const v = request.headers[name];
  return Array.isArray(v) ? v.join(', ') : v;
}

function varz(state: ServerState): Record<string, unknown> {
  const now = Date.now();
  return {
    version: state.version,
    node: process.version,
    started: state.started.toISOString(),
    uptime_s: Math.round((now - state.started.getTime()) / 1000),
    config: state.config,
    in_flight: [...state.batches.values()].map((b) => ({
      request_id: b.requestId,
      remote: b.remote,
      started: b.started.toISOString(),
      age_s: (now - b.started.getTime()) / 1000,
      format: b.format,
      mode: b.mode,
      entries: b.entries,
      done: b.progress?.done ?? 0,
      missing: b.progress?.missing ?? 0,
      bytes: b.progress?.bytes ?? 0,
    })),
  };
}

/** The version in the package.json above this module (src/ in tests, dist/src/ when built). */
function packageVersion(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    try {
      const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'ojs-ml' && pkg.version !== undefined) return pkg.version;
    } catch {
      // not here; look one level up
    }
    dir = path.dirname(dir);
  }
  return 'unknown';
}
