import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HAVE_SOX, checkSlices, makeSphere, makeWav, soxFiles, type SliceCase, type WavLayout } from '../helpers/audio.js';
import { ojs, pythonTarMembers, run, tmpDir } from '../helpers/tools.js';

let work: string;
let audio: string;

interface Source {
  /** Where the manifest points (may be inside a shard). */
  uri: string;
  /** The file itself, for the checker. */
  file: string;
  rate: number;
  channels: number;
  seconds: number;
}

const sources: Source[] = [];

// Starts and durations that hit Lhotse's rounding where it matters: exact ties at .5 samples
// (rounded up), Python repr floats (2.6399999999999997), tiny and zero-length cuts, and a cut
// running past the end of its file (clamped to the frames there are).
const TIMES: [number, number][] = [
  [0, 0.5],
  [0.00003125, 0.25], // 0.5 samples at 16 kHz: rounds up to 1
  [1.0000312500000001, 0.10003125],
  [2.6399999999999997, 0.3333333333333333],
  [0.1234567, 1e-5],
  [1.5, 0],
  [2.9, 5],
];

function cutLine(id: string, s: Source, start: number, duration: number, channel: number | number[] = 0): string {
  const ch = Array.from({ length: s.channels }, (_, i) => i);
  return JSON.stringify({
    id,
    start,
    duration,
    channel,
    supervisions: [],
    recording: { id: `rec-${id}`, sources: [{ type: 'url', channels: ch, source: s.uri }], sampling_rate: s.rate, num_samples: Math.round(s.seconds * s.rate), duration: s.seconds, channel_ids: ch },
    type: Array.isArray(channel) ? 'MultiCut' : 'MonoCut',
  });
}

beforeAll(async () => {
  work = tmpDir('ojs-ml-lhotse-slice-');
  audio = path.join(work, 'audio');
  fs.mkdirSync(audio);
  const layouts: [WavLayout, number, number][] = [
    ['pcm16', 1, 16000],
    ['pcm16', 2, 16000],
    ['pcm8', 1, 8000],
    ['pcm24', 1, 44100],
    ['pcm24', 2, 48000],
    ['pcm32', 1, 16000],
    ['list', 1, 16000],
    ['extensible24', 2, 16000],
    ['float32', 1, 22050],
    ['float64', 2, 16000],
    ['odd-chunk', 1, 16000],
    ['big-chunk', 1, 16000],
    ['rf64', 2, 16000],
  ];
  layouts.forEach(([layout, channels, rate], i) => {
    const file = path.join(audio, `${layout}-${channels}ch-${rate}.wav`);
    fs.writeFileSync(file, makeWav({ layout, channels, rate, frames: rate * 3, seed: i }));
    sources.push({ uri: `file://${file}`, file, rate, channels, seconds: 3 });
  });
  const spheres: [1 | 2 | 3, boolean, number, 'pcm' | 'ulaw'][] = [
    [2, false, 1, 'pcm'],
    [2, true, 1, 'pcm'],
    [2, true, 2, 'pcm'],
    [3, true, 1, 'pcm'],
    [1, false, 1, 'pcm'],
    [1, false, 1, 'ulaw'],
  ];
  spheres.forEach(([width, bigEndian, channels, coding], i) => {
    const file = path.join(audio, `sph-${width}-${bigEndian ? 'be' : 'le'}-${channels}ch-${coding}.sph`);
    fs.writeFileSync(file, makeSphere({ width, bigEndian, channels, rate: 8000, frames: 8000 * 3, seed: 100 + i, coding }));
    sources.push({ uri: `file://${file}`, file, rate: 8000, channels, seconds: 3 });
  });
  for (const s of soxFiles(audio)) {
    const file = path.join(audio, s.name);
    const info = await run('sox', ['--i', '-c', file]);
    sources.push({ uri: `file://${file}`, file, rate: s.rate, channels: Number(info.stdout.toString().trim()), seconds: 3 });
  }
  // The same files as members of shards, read with ranged reads (TAR) and one pass (TGZ).
  const shardDir = path.join(work, 'shards');
  fs.mkdirSync(shardDir);
  const inShard = sources.slice(0, 3).map((s) => path.basename(s.file));
  for (const [shard, flags] of [['a.tar', 'cf'], ['b.tgz', 'czf']] as const) {
    const r = await run('tar', ['-C', audio, `-${flags}`, path.join(shardDir, shard), ...inShard]);
    expect(r.code, r.stderr).toBe(0);
    for (const name of inShard) {
      const file = path.join(audio, name);
      const s = sources.find((x) => x.file === file)!;
      sources.push({ ...s, uri: `file://${shardDir}/${shard}/${name}` });
    }
  }
});

afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

function allCases(): { lines: string[]; cases: SliceCase[] } {
  const lines: string[] = [];
  const cases: SliceCase[] = [];
  sources.forEach((s, i) => {
    TIMES.forEach(([start, duration], j) => {
      const id = `s${i}-t${j}`;
      lines.push(cutLine(id, s, start, duration));
      cases.push({ member: `${id}.wav`, source: s.file, start, duration });
    });
  });
  return { lines, cases };
}

describe('sliced audio: every WAV layout and SPHERE, exactly the samples Lhotse selects', () => {
  it('gives each cut a valid WAV of exactly its frames (Python wave, struct, and sox where installed)', async () => {
    const { lines, cases } = allCases();
    const manifest = path.join(work, 'cuts.jsonl');
    fs.writeFileSync(manifest, lines.join('\n') + '\n');
    const out = path.join(work, 'slices.tar');
    const r = await ojs(['lhotse-get-batch', '--cuts', manifest, '--nv', out]);
    expect(r.code, r.stderr).toBe(0);
    const report = await checkSlices(out, cases);
    expect(report.checked).toBe(cases.length);
    expect(report.wave).toBeGreaterThan(cases.length / 2); // every PCM entry went through Python's wave
    if (HAVE_SOX) expect(report.sox).toBe(cases.length);
    // In manifest order, one entry per cut, nothing else.
    expect((await pythonTarMembers(out)).map((m) => m.name)).toEqual(cases.map((c) => c.member));
  });

  it('streams slices larger than a read (byte-swapped 24-bit SPHERE samples across chunk boundaries too)', async () => {
    const big: Source[] = [];
    const sph = path.join(audio, 'big-be24.sph');
    fs.writeFileSync(sph, makeSphere({ width: 3, bigEndian: true, channels: 2, rate: 48000, frames: 48000 * 12, seed: 7 }));
    big.push({ uri: `file://${sph}`, file: sph, rate: 48000, channels: 2, seconds: 12 });
    const wav = path.join(audio, 'big-float.wav');
    fs.writeFileSync(wav, makeWav({ layout: 'float32', channels: 2, rate: 44100, frames: 44100 * 12, seed: 8 }));
    big.push({ uri: `file://${wav}`, file: wav, rate: 44100, channels: 2, seconds: 12 });
    const times: [number, number][] = [[0.00001, 10.5], [1.23456789, 3.3333]];
    const lines = big.flatMap((s, i) => times.map(([start, duration], j) => cutLine(`big${i}-${j}`, s, start, duration)));
    const cases = big.flatMap((s, i) => times.map(([start, duration], j) => ({ member: `big${i}-${j}.wav`, source: s.file, start, duration })));
    const manifest = path.join(work, 'big.jsonl');
    fs.writeFileSync(manifest, lines.join('\n'));
    const out = path.join(work, 'big.tar');
    const r = await ojs(['lhotse-get-batch', '--cuts', manifest, '--nv', out]);
    expect(r.code, r.stderr).toBe(0);
    expect((await checkSlices(out, cases)).checked).toBe(4);
    expect(fs.statSync(out).size).toBeGreaterThan(10 * 48000 * 6); // far past one 256 KiB read per entry
  });

  it('names entries <cut.id>.wav in manifest order, ids with / and past ASCII too', async () => {
    const s = sources[0]!;
    const manifest = path.join(work, 'opaque.jsonl');
    fs.writeFileSync(manifest, [cutLine('a/ü', s, 0, 0.1), cutLine('b', s, 1, 0.1)].join('\n'));
    const r = await ojs(['lhotse-get-batch', '--cuts', manifest, '--nv', path.join(work, 'opaque.tar')]);
    expect(r.code, r.stderr).toBe(0);
    expect((await pythonTarMembers(path.join(work, 'opaque.tar'))).map((m) => m.name)).toEqual(['a/ü.wav', 'b.wav']);
  });

  it('--audio whole gives the whole objects, as AIStore does', async () => {
    const picks = [sources[0]!, sources[14]!];
    const manifest = path.join(work, 'whole.jsonl');
    fs.writeFileSync(manifest, picks.map((s, i) => cutLine(`w${i}`, s, 1, 0.5)).join('\n'));
    const out = path.join(work, 'whole.tar');
    const r = await ojs(['lhotse-get-batch', '--cuts', manifest, '--audio', 'whole', '--nv', out]);
    expect(r.code, r.stderr).toBe(0);
    const members = await pythonTarMembers(out);
    expect(members.map((m) => [m.name, m.size])).toEqual(picks.map((s, i) => [`w${i}.${path.extname(s.file).slice(1)}`, fs.statSync(s.file).size]));
  });

  it('fetches FLAC and recordings with time-changing transforms whole, under their own extension', async () => {
    const flac = path.join(audio, 'x.flac');
    fs.writeFileSync(flac, Buffer.from('fLaC not really, but it is never decoded'));
    const wav = sources[0]!;
    const speed = JSON.parse(cutLine('sp', wav, 1, 0.5)) as { recording: Record<string, unknown> };
    speed.recording.transforms = [{ name: 'Speed', kwargs: { factor: 1.1 } }];
    const vol = JSON.parse(cutLine('vol', wav, 1, 0.5)) as { recording: Record<string, unknown> };
    vol.recording.transforms = [{ name: 'Volume', kwargs: { factor: 0.5 } }];
    const manifest = path.join(work, 'mixed-formats.jsonl');
    fs.writeFileSync(manifest, [cutLine('f', { ...wav, uri: `file://${flac}` }, 1, 0.5), JSON.stringify(speed), JSON.stringify(vol)].join('\n'));
    const out = path.join(work, 'mixed-formats.tar');
    const r = await ojs(['lhotse-get-batch', '--cuts', manifest, out]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/fetched whole: .*Speed transform/);
    const members = await pythonTarMembers(out);
    expect(members.map((m) => [m.name, m.size])).toEqual([
      ['f.flac', fs.statSync(flac).size],
      ['sp.wav', fs.statSync(wav.file).size],
      ['vol.wav', members[2]!.size],
    ]);
    await checkSlices(out, [{ member: 'vol.wav', source: wav.file, start: 1, duration: 0.5 }]);
  });

  it('fetches shorten-compressed SPHERE whole, named .sph', async () => {
    const sph = makeSphere({ width: 2, bigEndian: false, channels: 1, rate: 8000, frames: 100, seed: 1, coding: 'pcm,embedded-shorten-v2.00' });
    const file = path.join(audio, 'shorten.sph');
    fs.writeFileSync(file, sph);
    const manifest = path.join(work, 'shorten.jsonl');
    fs.writeFileSync(manifest, cutLine('sh', { ...sources[0]!, uri: `file://${file}` }, 0, 0.01));
    const out = path.join(work, 'shorten.tar');
    const r = await ojs(['lhotse-get-batch', '--cuts', manifest, '--nv', out]);
    expect(r.code, r.stderr).toBe(0);
    expect((await pythonTarMembers(out)).map((m) => [m.name, m.size])).toEqual([['sh.sph', sph.length]]);
  });
});
