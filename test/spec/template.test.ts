import { describe, expect, it } from 'vitest';
import { err } from '../helpers/errors.js';
import { expandTemplate, templateSize } from '../../src/spec/template.js';

const all = (t: string) => [...expandTemplate(t)];

describe('templates', () => {
  it('expands p-{000..099}.bin to 100 zero-padded names, in order', () => {
    const names = all('p-{000..099}.bin');
    expect(names).toHaveLength(100);
    expect(names).toEqual(Array.from({ length: 100 }, (_, i) => `p-${String(i).padStart(3, '0')}.bin`));
    expect(templateSize('p-{000..099}.bin')).toBe(100);
  });

  it('keeps the padding of the start past the width, and pads nothing without a leading zero', () => {
    expect(all('{08..11}')).toEqual(['08', '09', '10', '11']);
    expect(all('{8..11}')).toEqual(['8', '9', '10', '11']);
    expect(all('{98..101}')).toEqual(['98', '99', '100', '101']);
    expect(all('{0..2}')).toEqual(['0', '1', '2']);
  });

  it('steps: {0..10..5} and a step that does not land on the end', () => {
    expect(all('{0..10..5}')).toEqual(['0', '5', '10']);
    expect(all('{1..10..4}')).toEqual(['1', '5', '9']);
    expect(all('s-{00..20..10}.tar')).toEqual(['s-00.tar', 's-10.tar', 's-20.tar']);
    expect(all('{3..3}')).toEqual(['3']);
  });

  it('expands lists, and several groups as a cartesian product, leftmost slowest', () => {
    expect(all('{a,b,c}.wav')).toEqual(['a.wav', 'b.wav', 'c.wav']);
    expect(all('{a,b}-{1..2}')).toEqual(['a-1', 'a-2', 'b-1', 'b-2']);
    expect(all('d{1..2}/{x,y}/f{0..1}')).toEqual(['d1/x/f0', 'd1/x/f1', 'd1/y/f0', 'd1/y/f1', 'd2/x/f0', 'd2/x/f1', 'd2/y/f0', 'd2/y/f1']);
    expect(templateSize('x{1..3}{a,b}')).toBe(6);
    expect(all('x{1..3}{a,b}')).toHaveLength(6);
  });

  it('expands lazily, so a large template costs nothing until read', () => {
    const it = expandTemplate('shard-{000000..999999}.tar');
    expect(it.next().value).toBe('shard-000000.tar');
    expect(it.next().value).toBe('shard-000001.tar');
    expect(templateSize('shard-{000000..999999}.tar')).toBe(1_000_000);
  });

  it('refuses a template without a group, as BadSpec', () => {
    for (const t of ['plain.bin', '', 'a}b']) {
      const e = err(() => templateSize(t));
      expect(e.kind, t).toBe('BadSpec');
      expect(e.message, t).toBe(`template '${t}': holds no {..} range or {a,b} list`);
      expect(err(() => all(t)).kind).toBe('BadSpec');
    }
  });

  it('refuses broken groups', () => {
    expect(err(() => templateSize('{5..1}')).message).toMatch(/runs backwards/);
    expect(err(() => templateSize('{1..3')).message).toMatch(/unclosed '\{' at position 0/);
    expect(err(() => templateSize('a{x}')).message).toMatch(/'\{x\}' is neither a range/);
    expect(err(() => templateSize('{1..5..0}')).message).toMatch(/step must be positive/);
    expect(err(() => templateSize('{}')).kind).toBe('BadSpec');
    expect(err(() => templateSize('{1...3}')).kind).toBe('BadSpec');
  });

  it('refuses to expand more than ten million names', () => {
    const t = '{0..9999}-{0..9999}';
    expect(templateSize(t)).toBe(100_000_000);
    expect(err(() => all(t)).message).toMatch(/expands to 100000000 names/);
  });
});
