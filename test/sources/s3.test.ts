import { Client as Minio } from 'minio';
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

// The same suite against a real S3 API (MinIO, Ceph, AWS) when one is named; its bucket must be empty.
const realEndpoint = process.env.OJS_ML_TEST_S3_ENDPOINT;
const realBucket = process.env.OJS_ML_TEST_S3_BUCKET;
if (realEndpoint !== undefined && realBucket !== undefined) {
  sourceConformance(`s3 (${realEndpoint})`, async () => {
    const u = new URL(realEndpoint);
    const minio = new Minio({
      endPoint: u.hostname,
      port: u.port === '' ? undefined : Number(u.port),
      useSSL: u.protocol === 'https:',
      accessKey: process.env.AWS_ACCESS_KEY_ID ?? '',
      secretKey: process.env.AWS_SECRET_ACCESS_KEY ?? '',
      sessionToken: process.env.AWS_SESSION_TOKEN,
      region: process.env.AWS_REGION ?? 'us-east-1',
      pathStyle: true,
    });
    const written: string[] = [];
    const source = new S3Source({ endpoint: realEndpoint });
    return {
      source,
      bucket: realBucket,
      put: async (key, data) => {
        await minio.putObject(realBucket, key, data, data.length);
        written.push(key);
      },
      cleanup: async () => {
        await minio.removeObjects(realBucket, written);
        await source.close();
      },
    };
  });
}
