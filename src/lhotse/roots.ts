import * as path from 'node:path';
import { OjsError } from '../spec/errors.js';
import type { ObjectLocation } from '../spec/uri.js';

/**
 * Local paths in manifests -> file-provider locations: a path inside a root (`--root NAME=DIR`)
 * reads through that root; any other path is absolute (the CLI) or refused (the server, which
 * reads nothing outside its roots).
 */
export function rootMapper(roots: Readonly<Record<string, string>>, allowOutside: boolean): (absolutePath: string) => ObjectLocation {
  const list = Object.entries(roots)
    .map(([name, dir]) => ({ name, dir: path.resolve(dir) }))
    .sort((a, b) => b.dir.length - a.dir.length); // the innermost root wins
  return (absolutePath) => {
    const p = path.resolve(absolutePath);
    for (const r of list) {
      if (p.startsWith(r.dir === '/' ? '/' : `${r.dir}/`)) return { provider: 'file', bucket: r.name, key: p.slice(r.dir.length).replace(/^\/+/, '') };
    }
    if (allowOutside) return { provider: 'file', bucket: '', key: p.replace(/^\/+/, '') };
    throw new OjsError('Forbidden', `${p} is outside this server's file roots (${list.map((r) => r.name).join(', ') || 'none configured'})`, {
      code: 'ERR_OUTSIDE_ROOTS',
      context: { provider: 'file' },
    });
  };
}
