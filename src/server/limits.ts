/** The service's limits, apart from the app so that the CLI can show them without loading fastify. */

export interface ServerLimits {
  /** Bytes of a request body (the JSON batch). */
  maxBodyBytes: number;
  /** Entries in one batch. */
  maxEntries: number;
  /** Archive bytes one batch may produce; the batch is cut off past it. Infinity: no limit. */
  maxBatchBytes: number;
  /** Batches fetched or sent at once; one more gets 429 with Retry-After. */
  maxConcurrent: number;
}

export const DEFAULT_LIMITS: Readonly<ServerLimits> = {
  maxBodyBytes: 16 << 20, // a 100,000-entry batch is ~10 MiB of JSON
  maxEntries: 100_000,
  maxBatchBytes: Infinity,
  maxConcurrent: 64, // each batch holds up to 16 MiB of read-ahead and an 8 MiB multipart spool
};
