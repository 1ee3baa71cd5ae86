/**
 * Cut manifests -> batches for the engine: cut lines are read as a stream, checked and planned
 * (cuts.ts), grouped N at a time, and each group becomes one BatchRequest plus the opener that
 * slices its audio (opener.ts). The wire contract is untouched: every entry is an ordinary
 * BatchEntry (location, archpath, opaque = the cut id) that the opener reads differently.
 */
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import type { SourceResolver } from '../batch/engine.js';
import { OjsError } from '../spec/errors.js';
import type { ArchiveFormat } from '../spec/format.js';
import { BatchEntry, type BatchRequest } from '../spec/request.js';
import { formatLocation, hasScheme, parseObjectUri, type ObjectLocation } from '../spec/uri.js';
import { planCut, type AudioItem, type CutPlan, type PlanOptions } from './cuts.js';
import { manifestLines, type ManifestLine } from './manifest.js';
import { Deferred, LhotseOpener, ProbeCache, type AudioOutcome, type PlannedEntry } from './opener.js';

export interface ReadCutsOptions extends PlanOptions {
  /** Skip bad lines and cuts that cannot be fetched (each reported to onSkip) instead of failing. */
  contOnErr: boolean;
  onSkip?: (err: OjsError) => void;
  /** Only lines from..to (1-based, inclusive). */
  fromLine?: number;
  toLine?: number;
  /** An extra check per cut (the Shar writer's); an error skips or fails like a bad line. */
  check?: (cut: CutPlan) => OjsError | undefined;
}

/** Checked, planned cuts of a manifest's lines, in order. */
export async function* readCuts(lines: AsyncIterable<ManifestLine> | Iterable<ManifestLine>, opts: ReadCutsOptions): AsyncGenerator<CutPlan> {
  for await (const l of lines) {
    if (opts.fromLine !== undefined && l.line < opts.fromLine) continue;
    if (opts.toLine !== undefined && l.line > opts.toLine) return;
    let err = l.error;
    let cut: CutPlan | undefined;
    if (err === undefined) {
      try {
        cut = planCut(l.value, l.line, opts);
        const problem = opts.check?.(cut);
        if (problem !== undefined) throw new OjsError(problem.kind, `line ${l.line}: ${problem.message}`, { code: problem.code, context: problem.context });
      } catch (e) {
        if (!(e instanceof OjsError)) throw e;
        err = e;
      }
    }
    if (err === undefined) {
      yield cut!;
      continue;
    }
    if (!opts.contOnErr) throw err;
    opts.onSkip?.(err);
  }
}

/** A check for readCuts: every audio object of the cut has a provider here (else the cut's line is named). */
export function providerCheck(sources: SourceResolver, also?: (cut: CutPlan) => OjsError | undefined): (cut: CutPlan) => OjsError | undefined {
  return (cut) => {
    const first = also?.(cut);
    if (first !== undefined) return first;
    for (const item of cut.items) {
      try {
        sources.get(item.location.provider);
      } catch (e) {
        return e instanceof OjsError ? e : new OjsError('Unsupported', String(e));
      }
    }
    return undefined;
  };
}

/** Groups of `size` (the last one may be shorter; none when the input is empty). */
export async function* inGroups<T>(items: AsyncIterable<T>, size: number): AsyncGenerator<T[]> {
  let group: T[] = [];
  for await (const it of items) {
    group.push(it);
    if (group.length >= size) {
      yield group;
      group = [];
    }
  }
  if (group.length > 0) yield group;
}

/** Where a manifest is: a URI of any provider, or a local path (file provider, absolute). */
export function manifestLocation(where: string, fileLocation?: (abs: string) => ObjectLocation, cwd = process.cwd()): ObjectLocation {
  let loc: ObjectLocation = hasScheme(where) ? parseObjectUri(where, 'manifest') : { provider: 'file', bucket: '', key: path.resolve(cwd, where).replace(/^\/+/, '') };
  if (loc.provider === 'file' && loc.bucket === '' && fileLocation !== undefined) loc = fileLocation(`/${loc.key}`);
  return loc;
}

/** The lines of a manifest read through a source (compression by its bytes, then its name). */
export async function* openManifest(loc: ObjectLocation, sources: SourceResolver, signal: AbortSignal): AsyncGenerator<ManifestLine> {
  const opened = await sources.get(loc.provider).open({ bucket: loc.bucket, key: loc.key }, { signal });
  const body: Readable = opened.body;
  yield* manifestLines(body, formatLocation(loc), signal);
}

export interface CutBatchOptions {
  format: ArchiveFormat;
  coer: boolean;
  /** Shared by every batch of a run, so each object's header is read once. */
  probes: ProbeCache;
}

/** One batch of cuts, ready for runBatch(request, sources, signal, { opener }). */
export interface LhotseBatch {
  request: BatchRequest;
  opener: LhotseOpener;
  /** How each audio entry came out, by entry index (settled once the entry is opened). */
  outcomes: Map<number, Deferred<AudioOutcome>>;
}

/** Every audio object of these cuts, in cut order, one entry each. */
export function cutBatch(cuts: readonly CutPlan[], opts: CutBatchOptions): LhotseBatch {
  const entries: BatchEntry[] = [];
  const plans = new Map<number, PlannedEntry>();
  const outcomes = new Map<number, Deferred<AudioOutcome>>();
  for (const cut of cuts) {
    for (const item of cut.items) {
      const index = entries.length;
      entries.push(audioEntry(index, item));
      const outcome = new Deferred<AudioOutcome>();
      plans.set(index, { kind: 'audio', item, outcome });
      outcomes.set(index, outcome);
    }
  }
  return { request: lhotseRequest(entries, opts), opener: new LhotseOpener(plans, opts.probes), outcomes };
}

export function lhotseRequest(entries: BatchEntry[], opts: { format: ArchiveFormat; coer: boolean }): BatchRequest {
  return { format: opts.format, entries, coer: opts.coer, onob: true, strm: true, coloc: 0, maxSoftErrors: Infinity };
}

/** The entry of one audio object, under the name it gets when it comes out as planned. */
export function audioEntry(index: number, item: AudioItem): BatchEntry {
  const ext = item.mode === 'slice' ? 'wav' : item.sourceExt === '' ? 'bin' : item.sourceExt;
  return BatchEntry.of({
    index,
    location: item.location,
    archpath: item.archpath,
    opaque: Buffer.from(item.cutId, 'utf8').toString('base64'),
    name: `${item.base}.${ext}`,
    providerName: item.location.provider,
  });
}
