/**
 * The publishing side of a topic handle: the write path under the publish lock (docs/topic-layout.md,
 * "Publishing"), room for 'block', the history HEAD for 'overwrite' and late joiners, and the repair
 * a publisher does when it takes the lock over from a dead one.
 * @module
 */
import { MAX_POSITION, PAD, TOPIC, recordSize } from './layout.js';
import { type LockSite, release } from './lock.js';
import { TopicMemory, topicCorrupt } from './memory.js';
import { slowestCursor } from './parties.js';
import { faultsMoved, isFaulted } from '../channel/fault.js';

const LENGTH = TOPIC.RECORD_LENGTH >>> 2;
const SEQ = TOPIC.RECORD_SEQ >>> 2;
const HEADER = TOPIC.RECORD_HEADER;
const JOINS = TOPIC.JOINS >>> 2;
const WRITER = TOPIC.WRITER >>> 2;
/**
 * 'overwrite': INTENT is raised ahead of what a run needs, by up to this many bytes (an eighth of
 * the ring at most), so that runs of small messages store it once per slack instead of once per run.
 * HEAD is walked up to it: the retained history is that much shorter.
 */
const MAX_SLACK = 64 * 1024;

/**
 * Walk the records from `head` towards `tail` until `target`: the first record boundary at or after
 * it (or `tail`). Garbage in a record's length ends the walk at `tail` (the history before is lost).
 * Also returns the sequence number after the last whole record walked over (-1: none).
 */
export function walk(mem: TopicMemory, head: number, tail: number, target: number): { head: number; nextSeq: number } {
  const { i32, mask, ring, g } = mem;
  const cap = g.capacity;
  let nextSeq = -1;
  while (head < target && head < tail) {
    const off = head & mask;
    const length = i32[ring + (off >>> 2) + LENGTH]!;
    if (length === PAD) {
      head += cap - off;
      continue;
    }
    if (length < 0 || length > g.maxMessageSize || off + HEADER + length > cap) return { head: tail, nextSeq: -1 };
    const w = ring + (off >>> 2) + SEQ;
    nextSeq = (i32[w]! >>> 0) + i32[w + 1]! * 2 ** 32 + 1;
    head += recordSize(length);
  }
  return { head: head > tail ? tail : head, nextSeq };
}

/**
 * After taking the lock over from a dead holder: NEXT_SEQ is stored after TAIL, so a holder killed
 * between the two left it behind: set it after the last published record. INTENT is never lowered
 * (the dead holder may have written bytes up to it), HEAD is where it left it.
 */
export function repairAfterTakeover(mem: TopicMemory): void {
  Atomics.store(mem.i32, WRITER, 0); // publishers' cached positions are void
  const tail = mem.load64(TOPIC.TAIL);
  const head = mem.load64(TOPIC.HEAD);
  if (head > tail || tail - head > mem.g.capacity) return; // garbage: the next publish reports it
  const { nextSeq } = walk(mem, head, tail, tail);
  if (nextSeq >= 0 && nextSeq !== mem.load64(TOPIC.NEXT_SEQ)) mem.store64(TOPIC.NEXT_SEQ, nextSeq);
}

/** The state of a run under the lock: where the records go and what they are numbered. */
export class Publisher {
  readonly site: LockSite;
  /** `block`: the slowest cursor + capacity as last computed, and JOINS then. */
  private limit = 0;
  private joins = -1;
  private readonly block: boolean;
  /** Loaded when the lock is taken. */
  private tail = 0;
  private head = 0;
  private seq = 0;
  private intent = 0;
  /** The end of the run being planned (after its records and paddings). */
  end = 0;

  /** What this handle stores in WRITER: its publisher entry + 1; and whether it has loaded the positions yet. */
  private readonly token: number;
  private loaded = false;

  constructor(
    readonly mem: TopicMemory,
    readonly entry: number,
  ) {
    this.token = entry + 1;
    this.site = { lock: mem.lock, instance: mem.instance, repair: () => repairAfterTakeover(mem) };
    this.block = mem.g.policy === 'block';
    this.limit = 1;
    this.limit = 0;
  }

  /**
   * With the lock: the shared positions. When WRITER still names this handle, nobody wrote them
   * since its last run and its own copies are exact (no 64-bit loads); otherwise they are loaded and
   * checked (ERR_MMAP_TOPIC_CORRUPT, after letting go, if they are garbage).
   */
  begin(): void {
    // (Loaded once at least: a handle that took over the entry of a dead one has the same token.)
    // TAIL is compared too (one 64-bit load): a peer that moved it under us (garbage) is caught here
    // and dealt with below, instead of publishers writing on at a position subscribers left.
    if (this.loaded && this.mem.i32[WRITER] === this.token && this.mem.raw64(TOPIC.TAIL) === this.tail) {
      this.end = this.tail;
      return;
    }
    const mem = this.mem;
    const cap = mem.g.capacity;
    const tail = mem.raw64(TOPIC.TAIL);
    const head = mem.raw64(TOPIC.HEAD);
    const intent = mem.raw64(TOPIC.INTENT);
    const seq = mem.raw64(TOPIC.NEXT_SEQ);
    if (!(tail >= 0 && tail <= MAX_POSITION - 2 * cap && tail % 8 === 0 && head % 8 === 0 && head <= tail && tail - head <= cap && intent >= tail && intent - tail <= cap && seq >= 0 && seq <= 2 ** 53)) {
      // Start over after what was published: the history is dropped and every subscriber finds
      // itself lapped (INTENT a whole ring ahead), so it moves to HEAD; the stream goes on.
      const at = tail >= 0 && tail <= MAX_POSITION / 2 && tail % 8 === 0 ? tail : 0;
      Atomics.store(mem.i32, WRITER, 0);
      mem.store64(TOPIC.HEAD, at);
      mem.store64(TOPIC.INTENT, at + cap);
      mem.store64(TOPIC.TAIL, at);
      if (!(seq >= 0 && seq <= 2 ** 53)) mem.store64(TOPIC.NEXT_SEQ, 0);
      release(this.site);
      mem.checkFaults('publish'); // zeros of a repaired page are no peer's garbage
      throw topicCorrupt(`HEAD ${head}, TAIL ${tail}, INTENT ${intent} and NEXT_SEQ ${seq} do not describe a ring of ${cap} bytes; its history was dropped`);
    }
    // Ours from now on: a holder after us (or one of ours that dies halfway) sees another WRITER.
    Atomics.store(mem.i32, WRITER, this.token);
    this.loaded = true;
    this.tail = tail;
    this.head = head;
    this.intent = intent;
    this.seq = seq;
    this.end = tail;
  }

  /** Whether `end` may be written: 'overwrite' always; 'block' when no live subscriber is a ring behind it. */
  hasRoom(end: number): boolean {
    if (!this.block) return true;
    const joins = Atomics.load(this.mem.i32, JOINS);
    if (end <= this.limit && joins === this.joins) return true;
    this.joins = joins;
    this.limit = slowestCursor(this.mem, -1, false) + this.mem.g.capacity;
    return end <= this.limit;
  }

  /** For waits: room for a record of `length` bytes after what is published now (reaps dead subscribers with `reap`). */
  roomNow(length: number, reap: boolean): boolean {
    if (!this.block) return true;
    const mem = this.mem;
    const tail = Number(Atomics.load(mem.b64, TOPIC.TAIL >>> 3));
    const end = tail + (mem.g.capacity - (tail & mem.mask) < recordSize(length) ? mem.g.capacity - (tail & mem.mask) : 0) + recordSize(length);
    const slowest = slowestCursor(mem, end - mem.g.capacity, reap);
    return !(end - mem.g.capacity > slowest);
  }

  /** Plan one more record of `length` bytes in the run: false when it does not fit (no room, or the run is a ring long). */
  plan(length: number): boolean {
    const cap = this.mem.g.capacity;
    const size = recordSize(length);
    const off = this.end & this.mem.mask;
    const end = this.end + (off + size > cap ? cap - off : 0) + size;
    if (end - this.tail > cap || !this.hasRoom(end)) return false;
    this.end = end;
    return true;
  }

  /**
   * Before writing the planned run: move HEAD past the records it overwrites, then store INTENT (a
   * subscriber that finds INTENT past its position + capacity knows it was lapped).
   */
  claim(): void {
    const mem = this.mem;
    if (this.intent < this.end) {
      // 'overwrite': ahead by the slack, within the ring after TAIL. ('block' raises it to the end
      // of the run only: subscribers stay within a ring of it, and HEAD stays where the doc says.)
      const cap = mem.g.capacity;
      let intent = this.end;
      if (!this.block) {
        intent += Math.min(cap >>> 3, MAX_SLACK);
        if (intent > this.tail + cap) intent = this.tail + cap;
        if (intent < this.end) intent = this.end;
      }
      const target = intent - cap;
      if (this.head < target) {
        this.head = walk(mem, this.head, this.tail, target).head;
        mem.store64(TOPIC.HEAD, this.head);
      }
      // seq_cst store, before any byte of the run is written.
      mem.store64(TOPIC.INTENT, (this.intent = intent));
    }
  }

  /** Write one record of the claimed run at the write position; returns the byte offset of its payload. */
  place(length: number): number {
    const { i32, ring, mask } = this.mem;
    const cap = this.mem.g.capacity;
    let off = this.tail & mask;
    const size = recordSize(length);
    if (off + size > cap) {
      const at = ring + (off >>> 2);
      i32[at + LENGTH] = PAD;
      i32[at + 1] = 0;
      i32[at + SEQ] = this.seq % 2 ** 32;
      i32[at + SEQ + 1] = Math.floor(this.seq / 2 ** 32);
      this.tail += cap - off;
      off = 0;
    }
    const at = ring + (off >>> 2);
    const seq = this.seq;
    i32[at + LENGTH] = length;
    i32[at + 1] = 0;
    if (seq <= 0x7fffffff) {
      i32[at + SEQ] = seq;
      i32[at + SEQ + 1] = 0;
    } else {
      i32[at + SEQ] = seq % 2 ** 32;
      i32[at + SEQ + 1] = Math.floor(seq / 2 ** 32);
    }
    this.seq = seq + 1;
    this.tail += size;
    return at * 4 + HEADER;
  }

  /** A run given up after begin() (a cancelled reservation, an error): the next run loads the positions again. */
  abandon(): void {
    Atomics.store(this.mem.i32, WRITER, 0);
  }

  /** A reservation of `reserved` bytes at payload offset `at` committed with `length`: shorten its record. */
  shrinkLast(at: number, reserved: number, length: number): void {
    this.mem.i32[(at - HEADER) >>> 2] = length;
    this.tail += recordSize(length) - recordSize(reserved);
  }

  /**
   * Publish what was placed: TAIL (seq_cst), then NEXT_SEQ; let go of the lock; wake subscribers. The
   * fault count is looked at before (a record written into a repaired page is never published: the run
   * is given up and the lock let go, ERR_MMAP_FAULTED) and after (the stores of the publish itself).
   */
  publish(): void {
    const mem = this.mem;
    // (The looks inline, the rest out of line: this path is at V8's inlining budget.)
    if (mem.faultCount[0] !== mem.faultsSeen) this.faultedBeforePublish();
    mem.store64(TOPIC.TAIL, this.tail);
    mem.store64(TOPIC.NEXT_SEQ, this.seq);
    release(this.site);
    mem.wakeSubscribers();
    if (mem.faultCount[0] !== mem.faultsSeen) faultsMoved(mem, 'publish');
  }

  /** The fault count moved before a publish: if the topic's memory faulted, give the run up, let go of the lock, throw. */
  private faultedBeforePublish(): void {
    if (!isFaulted(this.mem)) return;
    this.abandon();
    release(this.site);
    throw this.mem.faults.error('publish');
  }

  /**
   * Read the word where the next record goes (before a wait for room): a ring lost under the topic
   * faults now, so the wait reports it instead of waiting for subscribers that fault on it too.
   */
  probe(): number {
    const mem = this.mem;
    return Atomics.load(mem.i32, mem.ring + ((mem.raw64(TOPIC.TAIL) & mem.mask) >>> 2));
  }
}
