/**
 * The header every shared-memory structure of mmapkit starts with (Mutex, Semaphore, Event, Channel):
 * magic, layout version, header size, total size and flags, at the same offsets for all. One module
 * writes, publishes and checks it, so every structure refuses foreign or stale memory the same way.
 * @module
 */
import { mmapkitError } from './internal/errors.js';

/** Header layout common to every structure (byte offsets; little-endian on this platform). */
export const HEADER = Object.freeze({
  /** u32: the structure's magic number. */
  MAGIC: 0,
  /** u16: layout version. */
  VERSION: 4,
  /** u16: header size in bytes (16 for the synchronization objects; a Channel's header is longer). */
  HEADER_SIZE: 6,
  /** u32: total size of the structure in bytes. */
  TOTAL_SIZE: 8,
  /**
   * u32: state flags of the structure (Mutex: bit 0 = not recoverable; a 'futex' Mutex: bit 1 = an owner
   * died and the next one has not called markConsistent() yet).
   */
  FLAGS: 12,
  /** Size of the common header. */
  SIZE: 16,
});

/** The common header fields as found in memory. */
export interface HeaderFields {
  version: number;
  headerSize: number;
  totalSize: number;
}

/**
 * Write version, header size and total size (the magic stays 0 until {@link publishHeader}); the rest
 * of the common header is left as it is (the caller zeroed it).
 */
export function writeHeader(view: Buffer, version: number, headerSize: number, totalSize: number): void {
  view.writeUInt16LE(version, HEADER.VERSION);
  view.writeUInt16LE(headerSize, HEADER.HEADER_SIZE);
  view.writeUInt32LE(totalSize, HEADER.TOTAL_SIZE);
}

/** Store the magic, last: publishes the initialized structure to processes that check the magic. */
export function publishHeader(i32: Int32Array, magic: number): void {
  // seq_cst store, after every other write of the initialization: a process that loads the magic
  // (seq_cst) sees an initialized structure.
  Atomics.store(i32, HEADER.MAGIC >>> 2, magic | 0);
}

/**
 * Check the magic (loaded first, seq_cst: it is stored last) and return the other common fields
 * unchecked; `ERR_MMAP_BAD_HEADER` when the magic is not `magic`.
 */
export function readHeader(view: Buffer, i32: Int32Array, magic: number, what: string): HeaderFields {
  const found = Atomics.load(i32, HEADER.MAGIC >>> 2) >>> 0;
  if (found !== magic) {
    throw mmapkitError('ERR_MMAP_BAD_HEADER', `No ${what} here: magic is 0x${found.toString(16)}, expected 0x${magic.toString(16)} (not created yet, or the wrong offset)`);
  }
  return { version: view.readUInt16LE(HEADER.VERSION), headerSize: view.readUInt16LE(HEADER.HEADER_SIZE), totalSize: view.readUInt32LE(HEADER.TOTAL_SIZE) };
}
