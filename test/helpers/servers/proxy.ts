/**
 * A reverse proxy in the test process in front of an emulator that runs as a child process
 * (s3rver, azurite): it sees every request and when its client goes away, and can cut a
 * response mid-body (a real broken connection, for the resume tests).
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { pacing } from './bytes.js';
import { track, type Tracked } from './track.js';

export interface Proxy extends Tracked {
  url: string;
  port: number;
  /** When set, a GET response is cut after this many body bytes (the socket destroyed); undefined: not cut. */
  cut?: (req: http.IncomingMessage) => number | undefined;
  close(): Promise<void>;
}

export async function startProxy(target: { host: string; port: number }): Promise<Proxy> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  const server = http.createServer();
  const tracked = track(server);
  const proxy = { ...tracked, url: '', port: 0 } as Proxy;
  server.on('request', (req, res) => {
    const up = http.request({ host: target.host, port: target.port, method: req.method, path: req.url, headers: req.headers, agent }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.rawHeaders);
      // Headers go out now: the client must see them even if the emulator then breaks the body.
      res.flushHeaders();
      let left = req.method === 'GET' ? proxy.cut?.(req) : undefined;
      upRes.on('data', (c: Buffer) => {
        if (left !== undefined) {
          if (c.length >= left) {
            res.write(c.subarray(0, left));
            left = 0;
            upRes.destroy();
            res.socket?.destroy();
            return;
          }
          left -= c.length;
        }
        const ok = res.write(c);
        if (!ok || pacing.ms > 0) {
          upRes.pause();
          const go = () => upRes.resume();
          if (pacing.ms > 0) setTimeout(() => (res.writableNeedDrain ? res.once('drain', go) : go()), pacing.ms);
          else res.once('drain', go);
        }
      });
      upRes.on('end', () => res.end());
      upRes.on('error', () => res.destroy());
    });
    up.on('error', () => res.destroy());
    // The client went away: so does the request to the emulator.
    res.on('close', () => {
      if (!res.writableFinished) up.destroy();
    });
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  proxy.port = port;
  proxy.url = `http://127.0.0.1:${port}`;
  proxy.close = async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    agent.destroy();
  };
  return proxy;
}
