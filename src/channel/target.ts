/**
 * Where a channel lives and how it comes to be there: resolving a target (a path, `{ name }`, a
 * SharedMemory, a Mapping) to shared memory, creating the channel in it (refusing one in use, one
 * creator at a time), and the read-only inspection behind `Channel.inspect()`.
 * @module
 */
import { statSync } from 'node:fs';
import { invalidArgType, invalidArgValue, mmapkitError } from '../errors.js';
import { HEADER } from '../header.js';
import { pidAlive } from '../liveness.js';
import { Mapping, map, viewLocation } from '../mapping.js';
import type { OwnershipOptions } from '../ownership.js';
import { SharedMemory } from '../shm.js';
import { CHANNEL, FLAG_HAD_PRODUCER, FLAG_PRODUCER_DIED, type Geometry, MAGIC, VERSION, laneCapacity, readGeometry, writeChannelHeader } from './layout.js';
import { type ConsumerReport, type ProducerReport, inspectParties, liveParties } from './parties.js';

const PID = process.pid;
/** Layout versions of earlier mmapkit (slots, no lanes): create() never resets one of them. */
const OLD_VERSIONS: readonly number[] = [1, 2];

/** Where a channel lives: a file path, shared memory, a shared mapping, or `{ name }` (named shm). */
export type ChannelTarget = string | { name: string } | SharedMemory | Mapping;

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
 * what is there. `access: 'read'` only for inspection.
 */
export function resolveTarget(
  target: unknown,
  how: { size?: number; creating: boolean; ownership?: OwnershipOptions; options: readonly string[]; read?: boolean; call: string },
): Resolved {
  if (target instanceof SharedMemory) return { mapping: how.read ? target.mapping : checkShared(target.mapping, how.size), owned: undefined };
  if (target instanceof Mapping) return { mapping: how.read ? target : checkShared(target, how.size), owned: undefined };
  if (typeof target === 'string') {
    const mapping = how.creating ? map(target, { access: 'write', size: how.size!, mode: 0o600 }) : map(target, { access: how.read ? 'read' : 'write' });
    return { mapping, owned: mapping };
  }
  if (isNameTarget(target)) {
    // Only `name`: an option put here by mistake (`{ name, owner }`) must not be silently ignored.
    for (const key of Object.keys(target)) {
      if (key !== 'name') {
        const hint = how.options.includes(key) ? `; options go in the second argument: Channel.${how.call}({ name }, { ${key} })` : '';
        throw invalidArgValue(`target.${key}`, (target as Record<string, unknown>)[key], `is not a property of a { name } target${hint}`);
      }
    }
    const shm = how.creating ? SharedMemory.create(target.name, how.size!) : SharedMemory.open(target.name, { ...how.ownership, ...(how.read ? { access: 'read' as const } : {}) });
    return { mapping: shm.mapping, owned: shm };
  }
  throw invalidArgType('target', 'a file path, { name }, a SharedMemory or a Mapping', target);
}

/** Close or unmap what a handle opened itself. */
export function releaseOwned(owned: SharedMemory | Mapping | undefined): void {
  if (owned instanceof SharedMemory) owned.close();
  else owned?.unmap();
}

function checkShared(m: Mapping, size: number | undefined): Mapping {
  if (!m.shared) throw mmapkitError('ERR_MMAP_NOT_SHARED', "A channel needs memory shared between processes (a 'write' mapping or SharedMemory)");
  if (size !== undefined && m.length < size) throw invalidArgValue('target', `${m.length} bytes`, `is too small for this channel (${size} bytes; see Channel.byteLength())`);
  return m;
}

/** The address of a channel's memory, which must be 128-byte aligned (its hot words have a line pair each). */
export function alignedBase(view: Buffer): bigint {
  const base = viewLocation(view)!.addr;
  if (base % 128n !== 0n) {
    throw invalidArgValue('target', 'a mapping at an unaligned address', 'must start the channel on a 128-byte boundary in memory (map the file at offset 0)');
  }
  return base;
}

/** An Int32Array over the first `length` bytes of a view. */
export function words(view: Buffer, length = view.length): Int32Array {
  return new Int32Array(view.buffer, view.byteOffset, length >>> 2);
}

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

function inUse(live: string[]): Error {
  return mmapkitError(
    'ERR_MMAP_CHANNEL_IN_USE',
    `A channel is already there, in use by ${live.join(', ')}: creating one would reset it under its users. ` +
      'Use Channel.open() to join it, or create the new one once every handle on the old one is closed',
  );
}

/** create() of a path: refuse a live channel in an existing file before map() grows or changes it. */
export function refuseLiveFile(path: string): void {
  let st;
  try {
    st = statSync(path);
  } catch {
    return; // missing (map() creates it) or unreadable (map() reports why)
  }
  if (!st.isFile() || st.size < CHANNEL.CONTROL_END) return;
  const m = map(path, { access: 'write' });
  try {
    const live = holders(m);
    if (live.length > 0) throw inUse(live);
  } finally {
    m.unmap();
  }
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
  let seen = Atomics.load(i32, CHANNEL.CREATOR >>> 2);
  for (let tries = 0; ; tries++) {
    const live = holders(m);
    if (live.length > 0) throw inUse(live);
    if (seen !== 0 && pidAlive(seen)) throw inUse([`process ${seen} (creating a channel there now)`]);
    // seq_cst compare-and-swap: from 0 or a dead pid to ours; whoever wins owns the memory.
    const found = Atomics.compareExchange(i32, CHANNEL.CREATOR >>> 2, seen, PID);
    if (found === seen) {
      // seq_cst store: unpublish the old channel (if any) before we rewrite its header.
      Atomics.store(i32, CHANNEL.MAGIC >>> 2, 0);
      return;
    }
    if (tries === 2 || (found !== 0 && pidAlive(found))) throw inUse([`process ${found} (creating a channel there now)`]);
    seen = found;
  }
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
