/** Reading TAR headers: what the shard readers (ranged and streaming) share. */

export const TAR_BLOCK = 512;

export function checksumOk(h: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < TAR_BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
  return octal(h, 148, 8) === sum;
}

export function tarSize(h: Buffer): number {
  if ((h[124]! & 0x80) !== 0) {
    let n = 0;
    for (let i = 125; i < 136; i++) n = n * 256 + h[i]!;
    return n;
  }
  return octal(h, 124, 12);
}

export function octal(h: Buffer, off: number, len: number): number {
  const s = h.toString('latin1', off, off + len).replace(/[\0 ]+$/g, '').trim();
  return s === '' ? 0 : parseInt(s, 8);
}

export function ustarName(h: Buffer): string {
  const cstr = (off: number, len: number) => {
    const end = h.indexOf(0, off);
    return h.toString('utf8', off, end < 0 || end > off + len ? off + len : end);
  };
  const name = cstr(0, 100);
  const prefix = h.toString('latin1', 257, 262) === 'ustar' ? cstr(345, 155) : '';
  return prefix === '' ? name : `${prefix}/${name}`;
}

/** One key of PAX extended-header records (`path`, `size`, ...); the last one wins, as in tar. */
export function paxValue(records: string, key: string): string | undefined {
  let rest = records;
  let path: string | undefined;
  while (rest.length > 0) {
    const sp = rest.indexOf(' ');
    const len = parseInt(rest.slice(0, sp), 10);
    if (!(len > 0)) break;
    const rec = Buffer.from(rest).subarray(0, len).toString('utf8');
    const kv = rec.slice(rec.indexOf(' ') + 1, -1);
    const eq = kv.indexOf('=');
    if (kv.slice(0, eq) === key) path = kv.slice(eq + 1);
    rest = Buffer.from(rest).subarray(len).toString('utf8');
  }
  return path;
}
