import * as fs from 'node:fs';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkSlices, makeCorpus, makeWav, type Corpus } from '../helpers/audio.js';
import { gnuTarList, pythonTarMembers, run, tmpDir } from '../helpers/tools.js';
import { fdsUnder, json, listen, request, waitFor, type TestServer } from '../server/helpers.js';

let work: string;
let corpus: Corpus;
let server: TestServer;
let secured: TestServer;
const URL_PATH = '/v1/lhotse/batch';

beforeAll(async () => {
  work = tmpDir('ojs-ml-lhotse-serve-');
  const audio = path.join(work, 'corpus');
  fs.mkdirSync(audio);
  corpus = makeCorpus(audio, { recordings: 3, seconds: 6, rate: 16000, perRecording: 4 });
  fs.writeFileSync(path.join(audio, 'cuts.jsonl.gz'), gzipSync(corpus.lines.join('\n') + '\n'));
  const lz4 = await run('lz4', ['-c', '-q'], { input: corpus.lines.join('\n') + '\n' });
  fs.writeFileSync(path.join(audio, 'cuts.jsonl.lz4'), lz4.stdout);
  fs.writeFileSync(path.join(work, 'outside.wav'), fs.readFileSync(corpus.files[0]!));
  server = await listen({ sources: { file: { roots: { corpus: audio } } } });
  secured = await listen({ sources: { file: { roots: { corpus: audio } } }, tokens: ['s3cret'] });
});

afterAll(async () => {
  await server.close();
  await secured.close();
  fs.rmSync(work, { recursive: true, force: true });
});

function save(name: string, body: Buffer): string {
  const file = path.join(work, name);
  fs.writeFileSync(file, body);
  return file;
}

const cases = (from: number, to: number) => corpus.cuts.slice(from, to).map((c) => ({ member: `${c.id}.wav`, source: c.file, start: c.start, duration: c.duration }));

describe('POST /v1/lhotse/batch', () => {
  it('streams the slices of a JSONL body of cuts, in order, with the batch trailers', async () => {
    const r = await request(`${server.url}${URL_PATH}`, { method: 'POST', body: corpus.lines.join('\n') });
    expect(r.status, r.body.toString()).toBe(200);
    expect(r.complete).toBe(true);
    expect(r.headers['content-type']).toBe('application/x-tar');
    expect(r.headers['x-ojs-lhotse-cuts']).toBe(String(corpus.cuts.length));
    expect(r.trailers['x-ojs-batch-entries']).toBe(String(corpus.cuts.length));
    const tar = save('body.tar', r.body);
    expect((await pythonTarMembers(tar)).map((m) => m.name)).toEqual(corpus.cuts.map((c) => `${c.id}.wav`));
    await checkSlices(tar, cases(0, corpus.cuts.length), false);
  });

  it('reads a line range of a manifest it can reach (gzip, LZ4), in any format', async () => {
    for (const name of ['cuts.jsonl.gz', 'cuts.jsonl.lz4']) {
      const manifest = encodeURIComponent(`file://${path.join(work, 'corpus', name)}`);
      const r = await request(`${server.url}${URL_PATH}?manifest=${manifest}&lines=3-7&format=.tgz`, { method: 'POST' });
      expect(r.status, r.body.toString()).toBe(200);
      expect(r.headers['content-type']).toBe('application/gzip');
      const tgz = save(`range-${name}.tgz`, r.body);
      expect(await gnuTarList(tgz)).toEqual(corpus.cuts.slice(2, 7).map((c) => `${c.id}.wav`));
      await checkSlices(tgz, cases(2, 7), false);
    }
  });

  it('answers multipart metadata with each cut id as the opaque (strm=false), and whole objects with audio=whole', async () => {
    const r = await request(`${server.url}${URL_PATH}?strm=false&audio=whole`, { method: 'POST', body: corpus.lines.slice(0, 2).join('\n') });
    expect(r.status, r.body.toString()).toBe(200);
    expect(r.headers['content-type']).toMatch(/^multipart\/mixed; boundary=/);
    const meta = /\{"uuid":.*?\]\}/.exec(r.body.toString('latin1'));
    const out = (JSON.parse(meta![0]) as { out: { opaque: string; size: number }[] }).out;
    expect(out.map((o) => Buffer.from(o.opaque, 'base64').toString())).toEqual(corpus.cuts.slice(0, 2).map((c) => c.id));
    expect(out.map((o) => o.size)).toEqual([fs.statSync(corpus.files[0]!).size, fs.statSync(corpus.files[0]!).size]);
  });

  it('reads no file outside its roots; bad lines are 400 with their number, or skipped and listed with coer', async () => {
    const outside = JSON.parse(corpus.lines[0]!) as { recording: { sources: { source: string }[] } };
    outside.recording.sources[0]!.source = path.join(work, 'outside.wav');
    const body = [corpus.lines[0], JSON.stringify(outside), '{"broken', corpus.lines[1]].join('\n');
    const refused = await request(`${server.url}${URL_PATH}`, { method: 'POST', body: [corpus.lines[0], JSON.stringify(outside)].join('\n') });
    expect(refused.status).toBe(403);
    expect(json(refused).error.message).toContain("line 2: ");
    expect(json(refused).error.message).toContain("outside this server's file roots");
    const bad = await request(`${server.url}${URL_PATH}`, { method: 'POST', body: [corpus.lines[0], '{"broken'].join('\n') });
    expect([bad.status, json(bad).error.code]).toEqual([400, 'ERR_BAD_MANIFEST_LINE']);
    expect(json(bad).error.message).toContain('request body: line 2: not a JSON cut');
    const skipped = await request(`${server.url}${URL_PATH}?coer=true`, { method: 'POST', body });
    expect(skipped.status).toBe(200);
    expect(skipped.headers['x-ojs-lhotse-skipped-lines']).toBe('2,3');
    expect((await pythonTarMembers(save('skipped.tar', skipped.body))).map((m) => m.name)).toEqual([`${corpus.cuts[0]!.id}.wav`, `${corpus.cuts[1]!.id}.wav`]);
    const abs = await request(`${server.url}${URL_PATH}?manifest=${encodeURIComponent(`file://${work}/x.jsonl`)}`, { method: 'POST' });
    expect(abs.status).toBe(403);
    const both = await request(`${server.url}${URL_PATH}?manifest=s3://b/k`, { method: 'POST', body: corpus.lines[0] });
    expect(both.status).toBe(400);
    const range = await request(`${server.url}${URL_PATH}?manifest=s3://b/k&lines=5-2`, { method: 'POST' });
    expect([range.status, json(range).error.message]).toEqual([400, "lines: '5-2' is not A, A-B or A- (1-based, A <= B)"]);
  });

  it('refuses a provider the server turned off (403), naming the line', async () => {
    const remote = JSON.parse(corpus.lines[0]!) as { recording: { sources: { type: string; source: string }[] } };
    remote.recording.sources[0] = { ...remote.recording.sources[0]!, type: 'url', source: 'https://example.com/a.wav' };
    const r = await request(`${server.url}${URL_PATH}`, { method: 'POST', body: [corpus.lines[0], JSON.stringify(remote)].join('\n') });
    expect([r.status, json(r).error.code]).toEqual([403, 'ERR_PROVIDER_DISABLED']);
    expect(json(r).error.message).toContain("provider 'https' is disabled on this server");
  });

  it('a client that goes away mid-archive leaves no file open', async () => {
    const big = path.join(work, 'corpus', 'big.wav');
    fs.writeFileSync(big, makeWav({ layout: 'pcm16', channels: 2, rate: 48000, frames: 48000 * 20, seed: 9 }));
    const cut = JSON.parse(corpus.lines[0]!) as Record<string, unknown> & { recording: { sources: { source: string }[] } };
    cut.recording.sources[0]!.source = big;
    const lines = Array.from({ length: 8 }, (_, i) => JSON.stringify({ ...cut, id: `big-${i}`, start: i, duration: 10 }));
    for (let k = 0; k < 3; k++) {
      const r = await request(`${server.url}${URL_PATH}`, { method: 'POST', body: lines.join('\n'), abortAfter: 200_000 });
      expect(r.complete).toBe(false);
    }
    await waitFor(() => fdsUnder(path.join(work, 'corpus')).length === 0, 5000, 'the server to close every file');
    await waitFor(() => server.app.ojs.batches.size === 0, 5000, 'no batch in flight');
  });

  it("keeps the app's authentication", async () => {
    const r = await request(`${secured.url}${URL_PATH}`, { method: 'POST', body: corpus.lines[0] });
    expect(r.status).toBe(401);
    const ok = await request(`${secured.url}${URL_PATH}`, { method: 'POST', body: corpus.lines[0], headers: { authorization: 'Bearer s3cret' } });
    expect(ok.status).toBe(200);
  });
});
