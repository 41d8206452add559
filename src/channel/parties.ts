/**
 * Who is attached to a channel: producers own a lane each (its PID and STATE words), consumers an
 * entry of the consumer table. Attaching, detaching, the end of the stream (every producer closed or
 * dead, every lane empty), who holds the channel (for create()'s refusal), and the read-only report
 * of `Channel.inspect()` (docs/channel-layout.md, "Producers", "Consumers", "End of stream").
 * @module
 */
import { mmapkitError } from '../internal/errors.js';
import { pidAlive } from '../internal/liveness.js';
import {
  ATTACHED,
  CHANNEL,
  CLAIMING,
  CLOSED,
  FLAG_HAD_PRODUCER,
  FLAG_PRODUCER_DIED,
  GENERATION_MASK,
  type Geometry,
  READER_ENTRY_BITS,
  READER_ENTRY_MASK,
  consumerEntry,
  laneControl,
} from './layout.js';

const PID = process.pid;
const C_PID = CHANNEL.CONSUMER_PID >>> 2;
const C_GEN = CHANNEL.CONSUMER_GENERATION >>> 2;
const L_PID = CHANNEL.LANE_PID >>> 2;
const L_STATE = CHANNEL.LANE_STATE >>> 2;
const L_WRITE = CHANNEL.LANE_WRITE >>> 2;
const L_READ = CHANNEL.LANE_READ >>> 2;
const L_READER = CHANNEL.LANE_READER >>> 2;
/** How long a producer found alive is assumed alive by the end-of-stream check. */
const LIVENESS_CACHE_MS = 50;

function full(what: 'producers' | 'consumers', entries: number): Error {
  return mmapkitError(
    'ERR_MMAP_CHANNEL_FULL',
    `The channel has no free ${what === 'producers' ? 'lane for more producers' : 'entry for more consumers'} (max ${entries}); close handles or create it with a larger max${what === 'producers' ? 'Producers' : 'Consumers'}`,
  );
}

/**
 * Attach a producer: take a lane that no live producer owns (never owned, closed, or its process
 * dead), count the attach and say a producer exists. Returns the lane. Records a closed or dead
 * producer left in the lane stay queued ahead of the new producer's.
 */
export function attachProducer(i32: Int32Array, g: Geometry): number {
  for (let pass = 0; pass < 2; pass++) {
    for (let lane = 0; lane < g.maxProducers; lane++) {
      const ctl = laneControl(g, lane) >>> 2;
      const state = Atomics.load(i32, ctl + L_STATE);
      // First pass: lanes never owned, or closed; second: lanes of dead producers too.
      const reusable = state === 0 || state === CLOSED || (pass === 1 && state === ATTACHED && !pidAlive(Atomics.load(i32, ctl + L_PID)));
      if (!reusable) continue;
      // A lane still attached to a dead process: that producer never closed. Say so before its
      // trace is gone with the lane.
      if (state === ATTACHED) Atomics.or(i32, CHANNEL.FLAGS >>> 2, FLAG_PRODUCER_DIED);
      // seq_cst compare-and-swap of the state (not the pid: threads of one process share it): of
      // two attaching producers, one gets the lane.
      if (Atomics.compareExchange(i32, ctl + L_STATE, state, CLAIMING) !== state) continue;
      Atomics.store(i32, ctl + L_PID, PID);
      Atomics.store(i32, ctl + L_STATE, ATTACHED);
      // Consumers look only at lanes below LANES_USED: raise it (it only grows).
      for (let seen = Atomics.load(i32, CHANNEL.LANES_USED >>> 2); seen < lane + 1;) {
        const found = Atomics.compareExchange(i32, CHANNEL.LANES_USED >>> 2, seen, lane + 1);
        if (found === seen) break;
        seen = found;
      }
      // After STATE: a consumer that counts this attach also sees the lane attached.
      Atomics.add(i32, CHANNEL.PRODUCER_COUNT >>> 2, 1);
      Atomics.or(i32, CHANNEL.FLAGS >>> 2, FLAG_HAD_PRODUCER);
      return lane;
    }
  }
  throw full('producers', g.maxProducers);
}

/** Close a producer's lane: consumers that see CLOSED have seen every record it published. */
export function closeProducer(i32: Int32Array, g: Geometry, lane: number): void {
  // seq_cst store, after the lane's last publish (its WRITE store).
  Atomics.store(i32, (laneControl(g, lane) >>> 2) + L_STATE, CLOSED);
}

/** A consumer's entry and the value it stores in LANE_READER while it holds a lane. */
export interface ConsumerSeat {
  entry: number;
  lockValue: number;
}

/**
 * Attach a consumer: take a free entry (or a dead process's), bump its generation, and let go of the
 * lanes an earlier holder of the entry left locked (it died holding them).
 */
export function attachConsumer(i32: Int32Array, g: Geometry): ConsumerSeat {
  for (let pass = 0; pass < 2; pass++) {
    for (let entry = 0; entry < g.maxConsumers; entry++) {
      const e = consumerEntry(g, entry) >>> 2;
      const pid = Atomics.load(i32, e + C_PID);
      if (pid !== 0 && (pass === 0 || pidAlive(pid))) continue;
      if (Atomics.compareExchange(i32, e + C_PID, pid, PID) !== pid) continue;
      const generation = (Atomics.add(i32, e + C_GEN, 1) + 1) & GENERATION_MASK;
      const lockValue = ((generation << READER_ENTRY_BITS) | (entry + 1)) | 0;
      releaseLanesOf(i32, g, entry, lockValue);
      return { entry, lockValue };
    }
  }
  throw full('consumers', g.maxConsumers);
}

/** Free every lane locked by an earlier holder of consumer entry `entry` (not by `keep`). */
function releaseLanesOf(i32: Int32Array, g: Geometry, entry: number, keep: number): void {
  for (let lane = 0; lane < g.maxProducers; lane++) {
    const at = (laneControl(g, lane) >>> 2) + L_READER;
    const v = Atomics.load(i32, at);
    if (v !== 0 && v !== keep && (v & READER_ENTRY_MASK) === entry + 1) Atomics.compareExchange(i32, at, v, 0);
  }
}

/** Detach a consumer (its lanes already let go of). */
export function closeConsumer(i32: Int32Array, g: Geometry, seat: ConsumerSeat): void {
  releaseLanesOf(i32, g, seat.entry, 0);
  Atomics.store(i32, (consumerEntry(g, seat.entry) >>> 2) + C_PID, 0);
}

/**
 * Whether the holder named by a LANE_READER value is gone: an entry out of range, an entry attached
 * again since (another generation), freed, or whose process died.
 */
export function holderGone(i32: Int32Array, g: Geometry, value: number): boolean {
  const entry = (value & READER_ENTRY_MASK) - 1;
  if (entry < 0 || entry >= g.maxConsumers) return true;
  const e = consumerEntry(g, entry) >>> 2;
  if ((Atomics.load(i32, e + C_GEN) & GENERATION_MASK) !== value >>> READER_ENTRY_BITS) return true;
  const pid = Atomics.load(i32, e + C_PID);
  return pid === 0 || (pid !== PID && !pidAlive(pid));
}

/**
 * The end-of-stream check of one consumer handle: remembers when it last found a live producer, so
 * that it looks in /proc (about 24 µs) at most every LIVENESS_CACHE_MS while one is attached.
 */
export class EndCheck {
  private liveSeenAt = -Infinity;

  /**
   * Every producer that attached has closed or died, as many attached as expected, and nothing is
   * left in any lane. Sets FLAG_PRODUCER_DIED first when a dead producer is part of the end.
   */
  atEnd(i32: Int32Array, g: Geometry, empty: () => boolean): boolean {
    if ((Atomics.load(i32, CHANNEL.FLAGS >>> 2) & FLAG_HAD_PRODUCER) === 0) return false;
    const expected = Atomics.load(i32, CHANNEL.EXPECTED_PRODUCERS >>> 2) >>> 0;
    if (expected !== 0 && Atomics.load(i32, CHANNEL.PRODUCER_COUNT >>> 2) >>> 0 < expected) return false;
    // LANES_USED after FLAGS (seq_cst loads, in the order of "End of stream"): a producer raises it
    // before it sets the flag, so a consumer that sees the flag sees the producer's lane.
    const used = Atomics.load(i32, CHANNEL.LANES_USED >>> 2);
    const lanesUsed = used > 0 ? Math.min(used, g.maxProducers) : 0;
    const now = performance.now();
    let dead = false;
    for (let lane = 0; lane < lanesUsed; lane++) {
      const ctl = laneControl(g, lane) >>> 2;
      if (Atomics.load(i32, ctl + L_STATE) !== ATTACHED) continue;
      const pid = Atomics.load(i32, ctl + L_PID);
      if (pid === 0) continue;
      if (pid === PID || now - this.liveSeenAt < LIVENESS_CACHE_MS) return false;
      if (pidAlive(pid)) {
        this.liveSeenAt = now;
        return false;
      }
      dead = true;
    }
    if (dead) this.liveSeenAt = -Infinity;
    // After the states: a producer stores its last WRITE before CLOSED.
    if (!empty()) return false;
    if (dead) Atomics.or(i32, CHANNEL.FLAGS >>> 2, FLAG_PRODUCER_DIED);
    return true;
  }
}

/** One producer lane, as {@link inspectParties} reports it. */
export interface ProducerReport {
  /** The lane's index. */
  readonly lane: number;
  readonly pid: number;
  /** `'attached'`, or `'closed'` (also for a lane being claimed, or a state word holding garbage). */
  readonly state: 'attached' | 'closed';
  /** Whether the process is alive now. */
  readonly alive: boolean;
  /** Bytes published and not yet taken by consumers (records and padding). */
  readonly queuedBytes: number;
  /** Bytes consumers have taken from this lane since it was created (modulo 2^32). */
  readonly takenBytes: number;
  /** The consumer entry holding the lane now, or -1. */
  readonly heldBy: number;
}

/** One consumer entry, as {@link inspectParties} reports it. */
export interface ConsumerReport {
  readonly entry: number;
  readonly pid: number;
  readonly alive: boolean;
}

export interface PartiesReport {
  readonly producers: ProducerReport[];
  readonly consumers: ConsumerReport[];
}

/** Every lane ever owned and every consumer entry in use (a snapshot; liveness from /proc). */
export function inspectParties(i32: Int32Array, g: Geometry): PartiesReport {
  const producers: ProducerReport[] = [];
  for (let lane = 0; lane < g.maxProducers; lane++) {
    const ctl = laneControl(g, lane) >>> 2;
    const pid = Atomics.load(i32, ctl + L_PID);
    if (pid === 0) continue;
    const state = Atomics.load(i32, ctl + L_STATE) === ATTACHED ? 'attached' : 'closed';
    const read = Atomics.load(i32, ctl + L_READ);
    const queued = (Atomics.load(i32, ctl + L_WRITE) - read) | 0;
    const reader = Atomics.load(i32, ctl + L_READER);
    producers.push({
      lane,
      pid,
      state,
      alive: pidAlive(pid),
      queuedBytes: queued >= 0 && queued <= g.laneSize ? queued : 0,
      takenBytes: read >>> 0,
      heldBy: reader === 0 ? -1 : (reader & READER_ENTRY_MASK) - 1,
    });
  }
  const consumers: ConsumerReport[] = [];
  for (let entry = 0; entry < g.maxConsumers; entry++) {
    const pid = Atomics.load(i32, (consumerEntry(g, entry) >>> 2) + C_PID);
    if (pid !== 0) consumers.push({ entry, pid, alive: pidAlive(pid) });
  }
  return { producers, consumers };
}

/**
 * The parties that hold the channel now: the process of the handle its create() returned, attached
 * producers and consumers, each only if its process is alive. Descriptions for the error message.
 */
export function liveParties(i32: Int32Array, g: Geometry): string[] {
  const live: string[] = [];
  const creator = Atomics.load(i32, CHANNEL.CREATOR >>> 2);
  if (creator !== 0 && pidAlive(creator)) live.push(`process ${creator} (the handle create() returned)`);
  const { producers, consumers } = inspectParties(i32, g);
  for (const p of producers) if (p.state === 'attached' && p.alive) live.push(`process ${p.pid} (a producer)`);
  for (const c of consumers) if (c.alive) live.push(`process ${c.pid} (a consumer)`);
  return live;
}
