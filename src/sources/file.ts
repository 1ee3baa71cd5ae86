/**
 * `file`: local directories exposed as named roots (`--root NAME=DIR`; entries
 * `{"provider":"file","bucket":"NAME","objname":"rel/path"}`). Bucket '' means absolute paths
 * (`file:///abs/path`), which only the CLI turns on. Nothing outside a root is ever read: '..'
 * components are refused and every path is resolved through symlinks before it is opened.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { OjsError, abortedError, throwIfAborted, type ErrorContext } from '../spec/errors.js';
import { resolveRange, type ResolvedRange } from '../spec/range.js';
import { objectNameProblem } from '../spec/uri.js';
import { readChunks, smallBodies } from './chunks.js';
import type { ListedObject, ObjectRef, ObjectSource, ObjectStat, OpenOptions, OpenedObject, SourceCapabilities } from './types.js';

const SLAB_PIECE_MAX = 64 << 10; // bodies up to this size come from a slab; bigger ones (and reads) from the read chunks
const SYNC_READ_MAX = 256 << 10; // bodies up to this size are read at open, synchronously (see below)
const DIR_CACHE_TTL_MS = 1000; // how long a directory's resolved real path is trusted
const DIR_CACHE_MAX = 10_000; // directories remembered before the cache starts over
const SYNC_SLOW_MS = 2; // a synchronous read slower than this came from a disk, not the page cache (256 KiB from cache: ~0.15 ms)...
const SYNC_SLOW_STREAK = 4; // ...and this many in a row mean a disk (one alone is as often the scheduler's doing, on a busy machine)
const SYNC_BACKOFF_MS = 1000; // then reads go through the thread pool for this long
const SYNC_TURN_BYTES = 1 << 20; // bytes read synchronously, across all files, before the event loop gets a turn (~0.3 ms from the page cache)

export const scheme = 'file';

export interface FileSourceOptions {
  /** Root name -> directory. A root's directory is resolved through symlinks once. */
  roots: Record<string, string>;
  /** Serve bucket '' as the whole file system (absolute `file:///` URIs). Never on a server. */
  allowAbsolute?: boolean;
  /**
   * Open, stat and read files with synchronous calls, as GNU tar and nginx do: from the page
   * cache a small file costs ~20 us against ~50 us through the thread pool, and a large one
   * ~0.35 s of CPU per GiB against ~0.6 (the pool's threads and the event loop fight for the
   * same cores). Four reads in a row slower than 2 ms (a disk, not the cache) send every read
   * through the thread pool for the next second, so a cold disk does not stall the event loop.
   * Turn it off for file systems where an open can block for long (NFS, FUSE). Default on.
   */
  syncIo?: boolean;
}

export class FileSource implements ObjectSource {
  readonly provider = 'file' as const;
  readonly capabilities: SourceCapabilities = { ranges: true, list: true, conditionalRead: true };
  private readonly roots = new Map<string, string>();
  private readonly realRoots = new Map<string, Promise<string>>();
  private readonly realDirs = new Map<string, { real: Promise<string>; resolved?: string; at: number }>();
  private readonly syncIo: boolean;
  private asyncUntil = 0;
  private slowStreak = 0;
  private turnBytes = 0; // read synchronously since the event loop last turned
  private readonly newTurn = () => {
    this.turnBytes = 0;
  };

  constructor(opts: FileSourceOptions) {
    this.syncIo = opts.syncIo ?? true;
    for (const [name, dir] of Object.entries(opts.roots)) {
      if (name === '' || name.includes('/')) throw new OjsError('BadSpec', `root name '${name}' must be non-empty and hold no '/'`);
      this.roots.set(name, path.resolve(dir));
    }
    if (opts.allowAbsolute === true) this.roots.set('', '/');
  }

  /** Whether the next file operation may be synchronous (see FileSourceOptions.syncIo). */
  syncNow(): boolean {
    return this.syncIo && (this.asyncUntil === 0 || performance.now() >= this.asyncUntil);
  }

  /**
   * Whether this turn's synchronous reads are spent. Without a budget, a batch's opening turn
   * read its whole read-ahead window (16 MiB of 1 MiB files: ~20 ms) before the first byte went
   * out, and a flowing consumer could take a whole file with no abort or timer served meanwhile.
   * A reader that finds it spent waits for the next turn (`nextTurn`).
   */
  turnSpent(): boolean {
    return this.turnBytes >= SYNC_TURN_BYTES;
  }

  /** Runs `fn` on the event loop's next turn, after sockets had theirs (a check-phase callback). */
  nextTurn(fn: () => void): void {
    setImmediate(fn);
  }

  /** Called with the duration and size of each synchronous read. */
  noteSyncRead(ms: number, bytes: number): void {
    // The reset is queued before any reader's nextTurn, so it runs first.
    if (this.turnBytes === 0) setImmediate(this.newTurn);
    this.turnBytes += bytes;
    if (ms <= SYNC_SLOW_MS) {
      this.slowStreak = 0;
    } else if (++this.slowStreak >= SYNC_SLOW_STREAK) {
      this.slowStreak = 0;
      this.asyncUntil = performance.now() + SYNC_BACKOFF_MS;
    }
  }

  rootNames(): string[] {
    return [...this.roots.keys()].filter((n) => n !== '');
  }

  async stat(ref: ObjectRef, opts: { signal: AbortSignal }): Promise<ObjectStat> {
    throwIfAborted(opts.signal);
    const file = await this.resolve(ref);
    const st = await fs.promises.stat(file).catch((e: unknown) => { throw fsError(e, ref); });
    if (!st.isFile()) throw notRegular(ref, st);
    return { size: st.size, etag: etagOf(st), mtime: st.mtime };
  }

  async open(ref: ObjectRef, opts: OpenOptions): Promise<OpenedObject> {
    throwIfAborted(opts.signal);
    const sync = this.syncNow();
    let fd = (sync ? this.openInsideSync(ref) : undefined) ?? (await this.openInside(ref, sync));
    try {
      const st = sync ? fstatSync(fd, ref) : await fstatAsync(fd, ref);
      if (!st.isFile()) throw notRegular(ref, st);
      if (opts.ifMatch !== undefined && opts.ifMatch !== etagOf(st)) {
        throw new OjsError('Conflict', `file changed since it was first read (etag ${opts.ifMatch} -> ${etagOf(st)})`, { context: ctx(ref) });
      }
      const range = resolveRange(opts.range, st.size, ctx(ref));
      throwIfAborted(opts.signal);
      if (sync && range.length <= SYNC_READ_MAX) {
        if (this.turnSpent()) {
          await new Promise<void>((resolve) => this.nextTurn(resolve));
          throwIfAborted(opts.signal);
        }
        const t0 = performance.now();
        const bytes = readAllSync(fd, range, ref);
        this.noteSyncRead(performance.now() - t0, range.length);
        const done = fd;
        fd = -1;
        fs.closeSync(done);
        return new InMemoryObject(range, st, bytes);
      }
      return { length: range.length, range, size: st.size, etag: etagOf(st), mtime: st.mtime, body: new FileBody(fd, range, ref, opts.signal, this) };
    } catch (e) {
      if (fd >= 0) fs.close(fd, () => undefined);
      throw e;
    }
  }

  async *list(bucket: string, prefix: string, opts: { signal: AbortSignal }): AsyncIterable<ListedObject> {
    const root = await this.realRoot(bucket);
    const slash = prefix.lastIndexOf('/');
    const startDir = slash < 0 ? '' : prefix.slice(0, slash);
    if (startDir !== '' && objectNameProblem(startDir) !== undefined) {
      throw new OjsError('BadSpec', `prefix '${prefix}' is not a valid path inside a root`, { context: { bucket, key: prefix } });
    }
    yield* this.walk(root, startDir, prefix, opts.signal);
  }

  private async *walk(root: string, rel: string, prefix: string, signal: AbortSignal): AsyncGenerator<ListedObject> {
    throwIfAborted(signal);
    let dirents: fs.Dirent[];
    try {
      dirents = await fs.promises.readdir(path.join(root, rel), { withFileTypes: true });
    } catch (e) {
      if (isCode(e, 'ENOENT') || isCode(e, 'ENOTDIR')) return;
      throw fsError(e, { bucket: '', key: rel });
    }
    // Directories sort as "name/" so that a depth-first walk yields keys in byte order.
    // JS string order is UTF-16 order, which differs from byte order past the BMP.
    const items = dirents.map((d) => ({
      d,
      sortKey: Buffer.from(d.isDirectory() ? `${d.name}/` : d.name, 'utf8'),
    }));
    items.sort((a, b) => Buffer.compare(a.sortKey, b.sortKey));
    for (const { d } of items) {
      const key = rel === '' ? d.name : `${rel}/${d.name}`;
      if (d.isDirectory()) {
        if (prefix.startsWith(`${key}/`) || `${key}/`.startsWith(prefix)) yield* this.walk(root, key, prefix, signal);
        continue;
      }
      if (!key.startsWith(prefix)) continue;
      const full = path.join(root, key);
      if (d.isSymbolicLink()) {
        const real = await fs.promises.realpath(full).catch(() => undefined);
        if (real === undefined || !inside(root, real)) continue;
      }
      const st = await fs.promises.stat(full).catch(() => undefined);
      if (st?.isFile()) yield { key, size: st.size };
    }
  }

  private realRoot(bucket: string): Promise<string> {
    let p = this.realRoots.get(bucket);
    if (p === undefined) {
      const dir = this.roots.get(bucket);
      if (dir === undefined) {
        const names = this.rootNames();
        const known = names.length === 0 ? 'no roots are configured (--root NAME=DIR)' : `known roots: ${names.join(', ')}`;
        return Promise.reject(
          new OjsError('NotFound', bucket === '' ? 'absolute file paths are not allowed here; use a named root' : `no file root named '${bucket}'; ${known}`, {
            code: 'ERR_NO_SUCH_BUCKET',
            context: { provider: 'file', bucket },
          }),
        );
      }
      p = fs.promises.realpath(dir).catch((e: unknown) => {
        this.realRoots.delete(bucket);
        throw new OjsError('NotFound', `file root '${bucket}' (${dir}) cannot be opened: ${(e as Error).message}`, {
          code: 'ERR_NO_SUCH_BUCKET',
          context: { provider: 'file', bucket },
          cause: e,
        });
      });
      this.realRoots.set(bucket, p);
    }
    return p;
  }

  /** The real path of a key, refusing anything that resolves outside its root. */
  private async resolve(ref: ObjectRef): Promise<string> {
    checkKey(ref);
    const root = await this.realRoot(ref.bucket);
    const real = await fs.promises.realpath(path.join(root, ref.key)).catch((e: unknown) => { throw fsError(e, ref); });
    if (!inside(root, real)) throw new OjsError('Forbidden', `'${ref.key}' resolves outside its root (symlink)`, { context: ctx(ref) });
    return real;
  }

  /**
   * Opens a key as a descriptor, never outside its root. The directory part is resolved through
   * symlinks (and remembered briefly); the last component is opened with O_NOFOLLOW, and only
   * when it is a symlink is the whole path resolved.
   */
  private async openInside(ref: ObjectRef, sync: boolean): Promise<number> {
    checkKey(ref);
    const slash = ref.key.lastIndexOf('/');
    const dir = await this.realDir(ref, slash < 0 ? '' : ref.key.slice(0, slash));
    const file = path.join(dir, ref.key.slice(slash + 1));
    try {
      return await openFd(file, ref, sync);
    } catch (e) {
      const code = (e as OjsError).cause === undefined ? undefined : ((e as OjsError).cause as NodeJS.ErrnoException).code;
      if (code !== 'ELOOP') throw e;
    }
    return openFd(await this.resolve(ref), ref, sync);
  }

  /**
   * The same as openInside without waiting, when the directory's real path is known already;
   * undefined when it is not, or when the last component is a symlink.
   */
  private openInsideSync(ref: ObjectRef): number | undefined {
    checkKey(ref);
    const slash = ref.key.lastIndexOf('/');
    const hit = this.realDirs.get(`${ref.bucket}\0${slash < 0 ? '' : ref.key.slice(0, slash)}`);
    if (hit?.resolved === undefined || Date.now() - hit.at >= DIR_CACHE_TTL_MS) return undefined;
    try {
      return fs.openSync(path.join(hit.resolved, ref.key.slice(slash + 1)), OPEN_FLAGS);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ELOOP') return undefined;
      throw fsError(e, ref);
    }
  }

  private async realDir(ref: ObjectRef, dirKey: string): Promise<string> {
    const cacheKey = `${ref.bucket}\0${dirKey}`;
    const now = Date.now();
    const hit = this.realDirs.get(cacheKey);
    if (hit !== undefined && now - hit.at < DIR_CACHE_TTL_MS) return hit.real;
    const root = await this.realRoot(ref.bucket);
    // The promise is what is cached, so that concurrent opens in one directory resolve it once.
    const entry: { real: Promise<string>; resolved?: string; at: number } = { real: Promise.resolve(root), at: now };
    entry.real = (dirKey === '' ? Promise.resolve(root) : fs.promises.realpath(path.join(root, dirKey))).then(
      (r) => {
        if (inside(root, r)) return (entry.resolved = r);
        throw new OjsError('Forbidden', `'${dirKey}' resolves outside its root (symlink)`, { context: { provider: 'file', bucket: ref.bucket, key: dirKey } });
      },
      (e: unknown) => {
        this.realDirs.delete(cacheKey);
        throw fsError(e, { bucket: ref.bucket, key: dirKey });
      },
    );
    if (this.realDirs.size >= DIR_CACHE_MAX) this.realDirs.clear();
    this.realDirs.set(cacheKey, entry);
    return entry.real;
  }
}

/** A positional reader over one open file descriptor; fails if the file shrinks under it. */
class FileBody extends Readable {
  private pos: number;
  private remaining: number;

  private readonly onAbort: () => void;

  constructor(private readonly fd: number, range: ResolvedRange, private readonly ref: ObjectRef, private readonly signal: AbortSignal, private readonly io: FileSource) {
    // highWaterMark: what an open, paused file holds (one read).
    super({ highWaterMark: readChunks.chunkBytes });
    this.pos = range.offset;
    this.remaining = range.length;
    this.onAbort = () => this.destroy(abortedError(signal));
    signal.addEventListener('abort', this.onAbort, { once: true });
  }

  override _read(): void {
    if (this.remaining === 0) {
      this.push(null);
      return;
    }
    const sync = this.io.syncNow();
    if (sync && this.io.turnSpent()) {
      this.io.nextTurn(() => {
        if (!this.destroyed) this._read();
      });
      return;
    }
    const want = Math.min(this.remaining, readChunks.chunkBytes);
    const buf = want > SLAB_PIECE_MAX ? readChunks.take(want) : Buffer.allocUnsafe(want);
    if (sync) {
      let n: number;
      const t0 = performance.now();
      try {
        n = fs.readSync(this.fd, buf, 0, want, this.pos);
      } catch (e) {
        this.destroy(fsError(e, this.ref));
        return;
      }
      this.io.noteSyncRead(performance.now() - t0, n);
      this.got(buf, want, n);
      return;
    }
    fs.read(this.fd, buf, 0, want, this.pos, (err, n) => {
      if (this.destroyed) return;
      if (err) return this.destroy(fsError(err, this.ref));
      this.got(buf, want, n);
    });
  }

  private got(buf: Buffer, want: number, n: number): void {
    if (n === 0) {
      this.destroy(new OjsError('SizeMismatch', `file ended ${this.remaining} bytes early (truncated while being read?)`, { context: ctx(this.ref) }));
      return;
    }
    this.pos += n;
    this.remaining -= n;
    this.push(n === want ? buf : buf.subarray(0, n));
    if (this.remaining === 0) this.push(null);
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.signal.removeEventListener('abort', this.onAbort);
    if (this.io.syncNow()) {
      let closeErr: unknown;
      try {
        fs.closeSync(this.fd);
      } catch (e) {
        closeErr = e;
      }
      cb(err ?? (closeErr as Error | undefined));
      return;
    }
    fs.close(this.fd, (closeErr) => cb(err ?? closeErr));
  }
}

/** A body read at open; the stream is only made for consumers that ask for one. */
class InMemoryObject implements OpenedObject {
  readonly length: number;
  readonly size: number;
  readonly mtime: Date;

  constructor(readonly range: ResolvedRange, private readonly st: fs.Stats, readonly bytes: Buffer) {
    this.length = range.length;
    this.size = st.size;
    this.mtime = st.mtime;
  }

  /** Computed on demand: most consumers of small files never look at it. */
  get etag(): string {
    return etagOf(this.st);
  }

  get body(): Readable {
    const bytes = this.bytes;
    return new Readable({
      read() {
        if (bytes.length > 0) this.push(bytes);
        this.push(null);
      },
    });
  }
}

const OPEN_FLAGS = fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW;

function openFd(file: string, ref: ObjectRef, sync: boolean): Promise<number> {
  if (sync) {
    try {
      return Promise.resolve(fs.openSync(file, OPEN_FLAGS));
    } catch (e) {
      return Promise.reject(fsError(e, ref));
    }
  }
  return new Promise((res, rej) => fs.open(file, OPEN_FLAGS, (e, fd) => (e ? rej(fsError(e, ref)) : res(fd))));
}

function fstatSync(fd: number, ref: ObjectRef): fs.Stats {
  try {
    return fs.fstatSync(fd);
  } catch (e) {
    throw fsError(e, ref);
  }
}

function fstatAsync(fd: number, ref: ObjectRef): Promise<fs.Stats> {
  return new Promise((res, rej) => fs.fstat(fd, (e, s) => (e ? rej(fsError(e, ref)) : res(s))));
}

/** Memory for a small body: a piece of a slab, or a read chunk (which the consumer may give back). */
function bodyBuffer(n: number): Buffer {
  if (n === 0) return Buffer.alloc(0);
  if (n > SLAB_PIECE_MAX) return n <= readChunks.chunkBytes ? readChunks.take(n) : Buffer.allocUnsafe(n);
  return smallBodies.take(n);
}

/** Reads exactly range.length bytes, or fails if the file is shorter than its stat said. */
function readAllSync(fd: number, range: ResolvedRange, ref: ObjectRef): Buffer {
  const buf = bodyBuffer(range.length);
  let got = 0;
  while (got < range.length) {
    let n: number;
    try {
      n = fs.readSync(fd, buf, got, range.length - got, range.offset + got);
    } catch (e) {
      throw fsError(e, ref);
    }
    if (n === 0) throw new OjsError('SizeMismatch', `file ended ${range.length - got} bytes early (truncated while being read?)`, { context: ctx(ref) });
    got += n;
  }
  return buf;
}

function checkKey(ref: ObjectRef): void {
  const problem = objectNameProblem(ref.key);
  if (problem !== undefined) throw new OjsError('Forbidden', `object name '${ref.key}' ${problem}`, { context: ctx(ref) });
}

function inside(root: string, p: string): boolean {
  return root === '/' || p === root || p.startsWith(root + path.sep);
}

/** Size and mtime identify a file version well enough to detect a change between two reads. */
function etagOf(st: fs.Stats): string {
  return `"${st.size.toString(16)}-${Math.floor(st.mtimeMs * 1000).toString(16)}"`;
}

function ctx(ref: ObjectRef): ErrorContext {
  return { provider: 'file', bucket: ref.bucket, key: ref.key };
}

function isCode(e: unknown, code: string): boolean {
  return (e as { code?: string } | null)?.code === code;
}

function notRegular(ref: ObjectRef, st: fs.Stats): OjsError {
  const what = st.isDirectory() ? 'a directory' : 'not a regular file';
  return new OjsError('NotFound', `'${ref.key}' is ${what}`, { context: ctx(ref) });
}

function fsError(e: unknown, ref: ObjectRef): OjsError {
  if (e instanceof OjsError) return e;
  const err = e as NodeJS.ErrnoException;
  const where = ref.bucket === '' ? `/${ref.key}` : `${ref.bucket}/${ref.key}`;
  switch (err.code) {
    case 'ENOENT':
    case 'ENOTDIR':
      return new OjsError('NotFound', `no such file: ${where}`, { context: ctx(ref), cause: e });
    case 'EACCES':
    case 'EPERM':
      return new OjsError('Forbidden', `permission denied: ${where}`, { context: ctx(ref), cause: e });
    case 'ELOOP':
      return new OjsError('Forbidden', `too many symlinks: ${where}`, { context: ctx(ref), cause: e });
    case 'EMFILE':
    case 'ENFILE':
    case 'EAGAIN':
      return new OjsError('Unavailable', `${err.code} reading ${where}`, { context: ctx(ref), cause: e, temporary: true });
    default:
      return new OjsError('Upstream', `${err.code ?? 'error'} reading ${where}: ${err.message}`, { context: ctx(ref), cause: e });
  }
}
