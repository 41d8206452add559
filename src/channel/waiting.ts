/**
 * How a channel handle waits when its lane is full (sending) or every lane is empty (receiving):
 * one object per strategy, chosen once when the handle is made, so the wait paths call a method
 * instead of comparing strings. Also the deadlines of timed calls and the yield of async calls to the
 * event loop.
 *
 * The sleep protocol (docs/channel-layout.md, "Sleeping"): read the futex word, look once more, add
 * yourself to the sleeper count, look again, FUTEX_WAIT on the word with what you read. A waker
 * stores its change (seq_cst), then loads the sleeper count and bumps the word only when someone
 * sleeps: one of the two always sees the other.
 * @module
 */
import { setImmediate } from 'node:timers';
import { invalidArgValue, mmapkitError } from '../internal/errors.js';
import { deadlineOf, nsLeft, spinUntil } from '../internal/time.js';
import { validateMicros, validateOneOf, validateOptions, validateSignal, validateTimeoutMs } from '../internal/validators.js';
import { type AsyncWaitSettings, type Word, waitWord, waitWordAsync } from '../wait.js';

/** How an end of the channel waits when its lane is full (sending) or the channel is empty (receiving). */
export type WaitStrategy = 'spin' | 'block' | 'async' | 'hybrid';
export const STRATEGY_NAMES: readonly WaitStrategy[] = ['spin', 'block', 'async', 'hybrid'];

/** Longest single sleep: waits wake up this often to look for ends, dead parties and held lanes. */
export const MAX_SLEEP_NS = 100_000_000;

/** Options of the timed methods. */
export interface ChannelWaitOptions {
  /** Milliseconds to wait at most. Default: forever. */
  timeout?: number;
  /** Abort the wait (async methods only). */
  signal?: AbortSignal;
}

/** What a sleep waits on: the futex word, the sleeper count beside it, and a look at the condition. */
export interface SleepSite {
  readonly word: Word;
  /** i32 index of the word that says someone sleeps (wakers read it). */
  readonly sleepers: number;
  /**
   * `true`: the word is a count (consumers: several may sleep; each adds itself and takes itself
   * back). `false`: a flag (a lane's producer: set to 1 before sleeping; the consumer that wakes it
   * clears it by exchange, so one sleep costs one wake-up however many consumers free room meanwhile).
   */
  readonly counted: boolean;
  /** Whether the condition holds now (cheap: spin loops call it). */
  ready(): boolean;
}

/**
 * One way of waiting. `sleep` returns when `site.ready()` may hold, when the word changed, or after
 * at most MAX_SLEEP_NS; false only when the deadline (process.hrtime.bigint() ns, -1n: none) passed.
 */
export interface Strategy {
  readonly name: WaitStrategy;
  /** Microseconds spun before sleeping (0 for strategies that never spin). */
  readonly spin: number;
  sleep(site: SleepSite, seen: number, deadline: bigint): boolean;
  sleepAsync(site: SleepSite, seen: number, deadline: bigint, signal: AbortSignal | undefined): Promise<boolean>;
}


/** Spin on `ready()` until it holds or `ns` pass (capped by the deadline): whether it held. */
function spinFor(site: SleepSite, ns: number, deadline: bigint): boolean {
  return spinUntil(() => site.ready(), ns, deadline);
}

/** Sleep in the kernel (futex) after counting ourselves as a sleeper. */
function sleepKernel(site: SleepSite, seen: number, deadline: bigint): boolean {
  const ns = nsLeft(deadline);
  if (ns === 0) return false;
  const i32 = site.word.array;
  // seq_cst add, then the look below: a waker that stored its change before our count was visible
  // is seen by the look; one after it sees the count and bumps the word (FUTEX_WAIT then returns).
  if (site.counted) Atomics.add(i32, site.sleepers, 1);
  else Atomics.store(i32, site.sleepers, 1);
  try {
    if (site.ready()) return true;
    waitWord(site.word, seen, ns < 0 || ns > MAX_SLEEP_NS ? MAX_SLEEP_NS : ns);
  } finally {
    if (site.counted) Atomics.sub(i32, site.sleepers, 1);
  }
  return nsLeft(deadline) !== 0;
}

async function sleepKernelAsync(site: SleepSite, seen: number, deadline: bigint, signal: AbortSignal | undefined, spinNs: number): Promise<boolean> {
  const ns = nsLeft(deadline);
  if (ns === 0) return false;
  const i32 = site.word.array;
  if (site.counted) Atomics.add(i32, site.sleepers, 1); // as in sleepKernel
  else Atomics.store(i32, site.sleepers, 1);
  try {
    if (site.ready()) return true;
    const opts: AsyncWaitSettings = { ref: true, spinNs, threadSpinNs: 0 };
    if (signal !== undefined) opts.signal = signal;
    await waitWordAsync(site.word, seen, ns < 0 || ns > MAX_SLEEP_NS ? MAX_SLEEP_NS : ns, opts);
  } finally {
    if (site.counted && !site.word.mapping.closed) Atomics.sub(i32, site.sleepers, 1);
  }
  return nsLeft(deadline) !== 0;
}

/** `'block'` and `'async'`: sleep in the kernel at once. */
class Block implements Strategy {
  readonly spin = 0;
  constructor(readonly name: 'block' | 'async') {}
  sleep(site: SleepSite, seen: number, deadline: bigint): boolean {
    return sleepKernel(site, seen, deadline);
  }
  sleepAsync(site: SleepSite, seen: number, deadline: bigint, signal: AbortSignal | undefined): Promise<boolean> {
    return sleepKernelAsync(site, seen, deadline, signal, 0);
  }
}

/**
 * `'spin'`: the blocking methods re-read shared memory without ever sleeping (a busy core, the lowest
 * latency); the async methods spin `spin` µs on the event loop's thread, then sleep in the kernel.
 */
class Spin implements Strategy {
  readonly name = 'spin';
  readonly #ns: number;
  constructor(readonly spin: number) {
    this.#ns = Math.round(spin * 1000);
  }
  sleep(site: SleepSite, _seen: number, deadline: bigint): boolean {
    if (spinFor(site, MAX_SLEEP_NS, deadline)) return true;
    return nsLeft(deadline) !== 0;
  }
  sleepAsync(site: SleepSite, seen: number, deadline: bigint, signal: AbortSignal | undefined): Promise<boolean> {
    return sleepKernelAsync(site, seen, deadline, signal, this.#ns);
  }
}

/** `'hybrid'`: spin `spin` µs, then sleep in the kernel (the async methods spin on the event loop's thread). */
class Hybrid implements Strategy {
  readonly name = 'hybrid';
  readonly #ns: number;
  constructor(readonly spin: number) {
    this.#ns = Math.round(spin * 1000);
  }
  sleep(site: SleepSite, seen: number, deadline: bigint): boolean {
    if (spinFor(site, this.#ns, deadline)) return true;
    return sleepKernel(site, seen, deadline);
  }
  sleepAsync(site: SleepSite, seen: number, deadline: bigint, signal: AbortSignal | undefined): Promise<boolean> {
    return sleepKernelAsync(site, seen, deadline, signal, this.#ns);
  }
}

const DEFAULT_SPIN: Readonly<Record<'spin' | 'hybrid', number>> = { spin: 200, hybrid: 50 };

/**
 * The strategy of `options.wait` and `options.spin` (validated). `spin` is refused for a strategy
 * that never spins (`'block'`, `'async'`) instead of being ignored.
 */
export function parseStrategy(o: Partial<Record<string, unknown>>): Strategy {
  const name = o['wait'] === undefined ? 'block' : validateOneOf(o['wait'], 'options.wait', STRATEGY_NAMES);
  const spinOption = o['spin'];
  if (name === 'block' || name === 'async') {
    if (spinOption !== undefined) throw invalidArgValue('options.spin', spinOption, `has no effect with wait: '${name}' (it never spins); use wait: 'hybrid' or 'spin'`);
    return new Block(name);
  }
  const spin = validateMicros(spinOption, 'options.spin', DEFAULT_SPIN[name]);
  return name === 'spin' ? new Spin(spin) : new Hybrid(spin);
}

// ---------------------------------------------------------------- timeouts and deadlines

/**
 * The timeout of a call in milliseconds (Infinity: none), validated. Only a call that has to wait
 * turns it into a deadline ({@link deadlineOf}): reading the clock on every message would cost more
 * than the message.
 */
export function parseTimeout(options: ChannelWaitOptions | number | undefined): number {
  if (options === undefined) return Infinity; // the common case, on every message
  if (typeof options === 'number') return validateTimeoutMs(options, 'options.timeout');
  const o = validateOptions(options, 'options', ['timeout', 'signal'] as const);
  validateSignal(o.signal, 'options.signal');
  return validateTimeoutMs(o.timeout, 'options.timeout');
}


/** The AbortSignal of an async call's options (validated by {@link parseTimeout}). */
export function signalOf(options: ChannelWaitOptions | number | undefined): AbortSignal | undefined {
  if (typeof options !== 'object' || options === null) return undefined;
  // Read again: a getter may answer differently the second time. Never use what was not validated.
  return validateSignal((options as { signal?: unknown }).signal, 'options.signal');
}

export { deadlineOf };

export function timedOut(what: string, timeout: number, code: 'ERR_MMAP_CHANNEL_TIMEOUT' | 'ERR_MMAP_TOPIC_TIMEOUT' = 'ERR_MMAP_CHANNEL_TIMEOUT'): Error {
  return mmapkitError(code, timeout, what);
}

// ---------------------------------------------------------------- yielding to the event loop

/**
 * The async methods complete without waiting whenever there is room (or a message), and a promise
 * that settles at once resumes its caller in a microtask: a loop of them would never give the event
 * loop a turn (timers, I/O, other requests starve). So every async completion counts here, for the
 * whole thread (one event loop, however many handles), and after YIELD_EVERY messages or YIELD_AFTER_MS
 * milliseconds since the last yield, the call settles through `setImmediate` instead: timers and I/O
 * run, then the caller goes on. The count is one add and one compare per call; the clock is read only
 * every CLOCK_EVERY calls. Node's own setImmediate (node:timers), not the global: fake timers in a
 * user's tests replace the global, and a yield that waits for a faked immediate would never end.
 */
const YIELD_EVERY = 256;
const YIELD_AFTER_MS = 4;
const CLOCK_EVERY = 16;
let sinceYield = 0;
let untilClock = CLOCK_EVERY;
let yieldedAt = performance.now();
/** The yield under way: every call that completes meanwhile settles after it, in order. */
let pendingYield: Promise<void> | undefined;

/** Count `messages` done by an async call; true when the call must yield before it settles. */
export function yieldDue(messages: number): boolean {
  if (pendingYield !== undefined) return true; // keep the order of calls that complete meanwhile
  sinceYield += messages;
  if (sinceYield >= YIELD_EVERY) return true;
  if (--untilClock > 0) return false;
  untilClock = CLOCK_EVERY;
  return performance.now() - yieldedAt >= YIELD_AFTER_MS;
}

/** Let the event loop run (timers, I/O), once for every call that is due meanwhile. */
export function yieldToLoop(): Promise<void> {
  return (pendingYield ??= new Promise<void>((resolve) => {
    setImmediate(() => {
      pendingYield = undefined;
      sinceYield = 0;
      untilClock = CLOCK_EVERY;
      yieldedAt = performance.now();
      resolve();
    });
  }));
}
