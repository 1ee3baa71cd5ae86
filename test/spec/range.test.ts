import { describe, expect, it } from 'vitest';
import { err } from '../helpers/errors.js';
import { checkRange, httpRangeHeader, resolveRange } from '../../src/spec/range.js';

describe('checkRange (the wire rules)', () => {
  it('reads (0,0) and an absent range as the whole object', () => {
    expect(checkRange(0, 0)).toBeUndefined();
    expect(checkRange(undefined, undefined)).toBeUndefined();
    expect(checkRange(0, undefined)).toBeUndefined();
    expect(checkRange(undefined, 0)).toBeUndefined();
  });

  it('reads (N, L>0) as exactly L bytes and (N, -1) as to the end', () => {
    expect(checkRange(5, 10)).toEqual({ start: 5, length: 10 });
    expect(checkRange(0, 1)).toEqual({ start: 0, length: 1 });
    expect(checkRange(undefined, 7)).toEqual({ start: 0, length: 7 });
    expect(checkRange(5, -1)).toEqual({ start: 5, length: -1 });
    expect(checkRange(0, -1)).toEqual({ start: 0, length: -1 });
    expect(checkRange(2 ** 40, 2 ** 33)).toEqual({ start: 2 ** 40, length: 2 ** 33 });
  });

  it('refuses start > 0 with length 0 as a Range error (416), not a bad spec', () => {
    for (const [s, l] of [
      [5, 0],
      [1, undefined],
    ] as const) {
      const e = err(() => checkRange(s, l));
      expect(e.kind).toBe('Range');
      expect(e.code).toBe('ERR_RANGE');
      expect(e.httpStatus).toBe(416);
      expect(e.context.range).toEqual({ start: s, length: 0 });
    }
  });

  it('refuses negative or non-integer values as BadSpec, naming the field', () => {
    const cases: [number, number, string][] = [
      [-1, 5, 'start'],
      [-1, 0, 'start'],
      [1.5, 2, 'start'],
      [Number.NaN, 2, 'start'],
      [Number.MAX_SAFE_INTEGER + 1, 1, 'start'],
      [0, -2, 'length'],
      [3, -100, 'length'],
      [0, 0.5, 'length'],
      [0, Number.POSITIVE_INFINITY, 'length'],
    ];
    for (const [s, l, field] of cases) {
      const e = err(() => checkRange(s, l));
      expect(e.kind, `${s},${l}`).toBe('BadSpec');
      expect(e.code).toBe('ERR_BAD_SPEC');
      expect(e.context.field, `${s},${l}`).toBe(field);
    }
  });

  it('names the entry when it is given one', () => {
    const e = err(() => checkRange(-4, 1, { entry: 7 }));
    expect(e.message).toBe('in[7]: start must be a non-negative integer, got -4');
    expect(e.context).toMatchObject({ entry: 7, field: 'start' });
    expect(err(() => checkRange(3, 0, { entry: 2 })).message).toMatch(/^in\[2\]: range start=3 length=0 is not satisfiable/);
  });
});

describe('resolveRange (against a known size)', () => {
  it('resolves inside the object', () => {
    expect(resolveRange(undefined, 10)).toEqual({ offset: 0, length: 10 });
    expect(resolveRange(undefined, 0)).toEqual({ offset: 0, length: 0 });
    expect(resolveRange({ start: 0, length: 10 }, 10)).toEqual({ offset: 0, length: 10 });
    expect(resolveRange({ start: 2, length: 3 }, 10)).toEqual({ offset: 2, length: 3 });
    expect(resolveRange({ start: 2, length: -1 }, 10)).toEqual({ offset: 2, length: 8 });
    expect(resolveRange({ start: 9, length: 1 }, 10)).toEqual({ offset: 9, length: 1 });
    expect(resolveRange({ start: 9, length: -1 }, 10)).toEqual({ offset: 9, length: 1 });
  });

  it('answers anything outside the object with a Range error (416), with the range and context', () => {
    const cases = [
      { start: 10, length: 1 },
      { start: 9, length: 2 },
      { start: 0, length: 11 },
      { start: 10, length: -1 },
      { start: 1000, length: -1 },
    ];
    for (const r of cases) {
      const e = err(() => resolveRange(r, 10, { bucket: 'b', key: 'k' }));
      expect(e.kind, JSON.stringify(r)).toBe('Range');
      expect(e.code).toBe('ERR_RANGE');
      expect(e.httpStatus).toBe(416);
      expect(e.context).toMatchObject({ bucket: 'b', key: 'k', range: r });
      expect(e.message).toMatch(/of an object of 10 bytes/);
    }
  });

  it('allows no range at all on a zero-byte object', () => {
    for (const r of [
      { start: 0, length: 1 },
      { start: 0, length: -1 },
    ]) {
      expect(err(() => resolveRange(r, 0)).kind).toBe('Range');
    }
  });

  it('writes explicit first-last HTTP ranges', () => {
    expect(httpRangeHeader({ offset: 0, length: 1 })).toBe('bytes=0-0');
    expect(httpRangeHeader(resolveRange({ start: 5, length: -1 }, 100))).toBe('bytes=5-99');
    expect(httpRangeHeader({ offset: 2 ** 33, length: 10 })).toBe(`bytes=${2 ** 33}-${2 ** 33 + 9}`);
  });
});
