/**
 * Cuts -> the audio objects to fetch (shapes in ../shared/reference/lhotse.md, section 1).
 *
 * - `MonoCut`, `MultiCut` and legacy `Cut`: every source of `recording` whose channels the cut
 *   uses (`channel`, an int or a list); a multi-file recording has one source per channel.
 * - `MixedCut`: the same for each track's cut, skipping `PaddingCut` and muted tracks.
 * - `PaddingCut`, and cuts without a recording (features only): nothing to fetch.
 * - Sources: `url` (any URI we have a provider for, `s3://`, `gs://`, `az://`, `hf://`,
 *   `http(s)://`, `file://`) and `file` (a path); either may point into a shard
 *   (`.../shard.tar/member.wav`, also `.tgz/`, `.tar.gz/`, `.tar.lz4/`, `.zip/`).
 *   `command`, `memory` and unfilled `shar` sources hold nothing a batch can fetch.
 *
 * Names in the archive (each audio object is one entry; the top-level cut id is its opaque):
 *   `<cut.id>.<ext>`                    a cut with one source to fetch
 *   `<cut.id>.ch<c>[-<c>...].<ext>`     one entry per source when the cut uses several (the source's channels)
 *   `<mixed.id>.t<k>[.ch...].<ext>`     track k of a MixedCut (k counts every track, so names stay put)
 * `<ext>` is `wav` for a sliced WAV or SPHERE, else the source's own extension (`bin` if none).
 */
import * as path from 'node:path';
import { OjsError } from '../spec/errors.js';
import { parseObjectUri, type ObjectLocation } from '../spec/uri.js';

export type AudioMode = 'slice' | 'whole';

/** Transforms that leave the time axis alone: a slice of the file is still the cut's audio. */
const TIME_NEUTRAL_TRANSFORMS = new Set(['Volume', 'LoudnessNormalization', 'DereverbWPE', 'ReverbWithImpulseResponse', 'Clipping', 'Compress']);
/** Extensions whose frames have no fixed size: the whole object is fetched. */
const WHOLE_ONLY_EXTENSIONS = new Set(['flac', 'opus', 'ogg', 'oga', 'mp3', 'm4a', 'aac', 'mp4', 'webm', 'mkv', 'shn', 'wma', 'amr', 'wv', 'ape']);
const SHARD_SPLIT = /\.(?:tar|tgz|tar\.gz|tar\.lz4|zip)\//i;

/** One audio object to fetch for a cut. */
export interface AudioItem {
  /** The id of the top-level cut (a MixedCut's own id for its tracks). */
  cutId: string;
  /** The entry name without its extension. */
  base: string;
  location: ObjectLocation;
  archpath?: string;
  /** The source's extension, lower case, without the dot; '' when it has none. */
  sourceExt: string;
  mode: AudioMode;
  /** Why a cut is fetched whole in slice mode (for messages). */
  wholeWhy?: string;
  /** Seconds into the object, as the cut (or track cut) says. */
  start: number;
  duration: number;
  /** The source as the manifest gives it, for messages. */
  uri: string;
  /** The channels this source holds. */
  channels: number[];
}

/** A cut line, checked, with what to fetch for it. */
export interface CutPlan {
  line: number;
  id: string;
  type: 'MonoCut' | 'MultiCut' | 'MixedCut' | 'PaddingCut';
  /** The cut as read (the Shar writer rewrites a copy). */
  raw: Record<string, unknown>;
  items: AudioItem[];
}

export interface PlanOptions {
  audio: AudioMode;
  /**
   * Where a local path is read from: the CLI reads any absolute path (relative ones from the
   * current directory); the server maps paths into its roots and refuses others.
   */
  fileLocation?: (absolutePath: string) => ObjectLocation;
  /** Directory that relative `file` paths start from (default: the current directory). */
  cwd?: string;
}

type Json = Record<string, unknown>;

/** The fetch plan of one cut line; throws an OjsError naming the line for a cut it cannot use. */
export function planCut(raw: unknown, line: number, opts: PlanOptions): CutPlan {
  try {
    const cut = object(raw, 'the line');
    const type = cutType(cut);
    const id = str(cut, 'id');
    const items: AudioItem[] = [];
    if (type === 'MixedCut') {
      array(cut, 'tracks').forEach((t, k) => items.push(...planTrack(t, k, id, opts)));
    } else if (type !== 'PaddingCut') {
      items.push(...planDataCut(cut, id, id, opts));
    }
    return { line, id, type, raw: cut, items };
  } catch (e) {
    if (!(e instanceof OjsError)) throw e;
    throw new OjsError(e.kind, `line ${line}: ${e.message}`, { code: e.code, cause: e, context: e.context });
  }
}

function planTrack(raw: unknown, k: number, mixedId: string, opts: PlanOptions): AudioItem[] {
  const track = object(raw, `tracks[${k}]`);
  if (track.mute === true) return [];
  const inner = object(track.cut, `tracks[${k}].cut`);
  // The track's `type` wins over its cut's, as in Lhotse (MixTrack.from_dict).
  const type = cutType(typeof track.type === 'string' ? { ...inner, type: track.type } : inner);
  if (type === 'PaddingCut') return [];
  if (type === 'MixedCut') throw bad(`tracks[${k}]: a MixedCut inside a MixedCut is not a Lhotse layout`);
  return planDataCut(inner, mixedId, `${mixedId}.t${k}`, opts);
}

function planDataCut(cut: Json, topId: string, base: string, opts: PlanOptions): AudioItem[] {
  const id = str(cut, 'id');
  if (cut.recording === undefined || cut.recording === null) return [];
  const rec = object(cut.recording, `cut '${id}': recording`);
  const start = num(cut, 'start', 0);
  const duration = num(cut, 'duration');
  const used = cutChannels(cut.channel, id);
  const sources = array(rec, 'sources').map((s, i) => object(s, `recording.sources[${i}]`));
  const wanted = sources.filter((s) => channelsOf(s).some((c) => used === undefined || used.includes(c)));
  if (wanted.length === 0) {
    throw bad(`cut '${id}' uses channel(s) ${JSON.stringify(used)}, and no source of recording '${String(rec.id)}' holds them`);
  }
  const timeWhy = transformsWhy(rec);
  return wanted.map((s) => {
    const channels = channelsOf(s);
    const name = wanted.length === 1 ? base : `${base}.ch${channels.join('-')}`;
    return audioItem(s, { cutId: topId, base: name, start, duration, channels, timeWhy }, opts);
  });
}

interface ItemContext {
  cutId: string;
  base: string;
  start: number;
  duration: number;
  channels: number[];
  timeWhy: string | undefined;
}

function audioItem(src: Json, c: ItemContext, opts: PlanOptions): AudioItem {
  const type = str(src, 'type');
  const uri = typeof src.source === 'string' ? src.source : '';
  const { location, archpath } = sourceLocation(type, uri, opts);
  const ext = extensionOf(archpath ?? location.key);
  let mode: AudioMode = opts.audio;
  let wholeWhy: string | undefined;
  if (mode === 'slice' && c.timeWhy !== undefined) wholeWhy = c.timeWhy;
  else if (mode === 'slice' && WHOLE_ONLY_EXTENSIONS.has(ext)) wholeWhy = `.${ext} frames have no fixed size`;
  if (wholeWhy !== undefined) mode = 'whole';
  return { cutId: c.cutId, base: c.base, location, archpath, sourceExt: ext, mode, wholeWhy, start: c.start, duration: c.duration, uri, channels: c.channels };
}

function sourceLocation(type: string, uri: string, opts: PlanOptions): { location: ObjectLocation; archpath?: string } {
  if (uri === '') throw bad(`a '${type}' source with no source string (an unfilled Shar placeholder?) holds nothing to fetch`);
  let loc: ObjectLocation;
  if (type === 'url' || (type === 'file' && uri.startsWith('file://'))) {
    loc = parseObjectUri(uri, 'source');
  } else if (type === 'file') {
    loc = { provider: 'file', bucket: '', key: path.resolve(opts.cwd ?? process.cwd(), uri).replace(/^\/+/, '') };
  } else {
    throw new OjsError('Unsupported', `a '${type}' source (${short(uri)}) holds nothing a batch can fetch; only 'url' and 'file' sources are`, { code: 'ERR_LHOTSE_SOURCE' });
  }
  if (loc.provider === 'file' && loc.bucket === '' && opts.fileLocation !== undefined) loc = opts.fileLocation(`/${loc.key}`);
  return splitShard(loc);
}

/** `a/shard.tar/x/y.wav` -> object `a/shard.tar`, member `x/y.wav` (the first shard extension wins, as in AIStore). */
export function splitShard(loc: ObjectLocation): { location: ObjectLocation; archpath?: string } {
  const m = SHARD_SPLIT.exec(loc.key);
  if (m === null) return { location: loc };
  const cut = m.index + m[0].length - 1;
  return { location: { ...loc, key: loc.key.slice(0, cut) }, archpath: loc.key.slice(cut + 1) };
}

/** Why the recording's transforms move its time axis, or undefined when they do not. */
function transformsWhy(rec: Json): string | undefined {
  const list = rec.transforms;
  if (list === undefined || list === null) return undefined;
  if (!Array.isArray(list)) throw bad('recording.transforms is not a list');
  for (const t of list) {
    const name = t !== null && typeof t === 'object' ? (t as Json).name : undefined;
    if (typeof name !== 'string' || !TIME_NEUTRAL_TRANSFORMS.has(name)) {
      return `its recording has a ${typeof name === 'string' ? name : 'malformed'} transform (the file's time axis is not the cut's)`;
    }
  }
  return undefined;
}

function cutType(cut: Json): CutPlan['type'] {
  const t = cut.type;
  if (t === 'MonoCut' || t === 'MultiCut' || t === 'MixedCut' || t === 'PaddingCut') return t;
  if (t === 'Cut') return 'MonoCut'; // legacy name, read as MonoCut by Lhotse
  if (t === undefined) throw bad("no 'type' (MonoCut, MultiCut, MixedCut or PaddingCut)");
  throw bad(`unknown cut type ${JSON.stringify(t)}; accepted: MonoCut, MultiCut, MixedCut, PaddingCut, Cut`);
}

/** The channels a cut uses; undefined when it names none (a cut of every channel). */
function cutChannels(v: unknown, id: string): number[] | undefined {
  if (v === undefined || v === null) return undefined;
  const list = Array.isArray(v) ? v : [v];
  if (!list.every((c) => Number.isInteger(c) && (c as number) >= 0)) throw bad(`cut '${id}': channel must be an integer or a list of integers`);
  return list as number[];
}

function channelsOf(src: Json): number[] {
  const ch = src.channels;
  if (!Array.isArray(ch) || !ch.every((c) => Number.isInteger(c))) throw bad('a source without a list of integer channels');
  return ch as number[];
}

function extensionOf(key: string): string {
  const last = key.replace(/[?#].*$/, '').split('/').pop() ?? '';
  const dot = last.lastIndexOf('.');
  return dot <= 0 ? '' : last.slice(dot + 1).toLowerCase();
}

function object(v: unknown, what: string): Json {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw bad(`${what} is not a JSON object`);
  return v as Json;
}

function array(o: Json, key: string): unknown[] {
  const v = o[key];
  if (!Array.isArray(v)) throw bad(`'${key}' is not a list`);
  return v;
}

function str(o: Json, key: string): string {
  const v = o[key];
  if (typeof v !== 'string' || v === '') throw bad(`'${key}' must be a non-empty string`);
  return v;
}

function num(o: Json, key: string, dflt?: number): number {
  const v = o[key] ?? dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw bad(`'${key}' must be a number of seconds >= 0, got ${JSON.stringify(o[key])}`);
  return v;
}

function short(s: string): string {
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

function bad(message: string): OjsError {
  return new OjsError('BadSpec', message, { code: 'ERR_BAD_CUT' });
}
