/**
 * The one place that lists providers. Callers ask for a provider by its canonical name and get
 * a ready source, or an Unsupported error that says what is available.
 */
import { OjsError } from '../spec/errors.js';
import type { Provider } from '../spec/uri.js';
import { FileSource, type FileSourceOptions } from './file.js';
import type { ObjectSource } from './types.js';

export interface SourcesConfig {
  file?: FileSourceOptions;
}

/** Providers this build can read, and which issue brings the others. */
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

  constructor(config: SourcesConfig = {}) {
    if (config.file !== undefined) this.sources.set('file', new FileSource(config.file));
  }

  /** Adds or replaces a source; tests and embedders use it to plug in their own. */
  register(source: ObjectSource): this {
    this.sources.set(source.provider, source);
    return this;
  }

  get(provider: Provider): ObjectSource {
    const s = this.sources.get(provider);
    if (s !== undefined) return s;
    const why = PLANNED[provider] ?? (provider === 'file' ? 'no file roots are configured (--root NAME=DIR)' : 'not configured');
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
