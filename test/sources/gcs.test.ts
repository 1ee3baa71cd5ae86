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
