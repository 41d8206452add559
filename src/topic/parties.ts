/**
 * Who is attached to a topic: publishers hold an entry of the publisher table (for the end of the
 * stream), subscribers an entry of the subscriber table with their cursor (for 'block': publishers
 * never write past the slowest cursor + the capacity). Attaching, detaching, the slowest live
 * cursor, dead subscribers, the end of the stream, and the read-only report of `Topic.inspect()`
 * (docs/topic-layout.md, "Publishers", "Subscribers", "End of stream").
 * @module
 */
import { mmapkitError } from '../internal/errors.js';
import { pidAlive } from '../internal/liveness.js';
import { ATTACHED, CLAIMING, CLOSED, FLAG_HAD_PUBLISHER, FLAG_PUBLISHER_DIED, TOPIC, type TopicGeometry, publisherEntry, subscriberEntry } from './layout.js';
import type { TopicMemory } from './memory.js';

const PID = process.pid;
const P_PID = TOPIC.PUBLISHER_PID >>> 2;
const P_STATE = TOPIC.PUBLISHER_STATE >>> 2;
const S_PID = TOPIC.SUBSCRIBER_PID >>> 2;
const LIVENESS_CACHE_MS = 50;

function full(what: 'publishers' | 'subscribers', entries: number): Error {
  return mmapkitError(
    'ERR_MMAP_TOPIC_FULL',
    `The topic has no free entry for more ${what} (max ${entries}); close handles or create it with a larger max${what === 'publishers' ? 'Publishers' : 'Subscribers'}`,
  );
}

/** Attach a publisher: an entry never held, closed, or of a dead process. Returns the entry. */
export function attachPublisher(i32: Int32Array, g: TopicGeometry): number {
  for (let pass = 0; pass < 2; pass++) {
    for (let entry = 0; entry < g.maxPublishers; entry++) {
      const e = publisherEntry(g, entry) >>> 2;
      const state = Atomics.load(i32, e + P_STATE);
      const reusable = state === 0 || state === CLOSED || (pass === 1 && state === ATTACHED && !pidAlive(Atomics.load(i32, e + P_PID)));
      if (!reusable) continue;
      if (state === ATTACHED) Atomics.or(i32, TOPIC.FLAGS >>> 2, FLAG_PUBLISHER_DIED);
      if (Atomics.compareExchange(i32, e + P_STATE, state, CLAIMING) !== state) continue;
      Atomics.store(i32, e + P_PID, PID);
      Atomics.store(i32, e + P_STATE, ATTACHED);
      Atomics.add(i32, TOPIC.PUBLISHER_COUNT >>> 2, 1);
      Atomics.or(i32, TOPIC.FLAGS >>> 2, FLAG_HAD_PUBLISHER);
      return entry;
    }
  }
  throw full('publishers', g.maxPublishers);
}

export function closePublisher(i32: Int32Array, g: TopicGeometry, entry: number): void {
  // seq_cst store, after the publisher's last TAIL store: a subscriber that sees CLOSED sees every record.
  Atomics.store(i32, (publisherEntry(g, entry) >>> 2) + P_STATE, CLOSED);
}

/**
 * Take a free subscriber entry (or a dead process's) and set its cursor. Called with the publish
 * lock held, so no publisher looks for the slowest cursor meanwhile; JOINS tells publishers to look
 * again. Returns the entry.
 */
export function attachSubscriber(mem: TopicMemory, cursor: number): number {
  const { i32, g } = mem;
  for (let pass = 0; pass < 2; pass++) {
    for (let entry = 0; entry < g.maxSubscribers; entry++) {
      const e = subscriberEntry(g, entry);
      const pid = Atomics.load(i32, (e >>> 2) + S_PID);
      if (pid !== 0 && (pass === 0 || pidAlive(pid))) continue;
      if (Atomics.compareExchange(i32, (e >>> 2) + S_PID, pid, PID) !== pid) continue;
      mem.store64(e + TOPIC.SUBSCRIBER_CURSOR, cursor);
      Atomics.add(i32, TOPIC.JOINS >>> 2, 1);
      return entry;
    }
  }
  throw full('subscribers', g.maxSubscribers);
}

export function closeSubscriber(mem: TopicMemory, entry: number): void {
  // Leaving only raises the slowest cursor: no lock needed. Wake publishers waiting on us.
  Atomics.store(mem.i32, (subscriberEntry(mem.g, entry) >>> 2) + S_PID, 0);
  mem.wakePublishers();
}

/**
 * The slowest cursor of the attached subscribers (Infinity: none). With `reap`, subscribers behind
 * `below` whose process is gone are detached first (they stop holding publishers back).
 */
export function slowestCursor(mem: TopicMemory, below: number, reap: boolean): number {
  const { i32, g } = mem;
  let slowest = Infinity;
  for (let entry = 0; entry < g.maxSubscribers; entry++) {
    const e = subscriberEntry(g, entry);
    const pid = Atomics.load(i32, (e >>> 2) + S_PID);
    if (pid === 0) continue;
    const cursor = Number(Atomics.load(mem.b64, (e + TOPIC.SUBSCRIBER_CURSOR) >>> 3));
    if (reap && cursor < below && pid !== PID && !pidAlive(pid)) {
      Atomics.compareExchange(i32, (e >>> 2) + S_PID, pid, 0);
      continue;
    }
    if (cursor < slowest) slowest = cursor;
  }
  return slowest;
}

/** The end-of-stream check of one subscription (its liveness answers cached for LIVENESS_CACHE_MS). */
export class TopicEndCheck {
  private liveSeenAt = -Infinity;

  /** Every publisher that attached (as many as expected) has closed or died. Sets FLAG_PUBLISHER_DIED for a dead one. */
  publishersGone(i32: Int32Array, g: TopicGeometry): boolean {
    if ((Atomics.load(i32, TOPIC.FLAGS >>> 2) & FLAG_HAD_PUBLISHER) === 0) return false;
    const expected = Atomics.load(i32, TOPIC.EXPECTED_PUBLISHERS >>> 2) >>> 0;
    if (expected !== 0 && Atomics.load(i32, TOPIC.PUBLISHER_COUNT >>> 2) >>> 0 < expected) return false;
    const now = performance.now();
    let dead = false;
    for (let entry = 0; entry < g.maxPublishers; entry++) {
      const e = publisherEntry(g, entry) >>> 2;
      const state = Atomics.load(i32, e + P_STATE);
      if (state === CLAIMING) return false;
      if (state !== ATTACHED) continue;
      const pid = Atomics.load(i32, e + P_PID);
      if (pid === PID || now - this.liveSeenAt < LIVENESS_CACHE_MS) return false;
      if (pidAlive(pid)) {
        this.liveSeenAt = now;
        return false;
      }
      dead = true;
    }
    if (dead) Atomics.or(i32, TOPIC.FLAGS >>> 2, FLAG_PUBLISHER_DIED);
    return true;
  }
}

/** One publisher entry, as `Topic.inspect()` reports it. */
export interface PublisherReport {
  readonly entry: number;
  readonly pid: number;
  readonly state: 'attached' | 'closed';
  readonly alive: boolean;
}

/** One subscriber entry, as `Topic.inspect()` reports it. */
export interface SubscriberReport {
  readonly entry: number;
  readonly pid: number;
  readonly alive: boolean;
  /** Where it reads next (a byte position in the stream). */
  readonly cursor: number;
}

export function inspectTopicParties(mem: { i32: Int32Array; b64: BigInt64Array; g: TopicGeometry }): { publishers: PublisherReport[]; subscribers: SubscriberReport[] } {
  const { i32, g } = mem;
  const publishers: PublisherReport[] = [];
  for (let entry = 0; entry < g.maxPublishers; entry++) {
    const e = publisherEntry(g, entry) >>> 2;
    const pid = Atomics.load(i32, e + P_PID);
    if (pid === 0) continue;
    publishers.push({ entry, pid, state: Atomics.load(i32, e + P_STATE) === ATTACHED ? 'attached' : 'closed', alive: pidAlive(pid) });
  }
  const subscribers: SubscriberReport[] = [];
  for (let entry = 0; entry < g.maxSubscribers; entry++) {
    const e = subscriberEntry(g, entry);
    const pid = Atomics.load(i32, (e >>> 2) + S_PID);
    if (pid === 0) continue;
    subscribers.push({ entry, pid, alive: pidAlive(pid), cursor: Number(Atomics.load(mem.b64, (e + TOPIC.SUBSCRIBER_CURSOR) >>> 3)) });
  }
  return { publishers, subscribers };
}

/** The live parties (for create()'s refusal): the creator, attached publishers and subscribers. */
export function liveTopicParties(mem: { i32: Int32Array; b64: BigInt64Array; g: TopicGeometry }): string[] {
  const live: string[] = [];
  const creator = Atomics.load(mem.i32, TOPIC.CREATOR >>> 2);
  if (creator !== 0 && pidAlive(creator)) live.push(`process ${creator} (the handle create() returned)`);
  const { publishers, subscribers } = inspectTopicParties(mem);
  for (const p of publishers) if (p.state === 'attached' && p.alive) live.push(`process ${p.pid} (a publisher)`);
  for (const s of subscribers) if (s.alive) live.push(`process ${s.pid} (a subscriber)`);
  return live;
}
