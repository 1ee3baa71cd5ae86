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
