import { describe, expect, it } from 'vitest';
import { OjsError } from '../../src/spec/errors.js';
import { parseBatchRequest } from '../../src/spec/request.js';
import { parseSpecText } from '../../src/spec/spec-text.js';

async function err(p: Promise<unknown>): Promise<OjsError> {
  const e = await p.then(
    () => new Error('expected a rejection'),
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(OjsError);
  return e as OjsError;
}

describe('parseSpecText', () => {
  it('reads JSON and YAML to the same request', async () => {
    const json = await parseSpecText('{"coer": true, "in": [{"objname": "a", "start": 1, "length": 2}]}');
    const yaml = await parseSpecText('coer: true\nin:\n  - objname: a\n    start: 1\n    length: 2\n');
    expect(json).toEqual({ coer: true, in: [{ objname: 'a', start: 1, length: 2 }] });
    expect(yaml).toEqual(json);
  });

  it('reads JSON after whitespace and a byte-order mark, and flow-style YAML', async () => {
    expect(await parseSpecText('\uFEFF \n {"in": []}')).toEqual({ in: [] });
    expect(await parseSpecText('in: [{objname: a}, {objname: b}]')).toEqual({ in: [{ objname: 'a' }, { objname: 'b' }] });
  });

  it("reads AIStore's YAML spec end to end", async () => {
    const text = ['outputformat: .tgz', 'continueonerr: true', 'onlyobjname: true', 'streamingget: false', 'in:', '  - objname: x/a.wav', '    opaque: "-_8="', ''].join('\n');
    const r = parseBatchRequest(await parseSpecText(text, 'spec.yaml'), { bucket: 'b' });
    expect([r.format, r.coer, r.onob, r.strm]).toEqual(['tgz', true, true, false]);
    expect(r.entries[0]!.name).toBe('x/a.wav');
    expect(r.entries[0]!.opaque).toBe('+/8=');
  });

  it('keeps YAML strings that look like numbers as the YAML says', async () => {
    expect(await parseSpecText('in:\n  - objname: "007"\n    start: 10\n')).toEqual({ in: [{ objname: '007', start: 10 }] });
  });

  it('says where and what is wrong with broken text', async () => {
    const json = await err(parseSpecText('{"in": [', 'b.json'));
    expect(json.kind).toBe('BadSpec');
    expect(json.message).toMatch(/^b\.json: invalid JSON: /);
    expect((await err(parseSpecText('in: [a, b\n', 'b.yaml'))).message).toMatch(/^b\.yaml: invalid YAML: /);
    expect((await err(parseSpecText('a: 1\na: 2\n', 'dup.yaml'))).message).toMatch(/^dup\.yaml: invalid YAML: .*[Dd]uplicate|unique/);
    expect((await err(parseSpecText('  \n'))).message).toBe('spec: empty');
    expect((await err(parseSpecText('', 'x.json'))).message).toBe('x.json: empty');
    const oneLine = await err(parseSpecText('in:\n  - objname: a\n   bad: indent\n', 'i.yaml'));
    expect(oneLine.message).not.toMatch(/\n/);
  });

  it('leaves shape errors to parseBatchRequest', async () => {
    const scalar = await parseSpecText('just a string');
    expect(scalar).toBe('just a string');
    expect(() => parseBatchRequest(scalar)).toThrow(/JSON\/YAML object/);
  });
});
