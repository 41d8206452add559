/**
 * Error construction. System errors are shaped exactly like Node's `fs` errors; argument errors use
 * Node's own codes; library errors have stable `ERR_MMAP_*` codes listed in docs/errors.md.
 * @module
 */
import { getSystemErrorMap, inspect } from 'node:util';

/** An error raised by a system call, shaped like the errors of `node:fs`. */
export interface SystemError extends Error {
  /** Negative errno, as in `fs` errors (for example -13 for EACCES). */
  errno: number;
  /** The errno name, for example `'EACCES'`. */
  code: string;
  /** The system call that failed, for example `'mmap'`. */
  syscall: string;
  /** The path involved, when the call had one. */
  path?: string;
}

/** What a call found closed, for {@link closedError}. */
export type ClosedThing = 'Mapping' | 'SharedMemory' | 'Channel' | 'Topic' | 'Subscription' | 'memory';

const CLOSED_STATE: Readonly<Record<ClosedThing, string>> = {
  Mapping: 'the Mapping has been unmapped',
  SharedMemory: 'the SharedMemory has been closed',
  Channel: 'the Channel handle has been closed',
  Topic: 'the Topic handle has been closed',
  Subscription: 'the Subscription has been closed',
  memory: 'its memory has been unmapped',
};

/** A code whose message is written at its throw site (it says what was found, in words of its own). */
const text = (message: string): string => message;

/** The timeout of a channel's or topic's wait: `Timed out after MS ms WAITING-FOR`. */
const timedOutAfter = (ms: number, waitingFor: string): string => `Timed out after ${ms} ms ${waitingFor}`;

/** The corruption a channel or topic found in its memory: `KIND memory is corrupt: WHAT`. */
const corruptMemory =
  (kind: 'Channel' | 'Topic') =>
  (what: string): string =>
    `${kind} memory is corrupt: ${what}`;

/**
 * Every code an mmapkit error can carry besides system error codes, with the template of its message
 * (Node's `E()` in lib/internal/errors.js): the codes whose message has one shape everywhere take its
 * parts; the others take the message. docs/errors.md documents each code (test/14 checks that the two
 * agree).
 */
const REGISTRY = {
  /** Cannot CALL: the THING has been closed (or unmapped); see {@link closedError}. */
  ERR_MMAP_CLOSED: (call: string, thing: ClosedThing, more = ''): string => `Cannot ${call}: ${CLOSED_STATE[thing]}${more}`,
  ERR_MMAP_EMPTY_FILE: text,
  ERR_MMAP_FAULTED: text,
  ERR_MMAP_NOT_ACCESSIBLE: text,
  ERR_MMAP_VIEW_TOO_LARGE: text,
  ERR_MMAP_EXTERNAL_BUFFERS_NOT_ALLOWED: text,
  ERR_MMAP_BINDING_NOT_FOUND: text,
  ERR_MMAP_BINDING_LOAD_FAILED: text,
  ERR_MMAP_UNSUPPORTED_PLATFORM: text,
  ERR_MMAP_UNSUPPORTED_RUNTIME: text,
  ERR_MMAP_NOT_SHARED: text,
  ERR_MMAP_BAD_HEADER: text,
  ERR_MMAP_LOCK_TIMEOUT: (ms: number | undefined): string => `Timed out after ${ms} ms waiting for the lock`,
  ERR_MMAP_LOCK_NOT_OWNER: text,
  ERR_MMAP_LOCK_NOT_RECOVERABLE: text,
  ERR_MMAP_LOCK_DEADLOCK: text,
  /**
   * A Mutex's FIELD (its lock word, or for the pthread kind glibc's type field) holds STATE, which no
   * locker following the protocol writes.
   */
  ERR_MMAP_LOCK_CORRUPT: (state: string, field = 'lock word'): string => `The Mutex's ${field} is corrupt: ${state}`,
  /** The futex word of a Semaphore or Event holds a value its protocol never writes (FOUND says which). */
  ERR_MMAP_SYNC_CORRUPT: (what: 'Semaphore' | 'Event', found: string): string => `The memory of this ${what} holds a value it can never hold: ${found}`,
  ERR_MMAP_BUSY: text,
  ERR_MMAP_NOT_OWNER: text,
  ERR_MMAP_UNSAFE_PERMISSIONS: text,
  ERR_MMAP_CHANNEL_CORRUPT: corruptMemory('Channel'),
  ERR_MMAP_CHANNEL_TIMEOUT: timedOutAfter,
  ERR_MMAP_CHANNEL_FULL: text,
  ERR_MMAP_TOO_MANY_MAPPINGS: text,
  ERR_MMAP_NO_HUGE_PAGES: text,
  ERR_MMAP_CHANNEL_IN_USE: text,
  ERR_MMAP_TOPIC_CORRUPT: corruptMemory('Topic'),
  ERR_MMAP_TOPIC_TIMEOUT: timedOutAfter,
  ERR_MMAP_TOPIC_FULL: text,
  ERR_MMAP_TOPIC_IN_USE: text,
  ERR_MMAP_TOPIC_LAPPED: text,
} as const;

/** Every code an mmapkit error can carry besides system error codes. See docs/errors.md. */
export type MmapkitErrorCode = keyof typeof REGISTRY;

/** An error raised by mmapkit itself (not by the kernel, not an argument error). */
export class MmapkitError extends Error {
  /** Stable code; the message may change between versions, the code does not. */
  readonly code: MmapkitErrorCode;
  /**
   * Set on the error of a batch send that stopped partway (`sendMany`, `publishMany` and their async
   * forms: a timeout, a handle closed during a yield, corrupt memory): how many of its messages went,
   * the first `sent` of the array. Send `messages.slice(err.sent)` to go on.
   */
  sent?: number;
  constructor(code: MmapkitErrorCode, message: string) {
    super(message);
    this.code = code;
  }
  override get name(): string {
    return 'MmapkitError';
  }
  override toString(): string {
    return `${this.name} [${this.code}]: ${this.message}`;
  }
}

let errorMap: Map<number, [string, string]> | undefined;

/**
 * Build a system error from a negative errno, with Node's message format
 * `CODE: description, syscall 'path'`.
 */
export function systemError(errno: number, syscall: string, path?: string): SystemError {
  const negative = errno > 0 ? -errno : errno;
  errorMap ??= getSystemErrorMap();
  const [code, description] = errorMap.get(negative) ?? [`Unknown system error ${negative}`, 'unknown error'];
  const suffix = path === undefined ? '' : ` '${path}'`;
  const err = new Error(`${code}: ${description}, ${syscall}${suffix}`) as SystemError;
  err.errno = negative;
  err.code = code;
  err.syscall = syscall;
  if (path !== undefined) err.path = path;
  Error.captureStackTrace(err, systemError);
  return err;
}

/** A Node-style argument error: a built-in error class with a `code` property. */
export type CodedError<E extends Error = Error> = E & { code: string };

function coded<E extends Error>(err: E, code: string): CodedError<E> {
  Object.defineProperty(err, 'code', { value: code, enumerable: true, writable: true, configurable: true });
  // Node prints its own errors as `TypeError [ERR_X]: message`; do the same.
  Object.defineProperty(err, 'toString', {
    value(this: E) {
      return `${this.name} [${code}]: ${this.message}`;
    },
    enumerable: false,
    configurable: true,
  });
  if (err.stack !== undefined) err.stack = err.stack.replace(/^(\w*Error)/, `$1 [${code}]`);
  return err as CodedError<E>;
}

/** Describe a received value the way Node's argument errors do. */
export function describeReceived(value: unknown): string {
  if (value === null || value === undefined) return ` Received ${String(value)}`;
  if (typeof value === 'function') return ` Received function ${value.name || '<anonymous>'}`;
  if (typeof value === 'object') {
    const ctorName = (value as { constructor?: { name?: string } }).constructor?.name;
    return ctorName ? ` Received an instance of ${ctorName}` : ` Received ${inspect(value, { depth: -1 })}`;
  }
  let shown = inspect(value, { colors: false });
  if (shown.length > 28) shown = `${shown.slice(0, 25)}...`;
  return ` Received type ${typeof value} (${shown})`;
}

function label(name: string): string {
  return name.includes('.') ? `The "${name}" property` : `The "${name}" argument`;
}

/** `ERR_INVALID_ARG_TYPE` (TypeError). */
export function invalidArgType(name: string, expected: string, value: unknown): CodedError<TypeError> {
  return coded(new TypeError(`${label(name)} must be ${expected}.${describeReceived(value)}`), 'ERR_INVALID_ARG_TYPE');
}

/** `ERR_OUT_OF_RANGE` (RangeError). */
export function outOfRange(name: string, range: string, value: unknown): CodedError<RangeError> {
  const shown = typeof value === 'bigint' ? `${value}n` : inspect(value);
  return coded(
    new RangeError(`The value of "${name}" is out of range. It must be ${range}. Received ${shown}`),
    'ERR_OUT_OF_RANGE',
  );
}

/** `ERR_INVALID_ARG_VALUE` (TypeError), with a reason. */
export function invalidArgValue(name: string, value: unknown, reason: string): CodedError<TypeError> {
  const kind = name.includes('.') ? 'property' : 'argument';
  return coded(
    new TypeError(`The ${kind} '${name}' ${reason}. Received ${inspect(value, { depth: 0 })}`),
    'ERR_INVALID_ARG_VALUE',
  );
}

/** `ERR_INVALID_STATE` (Error): the call does not apply to the object as it is. */
export function invalidState(message: string): CodedError<Error> {
  return coded(new Error(`Invalid state: ${message}`), 'ERR_INVALID_STATE');
}

/** Library error with a stable code; its message from the code's template and `args`. */
export function mmapkitError<C extends MmapkitErrorCode>(code: C, ...args: Parameters<(typeof REGISTRY)[C]>): MmapkitError {
  const template = REGISTRY[code] as (...a: Parameters<(typeof REGISTRY)[C]>) => string;
  return new MmapkitError(code, template(...args));
}

export function closedError(call: string, thing: ClosedThing, more = ''): MmapkitError {
  return mmapkitError('ERR_MMAP_CLOSED', call, thing, more);
}

/**
 * The error of a batch send that stopped partway, told how many of its messages went: an mmapkit error
 * carries it in its typed {@link MmapkitError.sent} field. The other errors that can stop a batch are an
 * AbortSignal's reason (an AbortError, or whatever object the caller aborted with) and a system error;
 * docs/api.md promises `sent` on those too, so an object gets the property. Channel's and Topic's batch
 * sends (`sendMany`, `publishMany` and their async forms) throw every error through this.
 */
export function batchStopped(err: unknown, sent: number): unknown {
  if (err instanceof MmapkitError) err.sent = sent;
  else if (err !== null && typeof err === 'object') (err as { sent?: number }).sent = sent;
  return err;
}
