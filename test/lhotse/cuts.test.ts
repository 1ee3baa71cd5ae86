import * as fs from 'node:fs';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBatch } from '../../src/batch/engine.js';
import { cutBatch } from '../../src/lhotse/batch.js';
import { planCut, type PlanOptions } from '../../src/lhotse/cuts.js';
import { ProbeCache } from '../../src/lhotse/opener.js';
import { rootMapper } from '../../src/lhotse/roots.js';
import { SourceRegistry } from '../../src/sources/registry.js';
import { checkSlices, makeWav } from '../helpers/audio.js';
import { tmpDir } from '../helpers/tools.js';

const SLICE: PlanOptions = { audio: 'slice', cwd: '/data' };

function rec(sources: { channels: number[]; source: string; type?: string }[], extra: Record<string, unknown> = {}) {
  const ids = sources.flatMap((s) => s.channels);
  return { id: 'r', sources: sources.map((s) => ({ type: s.type ?? 'url', channels: s.channels, source: s.source })), sampling_rate: 16000, num_samples: 160000, duration: 10, channel_ids: ids, ...extra };
}

function mono(id: string, source: string, extra: Record<string, unknown> = {}) {
  return { id, start: 1.5, duration: 2, channel: 0, supervisions: [], recording: rec([{ channels: [0], source }]), type: 'MonoCut', ...extra };
}

describe('cuts -> audio objects', () => {
  it('reads source URIs of every provider, shard members included', () => {
    const where = (source: string) => {
      const [item] = planCut(mono('c', source), 1, SLICE).items;
      return { ...item!.location, archpath: item!.archpath };
    };
    expect(where('s3://bkt/wav/a.wav')).toEqual({ provider: 's3', bucket: 'bkt', key: 'wav/a.wav', archpath: undefined });
    expect(where('gs://b/a.wav')).toEqual({ provider: 'gs', bucket: 'b', key: 'a.wav', archpath: undefined });
    expect(where('az://container/dir/a.wav')).toEqual({ provider: 'az', bucket: 'container', key: 'dir/a.wav', archpath: undefined });
    expect(where('hf://datasets/org/name/audio/a.wav')).toEqual({ provider: 'hf', bucket: 'datasets/org/name', key: 'audio/a.wav', archpath: undefined });
    expect(where('https://host:8443/x/a.wav')).toEqual({ provider: 'https', bucket: 'host:8443', key: 'x/a.wav', archpath: undefined });
    expect(where('file:///srv/a.wav')).toEqual({ provider: 'file', bucket: '', key: 'srv/a.wav', archpath: undefined });
    expect(where('ais://asr/shards/shard-000012.tar/sess-42.flac')).toEqual({ provider: 'ais', bucket: 'asr', key: 'shards/shard-000012.tar', archpath: 'sess-42.flac' });
    expect(where('s3://b/s.tar.gz/in/a.wav')).toEqual({ provider: 's3', bucket: 'b', key: 's.tar.gz', archpath: 'in/a.wav' });
    expect(where('s3://b/s.tgz/a.wav').archpath).toBe('a.wav');
    expect(where('s3://b/s.zip/a.wav').archpath).toBe('a.wav');
    expect(where('s3://b/s.tar.lz4/a.wav').key).toBe('s.tar.lz4');
    expect(where('s3://b/s.tarball/a.wav')).toEqual({ provider: 's3', bucket: 'b', key: 's.tarball/a.wav', archpath: undefined });
    const file = planCut({ ...mono('c', ''), recording: rec([{ type: 'file', channels: [0], source: 'audio/a.tar/x.wav' }]) }, 1, SLICE).items[0]!;
    expect([file.location, file.archpath]).toEqual([{ provider: 'file', bucket: '', key: 'data/audio/a.tar' }, 'x.wav']);
  });

  it('maps local paths into roots, and the server refuses paths outside them', () => {
    const opts = { ...SLICE, fileLocation: rootMapper({ corpus: '/data/corpus', deep: '/data/corpus/deep' }, false) };
    expect(planCut(mono('c', 'file:///data/corpus/a.wav'), 1, opts).items[0]!.location).toEqual({ provider: 'file', bucket: 'corpus', key: 'a.wav' });
    expect(planCut(mono('c', 'file:///data/corpus/deep/b.wav'), 1, opts).items[0]!.location).toEqual({ provider: 'file', bucket: 'deep', key: 'b.wav' });
    expect(() => planCut(mono('c', 'file:///etc/passwd.wav'), 4, opts)).toThrow("line 4: /etc/passwd.wav is outside this server's file roots (deep, corpus)");
    expect(() => planCut(mono('c', 'file:///data/corpusX/a.wav'), 1, opts)).toThrow(/outside/);
  });

  it('fetches every source whose channels the cut uses, one entry each, named by their channels', () => {
    const sources = [
      { channels: [0], source: 's3://b/ch0.wav' },
      { channels: [1], source: 's3://b/ch1.wav' },
      { channels: [2, 3], source: 's3://b/ch23.wav' },
    ];
    const multi = { id: 'm', start: 0, duration: 1, channel: [1, 2], recording: rec(sources), type: 'MultiCut' };
    const plan = planCut(multi, 1, SLICE);
    expect(plan.items.map((i) => [i.base, i.location.key, i.channels])).toEqual([
      ['m.ch1', 'ch1.wav', [1]],
      ['m.ch2-3', 'ch23.wav', [2, 3]],
    ]);
    expect(planCut({ ...multi, channel: 0, type: 'MonoCut' }, 1, SLICE).items.map((i) => i.base)).toEqual(['m']);
    expect(() => planCut({ ...multi, channel: 7 }, 9, SLICE)).toThrow(/line 9: cut 'm' uses channel\(s\) \[7\]/);
    const batch = cutBatch([plan], { format: 'tar', coer: false, probes: new ProbeCache() });
    expect(batch.request.entries.map((e) => [e.name, Buffer.from(e.opaque!, 'base64').toString()])).toEqual([
      ['m.ch1.wav', 'm'],
      ['m.ch2-3.wav', 'm'],
    ]);
  });

  it("a MixedCut fetches its audible tracks (PaddingCut and muted ones need no I/O), each at its own cut's times", () => {
    const track = (cut: object, extra: object = {}) => ({ cut, type: (cut as { type: string }).type, offset: 0, ...extra });
    const mixed = {
      id: 'mix',
      tracks: [
        track(mono('utt', 's3://b/utt.wav', { start: 0.25 })),
        track({ id: 'pad', duration: 2, sampling_rate: 16000, feat_value: -23, num_samples: 32000, type: 'PaddingCut' }, { offset: 2 }),
        track(mono('noise', 'gs://n/noise.wav', { start: 30 }), { snr: 10 }),
        track(mono('ref', 'gs://n/ref.wav'), { mute: true }),
        // The track's type wins over its cut's, as in Lhotse.
        track({ ...mono('legacy', 's3://b/old.wav'), type: 'Cut' }, { type: 'MonoCut' }),
      ],
      type: 'MixedCut',
    };
    const plan = planCut(mixed, 1, SLICE);
    expect(plan.items.map((i) => [i.base, i.cutId, i.location.key, i.start])).toEqual([
      ['mix.t0', 'mix', 'utt.wav', 0.25],
      ['mix.t2', 'mix', 'noise.wav', 30],
      ['mix.t4', 'mix', 'old.wav', 1.5],
    ]);
    expect(planCut({ id: 'p', duration: 1, sampling_rate: 16000, feat_value: 0, type: 'PaddingCut' }, 1, SLICE).items).toEqual([]);
    expect(planCut({ ...mono('legacy', 's3://b/a.wav'), type: 'Cut' }, 1, SLICE).type).toBe('MonoCut');
    const featuresOnly = { ...mono('f', ''), recording: undefined, features: { type: 'fbank' } };
    expect(planCut(featuresOnly, 1, SLICE).items).toEqual([]);
  });

  it('fetches whole what cannot be sliced, and says why', () => {
    const speed = mono('sp', 's3://b/a.wav');
    speed.recording = rec([{ channels: [0], source: 's3://b/a.wav' }], { transforms: [{ name: 'Speed', kwargs: { factor: 1.1 } }] });
    expect(planCut(speed, 1, SLICE).items[0]).toMatchObject({ mode: 'whole', wholeWhy: expect.stringContaining('Speed') });
    const vol = mono('v', 's3://b/a.wav');
    vol.recording = rec([{ channels: [0], source: 's3://b/a.wav' }], { transforms: [{ name: 'Volume', kwargs: { factor: 2 } }] });
    expect(planCut(vol, 1, SLICE).items[0]!.mode).toBe('slice');
    for (const ext of ['flac', 'opus', 'mp3', 'shn']) expect(planCut(mono('x', `s3://b/a.${ext}`), 1, SLICE).items[0]).toMatchObject({ mode: 'whole', sourceExt: ext });
    expect(planCut(mono('x', 's3://b/a.wav'), 1, { audio: 'whole' }).items[0]!.mode).toBe('whole');
  });

  it('refuses sources and cuts a batch cannot fetch, naming the line', () => {
    const withSource = (type: string, source: string) => ({ ...mono('c', ''), recording: rec([{ type, channels: [0], source }]) });
    expect(() => planCut(withSource('command', 'sox a.wav -t wav -'), 3, SLICE)).toThrow(/line 3: a 'command' source/);
    expect(() => planCut(withSource('shar', ''), 3, SLICE)).toThrow(/line 3: a 'shar' source with no source string/);
    expect(() => planCut(withSource('url', 'bucket/key.wav'), 3, SLICE)).toThrow(/not a URI/);
    expect(() => planCut({ ...mono('c', 's3://b/a.wav'), start: -1 }, 5, SLICE)).toThrow(/line 5: 'start' must be a number/);
    expect(() => planCut({ ...mono('c', 's3://b/a.wav'), id: '' }, 5, SLICE)).toThrow(/'id' must be a non-empty string/);
    expect(() => planCut([1, 2], 6, SLICE)).toThrow(/line 6: the line is not a JSON object/);
  });
});

describe('multi-file and mixed cuts, end to end', () => {
  let dir: string;
  beforeAll(() => {
    dir = tmpDir('ojs-ml-lhotse-cuts-');
    for (let c = 0; c < 3; c++) fs.writeFileSync(path.join(dir, `ch${c}.wav`), makeWav({ layout: 'pcm16', channels: 1, rate: 16000, frames: 160000, seed: c }));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("slices each used source and each audible track to exactly its cut's samples", async () => {
    const f = (c: number) => `file://${dir}/ch${c}.wav`;
    const multi = { id: 'm', start: 3.3, duration: 0.7, channel: [0, 2], recording: rec([0, 1, 2].map((c) => ({ channels: [c], source: f(c) }))), type: 'MultiCut' };
    const mixed = {
      id: 'x',
      tracks: [
        { cut: mono('a', f(1), { start: 0.05, duration: 1.25 }), type: 'MonoCut', offset: 0 },
        { cut: { id: 'p', duration: 1, sampling_rate: 16000, feat_value: 0, type: 'PaddingCut' }, type: 'PaddingCut', offset: 1.25 },
        { cut: mono('b', f(2), { start: 7.123456, duration: 0.5 }), type: 'MonoCut', offset: 0.5, snr: 5 },
      ],
      type: 'MixedCut',
    };
    const plans = [planCut(multi, 1, SLICE), planCut(mixed, 2, SLICE)];
    const b = cutBatch(plans, { format: 'tar', coer: false, probes: new ProbeCache() });
    const out = path.join(dir, 'out.tar');
    const r = runBatch(b.request, new SourceRegistry({ file: { roots: {}, allowAbsolute: true } }), undefined, { opener: b.opener });
    await Promise.all([pipeline(r.stream, fs.createWriteStream(out)), r.result]);
    expect((await r.result).out.map((o) => Buffer.from(o.opaque!, 'base64').toString())).toEqual(['m', 'm', 'x', 'x']);
    await checkSlices(out, [
      { member: 'm.ch0.wav', source: `${dir}/ch0.wav`, start: 3.3, duration: 0.7 },
      { member: 'm.ch2.wav', source: `${dir}/ch2.wav`, start: 3.3, duration: 0.7 },
      { member: 'x.t0.wav', source: `${dir}/ch1.wav`, start: 0.05, duration: 1.25 },
      { member: 'x.t2.wav', source: `${dir}/ch2.wav`, start: 7.123456, duration: 0.5 },
    ]);
  });
});
