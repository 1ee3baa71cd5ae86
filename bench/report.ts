/**
 * docs/benchmarks.md, written by a full `npm run bench`: where ojs-ml beats and where it trails
 * each baseline (read off the rows, not written by hand), the targets the issues set with the
 * measured figures, the whole table, and the plots.
 */
import * as fs from 'node:fs';
import { table, type Row } from './util.js';

interface Machine {
  date: string;
  node: string;
  nproc: number;
  cpu: string;
  memGiB: number;
  tar: string;
  repeats: number;
  seconds: number;
}

/** Whether a row is better for ojs-ml: higher throughput, or lower time, memory and bytes. */
function verdict(r: Row): 'beats' | 'trails' | undefined {
  if (r.ratio === null || r.baseline === null) return undefined;
  const higherIsBetter = r.unit === 'MiB/s' || r.unit === 'objects/s';
  const good = higherIsBetter ? r.ratio >= 1 : r.ratio <= 1;
  return good ? 'beats' : 'trails';
}

const CASE_TITLES: Record<string, string> = {
  'tar-10k': 'file -> TAR, small files, vs GNU tar',
  'tar-1m': 'file -> TAR, 1 MiB files, vs GNU tar',
  shard: 'one member out of a 1 GiB shard (bytes read beyond it, vs the 1 MiB target)',
  tgz: 'TGZ vs tar | gzip -1',
  'tar.lz4': 'TAR.LZ4 vs tar | lz4 -1',
  zip: 'ZIP vs zip -0',
  rss: 'peak RSS of a 4 GiB batch, vs the 200 MB target',
  'rss-scale': 'peak RSS from 100 to 100,000 entries, vs the 100-entry batch (target: within 20%)',
  lhotse: 'Lhotse: sliced audio vs whole files',
  'remote-s3': 'one get-batch vs individual GETs, s3rver',
  'remote-http': 'one get-batch vs individual GETs, nginx (engine in-process)',
  paper: "the GetBatch paper's experiment: ojs-ml serve vs GETs from nginx",
  locality: 'data locality: added client-storage round-trip time',
};

export function writeBenchmarksDoc(file: string, rows: Row[], machine: Machine, plots: string[]): void {
  const out: string[] = [
    '# Benchmarks',
    '',
    'Written by a full `npm run bench` (see [bench/README.md](../bench/README.md) for what each case does and',
    '`npm run bench -- --quick` for a short run); the raw rows with every repeat are in',
    '[bench/results/latest.json](../bench/results/latest.json).',
    '',
    `Machine: ${machine.nproc} cores (${machine.cpu}), ${machine.memGiB} GiB, Node ${machine.node}, ${machine.tar}; ${machine.repeats} repeats,`,
    `medians; ${machine.date}; the whole run took ${Math.round(machine.seconds)} s. This VM is shared and noisy: throughput moves`,
    'by up to 30% between runs, so compare the ratios (both sides measured in the same run, back to back), not',
    'absolute figures across runs. Servers (nginx, s3rver, ojs-ml serve) and clients share the same two cores.',
    '',
    '## Where ojs-ml beats and where it trails',
    '',
  ];
  const byCase = new Map<string, Row[]>();
  for (const r of rows) byCase.set(r.case, [...(byCase.get(r.case) ?? []), r]);
  for (const [c, rs] of byCase) {
    const judged = rs.map((r) => [r, verdict(r)] as const).filter(([, v]) => v !== undefined);
    if (judged.length === 0) continue;
    const beats = judged.filter(([, v]) => v === 'beats').map(([r]) => r);
    const trails = judged.filter(([, v]) => v === 'trails').map(([r]) => r);
    out.push(`**${CASE_TITLES[c] ?? c}**: ojs-ml ${beats.length === judged.length ? 'beats or meets the baseline in every row' : trails.length === judged.length ? 'trails the baseline in every row' : `beats or meets it in ${beats.length} of ${judged.length} rows`}.`);
    for (const r of trails) out.push(`- trails: ${r.name}: ${r.ours} vs ${r.baseline} ${r.unit} (ratio ${r.ratio})`);
    for (const r of beats.slice(0, 12)) out.push(`- beats: ${r.name}: ${r.ours} vs ${r.baseline} ${r.unit} (ratio ${r.ratio})`);
    if (beats.length > 12) out.push(`- ... and ${beats.length - 12} more rows where it beats (table below)`);
    out.push('');
  }
  out.push('## Plots', '');
  for (const p of plots) out.push(`![${p}](${p})`, '');
  out.push('## All rows', '', table(rows), '');
  fs.writeFileSync(file, `${out.join('\n')}\n`);
}
