/**
 * A server shaped like the Hugging Face Hub, and a separate file host (another origin, as the
 * Hub's CDN is). `/{datasets/|spaces/}ORG/NAME/resolve/REV/PATH` answers small files itself
 * (200, ETag) and LFS-sized ones with a 302 to the file host carrying X-Linked-Size and
 * X-Linked-Etag, as the Hub does; the tree API pages with Link headers, in no particular order.
 * Missing repositories answer 401 RepoNotFound, missing files 404 EntryNotFound.
 */
import { createHash } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { sendBytes, sendJson } from './bytes.js';
import { track, type Tracked } from './track.js';

const LFS_MIN = 10_000; // files from this size are "LFS": redirected to the file host
const TREE_PAGE = 7; // entries per tree page, small so that paging is exercised

export interface Hub {
  url: string;
  hub: Tracked;
  cdn: Tracked;
  /** Authorization headers that reached the file host (must stay empty). */
  leakedAuth: string[];
  /** Adds a file; `repo` is `datasets/ORG/NAME` or `ORG/NAME`, revision `main` unless given. */
  put(repo: string, path: string, data: Buffer, revision?: string): void;
  /** Repositories that need this token. */
  privateRepo(repo: string, token: string): void;
  close(): Promise<void>;
}

interface Stored {
  data: Buffer;
  sha: string;
}

export async function startHub(): Promise<Hub> {
  const repos = new Map<string, Map<string, Map<string, Stored>>>(); // repo -> revision -> path -> file
  const tokens = new Map<string, string>();
  const blobs = new Map<string, Stored>();
  const leakedAuth: string[] = [];

  const cdn = http.createServer((req, res) => {
    if (req.headers.authorization !== undefined) leakedAuth.push(req.headers.authorization);
    const sha = new URL(req.url ?? '/', 'http://x').pathname.replace(/^\/cdn\//, '');
    const f = blobs.get(sha);
    if (f === undefined) return sendJson(res, 404, { error: 'no such blob' });
    sendBytes(req, res, f.data, { headers: { etag: `"cdn-${sha.slice(0, 16)}"` } });
  });
  const cdnTracked = track(cdn);
  await listen(cdn);
  const cdnUrl = `http://127.0.0.1:${(cdn.address() as AddressInfo).port}`;

  const hub = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    const parts = u.pathname.split('/').slice(1).map(decodeURIComponent);
    const api = parts[0] === 'api';
    if (api) parts.shift();
    let kind = '';
    if (parts[0] === 'datasets' || parts[0] === 'spaces' || (api && parts[0] === 'models')) kind = parts.shift()!;
    const repoName = `${kind === '' || kind === 'models' ? '' : `${kind}/`}${parts[0]}/${parts[1]}`;
    const [, , verb, rev, ...rest] = parts;
    const revisions = repos.get(repoName);
    const need = tokens.get(repoName);
    if (revisions === undefined || (need !== undefined && req.headers.authorization !== `Bearer ${need}`)) {
      return sendJson(res, 401, { error: 'Repository not found' }, { 'x-error-code': 'RepoNotFound', 'x-error-message': 'Repository not found' });
    }
    const files = revisions.get(rev ?? '');
    if (files === undefined) return sendJson(res, 404, { error: `Revision Not Found for url: ${u.pathname}` }, { 'x-error-code': 'RevisionNotFound' });
    const path = rest.join('/');
    if (api && verb === 'tree') return tree(req, res, u, files, path);
    if (verb !== 'resolve') return sendJson(res, 404, { error: 'no such route' });
    const f = files.get(path);
    if (f === undefined) return sendJson(res, 404, { error: 'Entry not found' }, { 'x-error-code': 'EntryNotFound', 'x-error-message': 'Entry not found' });
    const common = { 'x-repo-commit': 'c0ffee', etag: `"${f.sha.slice(0, 40)}"` };
    if (f.data.length < LFS_MIN) return sendBytes(req, res, f.data, { headers: common });
    res.writeHead(302, { ...common, location: `${cdnUrl}/cdn/${f.sha}`, 'x-linked-size': String(f.data.length), 'x-linked-etag': `"${f.sha}"`, 'content-length': '0' });
    res.end();
  });
  const hubTracked = track(hub);
  await listen(hub);

  function tree(_req: http.IncomingMessage, res: http.ServerResponse, u: URL, files: Map<string, Stored>, dir: string): void {
    const under = [...files.entries()].filter(([p]) => dir === '' || p.startsWith(`${dir}/`));
    if (under.length === 0 && dir !== '') return sendJson(res, 404, { error: 'Entry not found' }, { 'x-error-code': 'EntryNotFound' });
    // The Hub's order is its own: reversed here, so a client that trusts it lists wrongly.
    const all = under.map(([p, f]) => ({ type: 'file', path: p, size: f.data.length, oid: f.sha.slice(0, 40), ...(f.data.length >= LFS_MIN ? { lfs: { oid: f.sha, size: f.data.length } } : {}) })).reverse();
    const cursor = Number(u.searchParams.get('cursor') ?? '0');
    const page = all.slice(cursor, cursor + TREE_PAGE);
    const headers: Record<string, string> = {};
    if (cursor + TREE_PAGE < all.length) {
      const next = new URL(u.href.replace('http://x', hubUrl));
      next.searchParams.set('cursor', String(cursor + TREE_PAGE));
      headers.link = `<${next.href}>; rel="next"`;
    }
    sendJson(res, 200, page, headers);
  }

  const hubUrl = `http://127.0.0.1:${(hub.address() as AddressInfo).port}`;
  return {
    url: hubUrl,
    hub: hubTracked,
    cdn: cdnTracked,
    leakedAuth,
    put: (repo, path, data, revision = 'main') => {
      const sha = createHash('sha256').update(data).digest('hex');
      const f = { data, sha };
      blobs.set(sha, f);
      if (!repos.has(repo)) repos.set(repo, new Map());
      const revs = repos.get(repo)!;
      if (!revs.has(revision)) revs.set(revision, new Map());
      revs.get(revision)!.set(path, f);
    },
    privateRepo: (repo, token) => tokens.set(repo, token),
    close: async () => {
      for (const s of [hub, cdn]) {
        s.closeAllConnections();
        await new Promise<void>((resolve) => s.close(() => resolve()));
      }
    },
  };
}

function listen(s: http.Server): Promise<void> {
  return new Promise((resolve) => s.listen(0, '127.0.0.1', resolve));
}
