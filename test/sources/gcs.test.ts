import { describe, expect, it } from 'vitest';
import { GcsSource } from '../../src/sources/gcs.js';
import { sourceConformance } from '../conformance/source.suite.js';
import { startGcs } from '../helpers/servers/gcs.js';

const BUCKET = 'conformance';

sourceConformance('gs (local GCS JSON API server)', async () => {
  const gcs = await startGcs();
  gcs.createBucket(BUCKET);
  const source = new GcsSource({ apiEndpoint: gcs.url, projectId: 'test' });
  return {
    source,
    bucket: BUCKET,
    put: async (key, data) => gcs.put(BUCKET, key, data),
    upstream: gcs,
    cleanup: async () => {
      await source.close();
      await gcs.close();
    },
  };
});

// The same suite against real GCS (or another emulator) when a bucket is named; it must be empty.
const realBucket = process.env.OJS_ML_TEST_GCS_BUCKET;
if (realBucket !== undefined) {
  sourceConformance(`gs (${process.env.OJS_ML_TEST_GCS_ENDPOINT ?? 'storage.googleapis.com'})`, async () => {
    const apiEndpoint = process.env.OJS_ML_TEST_GCS_ENDPOINT;
    const source = new GcsSource(apiEndpoint === undefined ? {} : { apiEndpoint });
    const written: string[] = [];
    return {
      source,
      bucket: realBucket,
      put: async (key, data) => {
        await source.storage.bucket(realBucket).file(key).save(data, { resumable: false });
        written.push(key);
      },
      cleanup: async () => {
        for (const k of written) await source.storage.bucket(realBucket).file(k).delete({ ignoreNotFound: true });
        await source.close();
      },
    };
  });
}

describe('gs endpoint from the environment', () => {
  it('OJS_ML_GCS_ENDPOINT points the provider at an emulator (what the CLI and serve can set)', async () => {
    const gcs = await startGcs();
    gcs.createBucket('env');
    gcs.put('env', 'dir/a b.bin', Buffer.from('hello from the emulator'));
    const source = new GcsSource({ projectId: 'test' }, { OJS_ML_GCS_ENDPOINT: gcs.url });
    try {
      const o = await source.open({ bucket: 'env', key: 'dir/a b.bin' }, { signal: new AbortController().signal, range: { start: 6, length: 4 } });
      const got = o.bytes ?? Buffer.concat((await o.body.toArray()) as Buffer[]);
      expect(got.toString()).toBe('from');
    } finally {
      await source.close();
      await gcs.close();
    }
  });
});
