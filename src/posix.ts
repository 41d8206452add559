/**
 * The low-level API, faithful to POSIX: the kernel's rules apply as in C (an mmap offset that is not a
 * page multiple is EINVAL, an mmap length of 0 is EINVAL, an address that is not page-aligned is
 * EINVAL, ...). Where C takes an address, these take a `Mapping`
 * (its first byte) or a Buffer/TypedArray/DataView over one (its first byte), and the length is checked
 * to stay inside that mapping, so no call can touch memory mmapkit did not map.
 * @module
 */
import { native } from './binding.js';
import { constants } from './constants.js';
import { invalidArgType, invalidArgValue, systemError } from './internal/errors.js';
import { kProtect } from './internal/symbols.js';
import { hugePageSizeOfFlags } from './internal/hugepages.js';
import { Mapping, createMapping, mmapChecked, resolveAddress } from './mapping.js';
import { type Int64Like, validateInt32, validateInt64 } from './internal/validators.js';

/** Where C takes `void *addr`: a Mapping (its first byte) or a view over one (the view's first byte). */
export type Address = Mapping | ArrayBufferView;

/**
 * `mmap(NULL, length, prot, flags, fd, offset)`. Pass `fd = -1` with `MAP_ANONYMOUS`. Returns a
 * {@link Mapping}; its `buffer` is available while `prot` includes `PROT_READ | PROT_WRITE` (JavaScript has
 * no read-only Buffer; for read access to a file use `map()` or `MAP_PRIVATE` with both bits).
 * `MAP_FIXED` and `MAP_FIXED_NOREPLACE` are refused: mmapkit chooses addresses, so it can never map over
 * memory that V8 owns.
 */
export function mmap(length: Int64Like, prot: number, flags: number, fd: number, offset: Int64Like): Mapping {
  const len = validateInt64(length, 'length', 0n, BigInt(Number.MAX_SAFE_INTEGER));
  validateInt32(prot, 'prot');
  validateInt32(flags, 'flags');
  validateInt32(fd, 'fd', -1);
  const off = validateInt64(offset, 'offset');
  const fixed = constants.MAP_FIXED | (constants.MAP_FIXED_NOREPLACE ?? 0);
  if ((flags & fixed) !== 0) {
    throw invalidArgValue('flags', flags, 'must not include MAP_FIXED or MAP_FIXED_NOREPLACE (mmapkit chooses the address)');
  }
  const addr = mmapChecked(len, prot, flags, fd, off);
  return createMapping({
    addr,
    mapLength: Number(len),
    delta: 0,
    length: Number(len),
    offset: off,
    prot,
    flags,
    path: undefined,
    access: undefined,
    hugePageSize: hugePageSizeOfFlags(flags),
  });
}

/** `munmap`: unmaps the whole mapping (partial unmapping is not supported). Same as `mapping.unmap()`. */
export function munmap(mapping: Mapping): void {
  if (!(mapping instanceof Mapping)) throw invalidArgType('mapping', 'an instance of Mapping', mapping);
  mapping.unmap();
}

/** `msync(addr, length, flags)` with `MS_SYNC`, `MS_ASYNC`, `MS_INVALIDATE`. */
export function msync(addr: Address, length: Int64Like, flags: number): void {
  validateInt32(flags, 'flags');
  const { mapping, range } = resolveAddress(addr, length, 'msync');
  const rc = native.msync(range.addr, range.length, flags);
  if (rc < 0) throw systemError(rc, 'msync', mapping.path);
}

/**
 * `mprotect(addr, length, prot)`. Any `prot` that is not `PROT_READ | PROT_WRITE` (with or without
 * `PROT_EXEC`) detaches the mapping's views first, so no Buffer is ever left over read-only memory.
 */
export function mprotect(addr: Address, length: Int64Like, prot: number): void {
  validateInt32(prot, 'prot');
  const { mapping, range } = resolveAddress(addr, length, 'mprotect');
  mapping[kProtect](range, prot);
}

/** `madvise(addr, length, advice)` with any `MADV_*` constant, including those that discard data. */
export function madvise(addr: Address, length: Int64Like, advice: number): void {
  validateInt32(advice, 'advice');
  const { mapping, range } = resolveAddress(addr, length, 'madvise');
  const rc = native.madvise(range.addr, range.length, advice);
  if (rc < 0) throw systemError(rc, 'madvise', mapping.path);
}

/** `mincore(addr, length, vec)`: returns the vector, one byte per page (bit 0 set when resident). */
export function mincore(addr: Address, length: Int64Like): Uint8Array {
  const { mapping, range } = resolveAddress(addr, length, 'mincore');
  const vec = new Uint8Array(Math.ceil(range.length / native.pageSize));
  const rc = native.mincore(range.addr, range.length, vec);
  if (rc < 0) throw systemError(rc, 'mincore', mapping.path);
  return vec;
}

/** `mlock(addr, length)`. */
export function mlock(addr: Address, length: Int64Like): void {
  const { mapping, range } = resolveAddress(addr, length, 'mlock');
  const rc = native.mlock(range.addr, range.length);
  if (rc < 0) throw systemError(rc, 'mlock', mapping.path);
}

/** `munlock(addr, length)`. */
export function munlock(addr: Address, length: Int64Like): void {
  const { mapping, range } = resolveAddress(addr, length, 'munlock');
  const rc = native.munlock(range.addr, range.length);
  if (rc < 0) throw systemError(rc, 'munlock', mapping.path);
}

/**
 * `lseek(fd, offset, whence)`: the new file offset. With `constants.SEEK_DATA` / `SEEK_HOLE` it finds
 * where the data and the holes of a sparse file are (what Node's fs does not offer), e.g. to copy or
 * map only the data: `lseek(fd, pos, SEEK_DATA)` is the first byte of data at or after pos, and throws
 * ENXIO when there is none; `lseek(fd, pos, SEEK_HOLE)` the first hole (the end of the file counts as
 * one). A file system that does not track holes reports the whole file as data.
 */
export function lseek(fd: number, offset: Int64Like, whence: number): number {
  validateInt32(fd, 'fd', 0);
  const off = validateInt64(offset, 'offset', 0n, 2n ** 53n - 1n);
  const known = [constants.SEEK_SET, constants.SEEK_CUR, constants.SEEK_END, constants.SEEK_DATA, constants.SEEK_HOLE];
  if (typeof whence !== 'number') throw invalidArgType('whence', 'of type number', whence);
  if (!known.includes(whence)) throw invalidArgValue('whence', whence, 'must be one of constants.SEEK_SET, SEEK_CUR, SEEK_END, SEEK_DATA, SEEK_HOLE');
  const rc = native.lseek(fd, Number(off), whence);
  if (rc < 0) throw systemError(rc, 'lseek');
  return rc;
}
