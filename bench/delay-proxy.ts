/**
 * A TCP proxy that adds a round-trip delay between a client and a server on loopback: the
 * data-locality case without network namespaces (netem needs a kernel module this machine may
 * not have). Bytes from the client are held `rttMs` before they go on, bytes back are not held:
 * a request/response exchange then costs one RTT more, as over a real link, while a long
 * response streams at full speed (a real link would add its bandwidth-delay window on top; over
 * loopback that is nothing). Node's timers fire no sooner than 1 ms, so 1 ms is the smallest
 * delay that is honest; the measured RTT is reported by `measureRtt`.
 */
import * as net from 'node:net';

const HELD_MAX = 8 << 20; // bytes held per direction before the sending side is paused

export interface DelayProxy {
  port: number;
  close(): Promise<void>;
}

export async function startDelayProxy(target: { host: string; port: number }, rttMs: number): Promise<DelayProxy> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    for (const s of [client, upstream]) {
      s.setNoDelay(true);
      sockets.add(s);
      s.once('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    delayed(client, upstream, rttMs);
    upstream.pipe(client);
    client.once('end', () => setTimeout(() => upstream.end(), rttMs));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Sends what `from` reads to `to`, each chunk `ms` after it arrived, in order. */
function delayed(from: net.Socket, to: net.Socket, ms: number): void {
  const queue: { due: number; chunk: Buffer }[] = [];
  let held = 0;
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    timer = undefined;
    const now = performance.now();
    while (queue.length > 0 && queue[0]!.due <= now) {
      const { chunk } = queue.shift()!;
      held -= chunk.length;
      to.write(chunk);
    }
    if (held < HELD_MAX && from.isPaused()) from.resume();
    if (queue.length > 0) timer = setTimeout(flush, Math.max(1, queue[0]!.due - now));
  };
  from.on('data', (chunk: Buffer) => {
    queue.push({ due: performance.now() + ms, chunk });
    held += chunk.length;
    if (held >= HELD_MAX) from.pause();
    timer ??= setTimeout(flush, ms);
  });
}

/** Median time of a tiny request/response through the proxy: the RTT the runs actually had. */
export async function measureRtt(port: number, path = '/', samples = 20): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < samples; i++) {
    const t0 = performance.now();
    const res = await fetch(`http://127.0.0.1:${port}${path}`);
    await res.arrayBuffer();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[times.length >> 1]!;
}
