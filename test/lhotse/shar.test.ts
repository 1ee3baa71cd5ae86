import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCorpus, makeWav, type Corpus } from '../helpers/audio.js';
import { gnuTarList, ojs, run, tmpDir } from '../helpers/tools.js';

const CHECKER = path.join(path.dirname(fileURLToPath(import.meta.url)), '../helpers/shar_check.py');

let work: string;
let corpus: Corpus;

beforeAll(() => {
  work = tmpDir('ojs-ml-lhotse-shar-');
  fs.mkdirSync(path.join(work, 'audio'));
  corpus = makeCorpus(path.join(work, 'audio'), { recordings: 5, seconds: 6, rate: 16000, perRecording: 5 });
});

afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

type Originals = Record<string, { source: string; start: number; duration: number }>;

function originals(): Originals {
  return Object.fromEntries(corpus.cuts.map((c) => [c.id, { source: c.file, start: c.start, duration: c.duration }]));
}

async function sharCheck(dir: string, orig: Originals): Promise<{ shards: number; cuts: number; sliced: number; whole: number; placeholders: number }> {
  const r = await run('python3', [CHECKER], { input: JSON.stringify({ dir, originals: orig }) });
  if (r.code !== 0) throw new Error(`Shar check failed:\n${r.stderr}`);
  return JSON.parse(r.stdout.toString()) as Awaited<ReturnType<typeof sharCheck>>;
}

function writeManifest(name: string, lines: string[]): string {
  const file = path.join(work, name);
  fs.writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

describe('lhotse-get-batch --shar DIR', () => {
  it("writes Shar shards as Lhotse's reader expects them: names, pairs in cut order, placeholders, start = 0", async () => {
    const dir = path.join(work, 'shar');
    const manifest = writeManifest('cuts.jsonl', corpus.lines);
    const r = await ojs(['lhotse-get-batch', '--cuts', manifest, '--shar', dir, '--batch-size', '10', '--nv']);
    expect(r.code, r.stderr).toBe(0);
    expect(fs.readdirSync(dir).sort()).toEqual(['cuts.000000.jsonl.gz', 'cuts.000001.jsonl.gz', 'cuts.000002.jsonl.gz', 'recording.000000.tar', 'recording.000001.tar', 'recording.000002.tar']);
    expect(await gnuTarList(path.join(dir, 'recording.000002.tar'))).toEqual(corpus.cuts.slice(20).flatMap((c) => [`${c.id}.wav`, `${c.id}.json`]));
    expect(await sharCheck(dir, originals())).toEqual({ shards: 3, cuts: 25, sliced: 25, whole: 0, placeholders: 0 });
    // The cut line keeps its keys in Lhotse's order, with Python's separators, UTF-8 as is.
    const first = gunzipSync(fs.readFileSync(path.join(dir, 'cuts.000000.jsonl.gz'))).toString().split('\n')[0]!;
    expect(first).toMatch(/^\{"id": "rec0-cut0", "start": 0, "duration": [\d.]+, "channel": 0, "supervisions": \[\{.*"text": "HELLO ÜBER WORLD"\}\], "recording": \{"id": "rec0", "sources": \[\{"type": "shar", "channels": \[0\], "source": ""\}\], "sampling_rate": 16000, "num_samples": \d+, "duration": [\d.]+, "channel_ids": \[0\]\}, "type": "MonoCut"\}$/);

    // A rerun keeps the finished shards.
    const again = await ojs(['lhotse-get-batch', '--cuts', manifest, '--shar', dir, '--batch-size', '10']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr.match(/^Kept /gm)).toHaveLength(3);
  });

  it('cuts without audio get .nodata/.nometa; audio that cannot be sliced is stored whole with its start kept; MixedCuts are refused', async () => {
    const flac = path.join(work, 'audio', 'x.flac');
    fs.writeFileSync(flac, Buffer.from('fLaC stand-in'));
    const wavCut = JSON.parse(corpus.lines[0]!) as Record<string, unknown> & { recording: Record<string, unknown> };
    const flacCut = { ...wavCut, id: 'flac-cut', recording: { ...wavCut.recording, sources: [{ type: 'file', channels: [0], source: flac }] } };
    const speedCut = { ...wavCut, id: 'speed-cut', recording: { ...wavCut.recording, transforms: [{ name: 'Speed', kwargs: { factor: 0.9 } }] } };
    const volCut = { ...wavCut, id: 'vol-cut', recording: { ...wavCut.recording, transforms: [{ name: 'Volume', kwargs: { factor: 0.5 } }] } };
    const featuresOnly = { id: 'feats', start: 1, duration: 2, channel: 0, supervisions: [], features: { type: 'fbank', storage_type: 'lilcom_chunky' }, type: 'MonoCut' };
    const mixed = { id: 'mix', tracks: [{ cut: wavCut, type: 'MonoCut', offset: 0 }], type: 'MixedCut' };
    const lines = [JSON.stringify(flacCut), JSON.stringify(speedCut), JSON.stringify(featuresOnly), JSON.stringify(volCut), JSON.stringify(mixed)];
    const manifest = writeManifest('mixed.jsonl', lines);
    const dir = path.join(work, 'shar-mixed');
    const refused = await ojs(['lhotse-get-batch', '--cuts', manifest, '--shar', dir, '--nv']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("line 5: cut 'mix' is a MixedCut; Shar holds one audio file per cut");
    fs.rmSync(dir, { recursive: true, force: true });

    const r = await ojs(['lhotse-get-batch', '--cuts', manifest, '--shar', dir, '--cont-on-err', '--nv']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('skipped: line 5');
    expect(await gnuTarList(path.join(dir, 'recording.000000.tar'))).toEqual(['flac-cut.flac', 'flac-cut.json', 'speed-cut.wav', 'speed-cut.json', 'feats.nodata', 'feats.nometa', 'vol-cut.wav', 'vol-cut.json']);
    const c0 = corpus.cuts[0]!;
    const orig: Originals = {
      'flac-cut': { source: flac, start: c0.start, duration: c0.duration },
      'speed-cut': { source: c0.file, start: c0.start, duration: c0.duration },
      'vol-cut': { source: c0.file, start: c0.start, duration: c0.duration },
    };
    expect(await sharCheck(dir, orig)).toEqual({ shards: 1, cuts: 4, sliced: 1, whole: 2, placeholders: 1 });
    const cutsLines = gunzipSync(fs.readFileSync(path.join(dir, 'cuts.000000.jsonl.gz'))).toString().trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    // Whole audio keeps what Lhotse needs to find the cut in it: start, the recording's timing and its transforms.
    expect(cutsLines[1]).toMatchObject({ start: c0.start, recording: { duration: 6, transforms: [{ name: 'Speed', kwargs: { factor: 0.9 } }] } });
    expect(cutsLines[3]).toMatchObject({ start: 0, recording: { duration: c0.duration, transforms: [{ name: 'Volume', kwargs: { factor: 0.5 } }] } });
  });

  it('with --cont-on-err, a cut whose audio is missing gets .nodata/.nometa and loses its recording', async () => {
    const wav = path.join(work, 'audio', 'gone.wav');
    fs.writeFileSync(wav, makeWav({ layout: 'pcm16', channels: 1, rate: 16000, frames: 16000, seed: 3 }));
    const cut = JSON.parse(corpus.lines[1]!) as Record<string, unknown> & { recording: Record<string, unknown> };
    const gone = { ...cut, id: 'gone', start: 0.1, duration: 0.5, recording: { ...cut.recording, sources: [{ type: 'file', channels: [0], source: wav }] } };
    const manifest = writeManifest('gone.jsonl', [JSON.stringify(gone), corpus.lines[1]!]);
    fs.rmSync(wav);
    const dir = path.join(work, 'shar-gone');
    const failed = await ojs(['lhotse-get-batch', '--cuts', manifest, '--shar', dir, '--nv']);
    expect(failed.code).toBe(1);
    expect(fs.readdirSync(dir)).toEqual([]);
    const r = await ojs(['lhotse-get-batch', '--cuts', manifest, '--shar', dir, '--cont-on-err', '--nv']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain("cut 'gone': audio missing");
    expect(await gnuTarList(path.join(dir, 'recording.000000.tar'))).toEqual(['gone.nodata', 'gone.nometa', `${corpus.cuts[1]!.id}.wav`, `${corpus.cuts[1]!.id}.json`]);
    expect(await sharCheck(dir, originals())).toEqual({ shards: 1, cuts: 2, sliced: 1, whole: 0, placeholders: 1 });
  });
});
