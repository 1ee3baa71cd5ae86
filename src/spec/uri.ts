import { fileURLToPath } from 'node:url';
import { OjsError } from './errors.js';

/**
 * Providers by canonical name. AIStore's names (`aws`, `gcp`, `azure`, `oc`) and the short ones
 * (`s3`, `gs`, `az`, `oci`) are aliases; `hf`, `http`, `https` and `file` are ours.
 */
export type Provider = 'ais' | 's3' | 'gs' | 'az' | 'oci' | 'hf' | 'http' | 'https' | 'file';

const PROVIDER_ALIASES: Record<string, Provider> = {
  ais: 'ais',
  aws: 's3',
  s3: 's3',
  gcp: 'gs',
  gs: 'gs',
  azure: 'az',
  az: 'az',
  oci: 'oci',
  oc: 'oci',
  hf: 'hf',
  http: 'http',
  https: 'https',
  file: 'file',
};

export const PROVIDER_NAMES = Object.keys(PROVIDER_ALIASES);

/** Where one object lives, in provider terms; `key` never starts with '/'. */
export interface ObjectLocation {
  provider: Provider;
  bucket: string;
  key: string;
}

export function normalizeProvider(p: string, field = 'provider'): Provider {
  const canonical = PROVIDER_ALIASES[p.trim().toLowerCase()];
  if (canonical === undefined) {
    throw new OjsError('BadSpec', `${field}: unknown provider '${p}'; accepted: ${PROVIDER_NAMES.join(', ')}`, {
      context: { field },
    });
  }
  return canonical;
}

/**
 * AIStore's object-name rules: not empty, no trailing '/', no '.' or '..' component, no leading
 * '~/'. Returns a reason, or undefined when the name is fine.
 */
export function objectNameProblem(name: string): string | undefined {
  if (name === '') return 'must not be empty';
  if (name.endsWith('/')) return 'must not end with "/"';
  if (name.startsWith('~/')) return 'must not start with "~/"';
  if (name.includes('\0')) return 'must not contain a NUL byte';
  const dots = DOT_COMPONENT.exec(name);
  if (dots !== null) return `must not contain a "${dots[1]}" path component`;
  return undefined;
}

const DOT_COMPONENT = /(?:^|\/)(\.\.?)(?:\/|$)/;

const SCHEME_RE = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//;

/** True when the string starts like `scheme://`. */
export function hasScheme(s: string): boolean {
  return SCHEME_RE.test(s);
}

/**
 * A bucket-or-prefix URI: `s3://bucket[/prefix]`, `gs://...`, `az://container[/prefix]`,
 * `hf://datasets/ORG/NAME[@REV][/prefix]`, `file:///abs/dir`. The prefix may be empty.
 */
export function parseBucketUri(uri: string, field = 'uri'): ObjectLocation {
  return parseUri(uri, field, true);
}

/** An object URI; see parseBucketUri for the forms. The key must name an object. */
export function parseObjectUri(uri: string, field = 'uri'): ObjectLocation {
  return parseUri(uri, field, false);
}

function parseUri(uri: string, field: string, allowEmptyKey: boolean): ObjectLocation {
  const m = SCHEME_RE.exec(uri);
  if (m === null) throw bad(field, `'${uri}' is not a URI (expected scheme://...)`);
  const scheme = m[1]!.toLowerCase();
  const rest = uri.slice(m[0].length);
  switch (scheme) {
    case 'http':
    case 'https':
      return parseHttp(uri, scheme, field);
    case 'file':
      return parseFile(uri, field, allowEmptyKey);
    case 'hf':
      return parseHf(rest, field, allowEmptyKey);
    default: {
      const provider = PROVIDER_ALIASES[scheme];
      if (provider === undefined || provider === 'hf' || provider === 'file') {
        throw bad(field, `unsupported URI scheme '${scheme}://' in '${uri}'; accepted: s3, gs, az, ais, oci, hf, http, https, file`);
      }
      const slash = rest.indexOf('/');
      const bucket = slash < 0 ? rest : rest.slice(0, slash);
      const key = slash < 0 ? '' : rest.slice(slash + 1);
      if (bucket === '') throw bad(field, `'${uri}' names no bucket`);
      return checkKey({ provider, bucket, key }, field, allowEmptyKey, uri);
    }
  }
}

function parseHttp(uri: string, scheme: 'http' | 'https', field: string): ObjectLocation {
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    throw bad(field, `'${uri}' is not a valid URL`);
  }
  if (u.username !== '' || u.password !== '') throw bad(field, 'credentials in URLs are not accepted; pass them out of band');
  const key = (u.pathname + u.search).replace(/^\//, '');
  return { provider: scheme, bucket: u.host, key };
}

function parseFile(uri: string, field: string, allowEmptyKey: boolean): ObjectLocation {
  let path: string;
  try {
    path = fileURLToPath(uri);
  } catch (e) {
    throw bad(field, `'${uri}' is not a valid file URI (expected file:///absolute/path): ${(e as Error).message}`);
  }
  return checkKey({ provider: 'file', bucket: '', key: path.replace(/^\/+/, '') }, field, allowEmptyKey, uri);
}

/** `hf://[datasets/|spaces/|models/]ORG/NAME[@REV]/path`; the repo (with revision) is the bucket. */
function parseHf(rest: string, field: string, allowEmptyKey: boolean): ObjectLocation {
  const parts = rest.split('/');
  let kind = '';
  if (parts[0] === 'datasets' || parts[0] === 'spaces' || parts[0] === 'models') kind = parts.shift()!;
  if (parts.length < 2 || parts[0] === '' || parts[1] === '') {
    throw bad(field, `'hf://${rest}' names no repository (expected hf://datasets/ORG/NAME[@REV]/path)`);
  }
  const org = parts.shift()!;
  const name = parts.shift()!;
  const repo = kind === '' || kind === 'models' ? `${org}/${name}` : `${kind}/${org}/${name}`;
  return checkKey({ provider: 'hf', bucket: repo, key: parts.join('/') }, field, allowEmptyKey, `hf://${rest}`);
}

function checkKey(loc: ObjectLocation, field: string, allowEmptyKey: boolean, uri: string): ObjectLocation {
  if (loc.key === '' && allowEmptyKey) return loc;
  const problem = objectNameProblem(loc.key);
  if (problem !== undefined) throw bad(field, `object name in '${uri}' ${problem}`);
  return loc;
}

function bad(field: string, message: string): OjsError {
  return new OjsError('BadSpec', `${field}: ${message}`, { context: { field } });
}

/** The URI a location reads back as; used in messages and listings. */
export function formatLocation(loc: ObjectLocation): string {
  switch (loc.provider) {
    case 'http':
    case 'https':
      return `${loc.provider}://${loc.bucket}/${loc.key}`;
    case 'file':
      return loc.bucket === '' ? `file:///${loc.key}` : `file://${loc.bucket}/${loc.key}`;
    default:
      return `${loc.provider}://${loc.bucket}/${loc.key}`;
  }
}
