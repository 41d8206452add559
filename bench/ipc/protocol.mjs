/**
 * The ping-pong protocol shared by bench/ipc-latency.mjs (the parent, which measures) and
 * bench/ipc/peer.mjs (the child process or worker, which answers); bench/c/futex_pingpong.c mirrors
 * the shared-memory part.
 *
 * Messages are 64 bytes: 16 little-endian 32-bit words, word 0 the round number k, words 1..15 a
 * hash of (k, word index) and the direction's salt. Each side checks every word of every message it
 * receives, so a side that answered without reading, or read a stale or half-written message, is
 * counted as an error (and the run is marked failed).
 *
 * Shared memory layout (one page): the turn word at byte 0 (int32 index 0), READY at index 1, the
 * ping message at byte 64 and the pong message at byte 128 (a cache line each). Round k: the parent
 * writes ping(k), stores turn = 2k+1 and notifies; the child waits for 2k+1, checks ping(k), writes
 * pong(k), stores turn = 2k+2 and notifies; the parent waits for 2k+2 and checks pong(k).
 */

export const MSG_BYTES = 64;
export const WORDS = 16;
export const PING_SALT = 0x50494e47; // "PING"
export const PONG_SALT = 0x504f4e47; // "PONG"

/** int32 indexes in the shared page. */
export const TURN = 0;
export const READY = 1;
export const PING = 16; // byte 64
export const PONG = 32; // byte 128
export const SHM_SIZE = 4096;

/** Word i of message k (the same as msg_word() in bench/c/futex_pingpong.c). */
export function msgWord(k, i, salt) {
  return i === 0 ? k | 0 : Math.imul((k + i) | 0, 0x9e3779b1 | 0) ^ salt;
}

/** Write message k into `i32` at word index `at`. */
export function fillI32(i32, at, k, salt) {
  for (let i = 0; i < WORDS; i++) i32[at + i] = msgWord(k, i, salt);
}

/** 1 if message k at word index `at` of `i32` is wrong, else 0. */
export function checkI32(i32, at, k, salt) {
  let bad = 0;
  for (let i = 0; i < WORDS; i++) bad |= i32[at + i] !== msgWord(k, i, salt) ? 1 : 0;
  return bad;
}

/** A new 64-byte Buffer holding message k. */
export function makeBuf(k, salt) {
  const b = Buffer.allocUnsafe(MSG_BYTES);
  for (let i = 0; i < WORDS; i++) b.writeInt32LE(msgWord(k, i, salt), i * 4);
  return b;
}

/** Write message k into a Uint8Array of 64 bytes (through a DataView over it). */
export function fillBytes(dv, k, salt) {
  for (let i = 0; i < WORDS; i++) dv.setInt32(i * 4, msgWord(k, i, salt), true);
}

/** 1 if the 64 bytes at `off` of Buffer `b` are not message k, else 0. */
export function checkBuf(b, off, k, salt) {
  let bad = 0;
  for (let i = 0; i < WORDS; i++) bad |= b.readInt32LE(off + i * 4) !== msgWord(k, i, salt) ? 1 : 0;
  return bad;
}

/** 1 if the Uint8Array (structured clone of a 64-byte message) is not message k, else 0. */
export function checkBytes(u8, k, salt) {
  if (!(u8 instanceof Uint8Array) || u8.length !== MSG_BYTES) return 1;
  const dv = new DataView(u8.buffer, u8.byteOffset, MSG_BYTES);
  let bad = 0;
  for (let i = 0; i < WORDS; i++) bad |= dv.getInt32(i * 4, true) !== msgWord(k, i, salt) ? 1 : 0;
  return bad;
}

/** Message k as a 64-character string (8 hex digits per word, words 0..7): for process.send. */
export function makeString(k, salt) {
  let s = '';
  for (let i = 0; i < 8; i++) s += (msgWord(k, i, salt) >>> 0).toString(16).padStart(8, '0');
  return s;
}

/**
 * Re-assemble 64-byte messages from a byte stream (a socket or a pipe may split or join writes).
 * Calls `onMessage(buf, offset)` for each complete message.
 */
export function framer(onMessage) {
  let pending = null;
  return (chunk) => {
    if (pending === null && chunk.length === MSG_BYTES) {
      onMessage(chunk, 0);
      return;
    }
    const data = pending === null ? chunk : Buffer.concat([pending, chunk]);
    let off = 0;
    while (data.length - off >= MSG_BYTES) {
      onMessage(data, off);
      off += MSG_BYTES;
    }
    pending = off === data.length ? null : data.subarray(off);
  };
}

/** Nearest-rank percentile of a sorted array (the same rule as bench/c/futex_pingpong.c). */
export function percentile(sorted, p) {
  const n = sorted.length;
  const rank = Math.min(n, Math.max(1, Math.ceil(p * n - 1e-9)));
  return sorted[rank - 1];
}
