/**
 * docker-compose.yml and the Dockerfile cannot run here (no Docker engine), so they are kept
 * right by reading: valid YAML, pinned images, the service's flags known to `ojs-ml serve`, the
 * environment variables it sets read by our providers or their SDKs, mounts that exist, and the
 * example batch of docs/deploy.md a valid request.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { parseBatchRequest } from '../../src/spec/request.js';
import { REPO, ojs } from '../helpers/tools.js';

interface Service {
  image?: string;
  build?: unknown;
  command?: string[];
  entrypoint?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  depends_on?: Record<string, unknown>;
}

const compose = parse(fs.readFileSync(path.join(REPO, 'docker-compose.yml'), 'utf8')) as { services: Record<string, Service> };
const services = compose.services;

// Read by the SDKs themselves rather than by our code (documented in docs/sources.md).
const SDK_VARIABLES = new Set(['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY']);

function sourceText(): string {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts')) out.push(fs.readFileSync(p, 'utf8'));
    }
  };
  walk(path.join(REPO, 'src'));
  return out.join('\n');
}

describe('docker-compose.yml', () => {
  it('has the service and the three emulators, every image pinned to a version', () => {
    expect(Object.keys(services)).toEqual(expect.arrayContaining(['ojs-ml', 'minio', 'fake-gcs', 'azurite']));
    for (const [name, s] of Object.entries(services)) {
      if (s.build !== undefined) continue;
      expect(s.image, name).toMatch(/^[\w./-]+:[\w.-]+$/);
      expect(s.image, name).not.toMatch(/:latest$/);
    }
    for (const [name, s] of Object.entries(services)) {
      for (const dep of Object.keys(s.depends_on ?? {})) expect(Object.keys(services), `${name} depends on ${dep}`).toContain(dep);
    }
  });

  it("runs ojs-ml serve with flags it knows, on 0.0.0.0, with mounts that exist", async () => {
    const s = services['ojs-ml']!;
    const cmd = s.command!;
    expect(cmd[0]).toBe('serve');
    const help = (await ojs(['serve', '--help'])).stdout.toString();
    for (const flag of cmd.filter((a) => a.startsWith('--'))) expect(help, flag).toContain(flag);
    expect(cmd[cmd.indexOf('--host') + 1]).toBe('0.0.0.0');
    const root = cmd[cmd.indexOf('--root') + 1]!;
    const [, inContainer] = root.split('=');
    const mount = s.volumes!.find((v) => v.split(':')[1] === inContainer);
    expect(mount, `a volume for ${inContainer}`).toBeDefined();
    for (const v of Object.values(services).flatMap((x) => x.volumes ?? [])) {
      expect(fs.existsSync(path.join(REPO, v.split(':')[0]!)), v).toBe(true);
    }
  });

  it('sets only environment variables that our providers or their SDKs read', () => {
    const src = sourceText();
    for (const name of Object.keys(services['ojs-ml']!.environment ?? {})) {
      if (SDK_VARIABLES.has(name)) continue;
      expect(src.includes(name), `${name} is read somewhere in src/`).toBe(true);
    }
    // Azurite's endpoint in the connection string names the compose service.
    expect(services['ojs-ml']!.environment!.AZURE_STORAGE_CONNECTION_STRING).toContain('BlobEndpoint=http://azurite:10000/devstoreaccount1');
    expect(services['ojs-ml']!.environment!.AWS_ENDPOINT_URL_S3).toBe('http://minio:9000');
  });

  it("docs/deploy.md's example batch is a valid request touching file, s3, gs and az", () => {
    const raw = JSON.parse(fs.readFileSync(path.join(REPO, 'docs/examples/mixed-batch.json'), 'utf8')) as unknown;
    const req = parseBatchRequest(raw);
    expect(new Set(req.entries.map((e) => e.location.provider))).toEqual(new Set(['file', 's3', 'gs', 'az']));
    expect(fs.readFileSync(path.join(REPO, 'docs/deploy.md'), 'utf8')).toContain('docs/examples/mixed-batch.json');
  });
});

/** The node flags after `env -S node` in the CLI's first line. */
function shebangFlags(): string[] {
  const first = fs.readFileSync(path.join(REPO, 'cli/main.ts'), 'utf8').split('\n', 1)[0]!;
  const m = /^#!\/usr\/bin\/env -S node((?: --[\w-]+=\w+)*)$/.exec(first);
  expect(m, first).not.toBeNull();
  return m![1]!.trim().split(' ').filter((w) => w !== '');
}

describe('the ojs-ml command', () => {
  it('runs through its own shebang (env -S, with its node flags)', async () => {
    const { execFileSync } = await import('node:child_process');
    const first = fs.readFileSync(path.join(REPO, 'dist/cli/main.js'), 'utf8').split('\n', 1)[0]!;
    const [interp, ...args] = first.slice(2).split(' ');
    const out = execFileSync(interp!, [...args, path.join(REPO, 'dist/cli/main.js'), '--version'], { encoding: 'utf8' });
    expect(out.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });
});

describe('Dockerfile', () => {
  it('builds with npm ci, prunes dev dependencies, and runs the built CLI', () => {
    const text = fs.readFileSync(path.join(REPO, 'Dockerfile'), 'utf8');
    expect(text).toMatch(/^FROM node:20[\w.-]*/m);
    expect(text).toContain('npm ci');
    expect(text).toContain('npm prune --omit=dev');
    // The image starts node as the `ojs-ml` command's shebang does, with the same flags.
    const flags = shebangFlags();
    expect(flags.length).toBeGreaterThan(0);
    expect(text).toContain(`ENTRYPOINT ${JSON.stringify(['node', ...flags, 'dist/cli/main.js']).replace(/","/g, '", "')}`);
    // What the build copies must exist, and must be what `tsc -p tsconfig.json` compiles.
    const tsconfig = JSON.parse(fs.readFileSync(path.join(REPO, 'tsconfig.json'), 'utf8')) as { include: string[] };
    for (const dir of tsconfig.include) expect(text, `COPY ${dir}`).toMatch(new RegExp(`COPY ${dir} \\./${dir}`));
  });
});
