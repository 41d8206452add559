/**
 * Memory mappings: the high-level `map()` / `mapAnonymous()` API and the `Mapping` object that the
 * low-level POSIX functions (src/posix.ts) also return.
 *
 * Lifetime: the kernel mapping belongs to one `Mapping` object. Every ArrayBuffer handed out over it
 * holds a hidden reference to that object, so the garbage collector can only unmap it once neither the
 * Mapping nor any view of it is reachable. `unmap()` detaches every view first (they become length 0)
 * and then replaces the memory by an inaccessible placeholder that keeps the addresses until the
 * garbage collector releases them (see Region), so nothing can touch freed memory or a newer mapping.
 * @module
 */
import { checkConstruct, kConstruct, kHold, kOwner, kProtect, kRange } from './internal/symbols.js';
import { closeSync, fstatSync, ftruncateSync, openSync, readFileSync, readSync, rmSync, constants as fsConstants } from 'node:fs';
import { constants as bufferConstants } from 'node:buffer';
import { constants as osConstants } from 'node:os';
import { native } from './binding.js';
import './guard.js'; // installs the SIGBUS guard before the first mapping exists
import { constants, pageSize } from './constants.js';
import { closedError, invalidArgType, invalidArgValue, invalidState, mmapkitError, outOfRange, systemError, type MmapkitError } from './internal/errors.js';
import { OWNERSHIP_OPTIONS, type OwnerOption, type SharedWithOption, fileRefusal, filePolicy } from './ownership.js';
import { type MapsLine, isMappedFile, mapsLineAt } from './internal/procmaps.js';
import { type HugePages, checkHugeLength, hugePageSizeOfFd, hugePagesError, parseHugePages } from './internal/hugepages.js';
import {
  type Int64Like,
  validateBoolean,
  validateInt32,
  validateInt64,
  validateOneOf,
  validateOptions,
} from './internal/validators.js';

const { PROT_NONE, PROT_READ, PROT_WRITE, MAP_SHARED, MAP_PRIVATE, MAP_ANONYMOUS } = constants;
const PROT_RW = PROT_READ | PROT_WRITE;
const PAGE = BigInt(pageSize);

/** The largest view one ArrayBuffer can hold (`buffer.constants.MAX_LENGTH`, 4 GiB on Node 20). */
export const MAX_VIEW_LENGTH: number = bufferConstants.MAX_LENGTH;

/**
 * How a file is mapped, as Python's `mmap` names it:
 * - `'read'`: read the file; writes never reach it (see {@link MapOptions.access}).
 * - `'write'`: shared read-write (`MAP_SHARED`): writes reach the file and every process mapping it.
 * - `'copy'`: private copy-on-write (`MAP_PRIVATE`): writes stay in this process.
 */
export type Access = 'read' | 'write' | 'copy';
const ACCESS: readonly Access[] = ['read', 'write', 'copy'];

/** Page protection for {@link Mapping.protect}: `PROT_NONE`, `PROT_READ`, or `PROT_READ | PROT_WRITE`. */
export type Protection = 'none' | 'read' | 'write';
const PROTECTION: readonly Protection[] = ['none', 'read', 'write'];

/** A path accepted where `fs` accepts one. */
export type PathLike = string | Buffer | URL;

/** Options of {@link map}. */
export interface MapOptions {
  /**
   * How the file is mapped. Default `'read'`.
   * - `'read'`: the file is opened `O_RDONLY`, so it can never be changed through this mapping. It is
   *   mapped `MAP_PRIVATE` with `PROT_READ | PROT_WRITE`: JavaScript has no read-only Buffer, and a
   *   write to a `PROT_READ` page would kill the process with SIGSEGV, so a stray write lands in a
   *   private copy of the page instead. Pages you do not write keep showing the file's current content,
   *   including other processes' writes (Linux).
   * - `'write'`: `O_RDWR`, `MAP_SHARED`, `PROT_READ | PROT_WRITE`.
   * - `'copy'`: `O_RDONLY`, `MAP_PRIVATE`, `PROT_READ | PROT_WRITE`: copy-on-write, writes expected.
   */
  access?: Access;
  /**
   * Byte offset in the file where the view starts: any offset, not only a page multiple (the kernel
   * mapping starts at the page below and the view starts exactly here). Default 0.
   */
  offset?: Int64Like;
  /** Bytes to map. Default: from `offset` to the end of the file. Required for devices. */
  length?: Int64Like;
  /**
   * Make sure the file is at least this big before mapping it: create it if missing (with `mode`) and
   * grow it with ftruncate if smaller. Never shrinks a file. Only with `access: 'write'`.
   * Default: none (the file must exist and be non-empty).
   */
  size?: Int64Like;
  /** Permission bits of a file that `size` creates. Default `0o600`. */
  mode?: number;
  /** Fault every page in now (`MAP_POPULATE`), so that first accesses do not wait for I/O. Default false. */
  populate?: boolean;
  /**
   * With `size` only: whose existing file to accept, as for `SharedMemory.open()`: `'self'` (the
   * effective uid of this process, default), a uid, or `'any'`. With `size` the path is opened
   * `O_NOFOLLOW` (a symbolic link there is `ELOOP`) and a file this call did not create is checked
   * with `fstat` before it is grown or mapped: another owner is `ERR_MMAP_NOT_OWNER`.
   */
  owner?: OwnerOption;
  /**
   * With `size` only: whom besides its owner an existing file's mode may let write: `'nobody'`,
   * `'group'` (a group of this process), `'anyone'`. Default: whom `mode` lets write (`'nobody'` for
   * the default 0o600). Group or other write bits beyond that are `ERR_MMAP_UNSAFE_PERMISSIONS`; read
   * bits are not looked at.
   */
  sharedWith?: SharedWithOption;
}
const MAP_OPTIONS = ['access', 'offset', 'length', 'size', 'mode', 'populate', ...OWNERSHIP_OPTIONS] as const;

/** Options of {@link mapAnonymous}. */
export interface AnonymousOptions {
  /** `MAP_SHARED` instead of `MAP_PRIVATE`. Default false. */
  shared?: boolean;
  /** Fault every page in now (`MAP_POPULATE`). Default false. */
  populate?: boolean;
  /**
   * Huge pages from the kernel's reserved pool (`MAP_HUGETLB`): `true` for the system's default huge
   * page size (`Hugepagesize` in /proc/meminfo, 2 MiB on x86-64), `'2MB'` or `'1GB'` (`MAP_HUGE_2MB`,
   * `MAP_HUGE_1GB`). `length` must be a multiple of that size (`ERR_OUT_OF_RANGE`). The pages are
   * taken from the pool when mapping: too few there is `ERR_MMAP_NO_HUGE_PAGES`. Transparent huge
   * pages need no pool: `advise('hugepage')`. Default false.
   */
  hugePages?: HugePages;
}
const ANONYMOUS_OPTIONS = ['shared', 'populate', 'hugePages'] as const;

/** A byte range of a mapping, relative to the start of its view (byte 0 of `mapping.buffer`). */
export interface Range {
  /** First byte. Default 0. */
  offset?: Int64Like;
  /** Number of bytes. Default: to the end of the mapping. */
  length?: Int64Like;
}
const RANGE_OPTIONS = ['offset', 'length'] as const;

/** Hints for {@link Mapping.advise}: they change performance, never content (`madvise`). */
export type Advice =
  | 'normal'
  | 'random'
  | 'sequential'
  | 'willneed'
  | 'hugepage'
  | 'nohugepage'
  | 'dontdump'
  | 'dodump'
  | 'mergeable'
  | 'unmergeable'
  | 'cold'
  | 'pageout'
  | 'populate-read';
const ADVICE: Readonly<Record<Advice, number | undefined>> = {
  normal: constants.MADV_NORMAL,
  random: constants.MADV_RANDOM,
  sequential: constants.MADV_SEQUENTIAL,
  willneed: constants.MADV_WILLNEED,
  hugepage: constants.MADV_HUGEPAGE,
  nohugepage: constants.MADV_NOHUGEPAGE,
  dontdump: constants.MADV_DONTDUMP,
  dodump: constants.MADV_DODUMP,
  mergeable: constants.MADV_MERGEABLE,
  unmergeable: constants.MADV_UNMERGEABLE,
  cold: constants.MADV_COLD,
  pageout: constants.MADV_PAGEOUT,
  'populate-read': constants.MADV_POPULATE_READ,
};

/**
 * How many bytes of a mapping V8 is told about (as external memory, napi_adjust_external_memory) while
 * it is mapped: its length, up to 16 MiB. The garbage collector then runs sooner while dropped
 * mappings pile up, and finds them. The cap stays well under the 64 MiB of growth after which V8
 * starts a collection: with 64 MiB, each large mapping started one by itself, and a loop mapping and
 * unmapping 1 GiB windows ran twice the full collections (measured: 427 against 218 in 2,000 rounds;
 * with 16 MiB, 156-197). (Node counts each view's length on its own as well.)
 */
const EXTERNAL_CAP = 16 * 1024 * 1024;

/** The kernel's default vm.max_map_count (DEFAULT_MAX_MAP_COUNT), used where /proc cannot be read. */
const DEFAULT_MAX_MAP_COUNT = 65530;

/** The kernel's limit of mappings per process (vm.max_map_count), read now: it can be changed at run time. */
function maxMapCount(): number {
  try {
    const n = Number.parseInt(readFileSync('/proc/sys/vm/max_map_count', 'latin1'), 10);
    if (Number.isSafeInteger(n) && n > 0) return n;
  } catch {
    // no /proc: assume the default
  }
  return DEFAULT_MAX_MAP_COUNT;
}

/**
 * The most mappings mmapkit keeps mapped at once under a kernel limit of `max`: an eighth of it (at
 * least 4096) is left to Node itself (V8's heap pages, malloc, thread stacks, libraries), which aborts
 * the process when it cannot map memory. Never less than half of the limit.
 */
function mappingCeiling(max: number): number {
  return Math.max(Math.floor(max / 2), max - Math.max(4096, Math.floor(max / 8)));
}

/** The ceiling for the limit last read (undefined: not read yet). Re-read whenever it is reached. */
let ceiling: number | undefined;

/**
 * How many mappings made by mmapkit are mapped in this process now, in every thread: those not unmapped
 * yet, whether or not anything still refers to them (placeholders of unmapped memory do not count).
 * mmapkit refuses new mappings with `ERR_MMAP_TOO_MANY_MAPPINGS` once this reaches about seven eighths
 * of `vm.max_map_count`. A count that keeps growing is a leak: mappings dropped without `unmap()`.
 */
export function mappingCount(): number {
  return native.mappingCount();
}

/**
 * How many mappings the process has now (the lines of /proc/self/maps), or undefined where that cannot
 * be read. Called when mmap failed with ENOMEM, so it reads through one small buffer: the process may
 * have no mapping to spare for a larger one.
 */
function processMappingCount(): number | undefined {
  let fd: number | undefined;
  try {
    fd = openSync('/proc/self/maps', 'r');
    const chunk = Buffer.allocUnsafeSlow(64 * 1024);
    let lines = 0;
    for (let n; (n = readSync(fd, chunk, 0, chunk.length, null)) > 0; ) {
      for (let i = chunk.indexOf(10); i !== -1 && i < n; i = chunk.indexOf(10, i + 1)) lines++;
    }
    return lines;
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** ERR_MMAP_TOO_MANY_MAPPINGS; `all`: the process's mappings, when the kernel refused and they were counted. */
function tooManyMappings(live: number, max: number, refusedBy: 'kernel' | 'mmapkit', all?: number): MmapkitError {
  const n = (v: number): string => v.toLocaleString('en-US');
  const why =
    refusedBy === 'mmapkit'
      ? `${n(live)} mappings made by mmapkit are mapped in this process, and the kernel allows ${n(max)} per process ` +
        `(vm.max_map_count), Node's own included: mmapkit stops at ${n(mappingCeiling(max))} to leave the rest to Node, ` +
        'which aborts the process when it cannot map memory.'
      : `the kernel refused a new mapping (mmap: ENOMEM): this process has ${all === undefined ? 'run out of' : `${n(all)}`} ` +
        `mappings, ${n(live)} of them made by mmapkit, and the kernel allows ${n(max)} per process (vm.max_map_count).`;
  return mmapkitError(
    'ERR_MMAP_TOO_MANY_MAPPINGS',
    `Too many mappings: ${why} Did you forget unmap()? A Mapping dropped without unmap() stays mapped until the ` +
      'garbage collector finds it, and that takes turns of the event loop (a synchronous loop never gives one). ' +
      'Call unmap() (or use `using`) when done with a mapping. See docs/safety.md#the-garbage-collector.',
  );
}

/**
 * @internal mmap(2) for every mmapkit mapping: refuses with `ERR_MMAP_TOO_MANY_MAPPINGS` before the
 * process runs out of mappings, reports the mapping to V8, and shapes a failure as a system error.
 */
export function mmapChecked(length: bigint, prot: number, flags: number, fd: number, offset: bigint, path?: string): bigint {
  const live = native.mappingCount();
  if (ceiling === undefined || live >= ceiling) {
    const max = maxMapCount();
    ceiling = mappingCeiling(max);
    if (live >= ceiling) throw tooManyMappings(live, max, 'mmapkit');
  }
  const addr = native.mmap(length, prot, flags, fd, offset, Number(length < EXTERNAL_CAP ? length : EXTERNAL_CAP));
  if (typeof addr === 'bigint') return addr;
  // ENOMEM is also what mmap says at vm.max_map_count (when something else took the room mmapkit left
  // to Node): say so when the process is at the limit and mmapkit holds at least half of it. An ENOMEM
  // for want of memory or address space stays a system error.
  if (addr === -osConstants.errno.ENOMEM && native.mappingCount() >= maxMapCount() / 2) {
    const max = maxMapCount();
    const all = processMappingCount();
    if (all === undefined || all >= max - 16) throw tooManyMappings(native.mappingCount(), max, 'kernel', all);
  }
  throw systemError(addr, 'mmap', path);
}

/** Whether a protection lets JavaScript hold views: read and write. */
function isViewable(prot: number): boolean {
  return (prot & PROT_RW) === PROT_RW;
}

/** A resolved kernel range: page-aligned address and length. */
interface KernelRange {
  addr: bigint;
  length: number;
}

/**
 * What the garbage collector needs to unmap a dropped mapping; shared with the Mapping.
 *
 * Life of the addresses: open (mapped) -> closed by unmap(): views detached, the memory replaced by
 * a PROT_NONE placeholder once no other thread uses it -> released (munmap) when the Mapping and all
 * its views are garbage. Holding the addresses until then means that a stale pointer (a libuv thread
 * still writing a view to a file, say) can only fault, never read a newer mapping at that address.
 */
interface Region {
  addr: bigint;
  length: number;
  /** unmap() has been called. */
  closed: boolean;
  /** munmap has been called: the addresses are no longer ours. */
  released: boolean;
  /** Holds: operations in flight on another thread (flushAsync, async waits) that must end first. */
  pending: number;
}

/**
 * The guard's count of repaired faults, read without a native call: a mapping looks its own faulted
 * flag up only when this count has moved since it last looked. Null where external buffers are
 * forbidden (then every check asks the addon).
 */
export const faultCount: Int32Array | null = ((ab) => (ab === null ? null : new Int32Array(ab)))(native.faultCounter());

const finalizer = new FinalizationRegistry<Region>((region) => {
  // The Mapping and every view of it are unreachable: nothing can touch these addresses any more.
  // Except glibc: a robust mutex this thread still holds in there is on the thread's robust list,
  // and the next lock would write into it. Such memory stays mapped until the thread exits.
  if (!region.released && region.pending === 0 && native.mutexHeldIn(region.addr, region.length) === 0) release(region);
});

/** munmap: the addresses go back to the system. */
function release(region: Region): void {
  region.closed = true;
  region.released = true;
  native.munmap(region.addr, region.length);
}

/** After unmap(), once no other thread uses the memory: free it but keep the addresses. */
function retire(region: Region, path: string | undefined): void {
  const rc = native.reserve(region.addr, region.length);
  if (rc < 0) {
    // Could not place the placeholder (out of memory for a VMA?): give the addresses back instead.
    release(region);
    throw systemError(rc, 'mmap', path);
  }
}

/** Address of byte 0 of each ArrayBuffer handed out, for the low-level functions. */
const viewAddress = new WeakMap<ArrayBuffer, { mapping: Mapping; addr: bigint }>();

// ---------------------------------------------------------------- resize (mremap)

/** mremap(2) flags, the same on every Linux architecture (linux/mman.h). */
const MREMAP_MAYMOVE = 1;
const MREMAP_DONTUNMAP = 4;

/** Options of {@link Mapping.resize}. */
export interface ResizeOptions {
  /**
   * Shrink the file as well when shrinking a shared file mapping (`access: 'write'`): `ftruncate` it to
   * `offset + newLength` after the mapping shrank. Other mappings of the file (other processes
   * included) lose the pages past the new end: reading them is a bus error (repaired by mmapkit's
   * SIGBUS guard, which marks those mappings `faulted`; fatal in a program without one). Only for shared
   * file mappings. Default false: shrinking changes the mapping only, never the file.
   */
  shrinkFile?: boolean;
  /**
   * A descriptor of the mapped file, for a file mapping made from a descriptor (`map(fd)`, `mmap()`):
   * mmapkit keeps no descriptor of a mapped file, so growing such a mapping (or shrinking its file)
   * needs one. Checked to be the mapped file (device and inode). Not closed. Default: reopen the path
   * the mapping was made from.
   */
  fd?: number;
}
const RESIZE_OPTIONS = ['shrinkFile', 'fd'] as const;

/**
 * Old addresses of a mapping that resize() moved while views of them were alive, held by a PROT_NONE
 * placeholder (like unmapped memory) until those views are garbage: an fs.read in flight into one of
 * them must fault, never write into whatever the kernel maps there next. Each such view keeps the
 * token of its generation alive (retiredToken); the addresses go back once the token is collected.
 */
const retiredFinalizer = new FinalizationRegistry<{ addr: bigint; length: number }>((old) => {
  native.munmap(old.addr, old.length);
});
const retiredToken = new WeakMap<ArrayBuffer, object>();

// ---------------------------------------------------------------- end of resize helpers

/** Parameters of the private constructor. */
interface MappingInit {
  addr: bigint;
  mapLength: number;
  delta: number;
  length: number;
  offset: bigint;
  prot: number;
  flags: number;
  path: string | undefined;
  access: Access | undefined;
  /** Bytes per page of hugetlb memory; undefined for normal pages. */
  hugePageSize?: number | undefined;
}

/**
 * A live memory mapping. Obtain one from {@link map}, {@link mapAnonymous} or the low-level `mmap`.
 * Disposable: `using m = map(...)` unmaps at the end of the block.
 */
export class Mapping implements Disposable {
  readonly #region: Region;
  /** Offset of byte 0 of the view inside the kernel mapping (the file offset's distance to its page). */
  readonly #delta: number;
  /** Protection of every page, or -1 when parts differ. */
  #prot: number;
  /** Whether every page allows read and write, so that views may exist. */
  #viewable: boolean;
  readonly #flags: number;
  #views: WeakRef<ArrayBuffer>[] = [];
  #viewsPruneAt = 64;
  #buffer: Buffer | undefined;
  /** How to stop each operation in flight that holds the mapping (async waits), run by unmap(). */
  readonly #cancels = new Set<() => void>();
  #faulted = false;
  /** The guard's fault count when this mapping last checked its flag (-1: never). */
  #faultsSeen = -1;
  /** The mapped file's device and inode, looked up by the first resize() that needs the file. */
  #fileId: Pick<MapsLine, 'dev' | 'ino'> | undefined;
  /** Bytes per page of hugetlb memory (the kernel maps, unmaps and sizes it by these); undefined for normal pages. */
  readonly #hugePageSize: number | undefined;
  /**
   * Bytes in the view: from `offset` to `offset + length` of the file (or of the anonymous memory).
   * Changed by {@link Mapping.resize} only.
   */
  readonly length: number;
  /** File offset of byte 0 of the view (0 for anonymous memory). Exact for offsets below 2^53. */
  readonly offset: number;
  /** The path that was mapped, when `map()` was given one. */
  readonly path: string | undefined;
  /** The access the mapping was made with (`undefined` for a low-level `mmap`). */
  readonly access: Access | undefined;

  /** @internal Use {@link map}, {@link mapAnonymous} or `mmap`. */
  constructor(token: symbol, init: MappingInit) {
    checkConstruct(token, 'use map(), mapAnonymous() or mmap()');
    this.#region = { addr: init.addr, length: init.mapLength, closed: false, released: false, pending: 0 };
    this.#delta = init.delta;
    this.#prot = init.prot;
    this.#viewable = isViewable(init.prot);
    this.#flags = init.flags;
    this.#hugePageSize = init.hugePageSize;
    this.length = init.length;
    this.offset = Number(init.offset);
    this.path = init.path;
    this.access = init.access;
    finalizer.register(this, this.#region, this.#region);
  }

  /** Whether `unmap()` has been called. */
  get closed(): boolean {
    return this.#region.closed;
  }

  /** Whether the mapping is `MAP_SHARED` (its writes reach the file and other processes). */
  get shared(): boolean {
    return (this.#flags & MAP_SHARED) !== 0;
  }

  /**
   * Whether a page of this mapping could not be read because the file under it was truncated (a bus
   * error that the SIGBUS guard repaired with zero pages, from that page to the end of the mapping).
   * A faulted mapping's methods throw `ERR_MMAP_FAULTED`; its views read zeros where the file is gone.
   * Unmap it and map again.
   *
   * It says that a lost page was touched, not that every byte read was in the file: the bytes past
   * the new end of the file in the page that holds that end read zeros without a bus error, and do
   * not make the mapping faulted. To know whether a range is still in the file, compare its end with
   * the file's size (`fstatSync(fd).size`) after copying it out. (This getter does not: it costs one
   * atomic load, and mmapkit keeps no descriptor of a mapped file.) See docs/safety.md.
   */
  get faulted(): boolean {
    if (this.#faulted || this.#region.closed) return this.#faulted;
    // acquire: pairs with the handler's release increment, which follows its store of the flag
    const count = faultCount === null ? -2 : Atomics.load(faultCount, 0);
    if (count !== this.#faultsSeen || count === -2) {
      this.#faulted = native.faulted(this.#region.addr);
      this.#faultsSeen = count;
    }
    return this.#faulted;
  }

  /** Current page protection of the whole mapping: a `PROT_*` bit set, or -1 when parts differ. */
  get protection(): number {
    return this.#prot;
  }

  /**
   * The whole mapping as a zero-copy Buffer (the same Buffer on every call). Throws
   * `ERR_MMAP_VIEW_TOO_LARGE` above 4 GiB (use {@link Mapping.view}) and `ERR_MMAP_NOT_ACCESSIBLE`
   * while the pages are not readable and writable (see {@link Mapping.protect}).
   */
  get buffer(): Buffer {
    this.#check('buffer');
    if (this.#buffer === undefined) {
      if (this.length > MAX_VIEW_LENGTH) {
        throw mmapkitError(
          'ERR_MMAP_VIEW_TOO_LARGE',
          `This mapping is ${this.length} bytes; one Buffer holds at most ${MAX_VIEW_LENGTH}. Use mapping.view(offset, length) for windows.`,
        );
      }
      this.#buffer = this.#makeView(0, this.length);
    }
    return this.#buffer;
  }

  /**
   * A zero-copy Buffer over `length` bytes starting at `offset` of the mapping (a window: the way to
   * reach mappings larger than 4 GiB). Every call makes a new view; all are detached by `unmap()`.
   */
  view(offset: Int64Like = 0, length?: Int64Like): Buffer {
    this.#check('view');
    const off = Number(validateInt64(offset, 'offset', 0n, BigInt(this.length)));
    const max = Math.min(this.length - off, MAX_VIEW_LENGTH);
    const len = length === undefined ? this.length - off : Number(validateInt64(length, 'length', 0n, BigInt(max)));
    if (len > MAX_VIEW_LENGTH) {
      throw mmapkitError(
        'ERR_MMAP_VIEW_TOO_LARGE',
        `A view holds at most ${MAX_VIEW_LENGTH} bytes; ask for a length (the mapping has ${this.length - off} bytes from offset ${off}).`,
      );
    }
    return this.#makeView(off, len);
  }

  // ---------------------------------------------------------------------------------------------
  // Searching (indexOf / lastIndexOf): Buffer#indexOf over views of at most about 1 GiB, because
  // Node's is wrong past 2 GiB. The module-level half of this block is searchNeedle() and friends.

  /** Mappings longer than one Buffer (Node 20, > 4 GiB): the window the last search looked through. */
  #searchWindow: Buffer | undefined;
  /** Where #searchWindow starts in the mapping. */
  #searchWindowStart = 0;

  /**
   * The lowest position in `[start, end)` of the mapping where `value` starts and ends (Python mmap's
   * `find`), or -1. Exact at every position up to 2^53, as fast as `Buffer#indexOf` (which it calls on
   * windows of at most 1 GiB: on Node 20 to 24 `Buffer#indexOf` returns a wrong negative position for
   * a match past 2^31).
   *
   * @param value A byte (an integer 0 to 255), a string (searched as UTF-8), or a Buffer/Uint8Array.
   *   An empty one is found at `start`.
   * @param start First position searched, from `-length` to `length`; negative counts from the end.
   *   Default 0.
   * @param end The match must end at or before this position, from `-length` to `length`; negative
   *   counts from the end. Default `length`. `start > end` finds nothing.
   * @throws `ERR_INVALID_ARG_TYPE`, `ERR_OUT_OF_RANGE`; `ERR_MMAP_CLOSED`, `ERR_MMAP_FAULTED` (also
   *   when a page read during the search was lost to a truncation), `ERR_MMAP_NOT_ACCESSIBLE`.
   */
  indexOf(value: number | string | Uint8Array, start?: Int64Like, end?: Int64Like): number {
    return this.#search(value, start, end, true);
  }

  /**
   * The highest position in `[start, end)` of the mapping where `value` starts and ends (Python mmap's
   * `rfind`), or -1. Unlike `Buffer#lastIndexOf(value, byteOffset)`, whose `byteOffset` is the last
   * position where a match may start, `end` is where a match must end. An empty value is found at `end`.
   * Arguments and errors as {@link Mapping.indexOf}.
   */
  lastIndexOf(value: number | string | Uint8Array, start?: Int64Like, end?: Int64Like): number {
    return this.#search(value, start, end, false);
  }

  #search(value: unknown, start: unknown, end: unknown, forward: boolean): number {
    const method = forward ? 'indexOf' : 'lastIndexOf';
    const needle = searchNeedle(value);
    const length = this.length;
    const s = searchBound(start, 'start', length, 0);
    const e = searchBound(end, 'end', length, length);
    this.#check(method); // after reading every argument, right before touching the memory
    const n = typeof needle === 'number' ? 1 : needle.length;
    if (n === 0) return s <= e ? (forward ? s : e) : -1;
    const last = e - n; // the last position where a match fits before `end`
    if (last < s) return -1;
    // Positions searched per Buffer call: at most the chunk, and few enough that the view they need
    // (positions + n - 1 bytes: consecutive views overlap by n - 1, so a match across a border is
    // found, in the view where it starts) fits in one Buffer.
    const step = Math.max(1, Math.min(searchChunk, MAX_VIEW_LENGTH - n + 1));
    let found = -1;
    if (this.length <= SEARCH_SHORT && last - s < step && (forward ? e === this.length : s === 0)) {
      // One call on `buffer` itself, whose positions are all below 2^31, and the range runs to its
      // end (or from its start, backwards): no view to make, a fraction of the cost of a short search.
      const buffer = this.#buffer ?? this.buffer;
      found = forward ? buffer.indexOf(needle, s) : buffer.lastIndexOf(needle, last);
    } else if (forward) {
      for (let a = s; a <= last; a += step) {
        const i = this.#searchView(a, Math.min(a + step - 1, last) + n, true).indexOf(needle);
        if (i !== -1) {
          found = a + i;
          break;
        }
      }
    } else {
      for (let z = last; z >= s; z -= step) {
        const a = Math.max(s, z - step + 1);
        const i = this.#searchView(a, z + n, false).lastIndexOf(needle);
        if (i !== -1) {
          found = a + i;
          break;
        }
      }
    }
    // A page lost to a truncation during the search read as zeros (the SIGBUS guard): the result
    // cannot be trusted.
    // A page of this mapping lost during the search read as zeros: say so (#check just synced the
    // fault count, so this is one load and one compare unless a fault happened meanwhile).
    this.#check(method);
    return found;
  }

  /**
   * Bytes `[from, to)` of the mapping as a Buffer (`to - from` <= MAX_VIEW_LENGTH): a subarray of
   * `buffer`, or for a mapping longer than one Buffer of a window as long as possible, made in the
   * direction of the search so that the next views fall into it too, and kept for the next search.
   */
  #searchView(from: number, to: number, forward: boolean): Buffer {
    if (this.length <= MAX_VIEW_LENGTH) return this.buffer.subarray(from, to);
    let w = this.#searchWindow;
    let ws = this.#searchWindowStart;
    // A window detached by protect() has length 0 and is made again.
    if (w === undefined || from < ws || to > ws + w.length) {
      ws = forward ? from : Math.max(0, to - MAX_VIEW_LENGTH);
      w = this.#makeView(ws, Math.min(MAX_VIEW_LENGTH, this.length - ws));
      this.#searchWindow = w;
      this.#searchWindowStart = ws;
    }
    return w.subarray(from - ws, to - ws);
  }

  /**
   * Unmap. Idempotent. Every view (subarrays included) becomes length 0 first, so no JavaScript can
   * touch the memory; the memory is then released at once (a `flushAsync` or async wait in flight
   * finishes or is cancelled first). The addresses stay reserved, inaccessible, until the garbage
   * collector drops this Mapping and its views, so that nothing else is mapped where a stale pointer
   * could reach (see docs/safety.md). Throws `ERR_MMAP_BUSY`, changing nothing, while the memory holds
   * a Mutex this thread has locked.
   */
  unmap(): void {
    const region = this.#region;
    if (region.closed) return;
    const held = native.mutexHeldIn(region.addr, region.length);
    if (held > 0) {
      // glibc keeps every robust mutex a thread holds on a per-thread list and writes into it on the
      // next lock: unmapping it would crash the process then.
      throw mmapkitError('ERR_MMAP_BUSY', `Cannot unmap memory holding ${held} Mutex${held > 1 ? 'es' : ''} that this thread has locked: unlock first`);
    }
    this.#detachViews('unmap');
    this.#faulted = this.faulted;
    region.closed = true;
    for (const cancel of [...this.#cancels]) cancel();
    if (region.pending === 0) retire(region, this.path);
  }

  /** Same as {@link Mapping.unmap}: `using m = map(...)` unmaps at the end of the block. */
  [Symbol.dispose](): void {
    this.unmap();
  }

  /**
   * Write changed pages of the range back to the file and wait for it (`msync(MS_SYNC)`). A no-op for
   * private and anonymous mappings. The range is widened to whole pages.
   *
   * With `async: true`, schedule the write-back and return without waiting (`msync(MS_ASYNC)`). On
   * Linux since 2.6.19 that schedules nothing: the kernel tracks the dirty pages of shared mappings
   * anyway and writes them back on its own (after `vm.dirty_expire_centisecs`, 30 s by default), so
   * the call only checks the range. It is cheap, portable (other systems start the write-back), and
   * changes nothing for readers: they see the writes at once with or without it. To know the data is
   * on disk, flush without `async` (or `flushAsync()` off the event loop's thread).
   */
  flush(range?: Range & { async?: boolean }): void {
    // Read the options once (a getter runs once); the range part is then validated like any range.
    const { async, ...rest } = validateOptions(range, 'range', ['offset', 'length', 'async'] as const);
    const flags = async === undefined || !validateBoolean(async, 'range.async') ? constants.MS_SYNC : constants.MS_ASYNC;
    const r = this.#kernelRange(range === undefined ? undefined : (rest as Range), 'flush');
    const rc = native.msync(r.addr, r.length, flags);
    if (rc < 0) throw systemError(rc, 'msync', this.path);
  }

  /**
   * Like {@link Mapping.flush}, on a libuv pool thread; the mapping stays mapped until it settles even
   * if `unmap()` is called meanwhile.
   */
  async flushAsync(range?: Range): Promise<void> {
    const r = this.#kernelRange(range, 'flushAsync');
    const release = this[kHold]();
    let rc: number;
    try {
      rc = await native.msyncAsync(r.addr, r.length, constants.MS_SYNC);
    } finally {
      release();
    }
    if (rc < 0) throw systemError(rc, 'msync', this.path);
  }

  /**
   * `util.inspect(mapping)` (and `console.log`): `Mapping { access, anonymous, shared, length,
   * offset, path, state }` (access and path when known, anonymous when it is), `state` being
   * `'mapped'`, `'unmapped'` or `'faulted'`, and `protection` when the pages are not read-write.
   * Never the address. Never throws.
   */
  [Symbol.for('nodejs.util.inspect.custom')](depth: number, options: import('node:util').InspectOptionsStylized, inspect: typeof import('node:util').inspect): string {
    if (depth < 0) return options.stylize('[Mapping]', 'special');
    const fields: Record<string, unknown> = {};
    try {
      if (this.access !== undefined) fields['access'] = this.access;
      if ((this.#flags & MAP_ANONYMOUS) !== 0) fields['anonymous'] = true;
      fields['shared'] = this.shared;
      fields['length'] = this.length;
      fields['offset'] = this.offset;
      if (this.path !== undefined) fields['path'] = this.path;
      fields['state'] = this.#region.closed ? 'unmapped' : this.faulted ? 'faulted' : 'mapped';
      const prot = this.#prot;
      if (!this.#region.closed && prot !== PROT_RW) fields['protection'] = prot === PROT_NONE ? 'none' : prot === PROT_READ ? 'read' : 'mixed';
    } catch {
      fields['state'] = 'unknown';
    }
    return `Mapping ${inspect(fields, options)}`; // flat: nothing nested for depth to cut
  }

  /**
   * Change the page protection of the whole mapping (`mprotect`): `'none'` (`PROT_NONE`), `'read'`
   * (`PROT_READ`) or `'write'` (`PROT_READ | PROT_WRITE`). JavaScript has no read-only Buffer and a
   * write to a read-only page kills the process, so leaving `'write'` detaches every view and
   * `buffer`/`view()` throw `ERR_MMAP_NOT_ACCESSIBLE` until `protect('write')`. Whether writes reach the
   * file is fixed by `access` when mapping, not here. A shared mapping of a file opened read-only
   * cannot become writable (`EACCES`).
   */
  protect(access: Protection): void {
    const prot = { none: PROT_NONE, read: PROT_READ, write: PROT_RW }[validateOneOf(access, 'access', PROTECTION)];
    this.#check('protect');
    this.#mprotect(this.#region.addr, this.#region.length, prot);
  }

  /**
   * Tell the kernel how the range will be used (`madvise`). Hints only change performance; advice that
   * throws data away is {@link Mapping.discard}. A hint this kernel lacks is `ERR_INVALID_ARG_VALUE`.
   */
  advise(advice: Advice, range?: Range): void {
    const name = validateOneOf(advice, 'advice', Object.keys(ADVICE) as Advice[]);
    const value = ADVICE[name];
    if (value === undefined) throw invalidArgValue('advice', advice, 'is not supported by this platform');
    const r = this.#kernelRange(range, 'advise');
    const rc = native.madvise(r.addr, r.length, value);
    if (rc < 0) throw systemError(rc, 'madvise', this.path);
  }

  /**
   * Throw away this process's pages of the range (`madvise(MADV_DONTNEED)`). Private memory loses
   * what was written there: private anonymous memory then reads as zeros, a private (`'read'`/`'copy'`)
   * file mapping as the file's content. Shared memory (a `'write'` mapping, shared anonymous memory,
   * shared memory objects) loses nothing: the pages are dropped from this process and read again from
   * the file or the shared object. The range must
   * start and end on page boundaries of the mapping (or end at its end): rounding would lose bytes
   * outside it.
   */
  discard(range?: Range): void {
    const { start, end } = this.#userRange(range, 'discard');
    const kStart = this.#delta + start;
    const kEnd = this.#delta + end;
    if (kStart % pageSize !== 0 || (kEnd % pageSize !== 0 && end !== this.length)) {
      throw invalidArgValue(
        'range',
        range,
        `must start and end on a page boundary of the mapping (page size ${pageSize}; byte 0 of the view is ${this.#delta} bytes into its first page)`,
      );
    }
    if (kEnd === kStart) return;
    const rc = native.madvise(this.#region.addr + BigInt(kStart), kEnd - kStart, constants.MADV_DONTNEED);
    if (rc < 0) throw systemError(rc, 'madvise', this.path);
  }

  /**
   * Which pages of the range are in memory (`mincore`): one byte per page touched by the range,
   * 1 when resident.
   */
  residency(range?: Range): Uint8Array {
    const r = this.#kernelRange(range, 'residency');
    const vec = new Uint8Array(Math.ceil(r.length / pageSize));
    const rc = native.mincore(r.addr, r.length, vec);
    if (rc < 0) throw systemError(rc, 'mincore', this.path);
    for (let i = 0; i < vec.length; i++) vec[i]! &= 1;
    return vec;
  }

  /**
   * Lock the range's pages in memory (`mlock`): they are faulted in now and never swapped out. Limited
   * by `RLIMIT_MEMLOCK` for unprivileged users (`EPERM`/`ENOMEM`).
   */
  lock(range?: Range): void {
    const r = this.#kernelRange(range, 'lock');
    // mlock faults the pages of a writable private mapping in for writing, which would give a 'read'
    // mapping private copies of every page and stop it seeing the file. Lock it on fault instead and
    // fault the pages in for reading: they stay shared with the page cache.
    const onFault = this.access === 'read' && constants.MLOCK_ONFAULT !== undefined;
    const rc = onFault ? native.mlock2(r.addr, r.length, constants.MLOCK_ONFAULT!) : native.mlock(r.addr, r.length);
    if (rc === 0 && onFault && constants.MADV_POPULATE_READ !== undefined) {
      native.madvise(r.addr, r.length, constants.MADV_POPULATE_READ);
    }
    if (rc < 0) throw systemError(rc, 'mlock', this.path);
  }

  /**
   * Change the length of the mapping (`mremap`), keeping its content: memmap2's `remap`, Python's
   * `mmap.resize`. Every view is detached (as by `unmap()`; `buffer` and `view()` then give the
   * new memory; a resize the kernel refuses leaves them attached), and `length` changes. The pages are never copied: the kernel grows the mapping in
   * place when the addresses after it are free, else moves its page tables.
   *
   * - A shared file mapping (`access: 'write'`) grows its file first (`ftruncate`) when the file is
   *   shorter than `offset + newLength`; new bytes read as zeros. Shrinking leaves the file alone unless
   *   `options.shrinkFile`.
   * - A private file mapping (`'read'`, `'copy'`) can grow up to the end of the file, not past it
   *   (`ERR_OUT_OF_RANGE`): past the end there is nothing to read, and it never writes the file.
   * - Anonymous memory: private memory grows with zero pages; shared anonymous memory can only shrink
   *   (its pages past the first length have no backing: reading them would be a bus error).
   *
   * The file is reached through the path the mapping was made from, checked to still name the mapped
   * file (`ERR_INVALID_STATE` when it was renamed or replaced); a mapping made from a descriptor needs
   * `options.fd`. Throws `ERR_MMAP_BUSY`, changing nothing, while a `flushAsync()` or an async wait
   * holds the mapping or the memory holds a Mutex this thread has locked.
   *
   * @param newLength Bytes in the view, from `offset` (at least 1).
   */
  resize(newLength: Int64Like, options?: ResizeOptions): void {
    const o = validateOptions(options, 'options', RESIZE_OPTIONS);
    const shrinkFile = o.shrinkFile === undefined ? false : validateBoolean(o.shrinkFile, 'options.shrinkFile');
    const fd = o.fd === undefined ? undefined : validateInt32(o.fd, 'options.fd', 0);
    const n = Number(validateInt64(newLength, 'newLength', 1n, BigInt(Number.MAX_SAFE_INTEGER - this.#delta)));
    // The state is checked after every argument was read (a getter may have unmapped the mapping).
    this.#check('resize');
    const region = this.#region;
    if (region.pending > 0) {
      throw mmapkitError('ERR_MMAP_BUSY', 'Cannot resize this mapping while a flushAsync() or an async wait on it is pending: another thread uses its addresses; await or abort it first');
    }
    const held = native.mutexHeldIn(region.addr, region.length);
    if (held > 0) {
      // glibc's robust list of this thread points into the memory: moving it would leave glibc writing
      // into the old addresses at the next lock.
      throw mmapkitError('ERR_MMAP_BUSY', `Cannot resize memory holding ${held} Mutex${held > 1 ? 'es' : ''} that this thread has locked: unlock first`);
    }
    const anonymous = (this.#flags & MAP_ANONYMOUS) !== 0;
    const shared = (this.#flags & MAP_SHARED) !== 0;
    if (anonymous && fd !== undefined) throw invalidArgValue('options.fd', o.fd, 'only applies to a file mapping');
    if (shrinkFile && (anonymous || !shared)) {
      throw invalidArgValue('options.shrinkFile', o.shrinkFile, "only applies to a shared file mapping (access: 'write'): mmapkit never changes a file it maps privately");
    }
    if (anonymous && shared && n > this.length) {
      throw outOfRange('newLength', `<= ${this.length} (shared anonymous memory can shrink, not grow: its object keeps its first size; use SharedMemory to share memory that grows)`, newLength);
    }
    const huge = this.#hugePageSize;
    if (huge !== undefined) {
      // The kernel does not expand hugetlb mappings (EINVAL), and would round a shrink up to a whole
      // huge page while this object kept the length asked for (its munmap would then fail: a leak).
      if (n > this.length) throw outOfRange('newLength', `<= ${this.length} (huge-page memory can shrink, not grow: the kernel does not expand hugetlb mappings; map a new one)`, newLength);
      checkHugeLength(BigInt(this.#delta + n), { size: huge }, 'newLength', newLength);
    }
    const oldLength = this.length;
    if (n === oldLength) return;
    const fileEnd = this.offset + n;
    const grow = n > oldLength;
    const file = !anonymous && (grow || shrinkFile) ? this.#openMapped(fd, shared) : undefined;
    try {
      if (file !== undefined && grow) {
        if (!shared && fileEnd > file.size) {
          throw outOfRange('newLength', `<= ${file.size - this.offset} (a private mapping, access 'read' or 'copy', can grow up to the end of the file; it never grows the file)`, newLength);
        }
        if (shared && fileEnd > file.size) ftruncateSync(file.fd, fileEnd);
      }
      this.#remap(this.#delta + n);
      (this as unknown as { length: number }).length = n;
      // Shrink the file only once this mapping no longer reaches past its new end.
      if (file !== undefined && shrinkFile && !grow && file.size > fileEnd) ftruncateSync(file.fd, fileEnd);
    } finally {
      if (file?.close === true) closeSync(file.fd);
    }
  }

  /** The file descriptor a resize uses: `fd`, or the path opened again and checked to be the mapped file. */
  #openMapped(fd: number | undefined, write: boolean): { fd: number; size: number; close: boolean } {
    if (fd === undefined && this.path === undefined) {
      throw invalidArgValue('options.fd', undefined, 'is needed to resize the file of a mapping made from a file descriptor (mmapkit keeps none): pass a descriptor of the mapped file');
    }
    const f = fd ?? openSync(this.path!, write ? fsConstants.O_RDWR : fsConstants.O_RDONLY);
    try {
      const st = fstatSync(f, { bigint: true });
      this.#fileId ??= mapsLineAt(this.#region.addr);
      if (!st.isFile() || (this.#fileId !== undefined && !isMappedFile(st, this.#fileId))) {
        if (fd !== undefined) throw invalidArgValue('options.fd', fd, 'is not a descriptor of the mapped file (another device or inode)');
        throw invalidState(
          `'${this.path}' no longer names the mapped file (it was renamed, removed or replaced since it was mapped): pass { fd } of the mapped file to resize it`,
        );
      }
      return { fd: f, size: Number(st.size), close: fd === undefined };
    } catch (err) {
      if (fd === undefined) closeSync(f);
      throw err;
    }
  }

  /**
   * mremap the whole mapping to `newK` bytes (kernel length), detaching every view once the kernel has
   * changed the mapping (a refusal leaves them attached: nothing changed). No address a view was over
   * is given back while that view lives: such a view (a Buffer an fs.read on a libuv thread writes
   * into, say) must fault, never reach memory mapped there later, as after unmap().
   */
  #remap(newK: number): void {
    const region = this.#region;
    const oldK = region.length;
    const alive: ArrayBuffer[] = [];
    for (const ref of this.#views) {
      const ab = ref.deref();
      if (ab !== undefined) alive.push(ab);
    }
    const external = Math.min(newK, EXTERNAL_CAP);
    const pages = (k: number): number => Math.ceil(k / pageSize);
    if (alive.length === 0) {
      // Every view of it is garbage and no async work holds it: nothing can point into the old
      // range, so the kernel may move the mapping and take the old addresses back.
      const addr = native.mremap(region.addr, oldK, newK, MREMAP_MAYMOVE, external);
      if (typeof addr !== 'bigint') throw systemError(addr, 'mremap', this.path);
      this.#detachViews('resize');
      region.addr = addr;
      region.length = newK;
      return;
    }
    if (pages(newK) >= pages(oldK)) {
      // In place, no address is given up (old views, detached, were over the same memory).
      const addr = native.mremap(region.addr, oldK, newK, 0, external);
      if (typeof addr === 'bigint') {
        this.#detachViews('resize');
        region.length = newK;
        return;
      }
      if (addr !== -osConstants.errno.ENOMEM) throw systemError(addr, 'mremap', this.path);
    }
    if (this.#hugePageSize !== undefined) {
      throw mmapkitError(
        'ERR_MMAP_BUSY',
        'Cannot shrink huge-page memory while views of it are alive: the kernel cannot keep the addresses it gives up reserved for them ' +
          '(no mremap(MREMAP_DONTUNMAP) for hugetlb memory). Drop the views (let them be collected) and resize again.',
      );
    }
    // Moving or shrinking gives addresses up. Move the pages out with MREMAP_DONTUNMAP, which leaves
    // the old range mapped (empty), and hold it with a placeholder until the old views are garbage;
    // then resize the new range, which no view has seen.
    const moved = native.mremap(region.addr, oldK, oldK, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, Math.min(oldK, EXTERNAL_CAP));
    if (typeof moved !== 'bigint') {
      if (moved !== -osConstants.errno.EINVAL) throw systemError(moved, 'mremap', this.path);
      throw mmapkitError(
        'ERR_MMAP_BUSY',
        'Cannot move this mapping while views of it are alive: this kernel lacks mremap(MREMAP_DONTUNMAP) for it (Linux 5.13; 5.7 for ' +
          'private anonymous memory), which keeps the old addresses from being reused under them. Drop the views (let them be collected) and resize again.',
      );
    }
    // From here the old addresses hold nothing: the views over them go now.
    this.#detachViews('resize');
    const old = { addr: region.addr, length: oldK };
    region.addr = moved;
    if (native.reserve(old.addr, old.length) < 0) {
      // No placeholder (out of memory for a kernel mapping): give the addresses back, as retire() does.
      native.munmap(old.addr, old.length);
    } else {
      const token = {};
      for (const ab of alive) retiredToken.set(ab, token);
      retiredFinalizer.register(token, old);
    }
    const addr = native.mremap(moved, oldK, newK, MREMAP_MAYMOVE, external);
    if (typeof addr !== 'bigint') throw systemError(addr, 'mremap', this.path);
    region.addr = addr;
    region.length = newK;
  }

  /** Undo {@link Mapping.lock} (`munlock`). */
  unlock(range?: Range): void {
    const r = this.#kernelRange(range, 'unlock');
    const rc = native.munlock(r.addr, r.length);
    if (rc < 0) throw systemError(rc, 'munlock', this.path);
  }

  /**
   * @internal The kernel range of a low-level call: `start` is an absolute address inside this mapping
   * (default: byte 0 of the view), `length` is checked not to run past the mapping's last page.
   */
  [kRange](start: bigint | undefined, length: bigint, syscall: string): KernelRange {
    this.#check(syscall);
    const from = start ?? this.#region.addr + BigInt(this.#delta);
    const end = this.#region.addr + BigInt(Math.ceil(this.#region.length / pageSize) * pageSize);
    if (length > end - from) throw outOfRange('length', `<= ${end - from} (the mapping ends there)`, length);
    return { addr: from, length: Number(length) };
  }

  /**
   * @internal Keep the memory mapped while another thread uses it: `unmap()` then detaches views at
   * once but defers munmap until every hold is released, and calls `cancel` to ask the holder to stop.
   * Returns the release function (idempotent).
   */
  [kHold](cancel?: () => void): () => void {
    const region = this.#region;
    region.pending++;
    if (cancel !== undefined) this.#cancels.add(cancel);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      region.pending--;
      if (cancel !== undefined) this.#cancels.delete(cancel);
      // unmap() was called while another thread used the memory: it is our turn to free it.
      if (region.closed && !region.released && region.pending === 0) retire(region, this.path);
    };
  }

  /** @internal mprotect of a kernel range of this mapping, keeping views safe (posix.ts). */
  [kProtect](r: KernelRange, prot: number): void {
    this.#mprotect(r.addr, r.length, prot);
  }

  #mprotect(addr: bigint, length: number, prot: number): void {
    if (length === 0) {
      // Changes nothing; the kernel still checks the address.
      const rc = native.mprotect(addr, 0, prot);
      if (rc < 0) throw systemError(rc, 'mprotect', this.path);
      return;
    }
    const viewable = isViewable(prot);
    if ((prot & PROT_READ) === 0 && this.#cancels.size > 0) {
      // A waiter thread reads the words it sleeps on: unreadable pages would crash it.
      throw mmapkitError('ERR_MMAP_BUSY', 'Cannot make this mapping unreadable while async waits on it are pending; settle or abort them first');
    }
    // Detach before the pages lose write access: a view over read-only memory must never exist.
    if (!viewable) this.#detachViews('protect');
    const rc = native.mprotect(addr, length, prot);
    if (rc < 0) throw systemError(rc, 'mprotect', this.path);
    if (addr === this.#region.addr && length >= this.#region.length) {
      this.#prot = prot;
      this.#viewable = viewable;
    } else {
      if (prot !== this.#prot) this.#prot = -1;
      // Views stay possible only if every page still allows read and write.
      this.#viewable = this.#viewable && viewable;
    }
  }

  #check(method: string): void {
    if (this.#region.closed) {
      throw closedError(`use ${method}`, 'Mapping');
    }
    if (this.faulted) {
      throw mmapkitError(
        'ERR_MMAP_FAULTED',
        `Cannot use ${method}: part of ${this.path ?? 'this mapping'} was read after the file was truncated ` +
          '(a bus error, repaired with zero pages). Unmap it and map the file again.',
      );
    }
  }

  /**
   * The `range` argument of `method`, read once and validated, then the state checked: a getter of the
   * range may unmap the mapping (CPython gh-103987), so the state is checked only after every argument
   * was read, right before the system call.
   */
  #userRange(range: Range | undefined, method: string): { start: number; end: number } {
    const o = validateOptions(range, 'range', RANGE_OPTIONS);
    const start = o.offset === undefined ? 0 : Number(validateInt64(o.offset, 'range.offset', 0n, BigInt(this.length)));
    const length =
      o.length === undefined
        ? this.length - start
        : Number(validateInt64(o.length, 'range.length', 0n, BigInt(this.length - start)));
    this.#check(method);
    return { start, end: start + length };
  }

  /** A user range widened to the pages that hold it, as a kernel address and length (state checked). */
  #kernelRange(range: Range | undefined, method: string): KernelRange {
    const { start, end } = this.#userRange(range, method);
    const kStart = this.#delta + start;
    const aligned = kStart - (kStart % pageSize);
    return { addr: this.#region.addr + BigInt(aligned), length: this.#delta + end - aligned };
  }

  #makeView(offset: number, length: number): Buffer {
    if (length === 0) return Buffer.alloc(0);
    if (!this.#viewable) {
      throw mmapkitError(
        'ERR_MMAP_NOT_ACCESSIBLE',
        'The pages of this mapping are not readable and writable (see protect()): JavaScript has no read-only ' +
          'Buffer, and a write to a read-only page would kill the process. Call protect(\'write\') first.',
      );
    }
    const addr = this.#region.addr + BigInt(this.#delta + offset);
    const ab = native.view(addr, length);
    if (ab === null) {
      throw mmapkitError(
        'ERR_MMAP_EXTERNAL_BUFFERS_NOT_ALLOWED',
        'This runtime does not allow Buffers over external memory (the V8 memory cage, as in Electron); mmapkit cannot give views here.',
      );
    }
    Object.defineProperty(ab, kOwner, { value: this });
    viewAddress.set(ab, { mapping: this, addr });
    if (this.#views.length >= this.#viewsPruneAt) {
      this.#views = this.#views.filter((w) => w.deref() !== undefined);
      this.#viewsPruneAt = Math.max(64, this.#views.length * 2);
    }
    this.#views.push(new WeakRef(ab));
    return Buffer.from(ab, 0, length);
  }

  #detachViews(cause: DetachCause): void {
    for (const ref of this.#views) {
      const ab = ref.deref();
      if (ab !== undefined) {
        native.detach(ab);
        detachedBy.set(ab, cause);
      }
    }
    this.#views = [];
    this.#buffer = undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Searching (Mapping#indexOf / lastIndexOf): the module-level half.

/**
 * Positions one `Buffer#indexOf` call of `Mapping#indexOf` searches: 1 GiB. On Node 20, 22 and 24,
 * `Buffer#indexOf`, `lastIndexOf` and `includes` return a match past 2^31 as a wrong negative int32
 * (`Buffer.alloc(2 ** 31 + 16)` with byte 10 at 2^31 + 5: `buf.indexOf(10, 2 ** 31 - 2)` is
 * -2147483643), and clamp a `byteOffset` above 2^31 - 1 to 2^31 - 1. So every view searched is
 * shorter than 2^31 bytes (for needles up to 1 GiB) and no `byteOffset` is ever passed.
 */
const SEARCH_CHUNK = 2 ** 30;
let searchChunk = SEARCH_CHUNK;
/** Mappings up to this length may be searched through `buffer` itself (its positions are below 2^31). */
const SEARCH_SHORT = 2 ** 31;

/**
 * @internal For tests: the positions one Buffer call searches (1 to 2^30; undefined restores 1 GiB),
 * so that small mappings cross many chunk borders. Returns the previous value.
 */
export function setSearchChunk(positions?: number): number {
  const previous = searchChunk;
  searchChunk = positions === undefined ? SEARCH_CHUNK : validateInt32(positions, 'positions', 1, SEARCH_CHUNK);
  return previous;
}

/** `%TypedArray%.prototype[@@toStringTag]`: the real kind of a typed array, across realms, not spoofable. */
const typedArrayKind = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(Uint8Array.prototype), Symbol.toStringTag)!.get!;

/**
 * The `value` of indexOf/lastIndexOf as what `Buffer#indexOf` takes: a byte stays a number (memchr),
 * a string becomes its UTF-8 bytes, a one-byte needle becomes a number, a Uint8Array a Buffer over
 * the same memory.
 */
function searchNeedle(value: unknown): number | Buffer {
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || value < 0 || value > 255) throw outOfRange('value', 'an integer >= 0 && <= 255 (a byte)', value);
    return value;
  }
  let bytes: Buffer;
  if (typeof value === 'string') {
    bytes = Buffer.from(value, 'utf8');
  } else if (typedArrayKind.call(value) === 'Uint8Array') {
    const u8 = value as Uint8Array;
    bytes = Buffer.isBuffer(u8) ? u8 : Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
  } else {
    throw invalidArgType('value', 'a byte (number), a string, or an instance of Buffer or Uint8Array', value);
  }
  return bytes.length === 1 ? bytes[0]! : bytes;
}

/**
 * A `start`/`end` of indexOf/lastIndexOf: an integer (number or bigint) from `-length` to `length`,
 * negative counting from the end (as Python's slices and `Buffer#indexOf`); `fallback` when undefined.
 */
function searchBound(value: unknown, name: string, length: number, fallback: number): number {
  if (value === undefined) return fallback;
  let v: number;
  if (typeof value === 'number' && Number.isInteger(value) && value >= -length && value <= length) v = value;
  else v = Number(validateInt64(value, name, -BigInt(length), BigInt(length)));
  return v < 0 ? length + v : v + 0; // + 0: -0 is 0
}

/** What detached a view of a mapping: unmap(), resize() (the memory may have moved) or protect(). */
type DetachCause = 'unmap' | 'resize' | 'protect';
const detachedBy = new WeakMap<ArrayBuffer, DetachCause>();

/**
 * @internal The error for memory that a mapping still holds but whose view `ab` was detached
 * (ERR_MMAP_NOT_ACCESSIBLE): by resize() or by protect(), as the message says. `cannot` starts it
 * ("Cannot use a Mutex"); `again` is what to do besides taking a new view ("attach it again").
 */
export function detachedError(ab: ArrayBufferLike, cannot: string, again?: string): MmapkitError {
  const also = again === undefined ? '' : ` (and ${again})`;
  if (detachedBy.get(ab as ArrayBuffer) === 'resize') {
    return mmapkitError('ERR_MMAP_NOT_ACCESSIBLE', `${cannot}: its mapping was resized (resize()), which detaches every view; take a new view${also}`);
  }
  return mmapkitError('ERR_MMAP_NOT_ACCESSIBLE', `${cannot}: its mapping lost write access (protect()); after protect('write'), take a new view${also}`);
}

/**
 * @internal The mapping a view lies in and the address of the view's first byte, or undefined when
 * the view is not over memory mmapkit mapped. Throws for a detached view of a mapping
 * (ERR_MMAP_CLOSED, or ERR_MMAP_NOT_ACCESSIBLE after resize() or protect()).
 */
export function viewLocation(view: ArrayBufferView): { mapping: Mapping; addr: bigint } | undefined {
  const ab = view.buffer as ArrayBuffer;
  const info = viewAddress.get(ab);
  if (info === undefined) return undefined;
  // A detached view reports byteOffset 0: its address would be the start of the buffer, not where
  // the view was. Never turn it into an address (madvise(DONTNEED) there would zero other bytes).
  if (ab.byteLength === 0) {
    if (info.mapping.closed) throw closedError('use this view', 'Mapping');
    throw detachedError(ab, 'Cannot use this view, which was detached', 'attach again');
  }
  return { mapping: info.mapping, addr: info.addr + BigInt(view.byteOffset) };
}

/** @internal Build a Mapping (for posix.ts). */
export function createMapping(init: MappingInit): Mapping {
  return new Mapping(kConstruct, init);
}

/**
 * @internal Resolve a low-level `addr` argument (a Mapping, or a Buffer/TypedArray/DataView over one)
 * and a length to a kernel range inside that mapping.
 */
export function resolveAddress(
  addr: unknown,
  length: unknown,
  syscall: string,
): { mapping: Mapping; range: KernelRange } {
  const len = validateInt64(length, 'length');
  if (addr instanceof Mapping) return { mapping: addr, range: addr[kRange](undefined, len, syscall) };
  if (ArrayBuffer.isView(addr)) {
    const where = viewLocation(addr);
    if (where === undefined) throw invalidArgValue('addr', addr, 'is not a view of a mapping made by mmapkit');
    return { mapping: where.mapping, range: where.mapping[kRange](where.addr, len, syscall) };
  }
  throw invalidArgType('addr', 'a Mapping or a Buffer, TypedArray or DataView over one', addr);
}

function pathToString(p: PathLike): string {
  if (typeof p === 'string') return p;
  if (p instanceof URL) return decodeURIComponent(p.pathname);
  return p.toString();
}

function validateTarget(target: unknown): { path?: PathLike; fd?: number } {
  if (typeof target === 'number') return { fd: validateInt32(target, 'fd', 0) };
  if (typeof target === 'string' || Buffer.isBuffer(target) || target instanceof URL) {
    if (typeof target === 'string' && target.length === 0) throw invalidArgValue('path', target, 'must be a non-empty string');
    if (typeof target === 'string' && target.includes('\0')) throw invalidArgValue('path', target, 'must not contain null bytes');
    return { path: target };
  }
  throw invalidArgType('pathOrFd', 'of type string, Buffer, URL or number (a file descriptor)', target);
}

/**
 * Map a file or a device into memory.
 *
 * ```ts
 * using m = map('data.bin', { access: 'write', size: 1 << 20 });
 * m.buffer.write('hello');
 * m.flush();
 * ```
 *
 * @param pathOrFd A path (string, Buffer or file: URL), or an open file descriptor (not closed by
 *   mmapkit; the mapping stays valid after you close it).
 * @throws `ERR_MMAP_EMPTY_FILE` for an empty file without `size`; `ERR_OUT_OF_RANGE` for a zero
 *   length or a range past the end of the file; with `size`, `ELOOP` for a symbolic link at the path,
 *   `ERR_MMAP_NOT_OWNER` / `ERR_MMAP_UNSAFE_PERMISSIONS` for an existing file of another user or that
 *   others may write (see `owner`, `sharedWith`); system errors (`ENOENT`, `EACCES`, ...) shaped like fs.
 */
export function map(pathOrFd: PathLike | number, options?: MapOptions): Mapping {
  return mapWithFix(pathOrFd, options, (accept) => `to map it all the same, pass { ${accept} }`);
}

/**
 * @internal {@link map}, with the end of the message that refuses an existing file for its owner or
 * mode written by the caller: `fix` gets the options that would accept it (`owner: 1001`).
 */
export function mapWithFix(pathOrFd: PathLike | number, options: MapOptions | undefined, fix: (accept: string) => string): Mapping {
  const target = validateTarget(pathOrFd);
  const o = validateOptions(options, 'options', MAP_OPTIONS);
  const access = o.access === undefined ? 'read' : validateOneOf(o.access, 'options.access', ACCESS);
  const offset = o.offset === undefined ? 0n : validateInt64(o.offset, 'options.offset');
  const explicitLength = o.length === undefined ? undefined : validateInt64(o.length, 'options.length', 1n);
  const size = o.size === undefined ? undefined : validateInt64(o.size, 'options.size', 1n, BigInt(Number.MAX_SAFE_INTEGER));
  const mode = o.mode === undefined ? 0o600 : validateInt32(o.mode, 'options.mode', 0, 0o7777);
  const populate = o.populate === undefined ? false : validateBoolean(o.populate, 'options.populate');
  if (size !== undefined && access !== 'write') {
    throw invalidArgValue('options.size', o.size, "needs access: 'write' (growing a file means writing to it)");
  }
  if (o.mode !== undefined && (size === undefined || target.fd !== undefined)) {
    throw invalidArgValue('options.mode', o.mode, 'only applies to a file that options.size creates from a path');
  }
  const policy = filePolicy(o, mode);
  for (const key of OWNERSHIP_OPTIONS) {
    if (o[key] !== undefined && (size === undefined || target.fd !== undefined)) {
      throw invalidArgValue(`options.${key}`, o[key], 'only applies with options.size, to a file that map() may create or grow from a path (an existing file opened without size is not checked)');
    }
  }

  const path = target.path === undefined ? undefined : pathToString(target.path);
  let fd: number;
  let created = false; // by us: removed again if mapping fails, so a failed map() leaves no file behind
  if (target.fd !== undefined) {
    fd = target.fd;
  } else if (access !== 'write') {
    fd = openSync(target.path!, fsConstants.O_RDONLY); // libuv opens with O_CLOEXEC
  } else if (size === undefined) {
    fd = openSync(target.path!, fsConstants.O_RDWR);
  } else {
    ({ fd, created } = openToGrow(target.path!, mode));
  }
  try {
    const st = fstatSync(fd, { bigint: true });
    if (st.isDirectory()) throw systemError(-21 /* EISDIR */, 'mmap', path);
    const regular = st.isFile();
    if (size !== undefined && !regular) {
      throw invalidArgValue('options.size', o.size, 'only applies to a regular file (a device cannot be grown)');
    }
    // A file this call did not create may be anyone's (another user can make the path first in a
    // shared directory): check the file opened, by its descriptor, before it is grown or mapped.
    if (size !== undefined && !created && target.path !== undefined) {
      const refused = fileRefusal({ uid: Number(st.uid), gid: Number(st.gid), mode: Number(st.mode) }, policy, path!, fix);
      if (refused !== undefined) throw refused;
    }
    // Check the whole request against the size the file will have before changing the file.
    const grow = size !== undefined && st.size < size;
    const fileSize = grow ? size : st.size;
    let length: bigint;
    if (regular) {
      if (fileSize === 0n) {
        throw mmapkitError(
          'ERR_MMAP_EMPTY_FILE',
          `Cannot map ${path === undefined ? `fd ${fd}` : `'${path}'`}: the file is empty (an empty file has no pages to map). ` +
            "Pass { access: 'write', size } to grow it first.",
        );
      }
      if (offset >= fileSize) {
        throw outOfRange('options.offset', `< ${fileSize} (the size of the file)`, o.offset);
      }
      length = explicitLength ?? fileSize - offset;
      if (offset + length > fileSize) {
        throw outOfRange('options.length', `<= ${fileSize - offset} (the file has ${fileSize} bytes)`, o.length);
      }
    } else {
      if (explicitLength === undefined) {
        throw invalidArgValue('options.length', undefined, 'is required to map something that is not a regular file (a device has no size to default to)');
      }
      length = explicitLength;
    }
    const delta = offset % PAGE;
    const alignedOffset = offset - delta;
    const mapLength = length + delta;
    if (mapLength > BigInt(Number.MAX_SAFE_INTEGER)) throw outOfRange('options.length', 'smaller than the address space', o.length);
    if (grow) ftruncateSync(fd, Number(size));
    const flags = access === 'write' ? MAP_SHARED : MAP_PRIVATE;
    // A 'read' mapping is populated while read-only: populating a writable private mapping would copy
    // every page instead of sharing it with the page cache.
    const initialProt = access === 'read' && populate ? PROT_READ : PROT_RW;
    const populateFlag = populate ? (constants.MAP_POPULATE ?? 0) : 0;
    const addr = mmapChecked(mapLength, initialProt, flags | populateFlag, fd, alignedOffset, path);
    if (initialProt !== PROT_RW) {
      const rc = native.mprotect(addr, Number(mapLength), PROT_RW);
      if (rc < 0) {
        native.munmap(addr, Number(mapLength));
        throw systemError(rc, 'mprotect', path);
      }
    }
    return createMapping({
      addr,
      mapLength: Number(mapLength),
      delta: Number(delta),
      length: Number(length),
      offset,
      prot: PROT_RW,
      flags,
      path,
      access,
      hugePageSize: hugePageSizeOfFd(fd, Number(st.blksize), pageSize),
    });
  } catch (err) {
    if (created) rmSync(target.path!, { force: true });
    throw err;
  } finally {
    if (target.fd === undefined) closeSync(fd);
  }
}

/**
 * Open a path that `map()` with `size` may create or grow: `O_RDWR | O_NOFOLLOW`, so a symbolic link at
 * the last component is `ELOOP` (anyone can plant one in a shared directory such as /tmp), and when
 * it is missing `O_CREAT | O_EXCL | O_NOFOLLOW` with `mode`. `created`: this call made the file, so it
 * is ours with at most `mode`'s bits. A name that appears between the two opens is looked at again.
 * O_NOFOLLOW covers the last component only: links in the directories of the path are followed.
 */
function openToGrow(path: PathLike, mode: number): { fd: number; created: boolean } {
  for (let attempt = 0; ; attempt++) {
    try {
      return { fd: openSync(path, fsConstants.O_RDWR | fsConstants.O_NOFOLLOW), created: false };
    } catch (err) {
      if ((err as { code?: string }).code !== 'ENOENT') throw err;
    }
    try {
      return { fd: openSync(path, fsConstants.O_RDWR | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW, mode), created: true };
    } catch (err) {
      // EEXIST: something was made there since the first open (a dangling link included): look again.
      if ((err as { code?: string }).code !== 'EEXIST' || attempt === 99) throw err;
    }
  }
}

/**
 * Map anonymous memory: zero-filled, backed by no file (`MAP_ANONYMOUS`). Private by default; shared
 * anonymous memory is only visible to processes forked from this one, which Node cannot do (use
 * shared memory objects to share with children).
 */
export function mapAnonymous(length: Int64Like, options?: AnonymousOptions): Mapping {
  const len = validateInt64(length, 'length', 1n, BigInt(Number.MAX_SAFE_INTEGER));
  const o = validateOptions(options, 'options', ANONYMOUS_OPTIONS);
  const shared = o.shared === undefined ? false : validateBoolean(o.shared, 'options.shared');
  const populate = o.populate === undefined ? false : validateBoolean(o.populate, 'options.populate');
  const huge = parseHugePages(o.hugePages, 'options.hugePages', 'mmap');
  if (huge !== undefined) checkHugeLength(len, huge, 'length', length);
  const flags = (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS;
  const populateFlag = populate ? (constants.MAP_POPULATE ?? 0) : 0;
  let addr: bigint;
  try {
    addr = mmapChecked(len, PROT_RW, flags | populateFlag | (huge?.flags ?? 0), -1, 0n);
  } catch (err) {
    throw huge === undefined ? err : hugePagesError(err, huge, len);
  }
  return createMapping({
    addr,
    mapLength: Number(len),
    delta: 0,
    length: Number(len),
    offset: 0n,
    prot: PROT_RW,
    flags,
    path: undefined,
    access: undefined,
    hugePageSize: huge?.size,
  });
}
