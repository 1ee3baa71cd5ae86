import { OjsError, type ErrorContext } from './errors.js';

/**
 * Byte ranges as the wire has them (AIStore `start`/`length`):
 *   (0, 0)      the whole object
 *   (N, L > 0)  exactly L bytes from offset N
 *   (N, -1)     from offset N to the end
 *   start > 0 with length 0 is not satisfiable (416); negative start or length < -1 is a bad spec.
 * Once the object's size is known, a range that does not fit is 416 as well.
 */
export interface ByteRange {
  start: number;
  /** -1 means "to the end of the object". */
  length: number;
}

/** A range resolved against a known size: exact offset and byte count. */
export interface ResolvedRange {
  offset: number;
  length: number;
}

/** Checks start/length as given; returns undefined for "whole object". */
export function checkRange(start: number | undefined, length: number | undefined, ctx: ErrorContext = {}): ByteRange | undefined {
  const s = start ?? 0;
  const l = length ?? 0;
  const where = ctx.entry === undefined ? '' : `in[${ctx.entry}]: `;
  if (!Number.isSafeInteger(s) || s < 0) {
    throw new OjsError('BadSpec', `${where}start must be a non-negative integer, got ${String(start)}`, { context: { ...ctx, field: 'start' } });
  }
  if (!Number.isSafeInteger(l) || l < -1) {
    throw new OjsError('BadSpec', `${where}length must be an integer >= -1, got ${String(length)}`, { context: { ...ctx, field: 'length' } });
  }
  if (s === 0 && l === 0) return undefined;
  if (l === 0) {
    throw new OjsError('Range', `${where}range start=${s} length=0 is not satisfiable (length 0 means the whole object only with start 0)`, {
      context: { ...ctx, field: 'length', range: { start: s, length: l } },
    });
  }
  return { start: s, length: l };
}

/** Resolves a range against the object's size, or throws a Range error (HTTP 416). */
export function resolveRange(range: ByteRange | undefined, size: number, ctx: ErrorContext = {}): ResolvedRange {
  if (range === undefined) return { offset: 0, length: size };
  const { start, length } = range;
  const end = length === -1 ? size : start + length;
  if (start >= size || end > size) {
    const asked = length === -1 ? `bytes ${start}-end` : `bytes ${start}-${end - 1}`;
    throw new OjsError('Range', `range not satisfiable: ${asked} of an object of ${size} bytes`, {
      context: { ...ctx, range },
    });
  }
  return { offset: start, length: end - start };
}

/** HTTP Range header value for a resolved range (explicit first-last, never a suffix range). */
export function httpRangeHeader(r: ResolvedRange): string {
  return `bytes=${r.offset}-${r.offset + r.length - 1}`;
}
