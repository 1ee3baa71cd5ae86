/**
 * Two cases that watch how cost grows with the batch:
 * - rss-scale: peak RSS of the engine (a fresh process, dist/bench/engine-child.js) for batches
 *   of 100 to 100,000 entries carrying the same payload (byte ranges of one file, so the data
 *   volume, and with it the garbage the GC leaves, is the same); it must stay flat, within 20% of
 *   the 100-entry batch. The child runs with the `ojs-ml` command's node flags and gives each
 *   archive chunk back once counted, as serve and the CLI do.
 * - lhotse: `ojs-ml lhotse-get-batch` over 1,000 cuts of 100 recordings of 60 s, sliced vs whole
 *   files: archive bytes per byte of the cuts' samples, and wall time.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { bigFile, NODE, q, round, type Row, sh, summarize } from './util.js';

const RSS_FLAT_TARGET = 1.2; // the issue: within 20% from 100 to 100,000 entries
const BLOB_MIB = 256; // the file the ranges are cut from (shared with the rss case)
const LHOTSE_SECONDS = 60; // per recording
const LHOTSE_RATE = 16_000; // 16 kHz, 16-bit mono: 32,000 bytes per second
const COMMAND_TIMEOUT_MS = 300_000;

export interface ScaleCtx {
  work: string;
  repo: string;
  repeats: number;
  slack: number;
  /** Entry counts and the payload of each batch. */
  counts: number[];
  payloadBytes: number;
}

export async function rssScaleCase(ctx: ScaleCtx): Promise<Row[]> {
  const dir = path.join(ctx.work, `rss-${BLOB_MIB}m`);
  bigFile(path.join(dir, 'blob.bin'), BLOB_MIB, ctx.slack);
  const child = path.join(ctx.repo, 'dist/bench/engine-child.js');
  const peaks: { n: number; mib: number[]; seconds: number[] }[] = [];
  for (const n of ctx.counts) {
    // Ranges a multiple of 512 long, spread over the file: every entry its own open and read.
    const size = Math.floor(ctx.payloadBytes / n / 512) * 512;
    const blob = BLOB_MIB << 20;
    const spec = path.join(ctx.work, `rss-scale-${n}.json`);
    fs.writeFileSync(spec, JSON.stringify({ in: Array.from({ length: n }, (_, i) => ({ objname: 'blob.bin', start: (i * size) % (blob - size), length: size })) }));
    const mib: number[] = [];
    const seconds: number[] = [];
    for (let r = 0; r < ctx.repeats; r++) {
      const { stdout } = await sh(`${NODE} ${q(child)} data ${q(dir)} ${q(spec)}`, COMMAND_TIMEOUT_MS);
      const rep = JSON.parse(stdout) as { entries: number; payloadBytes: number; maxRssKiB: number; seconds: number };
      if (rep.entries !== n || rep.payloadBytes !== n * size) throw new Error(`rss-scale ${n}: the engine delivered ${rep.entries} entries, ${rep.payloadBytes} bytes`);
      mib.push(rep.maxRssKiB / 1024);
      seconds.push(rep.seconds);
    }
    peaks.push({ n, mib, seconds });
  }
  const base = Math.max(...peaks[0]!.mib);
  const gib = (ctx.payloadBytes / 2 ** 30).toFixed(2).replace(/\.?0+$/, '');
  return peaks.map((p) => {
    const s = summarize(p.mib);
    return {
      name: `peak RSS, ${p.n.toLocaleString('en')} entries (${gib} GiB payload), engine`,
      case: 'rss-scale',
      ours: s.max,
      baseline: round(base),
      unit: 'MiB' as const,
      ratio: round(s.max / base, 3),
      note: `highest peak of ${ctx.repeats} runs; baseline is the ${peaks[0]!.n}-entry batch's peak; ratio = ours / baseline, at most ${RSS_FLAT_TARGET} meets the target (flat within 20%); run took ${summarize(p.seconds, 2).median} s`,
      repeats: { ours: s, baseline: null },
    };
  });
}

/** A 16 kHz 16-bit mono WAV of `seconds` of noise (the samples' values do not matter here). */
function wav(seconds: number): Buffer {
  const data = LHOTSE_RATE * 2 * seconds;
  const h = Buffer.alloc(44);
  h.write('RIFF', 0);
  h.writeUInt32LE(36 + data, 4);
  h.write('WAVEfmt ', 8);
  h.writeUInt32LE(16, 16);
  h.writeUInt16LE(1, 20); // PCM
  h.writeUInt16LE(1, 22); // mono
  h.writeUInt32LE(LHOTSE_RATE, 24);
  h.writeUInt32LE(LHOTSE_RATE * 2, 28);
  h.writeUInt16LE(2, 32);
  h.writeUInt16LE(16, 34);
  h.write('data', 36);
  h.writeUInt32LE(data, 40);
  const body = Buffer.allocUnsafe(data);
  for (let i = 0; i < data; i += 4) body.writeUInt32LE((Math.imul(i, 2654435761) >>> 0) & 0x7fff7fff, i);
  return Buffer.concat([h, body]);
}

export interface LhotseCtx {
  work: string;
  repo: string;
  repeats: number;
  /** The figure: 1,000 cuts over 100 recordings of 60 s (quick runs take a fifth). */
  cuts: number;
  recordings: number;
}

export async function lhotseCase(ctx: LhotseCtx): Promise<Row[]> {
  const dir = path.join(ctx.work, 'lhotse');
  const audio = path.join(dir, 'audio');
  fs.mkdirSync(audio, { recursive: true });
  const recordings = Array.from({ length: ctx.recordings }, (_, i) => path.join(audio, `rec-${String(i).padStart(3, '0')}.wav`));
  const bytes = wav(LHOTSE_SECONDS);
  for (const r of recordings) if (fs.statSync(r, { throwIfNoEntry: false })?.size !== bytes.length) fs.writeFileSync(r, bytes);
  // 1,000 cuts of 1 to 4 s, ten per recording, at starts that fall between samples.
  let cutSamples = 0;
  const lines: string[] = [];
  for (let i = 0; i < ctx.cuts; i++) {
    const rec = i % ctx.recordings;
    const duration = 1 + (i % 4) + 0.00003;
    const start = ((i * 7.3) % (LHOTSE_SECONDS - 5)) + 0.000031;
    cutSamples += Math.round(duration * LHOTSE_RATE);
    const recording = { id: `rec-${rec}`, sources: [{ type: 'file', channels: [0], source: recordings[rec] }], sampling_rate: LHOTSE_RATE, num_samples: LHOTSE_RATE * LHOTSE_SECONDS, duration: LHOTSE_SECONDS, channel_ids: [0] };
    lines.push(JSON.stringify({ id: `cut-${i}`, start, duration, channel: 0, supervisions: [], recording, type: 'MonoCut' }));
  }
  const manifest = path.join(dir, 'cuts.jsonl');
  fs.writeFileSync(manifest, `${lines.join('\n')}\n`);
  const cli = path.join(ctx.repo, 'dist/cli/main.js');
  const cutBytes = cutSamples * 2;
  const measured: Record<string, { seconds: number[]; bytes: number }> = {};
  for (const mode of ['slice', 'whole']) {
    const out = path.join(dir, `batch-${mode}.tar`);
    const cmd = `${NODE} ${q(cli)} lhotse-get-batch --cuts ${q(manifest)} --audio ${mode} --nv --yes ${q(out)}`;
    await sh(cmd, COMMAND_TIMEOUT_MS); // untimed: page cache and the check below
    const size = fs.statSync(out).size;
    const listed = (await sh(`tar tf ${q(out)} | wc -l`, COMMAND_TIMEOUT_MS)).stdout.trim();
    if (Number(listed) !== ctx.cuts) throw new Error(`lhotse ${mode}: the archive lists ${listed} entries, expected ${ctx.cuts}`);
    const seconds: number[] = [];
    for (let r = 0; r < ctx.repeats; r++) seconds.push((await sh(cmd, COMMAND_TIMEOUT_MS)).seconds);
    measured[mode] = { seconds, bytes: size };
    fs.rmSync(out);
  }
  const slice = measured.slice!;
  const whole = measured.whole!;
  const ts = summarize(slice.seconds, 3);
  const tw = summarize(whole.seconds, 3);
  const note = `${ctx.cuts} cuts of 1-4 s over ${ctx.recordings} recordings of ${LHOTSE_SECONDS} s (16 kHz 16-bit mono); archive bytes (TAR framing and WAV headers included) per byte of the cuts' samples`;
  return [
    { name: 'lhotse: archive bytes per byte of the cuts, --audio slice', case: 'lhotse', ours: round(slice.bytes / cutBytes, 4), baseline: 1.05, unit: 'x', ratio: round(slice.bytes / cutBytes / 1.05, 3), note: `${note}; baseline is the 1.05x target; ratio below 1 meets it`, repeats: { ours: summarize([slice.bytes / cutBytes], 4), baseline: null } },
    { name: 'lhotse: archive bytes per byte of the cuts, --audio slice vs --audio whole (AIStore behaviour)', case: 'lhotse', ours: round(slice.bytes / cutBytes, 4), baseline: round(whole.bytes / cutBytes, 3), unit: 'x', ratio: round(slice.bytes / whole.bytes, 4), note: `${note}; baseline is whole-file mode; ratio = slice / whole (below 1: fewer bytes)`, repeats: { ours: summarize([slice.bytes / cutBytes], 4), baseline: summarize([whole.bytes / cutBytes], 3) } },
    { name: `lhotse: ${ctx.cuts.toLocaleString('en')} cuts, --audio slice vs --audio whole, CLI wall time`, case: 'lhotse', ours: round(ts.median * 1000, 1), baseline: round(tw.median * 1000, 1), unit: 'ms', ratio: round(ts.median / tw.median, 3), note: 'lhotse-get-batch to a TAR file, process start included; ratio = slice / whole time (below 1: slicing is faster)', repeats: { ours: summarize(slice.seconds.map((s) => s * 1000)), baseline: summarize(whole.seconds.map((s) => s * 1000)) } },
  ];
}
