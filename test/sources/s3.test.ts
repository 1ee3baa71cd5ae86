import { Client as Minio } from 'minio';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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

describe('s3: endpoints and regions from the environment', () => {
  let s3: Awaited<ReturnType<typeof startS3rver>>;
  const signal = () => new AbortController().signal;
  const creds = { AWS_ACCESS_KEY_ID: S3RVER_KEY, AWS_SECRET_ACCESS_KEY: S3RVER_KEY };
  beforeAll(async () => {
    s3 = await startS3rver(['envb']);
    await s3.put('envb', 'k.txt', Buffer.from('from env\n'));
  });
  afterAll(async () => s3.stop());

  async function text(src: S3Source): Promise<string> {
    const o = await src.open({ bucket: 'envb', key: 'k.txt' }, { signal: signal() });
    await src.close();
    return (o.bytes ?? Buffer.alloc(0)).toString();
  }

  it('takes AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL, and addresses it path-style', async () => {
    // Credentials come from the standard chain (here: the environment the SDK reads).
    const saved = { ...process.env };
    Object.assign(process.env, creds);
    try {
      expect(await text(new S3Source({}, { AWS_ENDPOINT_URL_S3: s3.endpoint, AWS_ENDPOINT_URL: 'http://127.0.0.1:1' }))).toBe('from env\n');
      expect(await text(new S3Source({}, { AWS_ENDPOINT_URL: s3.endpoint }))).toBe('from env\n');
      expect(s3.proxy.requests.at(-1)?.url).toMatch(/^\/envb\/k\.txt(\?|$)/);
      expect(await text(new S3Source({}, { AWS_ENDPOINT_URL: s3.endpoint, AWS_REGION: 'eu-west-3' }))).toBe('from env\n');
      expect(String(s3.proxy.requests.at(-1)?.headers.authorization)).toMatch(/\/eu-west-3\/s3\/aws4_request/);
    } finally {
      for (const k of Object.keys(creds)) if (saved[k] === undefined) delete process.env[k];
    }
  });
});
