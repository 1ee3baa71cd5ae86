/**
 * The service's Prometheus metrics, in a registry of its own (never prom-client's global one:
 * a process may hold several apps, tests do, and an embedder has its own metrics).
 *
 * Upstream counters are fed through `MetricsHooks`: the sources' metrics layer (which wraps
 * every remote provider of a registry the app builds) calls them once per upstream operation and
 * per chunk of bytes read. A ready registry passed in gets them with `layers.metrics` set to
 * `app.ojs.metricsHooks`; local files are not counted.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

const PREFIX = 'ojs_ml_'; // every metric of ours starts with it
// Batches run from a few ms (small local batches) to minutes (GiBs from a cloud bucket).
const BATCH_SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
// One upstream operation: a page-cache open (~20 us) to a slow cloud first byte (seconds).
const UPSTREAM_SECONDS_BUCKETS = [0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/**
 * What the sources' layers report. `op` is the operation (`open`, `stat`, `list`, `read`),
 * `outcome` is `ok` or the error's stable code (a bounded set, fit for a label).
 */
export interface MetricsHooks {
  onRequest(provider: string, op: string, outcome: string, ms: number): void;
  onBytes(provider: string, bytes: number): void;
}

export type BatchOutcome = 'ok' | 'failed' | 'aborted';

export class ServerMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'route' | 'method' | 'code'>;
  readonly batches: Counter<'format' | 'mode' | 'outcome'>;
  readonly batchSeconds: Histogram<'format' | 'mode' | 'outcome'>;
  readonly entries: Counter<'outcome'>;
  readonly bytes: Counter<'format'>;
  readonly inFlight: Gauge;
  readonly rejected: Counter<'reason'>;
  readonly spills: Counter;
  readonly upstreamRequests: Counter<'provider' | 'op' | 'outcome'>;
  readonly upstreamSeconds: Histogram<'provider' | 'op'>;
  readonly upstreamBytes: Counter<'provider'>;
  readonly hooks: MetricsHooks;

  constructor(opts: { processMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (opts.processMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: PREFIX });
    this.requests = new Counter({
      name: `${PREFIX}http_requests_total`,
      help: 'HTTP requests answered, by route, method and status code',
      labelNames: ['route', 'method', 'code'],
      registers,
    });
    this.batches = new Counter({
      name: `${PREFIX}batches_total`,
      help: 'Batches run, by output format, response mode (stream|multipart) and outcome (ok|failed|aborted)',
      labelNames: ['format', 'mode', 'outcome'],
      registers,
    });
    this.batchSeconds = new Histogram({
      name: `${PREFIX}batch_duration_seconds`,
      help: 'Time from a batch request to its last byte sent (or its failure)',
      labelNames: ['format', 'mode', 'outcome'],
      buckets: BATCH_SECONDS_BUCKETS,
      registers,
    });
    this.entries = new Counter({
      name: `${PREFIX}entries_total`,
      help: 'Archive entries served in completed batches: ok, or missing (__404__ placeholders)',
      labelNames: ['outcome'],
      registers,
    });
    this.bytes = new Counter({
      name: `${PREFIX}archive_bytes_total`,
      help: 'Archive bytes sent to clients (multipart framing not counted), by format',
      labelNames: ['format'],
      registers,
    });
    this.inFlight = new Gauge({ name: `${PREFIX}batches_in_flight`, help: 'Batches being fetched or sent now', registers });
    this.rejected = new Counter({
      name: `${PREFIX}rejected_requests_total`,
      help: 'Requests refused before any work: unauthorized, over a limit, or the server busy',
      labelNames: ['reason'],
      registers,
    });
    this.spills = new Counter({
      name: `${PREFIX}spool_spills_total`,
      help: 'Multipart responses whose archive outgrew the memory spool and went to a temporary file',
      registers,
    });
    this.upstreamRequests = new Counter({
      name: `${PREFIX}upstream_requests_total`,
      help: 'Upstream operations by provider, operation and outcome (ok or an error code)',
      labelNames: ['provider', 'op', 'outcome'],
      registers,
    });
    this.upstreamSeconds = new Histogram({
      name: `${PREFIX}upstream_request_duration_seconds`,
      help: 'Upstream operation latency (to headers for open), by provider and operation',
      labelNames: ['provider', 'op'],
      buckets: UPSTREAM_SECONDS_BUCKETS,
      registers,
    });
    this.upstreamBytes = new Counter({
      name: `${PREFIX}upstream_bytes_total`,
      help: 'Bytes read from upstream, by provider',
      labelNames: ['provider'],
      registers,
    });
    this.hooks = {
      onRequest: (provider, op, outcome, ms) => {
        this.upstreamRequests.inc({ provider, op, outcome });
        this.upstreamSeconds.observe({ provider, op }, ms / 1000);
      },
      onBytes: (provider, bytes) => this.upstreamBytes.inc({ provider }, bytes),
    };
  }
}
