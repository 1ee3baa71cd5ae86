import { describe, expect, it } from 'vitest';
import { OjsError } from '../../src/spec/errors.js';
import { formatFromFileName, parseFormat } from '../../src/spec/format.js';
import { checkRange, resolveRange } from '../../src/spec/range.js';
import { parseBatchRequest } from '../../src/spec/request.js';
import { parseSpecText } from '../../src/spec/spec-text.js';
import { expandTemplate, templateSize } from '../../src/spec/template.js';
import { normalizeProvider, parseBucketUri, parseObjectUri } from '../../src/spec/uri.js';

function err(f: () => unknown): OjsError {
  try {
    f();
  } catch (e) {
    if (e instanceof OjsError) return e;
    throw e;
  }
  throw new Error('expected an OjsError');
}

const D = { bucket: 'b', provider: 'file' };

describe('parseBatchRequest', () => {
  it('names the entry and the field in every message', () => {
    expect(err(() => parseBatchRequest({ in: [{ objname: 'a' }, { objname: 'b' }, { objname: 'c', start: 'x' }] }, D)).message).toBe('in[2].start: must be integer');
    expect(err(() => parseBatchRequest({ in: [{ objname: 'a', color: 1 }] }, D)).message).toMatch(/^in\[0\]: unknown field 'color'; accepted: objname, bucket/);
    expect(err(() => parseBatchRequest({ in: [{ objname: 'a' }], output_mime: 1 }, D)).message).toMatch(/unknown field 'output_mime'; accepted: mime, in/);
    expect(err(() => parseBatchRequest({ in: [] }, D)).message).toMatch(/names no entries/);
    expect(err(() => parseBatchRequest({}, D)).message).toMatch(/missing field 'in'/);
    expect(err(() => parseBatchRequest({ in: [{ objname: 'a/' }] }, D)).message).toBe('in[0].objname: must not end with "/"');
    expect(err(() => parseBatchRequest({ in: [{ objname: 'x/../y' }] }, D)).message).toMatch(/in\[0\]\.objname: must not contain a "\.\." path component/);
    expect(err(() => parseBatchRequest({ in: [{ objname: 'a' }] })).message).toMatch(/in\[0\]\.bucket: missing/);
    expect(err(() => parseBatchRequest({ in: [{ objname: 'a', provider: 'ftp' }] }, D)).message).toMatch(/in\[0\]\.provider: unknown provider 'ftp'/);
    expect(err(() => parseBatchRequest([1, 2])).kind).toBe('BadSpec');
  });

  it('names archive entries <bucket>/<objname>[/<archpath>], or without the bucket under onob', () => {
    const r = parseBatchRequest({ in: [{ objname: 'x/y.wav' }, { objname: 's.tar', archpath: 'a/b.wav' }, { objname: 's.tar', archpath: '/c.wav', bucket: 'o' }] }, D);
    expect(r.entries.map((e) => e.name)).toEqual(['b/x/y.wav', 'b/s.tar/a/b.wav', 'o/s.tar/c.wav']);
    const o = parseBatchRequest({ onob: true, in: [{ objname: 'x/y.wav' }] }, D);
    expect(o.entries[0]!.name).toBe('x/y.wav');
  });

  it('takes uri entries, and refuses uri together with objname/bucket/provider', () => {
    const r = parseBatchRequest({ in: [{ uri: 's3://bk/k/1.bin', start: 0, length: 100 }, { uri: 'file:///data/a.wav' }, { uri: 'hf://datasets/org/ds@v1/x.wav' }] });
    expect(r.entries.map((e) => e.location)).toEqual([
      { provider: 's3', bucket: 'bk', key: 'k/1.bin' },
      { provider: 'file', bucket: '', key: 'data/a.wav' },
      { provider: 'hf', bucket: 'datasets/org/ds@v1', key: 'x.wav' },
    ]);
    expect(r.entries.map((e) => e.name)).toEqual(['bk/k/1.bin', 'data/a.wav', 'datasets/org/ds@v1/x.wav']);
    expect(r.entries[0]!.range).toEqual({ start: 0, length: 100 });
    expect(err(() => parseBatchRequest({ in: [{ uri: 's3://b/k', objname: 'k' }] })).message).toMatch(/in\[0\]\.objname: give either 'uri' or 'objname'/);
  });

  it('accepts standard and URL-safe base64 opaque, echoing standard', () => {
    const r = parseBatchRequest({ in: [{ objname: 'a', opaque: '-_8=' }, { objname: 'b', opaque: '+/8=' }] }, D);
    expect(r.entries.map((e) => e.opaque)).toEqual(['+/8=', '+/8=']);
    expect(err(() => parseBatchRequest({ in: [{ objname: 'a', opaque: 'not base64!' }] }, D)).message).toMatch(/in\[0\]\.opaque/);
  });

  it("reads AIStore's spellings of the top-level keys, and refuses a key given twice", () => {
    const r = parseBatchRequest({ continueonerr: true, onlyobjname: true, streamingget: true, outputformat: '.tar', colocation: 1, in: [{ objname: 'a' }] }, D);
    expect([r.coer, r.onob, r.strm, r.format, r.coloc]).toEqual([true, true, true, 'tar', 1]);
    expect(err(() => parseBatchRequest({ coer: true, continueonerr: false, in: [{ objname: 'a' }] }, D)).message).toMatch(/both given/);
  });

  it('takes uname as provider and bucket', () => {
    const r = parseBatchRequest({ in: [{ objname: 'k', uname: 'aws/@#ns/bkt/' }] });
    expect(r.entries[0]!.location).toEqual({ provider: 's3', bucket: 'bkt', key: 'k' });
    expect(r.entries[0]!.providerName).toBe('aws');
  });

  it('has an unlimited soft-error cap unless max_soft_errs says otherwise', () => {
    expect(parseBatchRequest({ in: [{ objname: 'a' }] }, D).maxSoftErrors).toBe(Infinity);
    expect(parseBatchRequest({ max_soft_errs: 3, in: [{ objname: 'a' }] }, D).maxSoftErrors).toBe(3);
  });
});

describe('byte ranges', () => {
  it('follows the wire rules', () => {
    expect(checkRange(0, 0)).toBeUndefined();
    expect(checkRange(undefined, undefined)).toBeUndefined();
    expect(checkRange(5, 10)).toEqual({ start: 5, length: 10 });
    expect(checkRange(5, -1)).toEqual({ start: 5, length: -1 });
    expect(err(() => checkRange(5, 0)).kind).toBe('Range');
    expect(err(() => checkRange(-1, 5)).kind).toBe('BadSpec');
    expect(err(() => checkRange(0, -2)).kind).toBe('BadSpec');
    expect(err(() => checkRange(1.5, 2)).kind).toBe('BadSpec');
  });

  it('resolves against the size, or answers 416', () => {
    expect(resolveRange(undefined, 10)).toEqual({ offset: 0, length: 10 });
    expect(resolveRange({ start: 2, length: 3 }, 10)).toEqual({ offset: 2, length: 3 });
    expect(resolveRange({ start: 2, length: -1 }, 10)).toEqual({ offset: 2, length: 8 });
    expect(resolveRange({ start: 9, length: 1 }, 10)).toEqual({ offset: 9, length: 1 });
    for (const r of [{ start: 10, length: 1 }, { start: 9, length: 2 }, { start: 10, length: -1 }]) {
      const e = err(() => resolveRange(r, 10));
      expect(e.kind).toBe('Range');
      expect(e.httpStatus).toBe(416);
    }
  });
});

describe('formats', () => {
  it('maps mime values and extensions, gzip to tgz (not zip, as AIStore does)', () => {
    expect(['', '.tar', 'tar', 'application/x-tar'].map((v) => parseFormat(v))).toEqual(['tar', 'tar', 'tar', 'tar']);
    expect(['.tgz', '.tar.gz', 'application/gzip'].map((v) => parseFormat(v))).toEqual(['tgz', 'tgz', 'tgz']);
    expect(parseFormat('.zip')).toBe('zip');
    expect(parseFormat('.TAR.LZ4')).toBe('tar.lz4');
    expect(err(() => parseFormat('.rar')).message).toMatch(/unknown archive format '\.rar'; accepted: \.tar, \.tgz/);
    expect(['a.tar', 'a.tar.gz', 'a.tgz', 'a.zip', 'a.tar.lz4', 'a.bin', '-'].map(formatFromFileName)).toEqual(['tar', 'tgz', 'tgz', 'zip', 'tar.lz4', undefined, undefined]);
  });
});

describe('URIs', () => {
  it('parses every scheme of the mission', () => {
    expect(parseObjectUri('gs://b/k')).toEqual({ provider: 'gs', bucket: 'b', key: 'k' });
    expect(parseObjectUri('az://cont/dir/blob')).toEqual({ provider: 'az', bucket: 'cont', key: 'dir/blob' });
    expect(parseObjectUri('hf://org/model/weights.bin')).toEqual({ provider: 'hf', bucket: 'org/model', key: 'weights.bin' });
    expect(parseObjectUri('https://host:8080/a/b?x=1')).toEqual({ provider: 'https', bucket: 'host:8080', key: 'a/b?x=1' });
    expect(parseObjectUri('file:///data/x%20y.wav')).toEqual({ provider: 'file', bucket: '', key: 'data/x y.wav' });
    expect(parseBucketUri('s3://bucket')).toEqual({ provider: 's3', bucket: 'bucket', key: '' });
    expect(['aws', 'gcp', 'azure', 'oc'].map((p) => normalizeProvider(p))).toEqual(['s3', 'gs', 'az', 'oci']);
  });

  it('refuses what it cannot read', () => {
    expect(err(() => parseObjectUri('ftp://h/x')).message).toMatch(/unsupported URI scheme 'ftp:\/\/'/);
    expect(err(() => parseObjectUri('s3://b/')).message).toMatch(/must not be empty/);
    expect(err(() => parseObjectUri('s3:///k')).message).toMatch(/names no bucket/);
    expect(err(() => parseObjectUri('s3://b/a/../k')).message).toMatch(/"\.\."/);
    expect(err(() => parseObjectUri('https://user:pw@h/x')).message).toMatch(/credentials/);
    expect(err(() => parseObjectUri('hf://datasets/only')).message).toMatch(/names no repository/);
    expect(err(() => parseObjectUri('no-scheme')).kind).toBe('BadSpec');
  });
});

describe('templates', () => {
  it('expands ranges with padding, steps and lists, leftmost slowest', () => {
    const names = [...expandTemplate('p-{000..099}.bin')];
    expect(names).toHaveLength(100);
    expect(names.slice(0, 2)).toEqual(['p-000.bin', 'p-001.bin']);
    expect(names[99]).toBe('p-099.bin');
    expect([...expandTemplate('{0..10..5}')]).toEqual(['0', '5', '10']);
    expect([...expandTemplate('{a,b}-{1..2}')]).toEqual(['a-1', 'a-2', 'b-1', 'b-2']);
    expect(templateSize('x{1..3}{a,b}')).toBe(6);
  });

  it('refuses templates without a group, backwards or broken', () => {
    expect(err(() => templateSize('plain.bin')).message).toMatch(/holds no/);
    expect(err(() => templateSize('{5..1}')).message).toMatch(/backwards/);
    expect(err(() => templateSize('{1..3')).message).toMatch(/unclosed/);
    expect(err(() => templateSize('{x}')).message).toMatch(/neither a range/);
  });
});

describe('spec text', () => {
  it('reads JSON and YAML to the same request', async () => {
    const json = await parseSpecText('{"coer": true, "in": [{"objname": "a", "start": 1, "length": 2}]}');
    const yaml = await parseSpecText('coer: true\nin:\n  - objname: a\n    start: 1\n    length: 2\n');
    expect(yaml).toEqual(json);
  });

  it('says what is wrong with broken text', async () => {
    await expect(parseSpecText('{"in": [', 'b.json')).rejects.toThrow(/b\.json: invalid JSON/);
    await expect(parseSpecText('in: [a, b\n', 'b.yaml')).rejects.toThrow(/b\.yaml: invalid YAML/);
    await expect(parseSpecText('a: 1\na: 2\n', 'dup.yaml')).rejects.toThrow(/invalid YAML/);
    await expect(parseSpecText('  \n')).rejects.toThrow(/empty/);
  });
});
