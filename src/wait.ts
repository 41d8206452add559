/**
 * Waiting across processes: `wait` / `waitAsync` / `notify` on a 32-bit word in shared memory, with
 * futexes (Atomics.wait only works inside one process and refuses non-shared buffers). `wait` and
 * `notify` are the futex system call; `waitAsync` queues its wait in the kernel through io_uring
 * (IORING_OP_FUTEX_WAIT) where it can, and hands it to a waiter thread otherwise (see {@link Backend}).
 * @module
 */
import { native, type WaitAsyncContext } from './binding.js';
import { closedError, invalidArgType, invalidArgValue, mmapkitError, systemError } from './internal/errors.js';
import { kHold } from './internal/symbols.js';
import { spinUntil } from './internal/time.js';
import { type Mapping, detachedError, viewLocation } from './mapping.js';
import { validateBoolean, validateInt32, validateMicros, validateOptions, validateSignal, validateTimeoutMs } from './internal/validators.js';

const EAGAIN = -11;
const EINTR = -4;
const ETIMEDOUT = -110;
const ECANCELED = -125;
const INT32_MAX = 0x7fffffff;

/** Result of a wait, as `Atomics.wait` names it. `'ok'` may be spurious: re-check the value. */
export type WaitResult = 'ok' | 'not-equal' | 'timed-out';

/** Options of {@link waitAsync}. */
export interface WaitAsyncOptions {
  /** Abort the wait: the promise rejects with the signal's reason (an `AbortError`). */
  signal?: AbortSignal;
  /**
   * Whether the pending wait keeps the process alive, as a pending timer does. Default true; false is
   * like `timer.unref()`.
   */
  ref?: boolean;
  /**
   * Microseconds to spin on the calling thread, re-reading the word, before handing the wait to the
   * kernel (io_uring) or a waiter thread (a "hybrid" wait). A change seen while spinning settles the
   * promise without any hand-off, which is what makes a fast ping-pong fast; but the event loop is
   * blocked for up to that long. Default 0: never blocks.
   */
  spin?: number;
  /**
   * Microseconds the waiter thread spins on the word before it sleeps in the kernel: saves one thread
   * wake-up when the notify comes soon, at the cost of a busy core meanwhile. Above 0, the wait always
   * goes to a waiter thread, even where it would otherwise be queued with io_uring (the kernel does not
   * spin). Default 0.
   */
  threadSpin?: number;
}
const WAIT_ASYNC_OPTIONS = ['signal', 'ref', 'spin', 'threadSpin'] as const;

/** Parsed {@link WaitAsyncOptions}. */
export interface AsyncWaitSettings {
  signal?: AbortSignal;
  ref: boolean;
  /** Spin on the calling thread, ns. */
  spinNs: number;
  /** Spin on the waiter thread, ns. */
  threadSpinNs: number;
}

/** A checked 32-bit word in shared memory. */
export interface Word {
  mapping: Mapping;
  /** Address of the word (a number: user-space addresses are below 2^53, and no BigInt math). */
  addr: number;
  array: Int32Array;
  index: number;
}

/**
 * Check that `array[index]` lies in memory shared between processes (a `MAP_SHARED` mapping made by
 * mmapkit), 4-byte aligned in memory, and return where it is.
 */
export function checkWord(array: unknown, index: unknown, syscall: string): Word {
  if (!(array instanceof Int32Array)) throw invalidArgType('array', 'an instance of Int32Array', array);
  let where = checked.get(array);
  if (where === undefined || where.mapping.closed || array.length === 0) {
    where = locate(array, syscall);
    checked.set(array, where);
  }
  let i: number;
  if (typeof index === 'number' && (index | 0) === index && index >= 0 && index < array.length) {
    i = index; // the common case, without the validators' work
  } else {
    i = validateInt32(index, 'index', 0);
    if (i >= array.length) throw invalidArgValue('index', index, `is past the end of the array (length ${array.length})`);
  }
  return { mapping: where.mapping, addr: where.base + i * 4, array, index: i };
}

/** Arrays already checked by checkWord: their mapping and the address of element 0. */
const checked = new WeakMap<Int32Array, { mapping: Mapping; base: number }>();

function locate(array: Int32Array, syscall: string): { mapping: Mapping; base: number } {
  const where = viewLocation(array); // throws for a detached array (unmapped, or protect())
  if (where === undefined) {
    throw mmapkitError(
      'ERR_MMAP_NOT_SHARED',
      `${syscall} needs an Int32Array over memory shared between processes (a 'write' mapping or shared memory from mmapkit); ` +
        'this one is over ordinary memory. For memory shared between threads only, use Atomics.wait.',
    );
  }
  if (!where.mapping.shared) {
    throw mmapkitError(
      'ERR_MMAP_NOT_SHARED',
      `${syscall} needs memory shared between processes, but this mapping is private (MAP_PRIVATE: access 'read' or 'copy', or private anonymous memory).`,
    );
  }
  if (where.mapping.closed) throw closedError(syscall, 'Mapping');
  if (where.addr % 4n !== 0n) {
    throw invalidArgValue('array', array, 'must be 4-byte aligned in memory (the mapping starts at an unaligned file offset)');
  }
  return { mapping: where.mapping, base: Number(where.addr) };
}

function validateValue(value: unknown, name: string): number {
  if (typeof value === 'number' && (value | 0) === value) return value; // the common case
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value);
  if (!Number.isInteger(value) || value < -0x80000000 || value > 0xffffffff) {
    throw invalidArgValue(name, value, 'must be an integer that fits in 32 bits');
  }
  return value | 0;
}

/**
 * Milliseconds (undefined, Infinity, or too many to express: forever) to nanoseconds for the addon
 * (-1: forever). A finite result is at most 2^53 ns (validateTimeoutMs), which deadlines (BigInt) and
 * the addon's 64-bit nanoseconds take as they are.
 */
function validateTimeout(timeout: unknown, name = 'timeout'): number {
  const ms = validateTimeoutMs(timeout, name);
  return ms === Infinity ? -1 : Math.round(ms * 1e6);
}

/** @internal Blocking futex wait on a checked word, retrying on EINTR with the time left. */
export function waitWord(word: Word, expected: number, timeoutNs: number): WaitResult {
  // A value that already differs is 'not-equal' without a system call, as Atomics.wait does.
  if (Atomics.load(word.array, word.index) !== expected) return 'not-equal';
  // No system call for a zero timeout either: the kernel would round it up to its timer slack (~50 us).
  if (timeoutNs === 0) return 'timed-out';
  const start = timeoutNs < 0 ? 0 : performance.now();
  let left = timeoutNs;
  for (;;) {
    const rc = native.futexWait(word.addr, expected, left);
    if (rc === 0) return 'ok';
    if (rc === EAGAIN) return 'not-equal';
    if (rc === ETIMEDOUT) return 'timed-out';
    if (rc !== EINTR) throw systemError(rc, 'futex');
    if (timeoutNs >= 0) {
      left = timeoutNs - Math.round((performance.now() - start) * 1e6);
      if (left <= 0) return 'timed-out';
    }
  }
}

/**
 * Sleep until `array[index]` is notified by any process, unless it does not hold `expected`
 * (`'not-equal'`), or `timeout` milliseconds pass (`'timed-out'`). Blocks the event loop: use
 * {@link waitAsync} on a thread that serves I/O. The array must be over shared memory from mmapkit.
 */
export function wait(array: Int32Array, index: number, expected: number, timeout?: number): WaitResult {
  const word = checkWord(array, index, 'wait');
  return waitWord(word, validateValue(expected, 'expected'), validateTimeout(timeout));
}

/** Wake up to `count` (default: all) waiters of `array[index]`, in any process; returns how many woke. */
export function notify(array: Int32Array, index: number, count?: number): number {
  const word = checkWord(array, index, 'notify');
  let n = INT32_MAX;
  if (count !== undefined && count !== Infinity) n = validateInt32(count, 'count', 0);
  return notifyWord(word, n);
}

/** @internal FUTEX_WAKE on a checked word. */
export function notifyWord(word: Word, count: number): number {
  const rc = native.futexWake(word.addr, count);
  if (rc < 0) throw systemError(rc, 'futex');
  return rc;
}

// ---- async ----

interface Pending {
  resolve(result: WaitResult): void;
  reject(err: unknown): void;
  release(): void;
  ref: boolean;
  /** Why the wait was cancelled (abort reason, or ERR_MMAP_CLOSED on unmap). */
  reason?: unknown;
  cleanup?: () => void;
}

/**
 * Where async waits sleep. `uring`: queued in the kernel with io_uring (native/uring.c), where Linux
 * has IORING_OP_FUTEX_WAIT (6.7+), outside Bun and Deno: one thread wake-up per wait instead of two.
 * `threads`: waiter threads (native/futex.c), everywhere; used where `uring` is missing or turned off
 * (MMAPKIT_ASYNC_WAIT=threads), for a wait with `threadSpin`, and for a wait the ring refuses. Each
 * keeps its own pending waits (ids are per backend) and refs.
 */
interface Backend {
  readonly pending: Map<number, Pending>;
  refs: number;
  /** Queue a wait: its id (> 0), or -errno (blamed on `syscall`). */
  start(addr: number, expected: number, timeoutNs: number, threadSpinNs: number): number;
  readonly syscall: string;
  cancel(id: number): void;
  ref(keepAlive: boolean): void;
}

function makeBackend(init: (dispatch: (id: number, result: number) => void) => Omit<Backend, 'pending' | 'refs'> | null): Backend | null {
  const pending = new Map<number, Pending>();
  let backend: Backend | null = null;
  const ops = init((id, result) => settle(backend!, id, result));
  if (ops === null) return null;
  backend = { pending, refs: 0, ...ops };
  return backend;
}

let threads: Backend | undefined;
let uring: Backend | null | undefined;

function threadBackend(): Backend {
  threads ??= makeBackend((dispatch) => {
    const ctx: WaitAsyncContext = native.waitAsyncInit(dispatch);
    return {
      start: (addr, expected, timeoutNs, threadSpinNs) => native.waitAsync(ctx, addr, expected, timeoutNs, threadSpinNs),
      syscall: 'pthread_create',
      cancel: (id) => void native.waitAsyncCancel(ctx, id),
      ref: (keep) => native.waitAsyncRef(ctx, keep),
    };
  })!;
  return threads;
}

/**
 * The io_uring backend, or null where the kernel lacks it, under Bun or Deno, or with
 * MMAPKIT_ASYNC_WAIT=threads.
 */
function uringBackend(): Backend | null {
  if (uring === undefined) {
    // The ring's eventfd is polled through libuv's uv_poll, which only Node has: Bun 1.4 aborts the
    // process in uv_poll_init ("unsupported uv function") and Deno 2.9 crashes (SIGSEGV). Other
    // runtimes use waiter threads, which need only Node-API.
    const notNode = process.versions['bun'] !== undefined || process.versions['deno'] !== undefined;
    const threadsOnly = process.env['MMAPKIT_ASYNC_WAIT'] === 'threads' || notNode;
    uring = threadsOnly ? null : makeBackend((dispatch) => {
      const ctx = native.uringInit(dispatch);
      if (ctx === null) return null;
      let next = 1;
      return {
        start: (addr, expected, timeoutNs) => {
          const id = next++;
          const rc = native.uringWait(ctx, addr, expected, timeoutNs, id);
          return rc < 0 ? rc : id;
        },
        syscall: 'io_uring_enter',
        cancel: (id) => void native.uringCancel(ctx, id),
        ref: (keep) => native.uringRef(ctx, keep),
      };
    });
  }
  return uring;
}

function setRef(backend: Backend, delta: number): void {
  const before = backend.refs;
  backend.refs += delta;
  if (before === 0 && backend.refs > 0) backend.ref(true);
  else if (before > 0 && backend.refs === 0) backend.ref(false);
}

/** Receives every async wait's result from the native side. */
function settle(backend: Backend, id: number, result: number): void {
  const p = backend.pending.get(id);
  if (p === undefined) return;
  backend.pending.delete(id);
  p.cleanup?.();
  p.release();
  if (p.ref) setRef(backend, -1);
  if (result === 0) p.resolve('ok');
  else if (result === ETIMEDOUT) p.resolve('timed-out');
  // Cancelled: by us (we kept the reason), or by the kernel when an io_uring wait's linked timeout fired.
  else if (result === ECANCELED) p.reason === undefined ? p.resolve('timed-out') : p.reject(p.reason);
  else p.reject(systemError(result, 'futex'));
}

/** Why a checked word can no longer be read: its mapping was unmapped, resized, or lost access (protect()). */
function goneError(word: Word, syscall: string): Error {
  if (word.mapping.closed) return closedError(syscall, 'Mapping');
  return detachedError(word.array.buffer, `Cannot ${syscall} on this word, whose view was detached`);
}

function abortError(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}

/**
 * @internal Async futex wait on a checked word: queued with io_uring where it can be, on a waiter
 * thread otherwise (see {@link Backend}).
 */
export function waitWordAsync(word: Word, expected: number, timeoutNs: number, options: AsyncWaitSettings): Promise<WaitResult> {
  const { signal } = options;
  if (signal?.aborted) return Promise.reject(abortError(signal));
  // The word's view is detached when its memory was unmapped or made unreadable since it was checked.
  if (word.array.length === 0) return Promise.reject(goneError(word, 'waitAsync'));
  if (Atomics.load(word.array, word.index) !== expected) return Promise.resolve('not-equal');
  if (timeoutNs === 0) return Promise.resolve('timed-out');
  if (options.spinNs > 0) {
    // Hybrid: re-read the word for a short while on this thread before paying for a hand-off.
    // seq_cst loads: what the notifier wrote before changing the word is visible after
    const changed = (): boolean => Atomics.load(word.array, word.index) !== expected;
    if (spinUntil(changed, Math.min(options.spinNs, timeoutNs < 0 ? Infinity : timeoutNs))) return Promise.resolve('ok');
    if (timeoutNs >= 0) {
      timeoutNs -= options.spinNs;
      if (timeoutNs <= 0) return Promise.resolve('timed-out');
    }
  }
  // A waiter thread can spin; the kernel cannot: threadSpin asks for a thread.
  let backend = (options.threadSpinNs === 0 ? uringBackend() : null) ?? threadBackend();
  return new Promise<WaitResult>((resolve, reject) => {
    let id = 0;
    const entry: Pending = { resolve, reject, release: () => {}, ref: options.ref };
    const cancel = (reason: unknown): void => {
      if (entry.reason === undefined) entry.reason = reason;
      backend.cancel(id);
    };
    // A waiter thread reads this memory, and the kernel holds a queued io_uring wait on its address:
    // unmap() defers the munmap until the wait has settled, and cancels it.
    entry.release = word.mapping[kHold](() =>
      cancel(closedError('go on waiting (waitAsync)', 'Mapping')),
    );
    id = backend.start(word.addr, expected, timeoutNs, options.threadSpinNs);
    if (id < 0 && backend !== threads) {
      // The ring refused the wait (a full queue, no memory): a waiter thread can still take it.
      backend = threadBackend();
      id = backend.start(word.addr, expected, timeoutNs, options.threadSpinNs);
    }
    if (id < 0) {
      entry.release();
      reject(systemError(id, backend.syscall));
      return;
    }
    if (signal !== undefined) {
      const onAbort = (): void => cancel(abortError(signal));
      signal.addEventListener('abort', onAbort, { once: true });
      entry.cleanup = () => signal.removeEventListener('abort', onAbort);
    }
    backend.pending.set(id, entry);
    if (entry.ref) setRef(backend, 1);
  });
}

/**
 * Like {@link wait}, without blocking: the wait is queued in the kernel with io_uring where Linux has
 * IORING_OP_FUTEX_WAIT (6.7+), or else a dedicated waiter thread sleeps (never the libuv threadpool,
 * so pending waits cannot starve `fs`); either way the promise settles on the event loop.
 */
export function waitAsync(
  array: Int32Array,
  index: number,
  expected: number,
  timeout?: number,
  options?: WaitAsyncOptions,
): Promise<WaitResult> {
  try {
    // Every argument first (an option getter may unmap the memory), then where the word is.
    const value = validateValue(expected, 'expected');
    const timeoutNs = validateTimeout(timeout);
    const settings = parseWaitAsyncOptions(options);
    return waitWordAsync(checkWord(array, index, 'waitAsync'), value, timeoutNs, settings);
  } catch (err) {
    return Promise.reject(err);
  }
}

/** @internal Validate {@link WaitAsyncOptions}. */
export function parseWaitAsyncOptions(options: unknown): AsyncWaitSettings {
  const o = validateOptions(options, 'options', WAIT_ASYNC_OPTIONS);
  const signal = validateSignal(o.signal, 'options.signal');
  const ref = o.ref === undefined ? true : validateBoolean(o.ref, 'options.ref');
  const spinNs = Math.round(validateMicros(o.spin, 'options.spin') * 1000);
  const threadSpinNs = Math.round(validateMicros(o.threadSpin, 'options.threadSpin') * 1000);
  return signal === undefined ? { ref, spinNs, threadSpinNs } : { signal, ref, spinNs, threadSpinNs };
}


/** @internal Timeout validation shared with the synchronization objects. */
export { validateTimeout };
