/**
 * Azurite's blob service (npm) on 127.0.0.1 and a random port, in memory, behind a tracking
 * proxy. `--skipApiVersionCheck`: @azure/storage-blob 12.32 speaks a newer API version than
 * azurite 3.35 knows. Data is seeded with the SDK's upload, a path the source under test never takes.
 */
import * as path from 'node:path';
import { BlobServiceClient } from '@azure/storage-blob';
import { REPO } from '../tools.js';
import { startChild } from './child.js';
import { startProxy, type Proxy } from './proxy.js';

export const AZURITE_ACCOUNT = 'devstoreaccount1';
// Azurite's well-known development key (public, in Microsoft's docs).
export const AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export interface Azurite {
  /** Blob endpoint through the proxy: http://127.0.0.1:PORT/devstoreaccount1 */
  endpoint: string;
  connectionString: string;
  proxy: Proxy;
  put(container: string, blob: string, data: Buffer): Promise<void>;
  createContainer(name: string): Promise<void>;
  stop(): Promise<void>;
}

export function connectionString(endpoint: string, key = AZURITE_KEY): string {
  return `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT};AccountKey=${key};BlobEndpoint=${endpoint};`;
}

export async function startAzurite(): Promise<Azurite> {
  const bin = path.join(REPO, 'node_modules/azurite/dist/src/blob/main.js');
  const args = [bin, '--blobHost', '127.0.0.1', '--blobPort', '0', '--inMemoryPersistence', '--disableTelemetry', '--skipApiVersionCheck', '--silent', '--loose', '--extentMemoryLimit', '1024'];
  const child = await startChild(args, /successfully listens on http:\/\/127\.0\.0\.1:(\d+)/, 'azurite');
  const proxy = await startProxy({ host: '127.0.0.1', port: child.port });
  const direct = BlobServiceClient.fromConnectionString(connectionString(`http://127.0.0.1:${child.port}/${AZURITE_ACCOUNT}`));
  const endpoint = `${proxy.url}/${AZURITE_ACCOUNT}`;
  return {
    endpoint,
    connectionString: connectionString(endpoint),
    proxy,
    put: async (container, blob, data) => {
      await direct.getContainerClient(container).getBlockBlobClient(blob).uploadData(data);
    },
    createContainer: async (name) => {
      await direct.getContainerClient(name).createIfNotExists();
    },
    stop: async () => {
      await proxy.close();
      await child.stop();
    },
  };
}
