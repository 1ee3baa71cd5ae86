import { describe, expect, it } from 'vitest';
import { err } from '../helpers/errors.js';
import { formatLocation, hasScheme, normalizeProvider, objectNameProblem, parseBucketUri, parseObjectUri } from '../../src/spec/uri.js';

describe('parseObjectUri', () => {
  it('parses s3, gs, az, ais and oci URIs', () => {
    expect(parseObjectUri('s3://b/k')).toEqual({ provider: 's3', bucket: 'b', key: 'k' });
    expect(parseObjectUri('s3://my-bucket/dir/sub/file name+x.bin')).toEqual({ provider: 's3', bucket: 'my-bucket', key: 'dir/sub/file name+x.bin' });
    expect(parseObjectUri('gs://b/k')).toEqual({ provider: 'gs', bucket: 'b', key: 'k' });
    expect(parseObjectUri('az://cont/dir/blob')).toEqual({ provider: 'az', bucket: 'cont', key: 'dir/blob' });
    expect(parseObjectUri('ais://b/k')).toEqual({ provider: 'ais', bucket: 'b', key: 'k' });
    expect(parseObjectUri('oci://b/k')).toEqual({ provider: 'oci', bucket: 'b', key: 'k' });
    expect(parseObjectUri('s3://b/ünï/cødé.txt')).toEqual({ provider: 's3', bucket: 'b', key: 'ünï/cødé.txt' });
  });

  it("takes AIStore's provider names as schemes (aws, gcp, azure, oc), in any case", () => {
    expect(parseObjectUri('aws://b/k')).toEqual({ provider: 's3', bucket: 'b', key: 'k' });
    expect(parseObjectUri('gcp://b/k')).toEqual({ provider: 'gs', bucket: 'b', key: 'k' });
    expect(parseObjectUri('azure://c/k')).toEqual({ provider: 'az', bucket: 'c', key: 'k' });
    expect(parseObjectUri('oc://b/k')).toEqual({ provider: 'oci', bucket: 'b', key: 'k' });
    expect(parseObjectUri('S3://b/k')).toEqual({ provider: 's3', bucket: 'b', key: 'k' });
  });

  it('parses hf URIs: models by default, datasets and spaces, with a revision', () => {
    expect(parseObjectUri('hf://org/model/weights.bin')).toEqual({ provider: 'hf', bucket: 'org/model', key: 'weights.bin' });
    expect(parseObjectUri('hf://models/org/model/a/b.bin')).toEqual({ provider: 'hf', bucket: 'org/model', key: 'a/b.bin' });
    expect(parseObjectUri('hf://datasets/org/ds@v1/data/x.wav')).toEqual({ provider: 'hf', bucket: 'datasets/org/ds@v1', key: 'data/x.wav' });
    expect(parseObjectUri('hf://spaces/o/s/app.py')).toEqual({ provider: 'hf', bucket: 'spaces/o/s', key: 'app.py' });
  });

  it('parses http and https URLs: host (with port) as bucket, path and query as key', () => {
    expect(parseObjectUri('https://host:8080/a/b?x=1')).toEqual({ provider: 'https', bucket: 'host:8080', key: 'a/b?x=1' });
    expect(parseObjectUri('http://example.com/data/x.bin')).toEqual({ provider: 'http', bucket: 'example.com', key: 'data/x.bin' });
    expect(parseObjectUri('HTTPS://Example.COM/K')).toEqual({ provider: 'https', bucket: 'example.com', key: 'K' });
  });

  it('parses file URIs as absolute paths (bucket empty), decoding percent escapes', () => {
    expect(parseObjectUri('file:///data/x%20y.wav')).toEqual({ provider: 'file', bucket: '', key: 'data/x y.wav' });
    expect(parseObjectUri('file:///a.bin')).toEqual({ provider: 'file', bucket: '', key: 'a.bin' });
    expect(parseObjectUri('file://localhost/tmp/a.bin')).toEqual({ provider: 'file', bucket: '', key: 'tmp/a.bin' });
  });

  it('refuses schemes it cannot read, listing the accepted ones', () => {
    for (const uri of ['ftp://h/x', 'sftp://h/x', 'hdfs://n/p', 'ais+x://b/k']) {
      const e = err(() => parseObjectUri(uri));
      expect(e.kind, uri).toBe('BadSpec');
      expect(e.message, uri).toMatch(/unsupported URI scheme '.*:\/\/' in .*; accepted: s3, gs, az, ais, oci, hf, http, https, file$/);
    }
    expect(err(() => parseObjectUri('no-scheme')).message).toBe("uri: 'no-scheme' is not a URI (expected scheme://...)");
    expect(err(() => parseObjectUri('s3:/b/k')).message).toMatch(/is not a URI/);
    expect(err(() => parseObjectUri('/abs/path')).kind).toBe('BadSpec');
  });

  it('applies the object-name rules to the key', () => {
    expect(err(() => parseObjectUri('s3://b/')).message).toMatch(/must not be empty/);
    expect(err(() => parseObjectUri('s3://b')).message).toMatch(/must not be empty/);
    expect(err(() => parseObjectUri('s3://b/dir/')).message).toBe(`uri: object name in 's3://b/dir/' must not end with "/"`);
    expect(err(() => parseObjectUri('s3://b/a/../k')).message).toMatch(/must not contain a "\.\." path component/);
    expect(err(() => parseObjectUri('gs://b/./k')).message).toMatch(/must not contain a "\." path component/);
    // A file URL is normalised as a URL first ('..' resolved), so it names an absolute path.
    expect(parseObjectUri('file:///data/../etc/x')).toEqual({ provider: 'file', bucket: '', key: 'etc/x' });
    expect(err(() => parseObjectUri('hf://org/model/dir/')).message).toMatch(/must not end with "\/"/);
  });

  it('refuses a missing bucket or repository, credentials, and file URIs with a host', () => {
    expect(err(() => parseObjectUri('s3:///k')).message).toMatch(/names no bucket/);
    expect(err(() => parseObjectUri('hf://datasets/only')).message).toMatch(/names no repository/);
    expect(err(() => parseObjectUri('hf://org')).message).toMatch(/names no repository/);
    expect(err(() => parseObjectUri('https://user:pw@h/x')).message).toMatch(/credentials in URLs are not accepted/);
    expect(err(() => parseObjectUri('file://host/x')).message).toMatch(/not a valid file URI/);
  });

  it('names the field it was given', () => {
    expect(err(() => parseObjectUri('ftp://h/x', 'in[4].uri')).message).toMatch(/^in\[4\]\.uri: /);
    expect(err(() => parseObjectUri('ftp://h/x', 'in[4].uri')).context.field).toBe('in[4].uri');
  });
});

describe('parseBucketUri', () => {
  it('takes a bucket with or without a prefix', () => {
    expect(parseBucketUri('s3://bucket')).toEqual({ provider: 's3', bucket: 'bucket', key: '' });
    expect(parseBucketUri('s3://bucket/')).toEqual({ provider: 's3', bucket: 'bucket', key: '' });
    expect(parseBucketUri('gs://b/shards/train-')).toEqual({ provider: 'gs', bucket: 'b', key: 'shards/train-' });
    expect(parseBucketUri('hf://datasets/o/n@main')).toEqual({ provider: 'hf', bucket: 'datasets/o/n@main', key: '' });
    expect(parseBucketUri('file:///')).toEqual({ provider: 'file', bucket: '', key: '' });
    expect(parseBucketUri('file:///data/dir')).toEqual({ provider: 'file', bucket: '', key: 'data/dir' });
  });

  it('still refuses ".." in the prefix and a missing bucket', () => {
    expect(err(() => parseBucketUri('s3://b/../x')).kind).toBe('BadSpec');
    expect(err(() => parseBucketUri('s3://')).message).toMatch(/names no bucket/);
  });
});

describe('providers and names', () => {
  it('normalises provider names and aliases', () => {
    const cases: [string, string][] = [
      ['aws', 's3'],
      ['s3', 's3'],
      ['gcp', 'gs'],
      ['gs', 'gs'],
      ['azure', 'az'],
      ['az', 'az'],
      ['oc', 'oci'],
      ['oci', 'oci'],
      ['ais', 'ais'],
      ['hf', 'hf'],
      ['http', 'http'],
      ['https', 'https'],
      ['file', 'file'],
      [' AWS ', 's3'],
    ];
    for (const [p, want] of cases) expect(normalizeProvider(p), p).toBe(want);
    const e = err(() => normalizeProvider('ftp', 'in[0].provider'));
    expect(e.message).toMatch(/^in\[0\]\.provider: unknown provider 'ftp'; accepted: ais, aws, s3/);
  });

  it("follows AIStore's object-name rules", () => {
    for (const ok of ['a', 'a/b/c.bin', 'a b', '.hidden', 'a/.b', '..a', 'a..b', 'a/b..', '~x', 'ünï']) expect(objectNameProblem(ok), ok).toBeUndefined();
    const bad: [string, RegExp][] = [
      ['', /empty/],
      ['a/', /end with "\/"/],
      ['..', /"\.\."/],
      ['a/..', /"\.\."/],
      ['../a', /"\.\."/],
      ['a/../b', /"\.\."/],
      ['.', /"\."/],
      ['a/./b', /"\."/],
      ['~/x', /"~\/"/],
      ['a\0b', /NUL/],
    ];
    for (const [name, why] of bad) expect(objectNameProblem(name), JSON.stringify(name)).toMatch(why);
  });

  it('tells a URI from a name, and writes locations back as URIs', () => {
    expect(hasScheme('s3://b')).toBe(true);
    expect(hasScheme('file:///x')).toBe(true);
    expect(hasScheme('root/dir')).toBe(false);
    expect(hasScheme('c:/x')).toBe(false);
    for (const uri of ['s3://b/k', 'gs://b/a/b', 'https://h:1/p?q=1', 'file:///data/x.bin']) {
      expect(formatLocation(parseObjectUri(uri)), uri).toBe(uri);
    }
  });
});
