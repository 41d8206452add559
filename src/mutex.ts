/**
 * A robust mutex in shared memory, across processes and threads, of two kinds:
 *
 * - `'futex'` (the default): a priority-inheritance futex word that holds the owner's thread id and
 *   nothing else; the kernel keeps the waiters and finds the owner by thread id, in its own memory.
 *   Shared memory holds no pointer, so a peer that writes into it can make a lock fail, but cannot
 *   make this process read or write anywhere else.
 * - `'pthread'`: glibc's robust, process-shared `pthread_mutex_t`, for C programs that lock the same
 *   mutex with `pthread_mutex_lock`. glibc keeps pointers inside it (its robust list), and trusts them.
 *
 * Each starts with the common header (a magic per kind, so `attach` knows which it is); the layouts
 * are in docs/layout.md.
 * @module
 */
import { deadlineAfterNs, nsLeft, pauseSync } from './internal/time.js';
import { checkConstruct, kConstruct } from './internal/symbols.js';
import { threadExited } from './internal/liveness.js';
import { native } from './binding.js';
import { invalidState, mmapkitError, systemError } from './internal/errors.js';
import { validateOneOf, validateOptions } from './internal/validators.js';
import { HEADER } from './header.js';
import { type Kind, type Region, type SyncTarget, attachRegion, checkOpen, createRegion, region, word } from './internal/region.js';
import { type Word, type WaitAsyncOptions, type AsyncWaitSettings, notifyWord, parseWaitAsyncOptions, validateTimeout, waitWordAsync } from './wait.js';

const EPERM = -1;
const ESRCH = -3;
const EINTR = -4;
const EAGAIN = -11;
const EFAULT = -14;
const EBUSY = -16;
const EINVAL = -22;
const EDEADLK = -35;
const ETIMEDOUT = -110;
const EOWNERDEAD = -130;
const ENOTRECOVERABLE = -131;

/** How a lock was obtained. `'owner-died'`: the previous owner died holding it; repair, then `markConsistent()`. */
export type LockResult = 'acquired' | 'owner-died';

/** The two kinds of {@link Mutex}. */
export type MutexKind = 'futex' | 'pthread';
const KINDS: readonly MutexKind[] = ['futex', 'pthread'];

/** Options of {@link Mutex.create}. */
export interface MutexOptions {
  /**
   * `'futex'` (default): no pointers in shared memory; the lock word holds the owner's thread id.
   * `'pthread'`: glibc's robust `pthread_mutex_t`, for C programs that use `pthread_mutex_lock`.
   */
  kind?: MutexKind;
}
const MUTEX_OPTIONS = ['kind'] as const;

/** Bits of the kernel's futex word (linux/futex.h). */
const FUTEX_WAITERS = 0x80000000 | 0;
const FUTEX_TID_MASK = 0x3fffffff;

/** Header flag, both kinds: an owner died and the next one unlocked without markConsistent(). */
const FLAG_NOT_RECOVERABLE = 1;
/** Header flag, futex kind: the owner took the lock with 'owner-died' and has not called markConsistent(). */
const FLAG_INCONSISTENT = 2;
const FLAGS = HEADER.FLAGS / 4;

/** Byte offsets of the futex kind (docs/layout.md "Mutex, futex kind"). */
const FX = Object.freeze({
  /** i32, a PI futex word: owner TID | FUTEX_WAITERS | FUTEX_OWNER_DIED, 0 when free. */
  LOCK: HEADER.SIZE,
  /** i32: the owner's TID from just after it locked until just before it unlocks; 0 otherwise. */
  HELD: HEADER.SIZE + 4,
  /** i32: bumped by an unlock that finds SLEEPING set; async lockers FUTEX_WAIT on it (not PI). */
  WAKE: HEADER.SIZE + 8,
  /** i32, a flag: 1 when an async locker may be asleep on WAKE; the unlock that wakes one clears it. */
  SLEEPING: HEADER.SIZE + 12,
  /** Total size: the header and the four words. */
  SIZE: 32,
});

/**
 * The longest an async locker of the futex kind sleeps before it asks the kernel whether the owner
 * still lives: the kernel wakes nobody on WAKE when an owner dies, so this is how late a waiting
 * `lockAsync()` notices a dead owner when no blocking locker is there to be handed the lock.
 */
const ASYNC_CHECK_NS = 100e6;
/** The first such interval of a lockAsync() call: a dead owner's lock is taken over about this soon. */
const ASYNC_FIRST_CHECK_NS = 1e6;
/** Attempts at a word that keeps changing under a take-over or an unlock before giving up. */
const MAX_RETRIES = 100;
/** The longest nap of a blocking lock() while the kernel hands a dead owner's lock to another waiter. */
const HANDOVER_NAP_MAX_MS = 16;

const PTHREAD_KIND: Kind = {
  name: 'Mutex',
  magic: 0x584d4b4d, // 'MKMX'
  version: 1,
  byteLength: Math.ceil((HEADER.SIZE + native.mutexLayout.size) / 8) * 8,
};
const FUTEX_KIND: Kind = { name: 'Mutex', magic: 0x58464b4d /* 'MKFX' */, version: 1, byteLength: FX.SIZE };
const KIND_OF: Readonly<Record<MutexKind, Kind>> = { futex: FUTEX_KIND, pthread: PTHREAD_KIND };

/** This thread's id (a module instance belongs to one thread: the main one, or one worker's). */
let ownTid = 0;
function tid(): number {
  if (ownTid === 0) ownTid = native.gettid();
  return ownTid;
}

/** What each kind does; {@link Mutex} checks arguments and state, then calls it. */
interface Lock {
  lock(ns: number, timeout: number | undefined): LockResult;
  tryLock(): LockResult | 'busy';
  lockAsync(ns: number, timeout: number | undefined, opts: AsyncWaitSettings, check: () => void): Promise<LockResult>;
  unlock(): void;
  markConsistent(): void;
}

/**
 * A robust mutex in shared memory. If the process (or thread) holding it dies, the next locker gets
 * it with the result `'owner-died'`, repairs the data, and calls `markConsistent()`; unlocking without
 * that makes the mutex unusable (`ERR_MMAP_LOCK_NOT_RECOVERABLE`), as in POSIX. A lock belongs to
 * the thread that took it. Two kinds (see {@link MutexKind}); `'futex'` keeps no pointers in shared
 * memory and is the default.
 */
export class Mutex {
  /** Bytes a Mutex of either kind fits in: the larger of the two (the `'pthread'` kind, 56 on x86-64 glibc). */
  static readonly byteLength: number = Math.max(FUTEX_KIND.byteLength, PTHREAD_KIND.byteLength);
  readonly #r: Region;
  readonly #kind: MutexKind;
  readonly #lock: Lock;

  /** @internal Use {@link Mutex.create} or {@link Mutex.attach}. */
  constructor(token: symbol, r: Region, kind: MutexKind) {
    checkConstruct(token, 'use Mutex.create() or Mutex.attach()');
    this.#r = r;
    this.#kind = kind;
    this.#lock = kind === 'futex' ? new FutexLock(r) : new PthreadLock(r);
  }

  /** Bytes a Mutex of `kind` occupies (`'futex'`: 32; `'pthread'`: 56 on x86-64 glibc). */
  static byteLengthOf(kind: MutexKind): number {
    return KIND_OF[validateOneOf(kind, 'kind', KINDS)].byteLength;
  }

  /**
   * Initialize a mutex at `offset` (default 0) of `target`, of `options.kind` (default `'futex'`). Do
   * it once, before other processes attach.
   */
  static create(target: SyncTarget, offset?: number, options?: MutexOptions): Mutex {
    const o = validateOptions(options, 'options', MUTEX_OPTIONS);
    const kind = o.kind === undefined ? 'futex' : validateOneOf(o.kind, 'options.kind', KINDS);
    const r = createRegion(target, offset, KIND_OF[kind], (r) => {
      if (kind === 'futex') return; // all zero: free, nobody inside, nobody asleep
      const rc = native.mutexInit(r.addr + BigInt(HEADER.SIZE));
      if (rc < 0) throw systemError(rc, 'pthread_mutex_init');
    });
    return new Mutex(kConstruct, r, kind);
  }

  /** Use a mutex that `create` initialized at `offset` of `target` (checks its header; the magic tells the kind). */
  static attach(target: SyncTarget, offset?: number): Mutex {
    const head = region(target, offset, HEADER.SIZE, 'Mutex');
    // seq_cst load: create() stores the magic last
    const magic = Atomics.load(head.i32, HEADER.MAGIC / 4) >>> 0;
    const kind: MutexKind = magic === PTHREAD_KIND.magic ? 'pthread' : 'futex';
    return new Mutex(kConstruct, attachRegion(target, offset, KIND_OF[kind]), kind);
  }

  /** `'futex'` or `'pthread'`: see {@link MutexKind}. */
  get kind(): MutexKind {
    return this.#kind;
  }

  /**
   * Lock, blocking the thread up to `timeout` ms (default: forever). Throws `ERR_MMAP_LOCK_TIMEOUT`
   * when the time runs out, `ERR_MMAP_LOCK_DEADLOCK` when this thread holds it already.
   */
  lock(timeout?: number): LockResult {
    const ns = validateTimeout(timeout);
    this.#checkUsable();
    return this.#lock.lock(ns, timeout);
  }

  /** Lock if free: `'busy'` when it is held (by another thread or process, or by this thread). */
  tryLock(): LockResult | 'busy' {
    this.#checkUsable();
    return this.#lock.tryLock();
  }

  /**
   * Lock without blocking the event loop: try, and while it is held, sleep on a futex word on a
   * waiter thread (or io_uring), then try again. Rejects with `ERR_MMAP_LOCK_TIMEOUT`, or the
   * signal's reason when aborted.
   */
  async lockAsync(timeout?: number, options?: WaitAsyncOptions): Promise<LockResult> {
    // Arguments first: an option getter may unmap the memory (the loop checks the state).
    const ns = validateTimeout(timeout);
    const opts = parseWaitAsyncOptions(options);
    return this.#lock.lockAsync(ns, timeout, opts, () => this.#checkUsable());
  }

  /** Unlock. Throws `ERR_MMAP_LOCK_NOT_OWNER` if this thread does not hold it. */
  unlock(): void {
    checkOpen(this.#r, 'Mutex');
    this.#lock.unlock();
  }

  /** After `'owner-died'`: the protected data is repaired; the mutex works normally again. */
  markConsistent(): void {
    checkOpen(this.#r, 'Mutex');
    this.#lock.markConsistent();
  }

  #checkUsable(): void {
    checkOpen(this.#r, 'Mutex');
    if ((Atomics.load(this.#r.i32, FLAGS) & FLAG_NOT_RECOVERABLE) !== 0) throw notRecoverable();
  }
}

// ---------------------------------------------------------------- the futex kind

/**
 * The pointer-free mutex. The lock word is a priority-inheritance futex: user space takes a free lock
 * with a compare-and-swap 0 -> TID and frees an uncontended one with TID -> 0; otherwise the kernel
 * does it (FUTEX_LOCK_PI, FUTEX_UNLOCK_PI), queueing the waiters in its own memory and handing the
 * lock to the first of them at unlock, or when the owner exits. When the TID in the word belongs to
 * no thread, the kernel says so (ESRCH) and we take the lock over with a compare-and-swap from that
 * value. Whether the previous owner died while it may have been changing the data is in HELD: the
 * owner sets it right after locking and clears it right before unlocking, so a new owner that finds
 * it set gets `'owner-died'`. An owner that dies between locking and setting HELD, or between
 * clearing it and unlocking, changed nothing: the next owner gets `'acquired'`.
 *
 * Async lockers cannot sleep on the PI word (the kernel refuses to mix PI and plain waiters on one
 * word), and a thread cannot sleep in FUTEX_LOCK_PI for another (the lock would be the sleeper's). So
 * they raise the SLEEPING flag and sleep on WAKE; an unlock that finds the flag up clears it, bumps
 * WAKE and wakes one (the kernel's FUTEX_WAITERS protocol, on a word of our own: an unlock pays the
 * wake-up once per sleep, not on every unlock while an async locker waits). When no wake-up came for
 * ASYNC_FIRST_CHECK_NS (at the start), then ASYNC_CHECK_NS, they also ask the kernel
 * (FUTEX_TRYLOCK_PI) whether the owner lives.
 */
class FutexLock implements Lock {
  readonly #i32: Int32Array;
  /** Address of the lock word. */
  readonly #lockAddr: number;
  readonly #wake: Word;

  constructor(r: Region) {
    this.#i32 = r.i32;
    this.#lockAddr = Number(r.addr) + FX.LOCK;
    this.#wake = word(r, FX.WAKE);
  }

  lock(ns: number, timeout: number | undefined): LockResult {
    const me = tid();
    const first = this.#try(me, false);
    if (first === 'self') throw deadlock();
    if (first !== 'busy') return first;
    const deadline = deadlineAfterNs(ns);
    for (let nap = 1; ; ) {
      const seen = Atomics.load(this.#i32, FX.LOCK / 4);
      if ((seen & FUTEX_TID_MASK) === me) throw deadlock();
      const left = nsLeft(deadline);
      if (left === 0) {
        // Out of time: one last look, in the kernel, which also notices an owner that died.
        const last = this.#try(me, true);
        if (last === 'self') throw deadlock();
        if (last === 'busy') throw lockTimeout(timeout);
        return last;
      }
      // Sleeps in the kernel's queue; returns owning the lock, handed over by an unlock or by the
      // owner's exit. A free word is taken at once.
      const rc = native.futexLockPi(this.#lockAddr, left);
      if (rc === 0) return this.#took(me);
      if (rc === ETIMEDOUT) throw lockTimeout(timeout);
      if (rc === ESRCH) {
        if (this.#takeOver(seen, me)) return this.#took(me);
        continue;
      }
      if (rc === EDEADLK) throw deadlock();
      if (rc === EAGAIN || rc === EINTR) continue;
      if (rc === EINVAL) {
        const h = this.#handover(seen);
        if (h === 'changed') continue;
        if (h === 'in-progress') {
          // Someone else is being handed the lock: it is busy. Nap (never past the deadline), look again.
          const ms = Math.min(nap, left < 0 ? nap : Math.ceil(left / 1e6));
          pauseSync(ms);
          nap = Math.min(nap * 2, HANDOVER_NAP_MAX_MS);
          continue;
        }
      }
      throw this.#refused(rc, 'lock');
    }
  }

  tryLock(): LockResult | 'busy' {
    const r = this.#try(tid(), true);
    return r === 'self' ? 'busy' : r;
  }

  async lockAsync(ns: number, timeout: number | undefined, opts: AsyncWaitSettings, check: () => void): Promise<LockResult> {
    const me = tid();
    const i32 = this.#i32;
    const deadline = deadlineAfterNs(ns);
    let slept = false;
    try {
      // Tries after a wake-up are user space only (a compare-and-swap); after a quiet interval the
      // kernel is asked too (FUTEX_TRYLOCK_PI), which notices a dead owner. The first interval is
      // short, so that a lock left by a dead owner is taken over at once; asking the kernel at every
      // call would cost a contended mutex two system calls per lock (the kernel's try, and the
      // owner's unlock through the kernel, which that try forces).
      for (let first = true, kernel = false, quiet = ASYNC_FIRST_CHECK_NS; ; first = false) {
        // The memory may have been unmapped or made read-only while we slept: never touch it then.
        check();
        const seq = Atomics.load(i32, FX.WAKE / 4);
        // Raise the flag after reading WAKE and before the try (seq_cst): either the try sees the lock
        // free, or the unlock that frees it (its release comes after our failed try) finds the flag,
        // or finds it cleared by an unlock that came after our store and so bumped WAKE past `seq`.
        if (!first) Atomics.store(i32, FX.SLEEPING / 4, 1);
        const r = this.#try(me, kernel);
        // 'self': this thread holds it (an earlier lockAsync): wait for that unlock like anyone.
        if (r !== 'busy' && r !== 'self') {
          // The unlock that woke us cleared the flag, and others may still sleep: raise it again, so
          // that our own unlock wakes one (glibc's slow path keeps FUTEX_WAITERS the same way).
          if (slept) Atomics.store(i32, FX.SLEEPING / 4, 1);
          return r;
        }
        const left = nsLeft(deadline);
        if (left === 0) throw lockTimeout(timeout);
        if (first) continue; // raise the flag, then try once more before sleeping
        const slice = left < 0 || left > quiet ? quiet : left;
        slept = true;
        const res = await waitWordAsync(this.#wake, seq, slice, opts);
        // Nothing for a whole interval: the owner may be dead, which only the kernel can tell.
        kernel = res === 'timed-out';
        if (kernel) quiet = ASYNC_CHECK_NS;
      }
    } catch (err) {
      // A timeout or an abort can land together with an unlock's wake-up meant for us: pass it on
      // (a spurious wake-up is harmless), or another async locker would sleep through a free lock
      // until its next look.
      if (slept && i32.length !== 0) this.#wakeOne();
      throw err;
    }
  }

  unlock(): void {
    const me = tid();
    const i32 = this.#i32;
    if ((Atomics.load(i32, FX.LOCK / 4) & FUTEX_TID_MASK) !== me) {
      throw mmapkitError('ERR_MMAP_LOCK_NOT_OWNER', 'Cannot unlock a Mutex this thread does not hold');
    }
    if ((Atomics.load(i32, FLAGS) & FLAG_INCONSISTENT) !== 0) {
      // POSIX: unlocking after 'owner-died' without markConsistent() makes the mutex unusable, for
      // everyone (before the unlock: nobody may find it usable in between).
      Atomics.or(i32, FLAGS, FLAG_NOT_RECOVERABLE);
      Atomics.and(i32, FLAGS, ~FLAG_INCONSISTENT);
    }
    // We no longer change the data: an owner that dies from here on leaves it consistent.
    Atomics.store(i32, FX.HELD / 4, 0);
    this.#release(me);
  }

  markConsistent(): void {
    const i32 = this.#i32;
    if ((Atomics.load(i32, FX.LOCK / 4) & FUTEX_TID_MASK) !== tid() || (Atomics.load(i32, FLAGS) & FLAG_INCONSISTENT) === 0) {
      throw invalidState("markConsistent() is for the thread that locked this Mutex with the result 'owner-died', before it unlocks");
    }
    Atomics.and(i32, FLAGS, ~FLAG_INCONSISTENT);
  }

  /**
   * Try to lock without sleeping: user space (compare-and-swap) only, or the kernel too
   * (FUTEX_TRYLOCK_PI, which also tells a dead owner). `'self'`: the word holds our own TID.
   */
  #try(me: number, kernel: boolean): LockResult | 'busy' | 'self' {
    const i32 = this.#i32;
    // acquire (seq_cst CAS): what the previous owner wrote before unlocking is visible from here on
    const v = Atomics.compareExchange(i32, FX.LOCK / 4, 0, me);
    if (v === 0) return this.#took(me);
    if ((v & FUTEX_TID_MASK) === me) return 'self';
    if (!kernel) return 'busy';
    for (let i = 0; i < MAX_RETRIES; i++) {
      const seen = Atomics.load(i32, FX.LOCK / 4);
      const rc = native.futexTryLockPi(this.#lockAddr);
      if (rc === 0) return this.#took(me);
      if (rc === EAGAIN) return 'busy'; // held by a live thread (the kernel set FUTEX_WAITERS)
      if (rc === EDEADLK) return 'self';
      if (rc === ESRCH) {
        if (this.#takeOver(seen, me)) return this.#took(me);
        continue;
      }
      if (rc === EINTR) continue;
      if (rc === EINVAL) {
        const h = this.#handover(seen);
        if (h === 'changed') continue;
        if (h === 'in-progress') return 'busy';
      }
      throw this.#refused(rc, 'lock');
    }
    return 'busy'; // the word kept changing under us
  }

  /**
   * The kernel refused to lock with EINVAL: a corrupt word, or a hand-over in progress. When an owner
   * dies with waiters queued, the kernel (exit_pi_state_list) drops it as the owner and wakes the top
   * waiter, but the word keeps the dead owner's TID until that waiter runs and writes its own; in
   * between, every lock attempt is refused with EINVAL ("no owner, and the owner-died bit not set").
   * On a loaded machine that lasts as long as the waiter waits for a CPU. So: `'changed'` when the word
   * changed since `seen` (look again), `'in-progress'` when the TID in it is a thread that has exited
   * or is exiting (the lock is busy: being handed to someone else), `'corrupt'` otherwise. A peer that
   * sleeps in a plain FUTEX_WAIT on a word naming a dead thread also looks like a hand-over: the lock
   * is busy while it sleeps.
   */
  #handover(seen: number): 'changed' | 'in-progress' | 'corrupt' {
    if (Atomics.load(this.#i32, FX.LOCK / 4) !== seen) return 'changed';
    return threadExited(seen & FUTEX_TID_MASK) ? 'in-progress' : 'corrupt';
  }

  /**
   * The kernel found no thread with the TID in the word (ESRCH): its owner is gone. Take the lock from
   * the value we read before asking; if the word changed since, someone else moved first (try again).
   * A thread id is not reused while the kernel still counts it among the living, so the word cannot
   * hold the same value again for a live owner within this instant.
   */
  #takeOver(seen: number, me: number): boolean {
    if ((seen & FUTEX_TID_MASK) === 0) return false;
    // No waiter can be queued in the kernel behind a dead owner (it hands the lock on at exit), so
    // FUTEX_WAITERS need not be kept.
    return Atomics.compareExchange(this.#i32, FX.LOCK / 4, seen, me) === seen;
  }

  /** This thread has just taken the lock word: the result (or, if the mutex is not recoverable, give it back and throw). */
  #took(me: number): LockResult {
    const i32 = this.#i32;
    if ((Atomics.load(i32, FLAGS) & FLAG_NOT_RECOVERABLE) !== 0) {
      this.#release(me);
      throw notRecoverable();
    }
    // From now on we may change the data: say so before the caller does. What was there says whether
    // the previous owner died while it could have been changing it (seq_cst exchange).
    const before = Atomics.exchange(i32, FX.HELD / 4, me);
    if (before === 0 && (Atomics.load(i32, FLAGS) & FLAG_INCONSISTENT) === 0) return 'acquired';
    Atomics.or(i32, FLAGS, FLAG_INCONSISTENT);
    return 'owner-died';
  }

  /** Give the lock word back (we hold it) and wake an async locker if one sleeps. */
  #release(me: number): void {
    const i32 = this.#i32;
    // release (seq_cst CAS): everything written under the lock is visible to the next owner. It fails
    // when FUTEX_WAITERS (or FUTEX_OWNER_DIED) is set: then the kernel hands the lock over.
    if (Atomics.compareExchange(i32, FX.LOCK / 4, me, 0) !== me) {
      for (let i = 0; ; i++) {
        const rc = native.futexUnlockPi(this.#lockAddr);
        if (rc === 0) break;
        if (rc === EAGAIN && i < MAX_RETRIES) continue; // the word changed under the call
        throw this.#refused(rc, 'unlock');
      }
    }
    // seq_cst load after the release: see lockAsync (either its try saw the lock free, or we see its
    // flag). The exchange lets one unlock, not every unlock, pay for the wake-up.
    if (Atomics.load(i32, FX.SLEEPING / 4) !== 0 && Atomics.exchange(i32, FX.SLEEPING / 4, 0) !== 0) this.#wakeOne();
  }

  /** Bump WAKE (a locker about to sleep on its old value then does not sleep) and wake one sleeper on it. */
  #wakeOne(): void {
    Atomics.add(this.#i32, FX.WAKE / 4, 1);
    notifyWord(this.#wake, 1);
  }

  /** The error for a futex call the kernel refused. */
  #refused(rc: number, what: 'lock' | 'unlock'): Error {
    const value = `0x${(Atomics.load(this.#i32, FX.LOCK / 4) >>> 0).toString(16).padStart(8, '0')}`;
    if (rc === EPERM && what === 'lock') return mmapkitError('ERR_MMAP_LOCK_CORRUPT', `${value} names a kernel thread as the owner`);
    if (rc === EPERM) return mmapkitError('ERR_MMAP_LOCK_CORRUPT', `${value} no longer names this thread, which holds the lock`);
    if (rc === EINVAL) return mmapkitError('ERR_MMAP_LOCK_CORRUPT', `${value} disagrees with the waiters the kernel keeps for it`);
    if (rc === EAGAIN) return mmapkitError('ERR_MMAP_LOCK_CORRUPT', `${value} kept changing during the unlock`);
    return systemError(rc, 'futex');
  }
}

// ---------------------------------------------------------------- the pthread kind

/**
 * glibc's robust, process-shared, error-checking `pthread_mutex_t` (native/mutex.c). If its owner dies,
 * the kernel's robust-list walk marks the lock word FUTEX_OWNER_DIED and wakes a waiter, whose lock
 * returns EOWNERDEAD.
 */
class PthreadLock implements Lock {
  readonly #r: Region;
  readonly #mutex: bigint;
  readonly #word: Word | undefined;
  /** This thread holds the lock after 'owner-died' and has not called markConsistent() yet. */
  #repairing = false;

  constructor(r: Region) {
    this.#r = r;
    this.#mutex = r.addr + BigInt(HEADER.SIZE);
    const off = native.mutexLayout.lockWordOffset;
    this.#word = off < 0 ? undefined : word(r, HEADER.SIZE + off);
  }

  lock(ns: number, timeout: number | undefined): LockResult {
    const first = native.mutexTryLock(this.#mutex);
    if (first === EDEADLK) return this.#result(first, 'pthread_mutex_lock', timeout);
    if (first !== EBUSY) return this.#result(first, 'pthread_mutex_trylock', timeout);
    return this.#result(native.mutexLock(this.#mutex, ns), 'pthread_mutex_lock', timeout);
  }

  tryLock(): LockResult | 'busy' {
    const rc = native.mutexTryLock(this.#mutex);
    if (rc === EBUSY || rc === EDEADLK) return 'busy';
    return this.#result(rc, 'pthread_mutex_trylock', 0);
  }

  /** Try, and while it is held, sleep on the mutex's futex word on a waiter thread. */
  async lockAsync(ns: number, timeout: number | undefined, opts: AsyncWaitSettings, check: () => void): Promise<LockResult> {
    const deadline = deadlineAfterNs(ns);
    let waited = false;
    for (;;) {
      // The memory may have been unmapped or made read-only while we slept: never touch it then.
      check();
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

  unlock(): void {
    if (this.#repairing) {
      // POSIX: unlocking an inconsistent robust mutex makes it permanently unusable. Record that in
      // the header so every process reports it the same way (glibc's answers vary by call).
      Atomics.or(this.#r.i32, FLAGS, FLAG_NOT_RECOVERABLE);
      this.#repairing = false;
    }
    const rc = native.mutexUnlock(this.#mutex);
    if (rc === 0) return;
    // EINVAL: a corrupt type (glibc was not called). EPERM for a mutex this thread holds on record:
    // its lock word was overwritten. Either way glibc will not unlock it (issue 17).
    if (rc === EINVAL || (rc === EPERM && native.mutexHeldIn(this.#mutex, 1) > 0)) throw this.#letGo(rc === EINVAL ? 'type' : 'word');
    if (rc === EPERM) throw mmapkitError('ERR_MMAP_LOCK_NOT_OWNER', 'Cannot unlock a Mutex this thread does not hold');
    throw systemError(rc, 'pthread_mutex_unlock');
  }

  /**
   * glibc will not unlock this mutex: let go of it anyway (native mutexAbandon: off this thread's
   * robust list, marked as a dead owner's), or else memory that holds it could never be unmapped.
   */
  #letGo(refused: 'type' | 'word'): Error {
    const { field, state } = this.#corruption(refused);
    const rc = native.mutexAbandon(this.#mutex);
    let outcome = 'this thread still holds it';
    if (rc === 1) outcome = "this thread has let go of it as if it had died holding it (the next locker gets 'owner-died'), and its memory can be unmapped";
    else if (rc === 0) outcome = 'this thread has let go of it (off its robust list, forgotten), and its memory can be unmapped';
    else if (rc === EPERM) outcome = 'nothing was unlocked (this thread does not hold it)';
    else if (rc === EFAULT) {
      outcome = "its links on this thread's robust list are corrupt too, so this thread cannot let go of it safely: its memory stays mapped (ERR_MMAP_BUSY) until the thread ends";
    }
    return mmapkitError('ERR_MMAP_LOCK_CORRUPT', `${state}. Something wrote into it outside its protocol; ${outcome}. Create a new Mutex`, field);
  }

  /**
   * What was refused, for a message: the type field when it is not what mutexInit writes (or, when
   * `refused` is 'type', was not during the call), else the lock word.
   */
  #corruption(refused: 'type' | 'word'): { field: string; state: string } {
    const { kindOffset, kind } = native.mutexLayout;
    if (kindOffset >= 0 && kind >= 0) {
      const found = Atomics.load(this.#r.i32, (HEADER.SIZE + kindOffset) / 4);
      const field = 'type field (glibc __kind)';
      if (found !== kind) return { field, state: `${found}, where a robust, process-shared, error-checking mutex has ${kind}` };
      if (refused === 'type') return { field, state: `it changed during the call (it holds ${kind} again)` };
    }
    const value = this.#word === undefined ? 'its value' : `0x${(Atomics.load(this.#word.array, this.#word.index) >>> 0).toString(16).padStart(8, '0')}`;
    return { field: 'lock word', state: `${value} no longer names this thread, which holds the lock` };
  }

  markConsistent(): void {
    const rc = native.mutexConsistent(this.#mutex);
    if (rc < 0) throw systemError(rc, 'pthread_mutex_consistent');
    this.#repairing = false;
  }

  #result(rc: number, syscall: string, timeout: number | undefined): LockResult {
    if (rc === 0) return 'acquired';
    if (rc === EOWNERDEAD) {
      this.#repairing = true;
      return 'owner-died';
    }
    if (rc === ETIMEDOUT) throw lockTimeout(timeout);
    if (rc === ENOTRECOVERABLE) throw notRecoverable();
    if (rc === EDEADLK) throw deadlock();
    if (rc === EINVAL) {
      // A corrupt type: refused before glibc was called, or glibc locked it without its robust list
      // (the type changed during the call) and it was let go again (native/mutex.c).
      const { field, state } = this.#corruption('type');
      throw mmapkitError('ERR_MMAP_LOCK_CORRUPT', `${state}. Something wrote into it outside its protocol; nothing was locked. Create a new Mutex`, field);
    }
    throw systemError(rc, syscall);
  }
}

function notRecoverable(): Error {
  return mmapkitError(
    'ERR_MMAP_LOCK_NOT_RECOVERABLE',
    'This Mutex is unusable: a previous owner died and the next one unlocked it without markConsistent(). Create a new one.',
  );
}

function deadlock(): Error {
  return mmapkitError('ERR_MMAP_LOCK_DEADLOCK', 'This thread already holds this Mutex (locking it again would wait forever)');
}

function lockTimeout(timeout: number | undefined): Error {
  return mmapkitError('ERR_MMAP_LOCK_TIMEOUT', timeout);
}
