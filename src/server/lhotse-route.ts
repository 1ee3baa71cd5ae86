/**
 * `POST /v1/lhotse/batch`: the audio of Lhotse cuts as one archive, for training loops that hold
 * cuts and want their samples. The cuts come as the body (JSONL, one cut a line, as in a
 * manifest), or from a manifest the server reads (`?manifest=URI&lines=A-B`, 1-based, inclusive);
 * the answer is what GetBatch answers: the archive streamed (default) or, with `strm=false`,
 * multipart metadata + archive. Entries are named and sliced as `ojs-ml lhotse-get-batch` names
 * and slices them (docs/lhotse.md); each carries its cut id as the opaque.
 *
 * Query: `format` (.tar default, .tgz, .zip, .tar.lz4), `audio` (slice|whole), `coer` (skip bad
 * lines and unusable cuts, missing audio as __404__/ entries), `strm`, `manifest`, `lines`.
 * Skipped lines are listed in `X-Ojs-Lhotse-Skipped-Lines`. Local paths are read only inside the
 * server's file roots; everything else is the app's: auth, limits, 429, metrics, /varz.
 */
import { performance } from 'node:perf_hooks';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { runBatch, type BatchOptions } from '../batch/engine.js';
import type { BytePool } from '../batch/pool.js';
import { cutBatch, manifestLocation, openManifest, providerCheck, readCuts } from '../lhotse/batch.js';
import type { AudioMode, CutPlan } from '../lhotse/cuts.js';
import { bufferLines, type ManifestLine } from '../lhotse/manifest.js';
import { ProbeCache } from '../lhotse/opener.js';
import { rootMapper } from '../lhotse/roots.js';
import { OjsError, toOjsError } from '../spec/errors.js';
import { parseFormat } from '../spec/format.js';
import { hasScheme } from '../spec/uri.js';
import type { InFlightBatch, LineSink } from './app.js';
import { sendAndRecord, watchClient } from './respond.js';

const RETRY_AFTER_S = 1; // as the app's 429
const SKIPPED_LISTED_MAX = 256; // skipped line numbers named in the header (more are counted)
export const LHOTSE_ROUTE = '/v1/lhotse/batch';

export interface LhotseRouteOptions {
  batch: BatchOptions;
  spool: { memoryBytes: number; dir: string; pool?: BytePool };
  errorLog: LineSink | null;
}

interface Query {
  format?: string;
  audio?: string;
  coer?: string;
  strm?: string;
  manifest?: string;
  lines?: string;
}

export async function lhotseRoutes(app: FastifyInstance, opts: LhotseRouteOptions): Promise<void> {
  const state = app.ojs;
  // The body is JSONL whatever the Content-Type says (curl --data-binary sends form-urlencoded).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  const busy = async () => {
    if (state.batches.size >= state.limits.maxConcurrent) {
      state.metrics.rejected.inc({ reason: 'busy' });
      throw new OjsError('TooMany', `this server runs ${state.limits.maxConcurrent} batches at once; retry in ${RETRY_AFTER_S} s`, { code: 'ERR_BUSY', temporary: true });
    }
  };
  app.route({ method: 'POST', url: LHOTSE_ROUTE, onRequest: busy, handler: (request, reply) => lhotseBatch(app, request, reply, opts, busy) });
}

async function lhotseBatch(app: FastifyInstance, request: FastifyRequest, reply: FastifyReply, opts: LhotseRouteOptions, busy: () => Promise<void>): Promise<void> {
  const state = app.ojs;
  await busy();
  const q = request.query as Record<string, string | string[] | undefined>;
  const query = Object.fromEntries(Object.entries(q).map(([k, v]) => [k, single(v, k)])) as Query;
  const format = parseFormat(query.format, 'format');
  const audio = choice(query.audio, 'audio', ['slice', 'whole'], 'slice') as AudioMode;
  const coer = flag(query.coer, 'coer', false);
  const strm = flag(query.strm, 'strm', true);
  const ac = new AbortController();
  watchClient(reply.raw, ac);
  const skipped: number[] = [];
  const cuts = await collectCuts(app, request, query, { audio, coer, signal: ac.signal, skipped });
  const entries = cuts.reduce((n, c) => n + c.items.length, 0);
  if (entries > state.limits.maxEntries) {
    throw new OjsError('BadSpec', `the cuts need ${entries} entries; this server takes at most ${state.limits.maxEntries}`, { code: 'ERR_LIMIT_ENTRIES' });
  }
  const batch = cutBatch(cuts, { format, coer, probes: new ProbeCache() });
  const mode = strm ? 'stream' : 'multipart';
  const inFlight: InFlightBatch = { requestId: request.id, started: new Date(), remote: request.ip, entries, format, mode, controller: ac };
  const id = state.add(inFlight);
  const t0 = performance.now();
  try {
    let run;
    try {
      run = runBatch(batch.request, state.registry, ac.signal, { ...opts.batch, opener: batch.opener });
    } catch (e) {
      throw refusedProvider(toOjsError(e), (state.config.disabled ?? []) as string[]);
    }
    inFlight.progress = run.progress;
    reply.raw.setHeader('X-Ojs-Lhotse-Cuts', String(cuts.length));
    if (skipped.length > 0) reply.raw.setHeader('X-Ojs-Lhotse-Skipped-Lines', skippedHeader(skipped));
    await sendAndRecord(reply, run, { format, strm, signal: ac.signal, requestId: request.id, t0 }, state, opts);
  } finally {
    state.remove(id);
  }
}

/** The cuts of the body, or of the manifest's lines, checked and planned. */
async function collectCuts(
  app: FastifyInstance,
  request: FastifyRequest,
  q: Query,
  o: { audio: AudioMode; coer: boolean; signal: AbortSignal; skipped: number[] },
): Promise<CutPlan[]> {
  const roots = (app.ojs.config.file_roots ?? {}) as Record<string, string>;
  const fileLocation = rootMapper(roots, false);
  const body = request.body;
  const hasBody = Buffer.isBuffer(body) && body.length > 0;
  let lines: AsyncIterable<ManifestLine> | Iterable<ManifestLine>;
  let range: { fromLine?: number; toLine?: number } = {};
  if (q.manifest !== undefined) {
    if (hasBody) throw new OjsError('BadSpec', "give the cuts as the body or as ?manifest=URI, not both");
    if (!hasScheme(q.manifest)) throw new OjsError('BadSpec', `manifest: '${q.manifest}' is not a URI (file:///..., s3://..., ...)`, { context: { field: 'manifest' } });
    range = lineRange(q.lines);
    const loc = manifestLocation(q.manifest, fileLocation);
    lines = openManifest(loc, app.ojs.registry, o.signal);
  } else {
    if (!hasBody) throw new OjsError('BadSpec', 'the request needs cuts: a JSONL body (one cut a line), or ?manifest=URI[&lines=A-B]');
    if (q.lines !== undefined) throw new OjsError('BadSpec', "'lines' goes with 'manifest'", { context: { field: 'lines' } });
    lines = bufferLines(body, 'request body');
  }
  const cuts: CutPlan[] = [];
  const read = readCuts(lines, {
    audio: o.audio,
    contOnErr: o.coer,
    fileLocation,
    check: providerCheck(app.ojs.registry),
    ...range,
    onSkip: (e) => o.skipped.push(lineOf(e)),
  });
  try {
    for await (const c of read) cuts.push(c);
  } catch (e) {
    throw refusedProvider(toOjsError(e), (app.ojs.config.disabled ?? []) as string[]);
  }
  return cuts;
}

/** A provider this server turned off is a refusal (403), as on GetBatch. */
function refusedProvider(err: OjsError, disabled: string[]): OjsError {
  const p = err.context.provider;
  if (err.code !== 'ERR_UNSUPPORTED_PROVIDER' || p === undefined || !disabled.includes(p)) return err;
  return new OjsError('Forbidden', `provider '${p}' is disabled on this server`, { code: 'ERR_PROVIDER_DISABLED', context: err.context, cause: err });
}

function lineRange(v: string | undefined): { fromLine?: number; toLine?: number } {
  if (v === undefined) return {};
  const m = /^(\d+)(?:-(\d*))?$/.exec(v.trim());
  const from = m === null ? NaN : Number(m[1]);
  const to = m === null ? NaN : m[2] === undefined ? from : m[2] === '' ? Infinity : Number(m[2]);
  if (!(from >= 1) || !(to >= from)) throw new OjsError('BadSpec', `lines: '${v}' is not A, A-B or A- (1-based, A <= B)`, { context: { field: 'lines' } });
  return { fromLine: from, toLine: to === Infinity ? undefined : to };
}

function lineOf(e: OjsError): number {
  const m = /line (\d+)/.exec(e.message);
  return m === null ? 0 : Number(m[1]);
}

function skippedHeader(lines: number[]): string {
  const listed = lines.slice(0, SKIPPED_LISTED_MAX).join(',');
  return lines.length > SKIPPED_LISTED_MAX ? `${listed},...(${lines.length} in all)` : listed;
}

function single(v: string | string[] | undefined, name: string): string | undefined {
  if (Array.isArray(v)) throw new OjsError('BadSpec', `query parameter '${name}' given more than once`, { context: { field: name } });
  return v;
}

function choice(v: string | undefined, name: string, allowed: string[], dflt: string): string {
  if (v === undefined || v === '') return dflt;
  if (!allowed.includes(v)) throw new OjsError('BadSpec', `${name}: '${v}' is not one of ${allowed.join(', ')}`, { context: { field: name } });
  return v;
}

function flag(v: string | undefined, name: string, dflt: boolean): boolean {
  if (v === undefined || v === '') return dflt;
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  throw new OjsError('BadSpec', `${name}: '${v}' is not true or false`, { context: { field: name } });
}
