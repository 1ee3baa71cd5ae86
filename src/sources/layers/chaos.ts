/**
 * Chaos, for tests and benchmarks: a share of reads breaks mid-body (the upstream stream is
 * destroyed, so its socket really closes) with a temporary error, and a share of opens fails
 * before any byte. Seeded, so that a failing run can be repeated.
 */
import { Readable } from 'node:stream';
import { OjsError } from '../../spec/errors.js';
import { Relay } from '../relay.js';
import type { ObjectRef, ObjectSource, OpenOptions, OpenedObject } from '../types.js';
import { Forward, withBody } from './forward.js';

export interface ChaosOptions {
  /** Share of bodies (0..1) that break after a random share of their bytes. */
  bodyFailRate: number;
  /** Share of opens (0..1) that fail before any byte. Default 0. */
  openFailRate?: number;
  /** Seed of the generator that picks which reads fail and where. */
  seed?: number;
}

/** mulberry32: small, seeded, good enough to pick failures. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class ChaosLayer extends Forward {
  private readonly random: () => number;
  /** Bodies broken and opens failed so far (tests check that chaos happened). */
  readonly injected = { bodies: 0, opens: 0 };

  constructor(
    inner: ObjectSource,
    private readonly opts: ChaosOptions,
  ) {
    super(inner);
    this.random = seededRandom(opts.seed ?? 1);
  }

  override async open(ref: ObjectRef, opts: OpenOptions): Promise<OpenedObject> {
    if (this.random() < (this.opts.openFailRate ?? 0)) {
      this.injected.opens++;
      throw new OjsError('Unavailable', 'chaos: open failed', { temporary: true, context: { provider: this.provider, bucket: ref.bucket, key: ref.key } });
    }
    const o = await this.inner.open(ref, opts);
    if (o.length === 0 || this.random() >= this.opts.bodyFailRate) return o;
    this.injected.bodies++;
    const breakAt = Math.floor(this.random() * o.length);
    if (o.bytes !== undefined) return withBody(o, new BreakingBody(bytesBody(o.bytes), breakAt));
    return withBody(o, new BreakingBody(o.body, breakAt));
  }
}

/** Passes `breakAt` bytes on, then destroys the upstream and fails. */
class BreakingBody extends Relay {
  private left: number;

  constructor(inner: Readable, breakAt: number) {
    super(inner);
    this.left = breakAt;
  }

  protected override onChunk(chunk: Buffer): Buffer | undefined {
    if (chunk.length <= this.left) {
      this.left -= chunk.length;
      return chunk;
    }
    const head = chunk.subarray(0, this.left);
    this.left = 0;
    if (head.length > 0) this.push(head);
    this.destroy(new OjsError('Upstream', 'chaos: connection reset mid-body', { temporary: true }));
    return undefined;
  }
}

function bytesBody(bytes: Buffer): Readable {
  return Readable.from([bytes]);
}
