/**
 * Bearer tokens. Tokens are compared as SHA-256 digests with timingSafeEqual, against every
 * configured token without stopping at a match: neither a token's length nor which token matched
 * shows in the time taken. Tokens are never logged or shown (/varz gives their count).
 */
import { createHash, timingSafeEqual } from 'node:crypto';

export type AuthOutcome = 'ok' | 'missing' | 'invalid';

const BEARER = /^Bearer[ \t]+(\S+)[ \t]*$/i;

export class BearerAuth {
  private readonly digests: Buffer[];

  constructor(tokens: readonly string[]) {
    for (const t of tokens) {
      if (t === '' || /\s/.test(t)) throw new Error('a token must be non-empty and hold no white space');
    }
    this.digests = tokens.map(digest);
  }

  get enabled(): boolean {
    return this.digests.length > 0;
  }

  get count(): number {
    return this.digests.length;
  }

  check(authorization: string | undefined): AuthOutcome {
    if (!this.enabled) return 'ok';
    const m = authorization === undefined ? null : BEARER.exec(authorization);
    if (m === null) return 'missing';
    const given = digest(m[1]!);
    let ok = false;
    for (const d of this.digests) ok = timingSafeEqual(d, given) || ok;
    return ok ? 'ok' : 'invalid';
  }
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}
