/**
 * Synchronization objects in shared memory, usable across processes and threads: a robust `Mutex`
 * (POSIX robust, process-shared pthread mutex), a counting `Semaphore` and a resettable `Event`
 * (futex words). Each starts with a header (magic, version, sizes) that `attach` checks; the layouts
 * are in docs/layout.md.
 * @module
 */
import { deadlineAfterNs, nsLeft } from './internal/time.js';
import { checkConstruct, kConstruct } from './internal/symbols.js';
import { native } from './binding.js';
import { closedError, invalidArgType, invalidArgValue, mmapkitError, systemError } from './internal/errors.js';
import { Mapping, viewLocation } from './mapping.js';
import { SharedMemory } from './shm.js';
import { validateInt32 } from './internal/validators.js';
import { HEADER, publishHeader, readHeader, writeHeader } from './header.js';
import {
  type Word,
  type WaitAsyncOptions,
  notifyWord,
  parseWaitAsyncOptions,
  validateTimeout,
  waitWord,
  waitWordAsync,
} from './wait.js';

const EBUSY = -16;
const EOWNERDEAD = -130;
const ENOTRECOVERABLE = -131;
const ETIMEDOUT = -110;
const EPERM = -1;
const EDEADLK = -35;

/** Where a synchronization object lives: shared memory, a shared mapping, or a view over one. */
export type SyncTarget = SharedMemory | Mapping | ArrayBufferView;

const INT32_MAX = 0x7fffffff;

/** The memory of one structure, checked: shared, aligned, in bounds. */
interface Region {
  mapping: Mapping;
  /** Address of the structure's first byte. */
  addr: bigint;
  view: Buffer;
  i32: Int32Array;
}

function targetView(target: unknown, offset: number, length: number): Buffer {
  let whole: Buffer;
  if (target instanceof SharedMemory || target instanceof Mapping) {
    const m = target instanceof SharedMemory ? target.mapping : target;
    if (offset + length > m.length) throw invalidArgValue('offset', offset, `leaves no room for ${length} bytes in a mapping of ${m.length}`);
    return m.view(offset, length);
  } else if (ArrayBuffer.isView(target)) {
    viewLocation(target); // a detached view of a mapping: ERR_MMAP_CLOSED or ERR_MMAP_NOT_ACCESSIBLE
    whole = Buffer.from(target.buffer, target.byteOffset, target.byteLength);
  } else {
    throw invalidArgType('target', 'a SharedMemory, a Mapping, or a Buffer/TypedArray over one', target);
  }
  if (offset + length > whole.length) throw invalidArgValue('offset', offset, `leaves no room for ${length} bytes in a view of ${whole.length}`);
  return whole.subarray(offset, offset + length);
}

function region(target: unknown, offsetArg: unknown, length: number, what: string): Region {
  const offset = offsetArg === undefined ? 0 : validateInt32(offsetArg, 'offset', 0);
  const view = targetView(target, offset, length);
  const where = viewLocation(view);
  if (where === undefined || !where.mapping.shared) {
    throw mmapkitError(
      'ERR_MMAP_NOT_SHARED',
      `A ${what} must live in memory shared between processes (SharedMemory, or a 'write' mapping): this memory is ${where === undefined ? 'not from mmapkit' : 'private'}.`,
    );
  }
  if (where.addr % 8n !== 0n) throw invalidArgValue('offset', offset, `must put the ${what} on an 8-byte boundary in memory`);
  return { mapping: where.mapping, addr: where.addr, view, i32: new Int32Array(view.buffer, view.byteOffset, length / 4) };
}

/** What identifies one kind of structure in its header. */
interface Kind {
  name: string;
  magic: number;
  version: number;
  byteLength: number;
}

/** Lay out a new structure: header, `init` for the body, and the magic last (publish). */
function createRegion(target: unknown, offset: unknown, kind: Kind, init?: (r: Region) => void): Region {
  const r = region(target, offset, kind.byteLength, kind.name);
  r.view.fill(0);
  writeHeader(r.view, kind.version, HEADER.SIZE, kind.byteLength);
  init?.(r);
  publishHeader(r.i32, kind.magic);
  return r;
}

/** Find an existing structure and check its header. */
function attachRegion(target: unknown, offset: unknown, kind: Kind): Region {
  const r = region(target, offset, kind.byteLength, kind.name);
  checkHeader(r, kind.magic, kind.version, kind.byteLength, kind.name);
  return r;
}

function checkHeader(r: Region, magic: number, version: number, size: number, what: string): void {
  const h = readHeader(r.view, r.i32, magic, what);
  if (h.version !== version || h.headerSize !== HEADER.SIZE || h.totalSize !== size) {
    throw mmapkitError('ERR_MMAP_BAD_HEADER', `${what} layout mismatch: version ${h.version}, header ${h.headerSize}, size ${h.totalSize}; this library reads version ${version}, header ${HEADER.SIZE}, size ${size}`);
  }
}

function word(r: Region, byteOffset: number): Word {
  return { mapping: r.mapping, addr: Number(r.addr) + byteOffset, array: r.i32, index: byteOffset / 4 };
}

function checkOpen(r: Region, what: string): void {
  if (r.mapping.closed) throw closedError(`use the ${what}`, 'memory');
  // protect() detaches views when the pages lose write access: writing now would be SIGSEGV.
  if (r.i32.length === 0) {
    throw mmapkitError(
      'ERR_MMAP_NOT_ACCESSIBLE',
      `Cannot use a ${what} whose memory was made read-only (protect()); after protect('write'), attach it again`,
    );
  }
}



// ---------------------------------------------------------------- Mutex

/** How a lock was obtained. `'owner-died'`: the previous owner died holding it; repair, then `markConsistent()`. */
export type LockResult = 'acquired' | 'owner-died';

const MUTEX_MAGIC = 0x584d4b4d; // 'MKMX'
const MUTEX_VERSION = 1;
const MUTEX_OFFSET = HEADER.SIZE;
const FUTEX_WAITERS = 0x80000000 | 0;
/** Header flag: an owner died and the next one unlocked without markConsistent(). */
const MUTEX_NOT_RECOVERABLE = 1;

/**
 * A robust mutex in shared memory: a `pthread_mutex_t` with `PTHREAD_PROCESS_SHARED` and
 * `PTHREAD_MUTEX_ROBUST` (error-checking). If the process (or thread) holding it dies, the next
 * locker gets it with the result `'owner-died'`, repairs the data, and calls `markConsistent()`;
 * unlocking without that makes the mutex unusable (`ERR_MMAP_LOCK_NOT_RECOVERABLE`), as in POSIX.
 * A lock belongs to the thread that took it.
 */
export class Mutex {
  /** Bytes a Mutex occupies: header, then the pthread mutex, rounded up to 8. */
  static readonly byteLength: number = Math.ceil((MUTEX_OFFSET + native.mutexLayout.size) / 8) * 8;
  readonly #r: Region;
  readonly #mutex: bigint;
  readonly #word: Word | undefined;
  /** This thread holds the lock after 'owner-died' and has not called markConsistent() yet. */
  #repairing = false;

  /** @internal Use {@link Mutex.create} or {@link Mutex.attach}. */
  constructor(token: symbol, r: Region) {
    checkConstruct(token, 'use Mutex.create() or Mutex.attach()');
    this.#r = r;
    this.#mutex = r.addr + BigInt(MUTEX_OFFSET);
    const off = native.mutexLayout.lockWordOffset;
    this.#word = off < 0 ? undefined : word(r, MUTEX_OFFSET + off);
  }

  /** Initialize a mutex at `offset` (default 0) of `target`. Do it once, before other processes attach. */
  static create(target: SyncTarget, offset?: number): Mutex {
    const r = createRegion(target, offset, MUTEX_KIND, (r) => {
      const rc = native.mutexInit(r.addr + BigInt(MUTEX_OFFSET));
      if (rc < 0) throw systemError(rc, 'pthread_mutex_init');
    });
    return new Mutex(kConstruct, r);
  }

  /** Use a mutex that `create` initialized at `offset` of `target` (checks its header). */
  static attach(target: SyncTarget, offset?: number): Mutex {
    return new Mutex(kConstruct, attachRegion(target, offset, MUTEX_KIND));
  }

  /**
   * Lock, blocking the thread up to `timeout` ms (default: forever). Throws `ERR_MMAP_LOCK_TIMEOUT`
   * when the time runs out.
   */
  lock(timeout?: number): LockResult {
    const ns = validateTimeout(timeout);
    this.#checkUsable();
    const first = native.mutexTryLock(this.#mutex);
    if (first === EDEADLK) return this.#result(first, 'pthread_mutex_lock', timeout);
    if (first !== EBUSY) return this.#result(first, 'pthread_mutex_trylock', timeout);
    return this.#result(native.mutexLock(this.#mutex, ns), 'pthread_mutex_lock', timeout);
  }

  /** Lock if free: `'busy'` when it is held (by another thread or process, or by this thread). */
  tryLock(): LockResult | 'busy' {
    this.#checkUsable();
    const rc = native.mutexTryLock(this.#mutex);
    if (rc === EBUSY || rc === EDEADLK) return 'busy';
    return this.#result(rc, 'pthread_mutex_trylock', 0);
  }

  /**
   * Lock without blocking the event loop: try, and while it is held, sleep on the mutex's futex word
   * on a waiter thread. Rejects with `ERR_MMAP_LOCK_TIMEOUT`, or the signal's reason when aborted.
   */
  async lockAsync(timeout?: number, options?: WaitAsyncOptions): Promise<LockResult> {
    // Arguments first: an option getter may unmap the memory (the loop checks the state).
    const ns = validateTimeout(timeout);
    const opts = parseWaitAsyncOptions(options);
    const deadline = deadlineAfterNs(ns);
    let waited = false;
    for (;;) {
      // The memory may have been unmapped or made read-only while we slept: never touch it then.
      this.#checkUsable();
      const rc = native.mutexTryLock(this.#mutex);
      // EDEADLK: this thread holds it (an earlier lockAsync): wait for that one's unlock like anyone.
      if (rc !== EBUSY && rc !== EDEADLK) {
        const result = this.#result(rc, 'pthread_mutex_trylock', timeout);
        // We slept on the word: others may sleep there too. Keep FUTEX_WAITERS set so that our
        // unlock wakes them (glibc's own slow path takes the lock with the same bit).
        if (waited && this.#word !== undefined) Atomics.or(this.#word.array, this.#word.index, FUTEX_WAITERS);
        return result;
      }
      const remaining = nsLeft(deadline);
      if (remaining === 0) throw lockTimeout(timeout);
      if (this.#word === undefined) {
        // Unknown layout (not glibc): poll.
        await new Promise((resolve) => setTimeout(resolve, 1));
        continue;
      }
      const { array, index } = this.#word;
      const value = Atomics.load(array, index);
      if (value === 0) continue;
      const want = value | FUTEX_WAITERS;
      // Announce a sleeper (kernel robust-futex protocol): the owner's unlock then wakes one.
      if (value !== want && Atomics.compareExchange(array, index, value, want) !== value) continue;
      waited = true;
      let r: string;
      try {
        r = await waitWordAsync(this.#word, want, remaining, opts);
      } catch (err) {
        // An abort can land together with the unlock's wake-up meant for us: pass that wake on, or
        // another sleeper could miss it (a spurious wake-up is harmless: sleepers re-check).
        // (Unconditionally: the unlock that woke us has already cleared FUTEX_WAITERS from the word.)
        if (this.#r.i32.length !== 0) notifyWord(this.#word, 1);
        throw err;
      }
      if (r === 'timed-out' && nsLeft(deadline) === 0) throw lockTimeout(timeout);
    }
  }

  /** Unlock. Throws `ERR_MMAP_LOCK_NOT_OWNER` if this thread does not hold it. */
  unlock(): void {
    checkOpen(this.#r, 'Mutex');
    if (this.#repairing) {
      // POSIX: unlocking an inconsistent robust mutex makes it permanently unusable. Record that in
      // the header so every process reports it the same way (glibc's answers vary by call).
      Atomics.or(this.#r.i32, HEADER.FLAGS / 4, MUTEX_NOT_RECOVERABLE);
      this.#repairing = false;
    }
    const rc = native.mutexUnlock(this.#mutex);
    if (rc === EPERM) throw mmapkitError('ERR_MMAP_LOCK_NOT_OWNER', 'Cannot unlock a Mutex this thread does not hold');
    if (rc < 0) throw systemError(rc, 'pthread_mutex_unlock');
  }

  /** After `'owner-died'`: the protected data is repaired; the mutex works normally again. */
  markConsistent(): void {
    checkOpen(this.#r, 'Mutex');
    const rc = native.mutexConsistent(this.#mutex);
    if (rc < 0) throw systemError(rc, 'pthread_mutex_consistent');
    this.#repairing = false;
  }

  #checkUsable(): void {
    checkOpen(this.#r, 'Mutex');
    if ((Atomics.load(this.#r.i32, HEADER.FLAGS / 4) & MUTEX_NOT_RECOVERABLE) !== 0) throw notRecoverable();
  }

  #result(rc: number, syscall: string, timeout: number | undefined): LockResult {
    if (rc === 0) return 'acquired';
    if (rc === EOWNERDEAD) {
      this.#repairing = true;
      return 'owner-died';
    }
    if (rc === ETIMEDOUT) throw lockTimeout(timeout);
    if (rc === ENOTRECOVERABLE) throw notRecoverable();
    if (rc === EDEADLK) throw mmapkitError('ERR_MMAP_LOCK_DEADLOCK', 'This thread already holds this Mutex (locking it again would wait forever)');
    throw systemError(rc, syscall);
  }
}

function notRecoverable(): Error {
  return mmapkitError(
    'ERR_MMAP_LOCK_NOT_RECOVERABLE',
    'This Mutex is unusable: a previous owner died and the next one unlocked it without markConsistent(). Create a new one.',
  );
}

const MUTEX_KIND: Kind = { name: 'Mutex', magic: MUTEX_MAGIC, version: MUTEX_VERSION, byteLength: Mutex.byteLength };

function lockTimeout(timeout: number | undefined): Error {
  return mmapkitError('ERR_MMAP_LOCK_TIMEOUT', timeout);
}

// ---------------------------------------------------------------- Semaphore and Event

/**
 * What Semaphore and Event share: a futex word, a count of sleepers next to it, and a condition to
 * wait for. The sleeper count is raised around each sleep so that the waking side can skip the
 * system call when nobody sleeps; it is raised before the kernel re-checks the word, so no wake is lost.
 */
export abstract class FutexObject {
  /** @internal */
  protected readonly region: Region;
  /** @internal The futex word. */
  protected readonly word: Word;
  readonly #what: string;
  readonly #sleepers: number;

  /** @internal */
  protected constructor(region: Region, what: string, wordOffset: number, sleepersOffset: number) {
    this.region = region;
    this.word = word(region, wordOffset);
    this.#what = what;
    this.#sleepers = sleepersOffset / 4;
  }

  /** @internal The condition to wait for; may change the state (a semaphore takes one). */
  protected abstract ready(): boolean;

  /** @internal Throw if the memory is gone or read-only. */
  protected check(): void {
    checkOpen(this.region, this.#what);
  }

  /** @internal Wake up to `count` sleepers, skipping the system call when there are none. */
  protected wakeSleepers(count: number): void {
    // seq_cst read after the caller's seq_cst update of the word (see the class comment)
    if (Atomics.load(this.region.i32, this.#sleepers) > 0) notifyWord(this.word, count);
  }

  /** Block the thread until ready, up to `timeout` ms (default forever); false on timeout. */
  wait(timeout?: number): boolean {
    const deadline = deadlineAfterNs(validateTimeout(timeout));
    this.check();
    for (;;) {
      if (this.ready()) return true;
      const ns = nsLeft(deadline);
      if (ns === 0) return false;
      Atomics.add(this.region.i32, this.#sleepers, 1);
      try {
        waitWord(this.word, 0, ns);
      } finally {
        this.#leave();
      }
    }
  }

  /** Like `wait` without blocking the event loop (a waiter thread sleeps); resolves false on timeout. */
  async waitAsync(timeout?: number, options?: WaitAsyncOptions): Promise<boolean> {
    // Arguments first: an option getter may unmap the memory.
    const deadline = deadlineAfterNs(validateTimeout(timeout));
    const opts = parseWaitAsyncOptions(options);
    this.check();
    for (;;) {
      if (this.ready()) return true;
      const ns = nsLeft(deadline);
      if (ns === 0) return false;
      Atomics.add(this.region.i32, this.#sleepers, 1);
      try {
        await waitWordAsync(this.word, 0, ns, opts);
      } catch (err) {
        this.#leave();
        // An abort can land together with a wake-up meant for us: pass it on (see Mutex.lockAsync).
        if (this.region.i32.length !== 0) this.wakeSleepers(1);
        throw err;
      }
      this.#leave();
      // The memory may have been unmapped or made read-only while we slept.
      this.check();
    }
  }

  /** Undo a sleeper count, unless the memory went away meanwhile (unmap rejects the wait itself). */
  #leave(): void {
    if (this.region.i32.length !== 0) Atomics.sub(this.region.i32, this.#sleepers, 1);
  }
}

const SEM_MAGIC = 0x4d534b4d; // 'MKSM'
const SEM_VERSION = 1;
const SEM_VALUE = HEADER.SIZE; // i32: the count
const SEM_WAITERS = HEADER.SIZE + 4; // i32: sleepers; post() skips the wake system call when 0

/** A counting semaphore in shared memory, across processes and threads (futex). */
export class Semaphore extends FutexObject {
  /** Bytes a Semaphore occupies. */
  static readonly byteLength = 32;

  /** @internal Use {@link Semaphore.create} or {@link Semaphore.attach}. */
  constructor(token: symbol, r: Region) {
    checkConstruct(token, 'use Semaphore.create() or Semaphore.attach()');
    super(r, 'Semaphore', SEM_VALUE, SEM_WAITERS);
  }

  /** Initialize a semaphore with count `initial` (default 0) at `offset` of `target`. */
  static create(target: SyncTarget, offset?: number, initial = 0): Semaphore {
    const init = validateInt32(initial, 'initial', 0);
    return new Semaphore(kConstruct, createRegion(target, offset, SEM_KIND, (r) => Atomics.store(r.i32, SEM_VALUE / 4, init)));
  }

  /** Use a semaphore that `create` initialized (checks its header). */
  static attach(target: SyncTarget, offset?: number): Semaphore {
    return new Semaphore(kConstruct, attachRegion(target, offset, SEM_KIND));
  }

  /** The current count. */
  get value(): number {
    this.check();
    return Atomics.load(this.region.i32, SEM_VALUE / 4);
  }

  /** Add `count` (default 1) and wake as many sleepers. */
  post(count = 1): void {
    const n = validateInt32(count, 'count', 1);
    this.check();
    const { i32 } = this.region;
    // seq_cst compare-and-swap, checked against overflow even with concurrent posts
    for (;;) {
      const before = Atomics.load(i32, SEM_VALUE / 4);
      if (before > INT32_MAX - n) throw invalidArgValue('count', count, `would overflow the semaphore (value ${before})`);
      if (Atomics.compareExchange(i32, SEM_VALUE / 4, before, before + n) === before) break;
    }
    this.wakeSleepers(n);
  }

  /** Take one if the count is positive; false otherwise. */
  tryWait(): boolean {
    this.check();
    return this.ready();
  }

  /** @internal Take one if the count is positive. */
  protected ready(): boolean {
    const { i32 } = this.region;
    for (;;) {
      const v = Atomics.load(i32, SEM_VALUE / 4);
      if (v <= 0) return false;
      // acquire (seq_cst CAS): what the poster wrote before post() is visible after we take
      if (Atomics.compareExchange(i32, SEM_VALUE / 4, v, v - 1) === v) return true;
    }
  }
}

const SEM_KIND: Kind = { name: 'Semaphore', magic: SEM_MAGIC, version: SEM_VERSION, byteLength: Semaphore.byteLength };

const EVENT_MAGIC = 0x56454b4d; // 'MKEV'
const EVENT_VERSION = 1;
const EVENT_STATE = HEADER.SIZE; // i32: 0 not set, 1 set
const EVENT_WAITERS = HEADER.SIZE + 4; // i32: sleepers; set() skips the wake system call when 0

/**
 * An event in shared memory: `wait` returns once it is set. It stays set until `reset()` (a manual
 * reset event); never resetting it makes a one-shot event.
 */
export class Event extends FutexObject {
  /** Bytes an Event occupies. */
  static readonly byteLength = 32;

  /** @internal Use {@link Event.create} or {@link Event.attach}. */
  constructor(token: symbol, r: Region) {
    checkConstruct(token, 'use Event.create() or Event.attach()');
    super(r, 'Event', EVENT_STATE, EVENT_WAITERS);
  }

  /** Initialize an event (not set) at `offset` of `target`. */
  static create(target: SyncTarget, offset?: number): Event {
    return new Event(kConstruct, createRegion(target, offset, EVENT_KIND));
  }

  /** Use an event that `create` initialized (checks its header). */
  static attach(target: SyncTarget, offset?: number): Event {
    return new Event(kConstruct, attachRegion(target, offset, EVENT_KIND));
  }

  /** Whether the event is set. */
  get isSet(): boolean {
    this.check();
    return this.ready();
  }

  /** Set the event and wake every waiter, in every process. */
  set(): void {
    this.check();
    // seq_cst store, then the sleeper count is read (see FutexObject)
    Atomics.store(this.region.i32, EVENT_STATE / 4, 1);
    this.wakeSleepers(INT32_MAX);
  }

  /** Clear the event: later waits sleep until the next `set()`. */
  reset(): void {
    this.check();
    Atomics.store(this.region.i32, EVENT_STATE / 4, 0);
  }

  /** @internal Whether the event is set. */
  protected ready(): boolean {
    return Atomics.load(this.region.i32, EVENT_STATE / 4) === 1;
  }
}

const EVENT_KIND: Kind = { name: 'Event', magic: EVENT_MAGIC, version: EVENT_VERSION, byteLength: Event.byteLength };
