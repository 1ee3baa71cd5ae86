#!/usr/bin/env -S node --max-semi-space-size=2
/**
 * The `ojs-ml` command: one file per command, this one only wires them up.
 *
 * The shebang caps V8's young generation at 2 MiB a semi-space (the default grows to 16). A big
 * request is many small objects that all live (the parsed JSON, then the entries), and V8
 * answers that by growing the young generation to its maximum and keeping it: a 100,000-entry
 * batch peaked at 150-164 MiB with the default and 94-98 MiB with the cap (a 100-entry one at
 * 80-85 either way). The data path is external memory and never needed the room: bench
 * throughput is within its noise, and the 100,000-entry batch runs 15% faster. The exception is
 * many small objects from the network in a long-lived process (docs/library.md): there the
 * objects in flight outlive a 2 MiB semi-space's scavenges.
 */
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { getBatchCommand } from './get-batch.js';
import { lhotseGetBatchCommand } from './lhotse-get-batch.js';
import { serveCommand } from './serve.js';
import { EXIT_USAGE } from './common.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

const program = new Command('ojs-ml')
  .description('Batch data fetching for ML: many objects, ranges and shard members -> one ordered archive')
  .version(pkg.version)
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride((err) => {
    // commander's own exits (help, version, usage errors) keep its code, usage errors ours.
    process.exit(err.exitCode === 0 ? 0 : EXIT_USAGE);
  });

program.addCommand(getBatchCommand());
program.addCommand(lhotseGetBatchCommand());
program.addCommand(serveCommand());

await program.parseAsync(process.argv);
