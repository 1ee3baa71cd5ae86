import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { Relay } from '../../src/sources/relay.js';

const CHUNK = 64 << 10;
const CHUNKS = 32;

/** A source that makes a chunk per read, numbered so that the order can be checked, and counts them. */
function source(): { stream: Readable; made: () => number; bytes: Buffer } {
  const bytes = Buffer.alloc(CHUNK * CHUNKS);
  for (let i = 0; i < CHUNKS; i++) bytes.fill(i, i * CHUNK, (i + 1) * CHUNK);
  let n = 0;
  const stream = new Readable({
    highWaterMark: CHUNK,
    read() {
      // Asynchronous, as a socket is: a chunk per read, never the whole rest at once.
      setImmediate(() => this.push(n < CHUNKS ? bytes.subarray(n++ * CHUNK, n * CHUNK) : null));
    },
  });
  return { stream, made: () => n, bytes };
}

/** Three relays over a source, as a remote body is (retry over checks over the socket's stream). */
function chain(inner: Readable): Relay[] {
  const a = new Relay(inner);
  const b = new Relay(a);
  return [new Relay(b), b, a];
}

const buffered = (streams: Readable[]) => streams.reduce((n, s) => n + s.readableLength, 0);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function firstThenPause(outer: Readable): Promise<Buffer> {
  return new Promise((resolve) =>
    outer.once('data', (c: Buffer) => {
      outer.pause();
      resolve(c);
    }),
  );
}

describe('Relay', () => {
  it('a paused chain stops at its source and holds about one chunk in all, not one per stage', async () => {
    const src = source();
    const stages = chain(src.stream);
    const first = await firstThenPause(stages[0]!);
    await sleep(50);
    const madeWhilePaused = src.made();
    await sleep(50);
    expect(src.made()).toBe(madeWhilePaused);
    // Left to backpressure, each of the three relays and the source held a chunk (4 x 64 KiB).
    expect(buffered([...stages, src.stream])).toBeLessThanOrEqual(CHUNK);
    expect(madeWhilePaused).toBeLessThanOrEqual(3);
    // An async iterator never calls resume(): its reads must wake the chain.
    const rest: Buffer[] = [];
    for await (const c of stages[0]! as AsyncIterable<Buffer>) rest.push(c);
    expect(Buffer.concat([first, ...rest]).equals(src.bytes)).toBe(true);
  });

  it('resume() after a pause delivers the rest, in order', async () => {
    const src = source();
    const [outer] = chain(src.stream);
    const got = [await firstThenPause(outer!)];
    await sleep(20);
    const done = new Promise<void>((resolve, reject) => outer!.on('data', (c: Buffer) => got.push(c)).once('end', resolve).once('error', reject));
    outer!.resume();
    await done;
    expect(Buffer.concat(got).equals(src.bytes)).toBe(true);
  });

  it('pauses and resumes many times without losing or repeating a byte', async () => {
    const src = source();
    const [outer] = chain(src.stream);
    const got: Buffer[] = [];
    await new Promise<void>((resolve, reject) => {
      outer!.on('data', (c: Buffer) => {
        got.push(c);
        outer!.pause();
        setTimeout(() => outer!.resume(), 1);
      });
      outer!.once('end', resolve).once('error', reject);
    });
    expect(Buffer.concat(got).equals(src.bytes)).toBe(true);
  });
});
