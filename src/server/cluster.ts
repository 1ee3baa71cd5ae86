/**
 * `ojs-ml serve --workers N`: N processes serve one port (node:cluster; the primary hands each
 * new connection to the next worker). One batch is one connection, written by one process, so
 * one process caps what a batch can reach; several workers let the batches of several clients,
 * or the parts of one batch read by ParallelBatchClient, run on several cores.
 *
 * What crosses processes (IPC messages tagged `ojs`):
 * - worker -> primary `listening`: the worker's URL, once it listens;
 * - worker -> primary `metrics?`, primary -> every worker `registry?`: /metrics on any worker
 *   answers for all of them, counters and gauges summed (prom-client's aggregation);
 * - primary -> worker `shutdown`: graceful close, the same as a signal to the worker.
 */
import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue, type Registry } from 'prom-client';

type MetricJson = MetricObjectWithValues<MetricValue<string>>;

const METRICS_TIMEOUT_MS = 5_000; // a worker that does not answer by then fails the scrape
const RESTARTS_MAX = 5; // workers that die unasked within RESTART_WINDOW_MS: stop, do not loop
const RESTART_WINDOW_MS = 60_000;

type Msg =
  | { ojs: 'listening'; url: string }
  | { ojs: 'metrics?'; id: number }
  | { ojs: 'metrics'; id: number; text?: string; error?: string }
  | { ojs: 'registry?'; id: number }
  | { ojs: 'registry'; id: number; json?: MetricJson[]; error?: string }
  | { ojs: 'shutdown' };

function isMsg(m: unknown): m is Msg {
  return typeof m === 'object' && m !== null && typeof (m as { ojs?: unknown }).ojs === 'string';
}

export interface PrimaryEvents {
  /** Every worker listens; `url` is theirs (the same port for all). */
  listening(url: string): void;
  /** Lines for stderr: workers that died and were replaced. */
  log(line: string): void;
}

/**
 * Runs `count` workers (each re-runs this process's command line) until `shutdown()` and every
 * worker exited. Rejects if a worker exits before it listens (a bad root, a taken port), or if
 * workers keep dying.
 */
export function runPrimary(count: number, events: PrimaryEvents): { done: Promise<void>; shutdown(): void; kill(): void } {
  let stopping = false;
  let listening = 0;
  let announced = false;
  const deaths: number[] = [];
  let fail: (e: Error) => void = () => undefined;
  let finish: () => void = () => undefined;
  const done = new Promise<void>((resolve, reject) => {
    finish = resolve;
    fail = reject;
  });
  const fork = (): Worker => {
    const w = cluster.fork();
    let up = false;
    w.on('message', (m: unknown) => {
      if (!isMsg(m)) return;
      if (m.ojs === 'listening') {
        up = true;
        if (!announced && ++listening === count) {
          announced = true;
          events.listening(m.url);
        }
      } else if (m.ojs === 'metrics?') {
        clusterMetrics().then(
          (text) => w.send({ ojs: 'metrics', id: m.id, text } satisfies Msg),
          (e: unknown) => w.send({ ojs: 'metrics', id: m.id, error: (e as Error).message } satisfies Msg),
        );
      }
    });
    w.once('exit', (code, sig) => {
      if (Object.keys(cluster.workers ?? {}).length === 0 && stopping) return finish();
      if (stopping) return;
      const how = sig ?? `exit code ${code}`;
      if (!up) {
        stopping = true;
        shutdownAll();
        return fail(new Error("a worker stopped before it listened (its error is above)"));
      }
      const now = Date.now();
      deaths.push(now);
      while (deaths.length > 0 && deaths[0]! < now - RESTART_WINDOW_MS) deaths.shift();
      if (deaths.length > RESTARTS_MAX) {
        stopping = true;
        shutdownAll();
        return fail(new Error(`${deaths.length} workers died within ${RESTART_WINDOW_MS / 1000} s; stopping`));
      }
      events.log(`ojs-ml serve: worker ${w.process.pid ?? '?'} exited (${how}); starting another`);
      fork();
    });
    return w;
  };
  const shutdownAll = () => {
    const ws = Object.values(cluster.workers ?? {});
    if (ws.length === 0) finish();
    for (const w of ws) if (w?.isConnected() === true) w.send({ ojs: 'shutdown' } satisfies Msg);
  };
  for (let i = 0; i < count; i++) fork();
  return {
    done,
    shutdown: () => {
      stopping = true;
      shutdownAll();
    },
    kill: () => {
      stopping = true;
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGKILL');
    },
  };
}

let nextId = 0;

/** Asks every worker for its registry and sums them. */
function clusterMetrics(): Promise<string> {
  const ws = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w?.isConnected() === true);
  const id = nextId++;
  return new Promise((resolve, reject) => {
    const got: MetricJson[][] = [];
    const timer = setTimeout(() => settle(new Error(`a worker did not send its metrics within ${METRICS_TIMEOUT_MS / 1000} s`)), METRICS_TIMEOUT_MS);
    const listeners = new Map<Worker, (m: unknown) => void>();
    const settle = (e?: Error) => {
      clearTimeout(timer);
      for (const [w, f] of listeners) w.off('message', f);
      if (e !== undefined) return reject(e);
      AggregatorRegistry.aggregate(got).metrics().then(resolve, reject);
    };
    for (const w of ws) {
      const f = (m: unknown) => {
        if (!isMsg(m) || m.ojs !== 'registry' || m.id !== id) return;
        if (m.error !== undefined) return settle(new Error(m.error));
        got.push(m.json ?? []);
        if (got.length === ws.length) settle();
      };
      listeners.set(w, f);
      w.on('message', f);
      w.send({ ojs: 'registry?', id } satisfies Msg);
    }
    if (ws.length === 0) settle();
  });
}

/** The worker's side: tells the primary it listens, answers its registry requests, and asks for shutdown on its word. */
export function workerSide(registry: Registry, onShutdown: () => void): { listening(url: string): void; metricsText(): Promise<string> } {
  const pending = new Map<number, { resolve(t: string): void; reject(e: Error): void }>();
  let ids = 0;
  process.on('message', (m: unknown) => {
    if (!isMsg(m)) return;
    if (m.ojs === 'registry?') {
      registry.getMetricsAsJSON().then(
        (json) => process.send?.({ ojs: 'registry', id: m.id, json } satisfies Msg),
        (e: unknown) => process.send?.({ ojs: 'registry', id: m.id, error: (e as Error).message } satisfies Msg),
      );
    } else if (m.ojs === 'metrics') {
      const p = pending.get(m.id);
      pending.delete(m.id);
      if (m.text !== undefined) p?.resolve(m.text);
      else p?.reject(new Error(m.error ?? 'no metrics'));
    } else if (m.ojs === 'shutdown') onShutdown();
  });
  return {
    listening: (url) => process.send?.({ ojs: 'listening', url } satisfies Msg),
    metricsText: () =>
      new Promise((resolve, reject) => {
        const id = ids++;
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error(`the primary did not answer within ${METRICS_TIMEOUT_MS / 1000} s`));
        }, METRICS_TIMEOUT_MS * 2);
        pending.set(id, {
          resolve: (t) => (clearTimeout(timer), resolve(t)),
          reject: (e) => (clearTimeout(timer), reject(e)),
        });
        process.send?.({ ojs: 'metrics?', id } satisfies Msg);
      }),
  };
}
