import * as fs from 'node:fs';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBatch } from '../../src/batch/engine.js';
import { cutBatch, readCuts } from '../../src/lhotse/batch.js';
import type { AudioMode, CutPlan } from '../../src/lhotse/cuts.js';
import { bufferLines } from '../../src/lhotse/manifest.js';
import { ProbeCache } from '../../src/lhotse/opener.js';
import { computeNumSamples } from '../../src/lhotse/time.js';
import { FileSource } from '../../src/sources/file.js';
import { SourceRegistry } from '../../src/sources/registry.js';
import type { ObjectRef, OpenOptions, OpenedObject } from '../../src/sources/types.js';
import { makeCorpus, type Corpus } from '../helpers/audio.js';
import { tmpDir } from '../helpers/tools.js';

const RATE = 16000;
let work: string;
let corpus: Corpus;

/** A file source that counts what it delivers: the exact byte count of every open. */
class CountingFiles extends FileSource {
  bytes = 0;
  opens = 0;
  override async open(ref: ObjectRef, opts: OpenOptions): Promise<OpenedObject> {
    const o = await super.open(ref, opts);
    this.bytes += o.length;
    this.opens++;
    return o;
  }
}

beforeAll(() => {
  work = tmpDir('ojs-ml-lhotse-bytes-');
  // 100 recordings of 60 s (16 kHz, 16-bit mono: 1.92 MB each), 10 cuts each; sparse files, since
  // only byte counts matter here (the slicing itself is checked sample by sample elsewhere).
  corpus = makeCorpus(work, { recordings: 100, seconds: 60, rate: RATE, perRecording: 10, sparse: true });
});

afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

async function moved(audio: AudioMode): Promise<{ source: number; opens: number; archive: number }> {
  const files = new CountingFiles({ roots: {}, allowAbsolute: true });
  const sources = new SourceRegistry().register(files);
  const cuts: CutPlan[] = [];
  for await (const c of readCuts(bufferLines(Buffer.from(corpus.lines.join('\n')), 'cuts.jsonl'), { audio, contOnErr: false })) cuts.push(c);
  const probes = new ProbeCache();
  let archive = 0;
  // Ten batches of 100 cuts, as a training loop would ask; probes are shared by the run.
  for (let b = 0; b < 10; b++) {
    const batch = cutBatch(cuts.slice(b * 100, b * 100 + 100), { format: 'tar', coer: false, probes });
    const r = runBatch(batch.request, sources, undefined, { opener: batch.opener });
    const sink = new Writable({ write: (c: Buffer, _e, cb) => ((archive += c.length), cb()) });
    await Promise.all([pipeline(r.stream as Readable, sink), r.result]);
  }
  expect(probes.misses).toBe(audio === 'slice' ? 100 : 0); // one header probe per recording
  return { source: files.bytes, opens: files.opens, archive };
}

describe('bytes moved for 1,000 cuts over 100 recordings of 60 s', () => {
  it('slice mode moves at most 1.05x the bytes of the cuts; whole mode moves the recordings, cut after cut', async () => {
    const cutBytes = corpus.cuts.reduce((n, c) => n + computeNumSamples(c.duration, RATE) * 2, 0);
    const slice = await moved('slice');
    const whole = await moved('whole');
    const sliceRatio = slice.source / cutBytes;
    const wholeRatio = whole.source / cutBytes;
    const mb = (n: number) => (n / 1e6).toFixed(1);
    console.log(
      `bytes moved by the source for 1,000 cuts (${mb(cutBytes)} MB of cut samples): ` +
        `slice ${mb(slice.source)} MB in ${slice.opens} reads = ${sliceRatio.toFixed(4)}x; ` +
        `whole ${mb(whole.source)} MB in ${whole.opens} reads = ${wholeRatio.toFixed(2)}x`,
    );
    expect(sliceRatio).toBeLessThanOrEqual(1.05);
    expect(slice.opens).toBe(1000 + 100); // one read per cut, one probe per recording
    expect(whole.source).toBe(1000 * (44 + 60 * RATE * 2));
    // The archive holds each cut's samples plus a 44-byte header and the TAR framing.
    expect(slice.archive).toBeLessThan(cutBytes * 1.05);
  });
});
