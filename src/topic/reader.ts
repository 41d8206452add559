/**
 * A subscription's cursor over the ring: the read protocol of docs/topic-layout.md, "Subscribing".
 * A poll reads records from the cursor up to the published TAIL into a sink (copies), then loads
 * INTENT: if a publisher may have started writing over what was read (INTENT > start + capacity),
 * the copies are thrown away and the cursor moves to HEAD, the oldest record still intact (the
 * subscriber was lapped; the sequence numbers say exactly how many messages it missed). Nothing is
 * handed to the caller before that check, so no half-overwritten message is ever delivered.
 * @module
 */
import { copyOut } from '../copy.js';
import { mmapkitError } from '../internal/errors.js';
import { TSO } from '../channel/ring.js';
import { PAD, TOPIC, recordSize } from './layout.js';
import { type TopicMemory, topicCorrupt } from './memory.js';
import { isFaulted } from '../channel/fault.js';

const SEQ = TOPIC.RECORD_SEQ >>> 2;
const WAITING = TOPIC.PUBLISHER_WAITING >>> 2;
const HEADER = TOPIC.RECORD_HEADER;
/** Laps in a row without a message before the subscriber gives up (a publisher rewriting the whole ring during every copy, or garbage). */
const MAX_FRUITLESS_LAPS = 1000;

/** Where a poll puts the records it reads, before they are validated. */
export interface Sink {
  /** Take the record at byte `at` (`length` bytes); false: no room, stop before it. */
  put(u8: Buffer, i32: Int32Array, at: number, length: number): boolean;
  /** The records put since the last poll began are void (they may have been overwritten). */
  discard(): void;
}

/** Copies into new Buffers (receive, receiveMany). */
export class BufferSink implements Sink {
  out: Buffer[] = [];
  put(u8: Buffer, i32: Int32Array, at: number, length: number): boolean {
    this.out.push(copyOut(u8, i32, at, length));
    return true;
  }
  discard(): void {
    this.out.length = 0;
  }
}

/** One copy into a new Buffer (receive). */
export class OneSink implements Sink {
  out: Buffer | undefined = undefined;
  put(u8: Buffer, i32: Int32Array, at: number, length: number): boolean {
    if (this.out !== undefined) return false;
    this.out = copyOut(u8, i32, at, length);
    return true;
  }
  discard(): void {
    this.out = undefined;
  }
}

/** Copies back to back into a caller's buffer (receiveInto; drain's scratch). */
export class IntoSink implements Sink {
  n = 0;
  pos = 0;
  constructor(
    public target: Uint8Array,
    public lengths: Uint32Array | Int32Array | Float64Array,
  ) {}
  put(u8: Buffer, _i32: Int32Array, at: number, length: number): boolean {
    if (this.n >= this.lengths.length || this.pos + length > this.target.byteLength) return false;
    this.target.set(u8.subarray(at, at + length), this.pos);
    this.lengths[this.n++] = length;
    this.pos += length;
    return true;
  }
  discard(): void {
    this.n = 0;
    this.pos = 0;
  }
}

/** ERR_MMAP_TOPIC_LAPPED, with `missed` (this gap) and `totalMissed` (the subscription's life). */
export function lappedError(missed: number, totalMissed: number): Error {
  return Object.assign(
    mmapkitError(
      'ERR_MMAP_TOPIC_LAPPED',
      `The subscriber was lapped: ${missed} message${missed === 1 ? ' was' : 's were'} overwritten before it read them (${totalMissed} over its life). It goes on with the oldest message still in the topic`,
    ),
    { missed, totalMissed },
  );
}

export class TopicReader {
  /** Where the next record starts, and the sequence number it should carry. */
  cursor: number;
  seq: number;
  /** TAIL as last loaded. */
  private tail: number;
  /** 0: in step; 1: lapped, the next record's number says how many were missed; 2: after garbage, the next record's number is taken as it is. */
  private resync: 0 | 1 | 2 = 0;
  /** Messages this subscription missed (lapped), over its life. */
  missed = 0;
  private fruitless = 0;
  /** A corruption found after a poll had taken messages: the next poll throws it. */
  deferred: Error | undefined;
  private readonly cursorWord: number;
  private readonly block: boolean;
  /** The cursor as last stored, and a quarter of the ring. */
  private published: number;
  private readonly quarter: number;

  constructor(
    readonly mem: TopicMemory,
    readonly entry: number,
    cursor: number,
    seq: number,
    /** `lapped: 'error'`: a poll that finds a gap throws ERR_MMAP_TOPIC_LAPPED before the message after it. */
    readonly errorOnGap: boolean,
  ) {
    this.cursor = cursor;
    this.seq = seq;
    this.tail = cursor;
    this.cursorWord = mem.g.subscribersOffset + entry * TOPIC.SUBSCRIBER_ENTRY + TOPIC.SUBSCRIBER_CURSOR;
    this.block = mem.g.policy === 'block';
    this.published = cursor;
    this.quarter = mem.g.capacity >>> 2;
    this.deferred = new Error();
    this.deferred = undefined;
  }

  /** Whether a record may be waiting (TAIL past the cursor): a cheap look for waits. */
  ready(): boolean {
    if (this.cursor < this.tail) return true;
    this.tail = this.mem.raw64(TOPIC.TAIL);
    return this.cursor !== this.tail; // a TAIL behind the cursor is garbage: poll() reports it
  }

  /** Read up to `max` records into `sink`; how many (0: none waiting). A lapped poll starts again from HEAD. */
  poll(max: number, sink: Sink): number {
    if (this.deferred !== undefined) {
      const err = this.deferred;
      this.deferred = undefined;
      throw err;
    }
    for (;;) {
      const n = this.pollOnce(max, sink);
      if (n >= 0) {
        // After the copies (and the looks at the positions): a page lost meanwhile read as zeros. The
        // copies are dropped with the error; the subscription is unusable from now on.
        const mem = this.mem;
        if (mem.faultCount[0] !== mem.faultsSeen) this.faulted(sink);
        return n;
      }
    }
  }

  /** One poll: how many records, or -1 when it was lapped (the cursor is at HEAD now). */
  private pollOnce(max: number, sink: Sink): number {
    const mem = this.mem;
    const cap = mem.g.capacity;
    const start = this.cursor;
    let tail = this.tail;
    if (start >= tail) {
      tail = this.tail = mem.raw64(TOPIC.TAIL);
      if (start === tail) return 0;
    }
    if (!(tail > start && tail % 8 === 0)) return this.garbage(`TAIL ${tail} is behind the subscriber's position ${start}`);
    if (tail - start > cap) return this.lap();
    const { i32, u8, ring, mask } = mem;
    const maxMessage = mem.g.maxMessageSize;
    let cursor = start;
    let seq = this.seq;
    let n = 0;
    let gap = 0;
    let bad: string | undefined;
    while (n < max && cursor < tail) {
      const off = cursor & mask;
      const at = ring + (off >>> 2);
      const length = i32[at]!;
      if (length === PAD) {
        cursor += cap - off;
        continue;
      }
      if (length < 0 || length > maxMessage || off + HEADER + length > cap || cursor + recordSize(length) > tail) {
        bad = `record length ${length} at position ${cursor}`;
        break;
      }
      const s = (i32[at + SEQ]! >>> 0) + i32[at + SEQ + 1]! * 2 ** 32;
      if (s !== seq) {
        if (n === 0 && (this.resync === 2 || (this.resync === 1 && s > seq))) {
          if (this.resync === 1) gap = s - seq;
          seq = s;
          if (gap > 0 && this.errorOnGap) break; // report the gap before this record (see lapped())
        } else {
          bad = `sequence number ${s} at position ${cursor} where ${seq} was due`;
          break;
        }
      }
      if (!sink.put(u8, i32, at * 4 + HEADER, length)) break;
      n++;
      seq++;
      cursor += recordSize(length);
    }
    // seq_cst load, after the copies: a publisher stores INTENT before it writes a byte, so one that
    // may have written over [start, cursor) while we copied has raised it past start + capacity.
    // ('block': publishers never raise it past the slowest cursor + capacity, and ours was stored
    // before we came here: nothing to check.)
    if (!this.block) {
      // Off x86 a load-acquire does not keep the plain loads of the copies before it: an atomic
      // read-modify-write (add 0) does, since it completes as a release too (docs/topic-layout.md).
      const intent = TSO ? mem.raw64(TOPIC.INTENT) : Number(Atomics.add(mem.b64, TOPIC.INTENT >>> 3, 0n));
      if (intent > start + cap || intent < 0) {
        sink.discard();
        return this.lap();
      }
    }
    if (bad !== undefined) {
      if (n === 0) return this.garbage(bad);
      this.deferred = this.corruptAndSkip(bad);
    }
    if (cursor !== start) {
      this.cursor = cursor;
      this.seq = seq;
      // The cursor is stored once a quarter of the ring was read since the last store, when a
      // publisher waits for room, and before every wait (flushCursor): a store per message would cost
      // more than the message. Publishers may see it late by less than a quarter ring.
      if (cursor - this.published >= this.quarter || (this.block && (TSO ? mem.i32[WAITING]! : Atomics.load(mem.i32, WAITING)) !== 0)) this.publishCursor();
    }
    if (n > 0 || gap > 0) {
      this.resync = 0;
      this.fruitless = 0;
      if (gap > 0) {
        this.missed += gap;
        if (this.errorOnGap) {
          // Positioned at the first message after the gap, not past it: the next poll reads it.
          this.seq = seq;
          throw lappedError(gap, this.missed);
        }
      }
    }
    return n;
  }

  /** The fault count moved during a poll: if the topic's memory faulted, drop the copies and throw. */
  private faulted(sink: Sink): void {
    if (!isFaulted(this.mem)) return;
    sink.discard();
    throw this.mem.faults.error('receive');
  }

  /** Store the cursor (seq_cst: after the copies) and, for 'block', wake publishers waiting for room. */
  publishCursor(): void {
    this.published = this.cursor;
    this.mem.store64(this.cursorWord, this.cursor);
    if (this.block) this.mem.wakePublishers();
  }

  /** Before waiting: the cursor as it is now, and a wake-up for publishers that wait on it. */
  flushCursor(): void {
    if (this.cursor !== this.published) this.publishCursor();
    else if (this.block) this.mem.wakePublishers();
  }

  /** Lapped: move to HEAD, the oldest record still intact. */
  private lap(): number {
    if (++this.fruitless > MAX_FRUITLESS_LAPS) {
      this.fruitless = 0;
      throw mmapkitError('ERR_MMAP_TOPIC_LAPPED', `Lapped ${MAX_FRUITLESS_LAPS} times in a row without reading a message: publishers overwrite the ring faster than one message can be copied (make the capacity larger)`);
    }
    // HEAD, then TAIL: a publisher may move both in between ('overwrite': TAIL then more than a ring
    // past the HEAD we saw). A HEAD that did not move while TAIL was loaded makes a pair of one moment.
    let head = this.mem.raw64(TOPIC.HEAD);
    let tail = this.mem.raw64(TOPIC.TAIL);
    for (let i = 0; i < 64; i++) {
      const again = this.mem.raw64(TOPIC.HEAD);
      if (again === head) break;
      head = again;
      tail = this.mem.raw64(TOPIC.TAIL);
    }
    if (!(head >= 0 && head % 8 === 0 && head <= tail && tail - head <= this.mem.g.capacity)) return this.garbage(`HEAD ${head} is not within a ring before TAIL ${tail}`);
    if (this.resync === 0) this.resync = 1;
    this.cursor = head;
    this.tail = tail;
    this.publishCursor();
    return -1;
  }

  /** Garbage where a record or position should be: move to what is published now, and report it. */
  private garbage(what: string): never {
    this.mem.checkFaults('receive'); // zeros of a repaired page are no peer's garbage
    throw this.corruptAndSkip(what);
  }

  private corruptAndSkip(what: string): Error {
    const tail = this.mem.raw64(TOPIC.TAIL);
    if (tail >= 0 && tail % 8 === 0) {
      this.cursor = tail;
      this.tail = tail;
      this.publishCursor();
    }
    this.resync = 2;
    return topicCorrupt(`${what}; the subscription skips to the newest position and its missed count is no longer exact`);
  }
}
