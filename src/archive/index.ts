import type { ArchiveFormat } from '../spec/format.js';
import { CompressedTarWriter, gzipCodec, lz4Codec } from './compress.js';
import { TarWriter } from './tar.js';
import type { ArchiveWriter } from './types.js';
import { ZipWriter } from './zip.js';

export type { ArchiveWriter, EntryBody, EntryHeader } from './types.js';
export { TarWriter } from './tar.js';

export interface ArchiveOptions {
  /** gzip level for .tgz (1-9, default 1); for .zip, DEFLATE at this level instead of STORE. */
  level?: number;
}

export function createArchiveWriter(format: ArchiveFormat, opts: ArchiveOptions = {}): ArchiveWriter {
  switch (format) {
    case 'tar':
      return new TarWriter();
    case 'tgz':
      return new CompressedTarWriter(gzipCodec(opts.level));
    case 'tar.lz4':
      return new CompressedTarWriter(lz4Codec());
    case 'zip':
      return new ZipWriter({ deflateLevel: opts.level });
  }
}
