/**
 * Shared memory objects: named POSIX shared memory (`shm_open`) between unrelated processes, and
 * anonymous shared memory (`memfd_create`) handed to child processes as a file descriptor.
 * @module
 */
import { checkConstruct, kConstruct } from './internal/symbols.js';
import type { IOType, StdioOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, fstatSync, ftruncateSync, readFileSync, readlinkSync, constants as fsConstants } from 'node:fs';
import { native } from './binding.js';
import { constants } from './constants.js';
import { closedError, invalidArgType, invalidArgValue, invalidState, mmapkitError, systemError, type SystemError } from './internal/errors.js';
import { type Mapping, map } from './mapping.js';
import { OWNERSHIP_OPTIONS, type OwnershipOptions, type OwnershipPolicy, checkOwnership, parseOwnership, policyForMode } from './ownership.js';
import { type Int64Like, validateBoolean, validateInt32, validateInt64, validateOneOf, validateOptions } from './internal/validators.js';
import { type HugePages, checkHugeLength, hugePagesError, parseHugePages } from './internal/hugepages.js';

/** The longest name a shared memory object can have, in bytes (NAME_MAX: a file in /dev/shm). */
export const SHM_NAME_MAX = 255;

/** The environment variable that tells a child which inherited descriptors hold shared memory. */
export const INHERIT_ENV = 'MMAPKIT_SHM_FDS';

/** Options of {@link SharedMemory.create}. */
export interface SharedMemoryCreateOptions {
  /** Permission bits of the new object. Default `0o600` (owner only). */
  mode?: number;
  /**
   * Fail with `EEXIST` when the name exists (`O_EXCL`). Default true: an existing object is never
   * silently reused. With false an existing object is opened and grown to `size` if smaller, but only
   * if this user owns it and its mode lets in no one that `mode` would not
   * (`ERR_MMAP_NOT_OWNER`, `ERR_MMAP_UNSAFE_PERMISSIONS`, as for {@link SharedMemory.open}).
   */
  exclusive?: boolean;
}
const CREATE_OPTIONS = ['mode', 'exclusive'] as const;

/**
 * The one-argument form of {@link SharedMemory.create}: `SharedMemory.create({ size })` makes a new
 * object under a generated unique name; `name` may be given as well.
 */
export interface SharedMemoryCreateAllOptions extends SharedMemoryCreateOptions {
  /** The name, as for the first argument of `create()`. Default: a generated unique name. */
  name?: string;
  /** Size in bytes, from 1 to 2^53 - 1. Required. */
  size: Int64Like;
}
const CREATE_ALL_OPTIONS = ['name', 'size', ...CREATE_OPTIONS] as const;

/** The prefix of the names that `SharedMemory.create()` generates (`/mmapkit-` and 16 hex digits). */
const GENERATED_PREFIX = 'mmapkit-';

/** A fresh name for `create()` without one: 64 random bits, so another process's guess is hopeless. */
function generatedName(): string {
  return `/${GENERATED_PREFIX}${randomBytes(8).toString('hex')}`;
}

/**
 * What {@link SharedMemory.handle} returns: a plain object that names a shared memory object, to
 * send to another process or thread (`JSON.stringify`, `postMessage`, a command line) and open
 * there with `SharedMemory.open(handle)`. It holds no descriptor and no address: only the name
 * and the size the sender mapped.
 */
export interface SharedMemoryHandle {
  /** Always `'mmapkit.shm'`: tells a handle from any other object. */
  readonly kind: 'mmapkit.shm';
  /** The canonical name (`/name`). */
  readonly name: string;
  /** Bytes the sender mapped: `open(handle)` refuses a smaller object. */
  readonly size: number;
}
const HANDLE_KIND = 'mmapkit.shm';
const HANDLE_FIELDS = ['kind', 'name', 'size'];

/**
 * Read a handle once, field by field, and check its shape: a plain object with exactly `kind`,
 * `name` and `size`, kind `'mmapkit.shm'`, a valid name, a size of at least 1.
 */
function parseHandle(handle: unknown): { canonical: string; size: bigint } {
  // Without a kind it is no handle at all (a wrong kind is a handle of something else).
  if (handle === null || typeof handle !== 'object' || Array.isArray(handle) || ArrayBuffer.isView(handle) || !Object.hasOwn(handle, 'kind')) {
    throw invalidArgType('name', 'of type string, or a handle from shm.handle()', handle);
  }
  for (const key of Object.keys(handle)) {
    if (!HANDLE_FIELDS.includes(key)) {
      throw invalidArgValue(`handle.${key}`, (handle as Record<string, unknown>)[key], 'is not a field of a SharedMemory handle ({ kind, name, size })');
    }
  }
  const { kind, name, size } = handle as Record<string, unknown>;
  if (kind !== HANDLE_KIND) throw invalidArgValue('handle.kind', kind, `must be '${HANDLE_KIND}' (a handle from shm.handle())`);
  if (name === undefined) {
    throw invalidArgValue(
      'handle.name',
      name,
      'is missing: only named shared memory has a handle (anonymous memory has no name; hand its descriptor to a child with childOptions() instead)',
    );
  }
  const canonical = validateShmName(name, 'handle.name');
  return { canonical, size: validateInt64(size, 'handle.size', 1n, BigInt(Number.MAX_SAFE_INTEGER)) };
}

/** Options of {@link SharedMemory.fromFd} and {@link SharedMemory.inherited}. */
export interface SharedMemoryFdOptions {
  /**
   * `'write'` (default): shared read-write. `'read'`: the object is opened read-only and mapped like
   * `map(..., { access: 'read' })` (a stray write stays private to this process).
   */
  access?: 'read' | 'write';
}
const FD_OPTIONS = ['access'] as const;

/** Options of {@link SharedMemory.anonymous}. */
export interface SharedMemoryAnonymousOptions {
  /**
   * Huge pages from the kernel's reserved pool (`MFD_HUGETLB`: the memfd lives in hugetlbfs): `true`
   * for the system's default huge page size, `'2MB'` or `'1GB'` (`MFD_HUGE_2MB`, `MFD_HUGE_1GB`).
   * `size` must be a multiple of that size (`ERR_OUT_OF_RANGE`), and so must a later `resize()`
   * (`EINVAL` from ftruncate). The pages are taken from the pool when the memory is mapped: too few
   * there is `ERR_MMAP_NO_HUGE_PAGES`. Default false.
   */
  hugePages?: HugePages;
}
const ANONYMOUS_OPTIONS = ['hugePages'] as const;

/**
 * Options of {@link SharedMemory.open}: the access, and whose object it may be and who else it may
 * let in (checked with `fstat` on the opened descriptor). By default only an object of this user
 * whose mode gives no read or write bits to its group or to others is opened.
 */
export interface SharedMemoryOpenOptions extends SharedMemoryFdOptions, OwnershipOptions {}
const OPEN_OPTIONS = ['access', ...OWNERSHIP_OPTIONS] as const;
const EEXIST = -17;
const ENOENT = -2;

/** A `stdio` array as `child_process.spawn` takes it. */
export type StdioArray = Exclude<StdioOptions, IOType>;

/** What {@link SharedMemory.childOptions} adds to spawn options. */
export interface ChildShareOptions {
  stdio: StdioArray;
  env: NodeJS.ProcessEnv;
}

/**
 * Validate a POSIX shared memory name and return it in canonical form (`/name`). A leading slash is
 * optional; no other slash, not empty, not `.` or `..`, at most {@link SHM_NAME_MAX} bytes.
 */
export function validateShmName(name: unknown, argName = 'name'): string {
  if (typeof name !== 'string') throw invalidArgType(argName, 'of type string', name);
  const bare = name.startsWith('/') ? name.slice(1) : name;
  if (bare.length === 0) throw invalidArgValue(argName, name, 'must not be empty');
  if (bare.includes('/')) throw invalidArgValue(argName, name, 'must not contain a slash (other than a leading one)');
  if (bare.includes('\0')) throw invalidArgValue(argName, name, 'must not contain null bytes');
  if (bare === '.' || bare === '..') throw invalidArgValue(argName, name, "must not be '.' or '..'");
  if (Buffer.byteLength(bare) > SHM_NAME_MAX) {
    throw invalidArgValue(argName, name, `must be at most ${SHM_NAME_MAX} bytes long`);
  }
  return `/${bare}`;
}


/** Inherited descriptors already taken by `inherited()` (each can be owned once). */
const adopted = new Set<number>();

/** SharedMemory objects of this thread that hold a descriptor: not closed, not collected. */
let openHandles = 0;

/** Closes the descriptor of a SharedMemory that was dropped without close() (its mapping has its own). */
const fdFinalizer = new FinalizationRegistry<number>((fd) => {
  openHandles--;
  try {
    closeSync(fd);
  } catch {
    // already closed by someone else: nothing to release
  }
});

/** The soft limit of open descriptors when last read (RLIMIT_NOFILE), or undefined. */
let nofile: number | undefined;

/**
 * The soft limit of open descriptors, from /proc/self/limits. Read when the first SharedMemory is made:
 * once descriptors have run out, the file cannot be opened, and the last value read is used.
 */
function nofileLimit(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'latin1'));
    if (m !== null) nofile = Number(m[1]);
  } catch {
    // out of descriptors (or no /proc): keep what was read before
  }
  return nofile;
}

/**
 * A system error of a call that opens a descriptor; on EMFILE, when this thread's open SharedMemory
 * objects hold a good part of the process's descriptors (a quarter of RLIMIT_NOFILE, or 256 where the
 * limit cannot be read), the message says so and asks whether close() was forgotten. The error keeps
 * its shape (code, errno, syscall, path); only the message grows.
 */
function openError(errno: number, syscall: string, path?: string): SystemError {
  const err = systemError(errno, syscall, path);
  if (err.code === 'EMFILE') {
    const limit = nofileLimit();
    if (openHandles * 4 >= (limit ?? 1024)) {
      err.message +=
        ` (${openHandles.toLocaleString('en-US')} SharedMemory objects are open in this thread, each holding a descriptor` +
        `${limit === undefined ? '' : `, of at most ${limit.toLocaleString('en-US')} per process (RLIMIT_NOFILE)`}: did you forget close()? ` +
        'A SharedMemory dropped without close() keeps its descriptor until the garbage collector finds it.)';
      Error.captureStackTrace(err, openError); // the stack starts with the message: make it the new one
    }
  }
  return err;
}

/**
 * A shared memory object and its mapping. Disposable: `close()` unmaps it and closes its descriptor
 * (the object itself lives on until it is unlinked and no process has it open or mapped).
 */
export class SharedMemory implements Disposable {
  /** The canonical name (`/name`), or undefined for anonymous memory. */
  readonly name: string | undefined;
  /** Whether this handle may write (and resize). */
  readonly access: 'read' | 'write';
  #fd: number;
  #mapping: Mapping | undefined;

  /** @internal Use the static methods. */
  constructor(token: symbol, fd: number, name: string | undefined, access: 'read' | 'write') {
    checkConstruct(token, 'use SharedMemory.create(), open(), anonymous() or fromFd()');
    this.#fd = fd;
    this.name = name;
    this.access = access;
    try {
      this.#mapping = map(fd, { access });
      fdFinalizer.register(this, fd, this);
      if (openHandles++ === 0 && nofile === undefined) nofileLimit();
    } catch (err) {
      closeSync(fd);
      if ((err as { code?: string }).code === 'ERR_MMAP_EMPTY_FILE') {
        throw mmapkitError(
          'ERR_MMAP_EMPTY_FILE',
          `Shared memory ${name ?? `fd ${fd}`} has size 0: its creator has not sized it yet (or it was created empty).`,
        );
      }
      throw err;
    }
  }

  /**
   * Create a named shared memory object of `size` bytes (`shm_open(O_CREAT | O_EXCL | O_RDWR)` then
   * `ftruncate`) and map it shared read-write. Exclusive by default: an existing name is `EEXIST`.
   * With one options object and no name (`create({ size })`) the name is generated: `/mmapkit-` and
   * 16 random hex digits, drawn again if taken; read it from `shm.name`, hand it on with
   * `shm.handle()`, and unlink it like any other name. (`create(undefined, size)` stays an error: an
   * undefined name is more often a missing value than a wish for a random one.)
   */
  static create(name: string, size: Int64Like, options?: SharedMemoryCreateOptions): SharedMemory;
  static create(options: SharedMemoryCreateAllOptions): SharedMemory;
  static create(nameOrOptions: string | SharedMemoryCreateAllOptions, size?: Int64Like, options?: SharedMemoryCreateOptions): SharedMemory {
    checkRuntime();
    let name: unknown = nameOrOptions;
    let sizeArg: unknown = size;
    let sizeName = 'size';
    let o: Partial<Record<(typeof CREATE_OPTIONS)[number], unknown>>;
    const oneObject = size === undefined && options === undefined && nameOrOptions !== null && typeof nameOrOptions === 'object';
    if (oneObject && !Array.isArray(nameOrOptions) && !ArrayBuffer.isView(nameOrOptions)) {
      // create({ name?, size, mode?, exclusive? }): everything in the one object.
      const all = validateOptions(nameOrOptions, 'options', CREATE_ALL_OPTIONS);
      ({ name, size: sizeArg } = all);
      sizeName = 'options.size';
      if (sizeArg === undefined) throw invalidArgType('options.size', 'of type number or bigint', sizeArg);
      o = all;
    } else {
      if (typeof name !== 'string') {
        throw invalidArgType('name', 'of type string (for a generated name, pass one options object: create({ size }))', name);
      }
      o = validateOptions(options, 'options', CREATE_OPTIONS);
    }
    const given = name === undefined ? undefined : validateShmName(name, sizeName === 'size' ? 'name' : 'options.name');
    const length = validateInt64(sizeArg, sizeName, 1n, BigInt(Number.MAX_SAFE_INTEGER));
    const mode = o.mode === undefined ? 0o600 : validateInt32(o.mode, 'options.mode', 0, 0o777);
    const exclusive = o.exclusive === undefined ? true : validateBoolean(o.exclusive, 'options.exclusive');
    if (given === undefined && !exclusive) {
      throw invalidArgValue('options.exclusive', o.exclusive, 'needs a name: a generated name always makes a new object');
    }
    // Know whether this call made the object: only then may a failure below remove it. Without
    // `exclusive`, an existing object is opened instead (retrying if it is unlinked in between).
    // A generated name that is taken (by chance, or planted by someone who guessed) is drawn again.
    let canonical = given ?? generatedName();
    let fd = -1;
    let created = false;
    for (let attempt = 0; fd < 0; attempt++) {
      fd = native.shmOpen(canonical, fsConstants.O_RDWR | fsConstants.O_CREAT | fsConstants.O_EXCL, mode);
      created = fd >= 0;
      if (fd === EEXIST && given === undefined && attempt < 100) {
        canonical = generatedName();
        continue;
      }
      if (fd === EEXIST && !exclusive) fd = native.shmOpen(canonical, fsConstants.O_RDWR, 0);
      if (fd < 0 && !(fd === ENOENT && !exclusive && attempt < 100)) throw openError(fd, 'shm_open', canonical);
    }
    // Without O_EXCL the object may have been there, made by anyone: the same check as open(), letting
    // in whom `mode` would (an object this call created is ours, with at most those bits).
    if (!created) openedChecked(fd, canonical, policyForMode(mode));
    try {
      try {
        if (fstatSync(fd).size < Number(length)) ftruncateSync(fd, Number(length));
      } catch (err) {
        closeSync(fd);
        throw err;
      }
      return new SharedMemory(kConstruct, fd, canonical, 'write'); // closes fd itself if it cannot map
    } catch (err) {
      // Whatever step failed (ftruncate, or mmap: ENOMEM for a huge size), leave no name behind.
      if (created) native.shmUnlink(canonical);
      throw err;
    }
  }

  /**
   * Open an existing named shared memory object (`shm_open`); a missing name is `ENOENT`. The object
   * must belong to this user and give no one else read or write access, unless `options.owner` and
   * `options.sharedWith` accept more: `ERR_MMAP_NOT_OWNER`, `ERR_MMAP_UNSAFE_PERMISSIONS` (checked
   * with `fstat` on the opened descriptor, before anything is mapped; the name is left as it is).
   */
  static open(name: string | SharedMemoryHandle, options?: SharedMemoryOpenOptions): SharedMemory {
    checkRuntime();
    // A handle (from shm.handle(), maybe through JSON or postMessage) names the object and the
    // least size it must have.
    const { canonical, size: least } = typeof name === 'string' ? { canonical: validateShmName(name), size: undefined } : parseHandle(name);
    const o = validateOptions(options, 'options', OPEN_OPTIONS);
    const access = parseAccessValue(o.access);
    const policy = parseOwnership(o);
    const fd = native.shmOpen(canonical, access === 'write' ? fsConstants.O_RDWR : fsConstants.O_RDONLY, 0);
    if (fd < 0) throw openError(fd, 'shm_open', canonical);
    openedChecked(fd, canonical, policy);
    if (least !== undefined) {
      // Smaller than the handle says: it shrank since, or the name now belongs to another object.
      // Larger is fine: it grew (resize()), and all of it is mapped.
      let actual: bigint;
      try {
        actual = fstatSync(fd, { bigint: true }).size;
      } catch (err) {
        closeSync(fd);
        throw err;
      }
      if (actual < least) {
        closeSync(fd);
        throw invalidArgValue(
          'handle.size',
          Number(least),
          `says '${canonical}' has at least ${least} bytes, but it has ${actual}: it shrank since the handle was made, or the name was reused for another object`,
        );
      }
    }
    return new SharedMemory(kConstruct, fd, canonical, access);
  }

  /** Remove a name (`shm_unlink`). Processes that have it open or mapped keep it; `ENOENT` if missing. */
  static unlink(name: string): void {
    const canonical = validateShmName(name);
    const rc = native.shmUnlink(canonical);
    if (rc < 0) throw systemError(rc, 'shm_unlink', canonical);
  }

  /**
   * Anonymous shared memory (`memfd_create` with `MFD_CLOEXEC`): it has no name; hand it to a child
   * with {@link SharedMemory.childOptions}. Its descriptor is close-on-exec, so it never leaks into
   * children it was not given to. `options.hugePages`: huge pages (`MFD_HUGETLB`).
   */
  static anonymous(size: Int64Like, options?: SharedMemoryAnonymousOptions): SharedMemory {
    checkRuntime();
    const length = validateInt64(size, 'size', 1n, BigInt(Number.MAX_SAFE_INTEGER));
    const huge = parseHugePages(validateOptions(options, 'options', ANONYMOUS_OPTIONS).hugePages, 'options.hugePages', 'memfd_create');
    if (huge !== undefined) checkHugeLength(length, huge, 'size', size);
    const fd = native.memfdCreate('mmapkit', (constants.MFD_CLOEXEC ?? 1) | (huge?.flags ?? 0));
    if (fd < 0) {
      const err = openError(fd, 'memfd_create');
      throw huge === undefined ? err : hugePagesError(err, huge, length);
    }
    try {
      ftruncateSync(fd, Number(length));
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    try {
      return new SharedMemory(kConstruct, fd, undefined, 'write'); // closes fd itself if it cannot map
    } catch (err) {
      // A hugetlb memfd takes its pages from the pool when mapped: ENOMEM here means too few.
      throw huge === undefined ? err : hugePagesError(err, huge, length);
    }
  }

  /**
   * Attach to shared memory given as a file descriptor (a memfd, an shm_open descriptor, or one
   * inherited from a parent). The descriptor is duplicated (close-on-exec); yours stays yours.
   */
  static fromFd(fd: number, options?: SharedMemoryFdOptions): SharedMemory {
    checkRuntime();
    validateInt32(fd, 'fd', 0);
    const access = parseAccess(options);
    const dup = native.dupCloexec(fd);
    if (dup < 0) throw openError(dup, 'fcntl');
    return new SharedMemory(kConstruct, dup, undefined, access);
  }

  /**
   * In a child started with {@link SharedMemory.childOptions}: attach to the memory the parent
   * handed over under `key` (default `'default'`). The SharedMemory takes the inherited descriptor
   * itself (made close-on-exec, so it does not leak further; closed by `close()`), so each key can be
   * attached once; for a second handle, use `SharedMemory.fromFd(first.fd)`.
   */
  static inherited(key = 'default', options?: SharedMemoryFdOptions): SharedMemory {
    checkRuntime();
    if (typeof key !== 'string') throw invalidArgType('key', 'of type string', key);
    const fds = readInheritEnv(process.env);
    const fd = fds[key];
    if (fd === undefined) {
      throw invalidArgValue('key', key, `names no inherited shared memory (${INHERIT_ENV} has: ${Object.keys(fds).join(', ') || 'nothing'})`);
    }
    const access = parseAccess(options);
    if (adopted.has(fd)) {
      throw invalidState(`the shared memory inherited as '${key}' (fd ${fd}) is already attached; use SharedMemory.fromFd(first.fd) for another handle`);
    }
    // The variable can outlive its meaning (a grandchild started with a plain spawn inherits the
    // environment, not the descriptors): make sure the number names shared memory.
    let target = '';
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      // not open
    }
    if (!target.startsWith('/memfd:') && !target.startsWith('memfd:') && !target.startsWith('/dev/shm/')) {
      throw invalidState(
        `descriptor ${fd}, named by ${INHERIT_ENV} for '${key}', is ${target === '' ? 'not open' : `not shared memory (${target})`}: was this process started with childOptions()?`,
      );
    }
    const rc = native.setCloexec(fd, true);
    if (rc < 0) throw systemError(rc, 'fcntl');
    const shm = new SharedMemory(kConstruct, fd, undefined, access);
    adopted.add(fd);
    return shm;
  }

  /** The descriptor (close-on-exec). Closed by {@link SharedMemory.close}. */
  get fd(): number {
    this.#check('fd');
    return this.#fd;
  }

  /** The mapping of the whole object. A new one after {@link SharedMemory.resize}. */
  get mapping(): Mapping {
    this.#check('mapping');
    return this.#mapping!;
  }

  /** The whole object as a zero-copy Buffer (`mapping.buffer`). */
  get buffer(): Buffer {
    return this.mapping.buffer;
  }

  /** Size in bytes, as mapped by this handle. */
  get size(): number {
    return this.mapping.length;
  }

  /** Whether {@link SharedMemory.close} has been called. */
  get closed(): boolean {
    return this.#mapping === undefined;
  }

  /**
   * Change the size (`ftruncate`) and map the object again: views of the old mapping are detached,
   * and synchronization objects over it must be attached again. If the old mapping cannot be unmapped
   * (`ERR_MMAP_BUSY`: it holds a Mutex this thread has locked), the object has been resized already
   * but this handle keeps its old mapping.
   * Other processes keep their mapping at the old size until they call {@link SharedMemory.refresh};
   * shrinking under them makes their lost pages read as zeros (see docs/safety.md).
   */
  resize(size: Int64Like): void {
    this.#check('resize');
    const length = validateInt64(size, 'size', 1n, BigInt(Number.MAX_SAFE_INTEGER));
    if (this.access !== 'write') throw invalidArgValue('size', size, "cannot be changed through a handle opened with access 'read'");
    ftruncateSync(this.#fd, Number(length));
    this.#remap();
  }

  /** Map again if another process resized the object; returns whether the size changed. */
  refresh(): boolean {
    this.#check('refresh');
    if (fstatSync(this.#fd).size === this.#mapping!.length) return false;
    this.#remap();
    return true;
  }

  /**
   * Spawn options that hand this memory to a child process: the descriptor is appended to `stdio`
   * (Node duplicates it into the child, without close-on-exec, at that index) and its index is
   * recorded under `key` in the child's environment. In the child, `SharedMemory.inherited(key)`.
   *
   * ```ts
   * spawn(process.execPath, ['child.js'], shm.childOptions({ stdio: 'inherit' }));
   * ```
   */
  childOptions<T extends { stdio?: unknown; env?: NodeJS.ProcessEnv | undefined }>(
    options?: T,
    key = 'default',
  ): Omit<T, 'stdio' | 'env'> & ChildShareOptions {
    if (typeof key !== 'string' || key.length === 0) throw invalidArgType('key', 'a non-empty string', key);
    const base = (options ?? {}) as T;
    if (typeof base !== 'object') throw invalidArgType('options', 'of type object', options);
    let stdio: StdioArray;
    const given = base.stdio;
    if (given === undefined) stdio = ['pipe', 'pipe', 'pipe'];
    else if (typeof given === 'string') stdio = [given as IOType, given as IOType, given as IOType];
    else if (Array.isArray(given)) stdio = [...(given as StdioArray)];
    else throw invalidArgType('options.stdio', 'a string or an array', given);
    while (stdio.length < 3) stdio.push('pipe');
    const env = { ...(base.env ?? process.env) };
    // Keep only entries that name a descriptor this stdio array already hands over (earlier calls on
    // the same options): entries this process inherited from its own parent mean nothing to the child.
    const fds: Record<string, number> = {};
    for (const [k, v] of Object.entries(readInheritEnv(env))) if (typeof stdio[v] === 'number') fds[k] = v;
    // The spread reads the caller's other options (their getters too) before the state is checked:
    // a getter may have closed this handle.
    const result = { ...base, stdio, env };
    this.#check('childOptions');
    const index = stdio.length;
    stdio.push(this.#fd);
    fds[key] = index;
    env[INHERIT_ENV] = JSON.stringify(fds);
    return result;
  }

  /** Unmap and close the descriptor. Idempotent. The object lives on until unlinked. */
  close(): void {
    if (this.#mapping === undefined) return;
    this.#mapping.unmap();
    this.#mapping = undefined;
    if (fdFinalizer.unregister(this)) openHandles--;
    closeSync(this.#fd);
    this.#fd = -1;
  }

  /** Remove this object's name (`shm_unlink`); the memory stays usable until closed everywhere. */
  unlink(): void {
    if (this.name === undefined) throw invalidState('anonymous shared memory has no name to unlink');
    SharedMemory.unlink(this.name);
  }

  /**
   * A plain object that names this memory, `{ kind: 'mmapkit.shm', name, size }`: JSON-able and
   * postMessage-able, for another process or thread to open with `SharedMemory.open(handle)` (which
   * refuses an object smaller than `size`). Anonymous memory has no name to open: hand its descriptor
   * to a child with `childOptions()` (`SharedMemory.inherited()` there) instead; this throws
   * `ERR_INVALID_STATE` for it.
   */
  handle(): SharedMemoryHandle {
    this.#check('handle');
    if (this.name === undefined) {
      throw invalidState(
        'anonymous shared memory has no name, so no handle another process could open: hand its descriptor to a child process ' +
          'with childOptions() (SharedMemory.inherited() in the child), or create named memory (SharedMemory.create({ size }))',
      );
    }
    return { kind: HANDLE_KIND, name: this.name, size: this.#mapping!.length };
  }

  /**
   * `util.inspect(shm)` (and `console.log`): `SharedMemory { name (or anonymous: true), size, access,
   * fd, closed }`. Never the address. Never throws.
   */
  [Symbol.for('nodejs.util.inspect.custom')](depth: number, options: import('node:util').InspectOptionsStylized, inspect: typeof import('node:util').inspect): string {
    if (depth < 0) return options.stylize('[SharedMemory]', 'special');
    const fields: Record<string, unknown> = {};
    try {
      if (this.name === undefined) fields['anonymous'] = true;
      else fields['name'] = this.name;
      const m = this.#mapping;
      if (m !== undefined) fields['size'] = m.length;
      fields['access'] = this.access;
      if (m !== undefined) fields['fd'] = this.#fd;
      fields['closed'] = m === undefined;
      if (m !== undefined && !m.closed && m.faulted) fields['faulted'] = true;
    } catch {
      fields['state'] = 'unknown';
    }
    return `SharedMemory ${inspect(fields, options)}`;
  }

  /** Same as {@link SharedMemory.close}. */
  [Symbol.dispose](): void {
    this.close();
  }

  #remap(): void {
    const fresh = map(this.#fd, { access: this.access });
    try {
      this.#mapping!.unmap();
    } catch (err) {
      fresh.unmap();
      throw err;
    }
    this.#mapping = fresh;
  }

  #check(what: string): void {
    if (this.#mapping === undefined) {
      throw closedError(`use ${what}`, 'SharedMemory');
    }
  }
}

/**
 * Refuse runtimes whose `node:fs` cannot use the descriptors that SharedMemory opens natively
 * (shm_open, memfd_create): Deno's (2.x) only knows descriptors it opened itself and answers EBADF.
 */
function checkRuntime(): void {
  if (process.versions['deno'] !== undefined) {
    throw mmapkitError(
      'ERR_MMAP_UNSUPPORTED_RUNTIME',
      `SharedMemory does not work in Deno ${process.versions['deno']}: its node:fs only accepts file descriptors that it opened ` +
        'itself, not those of shm_open or memfd_create (EBADF). To share memory between processes in Deno, map a file ' +
        "that both open: map(path, { access: 'write' }).",
    );
  }
}

function parseAccess(options: unknown): 'read' | 'write' {
  return parseAccessValue(validateOptions(options, 'options', FD_OPTIONS).access);
}

function parseAccessValue(access: unknown): 'read' | 'write' {
  return access === undefined ? 'write' : validateOneOf(access, 'options.access', ['read', 'write'] as const);
}

/** Check the object just opened as `fd`; on a refusal (or a failed fstat) close `fd` and throw. */
function openedChecked(fd: number, canonical: string, policy: OwnershipPolicy): void {
  try {
    checkOwnership(fd, canonical, policy);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

function readInheritEnv(env: NodeJS.ProcessEnv): Record<string, number> {
  const raw = env[INHERIT_ENV];
  if (raw === undefined || raw === '') return {};
  try {
    const parsed: unknown = JSON.parse(raw);
    if (parsed !== null && typeof parsed === 'object') {
      const out: Record<string, number> = {};
      for (const [k, v] of Object.entries(parsed)) if (Number.isInteger(v) && (v as number) >= 0) out[k] = v as number;
      return out;
    }
  } catch {
    // fall through
  }
  throw invalidArgValue(`process.env.${INHERIT_ENV}`, raw, 'is not a JSON object of key to file descriptor');
}
