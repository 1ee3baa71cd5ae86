/**
 * Audio headers for sample-exact slicing: WAV (RIFF and RF64) and NIST SPHERE are found by
 * walking their headers, never by assuming a 44-byte header; a slice is a fresh WAV header
 * before the bytes of whole frames.
 *
 * WAV: `RIFF<size>WAVE`, then chunks `<id><u32 size><payload><pad to even>`. `fmt ` gives the
 * codec (1 PCM, 3 IEEE float, 6 A-law, 7 mu-law, 0xFFFE EXTENSIBLE with the codec in the first
 * two bytes of its sub-format GUID), channels, rate and block align; `data` holds interleaved
 * frames. Measured data offsets: 44 (Python wave, libsndfile PCM, sox PCM16), 78 (ffmpeg: a LIST
 * chunk), 80 (sox 24-bit: EXTENSIBLE + fact; libsndfile float: fact + PEAK).
 * SPHERE: `NIST_1A\n`, the header size on the second line, `key -type value` lines to
 * `end_head`; PCM (either byte order), mu-law and A-law slice, shorten and other codings do not.
 */
import { OjsError } from '../spec/errors.js';
import { computeNumSamples } from './time.js';

export const PROBE_BYTES = 4096; // first read of a header: every layout measured fits, and it is ~0.2% of a 1 s slice at 16 kHz
const MAX_CHUNKS = 256; // chunks walked before giving up on finding `data`
const MAX_SPHERE_HEADER = 1 << 20; // a SPHERE header stating more than this is not one
const WAV_MAX_DATA = 0xffffffff - 80; // a RIFF size field must hold the data and the header

const FORMAT_PCM = 1;
const FORMAT_FLOAT = 3;
const FORMAT_ALAW = 6;
const FORMAT_MULAW = 7;
const FORMAT_EXTENSIBLE = 0xfffe;
const SLICEABLE_CODECS = new Set([FORMAT_PCM, FORMAT_FLOAT, FORMAT_ALAW, FORMAT_MULAW]);

/** Where an object's frames are and how to write a WAV header for some of them. */
export interface PcmLayout {
  container: 'wav' | 'sphere';
  /** The fmt tag the output header carries (EXTENSIBLE stays EXTENSIBLE). */
  formatTag: number;
  /** The codec itself (the sub-format of an EXTENSIBLE file). */
  codec: number;
  channels: number;
  sampleRate: number;
  bitsPerSample: number;
  blockAlign: number;
  dataOffset: number;
  /** Bytes of whole frames in the data chunk, within the object. */
  dataBytes: number;
  /** EXTENSIBLE only: the 22 bytes after cbSize (valid bits, channel mask, sub-format GUID). */
  extension?: Buffer;
  /** Samples must be rewritten for WAV: SPHERE big-endian PCM (swap) or 8-bit PCM (signed). */
  convert?: 'swap' | 'sign8';
}

/** What a probe found: a layout to slice, or why the object is fetched whole. */
export type Probe = { sliceable: true; layout: PcmLayout } | { sliceable: false; why: string; container?: 'wav' | 'sphere' };

/** Reads `length` bytes at `offset` of the object (fewer only at its end). */
export type ReadAt = (offset: number, length: number) => Promise<Buffer>;

/** Probes an object of `size` bytes whose first bytes are `head`. */
export async function probeAudio(head: Buffer, size: number, read: ReadAt): Promise<Probe> {
  if (head.length >= 12 && (isId(head, 0, 'RIFF') || isId(head, 0, 'RF64')) && isId(head, 8, 'WAVE')) return probeWav(head, size, read);
  if (head.length >= 16 && head.toString('latin1', 0, 8) === 'NIST_1A\n') return probeSphere(head, size, read);
  return { sliceable: false, why: 'neither WAV nor NIST SPHERE by its first bytes' };
}

function isId(b: Buffer, at: number, id: string): boolean {
  return b.toString('latin1', at, at + 4) === id;
}

async function probeWav(head: Buffer, size: number, read: ReadAt): Promise<Probe> {
  const view = new ChunkView(head, size, read);
  let fmt: Buffer | undefined;
  let ds64DataSize: number | undefined;
  let pos = 12;
  for (let i = 0; i < MAX_CHUNKS && pos + 8 <= size; i++) {
    const h = await view.bytes(pos, 8);
    const id = h.toString('latin1', 0, 4);
    const len = h.readUInt32LE(4);
    if (id === 'data') {
      if (fmt === undefined) return { sliceable: false, container: 'wav', why: "its data chunk comes before any fmt chunk" };
      const declared = len === 0xffffffff && ds64DataSize !== undefined ? ds64DataSize : len;
      return wavLayout(fmt, pos + 8, declared, size);
    }
    if (id === 'fmt ' || id === 'ds64') {
      const payload = await view.bytes(pos + 8, Math.min(len, 64));
      if (id === 'fmt ') fmt = payload;
      else if (payload.length >= 16) ds64DataSize = Number(payload.readBigUInt64LE(8));
    }
    pos += 8 + len + (len & 1);
  }
  return { sliceable: false, container: 'wav', why: 'no data chunk found in its header' };
}

function wavLayout(fmt: Buffer, dataOffset: number, declared: number, size: number): Probe {
  if (fmt.length < 16) return { sliceable: false, container: 'wav', why: 'its fmt chunk is too short' };
  const formatTag = fmt.readUInt16LE(0);
  const channels = fmt.readUInt16LE(2);
  const sampleRate = fmt.readUInt32LE(4);
  const blockAlign = fmt.readUInt16LE(12);
  const bitsPerSample = fmt.readUInt16LE(14);
  let codec = formatTag;
  let extension: Buffer | undefined;
  if (formatTag === FORMAT_EXTENSIBLE) {
    if (fmt.length < 40) return { sliceable: false, container: 'wav', why: 'its EXTENSIBLE fmt chunk is too short' };
    codec = fmt.readUInt16LE(24);
    extension = Buffer.from(fmt.subarray(18, 40));
  }
  if (!SLICEABLE_CODECS.has(codec)) return { sliceable: false, container: 'wav', why: `its codec (WAV format 0x${codec.toString(16)}) is not PCM, float, A-law or mu-law` };
  if (channels === 0 || sampleRate === 0 || blockAlign === 0 || blockAlign < channels * Math.ceil(bitsPerSample / 8)) {
    return { sliceable: false, container: 'wav', why: `its fmt chunk is inconsistent (${channels} channels, ${sampleRate} Hz, block ${blockAlign})` };
  }
  // Streaming writers leave the size 0 or all ones; a file cut short holds less than it says.
  const inObject = Math.max(0, size - dataOffset);
  const bytes = declared === 0 || declared === 0xffffffff ? inObject : Math.min(declared, inObject);
  const layout: PcmLayout = {
    container: 'wav',
    formatTag,
    codec,
    channels,
    sampleRate,
    bitsPerSample,
    blockAlign,
    dataOffset,
    dataBytes: bytes - (bytes % blockAlign),
    extension,
    convert: undefined,
  };
  return { sliceable: true, layout };
}

async function probeSphere(head: Buffer, size: number, read: ReadAt): Promise<Probe> {
  const hdrSize = Number(head.toString('latin1', 8, 16).trim());
  if (!Number.isInteger(hdrSize) || hdrSize < 16 || hdrSize > MAX_SPHERE_HEADER || hdrSize > size) {
    return { sliceable: false, container: 'sphere', why: 'its SPHERE header size line is not valid' };
  }
  const text = (hdrSize <= head.length ? head.subarray(0, hdrSize) : await read(0, hdrSize)).toString('latin1');
  const fields = parseSphereFields(text);
  const coding = String(fields.get('sample_coding') ?? 'pcm').toLowerCase();
  const channels = Number(fields.get('channel_count') ?? 1);
  const width = Number(fields.get('sample_n_bytes') ?? (coding === 'ulaw' || coding === 'alaw' ? 1 : 2));
  const rate = Number(fields.get('sample_rate'));
  const order = String(fields.get('sample_byte_format') ?? '01');
  const count = fields.get('sample_count');
  if (!Number.isInteger(rate) || rate <= 0 || !Number.isInteger(channels) || channels <= 0) {
    return { sliceable: false, container: 'sphere', why: 'its SPHERE header has no usable sample_rate or channel_count' };
  }
  const codec = coding === 'pcm' ? FORMAT_PCM : coding === 'ulaw' || coding === 'mu-law' ? FORMAT_MULAW : coding === 'alaw' ? FORMAT_ALAW : undefined;
  if (codec === undefined) return { sliceable: false, container: 'sphere', why: `its SPHERE sample_coding is '${coding}' (shorten and other codings are fetched whole)` };
  if (codec === FORMAT_PCM ? ![1, 2, 3, 4].includes(width) : width !== 1) {
    return { sliceable: false, container: 'sphere', why: `its SPHERE sample_n_bytes (${width}) does not fit sample_coding ${coding}` };
  }
  const blockAlign = channels * width;
  const inObject = size - hdrSize;
  const declared = typeof count === 'number' ? count * blockAlign : inObject;
  const bytes = Math.min(declared, inObject);
  let convert: PcmLayout['convert'];
  if (codec === FORMAT_PCM && width === 1) convert = 'sign8';
  else if (codec === FORMAT_PCM && width > 1 && order.startsWith('10')) convert = 'swap';
  const layout: PcmLayout = {
    container: 'sphere',
    formatTag: codec,
    codec,
    channels,
    sampleRate: rate,
    bitsPerSample: width * 8,
    blockAlign,
    dataOffset: hdrSize,
    dataBytes: bytes - (bytes % blockAlign),
    convert,
  };
  return { sliceable: true, layout };
}

/** `key -i 3`, `key -r 8000.0`, `key -s2 01` lines up to `end_head`. */
function parseSphereFields(text: string): Map<string, string | number> {
  const fields = new Map<string, string | number>();
  for (const line of text.split('\n').slice(2)) {
    const t = line.trim();
    if (t === 'end_head') break;
    const m = /^(\S+)\s+-(i|r|s\d+)\s+(.*)$/.exec(t);
    if (m === null) continue;
    const [, key, type, value] = m;
    fields.set(key!, type === 'i' || type === 'r' ? Number(value) : type!.startsWith('s') ? value!.slice(0, Number(type!.slice(1))) : value!);
  }
  return fields;
}

/** The header's bytes, read on demand: one probe usually holds every chunk header. */
class ChunkView {
  constructor(
    private buf: Buffer,
    private readonly size: number,
    private readonly read: ReadAt,
  ) {}

  private at = 0;

  async bytes(offset: number, length: number): Promise<Buffer> {
    const n = Math.min(length, this.size - offset);
    if (offset >= this.at && offset + n <= this.at + this.buf.length) return this.buf.subarray(offset - this.at, offset - this.at + n);
    // A chunk header past the probe: read from there, skipping the big chunk before it.
    this.buf = await this.read(offset, Math.min(Math.max(n, PROBE_BYTES), this.size - offset));
    this.at = offset;
    if (this.buf.length < n) throw new OjsError('SizeMismatch', `audio header read returned ${this.buf.length} of ${n} bytes`);
    return this.buf.subarray(0, n);
  }
}

/** The bytes of a cut: whole frames from `frame`, `frames` of them, within the data chunk. */
export interface SliceRange {
  frame: number;
  frames: number;
  /** Offset of the first byte in the object. */
  offset: number;
  length: number;
}

/** The frames Lhotse reads for `start`/`duration` seconds (clamped to the frames that exist). */
export function sliceRange(layout: PcmLayout, start: number, duration: number): SliceRange {
  const total = layout.dataBytes / layout.blockAlign;
  const first = Math.min(computeNumSamples(start, layout.sampleRate), total);
  const frames = Math.min(computeNumSamples(duration, layout.sampleRate), total - first);
  return { frame: first, frames, offset: layout.dataOffset + first * layout.blockAlign, length: frames * layout.blockAlign };
}

/**
 * A WAV header for `dataBytes` of this layout's frames: 44 bytes for PCM; a cbSize and a fact
 * chunk for the other codecs (the RIFF spec asks it of non-PCM formats); EXTENSIBLE keeps its
 * channel mask, valid bits and sub-format. An odd data size is followed by one pad byte, which
 * the RIFF size counts (see wavPadding).
 */
export function wavHeader(layout: PcmLayout, dataBytes: number): Buffer {
  if (dataBytes > WAV_MAX_DATA) {
    throw new OjsError('Unsupported', `a slice of ${dataBytes} bytes is over what a RIFF WAV holds (4 GiB); use --audio whole`, { code: 'ERR_SLICE_TOO_BIG' });
  }
  const wav = layout.container === 'sphere' ? sphereAsWavLayout(layout) : layout;
  const extensible = wav.formatTag === FORMAT_EXTENSIBLE;
  const fmtLen = extensible ? 40 : wav.codec === FORMAT_PCM ? 16 : 18;
  const withFact = wav.codec !== FORMAT_PCM;
  const size = 12 + 8 + fmtLen + (withFact ? 12 : 0) + 8;
  const h = Buffer.alloc(size);
  h.write('RIFF', 0, 'latin1');
  h.writeUInt32LE(size - 8 + dataBytes + (dataBytes & 1), 4);
  h.write('WAVE', 8, 'latin1');
  h.write('fmt ', 12, 'latin1');
  h.writeUInt32LE(fmtLen, 16);
  h.writeUInt16LE(wav.formatTag, 20);
  h.writeUInt16LE(wav.channels, 22);
  h.writeUInt32LE(wav.sampleRate, 24);
  h.writeUInt32LE(wav.sampleRate * wav.blockAlign, 28);
  h.writeUInt16LE(wav.blockAlign, 32);
  h.writeUInt16LE(wav.bitsPerSample, 34);
  let p = 36;
  if (fmtLen > 16) {
    h.writeUInt16LE(extensible ? 22 : 0, 36);
    if (extensible) wav.extension!.copy(h, 38);
    p = 20 + fmtLen;
  }
  if (withFact) {
    h.write('fact', p, 'latin1');
    h.writeUInt32LE(4, p + 4);
    h.writeUInt32LE(Math.floor(dataBytes / wav.blockAlign), p + 8);
    p += 12;
  }
  h.write('data', p, 'latin1');
  h.writeUInt32LE(dataBytes, p + 4);
  return h;
}

/** The pad byte RIFF wants after an odd-sized data chunk. */
export function wavPadding(dataBytes: number): Buffer {
  return Buffer.alloc(dataBytes & 1);
}

/** SPHERE samples as WAV stores them: little-endian, 8-bit PCM unsigned. */
function sphereAsWavLayout(l: PcmLayout): PcmLayout {
  return { ...l, container: 'wav', formatTag: l.codec };
}
