/**
 * Argument validation in the manner of Node core's lib/internal/validators.js: wrong type is
 * ERR_INVALID_ARG_TYPE, out of range ERR_OUT_OF_RANGE, a bad value ERR_INVALID_ARG_VALUE.
 * @module
 */
import { invalidArgType, invalidArgValue, outOfRange } from './errors.js';
import { MAX_TIMEOUT_MS } from './time.js';

/** Largest value of a signed 64-bit integer: the bound of every size and offset. */
export const INT64_MAX = (1n << 63n) - 1n;

/** A non-negative 64-bit integer given as a number or a bigint. */
export type Int64Like = number | bigint;

/** Validate an integer given as a safe-integer number or a bigint, within [min, max]; return a bigint. */
export function validateInt64(value: unknown, name: string, min = 0n, max = INT64_MAX): bigint {
  let v: bigint;
  if (typeof value === 'bigint') {
    v = value;
  } else if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw outOfRange(name, 'an integer', value);
    if (!Number.isSafeInteger(value)) throw outOfRange(name, 'a safe integer (use a bigint for larger values)', value);
    v = BigInt(value);
  } else {
    throw invalidArgType(name, 'of type number or bigint', value);
  }
  if (v < min || v > max) throw outOfRange(name, `>= ${min} && <= ${max}`, typeof value === 'bigint' ? value : Number(value));
  return v;
}

/** Validate an int32 number within [min, max]. */
export function validateInt32(value: unknown, name: string, min = -2147483648, max = 2147483647): number {
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value);
  if (!Number.isInteger(value)) throw outOfRange(name, 'an integer', value);
  if (value < min || value > max) throw outOfRange(name, `>= ${min} && <= ${max}`, value);
  return value;
}

/** Validate a boolean. */
export function validateBoolean(value: unknown, name: string): boolean {
  if (typeof value !== 'boolean') throw invalidArgType(name, 'of type boolean', value);
  return value;
}

/** Validate that value is one of the allowed strings. */
export function validateOneOf<T extends string>(value: unknown, name: string, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    const list = allowed.map((a) => `'${a}'`).join(', ');
    throw invalidArgValue(name, value, `must be one of: ${list}`);
  }
  return value as T;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

/**
 * Validate an options object: undefined gives `{}`; null, a primitive or an array is a type error; an
 * unknown key is ERR_INVALID_ARG_VALUE with a suggestion of the closest known key. Returns a snapshot
 * of the known options (each read once), never the caller's object.
 */
export function validateOptions<K extends string>(
  value: unknown,
  name: string,
  known: readonly K[],
): Partial<Record<K, unknown>> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw invalidArgType(name, 'of type object', value);
  }
  for (const key of Object.keys(value)) {
    if (!(known as readonly string[]).includes(key)) {
      let best: string | undefined;
      let bestDistance = Infinity;
      for (const k of known) {
        const d = editDistance(key.toLowerCase(), k.toLowerCase());
        if (d < bestDistance) {
          bestDistance = d;
          best = k;
        }
      }
      const hint = best !== undefined && bestDistance <= 2 ? ` (did you mean '${best}'?)` : '';
      throw invalidArgValue(`${name}.${key}`, (value as Record<string, unknown>)[key], `is not a known option${hint}; known options: ${known.join(', ')}`);
    }
  }
  // Read each option once: a getter is called exactly once, and what was validated is what is used.
  const out: Partial<Record<K, unknown>> = {};
  for (const k of known) {
    const v = (value as Record<string, unknown>)[k];
    if (v !== undefined) out[k] = v;
  }
  return out;
}

/** Validate an optional AbortSignal (undefined passes). */
export function validateSignal(value: unknown, name: string): AbortSignal | undefined {
  if (value !== undefined && !(value instanceof AbortSignal)) throw invalidArgType(name, 'an instance of AbortSignal', value);
  return value;
}

/** Validate an Array (a plain JavaScript array: not a typed array, not an array-like). */
export function validateArray(value: unknown, name: string): asserts value is unknown[] {
  if (!Array.isArray(value)) throw invalidArgType(name, 'an Array', value);
}

/** Validate a Buffer/TypedArray/DataView. */
export function validateArrayBufferView(value: unknown, name: string): ArrayBufferView {
  if (!ArrayBuffer.isView(value)) throw invalidArgType(name, 'an instance of Buffer, TypedArray, or DataView', value);
  return value;
}

/**
 * A timeout in milliseconds: a number >= 0 (`Infinity`: none). `undefined` is `Infinity`, and so is
 * anything above {@link MAX_TIMEOUT_MS}. Returns the milliseconds (see internal/time.ts for deadlines).
 */
export function validateTimeoutMs(value: unknown, name: string): number {
  if (value === undefined) return Infinity;
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value);
  if (!(value >= 0)) throw invalidArgValue(name, value, 'must be a number of milliseconds >= 0');
  return value > MAX_TIMEOUT_MS ? Infinity : value;
}

/** A spin time in microseconds, 0 to 1,000,000 (`undefined`: `fallback`). Returns the microseconds. */
export function validateMicros(value: unknown, name: string, fallback = 0): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value);
  if (!(value >= 0 && value <= 1e6)) throw invalidArgValue(name, value, 'must be microseconds from 0 to 1000000');
  return value;
}
