import { HfSource } from '../../src/sources/hf.js';
import { sourceConformance } from '../conformance/source.suite.js';
import { startHub } from '../helpers/servers/hub.js';

const REPO = 'datasets/org/data';

sourceConformance('hf (local Hub-shaped server)', async () => {
  const hub = await startHub();
  const source = new HfSource({ endpoint: hub.url, token: 'hf_test' });
  return {
    source,
    bucket: REPO,
    put: async (key, data) => hub.put(REPO, key, data),
    upstream: {
      requests: hub.hub.requests,
      inFlight: () => hub.hub.inFlight() + hub.cdn.inFlight(),
      closedEarly: () => hub.hub.closedEarly() + hub.cdn.closedEarly(),
    },
    cleanup: async () => {
      await source.close();
      await hub.close();
    },
  };
});
