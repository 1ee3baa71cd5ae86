import type { Readable } from 'node:stream';

const FAIL_DRAIN_MS = 10_000; // how long a failed archive waits for its consumer to take the last bytes
const FAIL_POLL_MS = 5; // how often it looks whether they were taken (_read is not called again)

/**
 * Ends a failed archive: hands the consumer `last` (bytes that make the output invalid for every
 * reader, see each writer), waits until they were taken, then errors the stream. Destroying at
 * once would drop whatever is still queued, and a queue can end exactly between two entries.
 */
export function failAfterDrain(output: Readable, last: Buffer, err: Error): void {
  if (output.destroyed) return;
  if (last.length > 0) output.push(last);
  if (output.readableLength === 0) {
    output.destroy(err);
    return;
  }
  const deadline = Date.now() + FAIL_DRAIN_MS;
  const poll = setInterval(() => {
    if (output.readableLength === 0 || Date.now() > deadline || output.destroyed) {
      clearInterval(poll);
      output.destroy(err);
    }
  }, FAIL_POLL_MS);
  poll.unref();
}
