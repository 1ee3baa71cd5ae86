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

const WINDOW_ENTRIES = 64; // entries opened ahead of the writer (upstream requests in flight)
const READERS = 4; // local bodies resumed at once when the window frees up: enough to keep the thread pool (4) busy
const NETWORK_READERS = 64; // network bodies resumed at once: each is bounded by its own connection, so throughput needs many (1 MiB objects over HTTP: 4 flowing gave ~20% less than 64)
const WINDOW_BYTES = 16 << 20; // bytes read ahead and held in memory, across entries (V8 adds ~64 MiB of not-yet-collected buffers on top)

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

export interface SourceResolver {
  get(provider: Provider): ObjectSource;
}

export interface BatchOptions {
  /** Compression level and such, for the output format. */
  archive?: ArchiveOptions;
  /** Entries opened ahead of the writer. */
  windowEntries?: number;
  /** Bytes held in read-ahead queues, across entries. */
  windowBytes?: number;
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
  opened?: OpenedObject;
  error?: OjsError;
  chunks: Buffer[];
  ended: boolean;
  paused: boolean;
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
  preflight(req, sources);
  const writer = createArchiveWriter(req.format, opts.archive);
  const run = new Runner(req, sources, writer, opts, signal);
  return { stream: writer.output, result: run.result, progress: run.progress };
}

/** Everything that can be known wrong before reading: providers, formats, features. */
function preflight(req: BatchRequest, sources: SourceResolver): void {
  const seen = new Set<Provider>();
  for (const e of req.entries) {
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
  private readonly slots: Slot[];
  private readonly ac = new AbortController();
  private readonly windowEntries: number;
  private readonly windowBytes: number;
  private buffered = 0;
  private next = 0;
  private head = 0;
  private readonly out: MossOut[] = [];
  private detach = (): void => undefined;
  private readonly shards = new Map<string, Promise<ShardIndex>>();

  constructor(
    private readonly req: BatchRequest,
    private readonly sources: SourceResolver,
    private readonly writer: ArchiveWriter,
    opts: BatchOptions,
    outer?: AbortSignal,
  ) {
    this.windowEntries = Math.max(1, opts.windowEntries ?? WINDOW_ENTRIES);
    this.windowBytes = Math.max(1, opts.windowBytes ?? WINDOW_BYTES);
    // Every open entry listens on the batch's signal (a source may add a few listeners each).
    setMaxListeners(this.windowEntries * 4 + 32, this.ac.signal);
    this.slots = req.entries.map((entry) => ({ entry, chunks: [], ended: false, paused: false, network: false }));
    this.progress = { total: req.entries.length, done: 0, missing: 0, bytes: 0, maxBufferedBytes: 0 };
    if (outer !== undefined) {
      // A caller's signal may outlive many batches (a server's): the listener goes with the batch.
      const onAbort = () => this.ac.abort(abortedError(outer));
      if (outer.aborted) onAbort();
      else outer.addEventListener('abort', onAbort, { once: true });
      this.detach = () => outer.removeEventListener('abort', onAbort);
    }
    // Whoever waits on a slot must wake up to see the abort.
    this.ac.signal.addEventListener('abort', () => this.slots.forEach((s) => this.notify(s)), { once: true });
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
      for (this.head = 0; this.head < this.slots.length; this.head++) {
        const slot = this.slots[this.head]!;
        this.pump();
        if (slot.paused) this.resume(slot);
        await this.settled(slot, (s) => s.opened !== undefined || s.error !== undefined);
        if (signal.aborted) throw abortedError(signal);
        if (slot.error !== undefined) await this.placeholder(slot, slot.error);
        else await this.write(slot, slot.opened!);
        this.progress.done++;
      }
      await this.writer.finalize();
      this.detach();
      await this.disposeShards();
      return { uuid: randomUUID(), out: this.out, progress: { ...this.progress } };
    } catch (e) {
      this.detach();
      void this.disposeShards();
      const err = signal.aborted ? abortedError(signal) : toOjsError(e);
      if (!signal.aborted) this.ac.abort(err);
      this.writer.destroy(err);
      for (const s of this.slots) if (s.opened !== undefined && s.opened.bytes === undefined) s.opened.body.destroy();
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
      this.next < this.slots.length &&
      this.next - this.head < this.windowEntries &&
      (this.buffered < this.windowBytes || this.next === this.head)
    ) {
      this.start(this.slots[this.next++]!);
    }
  }

  private start(slot: Slot): void {
    const { entry } = slot;
    const signal = this.ac.signal;
    let source: ObjectSource;
    try {
      source = this.sources.get(entry.location.provider);
    } catch (e) {
      this.failSlot(slot, e);
      return;
    }
    slot.network = source.capabilities.network === true;
    this.openEntry(source, entry, signal).then(
      (opened) => this.attach(slot, opened),
      (e: unknown) => this.failSlot(slot, e),
    );
  }

  /** An object, or a member of a shard: each shard is indexed once per batch, for all its members. */
  private openEntry(source: ObjectSource, entry: BatchEntry, signal: AbortSignal): Promise<OpenedObject> {
    const ref = { bucket: entry.location.bucket, key: entry.location.key };
    if (entry.archpath === undefined) return source.open(ref, { signal, range: entry.range });
    const key = shardKey(entry);
    let index = this.shards.get(key);
    if (index === undefined) {
      const wanted = new Set(this.req.entries.filter((e) => e.archpath !== undefined && shardKey(e) === key).map((e) => e.archpath!.replace(/^\/+/, '')));
      index = indexShard(source, ref, wanted, signal);
      index.catch(() => undefined); // each member's open reports it
      this.shards.set(key, index);
    }
    return index.then((i) => openMember(source, ref, i, entry.archpath!, entry.range, signal));
  }

  private attach(slot: Slot, opened: OpenedObject): void {
    slot.opened = opened;
    if (opened.bytes !== undefined) {
      // Already in memory: no stream to drive.
      if (opened.bytes.length > 0) slot.chunks.push(opened.bytes);
      this.buffered += opened.bytes.length;
      if (this.buffered > this.progress.maxBufferedBytes) this.progress.maxBufferedBytes = this.buffered;
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
    if (this.buffered >= this.windowBytes && slot !== this.slots[this.head]) {
      slot.paused = true;
      body.pause();
    }
    body.on('data', (chunk: Buffer) => {
      slot.chunks.push(chunk);
      this.buffered += chunk.length;
      if (this.buffered > this.progress.maxBufferedBytes) this.progress.maxBufferedBytes = this.buffered;
      // The head pauses too (a slow consumer must not make it buffer its whole body); drain()
      // resumes it whenever its queue runs dry, so it always makes progress.
      if (this.buffered > this.windowBytes) {
        slot.paused = true;
        body.pause();
      }
      this.notify(slot);
    });
    body.once('end', () => {
      slot.ended = true;
      this.notify(slot);
      this.refill();
    });
    this.notify(slot);
  }

  private failSlot(slot: Slot, e: unknown): void {
    if (slot.error !== undefined) return;
    slot.error = toOjsError(e).withContext({ entry: slot.entry.index });
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

  /** Returns bytes to the window. */
  private release(n: number): void {
    this.buffered -= n;
    this.refill();
  }

  /**
   * Under budget, lets paused bodies go on, first ones first, until READERS local and
   * NETWORK_READERS network bodies flow (each can land a chunk over the budget before it pauses
   * again, so not all at once), and opens more entries.
   */
  private refill(): void {
    if (this.buffered >= this.windowBytes) return;
    let local = 0;
    let network = 0;
    for (let i = this.head; i < this.next && (local < READERS || network < NETWORK_READERS); i++) {
      const s = this.slots[i]!;
      if (s.opened === undefined || s.ended || s.error !== undefined) continue;
      if (s.network ? network++ >= NETWORK_READERS : local++ >= READERS) continue;
      if (s.paused) this.resume(s);
    }
    this.pump();
  }

  private async placeholder(slot: Slot, err: OjsError): Promise<void> {
    const { entry } = slot;
    if (!this.req.coer || !SOFT_KINDS.has(err.kind)) throw err;
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
    this.out.push(outRow(entry, 0, err.message));
  }

  private async write(slot: Slot, opened: OpenedObject): Promise<void> {
    const { entry } = slot;
    const header = { name: entry.name, size: opened.length, mtime: opened.mtime };
    let body: EntryBody;
    if (slot.ended) {
      body = slot.chunks;
    } else {
      body = this.drain(slot);
    }
    await this.writer.add(header, body, this.ac.signal);
    if (slot.ended) this.dropBuffered(slot);
    this.progress.bytes += opened.length;
    this.out.push(outRow(entry, opened.length));
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
