/**
 * Lhotse Shar output (../shared/reference/lhotse.md section 4; `lhotse/shar/writers/shar.py`):
 * shard k is `cuts.<k:06d>.jsonl.gz` plus `recording.<k:06d>.tar`, whose members come in pairs,
 * in cut order: `<cut.id>.<fmt>` (the audio) then `<cut.id>.json` (a one-line Recording), or
 * `<cut.id>.nodata` + `<cut.id>.nometa` (both empty) for a cut without audio. Lhotse's reader
 * pairs the members and checks each data member's stem against the cut id.
 *
 * The recording in both places is Lhotse's placeholder (`to_shar_placeholder`): one source
 * `{"type": "shar", "channels": ..., "source": ""}`; for a slice, duration = the cut's and
 * num_samples = compute_num_samples(duration, rate), and the cut line gets `start = 0`.
 *
 * Where we differ from Lhotse's writer, and why:
 * - The WAV holds every channel of the cut's source, as the placeholder says (Lhotse stores only
 *   the cut's channels under a source listing all of the recording's, which its own reader then
 *   mis-reads for a cut of any channel but the first); for a mono recording it is the same file.
 * - Audio that cannot be sliced (FLAC, ..., or a recording with time-changing transforms) is
 *   stored whole, and then the placeholder keeps the recording's duration, num_samples and
 *   transforms, and the cut keeps its start: Lhotse loads the same samples from it. Lhotse
 *   would decode, transform and re-encode, which needs codecs this service does not have.
 * - Time-neutral transforms (Volume, ...) stay in the placeholder: the samples were not
 *   transformed here, so Lhotse's reader applies them on load.
 * - MixedCuts and cuts needing several audio files (one source per channel) are not written:
 *   Shar holds one audio file per cut.
 */
import { gzipSync } from 'node:zlib';
import { OjsError } from '../spec/errors.js';
import { BatchEntry } from '../spec/request.js';
import { audioEntry, lhotseRequest, type LhotseBatch } from './batch.js';
import type { AudioItem, CutPlan } from './cuts.js';
import { Deferred, LhotseOpener, type AudioOutcome, type PlannedEntry, type ProbeCache } from './opener.js';
import { pyJson } from './pyjson.js';
import { computeNumSamples } from './time.js';

export const SHAR_SHARD_SIZE = 1000; // Lhotse's SharWriter default

type Json = Record<string, unknown>;

/** File names of shard k. */
export function sharNames(k: number): { cuts: string; recording: string } {
  const n = String(k).padStart(6, '0');
  return { cuts: `cuts.${n}.jsonl.gz`, recording: `recording.${n}.tar` };
}

/** Why a cut cannot go into a Shar shard, or undefined when it can. */
export function sharProblem(cut: CutPlan): OjsError | undefined {
  if (cut.type === 'MixedCut') return new OjsError('Unsupported', `cut '${cut.id}' is a MixedCut; Shar holds one audio file per cut`, { code: 'ERR_SHAR_CUT' });
  if (cut.items.length > 1) {
    return new OjsError('Unsupported', `cut '${cut.id}' needs ${cut.items.length} audio files (one source per channel); Shar holds one per cut`, { code: 'ERR_SHAR_CUT' });
  }
  return undefined;
}

export interface SharShard extends LhotseBatch {
  /** The shard's cuts file (gzipped JSONL), once every entry of the tar has been opened. */
  cutsFile(): Promise<Buffer>;
  /** Ids of cuts whose audio could not be had (coer): they have `.nodata`/`.nometa` and no recording. */
  missing(): Promise<string[]>;
}

/** The recording tar's entries and, after it, the cuts file of one shard. */
export function sharShard(cuts: readonly CutPlan[], opts: { coer: boolean; probes: ProbeCache }): SharShard {
  const entries: BatchEntry[] = [];
  const plans = new Map<number, PlannedEntry>();
  const outcomes = new Map<number, Deferred<AudioOutcome>>();
  const lines: Promise<{ line: string; missing?: string }>[] = [];
  const made = (name: string, make: () => Promise<{ bytes: Buffer; name?: string }>) => {
    const index = entries.length;
    // Made entries read nothing; the location only has to be well-formed.
    entries.push(BatchEntry.of({ index, location: { provider: 'file', bucket: '', key: name }, name }));
    plans.set(index, { kind: 'made', make });
  };
  for (const cut of cuts) {
    const problem = sharProblem(cut);
    if (problem !== undefined) throw problem;
    const item = cut.items[0];
    if (item === undefined) {
      made(`${cut.id}.nodata`, async () => ({ bytes: Buffer.alloc(0) }));
      made(`${cut.id}.nometa`, async () => ({ bytes: Buffer.alloc(0) }));
      lines.push(Promise.resolve({ line: pyJson(cut.type === 'PaddingCut' ? cut.raw : { ...cut.raw, start: 0 }, false) }));
      continue;
    }
    const index = entries.length;
    const entry = audioEntry(index, item);
    entries.push(entry);
    const outcome = new Deferred<AudioOutcome>();
    plans.set(index, { kind: 'audio', item, outcome, missingName: opts.coer ? `${cut.id}.nodata` : undefined });
    outcomes.set(index, outcome);
    const described = outcome.promise.then((o) => describe(cut, item, o));
    made(`${cut.id}.json`, async () => {
      const d = await described;
      return d.recording === undefined ? { bytes: Buffer.alloc(0), name: `${cut.id}.nometa` } : { bytes: Buffer.from(`${pyJson(d.recording, true)}\n`) };
    });
    lines.push(described.then((d) => ({ line: pyJson(d.cut, false), missing: d.recording === undefined ? cut.id : undefined })));
  }
  const all = Promise.all(lines);
  all.catch(() => undefined);
  return {
    request: lhotseRequest(entries, { format: 'tar', coer: false }),
    opener: new LhotseOpener(plans, opts.probes),
    outcomes,
    cutsFile: async () => gzipSync(Buffer.from((await all).map((l) => `${l.line}\n`).join(''), 'utf8')),
    missing: async () => (await all).flatMap((l) => (l.missing === undefined ? [] : [l.missing])),
  };
}

/** The cut line and the placeholder recording for how the audio came out. */
function describe(cut: CutPlan, item: AudioItem, o: AudioOutcome): { cut: Json; recording?: Json } {
  if (o.mode === 'missing') {
    const rest = { ...cut.raw };
    delete rest.recording;
    return { cut: rest };
  }
  const rec = cut.raw.recording as Json;
  const recording = placeholder(rec, item, o.mode === 'slice' ? cut.raw : undefined);
  // Key order as read (Lhotse writes dataclass field order): start keeps its place.
  const line: Json = {};
  for (const [k, v] of Object.entries(cut.raw)) line[k] = k === 'recording' ? recording : k === 'start' && o.mode === 'slice' ? 0 : v;
  if (o.mode === 'slice' && !('start' in line)) line.start = 0;
  return { cut: line, recording };
}

/** `to_shar_placeholder(recording, cut)`; with no cut (audio stored whole) the timing stays. */
function placeholder(rec: Json, item: AudioItem, sliceOf: Json | undefined): Json {
  const out: Json = {};
  const rate = Number(rec.sampling_rate);
  for (const [k, v] of Object.entries(rec)) {
    if (k === 'sources') out[k] = [{ type: 'shar', channels: item.channels, source: '' }];
    else if (k === 'channel_ids') out[k] = item.channels;
    else if (sliceOf !== undefined && k === 'duration') out[k] = sliceOf.duration;
    else if (sliceOf !== undefined && k === 'num_samples') out[k] = computeNumSamples(Number(sliceOf.duration), rate);
    else out[k] = v;
  }
  return out;
}
