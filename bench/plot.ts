/**
 * Line charts as standalone SVG, written by the bench next to its results (docs/benchmarks.md
 * shows them). No plotting dependency: a chart here is axes, log-scale ticks, a few polylines
 * and a legend, which a hundred lines cover.
 */

const WIDTH = 720;
const HEIGHT = 420;
const MARGIN = { left: 78, right: 200, top: 44, bottom: 58 };
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];
const DASHES = ['', '6 3', '2 3', '8 3 2 3']; // second cue besides colour, for print and colour blindness

export interface Series {
  name: string;
  /** [x, y]; points with y <= 0 on a log axis are left out. */
  points: [number, number][];
  /** Which colour and dash (default: its place in the chart): the same thing looks the same in every chart. */
  style?: number;
}

export interface Chart {
  title: string;
  xLabel: string;
  yLabel: string;
  xLog?: boolean;
  yLog?: boolean;
  /** Tick labels for x values (e.g. byte sizes as "10 KiB"). */
  xFormat?: (x: number) => string;
  /** Where x ticks go (default: powers of ten, or round steps). */
  xTicks?: number[];
  yFormat?: (y: number) => string;
  series: Series[];
}

export function lineChart(c: Chart): string {
  const pts = c.series.flatMap((s) => s.points).filter(([x, y]) => (!c.xLog || x > 0) && (!c.yLog || y > 0));
  if (pts.length === 0) return emptyChart(c.title);
  const xs = pts.map((p) => p[0]);
  const ys = pts.map((p) => p[1]);
  const xScale = scale(Math.min(...xs), Math.max(...xs), MARGIN.left, WIDTH - MARGIN.right, c.xLog === true);
  if (c.xTicks !== undefined) xScale.ticks = c.xTicks;
  const yScale = scale(c.yLog ? Math.min(...ys) : 0, Math.max(...ys), HEIGHT - MARGIN.bottom, MARGIN.top, c.yLog === true);
  const fx = c.xFormat ?? short;
  const fy = c.yFormat ?? short;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`,
    `<text x="${WIDTH / 2}" y="22" text-anchor="middle" font-size="15">${esc(c.title)}</text>`,
  ];
  for (const t of xScale.ticks) {
    const x = xScale.at(t);
    out.push(`<line x1="${x}" x2="${x}" y1="${MARGIN.top}" y2="${HEIGHT - MARGIN.bottom}" stroke="#e4e4e4"/>`);
    out.push(`<text x="${x}" y="${HEIGHT - MARGIN.bottom + 16}" text-anchor="middle">${esc(fx(t))}</text>`);
  }
  for (const t of yScale.ticks) {
    const y = yScale.at(t);
    out.push(`<line x1="${MARGIN.left}" x2="${WIDTH - MARGIN.right}" y1="${y}" y2="${y}" stroke="#e4e4e4"/>`);
    out.push(`<text x="${MARGIN.left - 6}" y="${y + 4}" text-anchor="end">${esc(fy(t))}</text>`);
  }
  out.push(`<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${WIDTH - MARGIN.left - MARGIN.right}" height="${HEIGHT - MARGIN.top - MARGIN.bottom}" fill="none" stroke="#444"/>`);
  out.push(`<text x="${(MARGIN.left + WIDTH - MARGIN.right) / 2}" y="${HEIGHT - 14}" text-anchor="middle">${esc(c.xLabel)}</text>`);
  out.push(`<text transform="translate(18 ${(MARGIN.top + HEIGHT - MARGIN.bottom) / 2}) rotate(-90)" text-anchor="middle">${esc(c.yLabel)}</text>`);
  c.series.forEach((s, place) => {
    const i = s.style ?? place;
    const color = COLORS[i % COLORS.length]!;
    const dash = DASHES[Math.floor(i / COLORS.length) % DASHES.length] || DASHES[i % DASHES.length]!;
    const keep = s.points.filter(([x, y]) => (!c.xLog || x > 0) && (!c.yLog || y > 0)).sort((a, b) => a[0] - b[0]);
    const path = keep.map(([x, y]) => `${xScale.at(x).toFixed(1)},${yScale.at(y).toFixed(1)}`).join(' ');
    if (keep.length > 1) out.push(`<polyline points="${path}" fill="none" stroke="${color}" stroke-width="2"${dash === '' ? '' : ` stroke-dasharray="${dash}"`}/>`);
    for (const [x, y] of keep) out.push(`<circle cx="${xScale.at(x).toFixed(1)}" cy="${yScale.at(y).toFixed(1)}" r="3" fill="${color}"/>`);
    const ly = MARGIN.top + 10 + place * 20;
    const lx = WIDTH - MARGIN.right + 14;
    out.push(`<line x1="${lx}" x2="${lx + 24}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"${dash === '' ? '' : ` stroke-dasharray="${dash}"`}/>`);
    out.push(`<text x="${lx + 30}" y="${ly + 4}">${esc(s.name)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

function emptyChart(title: string): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="80"><text x="10" y="40" font-family="sans-serif">${esc(title)}: no data</text></svg>\n`;
}

interface Scale {
  at(v: number): number;
  ticks: number[];
}

function scale(lo: number, hi: number, from: number, to: number, log: boolean): Scale {
  if (log) {
    // Margins of a tenth of a decade, so that points at the ends are not on the frame.
    const a = Math.log10(lo) - 0.1;
    const b = Math.max(Math.log10(hi) + 0.1, a + 1);
    const ticks: number[] = [];
    for (let k = Math.ceil(a); k <= Math.floor(b); k++) ticks.push(10 ** k);
    return { at: (v) => from + ((Math.log10(v) - a) / (b - a)) * (to - from), ticks };
  }
  const step = niceStep((hi - lo) / 5 || 1);
  const a = Math.floor(lo / step) * step;
  const b = Math.max(Math.ceil(hi / step) * step, a + step);
  const ticks: number[] = [];
  for (let v = a; v <= b + step / 2; v += step) ticks.push(v);
  return { at: (v) => from + ((v - a) / (b - a)) * (to - from), ticks };
}

function niceStep(raw: number): number {
  const p = 10 ** Math.floor(Math.log10(raw));
  const f = raw / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

function short(v: number): string {
  if (v >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (v >= 1e3) return `${+(v / 1e3).toPrecision(3)}k`;
  return String(+v.toPrecision(3));
}

/** Byte sizes as 1 KiB, 10 KiB, 1 MiB ... */
export function bytesLabel(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${+v.toPrecision(3)} ${units[u]}`;
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
