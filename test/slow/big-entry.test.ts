/**
 * One entry over 4 GiB (zip64 sizes and offsets; TAR size fields near their limit), through the
 * CLI, read back by unzip, GNU tar and Python. Slow (writes ~8.5 GiB): `npm run test:slow`.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ojs, run, sha256, tmpDir } from '../helpers/tools.js';

const SIZE = 4 * 2 ** 30 + 3 * 2 ** 20 + 7; // past 0xFFFFFFFF, and not a multiple of 512
const EDGE = 4096; // random bytes at both ends of the (otherwise sparse) file

let dir: string;
let head: Buffer;
let tail: Buffer;

beforeAll(() => {
  dir = tmpDir();
  fs.mkdirSync(path.join(dir, 'data'));
  const fd = fs.openSync(path.join(dir, 'data/big.bin'), 'w');
  head = randomBytes(EDGE);
  tail = randomBytes(EDGE);
  fs.writeSync(fd, head, 0, EDGE, 0);
  fs.writeSync(fd, tail, 0, EDGE, SIZE - EDGE);
  fs.closeSync(fd);
  fs.writeFileSync(path.join(dir, 'data/after.txt'), 'the entry after the big one\n');
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

// Python reads the member's first and last EDGE bytes by seeking, and the entry after it whole.
const PY = `import sys, zipfile, tarfile, hashlib, json
path, kind, edge = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == 'zip':
    z = zipfile.ZipFile(path)
    info = z.getinfo('data/big.bin'); size = info.file_size
    f = z.open(info); after = z.read('data/after.txt'); names = z.namelist()
else:
    t = tarfile.open(path)
    m = t.getmember('data/big.bin'); size = m.size
    f = t.extractfile(m); after = t.extractfile('data/after.txt').read(); names = t.getnames()
first = f.read(edge); f.seek(size - edge); last = f.read(edge)
print(json.dumps({'size': size, 'names': names, 'head': hashlib.sha256(first).hexdigest(), 'tail': hashlib.sha256(last).hexdigest(), 'after': after.decode()}))`;

describe('an entry over 4 GiB', () => {
  for (const format of ['zip', 'tar']) {
    it(`.${format}: sizes and offsets past 32 bits, read back by the real tools`, async () => {
      const out = path.join(dir, `big.${format}`);
      const r = await ojs(['get-batch', 'data', '--root', `data=${path.join(dir, 'data')}`, '--list', 'big.bin,after.txt', '--nv', out]);
      expect(r.code, r.stderr).toBe(0);
      const tool = format === 'zip' ? await run('unzip', ['-tq', out]) : await run('tar', ['tvf', out]);
      expect(tool.code, tool.stderr).toBe(0);
      if (format === 'tar') expect(tool.stdout.toString()).toContain(String(SIZE));
      const py = await run('python3', ['-c', PY, out, format, String(EDGE)]);
      expect(py.code, py.stderr).toBe(0);
      expect(JSON.parse(py.stdout.toString())).toEqual({
        size: SIZE,
        names: ['data/big.bin', 'data/after.txt'],
        head: sha256(head),
        tail: sha256(tail),
        after: 'the entry after the big one\n',
      });
      fs.rmSync(out);
    }, 600_000);
  }
});
