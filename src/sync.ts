/**
 * Synchronization objects in shared memory, usable across processes and threads: a robust `Mutex`
 * (src/mutex.ts: a pointer-free futex mutex, or glibc's robust, process-shared pthread mutex), a
 * counting `Semaphore` and a resettable `Event` (futex words). Each starts with a header (magic,
 * version, sizes) that `attach` checks; the layouts are in docs/layout.md.
 * @module
 */
import { deadlineAfterNs, nsLeft } from './internal/time.js';
import { checkConstruct, kConstruct } from './internal/symbols.js';
import { type MmapkitError, invalidArgValue, mmapkitError } from './internal/errors.js';
import { validateInt32 } from './internal/validators.js';
import { HEADER } from './header.js';
import { type Kind, type Region, type SyncTarget, attachRegion, checkOpen, createRegion, word } from './internal/region.js';
import {
  type Word,
  type WaitAsyncOptions,
  notifyWord,
  parseWaitAsyncOptions,
  validateTimeout,
  waitWord,
  waitWordAsync,
} from './wait.js';

export { Mutex, type LockResult, type MutexKind, type MutexOptions } from './mutex.js';
export type { SyncTarget };

const INT32_MAX = 0x7fffffff;

// ---------------------------------------------------------------- Semaphore and Event

/**
 * What Semaphore and Event share: a futex word, a count of sleepers next to it, and a condition to
 * wait for. The sleeper count is raised around each sleep so that the waking side can skip the
 * system call when nobody sleeps; it is raised before the kernel re-checks the word, so no wake is lost.
 *
 * Every look at the word goes through `ready()`, which throws ERR_MMAP_SYNC_CORRUPT for a value the
 * protocol never writes (a negative count, an event state other than 0 and 1). The waits sleep only
 * while the word holds 0; any other value the condition does not take would make the futex answer
 * 'not-equal' at once, for good: a wait that spins on a core, or a `waitAsync` that loops through
 * microtasks and starves the event loop until its timeout.
 */
export abstract class FutexObject {
  /** @internal */
  protected readonly region: Region;
  /** @internal The futex word. */
  protected readonly word: Word;
  readonly #what: 'Semaphore' | 'Event';
  readonly #sleepers: number;

  /** @internal */
  protected constructor(region: Region, what: 'Semaphore' | 'Event', wordOffset: number, sleepersOffset: number) {
    this.region = region;
    this.word = word(region, wordOffset);
    this.#what = what;
    this.#sleepers = sleepersOffset / 4;
  }

  /**
   * @internal The condition to wait for; may change the state (a semaphore takes one). Throws
   * ERR_MMAP_SYNC_CORRUPT when the word holds a value the protocol never writes.
   */
  protected abstract ready(): boolean;

  /** @internal Throw if the memory is gone or read-only. */
  protected check(): void {
    checkOpen(this.region, this.#what);
  }

  /** @internal ERR_MMAP_SYNC_CORRUPT: the word holds what `found` describes. */
  protected corrupt(found: string): MmapkitError {
    return mmapkitError('ERR_MMAP_SYNC_CORRUPT', this.#what, found);
  }

  /** @internal Wake up to `count` sleepers, skipping the system call when there are none. */
  protected wakeSleepers(count: number): void {
    // seq_cst read after the caller's seq_cst update of the word (see the class comment)
    if (Atomics.load(this.region.i32, this.#sleepers) > 0) notifyWord(this.word, count);
  }

  /**
   * Block the thread until ready, up to `timeout` ms (default forever); false on timeout. Throws
   * ERR_MMAP_SYNC_CORRUPT at its first look at a value the word can never hold (also after a sleep).
   */
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

  /**
   * Like `wait` without blocking the event loop (a waiter thread sleeps); resolves false on timeout,
   * rejects with ERR_MMAP_SYNC_CORRUPT as `wait` throws it.
   */
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

  /** The current count (ERR_MMAP_SYNC_CORRUPT when negative). */
  get value(): number {
    this.check();
    const v = Atomics.load(this.region.i32, SEM_VALUE / 4);
    if (v < 0) throw this.#negative(v);
    return v;
  }

  /**
   * Add `count` (default 1) and wake as many sleepers. A negative count is ERR_MMAP_SYNC_CORRUPT: it
   * adds nothing, and wakes every sleeper first, so that each finds out now instead of at its timeout.
   */
  post(count = 1): void {
    const n = validateInt32(count, 'count', 1);
    this.check();
    const { i32 } = this.region;
    // seq_cst compare-and-swap, checked against overflow even with concurrent posts
    for (;;) {
      const before = Atomics.load(i32, SEM_VALUE / 4);
      if (before < 0) {
        this.wakeSleepers(INT32_MAX);
        throw this.#negative(before);
      }
      if (before > INT32_MAX - n) throw invalidArgValue('count', count, `would overflow the semaphore (value ${before})`);
      if (Atomics.compareExchange(i32, SEM_VALUE / 4, before, before + n) === before) break;
    }
    this.wakeSleepers(n);
  }

  /** Take one if the count is positive; false otherwise (ERR_MMAP_SYNC_CORRUPT when negative). */
  tryWait(): boolean {
    this.check();
    return this.ready();
  }

  #negative(v: number): MmapkitError {
    return this.corrupt(
      `count ${v} (a count is never negative). Something wrote into it outside its protocol: create a new Semaphore once nobody uses this one`,
    );
  }

  /** @internal Take one if the count is positive; a negative count is corrupt. */
  protected ready(): boolean {
    const { i32 } = this.region;
    for (;;) {
      const v = Atomics.load(i32, SEM_VALUE / 4);
      if (v === 0) return false;
      if (v < 0) throw this.#negative(v);
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

  /** Whether the event is set (ERR_MMAP_SYNC_CORRUPT for a state other than 0 and 1). */
  get isSet(): boolean {
    this.check();
    return this.ready();
  }

  /** Set the event and wake every waiter, in every process. Stores a valid state whatever the word held. */
  set(): void {
    this.check();
    // seq_cst store, then the sleeper count is read (see FutexObject)
    Atomics.store(this.region.i32, EVENT_STATE / 4, 1);
    this.wakeSleepers(INT32_MAX);
  }

  /** Clear the event: later waits sleep until the next `set()`. Stores a valid state whatever the word held. */
  reset(): void {
    this.check();
    Atomics.store(this.region.i32, EVENT_STATE / 4, 0);
  }

  /** @internal Whether the event is set; a state other than 0 and 1 is corrupt. */
  protected ready(): boolean {
    const state = Atomics.load(this.region.i32, EVENT_STATE / 4);
    if (state === 1) return true;
    if (state === 0) return false;
    throw this.corrupt(
      `state ${state} (only 0, not set, and 1, set, are states). Something wrote into it outside its protocol; set() or reset() stores a valid state again`,
    );
  }
}

const EVENT_KIND: Kind = { name: 'Event', magic: EVENT_MAGIC, version: EVENT_VERSION, byteLength: Event.byteLength };
