/**
 * Buffered GetBatch (strm: false): multipart/mixed as AIStore's Go target writes it, parsed by
 * two independent parsers (Python's email package, undici's form-data parser), byte-exact; the
 * spool spills to a temporary file past its memory bound and leaves nothing behind.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run, sha256, tmpDir, writeTree } from '../helpers/tools.js';
import { fdsUnder, json, listen, request, waitFor, type RawResponse, type TestServer } from './helpers.js';

let work: string;
let spoolDir: string;
let files: Record<string, Buffer>;
let server: TestServer;

beforeAll(async () => {
  work = tmpDir('ojs-ml-server-mp-');
  spoolDir = path.join(work, 'spool');
  fs.mkdirSync(spoolDir);
  files = writeTree(path.join(work, 'data'), {
    'a.bin': randomBytes(5000),
    'b/c.bin': randomBytes(300_000),
    'crlf.bin': Buffer.from('\r\n--\r\n\r\n--x\r'.repeat(100)),
  });
  // A small memory bound, so that a batch of a few hundred KiB spills to a file.
  server = await listen({ sources: { file: { roots: { d: path.join(work, 'data') } } }, spool: { memoryBytes: 64 << 10, dir: spoolDir } });
});
afterAll(async () => {
  await server.close();
  fs.rmSync(work, { recursive: true, force: true });
});

interface Part {
  disposition: string;
  type: string;
  name: string;
  filename: string | null;
  body_hex: string;
}

/** Python's email parser, given the response's Content-Type and body, as any MIME reader would. */
async function pythonParts(r: RawResponse): Promise<Part[]> {
  const script = `import sys, json, email
from email import policy
ct = sys.argv[1].encode()
msg = email.message_from_bytes(b"Content-Type: " + ct + b"\\r\\nMIME-Version: 1.0\\r\\n\\r\\n" + sys.stdin.buffer.read(), policy=policy.HTTP)
assert msg.is_multipart() and msg.get_content_subtype() == "mixed", msg.get_content_type()
assert not msg.defects, msg.defects
out = []
for p in msg.iter_parts():
    out.append({"disposition": str(p["Content-Disposition"]), "type": p.get_content_type(),
                "name": p.get_param("name", header="content-disposition"), "filename": p.get_filename(),
                "body_hex": p.get_payload(decode=True).hex()})
print(json.dumps(out))`;
  const res = await run('python3', ['-c', script, String(r.headers['content-type'])], { input: r.body });
  expect(res.code, res.stderr).toBe(0);
  return JSON.parse(res.stdout.toString('utf8')) as Part[];
}

async function tarMembers(archive: Buffer): Promise<[string, string][]> {
  const script = `import sys, io, tarfile, hashlib, json
with tarfile.open(fileobj=io.BytesIO(sys.stdin.buffer.read()), mode="r:") as t:
    print(json.dumps([[m.name, hashlib.sha256(t.extractfile(m).read()).hexdigest()] for m in t]))`;
  const res = await run('python3', ['-c', script], { input: archive });
  expect(res.code, res.stderr).toBe(0);
  return JSON.parse(res.stdout.toString('utf8')) as [string, string][];
}

const entries = [{ objname: 'b/c.bin' }, { objname: 'missing.bin', opaque: 'aGk=' }, { objname: 'crlf.bin' }, { objname: 'a.bin', start: 100, length: 50 }];

describe('multipart GetBatch (strm: false)', () => {
  it('metadata first (one out row per entry, in order, __404__ rows with err_msg), then the archive; framing as Go writes it', async () => {
    const spills = fs.readdirSync(spoolDir).length;
    const r = await request(`${server.url}/v1/ml/moss/d`, { body: { in: entries, coer: true } });
    expect(r.status).toBe(200);
    expect(r.complete).toBe(true);
    const ct = String(r.headers['content-type']);
    const boundary = /^multipart\/mixed; boundary=([0-9a-f]{60})$/.exec(ct)?.[1];
    expect(boundary).toBeDefined();
    expect(Number(r.headers['content-length'])).toBe(r.body.length);
    // Go's mime/multipart: first delimiter without a leading CRLF, header keys sorted, CRLFs.
    const first = `--${boundary}\r\nContent-Disposition: form-data; name="metadata"\r\n\r\n{"uuid":`;
    expect(r.body.subarray(0, first.length).toString('latin1')).toBe(first);
    expect(r.body.subarray(-(boundary!.length + 8)).toString('latin1')).toBe(`\r\n--${boundary}--\r\n`);

    const parts = await pythonParts(r);
    expect(parts.map((p) => [p.name, p.type])).toEqual([
      ['metadata', 'text/plain'],
      ['archive', 'application/octet-stream'],
    ]);
    const meta = JSON.parse(Buffer.from(parts[0]!.body_hex, 'hex').toString('utf8')) as { uuid: string; out: Record<string, unknown>[] };
    expect(parts[1]!.filename).toBe(`${meta.uuid}.tar`);
    expect(meta.out).toEqual([
      { objname: 'b/c.bin', bucket: 'd', provider: 'file', size: 300_000 },
      { objname: 'missing.bin', bucket: 'd', provider: 'file', err_msg: expect.stringContaining('no such file') as unknown, opaque: 'aGk=', size: 0 },
      { objname: 'crlf.bin', bucket: 'd', provider: 'file', size: files['crlf.bin']!.length },
      { objname: 'a.bin', bucket: 'd', provider: 'file', size: 50 },
    ]);
    const archive = Buffer.from(parts[1]!.body_hex, 'hex');
    expect(await tarMembers(archive)).toEqual([
      ['d/b/c.bin', sha256(files['b/c.bin']!)],
      ['__404__/d/missing.bin', sha256(Buffer.alloc(0))],
      ['d/crlf.bin', sha256(files['crlf.bin']!)],
      ['d/a.bin', sha256(files['a.bin']!.subarray(100, 150))],
    ]);

    // undici's form-data parser reads the same bytes (it takes the same framing as form-data).
    const form = await new Response(r.body, { headers: { 'content-type': ct.replace('multipart/mixed', 'multipart/form-data') } }).formData();
    expect(JSON.parse(form.get('metadata') as string)).toEqual(meta);
    const file = form.get('archive') as File;
    expect(Buffer.from(await file.arrayBuffer()).equals(archive)).toBe(true);
    // The archive outgrew 64 KiB: it went through a temporary file, unlinked at once and closed
    // (so freed) once sent.
    expect(fs.readdirSync(spoolDir).length).toBe(spills);
    await waitFor(() => fdsUnder(spoolDir).length === 0, 2000, 'the spool file to be closed');
    expect(await server.app.ojs.metrics.spills.get()).toMatchObject({ values: [{ value: 1 }] });
  });

  it('a small batch stays in memory; every format works', async () => {
    for (const mime of ['.tar', '.tgz', '.zip', '.tar.lz4']) {
      const r = await request(`${server.url}/v1/ml/moss/d`, { method: 'POST', body: { in: [{ objname: 'a.bin' }], mime } });
      expect(r.status).toBe(200);
      const parts = await pythonParts(r);
      expect(parts.map((p) => p.name)).toEqual(['metadata', 'archive']);
      expect(parts[1]!.filename).toMatch(new RegExp(`${mime.replace('.', '\\.')}$`));
    }
    expect(await server.app.ojs.metrics.spills.get()).toMatchObject({ values: [{ value: 1 }] });
  });

  it('a batch that fails is a status and a JSON error, and its spool file is gone', async () => {
    const r = await request(`${server.url}/v1/ml/moss/d`, { body: { in: [{ objname: 'b/c.bin' }, { objname: 'missing.bin' }] } });
    expect(r.status).toBe(404);
    expect(json(r).error.code).toBe('ERR_NOT_FOUND');
    expect(fs.readdirSync(spoolDir)).toEqual([]);
    await waitFor(() => fdsUnder(spoolDir).length === 0, 2000, 'the spool file to be closed');
  });
});
