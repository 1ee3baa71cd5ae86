import { HttpSource } from '../../src/sources/http.js';
import { SourceRegistry } from '../../src/sources/registry.js';
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

// The same contract through everything the registry wraps a remote provider in.
sourceConformance('http (through the registry and its default layers)', async () => {
  const server = await startFileServer();
  const registry = new SourceRegistry({ http: { allowPrivate: true } });
  return {
    source: registry.get('http'),
    bucket: server.host,
    put: async (key, data) => server.put(key, data),
    upstream: server,
    cleanup: async () => {
      await registry.close();
      await server.close();
    },
  };
});
