import { describe, expect, it } from 'vitest';
import { err } from '../helpers/errors.js';
import { BatchEntry, applyKeyAliases, normalizeOpaque, outRow, missingName, parseBatchRequest, type RequestDefaults } from '../../src/spec/request.js';

const D: RequestDefaults = { bucket: 'b', provider: 'file' };
const ENTRY_FIELDS = 'objname, bucket, provider, uname, archpath, opaque, start, length, uri';
const REQUEST_FIELDS = 'mime, in, coer, onob, strm, coloc, max_soft_errs';
const parse = (raw: unknown, d: RequestDefaults = D) => parseBatchRequest(raw, d);

describe('parseBatchRequest: messages name the entry and the field', () => {
  it('names the entry index and the field of a wrong type', () => {
    const e = err(() => parse({ in: [{ objname: 'a' }, { objname: 'b' }, { objname: 'c', start: 'x' }] }));
    expect(e.message).toBe('in[2].start: must be integer');
    expect(e.kind).toBe('BadSpec');
    expect(e.code).toBe('ERR_BAD_SPEC');
    expect(e.httpStatus).toBe(400);
    expect(e.context.field).toBe('in[2].start');
    expect(err(() => parse({ in: [{ objname: 'a' }, { objname: 'b', length: 1.5 }] })).message).toBe('in[1].length: must be integer');
    expect(err(() => parse({ in: [{ objname: 7 }] })).message).toBe('in[0].objname: must be string');
    expect(err(() => parse({ in: [{ objname: 'a' }], coer: 'yes' })).message).toBe('coer: must be boolean');
    expect(err(() => parse({ in: [{ objname: 'a' }], coloc: 3 })).message).toMatch(/^coloc: /);
    expect(err(() => parse({ in: { objname: 'a' } })).message).toBe('in: must be array');
    expect(err(() => parse({ in: ['a'] })).message).toBe('in[0]: must be object');
  });

  it('rejects an unknown field in an entry, listing the accepted ones', () => {
    const e = err(() => parse({ in: [{ objname: 'a' }, { objname: 'b', color: 1 }] }));
    expect(e.message).toBe(`in[1]: unknown field 'color'; accepted: ${ENTRY_FIELDS}`);
    expect(e.context.field).toBe('in[1]');
  });

  it('rejects an unknown top-level field, listing the accepted ones', () => {
    expect(err(() => parse({ in: [{ objname: 'a' }], output_mime: 1 })).message).toBe(`unknown field 'output_mime'; accepted: ${REQUEST_FIELDS}`);
  });

  it('rejects an empty or missing list of entries', () => {
    const empty = err(() => parse({ in: [] }));
    expect(empty.message).toBe('in: the batch names no entries (need at least one)');
    expect(empty.kind).toBe('BadSpec');
    expect(err(() => parse({})).message).toMatch(/^missing field 'in'/);
    expect(err(() => parse({ mime: '.tar' })).message).toMatch(/^missing field 'in'/);
  });

  it('rejects a request that is not an object', () => {
    for (const raw of [null, undefined, [1, 2], 'in', 5]) {
      const e = err(() => parse(raw));
      expect(e.kind).toBe('BadSpec');
      expect(e.message).toMatch(/JSON\/YAML object with an "in" list/);
    }
  });

  it('needs a bucket: from the entry, uname, uri or the defaults', () => {
    const e = err(() => parse({ in: [{ objname: 'a' }, { objname: 'x.bin' }] }, {}));
    expect(e.message).toBe("in[0].bucket: missing for object 'a' (give bucket, uname or uri, or a default bucket)");
    expect(e.context).toEqual({ entry: 0, field: 'bucket' });
    expect(err(() => parse({ in: [{ objname: 'a', bucket: '' }] }, {})).message).toMatch(/^in\[0\]\.bucket: missing/);
    expect(parse({ in: [{ objname: 'a', bucket: 'mine' }] }, {}).entries[0]!.location).toEqual({ provider: 'ais', bucket: 'mine', key: 'a' });
    expect(parse({ in: [{ objname: 'a' }] }, { bucket: 'dflt' }).entries[0]!.location).toEqual({ provider: 'ais', bucket: 'dflt', key: 'a' });
    expect(parse({ in: [{ objname: 'a', bucket: 'own' }] }).entries[0]!.location).toEqual({ provider: 'file', bucket: 'own', key: 'a' });
  });

  it('needs objname or uri', () => {
    expect(err(() => parse({ in: [{ objname: 'a' }, { bucket: 'b' }] })).message).toBe("in[1].objname: required (or give 'uri')");
  });

  it('applies the object-name rules to objname and archpath', () => {
    expect(err(() => parse({ in: [{ objname: 'a/' }] })).message).toBe('in[0].objname: must not end with "/"');
    expect(err(() => parse({ in: [{ objname: 'ok' }, { objname: 'x/../y' }] })).message).toBe('in[1].objname: must not contain a ".." path component');
    expect(err(() => parse({ in: [{ objname: '' }] })).message).toBe('in[0].objname: must not be empty');
    expect(err(() => parse({ in: [{ objname: 's.tar', archpath: '../x' }] })).message).toBe('in[0].archpath: must not contain a ".." path component');
    expect(err(() => parse({ in: [{ objname: 's.tar', archpath: 'dir/' }] })).message).toBe('in[0].archpath: must not end with "/"');
  });

  it('names an unknown provider with the accepted ones', () => {
    const e = err(() => parse({ in: [{ objname: 'a', provider: 'ftp' }] }));
    expect(e.message).toMatch(/^in\[0\]\.provider: unknown provider 'ftp'; accepted: ais, aws, s3, gcp, gs, azure, az, oci, oc, hf, http, https, file$/);
  });
});

describe('parseBatchRequest: entries', () => {
  it('maps provider aliases, keeping the name the client used for the response', () => {
    const r = parse({ in: [{ objname: 'k', provider: 'aws' }, { objname: 'k', provider: 'gcp' }, { objname: 'k', provider: 'azure' }, { objname: 'k', provider: 'S3' }] });
    expect(r.entries.map((e) => e.location.provider)).toEqual(['s3', 'gs', 'az', 's3']);
    expect(r.entries.map((e) => e.providerName)).toEqual(['aws', 'gcp', 'azure', 'S3']);
  });

  it('takes uname as provider and bucket', () => {
    const r = parse({ in: [{ objname: 'k', uname: 'aws/@#ns/bkt/' }] }, {});
    expect(r.entries[0]!.location).toEqual({ provider: 's3', bucket: 'bkt', key: 'k' });
    expect(r.entries[0]!.providerName).toBe('aws');
    expect(err(() => parse({ in: [{ objname: 'k', uname: 'aws/bkt' }] })).message).toMatch(/^in\[0\]\.uname: 'aws\/bkt' is not of the form/);
  });

  it('names archive entries <bucket>/<objname>[/<archpath>]', () => {
    const r = parse({
      in: [
        { objname: 'x/y.wav' },
        { objname: 's.tar', archpath: 'a/b.wav' },
        { objname: 's.tar', archpath: '/c.wav', bucket: 'o' },
        { objname: 'z.bin', archpath: '' },
      ],
    });
    expect(r.entries.map((e) => e.name)).toEqual(['b/x/y.wav', 'b/s.tar/a/b.wav', 'o/s.tar/c.wav', 'b/z.bin']);
    expect(r.entries.map((e) => e.archpath)).toEqual([undefined, 'a/b.wav', '/c.wav', undefined]);
    expect(r.entries.map((e) => e.index)).toEqual([0, 1, 2, 3]);
  });

  it('names archive entries <objname>[/<archpath>] under onob', () => {
    const r = parse({ onob: true, in: [{ objname: 'x/y.wav' }, { objname: 's.tar', archpath: 'm.wav', bucket: 'other' }, { uri: 's3://bk/k.bin' }] });
    expect(r.onob).toBe(true);
    expect(r.entries.map((e) => e.name)).toEqual(['x/y.wav', 's.tar/m.wav', 'k.bin']);
  });

  it('keeps duplicates, in order', () => {
    const r = parse({ in: [{ objname: 'a' }, { objname: 'a' }, { objname: 'b' }, { objname: 'a' }] });
    expect(r.entries.map((e) => [e.index, e.name])).toEqual([
      [0, 'b/a'],
      [1, 'b/a'],
      [2, 'b/b'],
      [3, 'b/a'],
    ]);
  });

  it('takes ranges and checks them with the entry named', () => {
    const r = parse({ in: [{ objname: 'a', start: 0, length: 0 }, { objname: 'a', start: 10, length: 5 }, { objname: 'a', start: 7, length: -1 }, { objname: 'a', length: 3 }] });
    expect(r.entries.map((e) => e.range)).toEqual([undefined, { start: 10, length: 5 }, { start: 7, length: -1 }, { start: 0, length: 3 }]);
    const zero = err(() => parse({ in: [{ objname: 'a' }, { objname: 'a', start: 5, length: 0 }] }));
    expect(zero.kind).toBe('Range');
    expect(zero.code).toBe('ERR_RANGE');
    expect(zero.message).toMatch(/^in\[1\]: range start=5 length=0 is not satisfiable/);
    expect(zero.context.entry).toBe(1);
    const neg = err(() => parse({ in: [{ objname: 'a', start: -1, length: 5 }] }));
    expect(neg.kind).toBe('BadSpec');
    expect(neg.message).toBe('in[0]: start must be a non-negative integer, got -1');
    expect(err(() => parse({ in: [{ objname: 'a', start: 0, length: -2 }] })).message).toBe('in[0]: length must be an integer >= -1, got -2');
  });

  it('takes the defaults of a request', () => {
    const r = parse({ in: [{ objname: 'a' }] });
    expect(r).toMatchObject({ format: 'tar', coer: false, onob: false, strm: false, coloc: 0, maxSoftErrors: Infinity });
  });

  it('has an unlimited soft-error cap unless max_soft_errs says otherwise', () => {
    expect(parse({ max_soft_errs: 3, in: [{ objname: 'a' }] }).maxSoftErrors).toBe(3);
    expect(parse({ max_soft_errs: 0, in: [{ objname: 'a' }] }).maxSoftErrors).toBe(0);
    expect(parse({ max_soft_errs: -1, in: [{ objname: 'a' }] }).maxSoftErrors).toBe(Infinity);
    expect(err(() => parse({ max_soft_errs: -2, in: [{ objname: 'a' }] })).message).toMatch(/^max_soft_errs: /);
  });

  it('reads the output format from mime', () => {
    expect(parse({ mime: '.tgz', in: [{ objname: 'a' }] }).format).toBe('tgz');
    expect(parse({ mime: 'application/gzip', in: [{ objname: 'a' }] }).format).toBe('tgz');
    expect(parse({ mime: '.tar.lz4', in: [{ objname: 'a' }] }).format).toBe('tar.lz4');
    expect(parse({ mime: '', in: [{ objname: 'a' }] }).format).toBe('tar');
    const e = err(() => parse({ mime: '.rar', in: [{ objname: 'a' }] }));
    expect(e.message).toMatch(/^mime: unknown archive format '\.rar'; accepted: /);
  });
});

describe('parseBatchRequest: uri entries', () => {
  it('takes s3, gs, az, file, hf, http and https URIs', () => {
    const r = parse(
      {
        in: [
          { uri: 's3://bk/k/1.bin', start: 0, length: 100 },
          { uri: 'gs://g/obj' },
          { uri: 'az://cont/blob' },
          { uri: 'file:///data/a.wav' },
          { uri: 'hf://datasets/org/ds@v1/x.wav' },
          { uri: 'http://host:8080/p/q.bin' },
          { uri: 'https://cdn.example.com/a/b.bin?sig=1' },
        ],
      },
      {},
    );
    expect(r.entries.map((e) => e.location)).toEqual([
      { provider: 's3', bucket: 'bk', key: 'k/1.bin' },
      { provider: 'gs', bucket: 'g', key: 'obj' },
      { provider: 'az', bucket: 'cont', key: 'blob' },
      { provider: 'file', bucket: '', key: 'data/a.wav' },
      { provider: 'hf', bucket: 'datasets/org/ds@v1', key: 'x.wav' },
      { provider: 'http', bucket: 'host:8080', key: 'p/q.bin' },
      { provider: 'https', bucket: 'cdn.example.com', key: 'a/b.bin?sig=1' },
    ]);
    expect(r.entries.map((e) => e.name)).toEqual([
      'bk/k/1.bin',
      'g/obj',
      'cont/blob',
      'data/a.wav',
      'datasets/org/ds@v1/x.wav',
      'host:8080/p/q.bin',
      'cdn.example.com/a/b.bin?sig=1',
    ]);
    expect(r.entries.map((e) => e.providerName)).toEqual(['s3', 'gs', 'az', 'file', 'hf', 'http', 'https']);
    expect(r.entries[0]!.range).toEqual({ start: 0, length: 100 });
  });

  it('ignores the default bucket and provider for uri entries', () => {
    const r = parse({ in: [{ uri: 's3://bk/k' }] }, { bucket: 'other', provider: 'gs' });
    expect(r.entries[0]!.location).toEqual({ provider: 's3', bucket: 'bk', key: 'k' });
  });

  it('refuses uri together with objname, bucket, provider or uname', () => {
    expect(err(() => parse({ in: [{ uri: 's3://b/k', objname: 'k' }] })).message).toBe("in[0].objname: give either 'uri' or 'objname', not both");
    expect(err(() => parse({ in: [{ objname: 'a' }, { uri: 's3://b/k', bucket: 'b' }] })).message).toBe("in[1].bucket: give either 'uri' or 'bucket', not both");
    expect(err(() => parse({ in: [{ uri: 's3://b/k', provider: 's3' }] })).message).toBe("in[0].provider: give either 'uri' or 'provider', not both");
    expect(err(() => parse({ in: [{ uri: 's3://b/k', uname: 'aws/ns/b/' }] })).message).toBe("in[0].uname: give either 'uri' or 'uname', not both");
  });

  it('names the entry of a bad uri', () => {
    expect(err(() => parse({ in: [{ objname: 'a' }, { uri: 'ftp://h/x' }] })).message).toMatch(/^in\[1\]\.uri: unsupported URI scheme 'ftp:\/\/'/);
    expect(err(() => parse({ in: [{ uri: 's3://b/dir/' }] })).message).toMatch(/^in\[0\]\.uri: object name in 's3:\/\/b\/dir\/' must not end with "\/"/);
    expect(err(() => parse({ in: [{ uri: 'no-scheme' }] })).message).toMatch(/^in\[0\]\.uri: 'no-scheme' is not a URI/);
  });
});

describe('parseBatchRequest: opaque', () => {
  it('accepts standard and URL-safe base64, echoing standard', () => {
    const r = parse({ in: [{ objname: 'a', opaque: '-_8=' }, { objname: 'b', opaque: '+/8=' }, { objname: 'c', opaque: 'aGVsbG8' }, { objname: 'd' }] });
    expect(r.entries.map((e) => e.opaque)).toEqual(['+/8=', '+/8=', 'aGVsbG8=', undefined]);
    const bytes = Buffer.from([0xfb, 0xff, 0xbf, 0x00, 0x10]);
    expect(normalizeOpaque(bytes.toString('base64url'), 'f')).toBe(bytes.toString('base64'));
  });

  it('rejects what is not base64, naming the entry', () => {
    for (const bad of ['not base64!', 'a+b_', 'A', '====']) {
      const e = err(() => parse({ in: [{ objname: 'x' }, { objname: 'a', opaque: bad }] }));
      expect(e.message, bad).toMatch(/^in\[1\]\.opaque: not (valid )?base64$/);
      expect(e.kind).toBe('BadSpec');
    }
  });
});

describe("parseBatchRequest: AIStore's YAML key spellings", () => {
  it('reads continueonerr, outputformat, onlyobjname, streamingget and colocation', () => {
    const r = parse({ continueonerr: true, onlyobjname: true, streamingget: true, outputformat: '.tgz', colocation: 1, in: [{ objname: 'a' }] });
    expect([r.coer, r.onob, r.strm, r.format, r.coloc]).toEqual([true, true, true, 'tgz', 1]);
    expect(r.entries[0]!.name).toBe('a');
  });

  it('reads the snake_case and mixed-case spellings too', () => {
    const r = parse({ continue_on_err: true, only_obj_name: true, streaming_get: true, output_format: '.zip', in: [{ objname: 'a' }] });
    expect([r.coer, r.onob, r.strm, r.format]).toEqual([true, true, true, 'zip']);
    const m = parse({ ContinueOnErr: true, OutputFormat: 'application/gzip', StreamingGet: true, in: [{ objname: 'a' }] });
    expect([m.coer, m.format, m.strm]).toEqual([true, 'tgz', true]);
  });

  it('refuses a key given in both spellings', () => {
    const pairs: [string, string, unknown][] = [
      ['coer', 'continueonerr', true],
      ['mime', 'outputformat', '.tar'],
      ['onob', 'onlyobjname', true],
      ['strm', 'streamingget', true],
      ['continueonerr', 'continue_on_err', true],
    ];
    for (const [a, b, v] of pairs) {
      const e = err(() => parse({ [a]: v, [b]: v, in: [{ objname: 'x' }] }));
      expect(e.message, `${a}+${b}`).toMatch(/both given; use one$/);
      expect(e.kind).toBe('BadSpec');
    }
  });

  it('leaves entries and non-objects alone', () => {
    expect(applyKeyAliases([1])).toEqual([1]);
    expect(applyKeyAliases({ in: [{ continueonerr: true }] })).toEqual({ in: [{ continueonerr: true }] });
    expect(err(() => parse({ in: [{ objname: 'a', continueonerr: true }] })).message).toMatch(/^in\[0\]: unknown field 'continueonerr'/);
  });
});

describe('response rows', () => {
  it('echo the entry, and name a missing one under __404__/', () => {
    const r = parse({ in: [{ objname: 's.tar', archpath: 'm.wav', opaque: '-_8=', provider: 'aws', bucket: 'bk' }] });
    const e = r.entries[0]!;
    expect(outRow(e, 12)).toEqual({ objname: 's.tar', archpath: 'm.wav', bucket: 'bk', provider: 'aws', opaque: '+/8=', size: 12 });
    expect(Object.keys(outRow(e, 0, 'gone'))).toEqual(['objname', 'archpath', 'bucket', 'provider', 'err_msg', 'opaque', 'size']);
    expect(missingName(e)).toBe('__404__/bk/s.tar/m.wav');
  });
});

describe('entries', () => {
  it('withRange changes the range only: name, archpath, opaque and provider alias stay', () => {
    const e = parse({ onob: true, in: [{ objname: 's.tar', archpath: 'm.wav', opaque: 'aGk=', provider: 'aws', bucket: 'bk', start: 5, length: 10 }] }).entries[0]!;
    const w = e.withRange({ start: 100, length: 3 });
    expect([w.index, w.name, w.archpath, w.opaque, w.providerName, w.location]).toEqual([0, 's.tar/m.wav', 'm.wav', 'aGk=', 'aws', { provider: 's3', bucket: 'bk', key: 's.tar' }]);
    expect(w.range).toEqual({ start: 100, length: 3 });
    expect(e.range).toEqual({ start: 5, length: 10 });
    expect(e.withRange(undefined).range).toBeUndefined();
  });

  it('built by a front end: a name of its own survives withRange; the default is bucket/key', () => {
    const named = BatchEntry.of({ index: 3, location: { provider: 'file', bucket: 'r', key: 'a.flac' }, name: 'cut-1.wav' });
    expect(named.withRange({ start: 0, length: 8 }).name).toBe('cut-1.wav');
    expect(named.providerName).toBe('file');
    expect(BatchEntry.of({ index: 0, location: { provider: 'gs', bucket: 'b', key: 'k/x' }, archpath: 'y' }).name).toBe('b/k/x/y');
    expect(BatchEntry.of({ index: 0, location: { provider: 'file', bucket: '', key: '/abs/x' } }).name).toBe('/abs/x');
  });
});
