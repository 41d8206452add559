/**
 * The lane protocol: one single-producer byte ring per producer handle, read by whichever consumer
 * holds the lane's reader lock (docs/channel-layout.md, "Lanes", "Sending", "Receiving").
 *
 * Records are length-prefixed and 8-byte aligned, and never wrap: a record that would cross the end
 * of the ring is preceded by a padding record to the end. The producer keeps its write position
 * locally and publishes it once per batch (one seq_cst store of LANE_WRITE); it caches the read
 * position and loads LANE_READ only when the cache says the ring is full. A consumer locks a lane
 * (one compare-and-swap of LANE_READER), reads as many records as it wants between LANE_READ and the
 * LANE_WRITE it loaded, and stores LANE_READ once before it unlocks. Positions are byte counters
 * modulo 2^32 kept in i32; a ring offset is `position & (laneSize - 1)`.
 *
 * Nothing read from the memory is trusted: every position and length is checked against the lane's
 * size before it is used, so a hostile peer can make a call fail with ERR_MMAP_CHANNEL_CORRUPT but
 * never make it touch memory outside the lane or loop without bound.
 * @module
 */
import { mmapkitError, type MmapkitError } from '../internal/errors.js';
import { CHANNEL, type Geometry, PAD, laneControl, laneRing } from './layout.js';

const WRITE = CHANNEL.LANE_WRITE >>> 2;
const READ = CHANNEL.LANE_READ >>> 2;
const READER = CHANNEL.LANE_READER >>> 2;
const HEADER = CHANNEL.RECORD_HEADER;
const LANE_WORDS = CHANNEL.LANE_CONTROL >>> 2;
const WAITING = CHANNEL.LANE_PRODUCER_WAITING >>> 2;
/**
 * x86-64 orders memory for us: every load is an acquire, and a seq_cst store (Atomics.store is an
 * xchg there, a full barrier) is never passed by a later load. So on x86 the loads below that only
 * need those orders are plain typed-array loads (V8 does not move one across a call of an Atomics
 * builtin). Elsewhere (arm64: a plain load may pass an earlier release store) they are Atomics.load.
 * Each Atomics call is a builtin call of about 10 ns on memory that is not a SharedArrayBuffer.
 */
const TSO = process.arch === 'x64' || process.arch === 'ia32';
const CONSUMER_SLEEPERS = CHANNEL.CONSUMER_SLEEPERS >>> 2;

export function corrupt(what: string): MmapkitError {
  return mmapkitError('ERR_MMAP_CHANNEL_CORRUPT', what);
}

/** The producer's side of its lane. One per producer handle; only it writes the ring and LANE_WRITE. */
export { TSO };

export class LaneWriter {
  readonly lane: number;
  private readonly i32: Int32Array;
  private readonly u8: Uint8Array;
  /** i32 index of the lane's control block. */
  readonly ctl: number;
  private readonly ring: number;
  private readonly size: number;
  private readonly mask: number;
  /** Where the next record goes: at or after what is published. */
  private w: number;
  /** What LANE_WRITE holds (this handle stored it). */
  private published: number;
  /** LANE_READ as last loaded: the producer may write up to #r + size. */
  private r: number;
  /** Called before garbage is reported: throws ERR_MMAP_FAULTED instead when the memory faulted (its zeros are no peer's doing). */
  private readonly faults: () => void;

  constructor(i32: Int32Array, u8: Buffer, g: Geometry, lane: number, faults: () => void) {
    this.lane = lane;
    this.i32 = i32;
    this.faults = faults;
    // A plain Uint8Array, not the Buffer: TypedArray#set is about 6 ns cheaper on its own type.
    this.u8 = new Uint8Array(u8.buffer, u8.byteOffset, u8.byteLength);
    this.ctl = laneControl(g, lane) >>> 2;
    this.ring = laneRing(g, lane);
    this.size = g.laneSize;
    this.mask = g.laneSize - 1;
    // Take over the lane where its last producer left it: its published records stay queued ahead of
    // ours. Unpublished bytes past LANE_WRITE were never seen by anyone and are overwritten.
    let w = Atomics.load(i32, this.ctl + WRITE);
    const r = Atomics.load(i32, this.ctl + READ);
    const queued = (w - r) | 0;
    if ((w & 7) !== 0 || queued < 0 || queued > g.laneSize) {
      // Garbage in the positions: start at the first aligned position at or after the consumers'
      // (an unaligned read position is then reported, and repaired, by the next consumer).
      w = (r + 7) & ~7;
      Atomics.store(i32, this.ctl + WRITE, w);
    }
    // Each mutable field is stored twice with different values: V8 then knows it changes before any
    // code is optimized against it (a field that is only later found to change throws away every
    // optimized function that read it).
    this.w = ~w;
    this.published = ~w;
    this.r = ~r;
    this.w = w;
    this.published = w;
    this.r = r;
  }

  /**
   * Make room for a record of `length` bytes: the byte offset (in the channel) of the record's
   * header, after a padding record if it would cross the end of the ring; -1 when the lane is full.
   */
  reserve(length: number): number {
    const need = (HEADER + length + 7) & ~7;
    let off = this.w & this.mask;
    const pad = off + need > this.size ? this.size - off : 0;
    if (pad + need > this.size - ((this.w - this.r) | 0)) {
      // The cached read position says full: load the real one (consumers may have taken records).
      const r = Atomics.load(this.i32, this.ctl + READ);
      const queued = (this.w - r) | 0;
      if (queued < 0 || queued > this.size || (r & 7) !== 0) {
        // Store our own write position again: a consumer that finds the positions apart resyncs its
        // read position to it, and the lane carries on after one error on each side.
        this.published = this.w;
        Atomics.store(this.i32, this.ctl + WRITE, this.w);
        this.faults();
        throw corrupt(`lane ${this.lane}: read position ${r} is not within the ${this.size} bytes before the write position ${this.w}`);
      }
      this.r = r;
      if (pad + need > this.size - queued) return -1;
    }
    if (pad > 0) {
      this.i32[(this.ring + off) >>> 2] = PAD;
      this.w = (this.w + pad) | 0;
      off = 0;
    }
    return this.ring + off;
  }

  /** Finish the record reserved at `at` with `length` bytes of message (not yet published). */
  commit(at: number, length: number): void {
    this.i32[at >>> 2] = length;
    this.i32[(at >>> 2) + 1] = 0;
    this.w = (this.w + ((HEADER + length + 7) & ~7)) | 0;
  }

  /** Append one message (not yet published); false when the lane is full. */
  append(bytes: Uint8Array): boolean {
    const length = bytes.byteLength;
    const need = (HEADER + length + 7) & ~7;
    const w = this.w;
    const off = w & this.mask;
    // Fast path: the record fits before the end of the ring, and the cached read position says
    // there is room (no load of LANE_READ, no padding).
    if (off + need <= this.size && need <= this.size - ((w - this.r) | 0)) {
      const at = this.ring + off;
      // TypedArray#set is a memmove: 13 ns for 64 bytes, where a byte loop takes 107 ns.
      this.u8.set(bytes, at + HEADER);
      const i32 = this.i32;
      i32[at >>> 2] = length;
      i32[(at >>> 2) + 1] = 0;
      this.w = (w + need) | 0;
      return true;
    }
    return this.appendSlow(bytes);
  }

  /** append() when the record needs padding first, or the cached read position says full. */
  private appendSlow(bytes: Uint8Array): boolean {
    const length = bytes.byteLength;
    const at = this.reserve(length);
    if (at < 0) return false;
    this.u8.set(bytes, at + HEADER);
    this.commit(at, length);
    return true;
  }

  /** Publish every record appended so far. */
  publish(): void {
    if (this.w === this.published) return;
    this.published = this.w;
    // seq_cst store: publishes the records' bytes and lengths to the consumer that loads this
    // position; it also orders before the caller's load of CONSUMER_SLEEPERS (see "Sleeping").
    Atomics.store(this.i32, this.ctl + WRITE, this.w);
  }

  /** Forget appended records that were not published (a reservation given up, a faulted lane). */
  rollback(): void {
    this.w = this.published;
  }

  /**
   * Read the word where the next record goes (before a wait for room): a page of the ring lost under
   * the lane faults now, so the wait reports it instead of waiting for room that may never come.
   */
  probe(): number {
    return Atomics.load(this.i32, (this.ring + (this.w & this.mask)) >>> 2);
  }

  /** Whether a record of `length` bytes would fit now (loads the read position; used by waits). */
  hasRoom(length: number): boolean {
    const need = (HEADER + length + 7) & ~7;
    const off = this.w & this.mask;
    const pad = off + need > this.size ? this.size - off : 0;
    const queued = (this.w - Atomics.load(this.i32, this.ctl + READ)) | 0;
    // A garbage read position counts as room: the caller then tries, and reports it.
    return queued < 0 || queued > this.size || pad + need <= this.size - queued;
  }
}

/** How a consumer wakes a lane's producer (it waits for room) or a sleeping consumer. */
export interface Wakers {
  producer(lane: number): void;
  consumer(): void;
  /** Before garbage is reported: throws ERR_MMAP_FAULTED instead when the memory faulted (zeros of a repaired page). */
  faults(): void;
}

/**
 * A consumer's cursor over the lanes: finds a lane with unread records that no other consumer holds,
 * locks it, walks its records, and stores the read position once when it lets go of it.
 */
export class LaneReader {
  private readonly i32: Int32Array;
  private readonly wake: Wakers;
  /** i32 index of lane 0's control block, byte offset of lane 0's ring, lanes in the channel. */
  private readonly lanesBase: number;
  private readonly ringsOffset: number;
  private readonly maxLanes: number;
  private readonly size: number;
  private readonly mask: number;
  private readonly maxMessage: number;
  /** This consumer's LANE_READER value. */
  lockValue = 0;
  /** The lane held now (-1: none), its control block (i32 index) and ring (byte offset). */
  lane = -1;
  ctl = 0;
  ring = 0;
  /** Read position in the held lane (local until finish()), and the write position loaded at lock. */
  r = 0;
  w = 0;
  /** The read position when the lane was locked. */
  private r0 = 0;
  /** Length of the record returned by next(). */
  length = 0;
  /** Where the next lock() starts looking: lanes are served in turn. */
  private start = 0;
  /** Set by lock() when it passed a lane with records that another consumer holds. */
  sawHeld = false;

  constructor(i32: Int32Array, g: Geometry, wake: Wakers) {
    // Mutable fields stored twice with different values (see LaneWriter's constructor).
    for (let i = 1; i >= 0; i--) {
      this.lockValue = i;
      this.lane = i - 1;
      this.ctl = i;
      this.ring = i;
      this.r = i;
      this.w = i;
      this.r0 = i;
      this.length = i;
      this.start = i;
      this.sawHeld = i === 1;
    }
    this.i32 = i32;
    this.wake = wake;
    this.lanesBase = g.lanesOffset >>> 2;
    this.ringsOffset = g.ringsOffset;
    this.maxLanes = g.maxProducers;
    this.size = g.laneSize;
    this.mask = g.laneSize - 1;
    this.maxMessage = g.maxMessageSize;
  }

  /** Lanes that producers have used: the only ones that can hold records. */
  lanesUsed(seqCst = true): number {
    // lock() passes false: a plain load (it only grows, and a lane not shown yet is found by the next
    // look). The looks of the sleep path (ready(), empty()) keep the seq_cst load, which the
    // no-lost-wake-up argument of "Sleeping" needs on every architecture.
    const n = seqCst ? Atomics.load(this.i32, CHANNEL.LANES_USED >>> 2) : this.i32[CHANNEL.LANES_USED >>> 2]!;
    // Never trust it past the validated table size.
    return n > 0 ? (n < this.maxLanes ? n : this.maxLanes) : 0;
  }

  /** Lock the next lane (in turn) with unread records that no one holds; false when there is none. */
  lock(): boolean {
    const i32 = this.i32;
    const used = this.lanesUsed(false);
    this.sawHeld = false;
    let lane = this.start < used ? this.start : 0;
    for (let k = 0; k < used; k++, lane = lane + 1 < used ? lane + 1 : 0) {
      const ctl = this.lanesBase + lane * LANE_WORDS;
      // Cheap look first (no write to shared memory when the lane is empty). LANE_WRITE is loaded with
      // Atomics (it publishes the records); LANE_READ and LANE_READER only decide whether to try: plain
      // loads (each Atomics call is a builtin call of about 10 ns on memory that is not a
      // SharedArrayBuffer, and the compare-and-swap below settles the race anyway).
      const w0 = TSO ? i32[ctl + WRITE]! : Atomics.load(i32, ctl + WRITE);
      if (w0 === i32[ctl + READ]) continue;
      if (i32[ctl + READER] !== 0) {
        this.sawHeld = true;
        continue;
      }
      // seq_cst compare-and-swap: the lane's records between LANE_READ and LANE_WRITE are ours to
      // take until we store 0 here.
      if (Atomics.compareExchange(i32, ctl + READER, 0, this.lockValue) !== 0) {
        this.sawHeld = true;
        continue;
      }
      // LANE_READ after the lock: another consumer may have moved it since our look, even past the
      // write position we loaded then. That position is good while it is ahead of LANE_READ (it only
      // grows, and every record before it was published before it was stored); otherwise load it again.
      // (A plain load: the compare-and-swap above is a full barrier, and the previous holder stored
      // LANE_READ before it stored LANE_READER = 0.)
      const r = i32[ctl + READ]!;
      let w = w0;
      let queued = (w - r) | 0;
      if (queued <= 0) {
        w = Atomics.load(i32, ctl + WRITE);
        queued = (w - r) | 0;
      }
      this.lane = lane;
      this.ctl = ctl;
      this.ring = this.ringsOffset + lane * this.size;
      this.r = r;
      this.r0 = r;
      this.w = w;
      if (queued < 0 || queued > this.size || ((r | w) & 7) !== 0) {
        this.resync(`lane ${lane}: read position ${r} and write position ${w} are ${queued} bytes apart (lane size ${this.size})`);
      }
      this.start = lane + 1;
      if (queued === 0) {
        this.unlock(); // another consumer took them between the look and the lock
        continue;
      }
      return true;
    }
    return false;
  }

  /**
   * The record at the read position of the held lane: the byte offset of its message (its length
   * in `length`), or -1 when every record loaded at lock() was read. Skips padding.
   */
  next(): number {
    const i32 = this.i32;
    for (let pads = 0; ; pads++) {
      const queued = (this.w - this.r) | 0;
      if (queued === 0) return -1;
      const off = this.r & this.mask;
      const at = this.ring + off;
      const length = i32[at >>> 2]!;
      if (length === PAD && off !== 0 && pads === 0) {
        // Padding: the rest of the ring is unused; the next record is at its start.
        const skip = this.size - off;
        if (skip > queued) this.resync(`lane ${this.lane}: padding of ${skip} bytes past the write position`);
        this.r = (this.r + skip) | 0;
        continue;
      }
      const need = (HEADER + length + 7) & ~7;
      if (!(length >= 0 && length <= this.maxMessage) || need > queued || off + need > this.size) {
        this.resync(`lane ${this.lane}: record length ${length} at position ${this.r} (max message ${this.maxMessage}, ${queued} bytes published)`);
      }
      this.length = length;
      return at + HEADER;
    }
  }

  /** Step past the record next() returned. */
  advance(): void {
    this.r = (this.r + ((HEADER + this.length + 7) & ~7)) | 0;
  }

  /** Whether records loaded at lock() are left in the held lane. */
  get more(): boolean {
    return this.r !== this.w;
  }

  /**
   * Give back what was read and let go of the lane ("Receiving", steps 5 and 6): wake the lane's
   * producer if it waits for room, and a sleeping consumer if records arrived while we held the lane
   * (a consumer that passed it as held may have gone to sleep).
   */
  unlock(): void {
    const i32 = this.i32;
    const ctl = this.ctl;
    const r = this.r;
    // seq_cst store: the bytes up to r are free for the producer; the store orders before the load
    // of LANE_PRODUCER_WAITING below (the producer adds to that, then loads LANE_READ).
    if (r !== this.r0) Atomics.store(i32, ctl + READ, r);
    // seq_cst store: the lane is free for the next consumer (who loads LANE_READ after locking); it
    // orders before the load of CONSUMER_SLEEPERS (a sleeper adds to that, then looks at LANE_READER).
    Atomics.store(i32, ctl + READER, 0);
    const lane = this.lane;
    this.lane = -1;
    // The producer waits for room: wake it once a quarter of the lane (or all of it) is free, not
    // for every record taken (a producer and a consumer that wake each other per message spend
    // their time in futex calls).
    if ((TSO ? i32[ctl + WAITING]! : Atomics.load(i32, ctl + WAITING)) !== 0) {
      const queued = (Atomics.load(i32, ctl + WRITE) - r) | 0;
      // seq_cst exchange: of the consumers that free room meanwhile, one clears the flag and wakes.
      if (queued <= this.size - (this.size >>> 2) && Atomics.exchange(i32, ctl + WAITING, 0) !== 0) this.wake.producer(lane);
    }
    if ((TSO ? i32[CONSUMER_SLEEPERS]! : Atomics.load(i32, CONSUMER_SLEEPERS)) > 0 && Atomics.load(i32, ctl + WRITE) !== r) this.wake.consumer();
  }

  /** Whether some lane has unread records that no one holds (a cheap look for spin loops). */
  ready(): boolean {
    const i32 = this.i32;
    const used = this.lanesUsed();
    for (let lane = 0; lane < used; lane++) {
      const ctl = this.lanesBase + lane * LANE_WORDS;
      if (Atomics.load(i32, ctl + WRITE) !== Atomics.load(i32, ctl + READ) && Atomics.load(i32, ctl + READER) === 0) return true;
    }
    return false;
  }

  /** Whether every lane is empty (for the end of the stream). */
  empty(): boolean {
    const i32 = this.i32;
    const used = this.lanesUsed();
    for (let lane = 0; lane < used; lane++) {
      const ctl = this.lanesBase + lane * LANE_WORDS;
      if (Atomics.load(i32, ctl + WRITE) !== Atomics.load(i32, ctl + READ)) return false;
    }
    return true;
  }

  /**
   * The held lane holds garbage: drop what is queued in it (read position := the write position
   * loaded), let go of it and report it. The channel carries on with later records.
   */
  private resync(what: string): never {
    // Exactly the write position, aligned or not: the lane then looks empty (nothing loops on it),
    // and a producer that attaches to it again starts from an aligned position of its own.
    this.r = this.w;
    this.unlock();
    this.wake.faults();
    throw corrupt(what);
  }
}

/** Messages queued in a lane now (a snapshot: walks its records without taking them; stops at garbage). */
export function queuedMessages(i32: Int32Array, g: Geometry, lane: number): number {
  const ctl = laneControl(g, lane) >>> 2;
  const ring = laneRing(g, lane);
  const w = Atomics.load(i32, ctl + WRITE);
  let r = Atomics.load(i32, ctl + READ);
  let n = 0;
  for (let steps = 0; steps <= g.laneSize / HEADER; steps++) {
    const queued = (w - r) | 0;
    if (queued <= 0 || queued > g.laneSize || (r & 7) !== 0) break;
    const off = r & (g.laneSize - 1);
    const length = i32[(ring + off) >>> 2]!;
    if (length === PAD && off !== 0) {
      r = (r + g.laneSize - off) | 0;
      continue;
    }
    if (!(length >= 0 && length <= g.maxMessageSize)) break;
    n++;
    r = (r + ((HEADER + length + 7) & ~7)) | 0;
  }
  return n;
}
