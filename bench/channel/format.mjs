/**
 * Messages of the channel benchmark (bench/channel.mjs, the parent, and bench/channel/peer.mjs, the
 * child): how a sender writes message k and how a receiver checks it, the same for every transport,
 * plus the length-prefixed framing of the byte streams (Unix socket, FIFO).
 *
 * 64-byte message k: 16 little-endian 32-bit words; word 0 is the sequence number k, words 1..14 a
 * hash of (k, word index) (bench/ipc/protocol.mjs msgWord), word 15 the XOR of words 0..14 (a
 * checksum). The receiver reads all 16 words and checks that word 0 is the k it expects next and that
 * the XOR of the 16 words is 0: a lost, repeated, stale or half-written message fails.
 *
 * 64 KiB message k: seeded random bytes (the same on both sides) with a stamp every 1 KiB: the word at
 * byte 1024·j is k for j = 0 and msgWord(k, j) for j ≥ 1. The receiver stamps its own copy of the
 * template for k and compares the whole message with it (memcmp through Buffer#equals/compare): every
 * byte is checked, and a stale message (another k) fails in every kilobyte.
 *
 * Streams carry each message as a 4-byte little-endian length followed by the message.
 */
import { mulberry32 } from '../lib.mjs';
import { msgWord } from '../ipc/protocol.mjs';

export const SALT = 0x4348414e; // "CHAN"
export const SMALL = 64;
export const LARGE = 64 * 1024;
export const STAMP_EVERY = 1024;
export const PREFIX = 4;
/** Unacknowledged IPC sends / worker messages a sender may have in flight. */
export const WINDOW = 1024;

// ---- 64-byte messages ------------------------------------------------------------------------------

/** Write 64-byte message k into `u8` at byte `off` (byte stores: any alignment). */
export function fillSmall(u8, off, k) {
  let x = 0;
  for (let i = 0; i < 16; i++) {
    const w = i === 15 ? x : msgWord(k, i, SALT);
    x ^= w;
    const j = off + 4 * i;
    u8[j] = w;
    u8[j + 1] = w >>> 8;
    u8[j + 2] = w >>> 16;
    u8[j + 3] = w >>> 24;
  }
}

/** Write 64-byte message k through an Int32Array over the message (aligned memory the sender owns). */
export function fillSmallI32(i32, k) {
  let x = 0;
  for (let i = 0; i < 15; i++) {
    const w = msgWord(k, i, SALT);
    i32[i] = w;
    x ^= w;
  }
  i32[15] = x;
}

let wordsOf = null;
let words = new Int32Array(0);

/** An Int32Array over the whole ArrayBuffer of `u8`, made once per ArrayBuffer (the last one is kept). */
function wordsOver(u8) {
  const ab = u8.buffer;
  if (ab !== wordsOf) {
    wordsOf = ab;
    words = new Int32Array(ab, 0, ab.byteLength >>> 2);
  }
  return words;
}

/**
 * Write 64-byte message k at byte `off` of `u8`: word stores through an Int32Array over its whole
 * ArrayBuffer when that lands on a 4-byte boundary (a reservation in the channel's memory), byte
 * stores otherwise.
 */
export function fillSmallAt(u8, off, k) {
  const at = u8.byteOffset + off;
  if ((at & 3) !== 0) return fillSmall(u8, off, k);
  const w = wordsOver(u8);
  const d = at >>> 2;
  let x = 0;
  for (let i = 0; i < 15; i++) {
    const v = msgWord(k, i, SALT);
    w[d + i] = v;
    x ^= v;
  }
  w[d + 15] = x;
}

/** 0 if the 64 bytes at `off` of `u8` (of length `len`) are message k, else 1. */
export function checkSmall(u8, off, len, k) {
  if (len !== SMALL) return 1;
  const at = u8.byteOffset + off;
  if ((at & 3) === 0) {
    // Aligned (the usual case): read words through an Int32Array over the whole ArrayBuffer, made
    // once per ArrayBuffer (Buffer pools, socket chunks, the channel's memory): the byte loop below
    // costs ~150 ns, which would hide the transports' differences.
    const words = wordsOver(u8);
    const w = at >>> 2;
    let x = 0;
    for (let i = 0; i < 16; i++) x ^= words[w + i];
    return x === 0 && words[w] === (k | 0) ? 0 : 1;
  }
  let x = 0;
  for (let j = off; j < off + SMALL; j += 4) x ^= u8[j] | (u8[j + 1] << 8) | (u8[j + 2] << 16) | (u8[j + 3] << 24);
  const seq = u8[off] | (u8[off + 1] << 8) | (u8[off + 2] << 16) | (u8[off + 3] << 24);
  return x === 0 && seq === (k | 0) ? 0 : 1;
}

// ---- 64 KiB messages -------------------------------------------------------------------------------

let template;
/** The seeded random bytes of a 64 KiB message (one copy per process; do not modify). */
export function largeTemplate() {
  if (template === undefined) {
    template = Buffer.allocUnsafe(LARGE);
    const rng = mulberry32(0x6368616e);
    for (let i = 0; i < LARGE; i += 4) template.writeUInt32LE(rng(), i);
  }
  return template;
}

/** Write the stamps of message k into a 64 KiB message at byte `off` of `u8` (the rest: the template). */
export function stampLarge(u8, off, k) {
  for (let j = 0; j < LARGE / STAMP_EVERY; j++) {
    const w = j === 0 ? k | 0 : msgWord(k, j, SALT);
    const p = off + j * STAMP_EVERY;
    u8[p] = w;
    u8[p + 1] = w >>> 8;
    u8[p + 2] = w >>> 16;
    u8[p + 3] = w >>> 24;
  }
}

/** Write the whole of message k (template + stamps) at byte `off` of `u8`. */
export function fillLarge(u8, off, k) {
  u8.set(largeTemplate(), off);
  stampLarge(u8, off, k);
}

/** The receiver's reference: a copy of the template, stamped for the message it expects. */
export function largeChecker() {
  const ref = Buffer.from(largeTemplate());
  return {
    ref,
    /** 0 if bytes [off, off + len) of `u8` are message k, else 1. */
    check(u8, off, len, k) {
      if (len !== LARGE) return 1;
      stampLarge(ref, 0, k);
      return ref.compare(u8, off, off + len) === 0 ? 0 : 1;
    },
    /** Start checking message k piece by piece (a stream may split it). */
    begin(k) {
      stampLarge(ref, 0, k);
    },
    /** 0 if bytes [s, e) of `u8` are bytes [msgOff, msgOff + e - s) of the message begun, else 1. */
    piece(u8, s, e, msgOff) {
      return ref.compare(u8, s, e, msgOff, msgOff + (e - s)) === 0 ? 0 : 1;
    },
  };
}

/** The check function for a message size: (u8, off, len, k) => 0 | 1. */
export function checkerFor(size) {
  return size === SMALL ? checkSmall : largeChecker().check;
}

// ---- framing for byte streams ----------------------------------------------------------------------

/**
 * A parser of length-prefixed messages from a byte stream: returns `onChunk(chunk)`. Calls
 * `onMessage(ok)` once per message with whether message k (counted from 0) checked out. Messages that
 * lie whole in a chunk are checked in place; a message split across chunks is checked piece by piece
 * (64 KiB) or re-assembled in a scratch buffer (64 bytes): no copy the check does not need.
 */
export function streamReceiver(size, onMessage) {
  const large = size === LARGE ? largeChecker() : null;
  const scratch = Buffer.alloc(SMALL);
  const hdr = Buffer.alloc(PREFIX);
  let hdrGot = 0;
  let need = 0; // payload bytes still to come of the current split message
  let msgLen = 0;
  let msgOff = 0;
  let bad = 0;
  let k = 0;
  return (chunk) => {
    const n = chunk.length;
    let i = 0;
    while (i < n) {
      if (need === 0) {
        let len;
        if (hdrGot === 0 && n - i >= PREFIX) {
          len = (chunk[i] | (chunk[i + 1] << 8) | (chunk[i + 2] << 16) | (chunk[i + 3] << 24)) >>> 0;
          i += PREFIX;
        } else {
          while (hdrGot < PREFIX && i < n) hdr[hdrGot++] = chunk[i++];
          if (hdrGot < PREFIX) return;
          hdrGot = 0;
          len = hdr.readUInt32LE(0);
        }
        if (len !== size) {
          // framing lost: count it and stop parsing this stream (the run fails its check)
          onMessage(false);
          need = -1;
          return;
        }
        if (n - i >= len) {
          const ok = (large ? large.check(chunk, i, len, k) : checkSmall(chunk, i, len, k)) === 0;
          i += len;
          k++;
          onMessage(ok);
          continue;
        }
        msgLen = len;
        msgOff = 0;
        need = len;
        bad = 0;
        if (large) large.begin(k);
      }
      if (need < 0) return;
      const take = Math.min(need, n - i);
      if (large) bad |= large.piece(chunk, i, i + take, msgOff);
      else chunk.copy(scratch, msgOff, i, i + take);
      msgOff += take;
      need -= take;
      i += take;
      if (need === 0) {
        if (!large) bad = checkSmall(scratch, 0, msgLen, k);
        k++;
        onMessage(bad === 0);
      }
    }
  };
}
