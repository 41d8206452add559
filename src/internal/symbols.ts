/**
 * The symbols mmapkit's modules share and never export from the package: one place for each, so that
 * no two modules define the same token twice (issue 13; piscina's symbols.ts is the model).
 * @module
 */

/**
 * The token every public class's constructor requires (Mapping, SharedMemory, Mutex, Semaphore,
 * Event, Channel, Topic, Subscription): only mmapkit's own factories have it, so `new X()` from user
 * code is a TypeError instead of an object over memory nobody checked.
 */
export const kConstruct = Symbol('mmapkit.construct');

/** Refuse a constructor call without {@link kConstruct}; `how` says what to call instead. */
export function checkConstruct(token: unknown, how: string): void {
  if (token !== kConstruct) throw new TypeError(`Illegal constructor: ${how}`);
}

/** Hidden back-reference from each ArrayBuffer to its Mapping: keeps the mapping alive while a view is. */
export const kOwner = Symbol('mmapkit.owner');
/** Mapping: the bounds check of a byte range, for the modules that take ranges of a mapping. */
export const kRange = Symbol('mmapkit.range');
/** Mapping: change the protection (posix.ts mprotect()). */
export const kProtect = Symbol('mmapkit.protect');
/** Mapping: keep the memory mapped while an async wait reads it (wait.ts). */
export const kHold = Symbol('mmapkit.hold');
