/**
 * Where a shared structure with parties (a Channel, a Topic) lives and how one is created there:
 * resolving a target (a path, `{ name }`, a SharedMemory, a Mapping) to shared memory, and claiming
 * the right to (re)initialize it, one creator at a time, never over a structure in use.
 * @module
 */
import { closeSync, fstatSync, lstatSync, openSync, constants as fsConstants } from 'node:fs';
import { invalidArgType, invalidArgValue, mmapkitError } from './internal/errors.js';
import { pidAlive } from './internal/liveness.js';
import { Mapping, map, mapWithFix, viewLocation } from './mapping.js';
import { OWNERSHIP_OPTIONS, type OwnershipOptions, filePolicy, ownershipVerdict } from './ownership.js';
import { SharedMemory } from './shm.js';

const PID = process.pid;

/** Where a channel or topic lives: a file path, shared memory, a shared mapping, or `{ name }` (named shm). */
export type SharedTarget = string | { name: string } | SharedMemory | Mapping;

/** `{ name }`: a plain object naming shared memory (a SharedMemory has a `name` too, and is not one). */
export function isNameTarget(target: unknown): target is { name: string } {
  if (target instanceof SharedMemory || target instanceof Mapping) return false;
  return target !== null && typeof target === 'object' && typeof (target as { name?: unknown }).name === 'string';
}

/** The memory of a target, and what of it the handle opened itself (and closes with it). */
export interface Resolved {
  mapping: Mapping;
  owned: SharedMemory | Mapping | undefined;
}

/**
 * Map a target. `size`: create() grows a file or makes new named memory of that size; open() maps
 * what is there. `read` only for inspection. `kind` names the class in messages (`'Channel'`, `'Topic'`).
 */
export function resolveTarget(
  target: unknown,
  how: { size?: number; creating: boolean; ownership?: OwnershipOptions; options: readonly string[]; read?: boolean; call: string; kind?: string },
): Resolved {
  const kind = how.kind ?? 'Channel';
  if (target instanceof SharedMemory) return { mapping: how.read ? target.mapping : checkShared(target.mapping, how.size, kind), owned: undefined };
  if (target instanceof Mapping) return { mapping: how.read ? target : checkShared(target, how.size, kind), owned: undefined };
  if (typeof target === 'string') {
    // Creating: map() opens the path O_NOFOLLOW and refuses a file of another user or that others may
    // write (the same check as map() with size); a refusal says how to accept such a file on purpose.
    const fix = (accept: string): string =>
      `to create a ${kind.toLowerCase()} in it all the same, map it yourself and pass the Mapping: ` +
      `${kind}.create(map(path, { access: 'write', size: ${kind}.byteLength(options), ${accept} }), options)`;
    const mapping = how.creating ? mapWithFix(target, { access: 'write', size: how.size!, mode: 0o600 }, fix) : map(target, { access: how.read ? 'read' : 'write' });
    return { mapping, owned: mapping };
  }
  if (isNameTarget(target)) {
    // Only `name`: an option put here by mistake (`{ name, owner }`) must not be silently ignored.
    for (const key of Object.keys(target)) {
      if (key !== 'name') {
        const hint = how.options.includes(key) ? `; options go in the second argument: ${kind}.${how.call}({ name }, { ${key} })` : '';
        throw invalidArgValue(`target.${key}`, (target as Record<string, unknown>)[key], `is not a property of a { name } target${hint}`);
      }
    }
    const shm = how.creating ? SharedMemory.create(target.name, how.size!) : SharedMemory.open(target.name, { ...how.ownership, ...(how.read ? { access: 'read' as const } : {}) });
    return { mapping: shm.mapping, owned: shm };
  }
  throw invalidArgType('target', 'a file path, { name }, a SharedMemory or a Mapping', target);
}

type ResolveHow = Parameters<typeof resolveTarget>[1];

/**
 * Resolve `target` and hand its memory to `use` (create, open or inspect of a Channel or Topic).
 * What the call mapped itself is released if `use` throws; with `release: 'always'` (a look that
 * keeps nothing), also when it returns.
 */
export function useTarget<T>(target: unknown, how: ResolveHow, use: (r: Resolved) => T, release: 'on-error' | 'always' = 'on-error'): T {
  const r = resolveTarget(target, how);
  let ok = false;
  try {
    const result = use(r);
    ok = true;
    return result;
  } finally {
    if (!ok || release === 'always') releaseOwned(r.owned);
  }
}

/** Close or unmap what a handle opened itself. */
export function releaseOwned(owned: SharedMemory | Mapping | undefined): void {
  if (owned instanceof SharedMemory) owned.close();
  else owned?.unmap();
}

function checkShared(m: Mapping, size: number | undefined, kind: string): Mapping {
  if (!m.shared) throw mmapkitError('ERR_MMAP_NOT_SHARED', `A ${kind.toLowerCase()} needs memory shared between processes (a 'write' mapping or SharedMemory)`);
  if (size !== undefined && m.length < size) throw invalidArgValue('target', `${m.length} bytes`, `is too small for this ${kind.toLowerCase()} (${size} bytes; see ${kind}.byteLength())`);
  return m;
}

/** The address of a structure's memory, which must be 128-byte aligned (its hot words have a line pair each). */
export function alignedBase(view: Buffer, what = 'channel'): bigint {
  const base = viewLocation(view)!.addr;
  if (base % 128n !== 0n) {
    throw invalidArgValue('target', 'a mapping at an unaligned address', `must start the ${what} on a 128-byte boundary in memory (map the file at offset 0)`);
  }
  return base;
}

/** An Int32Array over the first `length` bytes of a view. */
export function words(view: Buffer, length = view.length): Int32Array {
  return new Int32Array(view.buffer, view.byteOffset, length >>> 2);
}

/** A create() refused over a structure in use: the parties using it, and what to do instead. */
export function inUseError(kind: 'Channel' | 'Topic', live: readonly string[]): Error {
  return mmapkitError(
    kind === 'Channel' ? 'ERR_MMAP_CHANNEL_IN_USE' : 'ERR_MMAP_TOPIC_IN_USE',
    `A ${kind.toLowerCase()} is already there, in use by ${live.join(', ')}: creating one would reset it under its users. ` +
      `Use ${kind}.open() to join it, or create the new one once every handle on the old one is closed`,
  );
}

/**
 * create() of a path: refuse a live structure in an existing file before map() grows or changes it.
 * Only a file that create() would accept is looked at: a symbolic link, a file of another user or one
 * that others may write is left to map(), which refuses it (ELOOP, ERR_MMAP_NOT_OWNER,
 * ERR_MMAP_UNSAFE_PERMISSIONS). The look maps the file read-only, through the descriptor checked.
 */
export function refuseLiveFile(path: string, minSize: number, holders: (m: Mapping) => string[], inUse: (live: string[]) => Error): void {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return; // missing (map() creates it) or unreachable (map() reports why)
  }
  if (!st.isFile() || st.size < minSize) return; // a link or not a file (map() refuses it), or too small
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO swapped in since lstat must not block the open.
    fd = openSync(path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK);
  } catch {
    return; // gone, swapped for a link, or unreadable: map() creates it or reports why
  }
  let m: Mapping;
  try {
    const now = fstatSync(fd);
    if (!now.isFile() || now.size < minSize || ownershipVerdict(now, filePolicy({}, 0o600)) !== undefined) return;
    m = map(fd, { access: 'read' });
  } finally {
    closeSync(fd);
  }
  try {
    const live = holders(m);
    if (live.length > 0) throw inUse(live);
  } finally {
    m.unmap();
  }
}

/**
 * Refuse to create over a live structure, then name this process in the CREATOR word (i32 index
 * `creator`) by compare-and-swap from what was there: of two processes that create() the same memory
 * at once, one wins, the other sees the word change under it and backs off. A live process named in
 * CREATOR always means "in use": it holds the handle its create() returned, or its create() is under
 * way. Only a dead creator's pid or 0 is ever replaced. The magic (i32 index `magic`) is zeroed after
 * the compare-and-swap is won, never before: a loser must not unpublish the winner's structure.
 */
export function claimCreator(i32: Int32Array, creator: number, magic: number, holders: () => string[], inUse: (live: string[]) => Error, what: string): void {
  let seen = Atomics.load(i32, creator);
  for (let tries = 0; ; tries++) {
    const live = holders();
    if (live.length > 0) throw inUse(live);
    if (seen !== 0 && pidAlive(seen)) throw inUse([`process ${seen} (creating a ${what} there now)`]);
    // seq_cst compare-and-swap: from 0 or a dead pid to ours; whoever wins owns the memory.
    const found = Atomics.compareExchange(i32, creator, seen, PID);
    if (found === seen) {
      // seq_cst store: unpublish the old structure (if any) before we rewrite its header.
      Atomics.store(i32, magic, 0);
      return;
    }
    if (tries === 2 || (found !== 0 && pidAlive(found))) throw inUse([`process ${found} (creating a ${what} there now)`]);
    seen = found;
  }
}

/** The ownership options of open()/inspect(), which apply to a `{ name }` target only. */
export function ownershipOf(o: Partial<Record<string, unknown>>, target: unknown): OwnershipOptions {
  const ownership: OwnershipOptions = {};
  for (const key of OWNERSHIP_OPTIONS) {
    if (o[key] === undefined) continue;
    if (!isNameTarget(target)) throw invalidArgValue(`options.${key}`, o[key], 'applies only to a { name } target (named shared memory)');
    Object.assign(ownership, { [key]: o[key] });
  }
  return ownership;
}
