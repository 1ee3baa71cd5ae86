/**
 * The GetBatch paper's experiment (arXiv 2602.22434) on one machine, and its data-locality case.
 *
 * A "storage node" holds objects on disk and serves them two ways: one by one over HTTP by nginx,
 * and in batches by `ojs-ml serve`, which reads the same directory through a file root (data-
 * local, as AIStore's targets read their own disks) or fetches from nginx through its http
 * provider. A training-loop-like client fetches N objects one by one, 16 or 64 at a time, or as
 * one get-batch. Reported per (object size, batch size): throughput, P50/P95 batch latency and
 * the P99 per-object wait of a consumer taking objects in request order.
 *
 * Locality: the same, with a round-trip delay between the client and the storage node (a TCP
 * proxy, see delay-proxy.ts): one by one pays it per object, the batch once.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ParallelBatchClient } from '../src/client/parallel.js';
import { BatchStreamClient } from '../src/client/stream.js';
import { agentFor, batchGet, batchStream, individualGets, orderedWaits, percentile, type Timing } from './clients.js';
import { startDelayProxy, measureRtt } from './delay-proxy.js';
import { bytesLabel, lineChart } from './plot.js';
import { startNginx, startServe, type Running } from './servers.js';
import type { MossReq } from '../src/spec/request.js';
import { dataset, round, summarize, type Row } from './util.js';

const KIB = 1024;
const MIB = 1024 * KIB;
const OBJECTS_MAX = 10_000;
const PARALLEL = [16, 64] as const; // the parallel clients; the best of them is the baseline
const DISK_SLACK = 1 << 30;
const WARM_RUNS_MAX = 50; // untimed runs per mode at most (see PaperConfig.warmSeconds)
const ROUNDS = 3; // timed rounds per cell, each mode a third of its repeats and seconds in each

export interface PaperConfig {
  sizes: number[];
  batches: number[];
  /** A batch holds at most this much (10 MiB x 10,000 would take minutes). */
  cellBytesMax: number;
  /** Repeats per mode and cell, over ROUNDS rounds: at least minRepeats, then until modeSeconds went, at most maxRepeats (each rounded up to a multiple of ROUNDS). */
  minRepeats: number;
  maxRepeats: number;
  modeSeconds: number;
  /** Untimed runs per mode first, for this long (at least one): a training loop's server and client are long warm. */
  warmSeconds: number;
  /** Locality case: object sizes, batch size, round-trip delays (ms), timed repeats at least (the delayed runs vary little and take long). */
  locality: { sizes: number[]; batch: number; rtts: number[]; minRepeats: number };
}

export const PAPER_FULL: PaperConfig = {
  sizes: [KIB, 10 * KIB, 100 * KIB, MIB, 10 * MIB],
  batches: [100, 1_000, 10_000],
  cellBytesMax: 1024 * MIB,
  minRepeats: 3, // P95 over fewer batches than this means nothing
  maxRepeats: 15, // fast cells (a batch of 1 MB takes ~5 ms): medians of 9 moved by a third between runs
  modeSeconds: 1.5,
  warmSeconds: 0.5,
  locality: { sizes: [KIB, 10 * KIB, 100 * KIB], batch: 1_000, rtts: [0, 1, 5], minRepeats: 2 },
};

export const PAPER_QUICK: PaperConfig = {
  sizes: [10 * KIB, MIB],
  batches: [100, 1_000],
  cellBytesMax: 256 * MIB,
  minRepeats: 2,
  maxRepeats: 3,
  modeSeconds: 1,
  warmSeconds: 0.25,
  locality: { sizes: [10 * KIB], batch: 1_000, rtts: [0, 1], minRepeats: 2 },
};

// 'batch (...)' reads with ojs-ml's BatchStreamClient; 'undici' marks the same batch read with undici;
// '2 streams' reads it with ParallelBatchClient over two connections (serve runs 2 workers).
const MODES = ['one-by-one', '16-way', '64-way', 'batch (file root)', 'batch (http from nginx)', 'batch (file root), undici', 'batch (file root), 2 streams'] as const;
const SERVE_WORKERS = 2; // as nginx runs 2 worker processes: one batch is still one connection, one process
export type Mode = (typeof MODES)[number];

export interface Measured {
  mode: Mode;
  /** MiB/s of each repeat. */
  mibps: number[];
  /** Batch latency of each repeat, ms. */
  latencyMs: number[];
  /** Per-object waits of every repeat, ms. */
  waits: number[];
}

export interface PaperResult {
  rows: Row[];
  /** name -> SVG text */
  plots: Record<string, string>;
  /** Raw cells, for the JSON. */
  cells: unknown[];
}

export interface PaperCtx {
  work: string;
  cli: string;
  cfg: PaperConfig;
  log: (s: string) => void;
  /** The grid's cells by `${size}x${n}`, filled by paperCase: the locality case's RTT 0 is the same measurement. */
  noDelay?: Map<string, Measured[]>;
}

type Cell = { size: number; n: number; rtt: number; results: Measured[] };

/** The grid: every object size and batch size, no added delay. */
export async function paperCase(ctx: PaperCtx): Promise<PaperResult> {
  const rows: Row[] = [];
  const cells: Cell[] = [];
  for (const size of ctx.cfg.sizes) {
    const count = Math.min(OBJECTS_MAX, Math.floor(ctx.cfg.cellBytesMax / size), Math.max(...ctx.cfg.batches));
    const data = dataset(ctx.work, `paper`, count, size, DISK_SLACK);
    const servers = await startAll(ctx, data.dir);
    try {
      for (const n of ctx.cfg.batches) {
        if (n > count) continue;
        const results = await measureCell(ctx, servers, data.names.slice(0, n), size);
        ctx.noDelay?.set(`${size}x${n}`, results);
        cells.push({ size, n, rtt: 0, results });
        rows.push(...cellRows(size, n, results));
        ctx.log(`paper ${bytesLabel(size)} x ${n}: ${results.map((r) => `${r.mode} ${summarize(r.mibps).median} MiB/s`).join(', ')}`);
      }
    } finally {
      await stopAll(servers);
    }
  }
  const n = ctx.cfg.batches.includes(1_000) ? 1_000 : ctx.cfg.batches[ctx.cfg.batches.length - 1]!;
  return { rows, plots: plots(cells.filter((c) => c.n === n), n), cells: cells.map(summaryOfCell) };
}

interface Servers {
  nginx: Running;
  /** File root only: its workers serve the file-root modes and nothing else. */
  serve: Running;
  /** The http provider's batches from nginx, in a process of their own: a worker that also ran those
   * (their connections, pools and garbage) made the file-root batches it served up to twice as slow. */
  serveHttp: Running;
}

async function startAll(ctx: PaperCtx, dir: string): Promise<Servers> {
  const nginx = await startNginx(dir, ctx.work);
  const host = `127.0.0.1:${nginx.port}`;
  const started = await Promise.allSettled([
    startServe(ctx.cli, { data: dir }, ['--workers', String(SERVE_WORKERS)]),
    startServe(ctx.cli, {}, ['--allow-http-host', host, '--allow-private']),
  ]);
  const [serve, serveHttp] = started;
  if (serve.status === 'fulfilled' && serveHttp.status === 'fulfilled') return { nginx, serve: serve.value, serveHttp: serveHttp.value };
  // What did start must not outlive the bench.
  await Promise.all([nginx.stop(), ...started.map((r) => (r.status === 'fulfilled' ? r.value.stop() : undefined))]);
  throw started.find((r): r is PromiseRejectedResult => r.status === 'rejected')!.reason;
}

async function stopAll(s: Servers): Promise<void> {
  await Promise.all([s.nginx.stop(), s.serve.stop(), s.serveHttp.stop()]);
}

/** Every client mode over the same names; `nginxUrl`/`serveUrl` may be proxies adding delay. */
async function measureCell(ctx: PaperCtx, s: Servers, names: string[], size: number, urls = { nginx: s.nginx.url, serve: s.serve.url }, modes?: Mode[], minRepeats = ctx.cfg.minRepeats): Promise<Measured[]> {
  const sizes = names.map(() => size);
  const objectUrls = names.map((n) => `${urls.nginx}/${n}`);
  type Runner = { run(): Promise<Timing>; close(): Promise<void> };
  const gets = (p: number) => (): Runner => {
    const agent = agentFor(p);
    return { run: () => individualGets(objectUrls, sizes, p, agent), close: () => agent.close() };
  };
  const streamed =
    (req: MossReq, bucket?: string, streams = 1, endpoint = urls.serve) =>
    (): Runner => {
      const client = streams === 1 ? new BatchStreamClient(endpoint, { bucket }) : new ParallelBatchClient(endpoint, { bucket }, { streams });
      return { run: () => batchStream(client, req, sizes), close: async () => client.close() };
    };
  const fileRoot: MossReq = { in: names.map((objname) => ({ objname })), strm: true };
  const runs: [Mode, () => Runner][] = [
    ['one-by-one', gets(1)],
    ...PARALLEL.map((p): [Mode, () => Runner] => [`${p}-way` as Mode, gets(p)]),
    ['batch (file root)', streamed(fileRoot, 'data')],
    // The http provider reads nginx directly (no delay): storage node to storage node.
    ['batch (http from nginx)', streamed({ in: names.map((n) => ({ uri: `${s.nginx.url}/${n}` })), strm: true }, undefined, 1, s.serveHttp.url)],
    [
      'batch (file root), undici',
      () => {
        const agent = agentFor(1);
        return { run: () => batchGet(`${urls.serve}/v1/ml/moss/data`, fileRoot, sizes, agent), close: () => agent.close() };
      },
    ],
    ['batch (file root), 2 streams', streamed(fileRoot, 'data', SERVE_WORKERS)],
  ];
  const mib = (names.length * size) / MIB;
  const open: { mode: Mode; runner: Runner; m: Measured }[] = [];
  try {
    for (const [mode, start] of runs) {
      if (modes !== undefined && !modes.includes(mode)) continue;
      const runner = start();
      open.push({ mode, runner, m: { mode, mibps: [], latencyMs: [], waits: [] } });
      try {
        // Untimed: warms the page cache, the sockets, and the JIT of server and client alike.
        const warmStart = performance.now();
        for (let w = 0; w < WARM_RUNS_MAX && (w === 0 || performance.now() - warmStart < ctx.cfg.warmSeconds * 1000); w++) await runner.run();
      } catch (e) {
        if (mode === 'batch (http from nginx)' && /ERR_UNSUPPORTED_PROVIDER|ERR_PROVIDER_DISABLED|HTTP 50[01]/.test(`${String(e)} ${(e as { code?: string }).code ?? ''}`)) {
          ctx.log(`paper: the http provider is not available in this build; skipping '${mode}'`);
          open.pop();
          await runner.close();
          continue;
        }
        throw e;
      }
    }
    // Timed in rounds, every mode a slice of each, the starting mode rotating: the machine is
    // shared, and its speed drifts over the seconds a cell takes; a mode timed only at its start
    // or its end would carry that drift into the ratio.
    const perRound = (n: number) => Math.max(1, Math.ceil(n / ROUNDS));
    for (let round = 0; round < ROUNDS; round++) {
      for (let k = 0; k < open.length; k++) {
        const { runner, m } = open[(round + k) % open.length]!;
        const started = performance.now();
        for (let r = 0; r < perRound(ctx.cfg.maxRepeats); r++) {
          const t = await runner.run();
          m.mibps.push(mib / t.seconds);
          m.latencyMs.push(t.seconds * 1000);
          m.waits.push(...orderedWaits(t.ready));
          if (r + 1 >= perRound(minRepeats) && performance.now() - started > (ctx.cfg.modeSeconds * 1000) / ROUNDS) break;
        }
      }
    }
  } finally {
    for (const o of open) await o.runner.close();
  }
  return open.map((o) => o.m);
}

function best(results: Measured[], modes: Mode[]): Measured | undefined {
  const med = (m: Measured) => summarize(m.mibps).median;
  return results.filter((r) => modes.includes(r.mode)).sort((a, b) => med(b) - med(a))[0];
}

function cellRows(size: number, n: number, results: Measured[], rtt?: number): Row[] {
  const label = `${bytesLabel(size)} x ${n}${rtt === undefined ? '' : `, RTT ${rtt} ms`}`;
  const caseName = rtt === undefined ? 'paper' : 'locality';
  const rows: Row[] = [];
  const parallel = best(results, ['16-way', '64-way']);
  const seq = results.find((r) => r.mode === 'one-by-one');
  for (const ours of results.filter((r) => r.mode.startsWith('batch'))) {
    for (const [base, what] of [
      [parallel, `best parallel client (${parallel?.mode})`],
      [seq, 'one-by-one client'],
    ] as const) {
      if (base === undefined) continue;
      const o = summarize(ours.mibps);
      const b = summarize(base.mibps);
      rows.push({
        name: `${caseName} ${label}: ${ours.mode} vs ${what}`,
        case: caseName,
        ours: o.median,
        baseline: b.median,
        unit: 'MiB/s',
        ratio: round(o.median / b.median, 3),
        note: 'throughput of one get-batch vs individual GETs from nginx of the same objects; ratio = ours / baseline (above 1: faster)',
        repeats: { ours: o, baseline: b },
      });
    }
  }
  // Latency rows for the batch size the paper highlights, and in the locality case.
  if (n === 1_000 && parallel !== undefined) {
    const ours = results.find((r) => r.mode === 'batch (file root)');
    if (ours !== undefined) {
      for (const [what, pick] of [
        ['P50 batch latency', (m: Measured) => percentile(m.latencyMs, 50)],
        ['P95 batch latency', (m: Measured) => percentile(m.latencyMs, 95)],
        ['P99 per-object wait', (m: Measured) => percentile(m.waits, 99)],
      ] as const) {
        const o = round(pick(ours), 3);
        const b = round(pick(parallel), 3);
        rows.push({
          name: `${caseName} ${label}: ${what}, batch (file root) vs ${parallel.mode}`,
          case: caseName,
          ours: o,
          baseline: b,
          unit: 'ms',
          ratio: round(o / b, 3),
          note: 'milliseconds; ratio = ours / baseline (below 1: ojs-ml lower, better)',
          repeats: { ours: summarize([o], 3), baseline: summarize([b], 3) },
        });
      }
    }
  }
  return rows;
}

/** The data-locality case: one batch size, a few object sizes, each round-trip delay. */
export async function localityCase(ctx: PaperCtx): Promise<PaperResult> {
  const rows: Row[] = [];
  const cells: Cell[] = [];
  const { sizes, batch, rtts } = ctx.cfg.locality;
  const series = new Map<Mode, [number, number][]>();
  for (const size of sizes) {
    const count = Math.min(OBJECTS_MAX, Math.floor(ctx.cfg.cellBytesMax / size), Math.max(...ctx.cfg.batches));
    const data = dataset(ctx.work, `paper`, count, size, DISK_SLACK);
    const servers = await startAll(ctx, data.dir);
    try {
      for (const rtt of rtts) {
        const proxies = rtt === 0 ? undefined : await Promise.all([startDelayProxy({ host: '127.0.0.1', port: servers.nginx.port }, rtt), startDelayProxy({ host: '127.0.0.1', port: servers.serve.port }, rtt)]);
        try {
          const urls = proxies === undefined ? undefined : { nginx: `http://127.0.0.1:${proxies[0].port}`, serve: `http://127.0.0.1:${proxies[1].port}` };
          const measuredRtt = urls === undefined ? 0 : round(await measureRtt(proxies![0].port, `/${data.names[0]}`), 2);
          const modes: Mode[] = ['one-by-one', '16-way', 'batch (file root)'];
          const measured = rtt === 0 ? ctx.noDelay?.get(`${size}x${batch}`) : undefined;
          const results = measured?.filter((m) => modes.includes(m.mode)) ?? (await measureCell(ctx, servers, data.names.slice(0, batch), size, urls, modes, ctx.cfg.locality.minRepeats));
          cells.push({ size, n: batch, rtt, results });
          const r = cellRows(size, batch, results, rtt);
          for (const row of r) row.note += measured !== undefined ? '; no added delay: the paper case\'s measurement of this cell' : `; added RTT ${rtt} ms (a fetch through the proxy took ${measuredRtt} ms)`;
          rows.push(...r.filter((x) => x.unit === 'MiB/s'));
          if (size === 10 * KIB) for (const m of results) series.set(m.mode, [...(series.get(m.mode) ?? []), [rtt, summarize(m.mibps).median]]);
          ctx.log(`locality ${bytesLabel(size)} x ${batch}, RTT ${rtt} ms: ${results.map((m) => `${m.mode} ${summarize(m.mibps).median} MiB/s`).join(', ')}`);
        } finally {
          await Promise.all((proxies ?? []).map((p) => p.close()));
        }
      }
    } finally {
      await stopAll(servers);
    }
  }
  const plot = {
    'locality-throughput.svg': lineChart({
      title: `10 KiB objects, batches of ${batch}: throughput vs client-storage RTT`,
      xLabel: 'added round-trip time (ms)',
      yLabel: 'MiB/s (log)',
      yLog: true,
      xTicks: rtts,
      series: [...series].map(([name, points]) => ({ name, points, style: MODES.indexOf(name) })),
    }),
  };
  return { rows, plots: series.size === 0 ? {} : plot, cells: cells.map(summaryOfCell) };
}

function plots(cells: { size: number; results: Measured[] }[], n: number): Record<string, string> {
  const by = (pick: (m: Measured) => number) => {
    const series = new Map<Mode, [number, number][]>();
    for (const c of cells) for (const m of c.results) series.set(m.mode, [...(series.get(m.mode) ?? []), [c.size, pick(m)]]);
    return [...series].map(([name, points]) => ({ name, points, style: MODES.indexOf(name) }));
  };
  const sizes = [...new Set(cells.map((c) => c.size))];
  const common = { xLabel: 'object size', xLog: true, yLog: true, xTicks: sizes, xFormat: bytesLabel };
  return {
    'paper-throughput.svg': lineChart({ ...common, title: `Throughput vs object size, batches of ${n}`, yLabel: 'MiB/s (log)', series: by((m) => summarize(m.mibps).median) }),
    'paper-latency.svg': lineChart({ ...common, title: `Batch latency P95 vs object size, batches of ${n}`, yLabel: 'ms (log)', series: by((m) => percentile(m.latencyMs, 95)) }),
    'paper-object-wait.svg': lineChart({ ...common, title: `P99 per-object wait (in request order), batches of ${n}`, yLabel: 'ms (log)', series: by((m) => Math.max(percentile(m.waits, 99), 0.001)) }),
  };
}

function summaryOfCell(c: Cell): unknown {
  return {
    size: c.size,
    n: c.n,
    rtt_ms: c.rtt,
    modes: c.results.map((m) => ({
      mode: m.mode,
      mibps: summarize(m.mibps),
      batch_ms: { p50: round(percentile(m.latencyMs, 50), 3), p95: round(percentile(m.latencyMs, 95), 3), samples: m.latencyMs.map((x) => round(x, 3)) },
      object_wait_ms: { p50: round(percentile(m.waits, 50), 4), p99: round(percentile(m.waits, 99), 4), max: round(Math.max(...m.waits), 4) },
    })),
  };
}

/** Writes the plots where the results go. */
export function writePlots(dir: string, plotsBy: Record<string, string>): string[] {
  fs.mkdirSync(dir, { recursive: true });
  return Object.entries(plotsBy).map(([name, svg]) => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, svg);
    return file;
  });
}
