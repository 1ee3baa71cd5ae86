/**
 * Audio files for the Lhotse tests, written byte by byte here (every WAV layout the slicer must
 * walk, and SPHERE), by sox where it is installed, and checked by Python: the entries must decode
 * to exactly the frames Lhotse's rounding (Python's own Decimal) selects from the source.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from './tools.js';

export const HAVE_SOX = spawnSync('sh', ['-c', 'command -v sox'], { stdio: 'ignore' }).status === 0;
const CHECKER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'lhotse_check.py');

export type WavLayout =
  | 'pcm16' // fmt(16) + data: data at 44 (Python wave, libsndfile, sox PCM16)
  | 'pcm8'
  | 'pcm24'
  | 'pcm32'
  | 'list' // fmt(16) + LIST(26) + data: data at 78 (ffmpeg)
  | 'extensible24' // fmt(40, EXTENSIBLE) + fact(4) + data: data at 80 (sox 24-bit)
  | 'float32' // fmt(16) + fact(4) + PEAK(16) + data: data at 80 (libsndfile FLOAT)
  | 'float64'
  | 'odd-chunk' // a chunk of odd size (and its pad byte) before data
  | 'big-chunk' // 70 KB of metadata before data: the probe must skip it, not read it
  | 'rf64'; // RF64 + ds64: the data size in 64 bits, the 32-bit fields all ones

export interface WavOptions {
  layout: WavLayout;
  channels: number;
  rate: number;
  frames: number;
  /** Makes files differ. */
  seed: number;
}

/** Bits and codec of a layout. */
function codecOf(layout: WavLayout): { bits: number; float: boolean } {
  switch (layout) {
    case 'pcm8':
      return { bits: 8, float: false };
    case 'pcm24':
    case 'extensible24':
      return { bits: 24, float: false };
    case 'pcm32':
      return { bits: 32, float: false };
    case 'float32':
      return { bits: 32, float: true };
    case 'float64':
      return { bits: 64, float: true };
    default:
      return { bits: 16, float: false };
  }
}

/** Interleaved frames: a different, deterministic value for every sample of every channel. */
export function frames(o: { channels: number; frames: number; seed: number }, bits: number, float: boolean): Buffer {
  const w = bits / 8;
  const b = Buffer.alloc(o.frames * o.channels * w);
  let p = 0;
  for (let i = 0; i < o.frames; i++) {
    for (let c = 0; c < o.channels; c++) {
      const x = Math.sin((i + 1) * (0.0131 + 0.007 * c) + o.seed) * 0.9;
      const k = (i * 7919 + c * 104729 + o.seed * 31) >>> 0;
      if (float && w === 4) b.writeFloatLE(x, p);
      else if (float) b.writeDoubleLE(x, p);
      else if (w === 1) b[p] = k & 0xff;
      else if (w === 2) b.writeInt16LE((k % 65536) - 32768, p);
      else if (w === 3) b.writeIntLE((k % 16777216) - 8388608, p, 3);
      else b.writeInt32LE(k | 0, p);
      p += w;
    }
  }
  return b;
}

function chunk(id: string, payload: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.write(id, 0, 'latin1');
  h.writeUInt32LE(payload.length, 4);
  return Buffer.concat([h, payload, Buffer.alloc(payload.length & 1)]);
}

function fmtPayload(tag: number, channels: number, rate: number, bits: number, extra?: Buffer): Buffer {
  const ba = channels * (bits / 8);
  const f = Buffer.alloc(16);
  f.writeUInt16LE(tag, 0);
  f.writeUInt16LE(channels, 2);
  f.writeUInt32LE(rate, 4);
  f.writeUInt32LE(rate * ba, 8);
  f.writeUInt16LE(ba, 12);
  f.writeUInt16LE(bits, 14);
  return extra === undefined ? f : Buffer.concat([f, extra]);
}

/** A WAV file in the given layout. */
export function makeWav(o: WavOptions): Buffer {
  const { bits, float } = codecOf(o.layout);
  const data = frames(o, bits, float);
  const parts: Buffer[] = [];
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n);
    return b;
  };
  if (o.layout === 'extensible24') {
    const ext = Buffer.alloc(24);
    ext.writeUInt16LE(22, 0); // cbSize
    ext.writeUInt16LE(24, 2); // valid bits
    ext.writeUInt32LE(o.channels === 1 ? 4 : 3, 4); // channel mask
    Buffer.from('0100000000001000800000aa00389b71', 'hex').copy(ext, 8); // KSDATAFORMAT_SUBTYPE_PCM
    parts.push(chunk('fmt ', fmtPayload(0xfffe, o.channels, o.rate, bits, ext)), chunk('fact', u32(o.frames)));
  } else if (float) {
    const peak = Buffer.alloc(8 + 8 * o.channels);
    parts.push(chunk('fmt ', fmtPayload(3, o.channels, o.rate, bits)), chunk('fact', u32(o.frames)), chunk('PEAK', peak.subarray(0, 16)));
  } else {
    parts.push(chunk('fmt ', fmtPayload(1, o.channels, o.rate, bits)));
    if (o.layout === 'list') parts.push(chunk('LIST', Buffer.from('INFOISFT\x0e\x00\x00\x00Lavf60.16.100\x00', 'latin1')));
    if (o.layout === 'odd-chunk') parts.push(chunk('junk', Buffer.from('odd')));
    if (o.layout === 'big-chunk') parts.push(chunk('LIST', Buffer.alloc(70_001, 'm')));
  }
  if (o.layout === 'rf64') {
    const ds64 = Buffer.alloc(28);
    const fmt = chunk('fmt ', fmtPayload(1, o.channels, o.rate, bits));
    ds64.writeBigUInt64LE(BigInt(4 + 36 + fmt.length + 8 + data.length), 0);
    ds64.writeBigUInt64LE(BigInt(data.length), 8);
    ds64.writeBigUInt64LE(BigInt(o.frames), 16);
    const dataHeader = Buffer.from('data\xff\xff\xff\xff', 'latin1');
    const rest = Buffer.concat([chunk('ds64', ds64), fmt, dataHeader, data]);
    return Buffer.concat([Buffer.from('RF64\xff\xff\xff\xffWAVE', 'latin1'), rest]);
  }
  parts.push(chunk('data', data));
  const body = Buffer.concat(parts);
  return Buffer.concat([Buffer.from('RIFF', 'latin1'), u32(4 + body.length), Buffer.from('WAVE', 'latin1'), body]);
}

/** A NIST SPHERE file with PCM samples in either byte order (or 8-bit signed PCM, or mu-law). */
export function makeSphere(o: { channels: number; rate: number; frames: number; seed: number; width: 1 | 2 | 3; bigEndian: boolean; coding?: string }): Buffer {
  const coding = o.coding ?? 'pcm';
  const le = frames(o, o.width * 8, false);
  const data = Buffer.from(le);
  if (o.bigEndian && o.width > 1) for (let i = 0; i < data.length; i += o.width) data.subarray(i, i + o.width).reverse();
  const order = o.width === 1 ? '1' : o.bigEndian ? '10' : '01';
  const fields = [
    'NIST_1A',
    '   1024',
    `sample_count -i ${o.frames}`,
    `sample_n_bytes -i ${o.width}`,
    `channel_count -i ${o.channels}`,
    `sample_byte_format -s${order.length} ${order}`,
    `sample_rate -i ${o.rate}`,
    `sample_coding -s${coding.length} ${coding}`,
    'end_head',
    '',
  ].join('\n');
  const header = Buffer.alloc(1024, ' ');
  header.write(fields, 0, 'latin1');
  return Buffer.concat([header, data]);
}

/** Audio files made by sox (real-tool layouts), when it is installed. */
export function soxFiles(dir: string): { name: string; rate: number }[] {
  if (!HAVE_SOX) return [];
  const made = [
    { name: 'sox-pcm16-stereo.wav', args: ['-r', '16000', '-b', '16', '-c', '2'], rate: 16000 },
    { name: 'sox-pcm24.wav', args: ['-r', '22050', '-b', '24', '-c', '1'], rate: 22050 },
    { name: 'sox-float.wav', args: ['-r', '8000', '-e', 'floating-point', '-b', '32', '-c', '1'], rate: 8000 },
    { name: 'sox-pcm16.sph', args: ['-r', '16000', '-b', '16', '-c', '1'], rate: 16000 },
    { name: 'sox-ulaw.wav', args: ['-r', '8000', '-e', 'u-law', '-c', '1'], rate: 8000 },
  ];
  for (const m of made) {
    const r = spawnSync('sox', ['-n', ...m.args, path.join(dir, m.name), 'synth', '3', 'sine', '300-3000'], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`sox failed for ${m.name}: ${r.stderr}`);
  }
  return made.map((m) => ({ name: m.name, rate: m.rate }));
}

export interface SliceCase {
  /** Member name in the archive. */
  member: string;
  /** The whole source file on disk. */
  source: string;
  start: number;
  duration: number;
}

/**
 * Checks every sliced entry of a TAR with Python: a valid RIFF WAV (sizes add up, fmt and fact
 * as the codec wants, Python's `wave` reads PCM), holding exactly the source frames that
 * Lhotse's compute_num_samples selects; with sox, `sox` reads it with the same sample count.
 */
export async function checkSlices(tar: string, cases: SliceCase[], sox = HAVE_SOX): Promise<{ checked: number; wave: number; sox: number }> {
  const r = await run('python3', [CHECKER, tar, sox ? '1' : '0'], { input: JSON.stringify(cases) });
  if (r.code !== 0) throw new Error(`slice check failed:\n${r.stderr}`);
  return JSON.parse(r.stdout.toString('utf8')) as { checked: number; wave: number; sox: number };
}

export interface Corpus {
  files: string[];
  /** One MonoCut line per cut, in order. */
  lines: string[];
  cuts: { id: string; file: string; start: number; duration: number }[];
}

/**
 * Mono 16-bit WAVs of `seconds` each and `perRecording` cuts over each, at starts and durations
 * that are not whole samples. `sparse`: the files are holes after their header (fast to make
 * and read; for byte counting, where the samples do not matter).
 */
export function makeCorpus(dir: string, o: { recordings: number; seconds: number; rate: number; perRecording: number; sparse?: boolean }): Corpus {
  const files: string[] = [];
  const lines: string[] = [];
  const cuts: Corpus['cuts'] = [];
  for (let r = 0; r < o.recordings; r++) {
    const file = `${dir}/rec-${String(r).padStart(4, '0')}.wav`;
    const n = o.seconds * o.rate;
    if (o.sparse === true) {
      const header = makeWav({ layout: 'pcm16', channels: 1, rate: o.rate, frames: 0, seed: r });
      header.writeUInt32LE(36 + n * 2, 4);
      header.writeUInt32LE(n * 2, 40);
      fs.writeFileSync(file, header);
      fs.truncateSync(file, 44 + n * 2);
    } else {
      fs.writeFileSync(file, makeWav({ layout: 'pcm16', channels: 1, rate: o.rate, frames: n, seed: r }));
    }
    files.push(file);
    for (let k = 0; k < o.perRecording; k++) {
      const start = Number(((k * o.seconds) / o.perRecording + 0.123457 * ((k + r) % 3)).toFixed(6));
      const duration = Number((1 + ((k * 7 + r) % 40) / 13).toFixed(7));
      const id = `rec${r}-cut${k}`;
      cuts.push({ id, file, start, duration });
      lines.push(
        JSON.stringify({
          id,
          start,
          duration,
          channel: 0,
          supervisions: [{ id, recording_id: `rec${r}`, start: 0, duration, channel: 0, text: 'HELLO ÜBER WORLD' }],
          recording: { id: `rec${r}`, sources: [{ type: 'file', channels: [0], source: file }], sampling_rate: o.rate, num_samples: n, duration: o.seconds, channel_ids: [0] },
          type: 'MonoCut',
        }),
      );
    }
  }
  return { files, lines, cuts };
}
