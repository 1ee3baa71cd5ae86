/**
 * POSIX tar headers: USTAR when the name fits (ASCII, <= 100 bytes, or a '/' split into a
 * 155-byte prefix and a 100-byte name), else a PAX extended header carrying the UTF-8 path.
 * Sizes from 8 GiB use the base-256 size field (GNU; read by GNU tar, Python and Go).
 */
const BLOCK = 512;
const MAX_OCTAL_SIZE = 0o77777777777; // what 11 octal digits hold: 8 GiB - 1

export const BLOCK_SIZE = BLOCK;

export interface TarHeaderFields {
  name: string;
  size: number;
  mtime: Date;
  mode: number;
  type?: '0' | 'x';
}

/** Bytes of padding after `size` bytes of data. */
export function padding(size: number): number {
  const r = size % BLOCK;
  return r === 0 ? 0 : BLOCK - r;
}

/** The header block(s) of one regular-file entry, PAX record included when needed. */
export function encodeHeaders(h: TarHeaderFields): Buffer {
  const split = ustarSplit(h.name);
  if (split !== undefined) return ustar({ ...h, name: split.name }, split.prefix);
  const records = paxRecord('path', h.name);
  const fallback = asciiFallback(h.name);
  const pax = ustar({ name: `PaxHeaders/${fallback.slice(0, 88)}`, size: records.length, mtime: h.mtime, mode: h.mode, type: 'x' }, '');
  return Buffer.concat([pax, records, Buffer.alloc(padding(records.length)), ustar({ ...h, name: fallback }, '')]);
}

function ustarSplit(name: string): { name: string; prefix: string } | undefined {
  if (!/^[\x20-\x7e]*$/.test(name)) return undefined;
  if (name.length <= 100) return { name, prefix: '' };
  // The prefix is everything up to a '/', so that prefix + '/' + name is the full path.
  for (let i = name.indexOf('/'); i >= 0 && i <= 155; i = name.indexOf('/', i + 1)) {
    if (name.length - i - 1 <= 100 && i > 0) return { name: name.slice(i + 1), prefix: name.slice(0, i) };
  }
  return undefined;
}

function asciiFallback(name: string): string {
  const ascii = name.replace(/[^\x20-\x7e]/g, '_');
  return ascii.length <= 100 ? ascii : ascii.slice(ascii.length - 100);
}

/** "<len> key=value\n", where len counts its own digits. */
function paxRecord(key: string, value: string): Buffer {
  const body = ` ${key}=${value}\n`;
  const n = Buffer.byteLength(body);
  let len = n + String(n).length;
  if (String(len).length !== String(n).length) len = n + String(len).length;
  return Buffer.from(`${len}${body}`, 'utf8');
}

/** The fields every header shares (mode 0644, uid/gid 0, ustar magic), filled in once. */
const TEMPLATE = (() => {
  const b = Buffer.alloc(BLOCK);
  octal(b, 100, 8, 0o644);
  octal(b, 108, 8, 0);
  octal(b, 116, 8, 0);
  b.write('ustar\u000000', 257, 8, 'binary');
  octal(b, 329, 8, 0);
  octal(b, 337, 8, 0);
  return b;
})();

function ustar(h: TarHeaderFields, prefix: string): Buffer {
  const b = Buffer.allocUnsafe(BLOCK);
  TEMPLATE.copy(b);
  b.write(h.name, 0, 100, 'utf8');
  if ((h.mode & 0o7777) !== 0o644) octal(b, 100, 8, h.mode & 0o7777);
  if (h.size > MAX_OCTAL_SIZE) base256(b, 124, 12, h.size);
  else octal(b, 124, 12, h.size);
  octal(b, 136, 12, Math.max(0, Math.min(MAX_OCTAL_SIZE, Math.floor(h.mtime.getTime() / 1000))));
  b.write('        ', 148, 8, 'latin1'); // the checksum is computed with its own field as spaces
  b[156] = (h.type ?? '0').charCodeAt(0);
  if (prefix !== '') b.write(prefix, 345, 155, 'utf8');
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += b[i]!;
  octal(b, 148, 7, sum);
  b[155] = 0x20;
  return b;
}

/** Zero-padded octal digits, then a NUL, filling the field. */
function octal(b: Buffer, off: number, len: number, n: number): void {
  let v = n;
  for (let i = off + len - 2; i >= off; i--) {
    b[i] = 0x30 + (v % 8);
    v = Math.floor(v / 8);
  }
  b[off + len - 1] = 0;
}

function base256(b: Buffer, off: number, len: number, n: number): void {
  let v = n;
  for (let i = off + len - 1; i > off; i--) {
    b[i] = v % 256;
    v = Math.floor(v / 256);
  }
  b[off] = 0x80;
}
