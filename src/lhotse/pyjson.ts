/**
 * JSON as Python's `json.dumps` writes it, which is what Lhotse's files hold: `", "` and `": "`
 * separators, and with `ensureAscii` (json.dumps' default, used for Shar's `<cut.id>.json`)
 * every character past ASCII as `\uXXXX`. Numbers are JavaScript's shortest form, which reads
 * back to the same double (Python writes `1e-05` where this writes `0.00001`, and `3.0` as `3`).
 */
export function pyJson(value: unknown, ensureAscii: boolean): string {
  const text = dump(value);
  return ensureAscii ? text.replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`) : text;
}

function dump(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (Array.isArray(v)) return `[${v.map(dump).join(', ')}]`;
  if (typeof v === 'object') {
    const parts = Object.entries(v as Record<string, unknown>)
      .filter(([, x]) => x !== undefined)
      .map(([k, x]) => `${JSON.stringify(k)}: ${dump(x)}`);
    return `{${parts.join(', ')}}`;
  }
  if (typeof v === 'number' && !Number.isFinite(v)) return Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity';
  return JSON.stringify(v);
}
