/**
 * Deadlines: one type in one unit for every wait of mmapkit (futex waits, locks, semaphores, events,
 * channels, topics). A deadline is a `process.hrtime.bigint()` reading in nanoseconds, or
 * {@link NEVER}. Timeouts arrive in milliseconds (the public API) or nanoseconds (the addon's unit).
 * @module
 */

/** A point in `process.hrtime.bigint()` nanoseconds, or {@link NEVER}. */
export type Deadline = bigint;

/** No deadline: wait as long as it takes. */
export const NEVER: Deadline = -1n;

/**
 * The longest finite timeout, in milliseconds: 2^53 - 1 nanoseconds (about 104 days). Waits count
 * nanoseconds in a number (exact below 2^53) and hand them to the kernel as 64-bit nanoseconds; a
 * longer timeout cannot be expressed (`Number.MAX_VALUE` ms is Infinity ns, and `BigInt()` throws
 * on it; 2^53 ms overflows the kernel's), so it waits forever, as `Infinity` does.
 */
export const MAX_TIMEOUT_MS = Number.MAX_SAFE_INTEGER / 1e6;

/** The deadline of a wait of `ns` nanoseconds that starts now (a negative `ns`: {@link NEVER}). */
export function deadlineAfterNs(ns: number): Deadline {
  return ns < 0 ? NEVER : process.hrtime.bigint() + BigInt(ns);
}

/**
 * The deadline of a wait of `ms` milliseconds that starts now (validated: >= 0; Infinity, or more
 * nanoseconds than a number holds exactly: {@link NEVER}). Only a call that has to wait reads the
 * clock: reading it on every message would cost more than the message.
 */
export function deadlineOf(ms: number): Deadline {
  return ms === Infinity || ms > MAX_TIMEOUT_MS ? NEVER : process.hrtime.bigint() + BigInt(Math.round(ms * 1e6));
}

/** Nanoseconds left before `deadline`: 0 once it passed, -1 for {@link NEVER}. */
export function nsLeft(deadline: Deadline): number {
  if (deadline === NEVER) return -1;
  const ns = Number(deadline - process.hrtime.bigint());
  return ns > 0 ? ns : 0;
}

/** Whether `deadline` has passed ({@link NEVER} never does). */
export function passed(deadline: Deadline): boolean {
  return deadline !== NEVER && process.hrtime.bigint() > deadline;
}

/**
 * Spin on `ready()` until it holds or `ns` nanoseconds pass (or `deadline`, if sooner): whether it
 * held. The one spin loop of mmapkit's JavaScript (wait strategies, the hybrid `waitAsync`); several
 * looks per clock read, since reading the clock costs more than a look.
 */
export function spinUntil(ready: () => boolean, ns: number, deadline: Deadline = NEVER): boolean {
  let until = process.hrtime.bigint() + BigInt(Math.max(0, Math.round(ns)));
  if (deadline !== NEVER && deadline < until) until = deadline;
  do {
    for (let i = 0; i < 16; i++) if (ready()) return true;
  } while (process.hrtime.bigint() < until);
  return false;
}

/** A word nobody notifies: pauseSync() sleeps on it. */
const PAUSE = new Int32Array(new SharedArrayBuffer(4));

/**
 * Block this thread for `ms` milliseconds (Atomics.wait on a private word: no system call of mmapkit's
 * own, allowed on Node's main thread), for the few places that must wait without a futex to sleep on.
 */
export function pauseSync(ms: number): void {
  Atomics.wait(PAUSE, 0, 0, ms);
}
