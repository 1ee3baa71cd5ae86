/** An emulator started as a child process, ready once it prints the line that holds its port. */
import { spawn, type ChildProcess } from 'node:child_process';

export interface Child {
  proc: ChildProcess;
  port: number;
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 30_000; // azurite loads ~400 modules: a few seconds on a busy 2-core machine

export function startChild(args: string[], ready: RegExp, what: string, env: NodeJS.ProcessEnv = {}): Promise<Child> {
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  // A test that fails before its afterAll must not leave the emulator running.
  const onExit = () => proc.kill('SIGKILL');
  process.once('exit', onExit);
  proc.once('exit', () => process.off('exit', onExit));
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`${what} did not start within ${START_TIMEOUT_MS} ms:\n${out}`)), START_TIMEOUT_MS);
    const fail = (e: Error) => {
      clearTimeout(timer);
      proc.kill('SIGKILL');
      reject(e);
    };
    const onData = (c: Buffer) => {
      out += c.toString();
      const m = ready.exec(out);
      if (m === null) return;
      clearTimeout(timer);
      proc.stdout?.off('data', onData);
      proc.stdout?.resume();
      proc.stderr?.resume();
      resolve({ proc, port: Number(m[1]), stop: () => stopChild(proc) });
    };
    proc.stdout?.on('data', onData);
    proc.stderr?.on('data', (c: Buffer) => (out += c.toString()));
    proc.once('error', fail);
    proc.once('exit', (code) => fail(new Error(`${what} exited (${code}) before it was ready:\n${out}`)));
  });
}

async function stopChild(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}
