import type { Readable } from 'node:stream';

export interface EntryHeader {
  name: string;
  /** Exact number of bytes the body delivers. */
  size: number;
  mtime?: Date;
  /** Permission bits; 0644 when absent. */
  mode?: number;
}

/** What an entry's bytes may come as: chunks in memory, or any async source of chunks. */
export type EntryBody = readonly Buffer[] | AsyncIterable<Buffer>;

/**
 * One archive being written, one entry at a time, in call order. `output` is a backpressured
 * node Readable; `add` resolves once the entry's bytes have been handed to it. A body whose byte
 * count differs from `header.size` is rejected and the archive is destroyed, so no consumer ever
 * sees a well-formed archive with a wrong entry. After `destroy`, `output` errors and never
 * delivers an end-of-archive marker.
 */
export interface ArchiveWriter {
  readonly output: Readable;
  add(header: EntryHeader, body: EntryBody, signal: AbortSignal): Promise<void>;
  finalize(): Promise<void>;
  destroy(err: Error): void;
}
