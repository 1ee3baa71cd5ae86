/**
 * What a test server saw of its clients: responses in progress, and responses whose client went
 * away before the end (the proof that an abort really closed the upstream request).
 */
import type * as http from 'node:http';

export interface Tracked {
  /** Responses started and neither finished nor closed. */
  inFlight(): number;
  /** Responses whose connection closed before they were fully sent. */
  closedEarly(): number;
  /** Requests seen, by method and path (the newest last). */
  readonly requests: { method: string; url: string; headers: http.IncomingHttpHeaders }[];
}

export function track(server: http.Server): Tracked {
  let inFlight = 0;
  let early = 0;
  const requests: Tracked['requests'] = [];
  server.prependListener('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    inFlight++;
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    if (requests.length > 10_000) requests.splice(0, 5_000);
    res.once('close', () => {
      inFlight--;
      if (!res.writableFinished) early++;
    });
  });
  return { inFlight: () => inFlight, closedEarly: () => early, requests };
}

/** Waits until `cond` holds, failing with `what` after `ms`. */
export async function waitUntil(cond: () => boolean, ms: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
