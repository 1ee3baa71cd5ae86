/**
 * The one file that listens. Shutdown is graceful: stop accepting (new requests on open
 * connections get 503), let the batches in flight finish for up to a grace period, then abort
 * the rest (their clients see a cut-off response, never a short archive that looks whole) and
 * close every connection left.
 */
import type { FastifyInstance } from 'fastify';
import { OjsError } from '../spec/errors.js';
import { buildApp, type AppConfig } from './app.js';

const DEFAULT_HOST = '127.0.0.1'; // listen on loopback unless told otherwise: the service reads local files
const DEFAULT_PORT = 8080;
const DEFAULT_GRACE_MS = 30_000; // time in-flight batches get to finish at shutdown

export interface ServeOptions extends AppConfig {
  host?: string;
  /** 0 picks a free port. */
  port?: number;
}

export interface RunningServer {
  app: FastifyInstance;
  /** e.g. http://127.0.0.1:8080 */
  url: string;
  port: number;
  /** Graceful shutdown; resolves once every connection is closed. */
  close(graceMs?: number): Promise<void>;
}

export async function startServer(opts: ServeOptions): Promise<RunningServer> {
  const app = await buildApp(opts);
  await app.listen({ host: opts.host ?? DEFAULT_HOST, port: opts.port ?? DEFAULT_PORT });
  const addr = app.server.address();
  if (addr === null || typeof addr === 'string') throw new Error(`unexpected listening address ${String(addr)}`);
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  let closing: Promise<void> | undefined;
  return {
    app,
    url: `http://${host}:${addr.port}`,
    port: addr.port,
    close: (graceMs = DEFAULT_GRACE_MS) => (closing ??= shutdown(app, graceMs)),
  };
}

/** Graceful close of a listening app; see the top of this file. */
export async function shutdown(app: FastifyInstance, graceMs: number): Promise<void> {
  const state = app.ojs;
  const closed = app.close();
  let timer: NodeJS.Timeout | undefined;
  const graceOver = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), graceMs);
  });
  const drained = await Promise.race([state.idle().then(() => true), graceOver]);
  clearTimeout(timer);
  if (!drained) {
    state.abortAll(new OjsError('Unavailable', 'the server is shutting down', { code: 'ERR_SHUTTING_DOWN', temporary: true }));
    await state.idle();
  }
  // Keep-alive connections idle since their last response, and cut-off ones still flushing.
  app.server.closeAllConnections();
  await closed;
}
