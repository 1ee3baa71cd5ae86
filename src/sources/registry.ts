/**
 * The one place that lists providers. Callers ask for a provider by its canonical name and get
 * a ready source, or an Unsupported error that says what is available.
 *
 * Remote providers are built on first use and their SDK is imported then, not at start-up: the
 * cloud SDKs cost 100-300 ms of import time each, which a local-only run should never pay.
 */
import { OjsError } from '../spec/errors.js';
import type { Provider } from '../spec/uri.js';
import { FileSource, type FileSourceOptions } from './file.js';
import type { ListedObject, ObjectRef, ObjectSource, ObjectStat, OpenOptions, OpenedObject, SourceCapabilities } from './types.js';

/** Which hosts the http/https providers may reach (SSRF policy). */
export interface HttpPolicy {
  /** Host names (exact, or `*.example.com`), optionally with `:port`; undefined = any host. */
  allowHosts?: string[];
  /** Loopback, private, link-local and unique-local addresses; the CLI allows them, the server does not by default. */
  allowPrivate?: boolean;
}

export interface SourcesConfig {
  file?: FileSourceOptions;
  /** Remote providers the registry must not offer (e.g. a server that only serves local roots). */
  disable?: Provider[];
  http?: HttpPolicy;
  /** Per-provider options, passed to that provider's factory as they are. */
  remote?: Partial<Record<RemoteProvider, Record<string, unknown>>>;
}

export type RemoteProvider = 's3' | 'gs' | 'az' | 'hf' | 'http' | 'https';

/** What a remote provider module exports: a factory that builds a ready source. */
export type SourceFactory = (config: SourcesConfig) => Promise<ObjectSource>;

/**
 * One line per remote provider: its module, imported on first use. A provider not listed here
 * (or disabled) answers Unsupported with the reason in PLANNED.
 */
const LOADERS: Partial<Record<RemoteProvider, () => Promise<SourceFactory>>> = {};

const PLANNED: Partial<Record<Provider, string>> = {
  s3: 'planned (remote sources)',
  gs: 'planned (remote sources)',
  az: 'planned (remote sources)',
  hf: 'planned (remote sources)',
  http: 'planned (remote sources)',
  https: 'planned (remote sources)',
  ais: 'not supported: ojs-ml reads the backends directly, point entries at s3/gs/az/file instead',
  oci: 'not supported yet',
};

export class SourceRegistry {
  private readonly sources = new Map<Provider, ObjectSource>();

  constructor(private readonly config: SourcesConfig = {}) {
    if (config.file !== undefined) this.sources.set('file', new FileSource(config.file));
    for (const [p, load] of Object.entries(LOADERS) as [RemoteProvider, () => Promise<SourceFactory>][]) {
      if (config.disable?.includes(p) !== true) this.sources.set(p, new LazySource(p, async () => (await load())(this.config)));
    }
  }

  /** Adds or replaces a source; tests and embedders use it to plug in their own. */
  register(source: ObjectSource): this {
    this.sources.set(source.provider, source);
    return this;
  }

  get(provider: Provider): ObjectSource {
    const s = this.sources.get(provider);
    if (s !== undefined) return s;
    const why =
      this.config.disable?.includes(provider) === true
        ? 'disabled by configuration'
        : (PLANNED[provider] ?? (provider === 'file' ? 'no file roots are configured (--root NAME=DIR)' : 'not configured'));
    throw new OjsError('Unsupported', `provider '${provider}': ${why}; available: ${this.available().join(', ') || 'none'}`, {
      code: 'ERR_UNSUPPORTED_PROVIDER',
      context: { provider },
    });
  }

  has(provider: Provider): boolean {
    return this.sources.has(provider);
  }

  available(): Provider[] {
    return [...this.sources.keys()];
  }
}

/** A source whose module is imported, and whose client is built, on the first call. */
class LazySource implements ObjectSource {
  private inner: Promise<ObjectSource> | undefined;

  constructor(
    readonly provider: Provider,
    private readonly build: () => Promise<ObjectSource>,
  ) {}

  // Capabilities are known before loading: every remote provider reads ranges and lists.
  readonly capabilities: SourceCapabilities = { ranges: true, list: true, conditionalRead: true };

  private source(): Promise<ObjectSource> {
    this.inner ??= this.build().catch((e: unknown) => {
      this.inner = undefined; // a failed set-up (bad credentials file, say) is retried next call
      throw e;
    });
    return this.inner;
  }

  async stat(ref: ObjectRef, opts: { signal: AbortSignal }): Promise<ObjectStat> {
    return (await this.source()).stat(ref, opts);
  }

  async open(ref: ObjectRef, opts: OpenOptions): Promise<OpenedObject> {
    return (await this.source()).open(ref, opts);
  }

  async *list(bucket: string, prefix: string, opts: { signal: AbortSignal }): AsyncIterable<ListedObject> {
    yield* (await this.source()).list(bucket, prefix, opts);
  }
}
