/**
 * What a CLI user sees when a remote provider cannot serve: bad credentials, an unknown bucket,
 * an unreachable endpoint. One line on stderr naming the entry and the object's URI (and so the
 * provider), the stable code, exit 1; never a stack trace.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectionString } from '../helpers/servers/azurite.js';
import { startAll, HF_REPO, type AllServers } from '../helpers/servers/all.js';
import { CLI, run, tmpDir } from '../helpers/tools.js';

const UNREACHABLE = 'http://127.0.0.1:1'; // nothing listens on port 1

let all: AllServers;
let work: string;

beforeAll(async () => {
  all = await startAll();
  await all.seed('a.bin', Buffer.from('hello'));
  all.hub.put('datasets/org/private', 'a.bin', Buffer.from('secret'));
  all.hub.privateRepo('datasets/org/private', 'hf_right');
  work = tmpDir('ojs-ml-remote-errors-');
}, 60_000);
afterAll(async () => {
  await all?.stop();
  fs.rmSync(work, { recursive: true, force: true });
});

interface Case {
  name: string;
  uri: string;
  env?: Record<string, string | undefined>;
  /** The line after "ojs-ml: error: in[1]: <uri>: ". */
  says: RegExp;
  code: string;
}

function cases(): Case[] {
  return [
    // s3rver checks the access key, not SigV4 signatures: a wrong key is what it can refuse.
    { name: 's3 bad credentials', uri: 's3://data/a.bin', env: { AWS_ACCESS_KEY_ID: 'WRONGKEY' }, says: /^s3: the credentials were rejected \(InvalidAccessKeyId, HTTP 403\)$/, code: 'ERR_UNAUTHORIZED' },
    { name: 's3 unknown bucket', uri: 's3://nope/a.bin', says: /^s3: no such bucket 'nope' \(NoSuchBucket, HTTP 404\)$/, code: 'ERR_NO_SUCH_BUCKET' },
    { name: 's3 unreachable', uri: 's3://data/a.bin', env: { AWS_ENDPOINT_URL_S3: UNREACHABLE }, says: /^s3: cannot reach http:\/\/127\.0\.0\.1:1: .*ECONNREFUSED.* \(gave up after 5 attempts\)$/, code: 'ERR_UNAVAILABLE' },
    { name: 'gs bad credentials', uri: 'gs://data/a.bin', env: { STORAGE_EMULATOR_HOST: undefined, GOOGLE_APPLICATION_CREDENTIALS: path.join('/nonexistent', 'key.json') }, says: /^gs: no usable Google credentials: .*GOOGLE_APPLICATION_CREDENTIALS/, code: 'ERR_UNAUTHORIZED' },
    { name: 'gs unknown bucket', uri: 'gs://nope/a.bin', says: /^gs: no such bucket 'nope' \(notFound, HTTP 404\)$/, code: 'ERR_NO_SUCH_BUCKET' },
    { name: 'gs unreachable', uri: 'gs://data/a.bin', env: { STORAGE_EMULATOR_HOST: UNREACHABLE }, says: /^gs: GET http:\/\/127\.0\.0\.1:1 failed: .*ECONNREFUSED.* \(gave up after 5 attempts\)$/, code: 'ERR_UNAVAILABLE' },
    { name: 'az bad credentials', uri: 'az://data/a.bin', env: { AZURE_STORAGE_CONNECTION_STRING: connectionString(all.az.endpoint, Buffer.from('not the key').toString('base64')) }, says: /^az: .*(credentials were rejected|access denied).*HTTP 403\)$/, code: '' },
    { name: 'az unknown container', uri: 'az://nope/a.bin', says: /^az: no such container 'nope' \(ContainerNotFound, HTTP 404\)$/, code: 'ERR_NO_SUCH_BUCKET' },
    { name: 'az unreachable', uri: 'az://data/a.bin', env: { AZURE_STORAGE_CONNECTION_STRING: connectionString(`${UNREACHABLE}/devstoreaccount1`) }, says: /^az: cannot reach http:\/\/127\.0\.0\.1:1\/devstoreaccount1: .*ECONNREFUSED.* \(gave up after 5 attempts\)$/, code: 'ERR_UNAVAILABLE' },
    { name: 'hf bad token', uri: 'hf://datasets/org/private/a.bin', env: { HF_TOKEN: 'hf_wrong' }, says: /^hf: repository 'datasets\/org\/private' not found \(or the token has no access to it\): Repository not found$/, code: 'ERR_NO_SUCH_BUCKET' },
    { name: 'hf unknown repository', uri: 'hf://datasets/org/nope/a.bin', env: { HF_TOKEN: '' }, says: /^hf: repository 'datasets\/org\/nope' not found \(or private or gated: set HF_TOKEN\): Repository not found$/, code: 'ERR_NO_SUCH_BUCKET' },
    { name: 'hf unreachable', uri: `hf://${HF_REPO}/a.bin`, env: { HF_ENDPOINT: UNREACHABLE }, says: /^hf: GET http:\/\/127\.0\.0\.1:1 failed: .*ECONNREFUSED.* \(gave up after 5 attempts\)$/, code: 'ERR_UNAVAILABLE' },
    { name: 'http unreachable', uri: `${UNREACHABLE}/a.bin`, says: /^http: GET http:\/\/127\.0\.0\.1:1 failed: .*ECONNREFUSED.* \(gave up after 5 attempts\)$/, code: 'ERR_UNAVAILABLE' },
    { name: 'http not found', uri: `${all.files.url}/data/nope.bin`, says: /^no such object: not found \(HTTP 404\)$/, code: 'ERR_NOT_FOUND' },
  ];
}

describe('get-batch: remote failures are one clear line', () => {
  it('for bad credentials, unknown buckets and unreachable endpoints of every provider', async () => {
    const local = path.join(work, 'ok.txt');
    fs.writeFileSync(local, 'fine\n');
    const results = await Promise.all(
      cases().map(async (c, i) => {
        const spec = path.join(work, `spec-${i}.json`);
        // Entry 0 is fine: the failing one is in[1], and the message must say so.
        fs.writeFileSync(spec, JSON.stringify({ in: [{ uri: `file://${local}` }, { uri: c.uri }] }));
        const r = await run(process.execPath, [CLI, 'get-batch', '--spec', spec, '--nv', path.join(work, `out-${i}.tar`)], { env: { ...all.env(), ...c.env } });
        return { c, r };
      }),
    );
    for (const { c, r } of results) {
      const lines = r.stderr.split('\n').filter((l) => l !== '');
      expect(lines, `${c.name}: ${r.stderr}`).toHaveLength(1);
      const line = lines[0]!;
      expect(line, c.name).not.toMatch(/\n\s+at /);
      const m = /^ojs-ml: error: in\[1\]: (\S+): (.*) \[(ERR_[A-Z_]+)\]$/.exec(line);
      expect(m, `${c.name}: ${line}`).not.toBeNull();
      const [, uri, says, code] = m!;
      expect(uri, c.name).toBe(c.uri);
      expect(says, c.name).toMatch(c.says);
      if (c.code !== '') expect(code, c.name).toBe(c.code);
      expect(r.code, c.name).toBe(1);
    }
  }, 120_000);
});
