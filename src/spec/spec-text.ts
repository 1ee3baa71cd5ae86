import { OjsError } from './errors.js';

/**
 * A spec document as text: JSON when it starts with '{' (after whitespace), YAML otherwise
 * (YAML 1.2 is a superset of JSON, but JSON.parse gives the better message for broken JSON).
 * The same keys work in both; AIStore's YAML spellings are mapped in parseBatchRequest. The YAML
 * parser is loaded only for YAML (it is a fifth of the CLI's start-up).
 */
export async function parseSpecText(text: string, origin = 'spec'): Promise<unknown> {
  const body = text.replace(/^\uFEFF/, '');
  if (body.trim() === '') throw new OjsError('BadSpec', `${origin}: empty`);
  if (body.trimStart().startsWith('{')) {
    try {
      return JSON.parse(body) as unknown;
    } catch (e) {
      throw new OjsError('BadSpec', `${origin}: invalid JSON: ${(e as Error).message}`, { cause: e });
    }
  }
  const { parse, YAMLParseError } = await import('yaml');
  try {
    return parse(body, { prettyErrors: true, uniqueKeys: true }) as unknown;
  } catch (e) {
    const msg = e instanceof YAMLParseError ? e.message.split('\n')[0] : (e as Error).message;
    throw new OjsError('BadSpec', `${origin}: invalid YAML: ${msg}`, { cause: e });
  }
}
