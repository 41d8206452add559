/**
 * The JavaScript floor of the channel benchmark (bench/channel.mjs): a plain single-producer
 * single-consumer byte ring in JavaScript over shared memory between two processes, with the
 * channel's record format and nothing else: no header, no party tables, no lane lock, no checks of
 * what the other side wrote beyond what reading needs. What the channel's lanes could reach if the
 * library cost nothing.
 *
 * Memory (SharedMemory.anonymous, handed to the child): the write position (i32) at byte 0 and the
 * producer's "closed" flag at byte 4, the consumer's "waiting" flag at byte 64, the read position at
 * byte 128, the producer's "waiting" flag at byte 192, the ring from byte 256 (`ringSize` bytes, a
 * power of two). Records as in the channel's lanes (docs/channel-layout.md): an i32 length, an i32
 * 0, the message, padded to 8 bytes; a record never wraps: at the end of the ring a length of -1 says
 * "skip to the start". Positions are byte counters modulo 2^32.
 *
 * Producer: `append64(words)` / `appendBytes(u8)` copy a message into the ring (64 bytes: 16 Int32
 * stores from the sender's own Int32Array; larger: TypedArray#set), `publish()` is one Atomics.store
 * of the write position (every message, or once per batch) and a look at the consumer's flag. It
 * caches the read position and loads it only when the cache says the ring is full; when really
 * full it publishes what is pending and waits.
 * Consumer: `poll(handler, max)` loads the write position once, calls handler(u8, offset, length) for
 * each record up to it (the message where it lies: the same shape as `Channel#drain`), then stores
 * the read position once. Both sides spin on Atomics.load when there is nothing to do; past 50 µs
 * they sleep in the kernel until the other side wakes them (see SPIN_MS); a deadline on every wait
 * makes a stuck peer fail the run.
 */

import { notify, wait } from '../../dist/index.js';

/**
 * Spinning without progress for longer than this (ms), a side goes to sleep (FUTEX_WAIT on the other
 * side's position word, at most MAX_SLEEP_MS at a time) after raising its "waiting" flag; the other
 * side, after each store of its position, loads that flag and wakes it (FUTEX_WAKE) when it is up:
 * the channel's sleep protocol, without the channel. With a core for each side it is hardly ever
 * used; it keeps the floor sane when a side must share a core with its peer (other load).
 */
const SPIN_MS = 0.05;
const MAX_SLEEP_MS = 100;

/** i32 indexes (each on a cache line of its own) and byte offsets. */
const WRITE = 0; // byte 0: the producer's position (published)
const CLOSED = 1; // byte 4: 1 once the producer has closed
const CONSUMER_WAITING = 16; // byte 64: 1 while the consumer sleeps (or is about to) on WRITE
const READ = 32; // byte 128: the consumer's position (what it has taken)
const PRODUCER_WAITING = 48; // byte 192: 1 while the producer sleeps (or is about to) on READ
export const RING_OFFSET = 256;
const HEADER = 8;
const PAD = -1;

/** Bytes of shared memory for a ring of `ringSize` bytes. */
export function jsRingBytes(ringSize) {
  return RING_OFFSET + ringSize;
}

function views(buf) {
  return {
    u8: new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength),
    i32: new Int32Array(buf.buffer, buf.byteOffset, buf.byteLength >>> 2),
  };
}

/** The producer's side over `buf` (a Buffer over the shared memory). */
export class RingProducer {
  constructor(buf, ringSize, timeoutMs) {
    const { u8, i32 } = views(buf);
    this.u8 = u8;
    this.i32 = i32;
    this.size = ringSize;
    this.mask = ringSize - 1;
    this.timeoutMs = timeoutMs;
    this.w = 0;
    this.r = 0;
    this.published = 0;
  }

  /** Where a record of `length` bytes goes (its header's byte offset), waiting while the ring is full. */
  room(length) {
    const need = (HEADER + length + 7) & ~7;
    let off = this.w & this.mask;
    const pad = off + need > this.size ? this.size - off : 0;
    if (pad + need > this.size - ((this.w - this.r) | 0)) {
      this.r = Atomics.load(this.i32, READ);
      if (pad + need > this.size - ((this.w - this.r) | 0)) this.waitRoom(pad + need);
    }
    if (pad > 0) {
      this.i32[(RING_OFFSET + off) >>> 2] = PAD;
      this.w = (this.w + pad) | 0;
      off = 0;
    }
    return RING_OFFSET + off;
  }

  waitRoom(bytes) {
    this.publish(); // the consumer may be waiting for what is pending
    const i32 = this.i32;
    const start = performance.now();
    for (let n = 1; ; n++) {
      this.r = Atomics.load(i32, READ);
      if (bytes <= this.size - ((this.w - this.r) | 0)) return;
      if ((n & 0xff) === 0) {
        const t = performance.now() - start;
        if (t > this.timeoutMs) throw new Error(`JavaScript ring: no room within ${this.timeoutMs} ms`);
        if (t > SPIN_MS) {
          // seq_cst store, then the look: a consumer that stored READ before the flag was visible is
          // seen by the look; one after it sees the flag and wakes us.
          Atomics.store(i32, PRODUCER_WAITING, 1);
          const r = Atomics.load(i32, READ);
          if (bytes > this.size - ((this.w - r) | 0)) wait(i32, READ, r, MAX_SLEEP_MS);
          Atomics.store(i32, PRODUCER_WAITING, 0);
        }
      }
    }
  }

  /** Append a 64-byte message held in `src` (an Int32Array of 16 words); not yet published. */
  append64(src) {
    const at = this.room(64);
    const i32 = this.i32;
    const d = (at + HEADER) >>> 2;
    for (let i = 0; i < 16; i++) i32[d + i] = src[i];
    i32[at >>> 2] = 64;
    i32[(at >>> 2) + 1] = 0;
    this.w = (this.w + HEADER + 64) | 0;
  }

  /** Append a message of any length (TypedArray#set, a memmove); not yet published. */
  appendBytes(src) {
    const length = src.byteLength;
    const at = this.room(length);
    this.u8.set(src, at + HEADER);
    this.i32[at >>> 2] = length;
    this.i32[(at >>> 2) + 1] = 0;
    this.w = (this.w + ((HEADER + length + 7) & ~7)) | 0;
  }

  publish() {
    if (this.w === this.published) return;
    this.published = this.w;
    // seq_cst store: publishes the records' bytes up to w to the consumer that loads this position,
    // and orders before the load of its waiting flag
    Atomics.store(this.i32, WRITE, this.w);
    if (Atomics.load(this.i32, CONSUMER_WAITING) !== 0) notify(this.i32, WRITE, 1);
  }

  close() {
    this.publish();
    Atomics.store(this.i32, CLOSED, 1); // after the last publish: the consumer reads it, then the position
    notify(this.i32, WRITE, 1);
  }
}

/** The consumer's side over `buf`. */
export class RingConsumer {
  constructor(buf, ringSize, timeoutMs) {
    const { u8, i32 } = views(buf);
    this.u8 = u8;
    this.buf = buf;
    this.i32 = i32;
    this.size = ringSize;
    this.mask = ringSize - 1;
    this.timeoutMs = timeoutMs;
    this.r = 0;
  }

  /**
   * Call handler(buf, offset, length) for each published record (up to `max`), waiting (spinning)
   * up to `timeoutMs` for the first: how many were handled, or null once the producer has closed and
   * everything was read.
   */
  poll(handler, max, timeoutMs = this.timeoutMs) {
    const i32 = this.i32;
    let w = Atomics.load(i32, WRITE);
    if (w === this.r) {
      const start = performance.now();
      for (let n = 1; (w = Atomics.load(i32, WRITE)) === this.r; n++) {
        if ((n & 0xff) === 0) {
          if (Atomics.load(i32, CLOSED) === 1 && Atomics.load(i32, WRITE) === this.r) return null;
          const t = performance.now() - start;
          if (t > timeoutMs) throw new Error(`JavaScript ring: no message within ${timeoutMs} ms`);
          if (t > SPIN_MS) {
            Atomics.store(i32, CONSUMER_WAITING, 1); // then the look, as in waitRoom
            if (Atomics.load(i32, WRITE) === this.r && Atomics.load(i32, CLOSED) === 0) wait(i32, WRITE, this.r, MAX_SLEEP_MS);
            Atomics.store(i32, CONSUMER_WAITING, 0);
          }
        }
      }
    }
    const buf = this.buf;
    let r = this.r;
    let n = 0;
    while (r !== w && n < max) {
      const off = r & this.mask;
      const at = RING_OFFSET + off;
      const length = i32[at >>> 2];
      if (length === PAD) {
        r = (r + this.size - off) | 0;
        continue;
      }
      if (!(length >= 0 && length <= this.size - HEADER)) throw new Error(`JavaScript ring: bad record length ${length} at ${r}`);
      handler(buf, at + HEADER, length);
      n++;
      r = (r + ((HEADER + length + 7) & ~7)) | 0;
    }
    this.r = r;
    // seq_cst store, once per poll: the bytes up to r are free for the producer; then its flag
    Atomics.store(i32, READ, r);
    if (Atomics.load(i32, PRODUCER_WAITING) !== 0) notify(i32, READ, 1);
    return n;
  }
}
