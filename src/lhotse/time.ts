/**
 * Lhotse's seconds -> samples rounding, bit for bit (`lhotse/utils.py: compute_num_samples`):
 * `int(Decimal(round(seconds * rate, 8)).quantize(0, ROUND_HALF_UP))`.
 *
 * `seconds * rate` is the same IEEE product in both languages. Python's `round(x, 8)` and JS
 * `toFixed(8)` both round the exact binary value; they differ only on exact ties at the ninth
 * decimal (half-even against half-up), and no such tie can sit at x.5 after eight decimals
 * (a tie needs x = k/512, whose fraction is never .499999995), so the integer is the same.
 */

/** Samples in `seconds` at `rate`, as Lhotse counts them. */
export function computeNumSamples(seconds: number, rate: number): number {
  const x = seconds * rate;
  if (!Number.isFinite(x) || Math.abs(x) >= 1e21) throw new RangeError(`not a usable time: ${seconds} s at ${rate} Hz`);
  const fixed = Math.abs(x).toFixed(8);
  const dot = fixed.indexOf('.');
  let n = Number(fixed.slice(0, dot));
  if (fixed.charCodeAt(dot + 1) >= 53 /* '5' */) n += 1; // ROUND_HALF_UP: ties away from zero
  return x < 0 ? -n : n;
}
