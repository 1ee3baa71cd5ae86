/**
 * One TAR batch read over several connections at once. A batch is one TCP stream, written by
 * one server thread; on loopback that stream tops out near 3 GiB/s here, while a server run as
 * several processes (`ojs-ml serve --workers N`) could send more. So the entries are cut into
 * consecutive parts, each part a batch of its own on one of `streams` connections, and the parts
 * are handed to the consumer in order as one archive: every part's end-of-archive blocks but
 * the last one's are dropped (TAR parts simply concatenate).
 *
 * Bounded memory: a part that arrives before its turn is copied into reused slabs, at most
 * `aheadBytes` of them; past that its connection is paused until its turn comes. The part in
 * turn goes straight from the read buffer to the consumer, as with BatchStreamClient.
 *
 * Not split (one connection, as BatchStreamClient): formats other than TAR (compressed and ZIP
 * archives do not concatenate), batches too small to cut, and `max_soft_errs` (a limit on the
 * whole batch that parts cannot apply).
 */
import { OjsError } from '../spec/errors.js';
import { parseFormat } from '../spec/format.js';
import type { MossReq } from '../spec/request.js';
import type { ClientOptions, StreamSummary } from './http.js';
import { BatchStreamClient, type ChunkHandler, type StreamedBatch } from './stream.js';

const DEFAULT_STREAMS = 2; // connections per batch; match the server's --workers
const PART_BYTES = 64 << 20; // a part's target size: its request and start cost ~1-2 ms, a few % of the time to send it
const SPLIT_MIN_BYTES = 64 << 20; // a batch of fewer bytes (and entries, below) goes on one connection: from serve --workers 2, 1,000 x 100 KiB took 84 ms on one, 77 cut; 300 x 100 KiB 33 either way
const SPLIT_MANY_ENTRIES = 512; // a batch of this many entries is cut whatever its bytes: two workers share its per-file system calls (10 KiB x 600: 32 -> 26 ms; x 10,000: 400 -> 292), where x 300 lost (17 -> 22)
const SPLIT_MIN_ENTRIES = 256; // fewer entries go whole, unsized: the first part's round trip is not worth it
const PROBE_ENTRIES = 8; // the first part, whose first TAR header tells the size of an entry before the rest is cut
const DEFAULT_AHEAD_BYTES = 64 << 20; // bytes of parts ahead of their turn held in memory at most
const SLAB_BYTES = 1 << 20; // ahead bytes are copied into reused slabs of this size
const TAR_BLOCK = 512;
const END_OF_TAR = 2 * TAR_BLOCK; // two zero blocks close a TAR

export interface PartsOptions {
  /** Connections one batch uses at most (default 2). */
  streams?: number;
  /** Entries per part (default: 8 first; from that part's first entry, a batch of 64 MiB or 512 entries or more is cut into parts of about 64 MiB, at least one per stream, a smaller one's rest follows on the same connection; batches under 256 entries go whole). */
  partEntries?: number;
  /** Batches estimated smaller than this, with fewer than 512 entries, go on one connection (default 64 MiB). */
  splitMinBytes?: number;
  /** Bytes of parts that arrived before their turn held in memory at most (default 64 MiB). */
  aheadBytes?: number;
}

interface Part {
  req: MossReq;
  last: boolean;
  /** Full slabs waiting for the part's turn, then the slab being filled. */
  slabs: Buffer[];
  fill: Buffer | undefined;
  fillLen: number;
  done: boolean;
  result: StreamedBatch | undefined;
}

/** Sends TAR batches over up to `streams` connections, one batch at a time (see the top of this file). */
export class ParallelBatchClient {
  private readonly clients: BatchStreamClient[];
  private readonly streams: number;
  private readonly free: Buffer[] = [];
  private busy = false;

  constructor(
    endpoint: string,
    opts: ClientOptions = {},
    private readonly parts: PartsOptions = {},
  ) {
    this.streams = parts.streams ?? DEFAULT_STREAMS;
    if (!Number.isInteger(this.streams) || this.streams < 1) throw new OjsError('BadSpec', `streams must be a positive integer, got ${String(parts.streams)}`, { code: 'ERR_USAGE' });
    if (parts.partEntries !== undefined && (!Number.isInteger(parts.partEntries) || parts.partEntries < 1)) {
      throw new OjsError('BadSpec', `partEntries must be a positive integer, got ${String(parts.partEntries)}`, { code: 'ERR_USAGE' });
    }
    this.clients = Array.from({ length: this.streams }, () => new BatchStreamClient(endpoint, opts));
  }

  /** Sends `req` as a streamed batch and hands its archive to `onChunk` in order (the chunk contract of BatchStreamClient). */
  async stream(req: MossReq, onChunk: ChunkHandler, signal?: AbortSignal): Promise<StreamedBatch> {
    if (this.busy) throw new OjsError('BadSpec', 'a ParallelBatchClient sends one batch at a time', { code: 'ERR_USAGE' });
    const first = this.firstPart(req);
    if (first === undefined) return this.clients[0]!.stream(req, onChunk, signal);
    this.busy = true;
    try {
      return await this.split(req, first, onChunk, signal);
    } finally {
      this.busy = false;
    }
  }

  /** Closes every connection (a batch in flight fails). */
  close(): void {
    for (const c of this.clients) c.close();
    this.free.length = 0;
  }

  /** Entries of the first parts, or undefined where the batch goes in one piece. */
  private firstPart(req: MossReq): number | undefined {
    if (this.streams < 2 || parseFormat(req.mime) !== 'tar' || req.max_soft_errs !== undefined) return undefined;
    if (this.parts.partEntries === undefined && req.in.length < SPLIT_MIN_ENTRIES) return undefined;
    const per = this.parts.partEntries ?? PROBE_ENTRIES;
    return per >= req.in.length ? undefined : per;
  }

  private async split(req: MossReq, first: number, onChunk: ChunkHandler, signal: AbortSignal | undefined): Promise<StreamedBatch> {
    const n = req.in.length;
    const parts: Part[] = [];
    let cut = 0; // entries given to parts so far
    const fixed = this.parts.partEntries;
    let entryBytes: number | undefined; // an entry's size in the archive, from the first part's first header
    let per: number | undefined = fixed; // entries of the parts after the first
    let whole = false; // the batch is small: its rest follows the first part on the first connection
    // The first part goes alone; once an entry's size is known, the rest is cut: in one part if
    // the batch is small, else into parts of about PART_BYTES, never fewer than there are streams.
    const nextPart = (k: number): number | undefined => {
      const rest = n - cut;
      if (rest === 0) return undefined;
      if (cut === 0) per = fixed ?? first;
      else if (per === undefined) {
        whole = n * (entryBytes ?? 0) < (this.parts.splitMinBytes ?? SPLIT_MIN_BYTES) && n < SPLIT_MANY_ENTRIES;
        per = Math.ceil(rest / (whole ? 1 : Math.max(this.streams, Math.round((rest * (entryBytes ?? 0)) / PART_BYTES))));
      }
      if (whole && k !== 0) return undefined;
      const take = Math.min(per, rest);
      if (cut === 0 && fixed === undefined) per = undefined;
      parts.push({ req: { ...req, in: req.in.slice(cut, cut + take) }, last: cut + take === n, slabs: [], fill: undefined, fillLen: 0, done: false, result: undefined });
      cut += take;
      changed();
      return parts.length - 1;
    };
    const aheadSlabs = Math.max(1, Math.floor((this.parts.aheadBytes ?? DEFAULT_AHEAD_BYTES) / SLAB_BYTES));
    const stop = new AbortController();
    const onAbort = () => stop.abort(signal?.reason);
    if (signal?.aborted === true) onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    let turn = 0; // the part being handed to the consumer
    let held = 0; // slabs of parts not in turn
    let direct = false; // a chunk of the part in turn is with the consumer straight from a read buffer
    let delivering = false; // a kept slab is with the consumer
    let failure: unknown;
    let waiters: (() => void)[] = [];
    const changed = () => {
      const w = waiters;
      waiters = [];
      for (const f of w) f();
    };
    const until = async (ok: () => boolean) => {
      while (!ok()) {
        if (failure !== undefined) throw failure;
        await new Promise<void>((resolve) => waiters.push(resolve));
      }
      if (failure !== undefined) throw failure;
    };
    const tail = new TailHold(onChunk);
    const emit = (p: Part, c: Buffer) => (p.last ? onChunk(c) : tail.push(c));
    const slab = () => this.free.pop() ?? Buffer.allocUnsafeSlow(SLAB_BYTES);
    const keep = (p: Part, c: Buffer) => {
      for (let at = 0; at < c.length; ) {
        p.fill ??= slab();
        const n = Math.min(c.length - at, SLAB_BYTES - p.fillLen);
        c.copy(p.fill, p.fillLen, at, at + n);
        p.fillLen += n;
        at += n;
        if (p.fillLen === SLAB_BYTES) {
          p.slabs.push(p.fill);
          p.fill = undefined;
          p.fillLen = 0;
          held++;
        }
      }
    };
    const head = Buffer.alloc(TAR_BLOCK);
    let headLen = 0;
    const sizeFrom = (c: Buffer) => {
      const n = Math.min(c.length, TAR_BLOCK - headLen);
      c.copy(head, headLen, 0, n);
      headLen += n;
      if (headLen < TAR_BLOCK) return;
      // A PAX or GNU long-name header says nothing of the entry's size: then the whole first part tells.
      const size = entrySize(head);
      if (size === undefined) return;
      entryBytes = size;
      changed();
    };
    const handler =
      (p: Part, index: number): ChunkHandler =>
      async (c) => {
        if (index === 0 && entryBytes === undefined && headLen < TAR_BLOCK) sizeFrom(c);
        if (index === turn && !delivering && p.slabs.length === 0 && p.fill === undefined) {
          direct = true;
          try {
            await emit(p, c);
          } finally {
            direct = false;
            changed();
          }
          return;
        }
        if (index !== turn && held >= aheadSlabs) await until(() => index === turn || held < aheadSlabs);
        keep(p, c);
        changed();
      };
    // The consumer's side: each part's kept slabs, in order, then whatever comes straight.
    const deliver = async () => {
      for (; ; turn++, changed()) {
        await until(() => turn < parts.length || cut === n);
        const p = parts[turn];
        if (p === undefined) return;
        for (;;) {
          await until(() => !direct && (p.slabs.length > 0 || p.fill !== undefined || p.done));
          const s = p.slabs.shift();
          if (s !== undefined) held--;
          const len = s !== undefined ? SLAB_BYTES : p.fillLen;
          const b = s ?? p.fill;
          if (b === undefined) break; // done, nothing kept
          if (s === undefined) {
            p.fill = undefined;
            p.fillLen = 0;
          }
          delivering = true;
          try {
            await emit(p, b.subarray(0, len));
          } finally {
            delivering = false;
          }
          if (this.free.length < aheadSlabs) this.free.push(b);
          changed();
        }
        if (!p.last) tail.end();
      }
    };
    const fetcher = async (client: BatchStreamClient, k: number) => {
      // The other connections wait for the first part to say how big an entry is.
      if (k > 0 && fixed === undefined) await until(() => entryBytes !== undefined || parts[0]?.done === true);
      for (let i = nextPart(k); i !== undefined; i = nextPart(k)) {
        const p = parts[i]!;
        p.result = await client.stream(p.req, handler(p, i), stop.signal);
        if (i === 0) entryBytes ??= Math.max(1, (p.result.bytes - END_OF_TAR) / p.req.in.length);
        p.done = true;
        changed();
      }
    };
    const fail = (e: unknown) => {
      failure ??= e;
      stop.abort(e);
      changed();
    };
    try {
      await Promise.all([deliver().catch(fail), ...this.clients.map((c, k) => fetcher(c, k).catch(fail))]);
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
    if (failure !== undefined) throw failure;
    return { format: 'tar', bytes: parts.reduce((a, p) => a + p.result!.bytes, 0) - (parts.length - 1) * END_OF_TAR, summary: summaryOf(parts.map((p) => p.result!.summary)) };
  }
}

/** What an entry with this USTAR header takes in the archive (header, data, padding); undefined for PAX and GNU extension headers. */
function entrySize(h: Buffer): number | undefined {
  const type = h[156];
  if (type !== 0x30 && type !== 0) return undefined;
  let size: number;
  if ((h[124]! & 0x80) !== 0) {
    size = 0;
    for (let i = 125; i < 136; i++) size = size * 256 + h[i]!;
  } else {
    size = parseInt(h.toString('latin1', 124, 136).replace(/[\0 ]+$/, ''), 8);
    if (!Number.isFinite(size)) return undefined;
  }
  return TAR_BLOCK + Math.ceil(size / TAR_BLOCK) * TAR_BLOCK;
}

/** The parts' trailers as one batch's: counts add up; the first part's uuid. */
function summaryOf(parts: StreamSummary[]): StreamSummary {
  const sum = (k: 'entries' | 'missing' | 'bytes') => (parts.every((p) => p[k] !== undefined) ? parts.reduce((a, p) => a + p[k]!, 0) : undefined);
  const out: StreamSummary = {};
  if (parts[0]?.uuid !== undefined) out.uuid = parts[0].uuid;
  for (const k of ['entries', 'missing'] as const) {
    const v = sum(k);
    if (v !== undefined) out[k] = v;
  }
  const bytes = sum('bytes');
  if (bytes !== undefined) out.bytes = bytes - (parts.length - 1) * END_OF_TAR;
  return out;
}

/**
 * Passes a part's bytes on but its last END_OF_TAR, which `end` checks are the end-of-archive
 * blocks and drops: the next part goes on from there.
 */
class TailHold {
  private readonly tail = Buffer.alloc(END_OF_TAR);
  private len = 0;

  constructor(private readonly onChunk: ChunkHandler) {}

  async push(c: Buffer): Promise<void> {
    if (c.length >= END_OF_TAR) {
      if (this.len > 0) await this.onChunk(this.tail.subarray(0, this.len));
      if (c.length > END_OF_TAR) await this.onChunk(c.subarray(0, c.length - END_OF_TAR));
      c.copy(this.tail, 0, c.length - END_OF_TAR);
      this.len = END_OF_TAR;
      return;
    }
    const over = this.len + c.length - END_OF_TAR;
    if (over > 0) {
      await this.onChunk(this.tail.subarray(0, over));
      this.tail.copy(this.tail, 0, over, this.len);
      this.len -= over;
    }
    c.copy(this.tail, this.len);
    this.len += c.length;
  }

  end(): void {
    if (this.len !== END_OF_TAR || this.tail.some((b) => b !== 0)) {
      throw new OjsError('Upstream', 'a part of the batch did not end with the end-of-archive blocks of a TAR', { code: 'ERR_BAD_RESPONSE' });
    }
    this.len = 0;
  }
}
