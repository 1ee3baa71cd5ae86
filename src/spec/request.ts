/**
 * The batch contract (AIStore GetBatch, `api/apc/ml.go`, plus our fixes):
 *
 * - A request names N entries; the archive holds exactly N entries in exactly that order, and the
 *   response metadata has one `out` row per entry, index-aligned. Duplicates are allowed.
 * - Names in the archive: `<bucket>/<objname>[/<archpath>]`, or `<objname>[/<archpath>]` with
 *   `onob`. A byte range adds nothing to the name.
 * - With `coer`, an entry that cannot be had (missing object or member, unreadable upstream) is a
 *   zero-size entry `__404__/<name>` and its `err_msg` says why; without `coer` the batch fails.
 *   Malformed entries and unsatisfiable ranges (416) fail the batch either way. `max_soft_errs`
 *   (ours; default unlimited) fails the batch once more entries than that went missing.
 * - Ranges: see range.ts. `opaque` is echoed back; standard or URL-safe base64 in, standard out.
 * - Ours, additive: an entry may give `uri` (`s3://b/k`, `file:///abs`, ...) instead of
 *   objname/bucket/provider.
 */
import { Ajv, type ErrorObject } from 'ajv';
import { OjsError } from './errors.js';
import { parseFormat, type ArchiveFormat } from './format.js';
import { checkRange, type ByteRange } from './range.js';
import { normalizeProvider, objectNameProblem, parseObjectUri, type ObjectLocation, type Provider } from './uri.js';

/** One requested entry, as on the wire. */
export interface MossIn {
  objname?: string;
  bucket?: string;
  provider?: string;
  uname?: string;
  archpath?: string;
  opaque?: string;
  start?: number;
  length?: number;
  uri?: string;
}

/** A batch request, as on the wire. */
export interface MossReq {
  mime?: string;
  in: MossIn[];
  coer?: boolean;
  onob?: boolean;
  strm?: boolean;
  coloc?: number;
  max_soft_errs?: number;
}

/** One row of the response metadata, index-aligned with `in`. */
export interface MossOut {
  objname: string;
  archpath?: string;
  bucket: string;
  provider: string;
  err_msg?: string;
  opaque?: string;
  size: number;
}

export interface MossResp {
  uuid: string;
  out: MossOut[];
}

export const MISSING_DIR = '__404__';

export interface BatchRequest {
  format: ArchiveFormat;
  entries: BatchEntry[];
  coer: boolean;
  onob: boolean;
  strm: boolean;
  coloc: 0 | 1 | 2;
  /** Missing entries allowed under `coer` before the batch fails; Infinity when unlimited. */
  maxSoftErrors: number;
}

/** What the URL path, query or CLI arguments supply to entries that name no bucket/provider. */
export interface RequestDefaults {
  bucket?: string;
  provider?: string;
}

const ENTRY_FIELDS = ['objname', 'bucket', 'provider', 'uname', 'archpath', 'opaque', 'start', 'length', 'uri'] as const;
const REQUEST_FIELDS = ['mime', 'in', 'coer', 'onob', 'strm', 'coloc', 'max_soft_errs'] as const;

/** JSON Schema of MossReq; the server's route schema and the CLI validate with the same one. */
export const MOSS_REQUEST_SCHEMA = {
  type: 'object',
  required: ['in'],
  additionalProperties: false,
  properties: {
    mime: { type: 'string' },
    in: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        additionalProperties: false,
        properties: {
          objname: { type: 'string' },
          bucket: { type: 'string' },
          provider: { type: 'string' },
          uname: { type: 'string' },
          archpath: { type: 'string' },
          opaque: { type: 'string' },
          start: { type: 'integer' },
          length: { type: 'integer' },
          uri: { type: 'string' },
        },
      },
    },
    coer: { type: 'boolean' },
    onob: { type: 'boolean' },
    strm: { type: 'boolean' },
    coloc: { type: 'integer', minimum: 0, maximum: 2 },
    max_soft_errs: { type: 'integer', minimum: -1 },
  },
} as const;

// The schema is ours and fixed, so ajv need not compile the meta-schema to check it at start-up
// (a third of the CLI's start time); the unit tests compile it with checking on.
const validateShape = new Ajv({ allErrors: false, strict: true, validateSchema: false }).compile<MossReq>(MOSS_REQUEST_SCHEMA);

/** `in/3/start` -> `in[3].start` */
function fieldPath(instancePath: string): string {
  return instancePath
    .split('/')
    .filter((p) => p !== '')
    .map((p, i) => (/^\d+$/.test(p) ? `[${p}]` : i === 0 ? p : `.${p}`))
    .join('');
}

function shapeError(e: ErrorObject): OjsError {
  const at = fieldPath(e.instancePath);
  const context = { field: at || 'request' };
  if (e.keyword === 'additionalProperties') {
    const extra = String((e.params as { additionalProperty: string }).additionalProperty);
    const accepted = at === '' ? REQUEST_FIELDS : ENTRY_FIELDS;
    return new OjsError('BadSpec', `${at === '' ? '' : `${at}: `}unknown field '${extra}'; accepted: ${accepted.join(', ')}`, { context });
  }
  if (e.keyword === 'required') {
    return new OjsError('BadSpec', `missing field '${String((e.params as { missingProperty: string }).missingProperty)}' (the list of entries)`, { context });
  }
  if (e.keyword === 'minItems' && at === 'in') return new OjsError('BadSpec', 'in: the batch names no entries (need at least one)', { context });
  return new OjsError('BadSpec', `${at || 'request'}: ${e.message ?? 'is invalid'}`, { context });
}

/** AIStore's spellings of the top-level keys (YAML field names, help-text names) -> wire keys. */
const TOP_LEVEL_ALIASES: Record<string, string> = {
  outputformat: 'mime',
  output_format: 'mime',
  continueonerr: 'coer',
  continue_on_err: 'coer',
  onlyobjname: 'onob',
  only_obj_name: 'onob',
  streamingget: 'strm',
  streaming_get: 'strm',
  colocation: 'coloc',
};

/** Renames AIStore-style top-level keys to wire keys; a key given both ways is an error. */
export function applyKeyAliases(raw: unknown): unknown {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return raw;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
    const key = TOP_LEVEL_ALIASES[k.toLowerCase()] ?? k;
    if (key in out) throw new OjsError('BadSpec', `'${k}' and '${key}' both given; use one`, { context: { field: key } });
    out[key] = v;
  }
  return out;
}

const B64_STD = /^[A-Za-z0-9+/]*={0,2}$/;
const B64_URL = /^[A-Za-z0-9_-]*={0,2}$/;

/** Accepts standard or URL-safe base64 (AIStore's Python SDK sends URL-safe); returns standard. */
export function normalizeOpaque(value: string, field: string): string {
  const v = value.trim();
  if (!B64_STD.test(v) && !B64_URL.test(v)) throw new OjsError('BadSpec', `${field}: not base64`, { context: { field } });
  const std = v.replace(/-/g, '+').replace(/_/g, '/');
  const bytes = Buffer.from(std, 'base64');
  const canonical = bytes.toString('base64');
  if (canonical.replace(/=+$/, '') !== std.replace(/=+$/, '')) {
    throw new OjsError('BadSpec', `${field}: not valid base64`, { context: { field } });
  }
  return canonical;
}

/** `<provider>/<namespace>/<bucket>/` (AIStore uname; the object part must be empty). */
function parseUname(uname: string, field: string): { provider: string; bucket: string } {
  const parts = uname.replace(/\/+$/, '').split('/');
  if (parts.length !== 3 || parts[0] === '' || parts[2] === '') {
    throw new OjsError('BadSpec', `${field}: '${uname}' is not of the form <provider>/<namespace>/<bucket>/`, { context: { field } });
  }
  return { provider: parts[0]!, bucket: parts[2]! };
}

function joinArchpath(name: string, archpath: string | undefined): string {
  if (archpath === undefined || archpath === '') return name;
  return archpath.startsWith('/') ? name + archpath : `${name}/${archpath}`;
}

function toEntry(raw: MossIn, index: number, onob: boolean, defaults: RequestDefaults, places: Map<string, Place>): BatchEntry {
  const at = `in[${index}]`;
  const ctx = { entry: index };
  const bad = (field: string, msg: string) => new OjsError('BadSpec', `${at}.${field}: ${msg}`, { context: { ...ctx, field } });

  let location: ObjectLocation;
  let providerName: string;
  if (raw.uri !== undefined) {
    for (const f of ['objname', 'bucket', 'provider', 'uname'] as const) {
      if (raw[f] !== undefined) throw bad(f, `give either 'uri' or '${f}', not both`);
    }
    location = parseObjectUri(raw.uri, `${at}.uri`);
    providerName = location.provider;
  } else {
    if (raw.objname === undefined) throw bad('objname', "required (or give 'uri')");
    const problem = objectNameProblem(raw.objname);
    if (problem !== undefined) throw bad('objname', problem);
    let bucket = raw.bucket ?? defaults.bucket;
    let givenProvider = raw.provider ?? defaults.provider;
    if (raw.uname !== undefined) {
      const u = parseUname(raw.uname, `${at}.uname`);
      bucket = u.bucket;
      givenProvider = u.provider;
    }
    if (bucket === undefined || bucket === '') throw bad('bucket', `missing for object '${raw.objname}' (give bucket, uname or uri, or a default bucket)`);
    if (givenProvider === undefined || givenProvider === '') givenProvider = 'ais';
    const provider: Provider = normalizeProvider(givenProvider, `${at}.provider`);
    location = { provider, bucket, key: raw.objname };
    providerName = givenProvider;
  }

  let archpath: string | undefined;
  if (raw.archpath !== undefined && raw.archpath !== '') {
    const problem = objectNameProblem(raw.archpath.replace(/^\/+/, ''));
    if (problem !== undefined) throw bad('archpath', problem);
    archpath = raw.archpath;
  }
  const range = checkRange(raw.start, raw.length, ctx);
  const opaque = raw.opaque === undefined ? undefined : normalizeOpaque(raw.opaque, `${at}.opaque`);
  return BatchEntry.of({ index, location, archpath, range, opaque, providerName }, onob, places);
}

/** What an entry is made of, for front ends that build entries themselves (Lhotse). */
export interface EntryFields {
  index: number;
  location: ObjectLocation;
  archpath?: string;
  range?: ByteRange;
  /** Standard base64. */
  opaque?: string;
  /** The name in the archive; default `<bucket>/<key>[/<archpath>]` (`<key>...` for bucket ''). */
  name?: string;
  /** The provider as the client named it; default the location's. */
  providerName?: string;
}

/** Where entries are read from and how they are named, shared by a request's entries. */
interface Place {
  readonly provider: Provider;
  readonly bucket: string;
  /** Names leave the bucket out (the request's `onob`). */
  readonly onob: boolean;
}

/** What few entries have: kept in one side object, so the common entry does not pay for it. */
interface EntryExtra {
  archpath?: string;
  opaque?: string;
  providerName?: string;
  name?: string;
}

/**
 * An entry after validation: where to read, what to call it, and what to echo back.
 *
 * Kept small, because a batch holds every entry for its whole run: as a plain object with its
 * location, range and name objects an entry took 208 bytes, this takes 82 (measured at 100,000
 * entries). What is derived (location, range, name) is built when asked; provider, bucket and
 * onob are one object shared by the request's entries; what is rare (archpath, opaque, a
 * provider alias, a name of its own) sits in one side object. It is a
 * class with private fields so that TypeScript refuses a spread copy (`{ ...entry }`, which
 * would lose the derived fields): change one with `withRange`.
 */
export class BatchEntry {
  private constructor(
    readonly index: number,
    /** Provider, bucket and onob, shared by all the entries of a request that have the same. */
    private readonly place: Place,
    private readonly key: string,
    /** 0 and 0: the whole object. */
    private readonly start: number,
    private readonly count: number,
    private readonly extra: EntryExtra | undefined,
  ) {}

  /** `places`: a request's cache of shared places (one per provider, bucket and onob). */
  static of(f: EntryFields, onob = false, places?: Map<string, Place>): BatchEntry {
    const extra: EntryExtra = {};
    if (f.archpath !== undefined) extra.archpath = f.archpath;
    if (f.opaque !== undefined) extra.opaque = f.opaque;
    if (f.providerName !== undefined && f.providerName !== f.location.provider) extra.providerName = f.providerName;
    if (f.name !== undefined) extra.name = f.name;
    const { provider, bucket, key } = f.location;
    const id = `${provider}\0${bucket}\0${onob ? 1 : 0}`;
    let place = places?.get(id);
    if (place === undefined) {
      place = { provider, bucket, onob };
      places?.set(id, place);
    }
    return new BatchEntry(f.index, place, key, f.range?.start ?? 0, f.range?.length ?? 0, Object.keys(extra).length === 0 ? undefined : extra);
  }

  /** The same entry reading another range of its object (undefined: the whole object). */
  withRange(range: ByteRange | undefined): BatchEntry {
    return new BatchEntry(this.index, this.place, this.key, range?.start ?? 0, range?.length ?? 0, this.extra);
  }

  get location(): ObjectLocation {
    return { provider: this.place.provider, bucket: this.place.bucket, key: this.key };
  }

  get range(): ByteRange | undefined {
    return this.start === 0 && this.count === 0 ? undefined : { start: this.start, length: this.count };
  }

  get archpath(): string | undefined {
    return this.extra?.archpath;
  }

  /** Standard base64, as echoed in `out[].opaque`. */
  get opaque(): string | undefined {
    return this.extra?.opaque;
  }

  /** The provider as the client named it, for `out[].provider`. */
  get providerName(): string {
    return this.extra?.providerName ?? this.place.provider;
  }

  /** Name in the output archive (a missing entry gets `__404__/` in front). */
  get name(): string {
    const given = this.extra?.name;
    if (given !== undefined) return given;
    const { bucket, onob } = this.place;
    const base = onob || bucket === '' ? this.key : `${bucket}/${this.key}`;
    return joinArchpath(base, this.extra?.archpath);
  }
}

/**
 * Validates a request (already parsed from JSON or YAML) and normalises it. Every message names
 * the entry index and the field.
 */
export function parseBatchRequest(raw: unknown, defaults: RequestDefaults = {}): BatchRequest {
  const req = applyKeyAliases(raw);
  if (req === null || typeof req !== 'object' || Array.isArray(req)) {
    throw new OjsError('BadSpec', 'a batch request is a JSON/YAML object with an "in" list of entries');
  }
  if (!validateShape(req)) throw shapeError(validateShape.errors![0]!);
  const onob = req.onob ?? false;
  const places = new Map<string, Place>();
  const entries = req.in.map((e, i) => toEntry(e, i, onob, defaults, places));
  const cap = req.max_soft_errs;
  return {
    format: parseFormat(req.mime),
    entries,
    coer: req.coer ?? false,
    onob,
    strm: req.strm ?? false,
    coloc: (req.coloc ?? 0) as 0 | 1 | 2,
    maxSoftErrors: cap === undefined || cap < 0 ? Infinity : cap,
  };
}

/** The `out` row of an entry; `err` makes it the `__404__` placeholder. */
export function outRow(e: BatchEntry, size: number, err?: string): MossOut {
  // Key order as AIStore writes it, for clients that diff metadata byte-wise.
  const row: Partial<MossOut> = { objname: e.location.key };
  if (e.archpath !== undefined) row.archpath = e.archpath;
  row.bucket = e.location.bucket;
  row.provider = e.providerName;
  if (err !== undefined) row.err_msg = err;
  if (e.opaque !== undefined) row.opaque = e.opaque;
  row.size = size;
  return row as MossOut;
}

export function missingName(e: BatchEntry): string {
  return `${MISSING_DIR}/${e.name}`;
}
