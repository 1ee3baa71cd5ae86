import { OjsError } from '../spec/errors.js';
import type { ArchiveFormat } from '../spec/format.js';
import { TarWriter } from './tar.js';
import type { ArchiveWriter } from './types.js';

export type { ArchiveWriter, EntryBody, EntryHeader } from './types.js';
export { TarWriter } from './tar.js';

/** A writer for the format; formats not built yet are an Unsupported error, never a TAR in disguise. */
export function createArchiveWriter(format: ArchiveFormat): ArchiveWriter {
  switch (format) {
    case 'tar':
      return new TarWriter();
    default:
      throw new OjsError('Unsupported', `output format '.${format}' is not available yet; this build writes .tar`, {
        code: 'ERR_UNSUPPORTED_FORMAT',
        context: { field: 'mime' },
      });
  }
}
