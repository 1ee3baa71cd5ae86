import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { MOSS_REQUEST_SCHEMA } from '../../src/spec/request.js';

// The engine compiles the request schema without meta-schema checks (start-up time); this is
// where the schema itself is checked against JSON Schema, strictly.
describe('MOSS_REQUEST_SCHEMA', () => {
  it('is a valid, strict JSON Schema', () => {
    const ajv = new Ajv({ strict: true, validateSchema: true });
    expect(ajv.validateSchema(MOSS_REQUEST_SCHEMA)).toBe(true);
    const validate = ajv.compile(MOSS_REQUEST_SCHEMA);
    expect(validate({ in: [{ objname: 'a', start: 1, length: -1 }], coloc: 2 })).toBe(true);
    expect(validate({ in: [{ objname: 'a', start: 1.5 }] })).toBe(false);
    expect(validate({ in: [], mime: '.tar' })).toBe(false);
  });
});
