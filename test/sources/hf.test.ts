import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HfSource, parseRepo } from '../../src/sources/hf.js';
import { OjsError } from '../../src/spec/errors.js';
import { sourceConformance } from '../conformance/source.suite.js';
import { startHub, type Hub } from '../helpers/servers/hub.js';

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

describe('hf: repositories, revisions, tokens and endpoints', () => {
  let hub: Hub;
  const signal = () => new AbortController().signal;
  const lfs = randomBytes(50_000); // over the server's LFS size: answered with a 302 to the file host
  beforeAll(async () => {
    hub = await startHub();
    hub.put('datasets/org/d', 'x/lfs.bin', lfs);
    hub.put('datasets/org/d', 'x/small.txt', Buffer.from('v1\n'), 'v1.0');
    hub.put('datasets/org/d', 'x/small.txt', Buffer.from('main\n'));
    hub.put('org/model', 'weights.bin', Buffer.from('model'));
    hub.put('spaces/org/app', 'app.py', Buffer.from('print(1)\n'));
    hub.put('datasets/org/private', 'a.txt', Buffer.from('secret\n'));
    hub.privateRepo('datasets/org/private', 'hf_right');
  });
  afterAll(async () => hub.close());

  async function text(src: HfSource, bucket: string, key: string): Promise<string> {
    const o = await src.open({ bucket, key }, { signal: signal() });
    return (o.bytes ?? Buffer.alloc(0)).toString();
  }

  it('sends the token to the Hub and never to the file host it redirects to', async () => {
    const src = new HfSource({ endpoint: hub.url, token: 'hf_secret' });
    const o = await src.open({ bucket: 'datasets/org/d', key: 'x/lfs.bin' }, { signal: signal() });
    expect(o.bytes?.equals(lfs)).toBe(true);
    expect(hub.hub.requests.at(-1)?.headers.authorization).toBe('Bearer hf_secret');
    expect(hub.cdn.requests.length).toBeGreaterThan(0);
    expect(hub.leakedAuth).toEqual([]);
    // The version is the Hub's (the LFS file's sha256), the same for stat and open.
    expect((await src.stat({ bucket: 'datasets/org/d', key: 'x/lfs.bin' }, { signal: signal() })).etag).toBe(o.etag);
    expect(o.etag).toMatch(/^"[0-9a-f]{64}"$/);
    await src.close();
  });

  it('reads a revision, a model and a space; an unknown revision names it', async () => {
    const src = new HfSource({ endpoint: hub.url });
    expect(await text(src, 'datasets/org/d@v1.0', 'x/small.txt')).toBe('v1\n');
    expect(await text(src, 'datasets/org/d', 'x/small.txt')).toBe('main\n');
    expect(await text(src, 'org/model', 'weights.bin')).toBe('model');
    expect(await text(src, 'models/org/model', 'weights.bin')).toBe('model');
    expect(await text(src, 'spaces/org/app', 'app.py')).toBe('print(1)\n');
    const e = (await src.open({ bucket: 'datasets/org/d@nope', key: 'x/small.txt' }, { signal: signal() }).catch((x: unknown) => x)) as OjsError;
    expect(e.code).toBe('ERR_NO_SUCH_BUCKET');
    expect(e.message).toMatch(/no revision 'nope'/);
    await src.close();
  });

  it('takes HF_ENDPOINT and HF_TOKEN from the environment; a private repository needs the token', async () => {
    const withToken = new HfSource({}, { HF_ENDPOINT: hub.url, HF_TOKEN: 'hf_right' });
    expect(await text(withToken, 'datasets/org/private', 'a.txt')).toBe('secret\n');
    const without = new HfSource({}, { HF_ENDPOINT: hub.url });
    const e = (await without.open({ bucket: 'datasets/org/private', key: 'a.txt' }, { signal: signal() }).catch((x: unknown) => x)) as OjsError;
    expect(e.kind).toBe('NotFound');
    expect(e.message).toMatch(/set HF_TOKEN/);
    await withToken.close();
    await without.close();
  });

  it('parses repository names, and refuses what is not one', () => {
    expect(parseRepo('datasets/org/name@refs%2Fpr%2F1')).toEqual({ kind: 'datasets/', name: 'org/name', revision: 'refs/pr/1' });
    expect(parseRepo('org/name')).toEqual({ kind: '', name: 'org/name', revision: 'main' });
    for (const bad of ['org', 'datasets/org', 'org/name/extra', 'org/@v1']) expect(() => parseRepo(bad), bad).toThrow(OjsError);
  });
});
