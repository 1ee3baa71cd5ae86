import type { Readable } from 'node:stream';
import type { ByteRange, ResolvedRange } from '../spec/range.js';
import type { Provider } from '../spec/uri.js';

/**
 * One storage provider. Rules every implementation keeps:
 * - not-found is a thrown OjsError of kind NotFound, never null;
 * - the signal is required, and aborting it closes the upstream request and the body;
 * - no retries, sleeps or timeouts here (layers do that);
 * - `open` resolves once headers arrive, with the exact byte count the body will deliver; the
 *   body fails (never ends early) if the upstream delivers fewer bytes;
 * - a paused body stops reading upstream at once, holding at most about one chunk: the engine
 *   keeps up to 64 bodies open and paused while its window is full (Relay and FedReadable in
 *   relay.ts do this for a stream built on another).
 */
export interface ObjectSource {
  readonly provider: Provider;
  readonly capabilities: SourceCapabilities;
  stat(ref: ObjectRef, opts: { signal: AbortSignal }): Promise<ObjectStat>;
  open(ref: ObjectRef, opts: OpenOptions): Promise<OpenedObject>;
  /** Keys under a prefix (a plain string prefix, not only whole directories), in byte order. */
  list(bucket: string, prefix: string, opts: { signal: AbortSignal }): AsyncIterable<ListedObject>;
  /** Closes connection pools; the source is not used after. */
  close?(): Promise<void>;
}

/** A handful of booleans the engine and the conformance suite go by. */
export interface SourceCapabilities {
  /** Ranged reads without transferring the bytes before the range. */
  ranges: boolean;
  list: boolean;
  /** `ifMatch` on open is honoured (resume after a broken body). */
  conditionalRead: boolean;
  /** Bodies come over the network, each bounded by its connection: the engine lets many flow at once. */
  network?: boolean;
}

export interface ObjectRef {
  bucket: string;
  key: string;
}

export interface ObjectStat {
  size: number;
  etag?: string;
  mtime?: Date;
}

export interface OpenOptions {
  signal: AbortSignal;
  range?: ByteRange;
  /** Fail with a Conflict error unless the object still has this etag/version. */
  ifMatch?: string;
}

export interface OpenedObject {
  /** Bytes the body will deliver, exactly. */
  length: number;
  /** The part of the object the body holds. */
  range: ResolvedRange;
  /** Size of the whole object. */
  size: number;
  etag?: string;
  mtime?: Date;
  body: Readable;
  /**
   * The same bytes `body` would deliver, when the source already holds all of them in memory
   * (small local reads). A consumer that takes these never touches `body`. They are handed over,
   * like a body's chunks: the one consumer may give them back for reuse once done (the TAR writer
   * does, for the file source's slab pieces), so a source or layer must not hand the same buffer
   * out twice or keep reading it (a cache keeps a copy).
   */
  bytes?: Buffer;
}

export interface ListedObject {
  key: string;
  size: number;
}
