/**
 * Opening a cut's audio inside the engine's window (an EntryOpener): a sliced WAV or SPHERE
 * entry is a fresh WAV header, then one ranged read of the cut's frames, so it is a playable file
 * with exactly the samples Lhotse's rounding selects. The header is probed with a small ranged
 * read, once per object within a run (ProbeCache), through the engine's own open, so members of
 * shards share the engine's one index per shard. Objects that cannot be sliced (FLAC and other
 * variable-size codecs, shorten SPHERE, time-changing transforms) come whole, under their own
 * extension.
 */
import { Readable } from 'node:stream';
import { isSoftError, type EntryOpener, type OpenEntry, type OpenedEntry } from '../batch/engine.js';
import type { OpenedObject } from '../sources/types.js';
import { OjsError, toOjsError } from '../spec/errors.js';
import type { BatchEntry } from '../spec/request.js';
import { PROBE_BYTES, probeAudio, sliceRange, wavHeader, wavPadding, type PcmLayout, type Probe, type SliceRange } from './audio-header.js';
import type { AudioItem } from './cuts.js';

const PROBE_CACHE_MAX = 10_000; // objects whose header a run remembers (a few hundred bytes each)

/** How an audio entry came out: what the Shar writer needs to describe it. */
export interface AudioOutcome {
  name: string;
  mode: 'slice' | 'whole' | 'missing';
  layout?: PcmLayout;
  slice?: SliceRange;
  /** Why it came whole in slice mode. */
  wholeWhy?: string;
}

/** What an entry of a Lhotse batch is. */
export type PlannedEntry =
  | {
      kind: 'audio';
      item: AudioItem;
      outcome: Deferred<AudioOutcome>;
      /** Under coer, an item that cannot be had becomes an empty entry of this name (Shar's `.nodata`). */
      missingName?: string;
    }
  /** Bytes made here, not read (a Shar member's manifest, a placeholder); the name may be decided late. */
  | { kind: 'made'; make: () => Promise<{ bytes: Buffer; name?: string }> };

/** Headers probed in a run, by object; a failed probe is forgotten (the next cut tries again). */
export class ProbeCache {
  private readonly probes = new Map<string, Promise<Probe>>();
  hits = 0;
  misses = 0;

  get(key: string, probe: () => Promise<Probe>): Promise<Probe> {
    const hit = this.probes.get(key);
    if (hit !== undefined) {
      this.hits++;
      return hit;
    }
    this.misses++;
    const p = probe();
    p.catch(() => this.probes.delete(key));
    if (this.probes.size >= PROBE_CACHE_MAX) this.probes.delete(this.probes.keys().next().value!);
    this.probes.set(key, p);
    return p;
  }
}

export class LhotseOpener implements EntryOpener {
  constructor(
    private readonly plans: ReadonlyMap<number, PlannedEntry>,
    private readonly probes: ProbeCache,
  ) {}

  readsSource(entry: BatchEntry): boolean {
    return this.plans.get(entry.index)?.kind !== 'made';
  }

  async open(entry: BatchEntry, signal: AbortSignal, next: OpenEntry): Promise<OpenedEntry> {
    const plan = this.plans.get(entry.index);
    if (plan === undefined) return next(entry, signal);
    if (plan.kind === 'made') {
      const { bytes, name } = await plan.make();
      return memoryObject(bytes, name);
    }
    try {
      const { opened, outcome } = await this.openAudio(entry, plan.item, signal, next);
      plan.outcome.resolve(outcome);
      return opened;
    } catch (e) {
      const err = toOjsError(e);
      if (plan.missingName !== undefined && isSoftError(err)) {
        plan.outcome.resolve({ name: plan.missingName, mode: 'missing', wholeWhy: err.message });
        return memoryObject(Buffer.alloc(0), plan.missingName);
      }
      plan.outcome.reject(err);
      throw err;
    }
  }

  private async openAudio(entry: BatchEntry, item: AudioItem, signal: AbortSignal, next: OpenEntry): Promise<{ opened: OpenedEntry; outcome: AudioOutcome }> {
    const wholeName = `${item.base}.${item.sourceExt === '' ? 'bin' : item.sourceExt}`;
    if (item.mode === 'whole') return { opened: renamed(await next(entry, signal), wholeName), outcome: { name: wholeName, mode: 'whole', wholeWhy: item.wholeWhy } };
    const probe = await this.probes.get(probeKey(entry), () => probeEntry(entry, signal, next));
    if (!probe.sliceable) {
      const wholeWhy = `${item.uri}: ${probe.why}`;
      return { opened: renamed(await next(entry, signal), wholeName), outcome: { name: wholeName, mode: 'whole', wholeWhy } };
    }
    const layout = probe.layout;
    const slice = sliceRange(layout, item.start, item.duration);
    const name = `${item.base}.wav`;
    const header = wavHeader(layout, slice.length);
    const data = slice.length === 0 ? undefined : await next(entry.withRange({ start: slice.offset, length: slice.length }), signal);
    if (data !== undefined && data.length !== slice.length) {
      data.body.destroy();
      throw new OjsError('SizeMismatch', `${item.uri}: a read of ${slice.length} bytes delivers ${data.length}`);
    }
    return { opened: sliceObject(name, header, data, slice.length, layout), outcome: { name, mode: 'slice', layout, slice } };
  }
}

function probeKey(e: BatchEntry): string {
  return `${e.location.provider}\0${e.location.bucket}\0${e.location.key}\0${e.archpath ?? ''}`;
}

/** Reads the first PROBE_BYTES (the whole object when it is smaller) and walks the header. */
async function probeEntry(entry: BatchEntry, signal: AbortSignal, next: OpenEntry): Promise<Probe> {
  let first: OpenedObject;
  try {
    first = await next(entry.withRange({ start: 0, length: PROBE_BYTES }), signal);
  } catch (e) {
    if (toOjsError(e).kind !== 'Range') throw e;
    first = await next(entry.withRange(undefined), signal);
  }
  const head = await readAll(first);
  const read = async (offset: number, length: number) => readAll(await next(entry.withRange({ start: offset, length }), signal));
  return probeAudio(head, first.size, read);
}

async function readAll(o: OpenedObject): Promise<Buffer> {
  if (o.bytes !== undefined) return o.bytes;
  const chunks: Buffer[] = [];
  for await (const c of o.body as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

/** The same object under another name; getters keep an in-memory body lazy. */
function renamed(o: OpenedObject, name: string): OpenedEntry {
  return {
    name,
    length: o.length,
    range: o.range,
    size: o.size,
    etag: o.etag,
    mtime: o.mtime,
    bytes: o.bytes,
    get body() {
      return o.body;
    },
  };
}

function memoryObject(bytes: Buffer, name: string | undefined): OpenedEntry {
  return {
    name,
    length: bytes.length,
    range: { offset: 0, length: bytes.length },
    size: bytes.length,
    bytes,
    get body() {
      return Readable.from([bytes]);
    },
  };
}

/** Header + the frames (rewritten for WAV where SPHERE stores them otherwise) + RIFF's pad byte. */
function sliceObject(name: string, header: Buffer, data: OpenedObject | undefined, dataBytes: number, layout: PcmLayout): OpenedEntry {
  const pad = wavPadding(dataBytes);
  const length = header.length + dataBytes + pad.length;
  const meta = { name, length, range: { offset: 0, length }, size: length, mtime: data?.mtime };
  const convert = converter(layout);
  if (data === undefined || data.bytes !== undefined) {
    const bytes = Buffer.concat([header, convert(data?.bytes ?? Buffer.alloc(0)), pad]);
    return { ...meta, bytes, get body() { return Readable.from([bytes]); } };
  }
  return { ...meta, body: new SliceBody(header, data.body, convert, pad) };
}

/**
 * Header, then the inner body's chunks as the consumer takes them (pausing the inner body when it
 * holds back), then the pad byte. Destroying it destroys the inner body at once.
 */
class SliceBody extends Readable {
  constructor(
    header: Buffer,
    private readonly inner: Readable,
    convert: (c: Buffer) => Buffer,
    pad: Buffer,
  ) {
    super();
    this.push(header);
    inner.on('data', (c: Buffer) => {
      if (!this.push(convert(c))) inner.pause();
    });
    inner.once('end', () => {
      if (pad.length > 0) this.push(pad);
      this.push(null);
    });
    inner.once('error', (e) => this.destroy(e));
    inner.pause();
  }

  override _read(): void {
    this.inner.resume();
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.inner.destroy();
    cb(err);
  }
}

/**
 * Rewrites sample bytes for WAV, chunk by chunk (a sample may straddle two chunks): SPHERE
 * big-endian PCM is byte-swapped, SPHERE's signed 8-bit PCM becomes WAV's unsigned.
 */
function converter(layout: PcmLayout): (c: Buffer) => Buffer {
  if (layout.convert === 'sign8') return (c) => Buffer.from(c.map((b) => b ^ 0x80));
  if (layout.convert !== 'swap') return (c) => c;
  const w = layout.bitsPerSample / 8;
  let carry = Buffer.alloc(0);
  return (c) => {
    const all = carry.length === 0 ? c : Buffer.concat([carry, c]);
    const whole = all.length - (all.length % w);
    const out = Buffer.allocUnsafe(whole);
    for (let i = 0; i < whole; i += w) for (let j = 0; j < w; j++) out[i + j] = all[i + w - 1 - j]!;
    carry = Buffer.from(all.subarray(whole));
    return out;
  };
}

/** A promise with its resolve/reject at hand. */
export class Deferred<T> {
  readonly promise: Promise<T>;
  resolve!: (v: T) => void;
  reject!: (e: unknown) => void;

  constructor() {
    this.promise = new Promise<T>((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
    this.promise.catch(() => undefined); // not everyone waits on it
  }
}
