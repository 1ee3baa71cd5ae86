import { HttpSource } from '../../src/sources/http.js';
import { sourceConformance } from '../conformance/source.suite.js';
import { startFileServer } from '../helpers/servers/files.js';

sourceConformance('http (local file server)', async () => {
  const server = await startFileServer();
  const source = new HttpSource('http', { policy: { allowPrivate: true } });
  return {
    source,
    bucket: server.host,
    put: async (key, data) => server.put(key, data),
    upstream: server,
    cleanup: async () => {
      await source.close();
      await server.close();
    },
  };
});
