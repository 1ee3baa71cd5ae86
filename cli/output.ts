/**
 * Where an archive goes: stdout, or a file written under a temporary name in the same directory
 * and renamed into place only once complete and flushed. A failed or interrupted run leaves no
 * file at DST (and no temporary file either).
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createInterface } from 'node:readline/promises';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { isatty } from 'node:tty';
import { OjsError } from '../src/spec/errors.js';
import { FdWriter } from './fd-writer.js';

export interface Destination {
  /** What to print: the absolute path, or "stdout". */
  label: string;
  /** Streams the archive in; resolves once it is complete and (for a file) in place. */
  write(archive: Readable, signal: AbortSignal): Promise<void>;
}

export interface DestinationOptions {
  overwrite: boolean;
  /** Whether we may ask the user (stdin and stderr are terminals). */
  interactive: boolean;
}

export async function openDestination(dst: string, opts: DestinationOptions): Promise<Destination> {
  if (dst === '-') return stdoutDestination();
  const target = path.resolve(dst);
  const st = await fs.promises.stat(target).catch(() => undefined);
  if (st?.isDirectory()) throw usage(`${dst} is a directory; give a file name such as ${path.join(dst, 'batch.tar')}`);
  if (st !== undefined && !opts.overwrite) {
    if (!opts.interactive) throw new OjsError('Conflict', `${dst} exists; pass --yes to overwrite it`, { code: 'ERR_DST_EXISTS' });
    if (!(await confirm(`${dst} exists. Overwrite? [y/N] `))) throw new OjsError('Conflict', `${dst} exists; not overwritten`, { code: 'ERR_DST_EXISTS' });
  }
  const dir = path.dirname(target);
  const dirSt = await fs.promises.stat(dir).catch(() => undefined);
  if (!dirSt?.isDirectory()) throw usage(`cannot write ${dst}: directory ${dir} does not exist`);
  return fileDestination(target);
}

function stdoutDestination(): Destination {
  if (isatty(1)) throw usage('refusing to write an archive to a terminal; redirect stdout or give a file name');
  return {
    label: 'stdout',
    async write(archive, signal) {
      try {
        await pipeline(archive, new FdWriter(1), { signal });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EPIPE') throw e;
        throw new OjsError('Internal', 'stdout was closed before the archive was complete (broken pipe)', { code: 'ERR_OUTPUT_CLOSED', cause: e });
      }
    },
  };
}

function fileDestination(target: string): Destination {
  return {
    label: target,
    async write(archive, signal) {
      const tmp = path.join(path.dirname(target), `.${path.basename(target)}.${randomBytes(4).toString('hex')}.partial`);
      try {
        const out = fs.createWriteStream(tmp, { flags: 'wx' });
        await pipeline(archive, out, { signal });
        await fsync(tmp);
        await fs.promises.rename(tmp, target);
      } catch (e) {
        await fs.promises.rm(tmp, { force: true });
        throw e;
      }
    },
  };
}

async function fsync(file: string): Promise<void> {
  const fh = await fs.promises.open(file, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function confirm(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question(question);
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    rl.close();
  }
}

/**
 * Writes a batch's archive to a destination and waits for both. When the batch fails, a file
 * destination gets the archive destroyed at once, so that its pipeline fails and the temporary
 * file goes: a failed archive otherwise waits for its consumer to drain with an unref'd timer,
 * and the process could exit first, leaving `.DST.<random>.partial` behind. Stdout keeps the
 * drain (the bytes that make the cut-off output invalid must reach the reader).
 */
export async function writeArchive(dest: Destination, run: { stream: Readable; result: Promise<unknown> }, signal: AbortSignal): Promise<void> {
  const writing = dest.write(run.stream, signal);
  try {
    await Promise.all([writing, run.result]);
  } catch (e) {
    if (dest.label === 'stdout') throw e;
    run.stream.destroy(e instanceof Error ? e : new Error(String(e)));
    await writing.catch(() => undefined);
    throw e;
  }
}

export function usage(message: string): OjsError {
  return new OjsError('BadSpec', message, { code: 'ERR_USAGE' });
}
