/**
 * The engine behind a `Channel` handle: its memory, its lane (as a producer), its cursor over the
 * lanes (as a consumer), wake-ups, the waits of every strategy, the end of the stream. The API
 * modules (batch, zero copy, streams) and the public handle build on these few operations; the
 * per-message paths here stay small and monomorphic.
 * @module
 */
import { closedError, invalidArgType, invalidState, outOfRange } from '../internal/errors.js';
import type { Mapping, } from '../mapping.js';
import type { SharedMemory } from '../shm.js';
import { type Word, notifyWord } from '../wait.js';
import { CHANNEL, FLAG_PRODUCER_DIED, type Geometry, laneControl } from './layout.js';
import { type ConsumerSeat, EndCheck, attachConsumer, attachProducer, closeConsumer, closeProducer } from './parties.js';
import { HeldLanes } from './repair.js';
import { copyOut } from '../copy.js';
import { pageSize } from '../constants.js';
import { FAULTS, FaultWatch, faultsMoved, faultsNow, isFaulted } from './fault.js';
import { LaneReader, LaneWriter, TSO } from './ring.js';
import { alignedBase, releaseOwned, words } from '../target.js';
import { type SleepSite, type Strategy, deadlineOf, timedOut } from './waiting.js';

/**
 * Why a consumer saw the end of the stream: every producer closed its handle (`'closed'`), or at
 * least one producer of this channel went away without closing (its process died or exited with the
 * handle open: `'producer-died'`), so its last messages may be missing.
 */
export type ChannelEndReason = 'closed' | 'producer-died';

const INT32_MAX = 0x7fffffff;
const NOT_EMPTY = CHANNEL.NOT_EMPTY >>> 2;
const CONSUMER_SLEEPERS = CHANNEL.CONSUMER_SLEEPERS >>> 2;
const LANE_NOT_FULL = CHANNEL.LANE_NOT_FULL >>> 2;
const LANE_WAITING = CHANNEL.LANE_PRODUCER_WAITING >>> 2;
/**
 * Looks at the lanes (no clock, no system call) before a wait does anything costlier: a message or
 * room that comes within a microsecond or two is taken at once, and a stream that keeps coming never
 * pays for the end-of-stream check, the clock, or a futex wake-up of a sleeper. Adaptive, per
 * handle and side: after QUICK_MISSES waits in a row whose looks found nothing (a ping-pong, where
 * the answer takes tens of microseconds), a wait skips them, except every QUICK_PROBE-th.
 */
const QUICK_LOOKS = 64;
const QUICK_MISSES = 4;
const QUICK_PROBE = 16;
const RECORD_HEADER = CHANNEL.RECORD_HEADER;

/**
 * Detach one empty ArrayBuffer now, at load. V8 assumes no ArrayBuffer is ever detached until the
 * first one is (its "ArrayBufferDetaching protector"), and optimized code that relied on that is
 * thrown away when it happens: an unmap(), or even the first console.log to a pipe. On Node 20 the
 * channel's hot functions were then never optimized again (measured: 4,600 instructions per
 * send/receive instead of a few hundred, for good). Detaching first means they are optimized with
 * the detach checks from the start (a test of a bit per typed-array access).
 */
{
  const ab = new ArrayBuffer(0);
  structuredClone(ab, { transfer: [ab] });
}

/**
 * Whether the message at channel offset `at` (`length` bytes) reaches past the page that holds its
 * record header, the channel starting `pageOffset` bytes into a page: the page bits of the header's
 * first byte and the message's last byte differ (compared in 32 bits: a page never straddles a
 * multiple of 2^32). An empty message ends in its 8-aligned header: never.
 */
export function crossesPage(at: number, length: number, pageOffset: number, pageMask: number): boolean {
  return (((at - RECORD_HEADER + pageOffset) ^ (at + length - 1 + pageOffset)) & pageMask) !== 0;
}

/** Bytes of a message argument: a string (UTF-8), a Buffer, a TypedArray or a DataView. */
export function toBytes(data: unknown, name = 'data'): Uint8Array {
  if (data instanceof Uint8Array) return data;
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw invalidArgType(name, 'a string, Buffer, TypedArray or DataView', data);
}

/** The adaptive quick looks of one handle and side (see QUICK_LOOKS). */
class QuickLooks {
  private misses = 0;
  private waits = 0;
  /** Look up to QUICK_LOOKS times whether `ready()`, unless recent looks kept finding nothing. */
  look(ready: () => boolean): boolean {
    if (this.misses >= QUICK_MISSES && ++this.waits % QUICK_PROBE !== 0) return false;
    for (let i = 0; i < QUICK_LOOKS; i++) {
      if (ready()) {
        this.misses = 0;
        return true;
      }
    }
    this.misses++;
    return false;
  }
}

export class ChannelCore {
  readonly mapping: Mapping;
  /** What this handle opened itself and closes with it: shared memory, or a file's mapping. */
  readonly owned: SharedMemory | Mapping | undefined;
  readonly i32: Int32Array;
  readonly u8: Buffer;
  readonly g: Geometry;
  readonly strategy: Strategy;
  /** Whether this is the handle create() returned (its process is named in CREATOR until it closes). */
  readonly creator: boolean;
  readonly base: number;
  closed = false;
  ended = false;
  endReason: ChannelEndReason | undefined;
  /** This handle's lane, once it is a producer. */
  writer: LaneWriter | undefined;
  /** This handle's cursor over the lanes; its lock value is set when it attaches as a consumer. */
  readonly reader: LaneReader;
  seat: ConsumerSeat | undefined;
  private readonly endCheck = new EndCheck();
  private readonly held: HeldLanes;
  private readonly notEmpty: Word;
  readonly consumerSite: SleepSite;
  producerSite: SleepSite | undefined;
  /** The futex words of lanes whose producers this handle woke (made on first use). */
  private readonly notFull: Array<Word | undefined> = [];
  /**
   * The one reservation / in-place message this handle may have outstanding, as the function that
   * ends it (close() calls it).
   */
  outstandingReserve: (() => void) | undefined;
  outstandingTake: (() => void) | undefined;
  /**
   * A corruption found by a batch receive after it had taken messages: the call returns what it took
   * (they are the caller's now) and the next receive throws this.
   */
  deferred: Error | undefined;
  /** drain() calls under way on this handle (its handler may call back into the handle). */
  drainDepth = 0;
  /**
   * The guard's count of repaired faults (FAULTS), the count when this handle last found its memory
   * whole, and the rest of what it knows of its memory's faults: a look is
   * `faultCount[0] !== faultsSeen` (see checkFaults).
   */
  readonly faultCount: Int32Array;
  faultsSeen: number;
  readonly faults: FaultWatch;
  /** Where byte 0 of the channel lies within its page, and `-pageSize` (to tell whether a message crosses a page). */
  readonly pageOffset: number;
  readonly pageMask: number;

  constructor(mapping: Mapping, owned: SharedMemory | Mapping | undefined, g: Geometry, strategy: Strategy, creator: boolean) {
    // Every field exists from the start, in one order (one object shape for every handle), and the
    // ones that change are stored twice (see LaneWriter's constructor).
    this.endReason = 'closed';
    this.endReason = undefined;
    this.writer = undefined;
    this.seat = undefined;
    this.producerSite = undefined;
    this.outstandingReserve = undefined;
    this.outstandingTake = undefined;
    this.deferred = undefined;
    this.faultsSeen = -2;
    this.mapping = mapping;
    this.owned = owned;
    // Before the view (which refuses a mapping faulted already): any fault after this moves the count.
    this.faultsSeen = faultsNow();
    this.u8 = mapping.view(0, g.totalSize);
    this.i32 = words(this.u8);
    this.g = g;
    this.strategy = strategy;
    this.creator = creator;
    this.base = Number(alignedBase(this.u8));
    this.faultCount = FAULTS;
    this.faults = new FaultWatch(mapping, 'channel', this.base, g.totalSize);
    this.pageOffset = (this.base % pageSize) | 0; // small integers: the per-message test stays in int32
    this.pageMask = -pageSize | 0;
    this.reader = new LaneReader(this.i32, g, {
      producer: (lane) => this.wakeProducer(lane),
      consumer: () => this.wakeConsumers(1),
      faults: () => this.checkFaults('receive'),
    });
    this.held = new HeldLanes(this.i32, g);
    this.notEmpty = { mapping, addr: this.base + CHANNEL.NOT_EMPTY, array: this.i32, index: NOT_EMPTY };
    const reader = this.reader;
    this.consumerSite = { word: this.notEmpty, sleepers: CONSUMER_SLEEPERS, counted: true, ready: () => reader.ready() };
  }

  // ------------------------------------------------------------ state

  check(what: string): void {
    // One test on the way of every call, the reasons out of line: little bytecode on the per-message
    // paths, which are at V8's inlining budget (a few bytes more there cost a function not inlined).
    if (this.closed || this.mapping.closed || this.faultCount[0] !== this.faultsSeen) this.checkFailed(what);
  }

  /**
   * check() for the send paths: the fault count is not looked at here, because every send looks at it
   * before it publishes (see publish()), and a send that finds no room looks at it before it waits.
   */
  checkOpen(what: string): void {
    if (this.closed || this.mapping.closed) this.checkFailed(what);
  }

  private checkFailed(what: string): void {
    if (this.closed) throw closedError(what, 'Channel');
    if (this.mapping.closed) throw closedError(what, 'memory');
    faultsMoved(this, what);
  }

  /**
   * Throw ERR_MMAP_FAULTED if the channel's memory faulted: a page of it was lost (truncated by another
   * process, or out of space) and reads as zeros. One load and one compare while no fault was repaired
   * anywhere in the process. Called after every access a message depends on (the copy out, the writes
   * of a publish), so it sees the faults they raised: the guard repairs them synchronously.
   */
  checkFaults(what: string): void {
    if (this.faultCount[0] !== this.faultsSeen) faultsMoved(this, what);
  }

  /**
   * Before a message is handed out in place (drain, receiveInPlace): touch each page of it past the
   * one that holds its header (next() read that one), so that a page lost before now faults here, and
   * look at the count. A page lost while the caller reads the message is reported after (release(),
   * the end of the handler).
   */
  touchMessage(at: number, length: number, what: string): void {
    if (crossesPage(at, length, this.pageOffset, this.pageMask)) this.touchPages(at, length);
    this.checkFaults(what);
  }

  /** The pages of the message at `at` after the one its header is on (see touchMessage). */
  touchPages(at: number, length: number): void {
    const first = at - RECORD_HEADER + this.pageOffset;
    const last = at + length - 1 + this.pageOffset;
    // Atomics.load: a load whose value is unused must not be optimized away. `>>> 0`: a channel may
    // reach 4 GiB, and the mask's int32 result is negative from 2 GiB on.
    for (let p = ((first & this.pageMask) >>> 0) + pageSize; p <= last; p += pageSize) Atomics.load(this.i32, (p - this.pageOffset) >>> 2);
  }

  noOutstanding(pending: (() => void) | undefined, what: 'reserve' | 'receiveInPlace'): void {
    if (pending !== undefined) {
      throw invalidState(`this handle has a ${what === 'reserve' ? 'reservation' : 'message in place'} outstanding: ${what === 'reserve' ? 'commit' : 'release'} it first (one at a time per handle)`);
    }
  }

  attachProducer(): LaneWriter {
    if (this.writer !== undefined) return this.writer;
    this.checkFaults('send'); // never claim a lane in memory that faulted
    const lane = attachProducer(this.i32, this.g);
    const writer = new LaneWriter(this.i32, this.u8, this.g, lane, () => this.checkFaults('send'));
    const word: Word = { mapping: this.mapping, addr: this.base + (writer.ctl + LANE_NOT_FULL) * 4, array: this.i32, index: writer.ctl + LANE_NOT_FULL };
    this.producerSite = { word, sleepers: writer.ctl + LANE_WAITING, counted: false, ready: () => writer.hasRoom(this.roomFor) };
    this.writer = writer;
    return writer;
  }

  attachConsumer(): void {
    if (this.seat !== undefined) return;
    this.seat = attachConsumer(this.i32, this.g);
    this.reader.lockValue = this.seat.lockValue;
  }

  /** Check a message before sending it: its size, the handle's state; attaches as a producer. */
  prepareSend(data: unknown): Uint8Array {
    const bytes = toBytes(data);
    if (bytes.byteLength > this.g.maxMessageSize) {
      throw outOfRange('data.byteLength', `<= ${this.g.maxMessageSize} (the channel's maxMessageSize)`, bytes.byteLength);
    }
    this.checkOpen('send');
    // One test for the common case (a producer with no reservation open); the rest out of line: the
    // per-message paths are at V8's inlining budget (send and receive inline about a dozen functions).
    if (this.outstandingReserve !== undefined || this.writer === undefined) this.prepareSendSlow();
    return bytes;
  }

  private prepareSendSlow(): void {
    this.noOutstanding(this.outstandingReserve, 'reserve');
    this.attachProducer();
  }

  prepareReceive(what: string): void {
    this.check(what);
    // One test for the common case; the rest out of line (as in prepareSend).
    if (this.deferred !== undefined || this.drainDepth > 0 || this.outstandingTake !== undefined || this.seat === undefined) this.prepareReceiveSlow(what);
  }

  private prepareReceiveSlow(what: string): void {
    if (this.deferred !== undefined) {
      const err = this.deferred;
      this.deferred = undefined;
      throw err;
    }
    if (this.drainDepth > 0) throw invalidState(`cannot call ${what} from inside a drain() handler of the same handle (it holds the lane being drained)`);
    this.noOutstanding(this.outstandingTake, 'receiveInPlace');
    this.attachConsumer();
  }

  // ------------------------------------------------------------ wake-ups

  /**
   * After publishing: wake up to `n` sleeping consumers, if any sleeps. (The sleeper count is loaded
   * after the seq_cst store of LANE_WRITE; a consumer counts itself, then looks at the lanes again
   * before sleeping: one of the two sees the other.)
   */
  wakeConsumers(n: number): void {
    // After the seq_cst store of LANE_WRITE: a plain load on x86 (see TSO in ring.ts).
    if ((TSO ? this.i32[CONSUMER_SLEEPERS]! : Atomics.load(this.i32, CONSUMER_SLEEPERS)) > 0) {
      // seq_cst add: changes the word a sleeper read before it looked, so FUTEX_WAIT returns at once.
      Atomics.add(this.i32, NOT_EMPTY, 1);
      notifyWord(this.notEmpty, n);
    }
  }

  /** Wake the producer of `lane`, which waits for room (LANE_PRODUCER_WAITING was seen > 0). */
  wakeProducer(lane: number): void {
    let word = this.notFull[lane];
    if (word === undefined) {
      const index = (laneControl(this.g, lane) >>> 2) + LANE_NOT_FULL;
      word = { mapping: this.mapping, addr: this.base + index * 4, array: this.i32, index };
      this.notFull[lane] = word;
    }
    Atomics.add(this.i32, word.index, 1);
    notifyWord(word, INT32_MAX); // every wait of the producer handle (its async sends may wait together)
  }

  /**
   * Publish what this producer appended and wake consumers for `n` messages. The fault count is looked
   * at before (a record written into a repaired page is never published: what was appended is given
   * up, ERR_MMAP_FAULTED) and after (the stores of the publish and the wake-up themselves).
   */
  publish(n: number, what: string): void {
    if (this.faultCount[0] !== this.faultsSeen) this.faultedBeforePublish(what);
    this.writer!.publish();
    this.wakeConsumers(n);
    if (this.faultCount[0] !== this.faultsSeen) faultsMoved(this, what);
  }

  /** The count moved before a publish: if this channel's memory faulted, give up what was appended and throw. */
  private faultedBeforePublish(what: string): void {
    if (!isFaulted(this)) return;
    this.writer!.rollback();
    throw this.faults.error(what);
  }

  /** Let go of the lane the reader holds (it stores the read position and wakes who waits). */
  finishLane(): void {
    this.reader.unlock();
  }

  // ------------------------------------------------------------ one message

  /**
   * Take the next message as a copy (a new Buffer), if one is waiting in a lane no one holds;
   * undefined otherwise.
   */
  takeOne(): Buffer | undefined {
    const reader = this.reader;
    for (let tries = 0, most = this.g.maxProducers; tries <= most; tries++) {
      if (!reader.lock()) return undefined; // (what the looks read is checked by the next call)
      const at = reader.next(); // throws ERR_MMAP_CHANNEL_CORRUPT after letting go of the lane
      if (at < 0) {
        this.finishLane(); // only padding was left
        continue;
      }
      const out = this.copyOut(at, reader.length);
      reader.advance();
      this.finishLane();
      // After the copy: a page lost meanwhile read as zeros. The message is dropped with the error
      // (the channel is unusable from now on anyway).
      if (this.faultCount[0] !== this.faultsSeen) faultsMoved(this, 'receive');
      return out;
    }
    return undefined;
  }

  /** A copy of `length` bytes of the channel at `start` (8-byte aligned; see copyOut in copy.ts). */
  copyOut(start: number, length: number): Buffer {
    return copyOut(this.u8, this.i32, start, length);
  }

  // ------------------------------------------------------------ waiting

  /** Waits for room under way on this handle (its async sends may wait together). */
  private roomWaits = 0;
  private readonly quickRoom = new QuickLooks();
  private readonly quickMessage = new QuickLooks();
  private readonly readyLook = (): boolean => this.reader.ready();

  /** The record size a producer waits room for (read by producerSite.ready()). */
  private roomFor = 0;

  /** Wait, by this handle's strategy, until a message of `length` bytes fits in the lane. */
  waitRoom(length: number, timeout: number, deadline: bigint = deadlineOf(timeout)): void {
    const writer = this.writer!;
    const site = this.producerSite!;
    this.roomFor = length;
    if (this.quickRoom.look(() => writer.hasRoom(length))) return;
    this.roomWaits++;
    try {
      for (;;) {
        // Read the futex word, then look again: room freed after this read changes the word.
        const seen = Atomics.load(this.i32, site.word.index);
        if (writer.hasRoom(length)) return;
        this.probeRoom('send');
        if (!this.strategy.sleep(site, seen, deadline)) throw timedOut('waiting for room in the channel', timeout);
      }
    } finally {
      this.endRoomWait();
    }
  }

  /**
   * Before a producer sleeps for room: touch the word where its next record goes, so that a lane lost
   * under it (truncated) is reported now, not never: its consumers fault on those pages too, and may
   * never make room.
   */
  private probeRoom(what: string): void {
    this.writer!.probe();
    this.checkFaults(what);
  }

  /**
   * The last wait for room of this handle is over: clear LANE_PRODUCER_WAITING (a consumer cleared it
   * if it woke us; if we found room ourselves or gave up, nobody of this handle sleeps on it now).
   */
  private endRoomWait(): void {
    if (--this.roomWaits === 0 && !this.mapping.closed) Atomics.store(this.i32, this.producerSite!.sleepers, 0);
  }

  async waitRoomAsync(length: number, timeout: number, deadline: bigint, signal: AbortSignal | undefined, what: string): Promise<void> {
    const writer = this.writer!;
    const site = this.producerSite!;
    if (this.quickRoom.look(() => writer.hasRoom(length))) return;
    this.roomWaits++;
    try {
      for (;;) {
        this.roomFor = length;
        const seen = Atomics.load(this.i32, site.word.index);
        if (writer.hasRoom(length)) return;
        this.probeRoom(what);
        if (!(await this.strategy.sleepAsync(site, seen, deadline, signal))) throw timedOut('waiting for room in the channel', timeout);
        this.check(what); // closed while we slept: never write for a closed producer
        signal?.throwIfAborted();
      }
    } finally {
      this.endRoomWait();
    }
  }

  /**
   * Wait, by this handle's strategy, until a message may be waiting (then the caller takes it) or
   * the stream has ended (false). Repairs lanes held by consumers that died on the way.
   */
  waitMessage(timeout: number, deadline: bigint): boolean {
    const reader = this.reader;
    if (this.quickMessage.look(this.readyLook)) return true;
    for (;;) {
      // Read the futex word, then look again: a publish after this read changes the word.
      const seen = Atomics.load(this.i32, NOT_EMPTY);
      if (reader.ready()) return true;
      if (this.atEnd()) return false;
      if (this.repairHeld()) continue;
      this.checkFaults('receive'); // the looks read zeros where the control lines were lost
      if (!this.strategy.sleep(this.consumerSite, seen, deadline)) throw timedOut('waiting for a message', timeout);
    }
  }

  async waitMessageAsync(timeout: number, deadline: bigint, signal: AbortSignal | undefined, what: string): Promise<boolean> {
    const reader = this.reader;
    if (this.quickMessage.look(this.readyLook)) return true;
    for (;;) {
      const seen = Atomics.load(this.i32, NOT_EMPTY);
      if (reader.ready()) return true;
      if (this.atEnd()) return false;
      if (this.repairHeld()) continue;
      this.checkFaults(what);
      if (!(await this.strategy.sleepAsync(this.consumerSite, seen, deadline, signal))) throw timedOut('waiting for a message', timeout);
      this.check(what); // closed while we slept: the consumer entry is no longer ours
      // Aborted after the wake-up was queued: take nothing (the caller no longer wants a message).
      signal?.throwIfAborted();
    }
  }

  /** Lanes with records held by a consumer that is gone: take them back. True when one was freed. */
  private repairHeld(): boolean {
    return this.held.check(this.reader.lanesUsed(), this.reader.lockValue, this.reader.lane);
  }

  /**
   * Take one message (a copy), waiting for it by this handle's strategy: the message, or null at the
   * end of the stream.
   */
  receiveOne(timeout: number): Buffer | null {
    const deadline = deadlineOf(timeout);
    for (;;) {
      const got = this.takeOne();
      if (got !== undefined) return got;
      if (!this.waitMessage(timeout, deadline)) return this.end();
    }
  }

  // ------------------------------------------------------------ end of stream

  /** Every producer that attached has closed or died, and every lane is empty. */
  atEnd(): boolean {
    const reader = this.reader;
    return this.endCheck.atEnd(this.i32, this.g, () => reader.empty());
  }

  /** Record the end of the stream on this handle; null (what the receive methods return). */
  end(): null {
    // Zeros where the control lines were lost look like a stream that ended: not an end.
    this.checkFaults('receive');
    this.ended = true;
    // atEnd() sets the flag before it reports an end that a dead producer is part of.
    this.endReason = (Atomics.load(this.i32, CHANNEL.FLAGS >>> 2) & FLAG_PRODUCER_DIED) !== 0 ? 'producer-died' : 'closed';
    return null;
  }

  // ------------------------------------------------------------ close

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (!this.mapping.closed) {
      this.outstandingReserve?.();
      this.outstandingTake?.();
      if (this.writer !== undefined) {
        // Never publish what was written into repaired pages.
        if (isFaulted(this)) this.writer.rollback();
        this.writer.publish();
        closeProducer(this.i32, this.g, this.writer.lane);
        // Wake every sleeping consumer so that it can notice the end.
        Atomics.add(this.i32, NOT_EMPTY, 1);
        notifyWord(this.notEmpty, INT32_MAX);
      }
      if (this.seat !== undefined) closeConsumer(this.i32, this.g, this.seat);
      // The creator's handle no longer holds the channel (unless another create() has claimed it since).
      if (this.creator) Atomics.compareExchange(this.i32, CHANNEL.CREATOR >>> 2, process.pid, 0);
    }
    releaseOwned(this.owned);
  }
}
