import { S3Source } from '../../src/sources/s3.js';
import { sourceConformance } from '../conformance/source.suite.js';
import { S3RVER_KEY, startS3rver } from '../helpers/servers/s3rver.js';

const BUCKET = 'conformance';

sourceConformance('s3 (s3rver)', async () => {
  const s3 = await startS3rver([BUCKET]);
  const source = new S3Source({ endpoint: s3.endpoint, credentials: { accessKeyId: S3RVER_KEY, secretAccessKey: S3RVER_KEY } });
  return {
    source,
    bucket: BUCKET,
    put: (key, data) => s3.put(BUCKET, key, data),
    upstream: s3.proxy,
    cleanup: async () => {
      await source.close();
      await s3.stop();
    },
  };
});
