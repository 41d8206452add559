/**
 * The topic's memory layout (version 1): every offset, the geometry derived from the options, the
 * header written by `create()` and checked by `open()`. docs/topic-layout.md is the contract; this
 * module is its only implementation in TypeScript: nothing else names a byte offset.
 *
 * ```
 * 0     header (128 bytes: the common header of header.ts, then the topic's fields)
 * 128   publisher line: TAIL, INTENT, HEAD, NEXT_SEQ (u64 each), LOCK
 * 256   wake line: NOT_EMPTY, SUBSCRIBER_SLEEPERS, NOT_FULL, PUBLISHER_WAITING
 * 384   publisher table (PUBLISHER_ENTRY bytes each)
 * ...   subscriber table (SUBSCRIBER_ENTRY bytes each, one 128-byte line pair... one 128-byte block each)
 * ...   the ring (CAPACITY bytes, 128-byte aligned)
 * ```
 * @module
 */
import { invalidArgValue, mmapkitError, outOfRange } from '../internal/errors.js';
import { HEADER, readHeader, writeHeader } from '../header.js';
import type { Mapping } from '../mapping.js';
import { validateInt32, validateOneOf } from '../internal/validators.js';

/** Byte offsets of the topic's header, control lines, tables and records. */
export const TOPIC = Object.freeze({
  // ---- header (the common header of header.ts, then the topic's own fields)
  MAGIC: HEADER.MAGIC, // u32 'MKTP'
  VERSION: HEADER.VERSION, // u16: 1
  HEADER_SIZE: HEADER.HEADER_SIZE, // u16: 128
  TOTAL_SIZE: HEADER.TOTAL_SIZE, // u32: bytes of the whole topic
  FLAGS: HEADER.FLAGS, // u32: bit 0 = a publisher has ever attached; bit 1 = a publisher went away without closing
  CAPACITY: 16, // u32: bytes of the ring, a power of two
  MAX_MESSAGE: 20, // u32: largest message in bytes
  POLICY: 24, // u32: 0 'block', 1 'overwrite'
  MAX_PUBLISHERS: 28, // u32: entries in the publisher table
  MAX_SUBSCRIBERS: 32, // u32: entries in the subscriber table
  PUBLISHERS_OFFSET: 36, // u32
  SUBSCRIBERS_OFFSET: 40, // u32
  RING_OFFSET: 44, // u32
  EXPECTED_PUBLISHERS: 48, // u32: publishers to expect before the stream can end; 0: not set
  PUBLISHER_COUNT: 52, // i32: publisher attaches so far
  CREATOR: 56, // i32: pid of the process whose create() handle is open; 0 once closed
  JOINS: 60, // i32: bumped by every subscriber attach (publishers then look for the slowest cursor again)
  INSTANCE: 64, // u32: a random number written by create(): tells one topic from another (not a secret)
  HEADER_END: 128,
  // ---- publisher line: written only by the holder of LOCK
  TAIL: 128, // u64 position: the end of the published records (seq_cst store, after the records)
  INTENT: 136, // u64 position: the end of what the LOCK holder may be writing (stored before it writes)
  HEAD: 144, // u64 position: the start of the oldest record still intact (a record boundary)
  NEXT_SEQ: 152, // u64: the sequence number of the next record (stored after TAIL)
  LOCK: 160, // i32 futex word: 0, or the pid of the process holding the publish lock
  LOCK_WAITERS: 164, // i32: processes asleep (or about to sleep) on LOCK
  WRITER: 168, // i32: the publisher entry + 1 of the last lock holder that wrote the publisher line (0: a repair or a join)
  // ---- wake line
  NOT_EMPTY: 256, // i32 futex word: bumped after a publish while subscribers sleep
  SUBSCRIBER_SLEEPERS: 260, // i32: subscribers asleep (or about to sleep) on NOT_EMPTY
  NOT_FULL: 264, // i32 futex word ('block'): bumped when a subscriber moves while a publisher waits for room
  PUBLISHER_WAITING: 268, // i32 flag: 1 while a publisher waits for room; the waking subscriber clears it
  CONTROL_END: 384,
  // ---- publisher table entry
  PUBLISHER_PID: 0, // i32: pid of the process holding the entry; 0: never held
  PUBLISHER_STATE: 4, // i32: 0 never held, 1 attached, 2 closed, 3 being claimed
  PUBLISHER_ENTRY: 16,
  // ---- subscriber table entry (one 128-byte block: its cursor is written on every poll)
  SUBSCRIBER_CURSOR: 0, // u64 position: where the subscriber reads next ('block': publishers never write past it + CAPACITY)
  SUBSCRIBER_PID: 8, // i32: pid of the process holding the entry; 0: free
  SUBSCRIBER_ENTRY: 128,
  // ---- record in the ring (8-byte aligned; never wraps)
  RECORD_LENGTH: 0, // i32: 0..MAX_MESSAGE, the message's bytes follow; -1 (PAD): skip to the ring's end
  RECORD_RESERVED: 4, // u32: 0
  RECORD_SEQ: 8, // u64: the message's sequence number (a PAD carries the next record's)
  RECORD_HEADER: 16,
});

/** 'MKTP' read as a little-endian u32. */
export const MAGIC = 0x50544b4d;
export const VERSION = 1;
export const PAD = -1;
/** Publisher entry states. */
export const ATTACHED = 1;
export const CLOSED = 2;
export const CLAIMING = 3;
/** FLAGS bits. */
export const FLAG_HAD_PUBLISHER = 1;
export const FLAG_PUBLISHER_DIED = 2;

/** What a publisher does when the slowest subscriber is a whole ring behind. */
export type TopicPolicy = 'block' | 'overwrite';
export const POLICIES: readonly TopicPolicy[] = ['block', 'overwrite'];

export const MIN_CAPACITY = 4096;
export const MAX_CAPACITY = 1 << 30;
export const MAX_TABLE = 4096;
const DEFAULT_CAPACITY = 1 << 20;
const DEFAULT_MAX_MESSAGE = 4096;
const DEFAULT_PUBLISHERS = 16;
const DEFAULT_SUBSCRIBERS = 64;
export const MAX_MESSAGE = MAX_CAPACITY / 2 - 16;
const MAX_TOTAL = 2 ** 32 - 1;
/**
 * Positions and sequence numbers are u64 in memory. JavaScript holds them as numbers: positions
 * (multiples of 8) are exact up to 2^56 bytes, sequence numbers up to 2^53.
 */
export const MAX_POSITION = 2 ** 56;

export interface TopicGeometry {
  readonly capacity: number;
  readonly maxMessageSize: number;
  readonly policy: TopicPolicy;
  readonly maxPublishers: number;
  readonly maxSubscribers: number;
  readonly publishersOffset: number;
  readonly subscribersOffset: number;
  readonly ringOffset: number;
  readonly totalSize: number;
}

export function align8(n: number): number {
  return (n + 7) & ~7;
}

function nextPow2(n: number): number {
  let p = 1;
  while (p < n && p < MAX_CAPACITY) p <<= 1;
  return p < n ? p * 2 : p;
}

/** Bytes a message of `length` bytes takes in the ring. */
export function recordSize(length: number): number {
  return align8(TOPIC.RECORD_HEADER + length);
}

/** The smallest ring for `maxMessageSize`: two of its records (one may follow a padding record). */
export function minCapacity(maxMessageSize: number): number {
  return Math.max(MIN_CAPACITY, nextPow2(2 * recordSize(maxMessageSize)));
}

export function topicGeometry(capacity: number, maxMessageSize: number, policy: TopicPolicy, maxPublishers: number, maxSubscribers: number): TopicGeometry {
  const publishersOffset = TOPIC.CONTROL_END;
  const subscribersOffset = Math.ceil((publishersOffset + maxPublishers * TOPIC.PUBLISHER_ENTRY) / 128) * 128;
  const ringOffset = subscribersOffset + maxSubscribers * TOPIC.SUBSCRIBER_ENTRY;
  return {
    capacity: capacity | 0,
    maxMessageSize: maxMessageSize | 0,
    policy,
    maxPublishers: maxPublishers | 0,
    maxSubscribers: maxSubscribers | 0,
    publishersOffset,
    subscribersOffset,
    ringOffset,
    totalSize: ringOffset + capacity,
  };
}

/** The options of create() that shape the topic (byteLength() takes these). */
export const GEOMETRY_OPTIONS = ['capacity', 'maxMessageSize', 'policy', 'maxPublishers', 'maxSubscribers', 'publishers'] as const;

export function parseTopicGeometry(o: Partial<Record<string, unknown>>): TopicGeometry {
  const maxMessageSize = o['maxMessageSize'] === undefined ? DEFAULT_MAX_MESSAGE : validateInt32(o['maxMessageSize'], 'options.maxMessageSize', 1, MAX_MESSAGE);
  const maxPublishers = o['maxPublishers'] === undefined ? DEFAULT_PUBLISHERS : validateInt32(o['maxPublishers'], 'options.maxPublishers', 1, MAX_TABLE);
  const maxSubscribers = o['maxSubscribers'] === undefined ? DEFAULT_SUBSCRIBERS : validateInt32(o['maxSubscribers'], 'options.maxSubscribers', 1, MAX_TABLE);
  const policy = o['policy'] === undefined ? 'block' : validateOneOf(o['policy'], 'options.policy', POLICIES);
  const least = minCapacity(maxMessageSize);
  let capacity: number;
  if (o['capacity'] === undefined) {
    capacity = Math.max(least, DEFAULT_CAPACITY);
  } else {
    const asked = validateInt32(o['capacity'], 'options.capacity', 1, MAX_CAPACITY);
    if (asked < least) throw outOfRange('options.capacity', `>= ${least} (two records of maxMessageSize ${maxMessageSize}, at least ${MIN_CAPACITY})`, asked);
    capacity = nextPow2(asked);
  }
  const g = topicGeometry(capacity, maxMessageSize, policy, maxPublishers, maxSubscribers);
  if (g.totalSize > MAX_TOTAL) throw invalidArgValue('options', o, `describes a topic of ${g.totalSize} bytes; at most 4 GiB - 1`);
  return g;
}

export function parseExpectedPublishers(o: Partial<Record<string, unknown>>): number {
  return o['publishers'] === undefined ? 0 : validateInt32(o['publishers'], 'options.publishers', 1, 0x7fffffff);
}

/** Write the header of a new topic (the caller zeroed the control area); the magic is published last, separately. */
export function writeTopicHeader(view: Buffer, g: TopicGeometry, expectedPublishers: number): void {
  writeHeader(view, VERSION, TOPIC.HEADER_END, g.totalSize);
  view.writeUInt32LE(g.capacity, TOPIC.CAPACITY);
  view.writeUInt32LE(g.maxMessageSize, TOPIC.MAX_MESSAGE);
  view.writeUInt32LE(g.policy === 'block' ? 0 : 1, TOPIC.POLICY);
  view.writeUInt32LE(g.maxPublishers, TOPIC.MAX_PUBLISHERS);
  view.writeUInt32LE(g.maxSubscribers, TOPIC.MAX_SUBSCRIBERS);
  view.writeUInt32LE(g.publishersOffset, TOPIC.PUBLISHERS_OFFSET);
  view.writeUInt32LE(g.subscribersOffset, TOPIC.SUBSCRIBERS_OFFSET);
  view.writeUInt32LE(g.ringOffset, TOPIC.RING_OFFSET);
  view.writeUInt32LE(expectedPublishers, TOPIC.EXPECTED_PUBLISHERS);
}

/**
 * Read and check a topic's header in `m` (docs/topic-layout.md, "What a reader must validate"):
 * `ERR_MMAP_BAD_HEADER` unless every number describes a topic of this version that fits the memory.
 */
export function readTopicGeometry(m: Mapping): TopicGeometry {
  if (m.length < TOPIC.CONTROL_END) throw mmapkitError('ERR_MMAP_BAD_HEADER', `Too small for a topic: ${m.length} bytes (at least ${TOPIC.CONTROL_END})`);
  const h = m.view(0, TOPIC.CONTROL_END);
  const { version, headerSize, totalSize } = readHeader(h, new Int32Array(h.buffer, h.byteOffset, TOPIC.CONTROL_END >>> 2), MAGIC, 'topic');
  if (version !== VERSION) throw mmapkitError('ERR_MMAP_BAD_HEADER', `Topic layout version ${version}; this library reads version ${VERSION} only`);
  if (headerSize !== TOPIC.HEADER_END) throw mmapkitError('ERR_MMAP_BAD_HEADER', `Corrupt topic header: header size ${headerSize}, expected ${TOPIC.HEADER_END}`);
  const capacity = h.readUInt32LE(TOPIC.CAPACITY);
  const maxMessageSize = h.readUInt32LE(TOPIC.MAX_MESSAGE);
  const policyWord = h.readUInt32LE(TOPIC.POLICY);
  const maxPublishers = h.readUInt32LE(TOPIC.MAX_PUBLISHERS);
  const maxSubscribers = h.readUInt32LE(TOPIC.MAX_SUBSCRIBERS);
  const expected = topicGeometry(capacity, maxMessageSize, policyWord === 1 ? 'overwrite' : 'block', maxPublishers, maxSubscribers);
  const bad =
    capacity < MIN_CAPACITY || capacity > MAX_CAPACITY || (capacity & (capacity - 1)) !== 0 ? `capacity ${capacity} is not a power of two from ${MIN_CAPACITY} to 2^30`
      : maxMessageSize < 1 || maxMessageSize > MAX_MESSAGE || minCapacity(maxMessageSize) > capacity ? `max message size ${maxMessageSize} does not fit a ring of ${capacity} bytes twice`
      : policyWord > 1 ? `policy ${policyWord} (0 block, 1 overwrite)`
      : maxPublishers < 1 || maxPublishers > MAX_TABLE || maxSubscribers < 1 || maxSubscribers > MAX_TABLE ? `table sizes ${maxPublishers}/${maxSubscribers}`
      : h.readUInt32LE(TOPIC.PUBLISHERS_OFFSET) !== expected.publishersOffset || h.readUInt32LE(TOPIC.SUBSCRIBERS_OFFSET) !== expected.subscribersOffset ||
        h.readUInt32LE(TOPIC.RING_OFFSET) !== expected.ringOffset ? 'table or ring offsets do not match the sizes'
      : totalSize !== expected.totalSize ? `total size ${totalSize}, expected ${expected.totalSize}`
      : totalSize > m.length ? `total size ${totalSize} is larger than the memory (${m.length} bytes)`
      : '';
  if (bad !== '') throw mmapkitError('ERR_MMAP_BAD_HEADER', `Corrupt topic header: ${bad}`);
  return expected;
}

export function publisherEntry(g: TopicGeometry, i: number): number {
  return g.publishersOffset + i * TOPIC.PUBLISHER_ENTRY;
}

export function subscriberEntry(g: TopicGeometry, i: number): number {
  return g.subscribersOffset + i * TOPIC.SUBSCRIBER_ENTRY;
}
