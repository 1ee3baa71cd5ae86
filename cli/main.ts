#!/usr/bin/env node
/** The `ojs-ml` command: one file per command, this one only wires them up. */
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
