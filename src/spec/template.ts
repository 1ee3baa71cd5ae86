import { OjsError } from './errors.js';

/**
 * Brace templates as AIStore's CLI takes them: `shard-{0000..0999}.tar`, `{0..100..10}`,
 * `{a,b,c}`; several groups expand as a cartesian product, leftmost slowest. A number range keeps
 * the zero padding of its start. A template must hold at least one group.
 */
type Part = { lit: string } | { choices: (i: number) => string; count: number };

const MAX_EXPANSION = 10_000_000;

function parse(template: string): Part[] {
  const parts: Part[] = [];
  let lit = '';
  let i = 0;
  while (i < template.length) {
    const c = template[i]!;
    if (c !== '{') {
      lit += c;
      i++;
      continue;
    }
    const close = template.indexOf('}', i);
    if (close < 0) throw bad(template, `unclosed '{' at position ${i}`);
    if (lit !== '') parts.push({ lit });
    lit = '';
    parts.push(parseGroup(template, template.slice(i + 1, close)));
    i = close + 1;
  }
  if (lit !== '') parts.push({ lit });
  return parts;
}

function parseGroup(template: string, body: string): Part {
  const range = /^(-?\d+)\.\.(-?\d+)(?:\.\.(\d+))?$/.exec(body);
  if (range !== null) {
    const [, a, b, s] = range;
    const start = Number(a);
    const end = Number(b);
    const step = s === undefined ? 1 : Number(s);
    if (step <= 0) throw bad(template, `step must be positive in {${body}}`);
    if (end < start) throw bad(template, `range {${body}} runs backwards`);
    const width = a!.replace('-', '').length;
    const pad = a!.startsWith('0') && a!.length > 1;
    const count = Math.floor((end - start) / step) + 1;
    return { count, choices: (k) => { const n = start + k * step; return pad ? String(n).padStart(width, '0') : String(n); } };
  }
  if (body.includes(',')) {
    const items = body.split(',');
    return { count: items.length, choices: (k) => items[k]! };
  }
  throw bad(template, `'{${body}}' is neither a range {START..END[..STEP]} nor a list {a,b,c}`);
}

function bad(template: string, why: string): OjsError {
  return new OjsError('BadSpec', `template '${template}': ${why}`, { context: { field: 'template' } });
}

/** Number of names a template expands to. */
export function templateSize(template: string): number {
  const parts = parse(template);
  const groups = parts.filter((p): p is Extract<Part, { count: number }> => 'count' in p);
  if (groups.length === 0) throw bad(template, 'holds no {..} range or {a,b} list');
  return groups.reduce((n, g) => n * g.count, 1);
}

/** Every name of a template, in order. */
export function* expandTemplate(template: string): Generator<string> {
  const n = templateSize(template);
  if (n > MAX_EXPANSION) throw bad(template, `expands to ${n} names, more than ${MAX_EXPANSION}`);
  const parts = parse(template);
  const counts = parts.map((p) => ('count' in p ? p.count : 1));
  for (let k = 0; k < n; k++) {
    let rem = k;
    const out: string[] = new Array<string>(parts.length);
    for (let j = parts.length - 1; j >= 0; j--) {
      const p = parts[j]!;
      const c = counts[j]!;
      out[j] = 'lit' in p ? p.lit : p.choices(rem % c);
      rem = Math.floor(rem / c);
    }
    yield out.join('');
  }
}
