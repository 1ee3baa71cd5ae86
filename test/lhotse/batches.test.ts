import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCorpus, type Corpus } from '../helpers/audio.js';
import { CLI, gnuTarList, ojs, pythonTarMembers, run, tmpDir } from '../helpers/tools.js';

let work: string;
let corpus: Corpus;
let manifest: string;

beforeAll(() => {
  work = tmpDir('ojs-ml-lhotse-batches-');
  fs.mkdirSync(path.join(work, 'audio'));
  corpus = makeCorpus(path.join(work, 'audio'), { recordings: 10, seconds: 8, rate: 8000, perRecording: 5 });
  manifest = path.join(work, 'cuts.jsonl.gz');
  fs.writeFileSync(manifest, '');
});

afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

async function writeManifest(): Promise<void> {
  const r = await run('gzip', ['-c'], { input: corpus.lines.join('\n') + '\n' });
  fs.writeFileSync(manifest, r.stdout);
}

function names(dir: string): string[] {
  return fs.readdirSync(dir).sort();
}

describe('lhotse-get-batch --batch-size N --output-template T', () => {
  it('a 10-batch run that fails in batch 5, rerun, gives all 10 archives without rewriting the first 4', async () => {
    await writeManifest();
    const out = path.join(work, 'run1');
    fs.mkdirSync(out);
    const missing = corpus.files[4]!; // the cuts of batch 5
    fs.renameSync(missing, `${missing}.away`);
    const args = ['lhotse-get-batch', '--cuts', manifest, '--batch-size', '5', '--output-template', path.join(out, 'batch-{00..99}.tar')];
    const first = await ojs(args);
    expect(first.code).toBe(1);
    expect(first.stderr).toContain('no such file');
    expect(names(out)).toEqual(['batch-00.tar', 'batch-01.tar', 'batch-02.tar', 'batch-03.tar']); // and no partial file
    const before = names(out).map((n) => fs.statSync(path.join(out, n), { bigint: true }));

    fs.renameSync(`${missing}.away`, missing);
    const second = await ojs(args);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr.match(/^Kept /gm)).toHaveLength(4);
    expect(second.stderr.match(/^Created /gm)).toHaveLength(6);
    const all = names(out);
    expect(all).toEqual(Array.from({ length: 10 }, (_, i) => `batch-${String(i).padStart(2, '0')}.tar`));
    all.slice(0, 4).forEach((n, i) => {
      const st = fs.statSync(path.join(out, n), { bigint: true });
      expect([st.ino, st.mtimeNs]).toEqual([before[i]!.ino, before[i]!.mtimeNs]);
    });
    for (let b = 0; b < 10; b++) {
      const members = await pythonTarMembers(path.join(out, all[b]!));
      expect(members.map((m) => m.name)).toEqual(corpus.cuts.slice(b * 5, b * 5 + 5).map((c) => `${c.id}.wav`));
    }
  });

  it('a run interrupted (SIGINT) after batch 4, rerun, gives all 10 archives without rewriting the first 4', async () => {
    const out = path.join(work, 'run2');
    fs.mkdirSync(out);
    const template = path.join(out, 'batch-{00..99}.tar');
    // The manifest comes on stdin, 4 batches' worth, and then nothing until the signal.
    const child = spawn(process.execPath, [CLI, 'lhotse-get-batch', '--cuts', '-', '--batch-size', '5', '--output-template', template], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.stdin.write(corpus.lines.slice(0, 22).join('\n') + '\n');
    const deadline = Date.now() + 20_000;
    while (!fs.existsSync(path.join(out, 'batch-03.tar')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGINT');
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
    expect([code, stderr]).toEqual([130, expect.stringContaining('interrupted')]);
    expect(names(out)).toEqual(['batch-00.tar', 'batch-01.tar', 'batch-02.tar', 'batch-03.tar']);
    const before = names(out).map((n) => fs.statSync(path.join(out, n), { bigint: true }).mtimeNs);

    await writeManifest();
    const r = await ojs(['lhotse-get-batch', '--cuts', manifest, '--batch-size', '5', '--output-template', template]);
    expect(r.code, r.stderr).toBe(0);
    expect(names(out)).toHaveLength(10);
    expect(names(out).slice(0, 4).map((n) => fs.statSync(path.join(out, n), { bigint: true }).mtimeNs)).toEqual(before);
    expect((await pythonTarMembers(path.join(out, 'batch-09.tar'))).map((m) => m.name)).toEqual(corpus.cuts.slice(45).map((c) => `${c.id}.wav`));
  });

  it('says "template exhausted" when the template names fewer archives than there are batches', async () => {
    await writeManifest();
    const out = path.join(work, 'short');
    fs.mkdirSync(out);
    const r = await ojs(['lhotse-get-batch', '--cuts', manifest, '--batch-size', '20', '--output-template', path.join(out, 'b-{0..1}.tar'), '--nv']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("template exhausted at batch 3: '");
    expect(r.stderr).toContain("names 2 archives and the manifest has more than 40 cuts [ERR_TEMPLATE_EXHAUSTED]");
    expect(names(out)).toEqual(['b-0.tar', 'b-1.tar']);
  });

  it("takes each archive's format from the template's extension, else from DST", async () => {
    await writeManifest();
    const out = path.join(work, 'formats');
    fs.mkdirSync(out);
    const tgz = await ojs(['lhotse-get-batch', '--cuts', manifest, '--batch-size', '25', '--output-template', path.join(out, 'g-{1..2}.tgz'), '--nv']);
    expect(tgz.code, tgz.stderr).toBe(0);
    expect((await gnuTarList(path.join(out, 'g-2.tgz'))).length).toBe(25);
    const lz4 = await ojs(['lhotse-get-batch', '--cuts', manifest, '--batch-size', '25', '--output-template', path.join(out, 'part-{1..2}'), path.join(out, 'hint.tar.lz4'), '--nv']);
    expect(lz4.code, lz4.stderr).toBe(0);
    const listed = await run('sh', ['-c', `lz4 -dc '${path.join(out, 'part-1')}' | tar tf -`]);
    expect(listed.stdout.toString().trim().split('\n')).toEqual(corpus.cuts.slice(0, 25).map((c) => `${c.id}.wav`));
    expect(fs.existsSync(path.join(out, 'hint.tar.lz4'))).toBe(false);
    const none = await ojs(['lhotse-get-batch', '--cuts', manifest, '--batch-size', '25', '--output-template', path.join(out, 'x-{1..2}'), '--nv']);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('cannot tell the archive format');
  });

  it('refuses flags that do not go together', async () => {
    for (const [args, msg] of [
      [['--batch-size', '5'], '--batch-size and --output-template go together'],
      [['--batch-size', '0', '--output-template', 'a-{1..2}.tar'], '--batch-size expects a positive integer'],
      [['--shar', work, 'x.tar'], '--shar writes its own file names'],
      [[], 'missing DST'],
    ] as const) {
      const r = await ojs(['lhotse-get-batch', '--cuts', manifest, ...args]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(msg);
    }
    const r = await ojs(['lhotse-get-batch', 'x.tar']);
    expect([r.code, r.stderr]).toEqual([2, expect.stringContaining('--cuts is required')]);
  });
});
