import { expect } from 'vitest';
import { OjsError } from '../../src/spec/errors.js';

/** The OjsError `f` throws; fails the test when it throws nothing or something else. */
export function err(f: () => unknown): OjsError {
  let thrown: unknown;
  try {
    f();
  } catch (e) {
    thrown = e;
  }
  expect(thrown, 'expected an OjsError').toBeInstanceOf(OjsError);
  return thrown as OjsError;
}

/** The OjsError `p` rejects with; fails the test when it resolves or rejects with something else. */
export async function failure(p: Promise<unknown>): Promise<OjsError> {
  const e = await p.then(
    () => new Error('expected a rejection'),
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(OjsError);
  return e as OjsError;
}
