/**
 * Plain HTTP(S) requests for the providers that speak HTTP themselves (http, hf, the media
 * downloads of gs): undici with a keep-alive pool, redirects followed by hand so that every hop
 * is checked against the SSRF policy, and the body closed (socket and all) on abort.
 */
import * as dns from 'node:dns';
import * as net from 'node:net';
import { Agent, type Dispatcher } from 'undici';
import { OjsError, throwIfAborted, type ErrorContext } from '../spec/errors.js';
import { exchange, type ExchangeBody, type ExchangeHead } from './exchange.js';
import { header, networkError } from './remote.js';

const KEEP_ALIVE_MS = 30_000; // idle sockets kept this long; servers (nginx 75 s, S3 ~20 s) close later or earlier, both fine
const CONNECT_TIMEOUT_MS = 30_000; // undici's own connect limit (10 s) would fail a slow DNS before our layers decide
const REDIRECT_DRAIN_MAX = 64 << 10; // a redirect's body is read this far to keep its socket; past that the socket is closed
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

/** Which hosts may be reached (the SSRF policy of registry.ts, repeated here to keep imports one-way). */
export interface HostPolicy {
  allowHosts?: string[];
  allowPrivate?: boolean;
}

export interface WebResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: ExchangeBody;
  /** The URL that answered, after redirects. */
  url: URL;
  /** Headers of every hop, first request first (the last is `headers`). */
  hops: { url: URL; headers: Record<string, string | string[] | undefined> }[];
}

export interface WebRequest {
  method: 'GET' | 'HEAD';
  url: URL;
  headers: Record<string, string>;
  signal: AbortSignal;
  context: ErrorContext;
  /** Redirects to follow; 0 returns the redirect itself. */
  maxRedirects: number;
  /** Follow only redirects to the same origin (a HEAD that must not leave the Hub). */
  sameOriginOnly?: boolean;
  /** What the message says was being done, e.g. "http". */
  provider: string;
}

/** A pooled client that refuses hosts outside the policy, checked on every connect. */
export class WebClient {
  readonly dispatcher: Dispatcher;

  constructor(
    private readonly policy: HostPolicy,
    connections: number,
  ) {
    const lookup = policy.allowPrivate === true ? undefined : checkedLookup;
    this.dispatcher = new Agent({
      connections,
      keepAliveTimeout: KEEP_ALIVE_MS,
      connect: { timeout: CONNECT_TIMEOUT_MS, ...(lookup === undefined ? {} : { lookup }) },
    });
  }

  /** One request, following redirects; Authorization is dropped when a redirect leaves the origin. */
  async send(req: WebRequest): Promise<WebResponse> {
    let url = req.url;
    let headers = { ...req.headers };
    const hops: WebResponse['hops'] = [];
    for (let hop = 0; ; hop++) {
      throwIfAborted(req.signal);
      this.check(url, req.context);
      let res: ExchangeHead;
      try {
        res = await exchange(this.dispatcher, url, req.method, headers, req.signal);
      } catch (e) {
        throw networkError(e, `${req.provider}: ${req.method} ${url.origin} failed`, req.context, req.signal);
      }
      const resHeaders = res.headers;
      hops.push({ url, headers: resHeaders });
      const location = header(resHeaders, 'location');
      if (!REDIRECT_STATUSES.has(res.status) || location === undefined || hop >= req.maxRedirects) {
        return { status: res.status, headers: resHeaders, body: res.body, url, hops };
      }
      const next = new URL(location, url);
      if (req.sameOriginOnly === true && next.origin !== url.origin) {
        return { status: res.status, headers: resHeaders, body: res.body, url, hops };
      }
      await res.body.dump(REDIRECT_DRAIN_MAX);
      if (next.protocol !== 'http:' && next.protocol !== 'https:') {
        throw new OjsError('Forbidden', `${req.provider}: redirect to '${next.protocol}' refused`, { context: req.context });
      }
      if (next.origin !== url.origin) {
        const { authorization: _drop, ...rest } = headers;
        headers = rest;
      }
      url = next;
    }
  }

  /** Host allow-list and, for IP literals, the private-address rule (names are checked on connect). */
  private check(url: URL, context: ErrorContext): void {
    if (this.policy.allowHosts !== undefined && !hostAllowed(url, this.policy.allowHosts)) {
      throw new OjsError('Forbidden', `host '${url.host}' is not allowed here (allowed: ${this.policy.allowHosts.join(', ') || 'none'})`, {
        code: 'ERR_HOST_NOT_ALLOWED',
        context,
      });
    }
    if (this.policy.allowPrivate === true) return;
    const host = url.hostname.replace(/^\[|\]$/g, '');
    if (net.isIP(host) !== 0 && isPrivateAddress(host)) throw privateRefused(url.hostname, host, context);
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }
}

/** Closes a body we will not read (and its socket, unless the response is complete). */
export function discard(res: WebResponse): void {
  res.body.destroy();
}

/** Reads a body we do not need, so that its socket can serve the next request; a long one is cut. */
export async function drain(res: WebResponse): Promise<void> {
  await res.body.dump(REDIRECT_DRAIN_MAX);
}

/** Up to `max` bytes of a body as text (error messages); the rest is dropped with the socket. */
export async function readText(res: WebResponse, max: number): Promise<string> {
  const b = await res.body.collect(max, true).catch(() => Buffer.alloc(0));
  return b.toString('utf8');
}

/** `host`, `host:port`, `*.domain`, `*.domain:port`, `[v6]`, `[v6]:port`; a pattern without a port allows any port. */
export function hostAllowed(url: URL, patterns: string[]): boolean {
  const host = url.hostname.toLowerCase().replace(/^\[|\]$/g, '');
  const port = url.port === '' ? (url.protocol === 'https:' ? '443' : '80') : url.port;
  return patterns.some((raw) => {
    const { name, port: want } = splitHostPattern(raw.trim().toLowerCase());
    if (want !== undefined && want !== port) return false;
    if (name.startsWith('*.')) return host.endsWith(name.slice(1)) && host.length > name.length - 1;
    return host === name;
  });
}

function splitHostPattern(p: string): { name: string; port?: string } {
  if (p.startsWith('[')) {
    const end = p.indexOf(']');
    const rest = p.slice(end + 1);
    return { name: p.slice(1, end), port: rest.startsWith(':') ? rest.slice(1) : undefined };
  }
  const colon = p.indexOf(':');
  // More than one colon: a bare IPv6 address, no port.
  if (colon < 0 || colon !== p.lastIndexOf(':')) return { name: p };
  return { name: p.slice(0, colon), port: p.slice(colon + 1) };
}

const PRIVATE = new net.BlockList();
for (const [a, bits] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 3],
] as const) {
  PRIVATE.addSubnet(a, bits, 'ipv4');
}
for (const [a, bits] of [
  ['::', 128],
  ['::1', 128],
  ['64:ff9b::', 96],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
] as const) {
  PRIVATE.addSubnet(a, bits, 'ipv6');
}

/** Loopback, private, link-local, unique-local, CGNAT, multicast and unspecified addresses. */
export function isPrivateAddress(ip: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped !== null) return PRIVATE.check(mapped[1]!, 'ipv4');
  const family = net.isIP(ip);
  if (family === 0) return false;
  return PRIVATE.check(ip, family === 4 ? 'ipv4' : 'ipv6');
}

function privateRefused(host: string, ip: string, context: ErrorContext): OjsError {
  const where = host === ip ? `'${host}' is` : `'${host}' resolves to ${ip}, which is`;
  return new OjsError('Forbidden', `host ${where} a loopback, private or link-local address; not reached unless private addresses are allowed`, {
    code: 'ERR_HOST_NOT_ALLOWED',
    context,
  });
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | dns.LookupAddress[], family?: number) => void;

/** dns.lookup for net.connect that fails for private addresses: checked where the connection is made, so DNS rebinding cannot slip past. */
function checkedLookup(hostname: string, options: dns.LookupOptions, cb: LookupCallback): void {
  dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err !== null) return cb(err, []);
    const bad = addresses.find((a) => isPrivateAddress(a.address));
    if (bad !== undefined) return cb(privateRefused(hostname, bad.address, {}) as unknown as NodeJS.ErrnoException, []);
    if (options.all === true) return cb(null, addresses);
    const first = addresses[0];
    if (first === undefined) return cb(Object.assign(new Error(`no address for ${hostname}`), { code: 'ENOTFOUND' }), []);
    cb(null, first.address, first.family);
  });
}
