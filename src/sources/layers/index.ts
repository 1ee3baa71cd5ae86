/**
 * The layers around a remote source, innermost first (DESIGN.md section 3):
 *   provider -> [chaos] -> error context -> timeout -> concurrency limit -> retry (+resume) -> metrics
 * Timeouts are per attempt, so they sit inside retry; the limit sits inside retry too, so that a
 * request waiting out its backoff holds no slot; metrics see what the caller sees.
 */
import type { ObjectSource } from '../types.js';
import { ChaosLayer, type ChaosOptions } from './chaos.js';
import { ErrorContextLayer } from './context.js';
import { LimitLayer } from './limit.js';
import { MetricsLayer, type SourceMetricsHooks } from './metrics.js';
import { RetryLayer, type RetryOptions } from './retry.js';
import { TimeoutLayer, type TimeoutOptions } from './timeout.js';

const ATTEMPT_TIMEOUT_MS = 30_000; // headers of one attempt: cloud stores answer in ms, but a cold first byte under load can take seconds
const IDLE_TIMEOUT_MS = 30_000; // a body silent this long while we wait is dead; S3 itself drops idle reads after ~20-60 s
const CONCURRENCY = 256; // upstream operations per provider: 4 batches' windows (64 each) before anyone waits
const RETRIES = 4; // five attempts: SDKs default to 3, but a resumed body is cheap and batches are long
const BACKOFF_BASE_MS = 100; // first retry waits up to 100 ms...
const BACKOFF_CAP_MS = 5_000; // ...doubling, never more than 5 s
const RETRY_AFTER_MAX_MS = 30_000; // a longer Retry-After fails the item rather than stall the batch

export { ChaosLayer, type ChaosOptions } from './chaos.js';
export { Semaphore } from './limit.js';
export type { SourceMetricsHooks } from './metrics.js';
export type { RetryOptions } from './retry.js';
export type { TimeoutOptions } from './timeout.js';

export interface LayerOptions {
  timeout?: Partial<TimeoutOptions>;
  /** Upstream operations at once, per provider. */
  concurrency?: number;
  retry?: Partial<RetryOptions>;
  metrics?: SourceMetricsHooks;
  /** Failures injected next to the provider (tests, benchmarks). */
  chaos?: ChaosOptions;
}

export const DEFAULT_TIMEOUTS: TimeoutOptions = { attemptMs: ATTEMPT_TIMEOUT_MS, idleMs: IDLE_TIMEOUT_MS };
export const DEFAULT_RETRY: RetryOptions = { retries: RETRIES, baseMs: BACKOFF_BASE_MS, capMs: BACKOFF_CAP_MS, maxRetryAfterMs: RETRY_AFTER_MAX_MS };

/** `source` wrapped in the default layers, each tunable through `opts`. */
export function withLayers(source: ObjectSource, opts: LayerOptions = {}): ObjectSource {
  let s: ObjectSource = source;
  if (opts.chaos !== undefined) s = new ChaosLayer(s, opts.chaos);
  s = new ErrorContextLayer(s);
  s = new TimeoutLayer(s, { ...DEFAULT_TIMEOUTS, ...opts.timeout });
  s = new LimitLayer(s, opts.concurrency ?? CONCURRENCY);
  s = new RetryLayer(s, { ...DEFAULT_RETRY, ...opts.retry });
  if (opts.metrics !== undefined) s = new MetricsLayer(s, opts.metrics);
  return s;
}
