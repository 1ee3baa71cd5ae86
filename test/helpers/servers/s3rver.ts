/**
 * s3rver (npm, pure Node) on 127.0.0.1 and a random port, behind a tracking proxy. It needs
 * OpenSSL's legacy provider for listings (its continuation tokens use DES); data is seeded with
 * the minio client, an S3 client independent of the one under test.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client as Minio } from 'minio';
import { REPO } from '../tools.js';
import { startChild } from './child.js';
import { startProxy, type Proxy } from './proxy.js';

export const S3RVER_KEY = 'S3RVER'; // s3rver's built-in access key and secret

export interface S3rver {
  /** The endpoint clients use (the proxy). */
  endpoint: string;
  /** s3rver itself, without the proxy. */
  directEndpoint: string;
  proxy: Proxy;
  minio: Minio;
  put(bucket: string, key: string, data: Buffer): Promise<void>;
  stop(): Promise<void>;
}

export async function startS3rver(buckets: string[]): Promise<S3rver> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ojs-ml-s3rver-'));
  const bin = path.join(REPO, 'node_modules/s3rver/bin/s3rver.js');
  const args = ['--openssl-legacy-provider', bin, '-d', dir, '-a', '127.0.0.1', '-p', '0', '--silent'];
  for (const b of buckets) args.push('--configure-bucket', b);
  const child = await startChild(args, /listening on 127\.0\.0\.1:(\d+)/, 's3rver');
  const proxy = await startProxy({ host: '127.0.0.1', port: child.port });
  const minio = new Minio({ endPoint: '127.0.0.1', port: child.port, useSSL: false, accessKey: S3RVER_KEY, secretKey: S3RVER_KEY, pathStyle: true, region: 'us-east-1' });
  return {
    endpoint: proxy.url,
    directEndpoint: `http://127.0.0.1:${child.port}`,
    proxy,
    minio,
    put: async (bucket, key, data) => {
      await minio.putObject(bucket, key, data, data.length);
    },
    stop: async () => {
      await proxy.close();
      await child.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
