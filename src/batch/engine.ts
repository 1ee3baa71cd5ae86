/**
 * The batch engine: plan -> ordered, bounded prefetch -> archive.
 *
 * Entries are opened ahead of the writer, at most WINDOW_ENTRIES at a time, and their bytes are
 * read into per-entry queues while the bytes held stay under WINDOW_BYTES; a body that would go
 * over is paused until the writer catches up. The entry being written (the head) is resumed
 * whenever the writer has taken all it holds, so the window can never deadlock. The archive gets entries strictly in request order.
 *
 * Memory: at most WINDOW_BYTES of read-ahead, plus one chunk for each body flowing when the window
 * fills (at most READERS + NETWORK_READERS once it has filled), plus what each open body buffers on its own (its highWaterMark), plus the archive
 * writer's output buffer; all bounded by the two windows, never by the batch size.
 *
 * Failures: an entry that fails before any of its bytes went into the archive becomes a
 * `__404__/` placeholder under `coer` (if its error kind is one a missing item can have);
 * anything else destroys the archive, so a consumer never sees a shorter archive that looks whole.
 *
 * Openers: a front end whose entries are not plain reads (a Lhotse slice is a new WAV header
 * before a range of an object) passes an EntryOpener. It gets the engine's own open as `next`, so
 * its reads go through the same window, sources and shard indexes; it may name the entry.
 */
import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import type { Readable } from 'node:stream';
import { indexShard, openMember, type ShardIndex } from '../archive/shard.js';
import { createArchiveWriter, type ArchiveOptions, type ArchiveWriter, type EntryBody } from '../archive/index.js';
import { OjsError, abortedError, toOjsError, type ErrorKind } from '../spec/errors.js';
import { missingName, outRow, type BatchEntry, type BatchRequest, type MossOut, type MossResp } from '../spec/request.js';
import type { Provider } from '../spec/uri.js';
import type { ObjectSource, OpenedObject } from '../sources/types.js';
import type { BytePool } from './pool.js';

const WINDOW_ENTRIES = 64; // entries opened ahead of the writer (upstream requests in flight)
const READERS = 4; // local bodies resumed at once when the window frees up: enough to keep the thread pool (4) busy
const NETWORK_READERS = 64; // network bodies resumed at once: each is bounded by its own connection, so throughput needs many (1 MiB objects over HTTP: 4 flowing gave ~20% less than 64)
const WINDOW_BYTES = 16 << 20; // bytes read ahead and held in memory, across entries (V8 adds ~64 MiB of not-yet-collected buffers on top)
const OPEN_RESERVE = 256 << 10; // what an open body may buffer on its own (the file source's highWaterMark): charged to a shared pool per open entry

/** Error kinds that mean "this item cannot be had" and so may become a placeholder under coer. */
const SOFT_KINDS: ReadonlySet<ErrorKind> = new Set<ErrorKind>([
  'NotFound',
  'Forbidden',
  'Upstream',
  'Unavailable',
  'Timeout',
  'SizeMismatch',
  'Conflict',
]);

/** Whether an error means "this item cannot be had" (a placeholder under coer) rather than a broken batch. */
export function isSoftError(err: OjsError): boolean {
  return SOFT_KINDS.has(err.kind);
}

export interface SourceResolver {
  get(provider: Provider): ObjectSource;
}

/** What an entry opens as: an object, and the entry's name when the opener decides it. */
export interface OpenedEntry extends OpenedObject {
  /** The name in the archive (default: the entry's); a missing entry keeps `__404__/<entry.name>`. */
  name?: string;
}

/** The engine's own open of an entry: an object, a range of it, or a member of a shard. */
export type OpenEntry = (entry: BatchEntry, signal: AbortSignal) => Promise<OpenedObject>;

/**
 * Takes over opening entries, for front ends whose entries are not plain reads (a sliced WAV is a
 * new header before a range of an object). `next` is the engine's own open, for any entry, so an
 * opener can probe, read other ranges, or wrap what it gets; shard members keep one index per
 * batch whoever asks.
 */
export interface EntryOpener {
  open(entry: BatchEntry, signal: AbortSignal, next: OpenEntry): Promise<OpenedEntry>;
  /** False for entries made without reading a source (their provider is not checked); default true. */
  readsSource?(entry: BatchEntry): boolean;
}

export interface BatchOptions {
  /** Compression level and such, for the output format. */
  archive?: ArchiveOptions;
  /** Opens entries instead of the engine (which it may call back); default: the engine's own open. */
  opener?: EntryOpener;
  /** Entries opened ahead of the writer. */
  windowEntries?: number;
  /** Bytes held in read-ahead queues, across entries. */
  windowBytes?: number;
  /**
   * Read-ahead shared with other batches (a server's): the batch reads ahead only while both its
   * own window and the pool have room. The entry being written always makes progress.
   */
  pool?: BytePool;
}

export interface BatchProgress {
  total: number;
  /** Entries written to the archive, placeholders included. */
  done: number;
  missing: number;
  /** Payload bytes written to the archive. */
  bytes: number;
  /** Most bytes held in read-ahead queues at any moment. */
  maxBufferedBytes: number;
}

export interface BatchResult extends MossResp {
  progress: BatchProgress;
  /** Indexes of the entries that came out as `__404__` placeholders, ascending. */
  missingAt: readonly number[];
}

export interface BatchRun {
  /** The archive; it errors (and never ends cleanly) if the batch fails. */
  stream: Readable;
  /** The metadata, once the archive is complete; rejects with the batch's error. */
  result: Promise<BatchResult>;
  /** Live counters, for progress displays. */
  progress: Readonly<BatchProgress>;
}

interface Slot {
  entry: BatchEntry;
  opened?: OpenedEntry;
  error?: OjsError;
  chunks: Buffer[];
  ended: boolean;
  paused: boolean;
  /** OPEN_RESERVE is charged to the shared pool for this entry's own buffering. */
  reserved: boolean;
  /** The body comes over the network (its source says so): it counts against NETWORK_READERS. */
  network: boolean;
  /** Resolves when the slot has news: opened, a chunk, the end, or an error. */
  wake?: () => void;
}

/**
 * Starts a batch. Throws (before any byte) if the request asks for what this build cannot do;
 * everything else surfaces through `stream` and `result`.
 */
export function runBatch(req: BatchRequest, sources: SourceResolver, signal?: AbortSignal, opts: BatchOptions = {}): BatchRun {
  preflight(req, sources, opts.opener);
  const writer = createArchiveWriter(req.format, opts.archive);
  const run = new Runner(req, sources, writer, opts, signal);
  return { stream: writer.output, result: run.result, progress: run.progress };
}

/** Everything that can be known wrong before reading: providers, formats, features. */
function preflight(req: BatchRequest, sources: SourceResolver, opener: EntryOpener | undefined): void {
  const seen = new Set<Provider>();
  for (const e of req.entries) {
    if (opener?.readsSource?.(e) === false) continue;
    if (!seen.has(e.location.provider)) {
      seen.add(e.location.provider);
      try {
        sources.get(e.location.provider);
      } catch (err) {
        throw toOjsError(err).withContext({ entry: e.index });
      }
    }
  }
}

class Runner {
  readonly progress: BatchProgress;
  readonly result: Promise<BatchResult>;
  // Slots exist from the entry's start until it is written: memory follows the window, not the batch.
  private readonly slots = new Map<number, Slot>(); // by entry index
  private readonly total: number;
  private readonly live = new Set<Slot>();
  private readonly ac = new AbortController();
  private readonly windowEntries: number;
  private readonly windowBytes: number;
  private buffered = 0;
  private readonly pool: BytePool | undefined;
  private closed = false; // after the batch ends, bytes that still arrive are not the pool's
  private next = 0;
  private head = 0;
  // What `out` needs besides the request, per entry: its size, and why it is missing.
  private readonly sizes: Float64Array;
  private readonly missing = new Map<number, string>();
  private detach = (): void => undefined;
  private readonly shards = new Map<string, Promise<ShardIndex>>();
  private wanted: Map<string, Set<string>> | undefined;
  private readonly opener: EntryOpener | undefined;

  constructor(
    private readonly req: BatchRequest,
    private readonly sources: SourceResolver,
    private readonly writer: ArchiveWriter,
    opts: BatchOptions,
    outer?: AbortSignal,
  ) {
    this.windowEntries = Math.max(1, opts.windowEntries ?? WINDOW_ENTRIES);
    this.windowBytes = Math.max(1, opts.windowBytes ?? WINDOW_BYTES);
    this.opener = opts.opener;
    this.pool = opts.pool;
    const offPool = this.pool?.onFree(() => this.refill());
    // Every open entry listens on the batch's signal (a source may add a few listeners each).
    setMaxListeners(this.windowEntries * 4 + 32, this.ac.signal);
    this.total = req.entries.length;
    this.sizes = new Float64Array(req.entries.length);
    this.progress = { total: req.entries.length, done: 0, missing: 0, bytes: 0, maxBufferedBytes: 0 };
    if (outer !== undefined) {
      // A caller's signal may outlive many batches (a server's): the listener goes with the batch.
      const onAbort = () => this.ac.abort(abortedError(outer));
      if (outer.aborted) onAbort();
      else outer.addEventListener('abort', onAbort, { once: true });
      this.detach = () => outer.removeEventListener('abort', onAbort);
    }
    const detachOuter = this.detach;
    // At the end, whatever this batch still holds goes back to the shared pool.
    this.detach = () => {
      detachOuter();
      offPool?.();
      if (!this.closed) this.pool?.give(this.buffered + [...this.live].filter((s) => s.reserved).length * OPEN_RESERVE);
      this.closed = true;
    };
    // Whoever waits on a slot must wake up to see the abort.
    this.ac.signal.addEventListener('abort', () => this.live.forEach((s) => this.notify(s)), { once: true });
    // A consumer that goes away (client disconnect, closed pipe) must stop every upstream read.
    writer.output.once('close', () => {
      if (!writer.output.readableEnded) this.ac.abort(new OjsError('Aborted', 'the archive consumer went away'));
    });
    this.result = this.run();
    this.result.catch(() => undefined); // the caller may only watch the stream
  }

  private async run(): Promise<BatchResult> {
    const signal = this.ac.signal;
    try {
      for (this.head = 0; this.head < this.total; this.head++) {
        this.pump();
        const slot = this.slots.get(this.head)!;
        if (slot.paused) this.resume(slot);
        await this.settled(slot, (s) => s.opened !== undefined || s.error !== undefined);
        if (signal.aborted) throw abortedError(signal);
        if (slot.error !== undefined) await this.placeholder(slot, slot.error);
        else await this.write(slot, slot.opened!);
        this.progress.done++;
        this.slots.delete(this.head);
        this.live.delete(slot);
      }
      await this.writer.finalize();
      this.detach();
      await this.disposeShards();
      // Rows are built when asked for: a streamed batch never needs them, and at 100,000 entries
      // they are 8 MB more to hold.
      const { entries } = this.req;
      const { sizes, missing } = this;
      let out: MossOut[] | undefined;
      return {
        uuid: randomUUID(),
        progress: { ...this.progress },
        missingAt: [...missing.keys()],
        get out(): MossOut[] {
          return (out ??= entries.map((e, i) => outRow(e, sizes[i]!, missing.get(i))));
        },
      };
    } catch (e) {
      this.detach();
      void this.disposeShards();
      const err = signal.aborted ? abortedError(signal) : toOjsError(e);
      if (!signal.aborted) this.ac.abort(err);
      this.writer.destroy(err);
      for (const s of this.live) if (s.opened !== undefined && s.opened.bytes === undefined) s.opened.body.destroy();
      throw err;
    }
  }

  /** Removes what compressed shards' passes spilled to disk. */
  private async disposeShards(): Promise<void> {
    const all = [...this.shards.values()].map((p) => p.then((i) => i.extracted?.dispose(), () => undefined));
    await Promise.all(all).catch(() => undefined);
  }

  /** Opens entries ahead of the writer while both windows allow. */
  private pump(): void {
    while (
      this.next < this.total &&
      this.next - this.head < this.windowEntries &&
      (!this.full || this.next === this.head)
    ) {
      const slot: Slot = { entry: this.req.entries[this.next]!, chunks: [], ended: false, paused: false, reserved: false, network: false };
      this.slots.set(this.next++, slot);
      this.live.add(slot);
      this.start(slot);
    }
  }

  private start(slot: Slot): void {
    if (this.pool !== undefined) {
      // Charged now, before the open resolves, so that a pump loop stops once the pool is full.
      this.pool.take(OPEN_RESERVE);
      slot.reserved = true;
    }
    const signal = this.ac.signal;
    let opening: Promise<OpenedEntry>;
    try {
      opening = this.opener === undefined ? this.openOwn(slot.entry, signal) : this.opener.open(slot.entry, signal, this.openOwn);
    } catch (e) {
      this.failSlot(slot, e);
      return;
    }
    slot.network = this.isNetwork(slot.entry);
    opening.then(
      (opened) => this.attach(slot, opened),
      (e: unknown) => this.failSlot(slot, e),
    );
  }

  /** Whether the entry's body comes from a network source (an entry an opener makes may have none). */
  private isNetwork(entry: BatchEntry): boolean {
    try {
      return this.sources.get(entry.location.provider).capabilities.network === true;
    } catch {
      return false;
    }
  }

  /** The engine's own open (an arrow: openers get it as a plain function). */
  private readonly openOwn: OpenEntry = (entry, signal) => {
    try {
      return this.openEntry(this.sources.get(entry.location.provider), entry, signal);
    } catch (e) {
      return Promise.reject(e as Error);
    }
  };

  /** An object, or a member of a shard: each shard is indexed once per batch, for all its members. */
  private openEntry(source: ObjectSource, entry: BatchEntry, signal: AbortSignal): Promise<OpenedObject> {
    const ref = { bucket: entry.location.bucket, key: entry.location.key };
    if (entry.archpath === undefined) return source.open(ref, { signal, range: entry.range });
    const key = shardKey(entry);
    let index = this.shards.get(key);
    if (index === undefined) {
      // An opener's own reads may name a shard the request does not: then the whole index.
      index = indexShard(source, ref, this.membersWanted().get(key) ?? new Set(), signal);
      index.catch(() => undefined); // each member's open reports it
      this.shards.set(key, index);
    }
    return index.then((i) => openMember(source, ref, i, entry.archpath!, entry.range, signal));
  }

  /** Every shard's wanted members, from one pass over the request (at the first member entry). */
  private membersWanted(): Map<string, Set<string>> {
    if (this.wanted === undefined) {
      this.wanted = new Map();
      for (const e of this.req.entries) {
        if (e.archpath === undefined) continue;
        const k = shardKey(e);
        let set = this.wanted.get(k);
        if (set === undefined) this.wanted.set(k, (set = new Set()));
        set.add(e.archpath.replace(/^\/+/, ''));
      }
    }
    return this.wanted;
  }

  private attach(slot: Slot, opened: OpenedEntry): void {
    slot.opened = opened;
    if (opened.bytes !== undefined) {
      // Already in memory: no stream to drive.
      if (opened.bytes.length > 0) slot.chunks.push(opened.bytes);
      this.hold(opened.bytes.length);
      this.unreserve(slot);
      slot.ended = true;
      this.notify(slot);
      return;
    }
    const body = opened.body;
    body.once('error', (e) => this.failSlot(slot, e));
    if (this.ac.signal.aborted) {
      body.destroy();
      return;
    }
    // Over budget, a body that is not the head waits paused (and so unread) until bytes free up.
    if (this.full && slot !== this.slots.get(this.head)) {
      slot.paused = true;
      body.pause();
    }
    body.on('data', (chunk: Buffer) => {
      slot.chunks.push(chunk);
      this.hold(chunk.length);
      // The head pauses too (a slow consumer must not make it buffer its whole body); drain()
      // resumes it whenever its queue runs dry, so it always makes progress.
      if (this.full) {
        slot.paused = true;
        body.pause();
      }
      this.notify(slot);
    });
    body.once('end', () => {
      slot.ended = true;
      this.unreserve(slot);
      this.notify(slot);
      this.refill();
    });
    this.notify(slot);
  }

  private failSlot(slot: Slot, e: unknown): void {
    if (slot.error !== undefined) return;
    slot.error = toOjsError(e).withContext({ entry: slot.entry.index });
    this.unreserve(slot);
    this.notify(slot);
  }

  private notify(slot: Slot): void {
    const w = slot.wake;
    slot.wake = undefined;
    w?.();
  }

  private async settled(slot: Slot, ready: (s: Slot) => boolean): Promise<void> {
    while (!ready(slot) && !this.ac.signal.aborted) {
      await new Promise<void>((resolve) => {
        slot.wake = resolve;
      });
    }
  }

  private resume(slot: Slot): void {
    slot.paused = false;
    slot.opened?.body.resume();
  }

  /** Counts bytes into the window (and the shared pool). */
  private hold(n: number): void {
    this.buffered += n;
    if (!this.closed) this.pool?.take(n);
    if (this.buffered > this.progress.maxBufferedBytes) this.progress.maxBufferedBytes = this.buffered;
  }

  /** An entry's body no longer buffers on its own (ended, failed, or in memory already). */
  private unreserve(slot: Slot): void {
    if (!slot.reserved) return;
    slot.reserved = false;
    if (!this.closed) this.pool?.give(OPEN_RESERVE);
  }

  /** Returns bytes to the window (and the shared pool). */
  private release(n: number): void {
    this.buffered -= n;
    if (!this.closed) this.pool?.give(n);
    this.refill();
  }

  /** No more read-ahead: this batch's window, or the pool shared with other batches, is full. */
  private get full(): boolean {
    return this.buffered >= this.windowBytes || this.pool?.full === true;
  }

  /**
   * Under budget, lets paused bodies go on, first ones first, until READERS local and
   * NETWORK_READERS network bodies flow (each can land a chunk over the budget before it pauses
   * again, so not all at once), and opens more entries.
   */
  private refill(): void {
    if (this.full || this.closed) return;
    let local = 0;
    let network = 0;
    for (let i = this.head; i < this.next && (local < READERS || network < NETWORK_READERS); i++) {
      const s = this.slots.get(i);
      if (s === undefined) continue;
      if (s.opened === undefined || s.ended || s.error !== undefined) continue;
      if (s.network ? network++ >= NETWORK_READERS : local++ >= READERS) continue;
      if (s.paused) this.resume(s);
    }
    this.pump();
  }

  private async placeholder(slot: Slot, err: OjsError): Promise<void> {
    const { entry } = slot;
    if (!this.req.coer || !isSoftError(err)) throw err;
    this.progress.missing++;
    if (this.progress.missing > this.req.maxSoftErrors) {
      throw new OjsError('TooMany', `more than ${this.req.maxSoftErrors} entries missing (max_soft_errs); last: ${err.message}`, {
        code: 'ERR_TOO_MANY_MISSING',
        context: { entry: entry.index },
        cause: err,
      });
    }
    this.dropBuffered(slot);
    await this.writer.add({ name: missingName(entry), size: 0 }, [], this.ac.signal);
    this.missing.set(this.head, err.message);
  }

  private async write(slot: Slot, opened: OpenedEntry): Promise<void> {
    const { entry } = slot;
    const header = { name: opened.name ?? entry.name, size: opened.length, mtime: opened.mtime };
    let body: EntryBody;
    if (slot.ended) {
      body = slot.chunks;
    } else {
      body = this.drain(slot);
    }
    await this.writer.add(header, body, this.ac.signal);
    if (slot.ended) this.dropBuffered(slot);
    this.progress.bytes += opened.length;
    this.sizes[this.head] = opened.length;
    slot.opened = undefined;
  }

  private dropBuffered(slot: Slot): void {
    const n = slot.chunks.reduce((a, c) => a + c.length, 0);
    slot.chunks = [];
    this.release(n);
  }

  /** The head entry's bytes as they arrive, returning each chunk's bytes to the window. */
  private async *drain(slot: Slot): AsyncGenerator<Buffer> {
    while (true) {
      const chunk = slot.chunks.shift();
      if (chunk !== undefined) {
        this.release(chunk.length);
        yield chunk;
        continue;
      }
      if (slot.error !== undefined) throw slot.error;
      if (slot.ended) return;
      if (this.ac.signal.aborted) throw abortedError(this.ac.signal);
      if (slot.paused) this.resume(slot);
      await this.settled(slot, (s) => s.chunks.length > 0 || s.ended || s.error !== undefined);
    }
  }
}

function shardKey(e: BatchEntry): string {
  return `${e.location.provider}\0${e.location.bucket}\0${e.location.key}`;
}
