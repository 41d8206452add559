/**
 * The channel's memory layout (version 3): every offset, the geometry derived from the options, the
 * header written by `create()` and checked by `open()`. docs/channel-layout.md is the contract; this
 * module is its only implementation in TypeScript: nothing else names a byte offset.
 *
 * ```
 * 0     header (128 bytes: the common header of header.ts, then the channel's fields)
 * 128   consumer wake line: NOT_EMPTY futex word, CONSUMER_SLEEPERS
 * 256   lane control blocks, one per producer (LANE_CONTROL bytes: a producer line, a consumer line)
 * ...   consumer table (CONSUMER_ENTRY bytes each)
 * ...   rings, one per lane (LANE_SIZE bytes each, 128-byte aligned)
 * ```
 * @module
 */
import { invalidArgValue, mmapkitError, outOfRange } from '../internal/errors.js';
import { HEADER, readHeader, writeHeader } from '../header.js';
import type { Mapping } from '../mapping.js';
import { validateInt32 } from '../internal/validators.js';

/** Byte offsets of the channel's header, control lines, lane blocks, table entries and records. */
export const CHANNEL = Object.freeze({
  // ---- header (the common header of header.ts, then the channel's own fields)
  MAGIC: HEADER.MAGIC, // u32 'MKCH'
  VERSION: HEADER.VERSION, // u16: 3
  HEADER_SIZE: HEADER.HEADER_SIZE, // u16: bytes before the first control line (128)
  TOTAL_SIZE: HEADER.TOTAL_SIZE, // u32: bytes of the whole channel
  FLAGS: HEADER.FLAGS, // u32: bit 0 = a producer has ever attached; bit 1 = a producer went away without closing
  LANE_SIZE: 16, // u32: bytes of each lane's ring, a power of two
  MAX_MESSAGE: 20, // u32: largest message in bytes
  MAX_PRODUCERS: 24, // u32: lanes (one per attached producer handle)
  MAX_CONSUMERS: 28, // u32: entries in the consumer table
  LANES_OFFSET: 32, // u32: offset of lane 0's control block
  CONSUMERS_OFFSET: 36, // u32: offset of the consumer table
  RINGS_OFFSET: 40, // u32: offset of lane 0's ring
  EXPECTED_PRODUCERS: 44, // u32: producers to expect before the stream can end; 0: not set
  PRODUCER_COUNT: 48, // i32: producer attaches so far (every attach adds 1)
  CREATOR: 52, // i32: pid of the process whose create() handle is open; 0 once closed
  LANES_USED: 56, // i32: 1 + the highest lane index a producer ever attached to (only grows)
  HEADER_END: 128,
  // ---- consumer wake line: producers read CONSUMER_SLEEPERS after every publish
  NOT_EMPTY: 128, // i32 futex word: bumped when a producer publishes or closes while consumers sleep
  CONSUMER_SLEEPERS: 132, // i32: consumers asleep (or about to sleep) on NOT_EMPTY
  CONTROL_END: 256,
  // ---- lane control block (at LANES_OFFSET + lane * LANE_CONTROL): a producer line, a consumer line
  LANE_WRITE: 0, // i32 position: the end of what the producer has published (release store per batch)
  LANE_PID: 4, // i32: pid of the producer that owns the lane; 0: never owned
  LANE_STATE: 8, // i32: 0 never owned, 1 attached, 2 closed, 3 being claimed
  LANE_READ: 128, // i32 position: the start of what consumers have not taken (store per poll)
  LANE_READER: 132, // i32: 0, or the consumer holding the lane: (generation << 13) | (entry + 1)
  LANE_NOT_FULL: 136, // i32 futex word: bumped when a consumer frees room while the producer waits
  LANE_PRODUCER_WAITING: 140, // i32 flag: 1 while the producer is asleep (or about to sleep) on NOT_FULL; the waking consumer clears it
  LANE_CONTROL: 256,
  // ---- consumer table entry
  CONSUMER_PID: 0, // i32: pid of the process holding the entry; 0: free
  CONSUMER_GENERATION: 4, // i32: bumped on every attach (its low 19 bits go into LANE_READER)
  CONSUMER_ENTRY: 16,
  // ---- record in a ring (8-byte aligned; never wraps)
  RECORD_LENGTH: 0, // i32: 0..MAX_MESSAGE, the message's bytes follow; -1 (PAD): skip to the ring's end
  RECORD_HEADER: 8, // then the message bytes; a record takes align8(8 + length) bytes
});

/** 'MKCH' read as a little-endian u32. */
export const MAGIC = 0x48434b4d;
/** The layout version create() writes and open() reads. 3: lanes of byte rings (1 and 2 had slots). */
export const VERSION = 3;
/** RECORD_LENGTH of a padding record: the rest of the ring up to its end is unused. */
export const PAD = -1;
/** Producer lane states. */
export const ATTACHED = 1;
export const CLOSED = 2;
/** A producer is taking the lane (between its compare-and-swap of STATE and its PID store). */
export const CLAIMING = 3;
/** FLAGS bits. */
export const FLAG_HAD_PRODUCER = 1;
export const FLAG_PRODUCER_DIED = 2;
/** LANE_READER: entry + 1 in the low 13 bits (entries 0..4095), generation in the 19 above. */
export const READER_ENTRY_BITS = 13;
export const READER_ENTRY_MASK = (1 << READER_ENTRY_BITS) - 1;
export const GENERATION_MASK = (1 << (32 - READER_ENTRY_BITS)) - 1;

export const MIN_LANE_SIZE = 4096;
export const MAX_LANE_SIZE = 1 << 30;
export const MAX_TABLE = 4096;
const DEFAULT_LANE_SIZE = 256 * 1024;
const DEFAULT_MAX_MESSAGE = 4096;
const DEFAULT_PRODUCERS = 16;
const DEFAULT_CONSUMERS = 64;
/** Largest maxMessageSize: two records of it fit the largest lane. */
export const MAX_MESSAGE = MAX_LANE_SIZE / 2 - 8;
/** A channel's memory is one ArrayBuffer at most (and TOTAL_SIZE is a u32). */
const MAX_TOTAL = 2 ** 32 - 1;

/** Everything derived from the options of create() (or read back from a header). */
export interface Geometry {
  readonly laneSize: number;
  readonly maxMessageSize: number;
  readonly maxProducers: number;
  readonly maxConsumers: number;
  readonly lanesOffset: number;
  readonly consumersOffset: number;
  readonly ringsOffset: number;
  readonly totalSize: number;
}

export function align8(n: number): number {
  return (n + 7) & ~7;
}

function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/** The smallest power of two >= n (n <= 2^30), as a small integer (`2 ** k` would be a double). */
function nextPow2(n: number): number {
  let p = 1;
  while (p < n && p < MAX_LANE_SIZE) p <<= 1;
  return p < n ? p * 2 : p;
}

/** Bytes a message of `length` bytes takes in a ring. */
export function recordSize(length: number): number {
  return align8(CHANNEL.RECORD_HEADER + length);
}

/**
 * The smallest lane that always takes a message of `maxMessageSize` once it is empty: two records
 * (wherever the empty ring's position is, one record fits before the end or after a padding record).
 */
export function minLaneSize(maxMessageSize: number): number {
  return Math.max(MIN_LANE_SIZE, nextPow2(2 * recordSize(maxMessageSize)));
}

/** Messages of maxMessageSize a lane holds at least, whatever the padding at its wrap. */
export function laneCapacity(laneSize: number, maxMessageSize: number): number {
  const rec = recordSize(maxMessageSize);
  return Math.floor((laneSize - rec + CHANNEL.RECORD_HEADER) / rec);
}

export function geometry(laneSize: number, maxMessageSize: number, maxProducers: number, maxConsumers: number): Geometry {
  const lanesOffset = CHANNEL.CONTROL_END;
  const consumersOffset = lanesOffset + maxProducers * CHANNEL.LANE_CONTROL;
  const ringsOffset = alignUp(consumersOffset + maxConsumers * CHANNEL.CONSUMER_ENTRY, 128) | 0;
  const totalSize = ringsOffset + maxProducers * laneSize;
  // Small integers everywhere they fit (one object shape for every geometry): the hot paths read them.
  return { laneSize: laneSize | 0, maxMessageSize: maxMessageSize | 0, maxProducers: maxProducers | 0, maxConsumers: maxConsumers | 0, lanesOffset, consumersOffset, ringsOffset, totalSize };
}

/** The options of create() that shape the channel (byteLength() takes these). */
export const GEOMETRY_OPTIONS = ['capacity', 'laneSize', 'maxMessageSize', 'maxProducers', 'maxConsumers', 'producers'] as const;

/** Validate the shaping options (already checked for unknown names) and derive the geometry. */
export function parseGeometry(o: Partial<Record<string, unknown>>): Geometry {
  const maxMessageSize = o['maxMessageSize'] === undefined ? DEFAULT_MAX_MESSAGE : validateInt32(o['maxMessageSize'], 'options.maxMessageSize', 1, MAX_MESSAGE);
  const maxProducers = o['maxProducers'] === undefined ? DEFAULT_PRODUCERS : validateInt32(o['maxProducers'], 'options.maxProducers', 1, MAX_TABLE);
  const maxConsumers = o['maxConsumers'] === undefined ? DEFAULT_CONSUMERS : validateInt32(o['maxConsumers'], 'options.maxConsumers', 1, MAX_TABLE);
  const least = minLaneSize(maxMessageSize);
  let laneSize: number;
  if (o['laneSize'] !== undefined) {
    if (o['capacity'] !== undefined) throw invalidArgValue('options.capacity', o['capacity'], 'cannot be given with options.laneSize (both size the lanes: pick one)');
    const asked = validateInt32(o['laneSize'], 'options.laneSize', 1, MAX_LANE_SIZE);
    if (asked < least) throw outOfRange('options.laneSize', `>= ${least} (two records of maxMessageSize ${maxMessageSize}, at least ${MIN_LANE_SIZE})`, asked);
    laneSize = nextPow2(asked);
  } else if (o['capacity'] !== undefined) {
    // At least `capacity` messages of maxMessageSize per producer, whatever the padding at the wrap.
    const capacity = validateInt32(o['capacity'], 'options.capacity', 1, MAX_LANE_SIZE);
    laneSize = Math.max(least, nextPow2((capacity + 1) * recordSize(maxMessageSize)));
    if (laneSize > MAX_LANE_SIZE) throw outOfRange('options.capacity', `small enough for a lane of at most 1 GiB (capacity x maxMessageSize)`, capacity);
  } else {
    laneSize = Math.max(least, DEFAULT_LANE_SIZE);
  }
  const g = geometry(laneSize, maxMessageSize, maxProducers, maxConsumers);
  if (g.totalSize > MAX_TOTAL) {
    throw invalidArgValue('options', o, `describes a channel of ${g.totalSize} bytes (${maxProducers} lanes of ${laneSize}); at most 4 GiB - 1`);
  }
  return g;
}

export function parseExpectedProducers(o: Partial<Record<string, unknown>>): number {
  return o['producers'] === undefined ? 0 : validateInt32(o['producers'], 'options.producers', 1, 0x7fffffff);
}

/**
 * Write the header of a new channel into `view` (zeroed up to the rings by the caller, CREATOR
 * excepted); the magic is published separately, last.
 */
export function writeChannelHeader(view: Buffer, g: Geometry, expectedProducers: number): void {
  writeHeader(view, VERSION, CHANNEL.HEADER_END, g.totalSize);
  view.writeUInt32LE(g.laneSize, CHANNEL.LANE_SIZE);
  view.writeUInt32LE(g.maxMessageSize, CHANNEL.MAX_MESSAGE);
  view.writeUInt32LE(g.maxProducers, CHANNEL.MAX_PRODUCERS);
  view.writeUInt32LE(g.maxConsumers, CHANNEL.MAX_CONSUMERS);
  view.writeUInt32LE(g.lanesOffset, CHANNEL.LANES_OFFSET);
  view.writeUInt32LE(g.consumersOffset, CHANNEL.CONSUMERS_OFFSET);
  view.writeUInt32LE(g.ringsOffset, CHANNEL.RINGS_OFFSET);
  view.writeUInt32LE(expectedProducers, CHANNEL.EXPECTED_PRODUCERS);
}

/**
 * Read and check a channel's header in `m`: every number must describe a channel of this version
 * that fits the memory (docs/channel-layout.md, "What a reader must validate").
 * `ERR_MMAP_BAD_HEADER` otherwise.
 */
export function readGeometry(m: Mapping): Geometry {
  if (m.length < CHANNEL.CONTROL_END) throw mmapkitError('ERR_MMAP_BAD_HEADER', `Too small for a channel: ${m.length} bytes (at least ${CHANNEL.CONTROL_END})`);
  const h = m.view(0, CHANNEL.CONTROL_END);
  const { version, headerSize, totalSize } = readHeader(h, new Int32Array(h.buffer, h.byteOffset, CHANNEL.CONTROL_END >>> 2), MAGIC, 'channel');
  if (version !== VERSION) {
    const old = version === 1 || version === 2 ? ' (a channel made by mmapkit before lanes: once no process uses it, remove it, create it anew with this version, and update every peer)' : '';
    throw mmapkitError('ERR_MMAP_BAD_HEADER', `Channel layout version ${version}; this library reads version ${VERSION} only${old}`);
  }
  if (headerSize !== CHANNEL.HEADER_END) throw mmapkitError('ERR_MMAP_BAD_HEADER', `Corrupt channel header: header size ${headerSize}, expected ${CHANNEL.HEADER_END}`);
  const laneSize = h.readUInt32LE(CHANNEL.LANE_SIZE);
  const maxMessageSize = h.readUInt32LE(CHANNEL.MAX_MESSAGE);
  const maxProducers = h.readUInt32LE(CHANNEL.MAX_PRODUCERS);
  const maxConsumers = h.readUInt32LE(CHANNEL.MAX_CONSUMERS);
  const expected = geometry(laneSize, maxMessageSize, maxProducers, maxConsumers);
  const bad =
    laneSize < MIN_LANE_SIZE || laneSize > MAX_LANE_SIZE || (laneSize & (laneSize - 1)) !== 0 ? `lane size ${laneSize} is not a power of two from ${MIN_LANE_SIZE} to 2^30`
      : maxMessageSize < 1 || maxMessageSize > MAX_MESSAGE || minLaneSize(maxMessageSize) > laneSize ? `max message size ${maxMessageSize} does not fit lanes of ${laneSize} bytes twice`
      : maxProducers < 1 || maxProducers > MAX_TABLE || maxConsumers < 1 || maxConsumers > MAX_TABLE ? `table sizes ${maxProducers}/${maxConsumers}`
      : h.readUInt32LE(CHANNEL.LANES_OFFSET) !== expected.lanesOffset || h.readUInt32LE(CHANNEL.CONSUMERS_OFFSET) !== expected.consumersOffset ||
        h.readUInt32LE(CHANNEL.RINGS_OFFSET) !== expected.ringsOffset ? 'lane, table or ring offsets do not match the sizes'
      : totalSize !== expected.totalSize ? `total size ${totalSize}, expected ${expected.totalSize}`
      : totalSize > m.length ? `total size ${totalSize} is larger than the memory (${m.length} bytes)`
      : '';
  if (bad !== '') throw mmapkitError('ERR_MMAP_BAD_HEADER', `Corrupt channel header: ${bad}`);
  return expected;
}

/** Byte offset of lane `i`'s control block. */
export function laneControl(g: Geometry, i: number): number {
  return g.lanesOffset + i * CHANNEL.LANE_CONTROL;
}

/** Byte offset of lane `i`'s ring. */
export function laneRing(g: Geometry, i: number): number {
  return g.ringsOffset + i * g.laneSize;
}

/** Byte offset of consumer entry `i`. */
export function consumerEntry(g: Geometry, i: number): number {
  return g.consumersOffset + i * CHANNEL.CONSUMER_ENTRY;
}
