/** ojs-ml as a library: the contract, the sources, the archive writers and the engine. */
export * from './spec/index.js';
export * from './sources/types.js';
export { SourceRegistry, type SourcesConfig } from './sources/registry.js';
export { FileSource, type FileSourceOptions } from './sources/file.js';
// A consumer done with an archive chunk may give it back (serve and the CLI do): no garbage to collect.
export { ChunkPool, readChunks } from './sources/chunks.js';
// For sources of your own: a body built on another stream, whose pause() stops the one beneath.
export { FedReadable, Relay, type RelayTap } from './sources/relay.js';
export * from './archive/index.js';
export * from './batch/index.js';
export { getBatch, type ReceivedEntry } from './client/entries.js';
export { requestBatch, type BatchResponse, type ClientOptions, type StreamSummary } from './client/http.js';
export { ParallelBatchClient, type PartsOptions } from './client/parallel.js';
export { BatchStreamClient, streamBatch, type ChunkHandler, type StreamedBatch } from './client/stream.js';
