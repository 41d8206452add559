/**
 * A topic's memory coming to be: creating a topic in a target (refusing one in use, one creator at a
 * time) and the read-only inspection behind `Topic.inspect()`.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { HEADER } from '../header.js';
import { pidAlive } from '../internal/liveness.js';
import type { Mapping } from '../mapping.js';
import { alignedBase, claimCreator, inUseError, refuseLiveFile, words } from '../target.js';
import { FLAG_HAD_PUBLISHER, FLAG_PUBLISHER_DIED, MAGIC, TOPIC, type TopicGeometry, type TopicPolicy, VERSION, readTopicGeometry, writeTopicHeader } from './layout.js';
import { type PublisherReport, type SubscriberReport, inspectTopicParties, liveTopicParties } from './parties.js';

function viewsOf(m: Mapping, g: TopicGeometry): { i32: Int32Array; b64: BigInt64Array; g: TopicGeometry } {
  const v = m.view(0, g.ringOffset);
  return { i32: words(v), b64: new BigInt64Array(v.buffer, v.byteOffset, g.ringOffset >>> 3), g };
}

function holders(m: Mapping): string[] {
  let g: TopicGeometry;
  try {
    g = readTopicGeometry(m);
  } catch {
    return [];
  }
  return liveTopicParties(viewsOf(m, g));
}

const inUse = (live: string[]): Error => inUseError('Topic', live);

/** create() of a path: refuse a live topic in an existing file before map() grows or changes it. */
export function refuseLiveTopicFile(path: string): void {
  refuseLiveFile(path, TOPIC.CONTROL_END, holders, inUse);
}

/**
 * Lay out a new topic in `mapping` (docs/topic-layout.md, "Creating"): claim CREATOR, zero the header,
 * control lines and tables (not the ring: nothing is read past TAIL), write the header, publish the magic last.
 */
export function initTopic(mapping: Mapping, g: TopicGeometry, expectedPublishers: number): void {
  const view = mapping.view(0, g.totalSize);
  alignedBase(view, 'topic');
  const i32 = words(view, g.ringOffset);
  claimCreator(i32, TOPIC.CREATOR >>> 2, TOPIC.MAGIC >>> 2, () => holders(mapping), inUse, 'topic');
  view.fill(0, 0, TOPIC.CREATOR);
  view.fill(0, TOPIC.CREATOR + 4, g.ringOffset);
  writeTopicHeader(view, g, expectedPublishers);
  view.writeUInt32LE(randomBytes(4).readUInt32LE(0), TOPIC.INSTANCE);
  Atomics.store(i32, TOPIC.MAGIC >>> 2, MAGIC | 0);
}

/** What `Topic.inspect()` found. */
export interface TopicInspection {
  /** `'topic'`: a topic this version reads; `'uninitialized'`: no magic yet; `'other-version'`; `'corrupt'` (see `reason`); `'foreign'`: something else. */
  readonly state: 'topic' | 'uninitialized' | 'other-version' | 'corrupt' | 'foreign';
  readonly memorySize: number;
  readonly version?: number;
  readonly reason?: string;
  readonly limits?: {
    readonly capacity: number;
    readonly maxMessageSize: number;
    readonly policy: TopicPolicy;
    readonly maxPublishers: number;
    readonly maxSubscribers: number;
    readonly totalSize: number;
    readonly publishers: number | undefined;
  };
  /** The stream's positions (bytes since creation) and the next message's sequence number. */
  readonly positions?: { readonly head: number; readonly tail: number; readonly nextSequence: number; readonly locked: number };
  readonly creator?: { readonly pid: number; readonly alive: boolean };
  readonly hadPublisher?: boolean;
  readonly publisherDied?: boolean;
  readonly publishers?: readonly PublisherReport[];
  readonly subscribers?: readonly SubscriberReport[];
}

/** Read what `m` holds without changing anything (nothing in it is trusted). */
export function inspectTopicMemory(m: Mapping): TopicInspection {
  const memorySize = m.length;
  if (memorySize < TOPIC.CONTROL_END) return { state: 'foreign', memorySize, reason: `${memorySize} bytes, less than a topic header` };
  const h = m.view(0, TOPIC.CONTROL_END);
  const magic = Atomics.load(words(h), TOPIC.MAGIC >>> 2) >>> 0;
  const version = h.readUInt16LE(HEADER.VERSION);
  if (magic === 0) return { state: 'uninitialized', memorySize };
  if (magic !== MAGIC) return { state: 'foreign', memorySize, reason: `magic 0x${magic.toString(16)}` };
  if (version !== VERSION) return { state: 'other-version', memorySize, version };
  let g: TopicGeometry;
  try {
    g = readTopicGeometry(m);
  } catch (err) {
    return { state: 'corrupt', memorySize, version, reason: (err as Error).message };
  }
  const v = viewsOf(m, g);
  const flags = Atomics.load(v.i32, TOPIC.FLAGS >>> 2);
  const creator = Atomics.load(v.i32, TOPIC.CREATOR >>> 2);
  const expected = Atomics.load(v.i32, TOPIC.EXPECTED_PUBLISHERS >>> 2) >>> 0;
  const at = (offset: number): number => Number(Atomics.load(v.b64, offset >>> 3));
  return {
    state: 'topic',
    memorySize,
    version,
    limits: {
      capacity: g.capacity,
      maxMessageSize: g.maxMessageSize,
      policy: g.policy,
      maxPublishers: g.maxPublishers,
      maxSubscribers: g.maxSubscribers,
      totalSize: g.totalSize,
      publishers: expected === 0 ? undefined : expected,
    },
    positions: { head: at(TOPIC.HEAD), tail: at(TOPIC.TAIL), nextSequence: at(TOPIC.NEXT_SEQ), locked: Atomics.load(v.i32, TOPIC.LOCK >>> 2) },
    creator: { pid: creator, alive: creator !== 0 && pidAlive(creator) },
    hadPublisher: (flags & FLAG_HAD_PUBLISHER) !== 0,
    publisherDied: (flags & FLAG_PUBLISHER_DIED) !== 0,
    ...inspectTopicParties(v),
  };
}
