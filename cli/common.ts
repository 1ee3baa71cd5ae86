/** What every command shares: --root parsing, Ctrl-C, and the one-line error with its exit code. */
import * as path from 'node:path';
import { OjsError, toOjsError } from '../src/spec/errors.js';
import { usage } from './output.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1; // the batch ran and failed (missing item, upstream error, ...)
export const EXIT_USAGE = 2; // bad arguments or spec; nothing was fetched
export const EXIT_INTERRUPTED = 130; // Ctrl-C / SIGTERM

const USAGE_KINDS = new Set(['BadSpec', 'Unsupported', 'Conflict']);

/** `--root NAME=DIR`, repeatable. */
export function collectRoot(value: string, previous: Record<string, string>): Record<string, string> {
  const eq = value.indexOf('=');
  if (eq <= 0 || eq === value.length - 1) throw usage(`--root expects NAME=DIR, got '${value}'`);
  const name = value.slice(0, eq);
  if (name.includes('/')) throw usage(`--root name '${name}' must not contain '/'`);
  if (name in previous) throw usage(`--root ${name} given twice`);
  return { ...previous, [name]: path.resolve(value.slice(eq + 1)) };
}

/** An AbortSignal that fires on the first SIGINT/SIGTERM; a second one exits at once. */
export function interruptSignal(): { signal: AbortSignal; interrupted: () => boolean; dispose: () => void } {
  const ac = new AbortController();
  let count = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    count++;
    if (count > 1) process.exit(EXIT_INTERRUPTED);
    ac.abort(new OjsError('Aborted', `interrupted (${sig})`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    signal: ac.signal,
    interrupted: () => count > 0,
    dispose: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}

/** Prints one clear line for an error and returns the exit code for it. */
export function reportError(e: unknown, interrupted: boolean): number {
  const err = toOjsError(e);
  if (interrupted || err.kind === 'Aborted') {
    process.stderr.write(`ojs-ml: interrupted; nothing was written\n`);
    return EXIT_INTERRUPTED;
  }
  // The entry's index, where the engine knows it and the message does not say it yet.
  const entry = err.context.entry;
  const where = entry !== undefined && !err.message.startsWith('in[') ? `in[${entry}]: ` : '';
  process.stderr.write(`ojs-ml: error: ${where}${err.message} [${err.code}]\n`);
  if (process.env.OJS_ML_DEBUG) process.stderr.write(`${err.stack ?? ''}\n`);
  return USAGE_KINDS.has(err.kind) || err.code === 'ERR_USAGE' ? EXIT_USAGE : EXIT_FAILURE;
}
