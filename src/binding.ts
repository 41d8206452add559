/**
 * The only file that loads the native addon. It looks, in order, at `MMAPKIT_BINDING` (an explicit
 * path), `build/Release` and `build/Debug` (a source build), then the prebuilt binary the package
 * carries, `prebuilds/<platform>-<arch>[-musl]/mmapkit.node`.
 *
 * Contract of the addon: every wrapper takes checked primitives (addresses as bigint, or as number
 * where a hot path avoids BigInt arithmetic: user-space addresses fit in 2^53; lengths and file
 * offsets as number or bigint, flags as int32) and returns its result, or a negative errno as a number.
 * @module
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mmapkitError } from './internal/errors.js';

/** Result of a wrapper that returns nothing on success: 0, or -errno. */
export type Status = number;

/** Opaque per-environment context of the async waiter threads. */
export type WaitAsyncContext = { readonly __brand: 'WaitAsyncContext' };
export type UringContext = { readonly __brand: 'UringContext' };

/** The native exports (see native/addon.c). Internal: not part of the public API. */
export interface NativeBinding {
  /**
   * mmap(2), registered with the SIGBUS guard; `external` bytes are reported to V8 as external memory
   * until the mapping is reserved, unmapped or its environment torn down (each gives them back once).
   */
  mmap(length: bigint, prot: number, flags: number, fd: number, offset: bigint, external: number): bigint | number;
  munmap(addr: bigint, length: number): Status;
  /** V8's count of external memory for this isolate (the sum of napi_adjust_external_memory). */
  externalMemory(): number;
  /** Replace the mapping by a PROT_NONE placeholder that keeps its addresses (munmap it later). */
  reserve(addr: bigint, length: number): Status;
  /**
   * mremap(2) of a whole mapping (flags: 0, MREMAP_MAYMOVE, or MREMAP_MAYMOVE | MREMAP_DONTUNMAP with equal
   * lengths), the SIGBUS guard's registry following it; `external` bytes are reported to V8 for it from now.
   */
  mremap(addr: bigint, oldLength: number, newLength: number, flags: number, external: number): bigint | number;
  msync(addr: bigint, length: number, flags: number): Status;
  msyncAsync(addr: bigint, length: number, flags: number): Promise<Status>;
  mprotect(addr: bigint, length: number, prot: number): Status;
  madvise(addr: bigint, length: number, advice: number): Status;
  mincore(addr: bigint, length: number, vec: Uint8Array): Status;
  mlock(addr: bigint, length: number): Status;
  mlock2(addr: bigint, length: number, flags: number): Status;
  munlock(addr: bigint, length: number): Status;
  /** An ArrayBuffer over [addr, addr+length), or null when the runtime forbids external buffers. */
  view(addr: bigint, length: number): ArrayBuffer | null;
  detach(buffer: ArrayBuffer): void;
  faulted(addr: bigint): boolean;
  /** How many mappings made by the addon, in every thread of the process, are still mapped. */
  mappingCount(): number;
  /** A 4-byte ArrayBuffer over the process-wide count of faults the guard repaired. */
  faultCounter(): ArrayBuffer | null;
  shmOpen(name: string, oflag: number, mode: number): number;
  shmUnlink(name: string): Status;
  memfdCreate(name: string, flags: number): number;
  dupCloexec(fd: number): number;
  setCloexec(fd: number, on: boolean): Status;
  /** lseek(2): the new offset, or -errno (-ENXIO: no data / hole at or after offset with SEEK_DATA / SEEK_HOLE). */
  lseek(fd: number, offset: number, whence: number): number;
  /** FUTEX_WAIT; timeoutNs < 0 waits forever. */
  futexWait(addr: bigint | number, expected: number, timeoutNs: number): Status;
  /** FUTEX_WAKE; returns the number woken or -errno. */
  futexWake(addr: bigint | number, count: number): number;
  /** One per environment: dispatch(id, result) receives every async wait's result. */
  waitAsyncInit(dispatch: (id: number, result: number) => void): WaitAsyncContext;
  /** Queue an async wait on a waiter thread; returns its id (> 0) or -errno. */
  waitAsync(ctx: WaitAsyncContext, addr: bigint | number, expected: number, timeoutNs: number, spinNs: number): number;
  /** 1 if the wait was still pending (its result will be -ECANCELED unless it finished first). */
  waitAsyncCancel(ctx: WaitAsyncContext, id: number): number;
  /** Whether pending async waits keep the event loop alive. */
  waitAsyncRef(ctx: WaitAsyncContext, keepAlive: boolean): void;
  /** One per environment: an io_uring for futex waits, or null where the kernel lacks IORING_OP_FUTEX_WAIT. */
  uringInit(dispatch: (id: number, result: number) => void): UringContext | null;
  /** Queue a futex wait with id (> 0; timeoutNs < 0: none): 0 or -errno. Its result goes to dispatch. */
  uringWait(ctx: UringContext, addr: number, expected: number, timeoutNs: number, id: number): number;
  /** Ask the kernel to cancel wait id: 0 or -errno (the wait's result is then -ECANCELED). */
  uringCancel(ctx: UringContext, id: number): number;
  /** Whether the ring's poll handle keeps the event loop alive. */
  uringRef(ctx: UringContext, keepAlive: boolean): void;
  mutexInit(addr: bigint): Status;
  /** timeoutNs < 0 waits forever. */
  mutexLock(addr: bigint, timeoutNs: number): Status;
  mutexTryLock(addr: bigint): Status;
  mutexUnlock(addr: bigint): Status;
  /** Let go of a mutex this environment holds that glibc will not unlock (see native/mutex.c). */
  mutexAbandon(addr: bigint): Status;
  mutexConsistent(addr: bigint): Status;
  /** How many mutexes inside [addr, addr+length) this environment (thread) holds. */
  mutexHeldIn(addr: bigint, length: number): number;
  /** sizeof/alignof pthread_mutex_t, the offsets of its futex word and its type, and the type mutexInit gives it (-1 when unknown). */
  readonly mutexLayout: { readonly size: number; readonly align: number; readonly lockWordOffset: number; readonly kindOffset: number; readonly kind: number };
  /** This thread's id (gettid), as the kernel writes it into PI futex words. */
  gettid(): number;
  /** FUTEX_LOCK_PI2 (FUTEX_LOCK_PI before Linux 5.14) on a shared word; timeoutNs < 0 waits forever. */
  futexLockPi(addr: number, timeoutNs: number): Status;
  /** FUTEX_TRYLOCK_PI: 0, or -EAGAIN when a live thread holds it, -ESRCH when its owner is gone. */
  futexTryLockPi(addr: number): Status;
  /** FUTEX_UNLOCK_PI: hands the lock to the first waiter in the kernel, or frees it. */
  futexUnlockPi(addr: number): Status;
  /** Install the SIGBUS handler (again: put it back after something replaced it). */
  guardInstall(again: boolean): Status;
  guardInstalled(): boolean;
  readonly pageSize: number;
  readonly constants: Readonly<Record<string, number>>;
}

/** Whether this process runs on musl (Alpine) rather than glibc: its dynamic loader is mapped. */
function isMusl(): boolean {
  try {
    return /\/ld-musl-|\/libc\.musl-/.test(readFileSync('/proc/self/maps', 'latin1'));
  } catch {
    return false;
  }
}

/** Prebuilt binaries carried by the package (see scripts/prebuild.mjs). */
const PREBUILT = ['linux-x64', 'linux-arm64', 'linux-x64-musl', 'linux-arm64-musl'];

/** How to get a working addon when none fits or loads. */
const BUILD_HINT =
  'Build it from source with `npm explore mmapkit -- npm run build:native` (in a checkout: `npm run build:native`); ' +
  'that needs python3, make and a C compiler. Or point MMAPKIT_BINDING at a mmapkit.node built for this machine.';

function load(): NativeBinding {
  if (process.platform !== 'linux') {
    throw mmapkitError(
      'ERR_MMAP_UNSUPPORTED_PLATFORM',
      `mmapkit supports Linux only (this is ${process.platform}); see README "When is this library not appropriate?"`,
    );
  }
  const root = join(dirname(fileURLToPath(import.meta.url)), '..');
  const explicit = process.env['MMAPKIT_BINDING'];
  if (explicit !== undefined && explicit !== '' && !existsSync(explicit)) {
    throw mmapkitError('ERR_MMAP_BINDING_NOT_FOUND', `MMAPKIT_BINDING names ${explicit}, which does not exist. ${BUILD_HINT}`);
  }
  // A source build wins over the prebuilt binary: building is how a user says "not the prebuilt one".
  const prebuilt = `${process.platform}-${process.arch}${isMusl() ? '-musl' : ''}`;
  const candidates = [
    explicit,
    join(root, 'build', 'Release', 'mmapkit.node'),
    join(root, 'build', 'Debug', 'mmapkit.node'),
    join(root, 'prebuilds', prebuilt, 'mmapkit.node'),
  ].filter((p): p is string => typeof p === 'string' && p.length > 0);
  const found = candidates.find((p) => existsSync(p));
  if (found === undefined) {
    const why = PREBUILT.includes(prebuilt)
      ? `the prebuilt binary for ${prebuilt} is missing from the package`
      : `no prebuilt binary is made for ${prebuilt} (prebuilt: ${PREBUILT.join(', ')})`;
    throw mmapkitError('ERR_MMAP_BINDING_NOT_FOUND', `mmapkit's native addon was not found: ${why} (looked in: ${candidates.join(', ')}). ${BUILD_HINT}`);
  }
  const require = createRequire(import.meta.url);
  try {
    return require(found) as NativeBinding;
  } catch (err) {
    // A binary for another C library or a too old one ("GLIBC_2.28 not found"), or a runtime
    // without Node-API: say which file and what to do, with the loader's own words.
    throw mmapkitError(
      'ERR_MMAP_BINDING_LOAD_FAILED',
      `mmapkit's native addon ${found} could not be loaded (${(err as Error).message.split('\n')[0]}). ${BUILD_HINT}`,
    );
  }
}

/** The loaded addon. */
export const native: NativeBinding = load();
