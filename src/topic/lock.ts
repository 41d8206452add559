/**
 * The publish lock: one publisher writes the ring at a time, so every subscriber sees one order
 * (docs/topic-layout.md, "Publishing"). LOCK holds 0 or the holder's pid; it is held for the copy of
 * a message (or a batch, or between reserve() and commit()), never while waiting for room. A holder
 * whose process died is replaced by the first waiter that sees it dead, which repairs what the dead
 * holder may have left half done (see `repair` in publisher.ts).
 * @module
 */
import { invalidState } from '../internal/errors.js';
import { pidAlive } from '../internal/liveness.js';
import { type Deadline, nsLeft } from '../internal/time.js';
import { type Word, notifyWord, waitWord, waitWordAsync } from '../wait.js';
import { TOPIC } from './layout.js';

const PID = process.pid;
const LOCK = TOPIC.LOCK >>> 2;
const WAITERS = TOPIC.LOCK_WAITERS >>> 2;
/** Longest sleep on the lock before looking whether its holder is alive. */
const SLEEP_NS = 10_000_000;
/** Looks before a waiter asks whether the holder lives (about 24 µs in /proc) or sleeps. */
const SPINS = 2000;

/**
 * Addresses of the lock words this thread holds across calls (a reserve() not yet committed): taking
 * one of them again would never return. A publish holds the lock only inside one call, which runs no
 * user code meanwhile: it is not listed (a Set operation per message would cost more than the lock).
 */
const heldHere = new Set<number>(); // INSTANCE words

/** The lock stays held after this call returns (reserve()): list it. */
export function holdAcrossCalls(site: LockSite, held: boolean): void {
  if (held) heldHere.add(site.instance);
  else heldHere.delete(site.instance);
}

/** What a waiter needs: the word, the topic's INSTANCE, and what to do after taking over from a dead holder. */
export interface LockSite {
  readonly lock: Word;
  /** Tells this topic from others, whatever address a handle mapped it at. */
  readonly instance: number;
  repair(): void;
}

function tryTake(i32: Int32Array): number {
  return Atomics.compareExchange(i32, LOCK, 0, PID);
}

/** Take over from a holder whose process is gone; whether we did. */
function takeOver(site: LockSite, i32: Int32Array, holder: number): boolean {
  if (holder === PID || pidAlive(holder)) return false;
  if (Atomics.compareExchange(i32, LOCK, holder, PID) !== holder) return false;
  site.repair();
  return true;
}

function checkNotHeld(site: LockSite, i32: Int32Array): void {
  if (heldHere.has(site.instance) && Atomics.load(i32, LOCK) === PID) {
    throw invalidState("this thread already holds the topic's publish lock (a reserve() not yet committed or cancelled): commit it first");
  }
}

/**
 * One look at a lock someone holds: `true` once we took it (free now, or its holder is dead),
 * `false` when the deadline passed, or the holder's value to sleep on and for how long (0: look again).
 */
function step(site: LockSite, i32: Int32Array, deadline: Deadline): boolean | { seen: number; ns: number } {
  const seen = Atomics.load(i32, LOCK);
  if (seen === 0) return tryTake(i32) === 0 ? true : { seen, ns: 0 };
  if (takeOver(site, i32, seen)) return true;
  const left = nsLeft(deadline);
  if (left === 0) return false;
  return { seen, ns: left < 0 || left > SLEEP_NS ? SLEEP_NS : left };
}

/** Take the lock (sync). false when the deadline ({@link NEVER}: none) passed first. */
export function acquire(site: LockSite, deadline: Deadline): boolean {
  // The lock free: one compare-and-swap. The waits out of line: the publish path is at V8's inlining
  // budget (a function inlined there leaves less room for the others).
  return tryTake(site.lock.array) === 0 || acquireHeld(site, deadline);
}

/** acquire() of a lock someone holds. */
function acquireHeld(site: LockSite, deadline: Deadline): boolean {
  const i32 = site.lock.array;
  checkNotHeld(site, i32);
  for (let i = 0; i < SPINS; i++) if (Atomics.load(i32, LOCK) === 0 && tryTake(i32) === 0) return true;
  for (;;) {
    const s = step(site, i32, deadline);
    if (typeof s === 'boolean') return s;
    if (s.ns === 0) continue;
    Atomics.add(i32, WAITERS, 1); // then the futex wait looks at LOCK again (it expects s.seen)
    try {
      waitWord(site.lock, s.seen, s.ns);
    } finally {
      Atomics.sub(i32, WAITERS, 1);
    }
  }
}

/** Take the lock without blocking the event loop (a reserve() of this thread can be committed meanwhile). */
export async function acquireAsync(site: LockSite, deadline: Deadline, signal: AbortSignal | undefined): Promise<boolean> {
  const i32 = site.lock.array;
  // No check for a lock this thread holds: its holder can commit while this call awaits.
  if (tryTake(i32) === 0) return true;
  for (;;) {
    const s = step(site, i32, deadline);
    if (typeof s === 'boolean') return s;
    if (s.ns === 0) continue;
    Atomics.add(i32, WAITERS, 1);
    try {
      await waitWordAsync(site.lock, s.seen, s.ns, { ref: true, spinNs: 0, threadSpinNs: 0, ...(signal === undefined ? {} : { signal }) });
    } finally {
      if (!site.lock.mapping.closed) Atomics.sub(i32, WAITERS, 1);
    }
  }
}

/** Let go of the lock and wake one waiter, if any. */
export function release(site: LockSite): void {
  const i32 = site.lock.array;
  // seq_cst store: after every store of the publish; then the waiter count (a waiter adds itself,
  // then looks at LOCK again before sleeping). Only a live holder lets go: no one took it from us.
  Atomics.store(i32, LOCK, 0);
  if (Atomics.load(i32, WAITERS) > 0) notifyWord(site.lock, 1);
}
