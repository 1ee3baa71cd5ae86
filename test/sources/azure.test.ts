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
