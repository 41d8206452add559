/**
 * The memory of one synchronization object (Mutex, Semaphore, Event): the target and offset checked
 * (shared, 8-byte aligned, in bounds), the common header laid out by `create` and checked by `attach`,
 * and the checks every method makes before it touches the memory. Shared by src/sync.ts and
 * src/mutex.ts.
 * @module
 */
import { closedError, invalidArgType, invalidArgValue, mmapkitError } from './errors.js';
import { Mapping, detachedError, viewLocation } from '../mapping.js';
import { SharedMemory } from '../shm.js';
import { validateInt32 } from './validators.js';
import { HEADER, publishHeader, readHeader, writeHeader } from '../header.js';
import type { Word } from '../wait.js';

/** Where a synchronization object lives: shared memory, a shared mapping, or a view over one. */
export type SyncTarget = SharedMemory | Mapping | ArrayBufferView;

/** The memory of one structure, checked: shared, aligned, in bounds. */
export interface Region {
  mapping: Mapping;
  /** Address of the structure's first byte. */
  addr: bigint;
  view: Buffer;
  i32: Int32Array;
}

function targetView(target: unknown, offset: number, length: number): Buffer {
  let whole: Buffer;
  if (target instanceof SharedMemory || target instanceof Mapping) {
    const m = target instanceof SharedMemory ? target.mapping : target;
    if (offset + length > m.length) throw invalidArgValue('offset', offset, `leaves no room for ${length} bytes in a mapping of ${m.length}`);
    return m.view(offset, length);
  } else if (ArrayBuffer.isView(target)) {
    viewLocation(target); // a detached view of a mapping: ERR_MMAP_CLOSED or ERR_MMAP_NOT_ACCESSIBLE
    whole = Buffer.from(target.buffer, target.byteOffset, target.byteLength);
  } else {
    throw invalidArgType('target', 'a SharedMemory, a Mapping, or a Buffer/TypedArray over one', target);
  }
  if (offset + length > whole.length) throw invalidArgValue('offset', offset, `leaves no room for ${length} bytes in a view of ${whole.length}`);
  return whole.subarray(offset, offset + length);
}

/** The `length` bytes at `offsetArg` (default 0) of `target`, checked for a structure called `what`. */
export function region(target: unknown, offsetArg: unknown, length: number, what: string): Region {
  const offset = offsetArg === undefined ? 0 : validateInt32(offsetArg, 'offset', 0);
  const view = targetView(target, offset, length);
  const where = viewLocation(view);
  if (where === undefined || !where.mapping.shared) {
    throw mmapkitError(
      'ERR_MMAP_NOT_SHARED',
      `A ${what} must live in memory shared between processes (SharedMemory, or a 'write' mapping): this memory is ${where === undefined ? 'not from mmapkit' : 'private'}.`,
    );
  }
  if (where.addr % 8n !== 0n) throw invalidArgValue('offset', offset, `must put the ${what} on an 8-byte boundary in memory`);
  return { mapping: where.mapping, addr: where.addr, view, i32: new Int32Array(view.buffer, view.byteOffset, length / 4) };
}

/** What identifies one kind of structure in its header. */
export interface Kind {
  name: string;
  magic: number;
  version: number;
  byteLength: number;
}

/** Lay out a new structure: header, `init` for the body, and the magic last (publish). */
export function createRegion(target: unknown, offset: unknown, kind: Kind, init?: (r: Region) => void): Region {
  const r = region(target, offset, kind.byteLength, kind.name);
  r.view.fill(0);
  writeHeader(r.view, kind.version, HEADER.SIZE, kind.byteLength);
  init?.(r);
  publishHeader(r.i32, kind.magic);
  return r;
}

/** Find an existing structure and check its header. */
export function attachRegion(target: unknown, offset: unknown, kind: Kind): Region {
  const r = region(target, offset, kind.byteLength, kind.name);
  checkHeader(r, kind.magic, kind.version, kind.byteLength, kind.name);
  return r;
}

function checkHeader(r: Region, magic: number, version: number, size: number, what: string): void {
  const h = readHeader(r.view, r.i32, magic, what);
  if (h.version !== version || h.headerSize !== HEADER.SIZE || h.totalSize !== size) {
    throw mmapkitError('ERR_MMAP_BAD_HEADER', `${what} layout mismatch: version ${h.version}, header ${h.headerSize}, size ${h.totalSize}; this library reads version ${version}, header ${HEADER.SIZE}, size ${size}`);
  }
}

/** The 32-bit word at `byteOffset` of the structure, for futex calls. */
export function word(r: Region, byteOffset: number): Word {
  return { mapping: r.mapping, addr: Number(r.addr) + byteOffset, array: r.i32, index: byteOffset / 4 };
}

/** Throw if the structure's memory was unmapped (`ERR_MMAP_CLOSED`), resized or made read-only. */
export function checkOpen(r: Region, what: string): void {
  if (r.mapping.closed) throw closedError(`use the ${what}`, 'memory');
  // resize() detaches views (the memory may have moved), and so does protect() when the pages lose
  // write access (writing now would be SIGSEGV).
  if (r.i32.length === 0) {
    throw detachedError(r.i32.buffer, `Cannot use this ${what}, whose view of its memory was detached`, 'attach it again');
  }
}
