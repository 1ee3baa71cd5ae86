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
import { withLayers, type LayerOptions } from './layers/index.js';
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
  /** Per-provider options, passed to that provider's factory as they are (see each provider's options type). */
  remote?: Partial<Record<RemoteProvider, Record<string, unknown>>>;
  /** Timeouts, retries, concurrency and metrics hooks of the layers around every remote provider. */
  layers?: LayerOptions;
}

export type RemoteProvider = 's3' | 'gs' | 'az' | 'hf' | 'http' | 'https';

/** What a remote provider module exports: a factory that builds a ready source. */
export type SourceFactory = (config: SourcesConfig) => Promise<ObjectSource>;

/**
 * One line per remote provider: its module, imported on first use, and what it can do (known
 * before loading). A provider not listed here (or disabled) answers Unsupported with the reason
 * in PLANNED.
 */
const LOADERS: Record<RemoteProvider, { load: () => Promise<SourceFactory>; capabilities: SourceCapabilities }> = {
  s3: { load: async () => (await import('./s3.js')).createS3, capabilities: { ranges: true, list: true, conditionalRead: true, network: true } },
  gs: { load: async () => (await import('./gcs.js')).createGcs, capabilities: { ranges: true, list: true, conditionalRead: true, network: true } },
  az: { load: async () => (await import('./azure.js')).createAzure, capabilities: { ranges: true, list: true, conditionalRead: true, network: true } },
  hf: { load: async () => (await import('./hf.js')).createHf, capabilities: { ranges: true, list: true, conditionalRead: true, network: true } },
  http: { load: async () => (await import('./http.js')).createHttp, capabilities: { ranges: true, list: false, conditionalRead: true, network: true } },
  https: { load: async () => (await import('./http.js')).createHttps, capabilities: { ranges: true, list: false, conditionalRead: true, network: true } },
};

const PLANNED: Partial<Record<Provider, string>> = {
  ais: 'not supported yet: ojs-ml reads the backends directly, point entries at s3/gs/az/file instead',
  oci: 'not supported yet',
};

export class SourceRegistry {
  private readonly sources = new Map<Provider, ObjectSource>();

  constructor(private readonly config: SourcesConfig = {}) {
    if (config.file !== undefined) this.sources.set('file', new FileSource(config.file));
    for (const [p, { load, capabilities }] of Object.entries(LOADERS) as [RemoteProvider, (typeof LOADERS)[RemoteProvider]][]) {
      if (config.disable?.includes(p) === true) continue;
      const lazy = new LazySource(p, capabilities, async () => (await load())(this.config));
      this.sources.set(p, withLayers(lazy, config.layers));
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

  /** Closes the connection pools of the sources that were used. */
  async close(): Promise<void> {
    await Promise.all([...this.sources.values()].map((s) => s.close?.()));
  }
}

/** A source whose module is imported, and whose client is built, on the first call. */
class LazySource implements ObjectSource {
  private inner: Promise<ObjectSource> | undefined;

  constructor(
    readonly provider: Provider,
    readonly capabilities: SourceCapabilities,
    private readonly build: () => Promise<ObjectSource>,
  ) {}

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

  async close(): Promise<void> {
    const inner = this.inner;
    this.inner = undefined;
    await (await inner?.catch(() => undefined))?.close?.();
  }
}
