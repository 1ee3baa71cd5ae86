import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lz4FrameDecoder, xxh32 } from '../../src/archive/lz4-decode.js';
import { run, sha256, tmpDir } from '../helpers/tools.js';

let work: string;
let text: Buffer;

/** Text that compresses, with long-range repeats so linked blocks really reach into history. */
function sample(bytes: number): Buffer {
  const lines: string[] = [];
  let n = 0;
  for (let i = 0; n < bytes; i++) {
    const l = `{"id": "cut-${i % 977}-${i}", "start": ${(i * 0.37).toFixed(2)}, "duration": ${(1 + (i % 13) * 0.25).toFixed(2)}, "type": "MonoCut"}\n`;
    lines.push(l);
    n += l.length;
  }
  return Buffer.from(lines.join('')).subarray(0, bytes);
}

async function decode(input: Buffer, chunk = 7_777): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let i = 0; i < input.length; i += chunk) parts.push(input.subarray(i, i + chunk));
  const out: Buffer[] = [];
  for await (const c of Readable.from(parts).pipe(new Lz4FrameDecoder())) out.push(c as Buffer);
  return Buffer.concat(out);
}

async function lz4(args: string[], input: Buffer): Promise<Buffer> {
  const src = path.join(work, `in-${Math.random().toString(36).slice(2)}`);
  fs.writeFileSync(src, input);
  const r = await run('lz4', [...args, '-c', src]);
  if (r.code !== 0) throw new Error(r.stderr);
  return r.stdout;
}

beforeAll(() => {
  work = tmpDir('ojs-ml-lz4-');
  text = sample(3 << 20);
});
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

describe('LZ4 frame decoder', () => {
  it('matches the xxHash32 test vectors', () => {
    expect(xxh32(Buffer.alloc(0))).toBe(0x02cc5d05);
    expect(xxh32(Buffer.from('a'))).toBe(0x550d7456);
    expect(xxh32(Buffer.from('abc'))).toBe(0x32d153ff);
    expect(xxh32(Buffer.from('Nobody inspects the spammish repetition'))).toBe(0xe2293b2f);
  });

  const variants: [string, string[]][] = [
    ['defaults: 4 MiB blocks, content checksum', []],
    ['64 KiB independent blocks with block checksums', ['-B4', '-BX']],
    ['256 KiB linked blocks', ['-B5', '-BD']],
    ['1 MiB linked blocks, block checksums, content size, no content checksum', ['-B6', '-BD', '-BX', '--content-size', '--no-frame-crc']],
    ['level 9, linked 64 KiB blocks', ['-9', '-B4', '-BD']],
  ];
  for (const [what, args] of variants) {
    it(`reads the lz4 tool's frames: ${what}`, async () => {
      const z = await lz4(args, text);
      expect(sha256(await decode(z))).toBe(sha256(text));
    });
  }

  it('reads concatenated frames and skips skippable frames between them', async () => {
    const a = await lz4(['-B4', '-BD'], text.subarray(0, 1 << 20));
    const b = await lz4(['-BX'], text.subarray(1 << 20));
    const skip = Buffer.concat([Buffer.from('5a2a4d18', 'hex'), Buffer.from([5, 0, 0, 0]), Buffer.from('hello')]);
    const empty = await lz4([], Buffer.alloc(0));
    const all = Buffer.concat([skip, a, skip, empty, b, skip]);
    expect(sha256(await decode(all))).toBe(sha256(text));
    expect(sha256(await decode(all, 1))).toBe(sha256(text)); // one byte at a time: every state boundary
  });

  it('refuses a corrupt block, a bad content checksum, a truncated frame and trailing garbage', async () => {
    const z = await lz4(['-B4', '-BX'], text.subarray(0, 200_000));
    const flipped = Buffer.from(z);
    flipped[100] = flipped[100]! ^ 0x55;
    await expect(decode(flipped)).rejects.toThrow(/checksum does not match/);

    const noBlockSums = await lz4(['-B4'], text.subarray(0, 200_000));
    const tail = Buffer.from(noBlockSums);
    tail[tail.length - 1] = tail[tail.length - 1]! ^ 0x01;
    await expect(decode(tail)).rejects.toThrow(/content checksum does not match/);

    await expect(decode(z.subarray(0, z.length - 10))).rejects.toThrow(/ends inside a block/);
    await expect(decode(Buffer.concat([z, Buffer.from('garbage!')]))).rejects.toThrow(/holds no LZ4 frame/);
  });

  it('says why it cannot read legacy frames', async () => {
    const legacy = await lz4(['-l'], text.subarray(0, 1000));
    await expect(decode(legacy)).rejects.toThrow(/legacy LZ4 format/);
  });
});
