/**
 * `ojs-ml lhotse-get-batch --cuts FILE|URI [DST]`: the audio of Lhotse cuts into archives, one
 * for the whole manifest (DST), one per N cuts (--batch-size, --output-template), or as Lhotse
 * Shar shards (--shar DIR). Batch and Shar runs resume: every file is written under a temporary
 * name and renamed when complete, so a file that exists is finished and a rerun keeps it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { Command, Option } from 'commander';
import { runBatch } from '../src/batch/engine.js';
import { cutBatch, inGroups, manifestLocation, openManifest, providerCheck, readCuts, type LhotseBatch } from '../src/lhotse/batch.js';
import type { AudioMode, CutPlan } from '../src/lhotse/cuts.js';
import { manifestLines, type ManifestLine } from '../src/lhotse/manifest.js';
import { ProbeCache } from '../src/lhotse/opener.js';
import { rootMapper } from '../src/lhotse/roots.js';
import { SHAR_SHARD_SIZE, sharNames, sharProblem, sharShard } from '../src/lhotse/shar.js';
import { SourceRegistry } from '../src/sources/registry.js';
import { OjsError } from '../src/spec/errors.js';
import { formatFromFileName, parseFormat, type ArchiveFormat } from '../src/spec/format.js';
import { expandTemplate, templateSize } from '../src/spec/template.js';
import { EXIT_OK, collectRoot, interruptSignal, reportError } from './common.js';
import { openDestination, usage, writeArchive } from './output.js';
import { formatBytes, showProgress } from './progress.js';

const NOTES_MAX = 5; // reasons for whole fetches listed at the end of a run

interface LhotseFlags {
  cuts?: string;
  batchSize?: string;
  outputTemplate?: string;
  audio: string;
  shar?: string;
  format?: string;
  contOnErr?: boolean;
  root: Record<string, string>;
  nv?: boolean;
  yes?: boolean;
}

interface Run {
  flags: LhotseFlags;
  registry: SourceRegistry;
  probes: ProbeCache;
  signal: AbortSignal;
  verbose: boolean;
  progress: boolean;
  stats: { cuts: number; entries: number; bytes: number; written: number; kept: number; whole: Map<string, number> };
}

export function lhotseGetBatchCommand(): Command {
  return new Command('lhotse-get-batch')
    .description("The audio of Lhotse cuts (cuts.jsonl[.gz|.lz4]) into archives: each entry <cut.id>.wav holds exactly the cut's samples")
    .argument('[DST]', "output archive (.tar, .tgz, .zip, .tar.lz4) or '-' for stdout; with --output-template, only a format hint")
    .addOption(new Option('--cuts <FILE|URI>', "cut manifest: a path, a URI (file://, s3://, ...), or '-' for stdin; plain, gzip or LZ4"))
    .addOption(new Option('--batch-size <N>', 'cuts per archive (with --output-template), or per Shar shard (default 1000)'))
    .addOption(new Option('--output-template <T>', "archive names, e.g. 'batch-{000..999}.tar'; the format is each name's extension"))
    .addOption(new Option('--audio <MODE>', 'slice: each cut\'s samples in a fresh WAV; whole: the whole audio object per cut (AIStore)').choices(['slice', 'whole']).default('slice'))
    .addOption(new Option('--shar <DIR>', 'write Lhotse Shar shards (cuts.NNNNNN.jsonl.gz + recording.NNNNNN.tar) into DIR'))
    .addOption(new Option('--format <FMT>', 'output format when neither DST nor the template says: .tar, .tgz, .zip, .tar.lz4'))
    .addOption(new Option('--cont-on-err', 'skip bad lines and unusable cuts (reported), and put missing audio in as empty __404__/ entries'))
    .addOption(new Option('--root <NAME=DIR>', 'serve directory DIR as file bucket NAME (repeatable); local paths inside it read through it').argParser(collectRoot).default({}, 'none'))
    .addOption(new Option('--nv', 'non-verbose: no progress line and no summary'))
    .addOption(new Option('-y, --yes', 'overwrite DST if it exists (batch and Shar runs always keep finished files: that is how they resume)'))
    .addHelpText(
      'after',
      `
Examples:
  ojs-ml lhotse-get-batch --cuts cuts.jsonl.gz batch.tar
  ojs-ml lhotse-get-batch --cuts s3://bkt/cuts.jsonl.lz4 --batch-size 256 --output-template 'train-{0000..9999}.tar'
  ojs-ml lhotse-get-batch --cuts cuts.jsonl --audio whole --cont-on-err - | tar tv
  ojs-ml lhotse-get-batch --cuts cuts.jsonl.gz --shar shar/ --batch-size 1000

Entries are named <cut.id>.wav (sliced WAV or SPHERE), or <cut.id>.<ext> for audio fetched
whole (FLAC, Opus, MP3, shorten, or recordings with Speed/Tempo/Resample transforms); each
carries the cut id as its opaque. See docs/lhotse.md for names of multi-file and mixed cuts.

Exit codes: 0 done, 1 a batch failed, 2 bad arguments or manifest, 130 interrupted.
A failed run leaves no partial file; a rerun of a batch or Shar run keeps finished files.`,
    )
    .action(async (dst: string | undefined, flags: LhotseFlags) => {
      process.exitCode = await lhotseGetBatch(dst, flags);
    });
}

async function lhotseGetBatch(dst: string | undefined, flags: LhotseFlags): Promise<number> {
  const intr = interruptSignal();
  try {
    const mode = checkFlags(dst, flags);
    const roots = flags.root;
    const run: Run = {
      flags,
      registry: new SourceRegistry({ file: { roots, allowAbsolute: true } }),
      probes: new ProbeCache(),
      signal: intr.signal,
      verbose: flags.nv !== true,
      progress: flags.nv !== true && process.stderr.isTTY === true,
      stats: { cuts: 0, entries: 0, bytes: 0, written: 0, kept: 0, whole: new Map() },
    };
    const started = Date.now();
    const cuts = readCuts(manifest(run), {
      audio: flags.audio as AudioMode,
      contOnErr: flags.contOnErr === true,
      onSkip: (e) => process.stderr.write(`ojs-ml: skipped: ${e.message} [${e.code}]\n`),
      fileLocation: rootMapper(roots, true),
      check: providerCheck(run.registry, mode === 'shar' ? sharProblem : undefined),
    });
    if (mode === 'single') await single(run, dst!, cuts);
    else if (mode === 'batches') await batches(run, dst, cuts);
    else await shar(run, cuts);
    if (run.verbose) summary(run, (Date.now() - started) / 1000);
    return EXIT_OK;
  } catch (e) {
    return reportError(e, intr.interrupted());
  } finally {
    intr.dispose();
  }
}

function checkFlags(dst: string | undefined, f: LhotseFlags): 'single' | 'batches' | 'shar' {
  if (f.cuts === undefined) throw usage('--cuts is required: the cut manifest (a path, a URI, or - for stdin)');
  if (f.batchSize !== undefined) positive(f.batchSize, '--batch-size');
  if (f.shar !== undefined) {
    if (dst !== undefined || f.outputTemplate !== undefined) throw usage('--shar writes its own file names; give neither DST nor --output-template');
    return 'shar';
  }
  if (f.outputTemplate !== undefined || f.batchSize !== undefined) {
    if (f.outputTemplate === undefined || f.batchSize === undefined) throw usage('--batch-size and --output-template go together');
    templateSize(f.outputTemplate);
    return 'batches';
  }
  if (dst === undefined) throw usage("missing DST, the output archive (or '-' for stdout), or --batch-size with --output-template, or --shar DIR");
  return 'single';
}

function manifest(run: Run): AsyncIterable<ManifestLine> {
  const where = run.flags.cuts!;
  if (where === '-') return manifestLines(process.stdin, 'stdin', run.signal);
  return openManifest(manifestLocation(where, rootMapper(run.flags.root, true)), run.registry, run.signal);
}

/** The whole manifest into one archive (its plans are held in memory; batches stream). */
async function single(run: Run, dst: string, cuts: AsyncIterable<CutPlan>): Promise<void> {
  const format = chooseFormat(dst === '-' ? undefined : dst, dst === '-' ? undefined : dst, run.flags.format, dst === '-');
  const group: CutPlan[] = [];
  for await (const c of cuts) group.push(c);
  const interactive = Boolean(process.stdin.isTTY && process.stderr.isTTY);
  const dest = await openDestination(dst, { overwrite: run.flags.yes === true, interactive });
  await writeBatch(run, cutBatch(group, { format, coer: run.flags.contOnErr === true, probes: run.probes }), group.length, dest);
}

async function batches(run: Run, dstHint: string | undefined, cuts: AsyncIterable<CutPlan>): Promise<void> {
  const template = run.flags.outputTemplate!;
  const names = expandTemplate(template);
  const size = Number(run.flags.batchSize);
  let k = 0;
  for await (const group of inGroups(cuts, size)) {
    k++;
    const name = names.next();
    if (name.done === true) {
      throw new OjsError('BadSpec', `template exhausted at batch ${k}: '${template}' names ${templateSize(template)} archives and the manifest has more than ${(k - 1) * size} cuts`, {
        code: 'ERR_TEMPLATE_EXHAUSTED',
      });
    }
    if (await finished(run, name.value)) continue;
    const format = chooseFormat(name.value, dstHint, run.flags.format, false);
    const dest = await openDestination(name.value, { overwrite: false, interactive: false });
    await writeBatch(run, cutBatch(group, { format, coer: run.flags.contOnErr === true, probes: run.probes }), group.length, dest);
  }
}

async function shar(run: Run, cuts: AsyncIterable<CutPlan>): Promise<void> {
  const dir = run.flags.shar!;
  await fs.promises.mkdir(dir, { recursive: true });
  const size = run.flags.batchSize === undefined ? SHAR_SHARD_SIZE : Number(run.flags.batchSize);
  let k = 0;
  for await (const group of inGroups(cuts, size)) {
    const names = sharNames(k++);
    const tarPath = path.join(dir, names.recording);
    const cutsPath = path.join(dir, names.cuts);
    // The cuts file is written last, so both there means the shard is finished.
    if (fs.existsSync(tarPath) && (await finished(run, cutsPath))) continue;
    await fs.promises.rm(tarPath, { force: true });
    const shard = sharShard(group, { coer: run.flags.contOnErr === true, probes: run.probes });
    await writeBatch(run, shard, group.length, await openDestination(tarPath, { overwrite: false, interactive: false }));
    const dest = await openDestination(cutsPath, { overwrite: false, interactive: false });
    await dest.write(Readable.from([await shard.cutsFile()]), run.signal);
    for (const id of await shard.missing()) process.stderr.write(`ojs-ml: cut '${id}': audio missing; written with .nodata/.nometa and no recording\n`);
  }
}

async function finished(run: Run, file: string): Promise<boolean> {
  if (!fs.existsSync(file)) return false;
  run.stats.kept++;
  if (run.verbose) process.stderr.write(`Kept ${path.resolve(file)} (finished by an earlier run)\n`);
  return true;
}

async function writeBatch(run: Run, b: LhotseBatch, cuts: number, dest: Awaited<ReturnType<typeof openDestination>>): Promise<void> {
  const started = Date.now();
  const r = runBatch(b.request, run.registry, run.signal, { opener: b.opener });
  const progress = await showProgress(r.progress, run.progress);
  try {
    await writeArchive(dest, r, run.signal);
  } finally {
    progress.stop();
  }
  const p = (await r.result).progress;
  for (const d of b.outcomes.values()) {
    const o = await d.promise.catch(() => undefined);
    if (o?.mode === 'whole' && o.wholeWhy !== undefined) run.stats.whole.set(o.wholeWhy, (run.stats.whole.get(o.wholeWhy) ?? 0) + 1);
  }
  run.stats.cuts += cuts;
  run.stats.entries += p.done;
  run.stats.bytes += p.bytes;
  run.stats.written++;
  if (!run.verbose) return;
  const secs = (Date.now() - started) / 1000;
  const missing = p.missing > 0 ? `; ${p.missing} missing (as __404__/ entries)` : '';
  const what = dest.label === 'stdout' ? 'Streamed to stdout' : `Created ${dest.label}`;
  process.stderr.write(`${what}: ${cuts} cuts, ${p.done} entries, ${formatBytes(p.bytes)} in ${secs.toFixed(2)} s${missing}\n`);
}

function summary(run: Run, secs: number): void {
  const s = run.stats;
  if (s.written + s.kept > 1) {
    process.stderr.write(`Done: ${s.written} written (${s.cuts} cuts, ${s.entries} entries, ${formatBytes(s.bytes)}), ${s.kept} kept, in ${secs.toFixed(2)} s\n`);
  }
  const reasons = [...s.whole];
  for (const [why, n] of reasons.slice(0, NOTES_MAX)) process.stderr.write(`note: ${n} audio object(s) fetched whole: ${why}\n`);
  if (reasons.length > NOTES_MAX) process.stderr.write(`note: ... and ${reasons.length - NOTES_MAX} more reasons to fetch whole\n`);
}

/** A name's extension, then DST's (a hint in batch runs), then --format; stdout may default to TAR. */
function chooseFormat(name: string | undefined, hint: string | undefined, flag: string | undefined, stdout: boolean): ArchiveFormat {
  const fromFlag = flag === undefined ? undefined : parseFormat(flag, '--format');
  const fromName = name === undefined ? undefined : formatFromFileName(name);
  if (fromName !== undefined) {
    if (fromFlag !== undefined && fromFlag !== fromName) throw usage(`--format ${flag} contradicts ${name}`);
    return fromName;
  }
  const fromHint = hint === undefined ? undefined : formatFromFileName(hint);
  const f = fromHint ?? fromFlag ?? (stdout ? 'tar' : undefined);
  if (f === undefined) throw usage(`cannot tell the archive format from '${name ?? hint}': name it .tar (or .tgz, .zip, .tar.lz4), or pass --format`);
  return f;
}

function positive(v: string, flag: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < 1) throw usage(`${flag} expects a positive integer, got '${v}'`);
  return n;
}
