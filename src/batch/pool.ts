/**
 * Bytes shared by many batches: a server runs dozens at once, and each one's own window (16 MiB
 * of read-ahead, say) times the batches in flight must not become the process's memory. Takers
 * check `full` before reading more; whoever was held back hears `onFree` when the pool goes
 * from full to not full (only then, so a busy pool costs nothing per chunk).
 */
export class BytePool {
  private usedBytes = 0;
  private readonly listeners = new Set<() => void>();

  constructor(readonly limit: number) {}

  get used(): number {
    return this.usedBytes;
  }

  get full(): boolean {
    return this.usedBytes >= this.limit;
  }

  /** Counts `n` bytes taken, even past the limit (a taker that must make progress). */
  take(n: number): void {
    this.usedBytes += n;
  }

  /** Takes `n` bytes only if they fit. */
  tryTake(n: number): boolean {
    if (this.usedBytes + n > this.limit) return false;
    this.usedBytes += n;
    return true;
  }

  give(n: number): void {
    const wasFull = this.full;
    this.usedBytes -= n;
    if (wasFull && !this.full) for (const l of [...this.listeners]) l();
  }

  /** Calls `fn` whenever the pool stops being full; returns the unsubscribe. */
  onFree(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
}
