/**
 * A topic handle's view of its memory: the typed arrays over it, the u64 positions, the futex words,
 * and the wake-ups every party sends. One per Topic handle; its subscriptions share it.
 * @module
 */
import { TSO } from '../channel/ring.js';
import { FAULTS, FaultWatch, faultsMoved, faultsNow } from '../channel/fault.js';
import { mmapkitError } from '../internal/errors.js';
import type { Mapping } from '../mapping.js';
import type { SharedMemory } from '../shm.js';
import { alignedBase, releaseOwned, words } from '../target.js';
import { type Word, notifyWord } from '../wait.js';
import { MAX_POSITION, TOPIC, type TopicGeometry } from './layout.js';

const INT32_MAX = 0x7fffffff;
const SLEEPERS = TOPIC.SUBSCRIBER_SLEEPERS >>> 2;

export function topicCorrupt(what: string): Error {
  return mmapkitError('ERR_MMAP_TOPIC_CORRUPT', what);
}

export class TopicMemory {
  readonly u8: Buffer;
  readonly i32: Int32Array;
  readonly b64: BigInt64Array;
  /** i32 index of the ring's first word, and the ring's size - 1. */
  readonly ring: number;
  readonly mask: number;
  readonly notEmpty: Word;
  readonly notFull: Word;
  readonly lock: Word;
  closed = false;
  /**
   * The guard's count of repaired faults (FAULTS), the count when this handle last found its memory
   * whole, and the rest of what it knows of its memory's faults: a look is
   * `faultCount[0] !== faultsSeen` (see checkFaults).
   */
  readonly faultCount: Int32Array;
  faultsSeen: number;
  readonly faults: FaultWatch;

  constructor(
    readonly mapping: Mapping,
    readonly owned: SharedMemory | Mapping | undefined,
    readonly g: TopicGeometry,
  ) {
    // Before the view (which refuses a mapping faulted already): any fault after this moves the count.
    // (Stored twice with different values: V8 then knows from the start that the field changes.)
    this.faultsSeen = -2;
    this.faultsSeen = faultsNow();
    this.u8 = mapping.view(0, g.totalSize);
    this.i32 = words(this.u8);
    this.b64 = new BigInt64Array(this.u8.buffer, this.u8.byteOffset, g.ringOffset >>> 3);
    this.ring = g.ringOffset >>> 2;
    this.mask = g.capacity - 1;
    const base = Number(alignedBase(this.u8, 'topic'));
    this.faultCount = FAULTS;
    this.faults = new FaultWatch(mapping, 'topic', base, g.totalSize);
    const word = (offset: number): Word => ({ mapping, addr: base + offset, array: this.i32, index: offset >>> 2 });
    this.notEmpty = word(TOPIC.NOT_EMPTY);
    this.notFull = word(TOPIC.NOT_FULL);
    this.lock = word(TOPIC.LOCK);
    this.instance = this.u8.readUInt32LE(TOPIC.INSTANCE);
  }

  /** The INSTANCE word: the same in every handle on this topic, in every process. */
  readonly instance: number;

  /**
   * Throw ERR_MMAP_FAULTED if the topic's memory faulted: a page of it was lost (truncated by another
   * process, or out of space) and reads as zeros. One load and one compare while no fault was repaired
   * anywhere in the process. Called after every access a message depends on (the copies out, the
   * writes of a publish): the guard repairs a fault synchronously, so the count has moved by then.
   */
  checkFaults(what: string): void {
    if (this.faultCount[0] !== this.faultsSeen) faultsMoved(this, what);
  }

  /** A u64 word (seq_cst load) as a number; ERR_MMAP_TOPIC_CORRUPT past what a number holds exactly. */
  load64(offset: number): number {
    const v = Number(Atomics.load(this.b64, offset >>> 3));
    if (v < 0 || v > MAX_POSITION) throw topicCorrupt(`${offset === TOPIC.NEXT_SEQ ? 'sequence number' : 'position'} ${v} at byte ${offset}`);
    return v;
  }

  /** A u64 word (seq_cst load) as a number, unchecked (negative for garbage past 2^63). */
  raw64(offset: number): number {
    return Number(Atomics.load(this.b64, offset >>> 3));
  }

  /** seq_cst store of a u64 word. */
  store64(offset: number, value: number): void {
    Atomics.store(this.b64, offset >>> 3, BigInt(value));
  }

  /**
   * After a publish: wake every sleeping subscriber, if one sleeps. SUBSCRIBER_SLEEPERS is a flag
   * each sleeper sets and the waker clears by exchange: one wake-up per sleep, not one per publish
   * while the woken subscribers are still on their way (a FUTEX_WAKE of four sleepers costs more
   * than the message).
   */
  wakeSubscribers(): void {
    // After the seq_cst store of TAIL; a sleeper sets the flag, then looks at TAIL again.
    const i32 = this.i32;
    if ((TSO ? i32[SLEEPERS]! : Atomics.load(i32, SLEEPERS)) !== 0 && Atomics.exchange(i32, SLEEPERS, 0) !== 0) {
      Atomics.add(i32, TOPIC.NOT_EMPTY >>> 2, 1);
      notifyWord(this.notEmpty, INT32_MAX);
    }
  }

  /** After a subscriber moved its cursor ('block'): wake the publishers waiting for room, if any. */
  wakePublishers(): void {
    // seq_cst exchange: of the subscribers that move meanwhile, one clears the flag and wakes.
    if (Atomics.load(this.i32, TOPIC.PUBLISHER_WAITING >>> 2) !== 0 && Atomics.exchange(this.i32, TOPIC.PUBLISHER_WAITING >>> 2, 0) !== 0) {
      Atomics.add(this.i32, TOPIC.NOT_FULL >>> 2, 1);
      notifyWord(this.notFull, INT32_MAX);
    }
  }

  release(): void {
    if (this.closed) return;
    this.closed = true;
    releaseOwned(this.owned);
  }
}
