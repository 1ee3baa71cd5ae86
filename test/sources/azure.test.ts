import { ContainerSASPermissions, StorageSharedKeyCredential, generateBlobSASQueryParameters } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AzureSource } from '../../src/sources/azure.js';
import { OjsError } from '../../src/spec/errors.js';
import { sourceConformance } from '../conformance/source.suite.js';
import { AZURITE_ACCOUNT, AZURITE_KEY, startAzurite, type Azurite } from '../helpers/servers/azurite.js';

const CONTAINER = 'conformance';

sourceConformance('az (azurite)', async () => {
  const az = await startAzurite();
  await az.createContainer(CONTAINER);
  const source = new AzureSource({ connectionString: az.connectionString });
  return {
    source,
    bucket: CONTAINER,
    put: (key, data) => az.put(CONTAINER, key, data),
    upstream: az.proxy,
    cleanup: async () => {
      await source.close();
      await az.stop();
    },
  };
});

// The same suite against real Azure storage when a connection string and an empty container are named.
const realCs = process.env.OJS_ML_TEST_AZURE_CONNECTION_STRING;
const realContainer = process.env.OJS_ML_TEST_AZURE_CONTAINER;
if (realCs !== undefined && realContainer !== undefined) {
  sourceConformance('az (OJS_ML_TEST_AZURE_CONNECTION_STRING)', async () => {
    const source = new AzureSource({ connectionString: realCs });
    const container = source.service.getContainerClient(realContainer);
    const written: string[] = [];
    return {
      source,
      bucket: realContainer,
      put: async (key, data) => {
        await container.getBlockBlobClient(key).uploadData(data);
        written.push(key);
      },
      cleanup: async () => {
        for (const k of written) await container.deleteBlob(k).catch(() => undefined);
        await source.close();
      },
    };
  });
}

describe('az: credentials other than a connection string', () => {
  let az: Azurite;
  const signal = () => new AbortController().signal;
  beforeAll(async () => {
    az = await startAzurite();
    await az.createContainer('creds');
    await az.put('creds', 'dir/a.txt', Buffer.from('hello azure\n'));
  });
  afterAll(async () => az.stop());

  async function text(src: AzureSource): Promise<string> {
    const o = await src.open({ bucket: 'creds', key: 'dir/a.txt' }, { signal: signal() });
    return (o.bytes ?? Buffer.alloc(0)).toString();
  }

  it('reads with an account and its key, from options or AZURE_STORAGE_* variables', async () => {
    expect(await text(new AzureSource({ account: AZURITE_ACCOUNT, key: AZURITE_KEY, endpoint: az.endpoint }))).toBe('hello azure\n');
    const fromEnv = new AzureSource({}, { AZURE_STORAGE_ACCOUNT: AZURITE_ACCOUNT, AZURE_STORAGE_KEY: AZURITE_KEY, AZURE_STORAGE_BLOB_ENDPOINT: az.endpoint });
    expect(await text(fromEnv)).toBe('hello azure\n');
  });

  it('reads with a SAS token, and fails clearly with a wrong key', async () => {
    const cred = new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY);
    const sas = generateBlobSASQueryParameters({ containerName: 'creds', permissions: ContainerSASPermissions.parse('rl'), expiresOn: new Date(Date.now() + 3600_000) }, cred).toString();
    expect(await text(new AzureSource({ account: AZURITE_ACCOUNT, sasToken: `?${sas}`, endpoint: az.endpoint }))).toBe('hello azure\n');
    const wrong = new AzureSource({ account: AZURITE_ACCOUNT, key: Buffer.from('wrong key').toString('base64'), endpoint: az.endpoint });
    const e = (await wrong.open({ bucket: 'creds', key: 'dir/a.txt' }, { signal: signal() }).catch((x: unknown) => x)) as OjsError;
    expect(e).toBeInstanceOf(OjsError);
    expect(e.httpStatus).toBe(403);
    expect(e.temporary).toBe(false);
  });

  it('says which variables to set when it has no credentials at all', () => {
    expect(() => new AzureSource({}, {})).toThrow(/AZURE_STORAGE_CONNECTION_STRING/);
  });
});
