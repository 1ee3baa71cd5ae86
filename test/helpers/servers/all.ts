/**
 * Every remote test server at once, with the same bucket name where a provider has buckets:
 * s3rver, azurite, the GCS JSON API server, the Hub-shaped server and a plain HTTP server. For
 * the tests that run batches across providers (mixed, chaos, errors).
 */
import type { SourcesConfig } from '../../../src/sources/registry.js';
import { startAzurite, type Azurite } from './azurite.js';
import { startFileServer, type FileServer } from './files.js';
import { startGcs, type GcsServer } from './gcs.js';
import { startHub, type Hub } from './hub.js';
import { S3RVER_KEY, startS3rver, type S3rver } from './s3rver.js';
import type { Tracked } from './track.js';

export const BUCKET = 'data';
export const HF_REPO = 'datasets/org/data';
export const HF_TOKEN = 'hf_test_token';
export const REMOTE = ['s3', 'gs', 'az', 'hf', 'http'] as const;
export type Remote = (typeof REMOTE)[number];

export interface AllServers {
  s3: S3rver;
  gcs: GcsServer;
  az: Azurite;
  hub: Hub;
  files: FileServer;
  /** Puts the same object into every server. */
  seed(key: string, data: Buffer): Promise<void>;
  /** The URI of `key` on a provider. */
  uri(p: Remote, key: string): string;
  /** Responses in flight, across every server. */
  inFlight(): number;
  /** Per provider, what its server saw. */
  tracked: Record<Remote, Pick<Tracked, 'inFlight' | 'closedEarly'>>;
  /** A registry config that reaches every server (http: private addresses allowed). */
  config(extra?: Partial<SourcesConfig>): SourcesConfig;
  /** The environment the CLI reads the same endpoints and credentials from. */
  env(): Record<string, string>;
  stop(): Promise<void>;
}

export async function startAll(): Promise<AllServers> {
  const [s3, gcs, az, hub, files] = await Promise.all([startS3rver([BUCKET]), startGcs(), startAzurite(), startHub(), startFileServer()]);
  gcs.createBucket(BUCKET);
  await az.createContainer(BUCKET);
  const hubTracked = { inFlight: () => hub.hub.inFlight() + hub.cdn.inFlight(), closedEarly: () => hub.hub.closedEarly() + hub.cdn.closedEarly() };
  const tracked = { s3: s3.proxy, gs: gcs, az: az.proxy, hf: hubTracked, http: files };
  return {
    s3,
    gcs,
    az,
    hub,
    files,
    tracked,
    seed: async (key, data) => {
      await Promise.all([s3.put(BUCKET, key, data), az.put(BUCKET, key, data)]);
      gcs.put(BUCKET, key, data);
      hub.put(HF_REPO, key, data);
      files.put(`${BUCKET}/${key}`, data);
    },
    uri: (p, key) => {
      if (p === 'hf') return `hf://${HF_REPO}/${key}`;
      if (p === 'http') return `${files.url}/${BUCKET}/${key.split('/').map(encodeURIComponent).join('/')}`;
      return `${p}://${BUCKET}/${key}`;
    },
    inFlight: () => Object.values(tracked).reduce((n, t) => n + t.inFlight(), 0),
    config: (extra = {}) => ({
      http: { allowPrivate: true },
      remote: {
        s3: { endpoint: s3.endpoint, credentials: { accessKeyId: S3RVER_KEY, secretAccessKey: S3RVER_KEY } },
        gs: { apiEndpoint: gcs.url, projectId: 'test' },
        az: { connectionString: az.connectionString },
        hf: { endpoint: hub.url, token: HF_TOKEN },
      },
      ...extra,
    }),
    env: () => ({
      AWS_ENDPOINT_URL_S3: s3.endpoint,
      AWS_ACCESS_KEY_ID: S3RVER_KEY,
      AWS_SECRET_ACCESS_KEY: S3RVER_KEY,
      AWS_REGION: 'us-east-1',
      STORAGE_EMULATOR_HOST: gcs.url,
      AZURE_STORAGE_CONNECTION_STRING: az.connectionString,
      HF_ENDPOINT: hub.url,
      HF_TOKEN,
    }),
    stop: async () => {
      await Promise.all([s3.stop(), az.stop(), gcs.close(), hub.close(), files.close()]);
    },
  };
}
