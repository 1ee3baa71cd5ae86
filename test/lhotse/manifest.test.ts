import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_LINE_BYTES, bufferLines, detectCompression, manifestLines } from '../../src/lhotse/manifest.js';
import { checkSlices, makeCorpus, type Corpus } from '../helpers/audio.js';
import { ojs, pythonTarMembers, run, sha256, tmpDir } from '../helpers/tools.js';

let work: string;
let corpus: Corpus;
let plain: Buffer;

beforeAll(() => {
  work = tmpDir('ojs-ml-lhotse-manifest-');
  fs.mkdirSync(path.join(work, 'audio'));
  corpus = makeCorpus(path.join(work, 'audio'), { recordings: 4, seconds: 10, rate: 16000, perRecording: 10 });
  plain = Buffer.from(corpus.lines.join('\n') + '\n');
});

afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

async function tool(cmd: string, args: string[], input: Buffer): Promise<Buffer> {
  const r = await run(cmd, args, { input });
  if (r.code !== 0) throw new Error(`${cmd}: ${r.stderr}`);
  return r.stdout;
}

/** A skippable LZ4 frame (magic 0x184D2A5?, size, payload), which readers must step over. */
function skippable(payload: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32LE(0x184d2a53, 0);
  h.writeUInt32LE(payload.length, 4);
  return Buffer.concat([h, payload]);
}

describe('cut manifests: plain, gzip, LZ4', () => {
  it('plain, gzip (one and several members), LZ4 (one frame, several, skippable frames) and stdin give byte-identical archives', async () => {
    const half = plain.indexOf('\n', plain.length / 2) + 1;
    const [a, b] = [plain.subarray(0, half), plain.subarray(half)];
    const lz4 = (x: Buffer) => tool('lz4', ['-c', '-q'], x);
    const variants: Record<string, Buffer> = {
      'cuts.jsonl': plain,
      'cuts.jsonl.gz': await tool('gzip', ['-c'], plain),
      'members.jsonl.gzip': Buffer.concat([gzipSync(a), gzipSync(b)]),
      'cuts.jsonl.lz4': await lz4(plain),
      'frames.jsonl.lz4': Buffer.concat([await lz4(a), await lz4(b)]),
      'skippable.jsonl.lz4': Buffer.concat([skippable(Buffer.from('x')), await lz4(a), skippable(Buffer.alloc(1000)), await lz4(b)]),
      'misnamed-gzip.jsonl': gzipSync(plain),
      'misnamed-lz4.jsonl.gz': await lz4(plain),
      'misnamed-plain.jsonl.lz4': plain,
    };
    const digests: Record<string, string> = {};
    for (const [name, bytes] of Object.entries(variants)) {
      const file = path.join(work, name);
      fs.writeFileSync(file, bytes);
      const out = path.join(work, `${name}.tar`);
      const r = await ojs(['lhotse-get-batch', '--cuts', file, '--nv', out]);
      expect(r.code, `${name}: ${r.stderr}`).toBe(0);
      digests[name] = sha256(fs.readFileSync(out));
    }
    const r = await ojs(['lhotse-get-batch', '--cuts', '-', '--nv', '-'], { input: variants['frames.jsonl.lz4'] });
    expect(r.code, r.stderr).toBe(0);
    digests.stdin = sha256(r.stdout);
    expect(new Set(Object.values(digests)).size, JSON.stringify(digests, null, 1)).toBe(1);
    const out = path.join(work, 'cuts.jsonl.tar');
    expect((await pythonTarMembers(out)).map((m) => m.name)).toEqual(corpus.cuts.map((c) => `${c.id}.wav`));
    await checkSlices(out, corpus.cuts.map((c) => ({ member: `${c.id}.wav`, source: c.file, start: c.start, duration: c.duration })), false);
  });

  it('reports a corrupt line by its number (blank lines count), in plain and gzip alike; --cont-on-err skips it', async () => {
    const lines = [...corpus.lines.slice(0, 6)];
    lines.splice(2, 0, ''); // line 3 is blank
    lines.splice(6, 0, '{"id": "broken", "start": 1.0, "dur'); // line 7
    const text = Buffer.from(lines.join('\n') + '\n');
    for (const [name, bytes] of [['bad.jsonl', text], ['bad.jsonl.gz', gzipSync(text)]] as const) {
      const file = path.join(work, name);
      fs.writeFileSync(file, bytes);
      const out = path.join(work, `${name}.tar`);
      const r = await ojs(['lhotse-get-batch', '--cuts', file, '--nv', out]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(new RegExp(`${name}: line 7: not a JSON cut.*\\[ERR_BAD_MANIFEST_LINE\\]`));
      expect(fs.existsSync(out)).toBe(false);
      const skip = await ojs(['lhotse-get-batch', '--cuts', file, '--cont-on-err', '--nv', out]);
      expect(skip.code, skip.stderr).toBe(0);
      expect(skip.stderr).toMatch(/skipped: .*line 7: not a JSON cut/);
      expect((await pythonTarMembers(out)).map((m) => m.name)).toEqual(corpus.cuts.slice(0, 6).map((c) => `${c.id}.wav`));
    }
  });

  it('reports a cut it cannot use by its line number', async () => {
    const bad = JSON.parse(corpus.lines[0]!) as Record<string, unknown>;
    bad.type = 'WeirdCut';
    const file = path.join(work, 'weird.jsonl');
    fs.writeFileSync(file, [corpus.lines[1], JSON.stringify(bad)].join('\n'));
    const r = await ojs(['lhotse-get-batch', '--cuts', file, '--nv', path.join(work, 'weird.tar')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('line 2: unknown cut type "WeirdCut"');
  });

  it('names the line of a cut whose provider this build lacks; --cont-on-err skips it', async () => {
    const remote = JSON.parse(corpus.lines[0]!) as { id: string; recording: { sources: { type: string; source: string }[] } };
    remote.id = 'remote';
    remote.recording.sources[0] = { ...remote.recording.sources[0]!, type: 'url', source: 'ais://bucket/a.wav' };
    const file = path.join(work, 'remote.jsonl');
    fs.writeFileSync(file, [corpus.lines[0], JSON.stringify(remote), corpus.lines[1]].join('\n'));
    const out = path.join(work, 'remote.tar');
    const r = await ojs(['lhotse-get-batch', '--cuts', file, '--nv', out]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/line 2: provider 'ais': .*\[ERR_UNSUPPORTED_PROVIDER\]/);
    const skip = await ojs(['lhotse-get-batch', '--cuts', file, '--nv', '--cont-on-err', out]);
    expect(skip.code, skip.stderr).toBe(0);
    expect((await pythonTarMembers(out)).map((m) => m.name)).toEqual([`${corpus.cuts[0]!.id}.wav`, `${corpus.cuts[1]!.id}.wav`]);
  });

  it('fails on a truncated gzip manifest and on a line over 16 MiB, naming it', async () => {
    const gz = gzipSync(plain);
    const cut = path.join(work, 'cut.jsonl.gz');
    fs.writeFileSync(cut, gz.subarray(0, gz.length - 100));
    const r = await ojs(['lhotse-get-batch', '--cuts', cut, '--nv', path.join(work, 'cut.tar')]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/cut\.jsonl\.gz.*(gzip|unexpected end)/i);

    const long = Buffer.concat([Buffer.from(corpus.lines[0]! + '\n{"id": "'), Buffer.alloc(MAX_LINE_BYTES, 'a'), Buffer.from('"}\n')]);
    const lines: number[] = [];
    await expect(
      (async () => {
        for await (const l of manifestLines(Readable.from([long]), 'long.jsonl', new AbortController().signal)) lines.push(l.line);
      })(),
    ).rejects.toThrow('long.jsonl: line 2 is longer than 16 MiB');
    expect(lines).toEqual([1]);
    expect(() => [...bufferLines(long, 'body')]).toThrow('body: line 2 is longer than 16 MiB');
  });

  it('splits lines the same however the bytes arrive (a UTF-8 character across two chunks)', async () => {
    const text = Buffer.from('{"a": "ü€😀"}\r\n\n{"b": 2}\n{"c": 3}');
    const want = [...bufferLines(text, 't')];
    for (const size of [1, 2, 3, 5, 64]) {
      const chunks: Buffer[] = [];
      for (let i = 0; i < text.length; i += size) chunks.push(text.subarray(i, i + size));
      const got = [];
      for await (const l of manifestLines(Readable.from(chunks), 't', new AbortController().signal)) got.push(l);
      expect(got).toEqual(want);
    }
    expect(want.map((l) => [l.line, l.value])).toEqual([
      [1, { a: 'ü€😀' }],
      [3, { b: 2 }],
      [4, { c: 3 }],
    ]);
  });

  it('detects compression by the first bytes, then by the name; zstd is refused clearly', () => {
    expect(detectCompression(Buffer.from([0x1f, 0x8b, 8, 0]), 'x.jsonl')).toBe('gzip');
    expect(detectCompression(Buffer.from([0x04, 0x22, 0x4d, 0x18]), 'x.gz')).toBe('lz4');
    expect(detectCompression(Buffer.from('\n  {"id"'), 'x.jsonl.gz')).toBe('none');
    expect(detectCompression(Buffer.from('garbage'), 'x.JSONL.GZ')).toBe('gzip');
    expect(() => detectCompression(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), 'x.zst')).toThrow(/zstd/);
  });
});
