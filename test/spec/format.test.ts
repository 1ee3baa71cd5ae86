import { describe, expect, it } from 'vitest';
import { err } from '../helpers/errors.js';
import { ACCEPTED_FORMAT_VALUES, ARCHIVE_FORMATS, CONTENT_TYPES, formatExtension, formatFromFileName, parseFormat } from '../../src/spec/format.js';

describe('parseFormat', () => {
  it('reads an absent or empty mime as TAR, as AIStore does', () => {
    expect(parseFormat(undefined)).toBe('tar');
    expect(parseFormat('')).toBe('tar');
    expect(parseFormat('   ')).toBe('tar');
  });

  it('maps extensions, bare names and media types', () => {
    const cases: [string, string][] = [
      ['.tar', 'tar'],
      ['tar', 'tar'],
      ['TAR', 'tar'],
      [' .tar ', 'tar'],
      ['application/x-tar', 'tar'],
      ['.tgz', 'tgz'],
      ['tgz', 'tgz'],
      ['.tar.gz', 'tgz'],
      ['tar.gz', 'tgz'],
      ['application/x-gzip', 'tgz'],
      ['application/x-compressed-tar', 'tgz'],
      ['.zip', 'zip'],
      ['zip', 'zip'],
      ['application/zip', 'zip'],
      ['application/x-zip-compressed', 'zip'],
      ['.tar.lz4', 'tar.lz4'],
      ['.TAR.LZ4', 'tar.lz4'],
      ['application/x-lz4', 'tar.lz4'],
    ];
    for (const [value, want] of cases) expect(parseFormat(value), value).toBe(want);
  });

  it("maps application/gzip to tgz (AIStore maps it to zip; we don't)", () => {
    expect(parseFormat('application/gzip')).toBe('tgz');
    expect(parseFormat('Application/GZIP')).toBe('tgz');
  });

  it('refuses an unknown value, listing every accepted one', () => {
    for (const v of ['.rar', 'gzip', '.gz', 'application/x-bzip2', '.tar.zst', 'tar.', '..tar']) {
      const e = err(() => parseFormat(v));
      expect(e.kind, v).toBe('BadSpec');
      expect(e.code).toBe('ERR_BAD_SPEC');
      expect(e.message, v).toBe(`mime: unknown archive format '${v}'; accepted: ${ACCEPTED_FORMAT_VALUES.join(', ')}`);
    }
    expect(err(() => parseFormat('.7z', '--format')).message).toMatch(/^--format: unknown archive format '\.7z'; accepted: \.tar, \.tgz, \.tar\.gz, \.zip, \.tar\.lz4, /);
  });

  it('accepts every value it lists as accepted, and reads its own content types back', () => {
    for (const v of ACCEPTED_FORMAT_VALUES) expect(ARCHIVE_FORMATS, v).toContain(parseFormat(v));
    for (const f of ARCHIVE_FORMATS) {
      expect(parseFormat(CONTENT_TYPES[f]), f).toBe(f);
      expect(parseFormat(formatExtension(f)), f).toBe(f);
    }
  });
});

describe('formatFromFileName', () => {
  it('reads the format from a file name', () => {
    const cases: [string, string | undefined][] = [
      ['a.tar', 'tar'],
      ['out/batch-001.tar', 'tar'],
      ['a.tar.gz', 'tgz'],
      ['A.TAR.GZ', 'tgz'],
      ['a.tgz', 'tgz'],
      ['a.zip', 'zip'],
      ['a.tar.lz4', 'tar.lz4'],
      ['a.bin', undefined],
      ['a.gz', undefined],
      ['a.lz4', undefined],
      ['a.tar/b.bin', undefined],
      ['tar', undefined],
      ['-', undefined],
      ['', undefined],
    ];
    for (const [name, want] of cases) expect(formatFromFileName(name), name).toBe(want);
  });

  it('agrees with the extension of every format', () => {
    for (const f of ARCHIVE_FORMATS) expect(formatFromFileName(`x${formatExtension(f)}`)).toBe(f);
  });
});
