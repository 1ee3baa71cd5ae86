/**
 * A progress line on stderr while a batch runs: entries, bytes, rate. Shown only when stderr is
 * a terminal and the user did not ask for quiet (--nv); cli-progress draws it.
 */
import type { BatchProgress } from '../src/batch/engine.js';

const REDRAW_MS = 200; // how often the line is redrawn

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${units[u]}`;
}

export interface ProgressDisplay {
  stop(): void;
}

export async function showProgress(progress: Readonly<BatchProgress>, enabled: boolean): Promise<ProgressDisplay> {
  if (!enabled) return { stop: () => undefined };
  const { default: cliProgress } = await import('cli-progress');
  const started = Date.now();
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: '{bar} {value}/{total} entries | {bytes} | {rate}/s | {missing} missing',
      hideCursor: true,
      clearOnComplete: true,
      barsize: 24,
      fps: 1000 / REDRAW_MS,
    },
    cliProgress.Presets.shades_classic,
  );
  const payload = () => {
    const secs = Math.max((Date.now() - started) / 1000, 0.001);
    return { bytes: formatBytes(progress.bytes), rate: formatBytes(Math.round(progress.bytes / secs)), missing: progress.missing };
  };
  bar.start(progress.total, 0, payload());
  const timer = setInterval(() => bar.update(progress.done, payload()), REDRAW_MS);
  return {
    stop() {
      clearInterval(timer);
      bar.update(progress.done, payload());
      bar.stop();
    },
  };
}
