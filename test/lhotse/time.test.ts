import { describe, expect, it } from 'vitest';
import { computeNumSamples } from '../../src/lhotse/time.js';
import { run } from '../helpers/tools.js';

/** Lhotse's compute_num_samples as lhotse/utils.py writes it, run by Python itself. */
const PY = `
import json, sys
from decimal import Decimal, ROUND_HALF_UP
pairs = json.load(sys.stdin)
print(json.dumps([int(Decimal(round(d * sr, ndigits=8)).quantize(0, rounding=ROUND_HALF_UP)) for d, sr in pairs]))
`;

function cases(): [number, number][] {
  const rates = [8000, 11025, 16000, 22050, 24000, 44100, 48000, 96000];
  const out: [number, number][] = [];
  let seed = 12345;
  const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  for (const sr of rates) {
    for (let i = 0; i < 1500; i++) {
      const kind = i % 5;
      let d: number;
      if (kind === 0) d = Math.round(rnd() * 360000) / 100; // two decimals, as most manifests
      else if (kind === 1) d = (Math.floor(rnd() * 1e6) + 0.5) / sr; // exactly half a sample (as close as a double gets)
      else if (kind === 2) d = Math.floor(rnd() * 1e6) / 512; // ties at the ninth decimal
      else if (kind === 3) d = rnd() * 7200; // any double
      else d = Number((rnd() * 100).toFixed(6)) + 1e-9 * Math.floor(rnd() * 10); // just past 8 decimals
      out.push([d, sr]);
    }
  }
  out.push([0, 16000], [2.6399999999999997, 16000], [0.00003125, 16000], [4.75, 16000], [3.2, 16000], [1e-12, 48000], [86400 * 365, 48000]);
  return out;
}

describe("Lhotse's seconds -> samples rounding", () => {
  it('agrees with Python Decimal ROUND_HALF_UP on 12,000 times, ties included', async () => {
    const pairs = cases();
    const r = await run('python3', ['-c', PY], { input: JSON.stringify(pairs) });
    expect(r.code, r.stderr).toBe(0);
    const want = JSON.parse(r.stdout.toString()) as number[];
    const got = pairs.map(([d, sr]) => computeNumSamples(d, sr));
    const wrong = pairs.filter((_, i) => got[i] !== want[i]).map((p, i) => ({ p, got: got[i], want: want[i] }));
    expect(wrong.slice(0, 5)).toEqual([]);
  });

  it('rounds half a sample up, as Lhotse does (not to even)', () => {
    expect(computeNumSamples(0.00003125, 16000)).toBe(1); // 0.5
    expect(computeNumSamples(0.00009375, 16000)).toBe(2); // 1.5
    expect(computeNumSamples(3.2, 16000)).toBe(51200);
    expect(computeNumSamples(4.75, 16000)).toBe(76000);
  });
});
