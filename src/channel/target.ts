/**
 * Where a channel lives and how it comes to be there: resolving a target (a path, `{ name }`, a
 * SharedMemory, a Mapping) to shared memory, creating the channel in it (refusing one in use, one
 * creator at a time), and the read-only inspection behind `Channel.inspect()`.
 * @module
 */
import { mmapkitError } from '../internal/errors.js';
import { HEADER } from '../header.js';
import { pidAlive } from '../internal/liveness.js';
import type { Mapping } from '../mapping.js';
import { alignedBase, claimCreator as claimCreatorWord, inUseError, refuseLiveFile as refuseLiveStructure, type SharedTarget, words } from '../target.js';
import { CHANNEL, FLAG_HAD_PRODUCER, FLAG_PRODUCER_DIED, type Geometry, MAGIC, VERSION, laneCapacity, readGeometry, writeChannelHeader } from './layout.js';
import { type ConsumerReport, type ProducerReport, inspectParties, liveParties } from './parties.js';

/** Where a channel lives: a file path, shared memory, a shared mapping, or `{ name }` (named shm). */
export type ChannelTarget = SharedTarget;
/** Layout versions of earlier mmapkit (slots, no lanes): create() never resets one of them. */
const OLD_VERSIONS: readonly number[] = [1, 2];

/** The parties holding the channel in `m`, if `m` holds a channel this version reads; none otherwise. */
function holders(m: Mapping): string[] {
  let g: Geometry;
  try {
    g = readGeometry(m);
  } catch {
    return []; // not a channel we can read: nothing in it follows the protocol
  }
  return liveParties(words(m.view(0, g.ringsOffset)), g);
}

const inUse = (live: string[]): Error => inUseError('Channel', live);

/** create() of a path: refuse a live channel in an existing file before map() grows or changes it. */
export function refuseLiveFile(path: string): void {
  refuseLiveStructure(path, CHANNEL.CONTROL_END, holders, inUse);
}

/**
 * Refuse to create over a live channel, then name this process in CREATOR by compare-and-swap from
 * what was there: of two processes that create() the same memory at once, one wins, the other sees
 * the word change under it and backs off. A live process named in CREATOR always means "in use": it
 * holds the handle its create() returned, or its create() is under way. Only a dead creator's pid or
 * 0 is ever replaced. The magic is zeroed after the compare-and-swap is won, never before: a loser
 * must not unpublish the winner's channel.
 */
function claimCreator(m: Mapping, i32: Int32Array): void {
  // A channel of an earlier layout version (1 and 2 had no lanes): its parties are not in our tables and
  // its word at CREATOR means something else. Never reset it: its users cannot be seen from here.
  const view = m.view(0, CHANNEL.CONTROL_END);
  if (Atomics.load(i32, CHANNEL.MAGIC >>> 2) >>> 0 === MAGIC && OLD_VERSIONS.includes(view.readUInt16LE(CHANNEL.VERSION))) {
    throw mmapkitError(
      'ERR_MMAP_CHANNEL_IN_USE',
      `The memory holds a channel of layout version ${view.readUInt16LE(CHANNEL.VERSION)} (this version makes ${VERSION}), whose users this version cannot see: ` +
        'create() does not reset it. Once no process uses it, remove the file or name (or zero its first 8 bytes) and create the channel again',
    );
  }
  claimCreatorWord(i32, CHANNEL.CREATOR >>> 2, CHANNEL.MAGIC >>> 2, () => holders(m), inUse, 'channel');
}

/**
 * Lay out a new channel in `mapping` (docs/channel-layout.md, "Creating"): claim CREATOR, zero the
 * header, control lines, lanes and table (not the rings: no record is read past LANE_WRITE), write the
 * header, publish the magic last.
 */
export function initChannel(mapping: Mapping, g: Geometry, expectedProducers: number): void {
  const view = mapping.view(0, g.totalSize);
  alignedBase(view); // refuse before writing anything
  const i32 = words(view, g.ringsOffset);
  claimCreator(mapping, i32);
  view.fill(0, 0, CHANNEL.CREATOR);
  view.fill(0, CHANNEL.CREATOR + 4, g.ringsOffset);
  writeChannelHeader(view, g, expectedProducers);
  // seq_cst store, last: publishes the initialized channel to processes that check the magic
  Atomics.store(i32, CHANNEL.MAGIC >>> 2, MAGIC | 0);
}

/** What `Channel.inspect()` found. */
export interface ChannelInspection {
  /**
   * `'channel'`: a channel this version reads (every other field is filled in); `'uninitialized'`:
   * no magic yet (zeros, or a create() under way or abandoned: see `partial`); `'other-version'`: a
   * channel of another layout version (`version`); `'corrupt'`: a channel header that does not
   * validate (`reason`); `'foreign'`: something else.
   */
  readonly state: 'channel' | 'uninitialized' | 'other-version' | 'corrupt' | 'foreign';
  /** Bytes of the memory inspected. */
  readonly memorySize: number;
  /** The layout version in the header (when the magic is there, or a create() wrote it before the magic). */
  readonly version?: number;
  /** `'uninitialized'`: whether the bytes before the magic hold a header being written (not all zeros). */
  readonly partial?: boolean;
  /** `'corrupt'`: what does not validate. */
  readonly reason?: string;
  /** The channel's limits (state `'channel'`). */
  readonly limits?: {
    readonly laneSize: number;
    readonly maxMessageSize: number;
    readonly capacity: number;
    readonly maxProducers: number;
    readonly maxConsumers: number;
    readonly totalSize: number;
    /** The `producers` option of create(), or undefined. */
    readonly producers: number | undefined;
  };
  /** Pid of the process holding the handle create() returned (0: closed), and whether it lives. */
  readonly creator?: { readonly pid: number; readonly alive: boolean };
  /** Whether a producer has ever attached, and whether one went away without closing. */
  readonly hadProducer?: boolean;
  readonly producerDied?: boolean;
  /** Producer attaches over the channel's life. */
  readonly producerAttaches?: number;
  /** Every lane ever owned by a producer, and every consumer entry in use. */
  readonly producers?: readonly ProducerReport[];
  readonly consumers?: readonly ConsumerReport[];
}

/** Read what `m` holds without changing anything (nothing in it is trusted). */
export function inspectMemory(m: Mapping): ChannelInspection {
  const memorySize = m.length;
  if (memorySize < CHANNEL.CONTROL_END) return { state: 'foreign', memorySize, reason: `${memorySize} bytes, less than a channel header` };
  const h = m.view(0, CHANNEL.CONTROL_END);
  const hw = words(h);
  const magic = Atomics.load(hw, CHANNEL.MAGIC >>> 2) >>> 0;
  const version = h.readUInt16LE(HEADER.VERSION);
  if (magic === 0) {
    const partial = !h.every((b) => b === 0);
    return partial && version !== 0 ? { state: 'uninitialized', memorySize, partial, version } : { state: 'uninitialized', memorySize, partial };
  }
  if (magic !== MAGIC) return { state: 'foreign', memorySize, reason: `magic 0x${magic.toString(16)}` };
  if (version !== VERSION) return { state: 'other-version', memorySize, version };
  let g: Geometry;
  try {
    g = readGeometry(m);
  } catch (err) {
    return { state: 'corrupt', memorySize, version, reason: (err as Error).message };
  }
  const i32 = words(m.view(0, g.ringsOffset));
  const flags = Atomics.load(i32, CHANNEL.FLAGS >>> 2);
  const creator = Atomics.load(i32, CHANNEL.CREATOR >>> 2);
  const expected = Atomics.load(i32, CHANNEL.EXPECTED_PRODUCERS >>> 2) >>> 0;
  return {
    state: 'channel',
    memorySize,
    version,
    limits: {
      laneSize: g.laneSize,
      maxMessageSize: g.maxMessageSize,
      capacity: laneCapacity(g.laneSize, g.maxMessageSize),
      maxProducers: g.maxProducers,
      maxConsumers: g.maxConsumers,
      totalSize: g.totalSize,
      producers: expected === 0 ? undefined : expected,
    },
    creator: { pid: creator, alive: creator !== 0 && pidAlive(creator) },
    hadProducer: (flags & FLAG_HAD_PRODUCER) !== 0,
    producerDied: (flags & FLAG_PRODUCER_DIED) !== 0,
    producerAttaches: Atomics.load(i32, CHANNEL.PRODUCER_COUNT >>> 2) >>> 0,
    ...inspectParties(i32, g),
  };
}
