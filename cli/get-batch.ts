/**
 * `ojs-ml get-batch [SRC] DST`: one batch, in-process, to a file or stdout. Names come from a
 * spec (JSON/YAML), --list, --template, --prefix, or SRC itself. Flags win over the spec.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Transform } from 'node:stream';
import { Command, Option } from 'commander';
import { runBatch } from '../src/batch/engine.js';
import { SourceRegistry } from '../src/sources/registry.js';
import { OjsError } from '../src/spec/errors.js';
import { formatFromFileName, parseFormat, type ArchiveFormat } from '../src/spec/format.js';
import { parseBatchRequest, type MossIn, type MossReq, type MossResp, type RequestDefaults } from '../src/spec/request.js';
import { parseSpecText } from '../src/spec/spec-text.js';
import { expandTemplate } from '../src/spec/template.js';
import { hasScheme, normalizeProvider, parseBucketUri } from '../src/spec/uri.js';
import { EXIT_OK, EXIT_USAGE, collectRoot, interruptSignal, reportError } from './common.js';
import { openDestination, usage, writeArchive } from './output.js';
import { formatBytes, showProgress } from './progress.js';

interface GetBatchOptions {
  spec?: string;
  list?: string;
  template?: string;
  prefix?: string;
  root: Record<string, string>;
  format?: string;
  level?: string;
  contOnErr?: boolean;
  maxSoftErrs?: string;
  omitSrcBck?: boolean;
  streaming?: boolean;
  yes?: boolean;
  nv?: boolean;
  nonVerbose?: boolean;
  metadata?: string;
  endpoint?: string;
  token?: string;
}

export function getBatchCommand(): Command {
  return new Command('get-batch')
    .description('Fetch a batch of objects, byte ranges and files into ONE archive, in request order')
    .argument('[SRC]', 'default bucket for names that carry none: a --root NAME, a file:///dir, or NAME/object|template|prefix/')
    .argument('[DST]', "output archive (.tar, .tgz, .tar.gz, .zip, .tar.lz4), or '-' for stdout (required)")
    .addOption(new Option('-f, --spec <FILE>', "JSON or YAML request spec (AIStore GetBatch keys); '-' reads stdin"))
    .addOption(new Option('--list <NAMES>', 'comma-separated object names (or URIs)'))
    .addOption(new Option('--template <T>', "brace template of object names, e.g. 'shard-{000..099}.bin'"))
    .addOption(new Option('--prefix <P>', 'every object under prefix P of SRC, in name order'))
    .addOption(new Option('--root <NAME=DIR>', 'serve directory DIR as file bucket NAME (repeatable)').argParser(collectRoot).default({}, 'none'))
    .addOption(new Option('--format <FMT>', "output format when DST does not say (stdout): .tar, .tgz (.tar.gz), .zip, .tar.lz4"))
    .addOption(new Option('--level <N>', '.tgz: gzip level 1-9 (default 1); .zip: DEFLATE at this level instead of STORE'))
    .addOption(new Option('--cont-on-err', 'put missing items in the archive as empty __404__/<name> entries instead of failing'))
    .addOption(new Option('--max-soft-errs <N>', 'with --cont-on-err, fail once more than N items are missing (default: no limit)'))
    .addOption(new Option('--omit-src-bck', 'name entries <object> instead of <bucket>/<object>'))
    .addOption(new Option('--streaming', 'ask for a streamed response (strm); in-process runs always stream'))
    .addOption(new Option('-y, --yes', 'overwrite DST if it exists'))
    .addOption(new Option('--nv', 'non-verbose: no progress line and no summary'))
    .addOption(new Option('--non-verbose', 'same as --nv').hideHelp())
    .addOption(new Option('--metadata <FILE>', "also write the response metadata (uuid, out[] per entry) as JSON; '-' for stderr"))
    .addOption(new Option('--endpoint <URL>', 'send the batch to a running `ojs-ml serve` (or AIStore) at URL instead of fetching in-process').env('OJS_ML_ENDPOINT'))
    .addOption(new Option('--token <T>', 'bearer token for --endpoint').env('OJS_ML_TOKEN'))
    .addHelpText(
      'after',
      `
Examples:
  ojs-ml get-batch --root data=./data --spec batch.json out.tar
  ojs-ml get-batch data --root data=./data --list a.wav,b.wav out.tar
  ojs-ml get-batch data --root data=./data --template 'shard-{000..009}.bin' - | tar tv
  ojs-ml get-batch file:///srv/audio --prefix train/ --cont-on-err train.tar
  ojs-ml get-batch data --list a.wav,b.wav --endpoint http://127.0.0.1:8080 out.tar

With --endpoint, SRC names the server's bucket (a --root of the server, or a URI such as
s3://bucket), files are read by the server, and the answer is multipart (metadata, then the
archive) unless --streaming is given.

Exit codes: 0 done, 1 the batch failed, 2 bad arguments or spec, 130 interrupted.
A failed run leaves no DST behind.`,
    )
    .action(async (a: string | undefined, b: string | undefined, opts: GetBatchOptions) => {
      if (a === undefined) {
        process.stderr.write("ojs-ml: error: missing DST, the output archive (a .tar file, or '-' for stdout) [ERR_USAGE]\n");
        process.exitCode = EXIT_USAGE;
        return;
      }
      const [src, dst] = b === undefined ? [undefined, a] : [a, b];
      process.exitCode = await getBatch(src, dst, { ...opts, nv: opts.nv === true || opts.nonVerbose === true });
    });
}

async function getBatch(src: string | undefined, dst: string, opts: GetBatchOptions): Promise<number> {
  const intr = interruptSignal();
  let registry: SourceRegistry | undefined;
  try {
    if (opts.endpoint !== undefined && opts.endpoint !== '') return await remoteGetBatch(opts.endpoint, src, dst, opts, intr.signal);
    const roots = { ...opts.root };
    const base = resolveSrc(src, roots);
    const defaults: RequestDefaults = { provider: base?.provider ?? 'file', bucket: base?.bucket ?? soleRoot(roots) };
    // The CLI runs as its user, on its user's network: private addresses are fair game.
    registry = new SourceRegistry({ file: { roots, allowAbsolute: true }, http: { allowPrivate: true } });
    const raw = await buildRequest(base, opts, registry, intr.signal);
    raw.mime = chooseFormat(dst, opts.format, raw.mime);
    if (opts.contOnErr) raw.coer = true;
    if (opts.omitSrcBck) raw.onob = true;
    if (opts.streaming) raw.strm = true;
    if (opts.maxSoftErrs !== undefined) raw.max_soft_errs = parseCount(opts.maxSoftErrs, '--max-soft-errs');
    const req = parseBatchRequest(raw, defaults);

    const interactive = Boolean(process.stdin.isTTY && process.stderr.isTTY);
    const dest = await openDestination(dst, { overwrite: opts.yes === true, interactive });
    const started = Date.now();
    const level = opts.level === undefined ? undefined : parseLevel(opts.level);
    const run = runBatch(req, registry, intr.signal, { archive: { level } });
    const progress = await showProgress(run.progress, !opts.nv && process.stderr.isTTY === true);
    try {
      await writeArchive(dest, run, intr.signal);
    } finally {
      progress.stop();
    }
    const result = await run.result;
    if (opts.metadata !== undefined) await writeMetadata(opts.metadata, result);
    if (!opts.nv) summarize(dest.label, result.progress.done, result.progress.bytes, result.progress.missing, started);
    return EXIT_OK;
  } catch (e) {
    return reportError(e, intr.interrupted());
  } finally {
    intr.dispose();
    await registry?.close().catch(() => undefined);
  }
}

/** The same batch, fetched by a running service: SRC names the server's bucket, not a local root. */
async function remoteGetBatch(endpoint: string, src: string | undefined, dst: string, opts: GetBatchOptions, signal: AbortSignal): Promise<number> {
  if (Object.keys(opts.root).length > 0) throw usage('--root names local directories; with --endpoint the server has its own roots (name one as SRC)');
  if (opts.level !== undefined) throw usage('--level is not part of the wire request; the server compresses at its own level');
  if (opts.metadata !== undefined && opts.streaming === true) throw usage('--metadata needs the multipart answer; drop --streaming');
  if (src?.startsWith('file://') === true) throw usage('a file:// SRC is read in-process; with --endpoint name one of the server\'s roots');
  const base: SrcBase | undefined = src === undefined ? undefined : hasScheme(src) ? remoteBase(src) : splitSrc(src);
  if (opts.prefix !== undefined || base?.rest.endsWith('/') === true) throw usage('--prefix lists objects in-process; with --endpoint give --spec, --list or --template');
  const raw = await buildRequest(base, opts, undefined, signal);
  raw.mime = chooseFormat(dst, opts.format, raw.mime);
  if (opts.contOnErr) raw.coer = true;
  if (opts.omitSrcBck) raw.onob = true;
  raw.strm = opts.streaming === true;
  if (opts.maxSoftErrs !== undefined) raw.max_soft_errs = parseCount(opts.maxSoftErrs, '--max-soft-errs');
  // Checked here too, so that a bad spec is a usage error before anything goes over the wire.
  parseBatchRequest(raw, { bucket: base?.bucket ?? 'server-default', provider: base?.provider });

  const interactive = Boolean(process.stdin.isTTY && process.stderr.isTTY);
  const dest = await openDestination(dst, { overwrite: opts.yes === true, interactive });
  const started = Date.now();
  const { requestBatch } = await import('../src/client/http.js');
  const provider = base?.provider === '' ? undefined : base?.provider;
  const res = await requestBatch(endpoint, raw as MossReq, { bucket: base?.bucket, provider, token: opts.token, signal });
  let bytes = 0;
  const counted = new Transform({
    transform(c: Buffer, _e, cb) {
      bytes += c.length;
      cb(null, c);
    },
  });
  res.archive.once('error', (e) => counted.destroy(e));
  await dest.write(res.archive.pipe(counted), signal);
  if (res.metadata !== undefined && opts.metadata !== undefined) await writeMetadata(opts.metadata, res.metadata);
  if (!opts.nv) {
    const out = res.metadata?.out;
    const summary = res.summary();
    const missing = out?.filter((o) => o.err_msg !== undefined).length ?? summary.missing ?? 0;
    summarize(dest.label, out?.length ?? summary.entries ?? raw.in.length, out?.reduce((a, o) => a + o.size, 0) ?? bytes, missing, started);
  }
  return EXIT_OK;
}

function remoteBase(src: string): SrcBase {
  const loc = parseBucketUri(src, 'SRC');
  return { provider: loc.provider, bucket: loc.bucket, rest: loc.key };
}

function splitSrc(src: string): SrcBase {
  const slash = src.indexOf('/');
  return { provider: '', bucket: slash < 0 ? src : src.slice(0, slash), rest: slash < 0 ? '' : src.slice(slash + 1) };
}

async function writeMetadata(file: string, meta: MossResp): Promise<void> {
  const json = `${JSON.stringify({ uuid: meta.uuid, out: meta.out }, null, 2)}\n`;
  if (file === '-') process.stderr.write(json);
  else await fs.promises.writeFile(file, json);
}

function summarize(label: string, entries: number, bytes: number, missing: number, started: number): void {
  const secs = (Date.now() - started) / 1000;
  const miss = missing > 0 ? `; ${missing} missing (as __404__/ entries)` : '';
  const what = label === 'stdout' ? 'Streamed to stdout' : `Created ${label}`;
  process.stderr.write(`${what}: ${entries} entries, ${formatBytes(bytes)} in ${secs.toFixed(2)} s (${formatBytes(Math.round(bytes / Math.max(secs, 0.001)))}/s)${miss}\n`);
}

interface SrcBase {
  provider: string;
  bucket: string;
  /** Object name, template or prefix given after the bucket, if any. */
  rest: string;
}

/** SRC as `NAME[/rest]` (a --root name) or a URI; a file:///dir becomes a root of its own. */
function resolveSrc(src: string | undefined, roots: Record<string, string>): SrcBase | undefined {
  if (src === undefined) return undefined;
  if (src.startsWith('file://')) {
    const loc = parseBucketUri(src, 'SRC');
    const dir = `/${loc.key}`;
    const name = path.basename(dir) || 'root';
    if (roots[name] !== undefined && roots[name] !== dir) throw usage(`SRC ${src} would be root '${name}', which --root already names`);
    roots[name] = dir;
    return { provider: 'file', bucket: name, rest: '' };
  }
  if (hasScheme(src)) {
    const loc = parseBucketUri(src, 'SRC');
    return { provider: loc.provider, bucket: loc.bucket, rest: loc.key };
  }
  const { bucket, rest } = splitSrc(src);
  if (roots[bucket] === undefined) {
    const known = Object.keys(roots);
    throw usage(`SRC '${bucket}' is not a file root; ${known.length ? `known: ${known.join(', ')}` : 'add --root ' + bucket + '=DIR'}`);
  }
  return { provider: 'file', bucket, rest };
}

function soleRoot(roots: Record<string, string>): string | undefined {
  const names = Object.keys(roots);
  return names.length === 1 ? names[0] : undefined;
}

type RawRequest = { in: MossIn[]; mime?: string; coer?: boolean; onob?: boolean; strm?: boolean; max_soft_errs?: number } & Record<string, unknown>;

async function buildRequest(base: SrcBase | undefined, opts: GetBatchOptions, registry: SourceRegistry | undefined, signal: AbortSignal): Promise<RawRequest> {
  const given = (['spec', 'list', 'template', 'prefix'] as const).filter((k) => opts[k] !== undefined);
  if (given.length > 1) throw usage(`--${given.join(', --')} are mutually exclusive; give one`);
  const rest = base?.rest ?? '';
  const source = given[0] ?? (rest === '' ? undefined : rest.endsWith('/') ? 'prefix' : rest.includes('{') ? 'template' : 'object');
  if (source === undefined) throw usage('nothing to fetch: give --spec, --list, --template, --prefix, or SRC with an object name');
  if (source !== 'spec' && rest !== '' && given.length > 0) throw usage(`SRC names '${rest}' and --${source} is given too; give one`);

  switch (source) {
    case 'spec': {
      const parsed = await parseSpecText(await readSpec(opts.spec!), opts.spec === '-' ? 'spec (stdin)' : opts.spec!);
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
        throw usage(`${opts.spec}: a spec is an object with an "in" list of entries`);
      }
      return parsed as RawRequest;
    }
    case 'list':
      return { in: splitList(opts.list!).map(nameOrUri) };
    case 'template':
      return { in: [...expandTemplate(opts.template ?? rest)].map(nameOrUri) };
    case 'object':
      return { in: [{ objname: rest }] };
    case 'prefix': {
      if (base === undefined || registry === undefined) throw usage('--prefix needs SRC, the bucket to list');
      const prefix = opts.prefix ?? rest;
      const provider = normalizeProvider(base.provider, 'SRC');
      const entries: MossIn[] = [];
      for await (const o of registry.get(provider).list(base.bucket, prefix, { signal })) entries.push({ objname: o.key });
      if (entries.length === 0) throw new OjsError('NotFound', `no objects under prefix '${prefix}' in ${base.bucket}`);
      return { in: entries };
    }
  }
}

function splitList(list: string): string[] {
  const names = list.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (names.length === 0) throw usage('--list names no objects');
  return names;
}

function nameOrUri(name: string): MossIn {
  return hasScheme(name) ? { uri: name } : { objname: name };
}

async function readSpec(spec: string): Promise<string> {
  if (spec === '-') {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  }
  try {
    return await fs.promises.readFile(spec, 'utf8');
  } catch (e) {
    throw usage(`cannot read spec ${spec}: ${(e as Error).message}`);
  }
}

/** DST's extension wins, then --format, then the spec's mime; a file DST must say which. */
function chooseFormat(dst: string, flag: string | undefined, specMime: string | undefined): string {
  const fromFlag: ArchiveFormat | undefined = flag === undefined ? undefined : parseFormat(flag, '--format');
  if (dst === '-') return fromFlag ?? parseFormat(specMime);
  const fromDst = formatFromFileName(dst);
  if (fromDst !== undefined) {
    if (fromFlag !== undefined && fromFlag !== fromDst) throw usage(`--format ${flag} contradicts DST ${dst}`);
    return fromDst;
  }
  if (fromFlag !== undefined) return fromFlag;
  throw usage(`cannot tell the archive format from '${dst}': name it .tar (or .tgz, .zip, .tar.lz4), or pass --format`);
}

function parseCount(v: string, flag: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw usage(`${flag} expects a non-negative integer, got '${v}'`);
  return n;
}

function parseLevel(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 9) throw usage(`--level expects 1-9, got '${v}'`);
  return n;
}
