import { OjsError } from './errors.js';

/** Output (and shard) archive formats, by their canonical extension. */
export type ArchiveFormat = 'tar' | 'tgz' | 'zip' | 'tar.lz4';

export const ARCHIVE_FORMATS: readonly ArchiveFormat[] = ['tar', 'tgz', 'zip', 'tar.lz4'];

/** Values accepted in `mime`, a format flag, or as a file extension, in the order we list them. */
export const ACCEPTED_FORMAT_VALUES = [
  '.tar',
  '.tgz',
  '.tar.gz',
  '.zip',
  '.tar.lz4',
  'application/x-tar',
  'application/gzip',
  'application/x-gzip',
  'application/x-compressed-tar',
  'application/zip',
  'application/x-lz4',
] as const;

const BY_VALUE: Record<string, ArchiveFormat> = {
  tar: 'tar',
  tgz: 'tgz',
  'tar.gz': 'tgz',
  zip: 'zip',
  'tar.lz4': 'tar.lz4',
  'application/x-tar': 'tar',
  // AIStore maps anything containing "zip" to zip, so `application/gzip` becomes zip there; a gzip
  // media type names a gzipped tar here.
  'application/gzip': 'tgz',
  'application/x-gzip': 'tgz',
  'application/x-compressed-tar': 'tgz',
  'application/zip': 'zip',
  'application/x-zip-compressed': 'zip',
  'application/x-lz4': 'tar.lz4',
};

export const CONTENT_TYPES: Record<ArchiveFormat, string> = {
  tar: 'application/x-tar',
  tgz: 'application/gzip',
  zip: 'application/zip',
  'tar.lz4': 'application/x-lz4',
};

/** `mime` as sent by clients; empty means TAR, as in AIStore. */
export function parseFormat(value: string | undefined, what = 'mime'): ArchiveFormat {
  if (value === undefined || value.trim() === '') return 'tar';
  const v = value.trim().toLowerCase().replace(/^\./, '');
  const f = BY_VALUE[v];
  if (f === undefined) {
    throw new OjsError('BadSpec', `${what}: unknown archive format '${value}'; accepted: ${ACCEPTED_FORMAT_VALUES.join(', ')}`, {
      context: { field: what },
    });
  }
  return f;
}

/** The format a file name asks for by its extension, or undefined when it names none we know. */
export function formatFromFileName(name: string): ArchiveFormat | undefined {
  const lower = name.toLowerCase();
  if (lower.endsWith('.tar.gz') || lower.endsWith('.tgz')) return 'tgz';
  if (lower.endsWith('.tar.lz4')) return 'tar.lz4';
  if (lower.endsWith('.tar')) return 'tar';
  if (lower.endsWith('.zip')) return 'zip';
  return undefined;
}

export function formatExtension(f: ArchiveFormat): string {
  return `.${f}`;
}
