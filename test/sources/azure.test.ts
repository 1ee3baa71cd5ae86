import { AzureSource } from '../../src/sources/azure.js';
import { sourceConformance } from '../conformance/source.suite.js';
import { startAzurite } from '../helpers/servers/azurite.js';

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
