import { describe, expect, it } from 'vitest';
import { PROBE_BYTES, probeAudio, sliceRange, wavHeader, type Probe } from '../../src/lhotse/audio-header.js';
import { makeSphere, makeWav, type WavLayout } from '../helpers/audio.js';

/** Probes a file in memory the way the opener does: the first PROBE_BYTES, then reads on demand. */
async function probe(file: Buffer): Promise<{ p: Probe; read: number }> {
  let read = 0;
  const head = file.subarray(0, PROBE_BYTES);
  read += head.length;
  const p = await probeAudio(head, file.length, async (offset, length) => {
    read += Math.min(length, file.length - offset);
    return file.subarray(offset, offset + length);
  });
  return { p, read };
}

const wav = (layout: WavLayout, channels = 1) => makeWav({ layout, channels, rate: 16000, frames: 16000, seed: 1 });

describe('audio headers', () => {
  it('finds the data chunk where each writer puts it (44, 78, 80), never assuming 44', async () => {
    const offsets: Record<string, number> = {};
    for (const layout of ['pcm16', 'list', 'extensible24', 'float32', 'odd-chunk', 'big-chunk', 'rf64'] as const) {
      const { p } = await probe(wav(layout));
      if (!p.sliceable) throw new Error(`${layout}: ${p.why}`);
      offsets[layout] = p.layout.dataOffset;
    }
    expect(offsets).toEqual({ pcm16: 44, list: 78, 'extensible24': 80, float32: 80, 'odd-chunk': 56, 'big-chunk': 70_054, rf64: 80 });
  });

  it('skips a big chunk by its size instead of reading it', async () => {
    const { p, read } = await probe(wav('big-chunk'));
    expect(p.sliceable).toBe(true);
    expect(read).toBe(2 * PROBE_BYTES);
  });

  it('says why it cannot slice: not WAV, a compressed codec, shorten SPHERE', async () => {
    const adpcm = wav('pcm16');
    adpcm.writeUInt16LE(2, 20); // WAVE_FORMAT_ADPCM
    const why = async (b: Buffer) => {
      const { p } = await probe(b);
      return p.sliceable ? 'sliceable' : p.why;
    };
    expect(await why(Buffer.from('fLaC\0\0\0\x22 and more bytes'))).toBe('neither WAV nor NIST SPHERE by its first bytes');
    expect(await why(adpcm)).toMatch(/WAV format 0x2\) is not PCM/);
    expect(await why(makeSphere({ width: 2, bigEndian: false, channels: 1, rate: 8000, frames: 10, seed: 1, coding: 'pcm,embedded-shorten-v2.00' }))).toMatch(/shorten/);
  });

  it('clamps a cut to the frames there are, and a data size left 0 by a streaming writer means "to the end"', async () => {
    const b = wav('pcm16');
    b.writeUInt32LE(0, 40);
    const { p } = await probe(b);
    if (!p.sliceable) throw new Error(p.why);
    expect(p.layout.dataBytes).toBe(32000);
    expect(sliceRange(p.layout, 0.9, 0.5)).toEqual({ frame: 14400, frames: 1600, offset: 44 + 28800, length: 3200 });
    expect(sliceRange(p.layout, 5, 1)).toEqual({ frame: 16000, frames: 0, offset: 44 + 32000, length: 0 });
  });

  it('writes 44-byte PCM headers, and cbSize + fact for float, EXTENSIBLE keeping its extension', async () => {
    const sizes: number[] = [];
    for (const layout of ['pcm16', 'float32', 'extensible24'] as const) {
      const { p } = await probe(wav(layout, 2));
      if (!p.sliceable) throw new Error(p.why);
      sizes.push(wavHeader(p.layout, 960).length);
    }
    expect(sizes).toEqual([44, 58, 68]);
  });
});
