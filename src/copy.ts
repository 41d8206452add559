/**
 * Copying a message out of shared memory into a new Buffer, as cheaply as V8 allows (channels and
 * topics both return one Buffer per received message).
 * @module
 */

/** The Buffer pool's ArrayBuffer last seen by a copy, and an Int32Array over it. */
const pool = { buffer: new ArrayBuffer(0), words: new Int32Array(0) };

/**
 * A copy of `length` bytes of `u8` at `start` (4-byte aligned; `i32` views the same memory). Small
 * messages are copied a word at a time into the Buffer pool, through an Int32Array made once per
 * pool: cheaper than a byte loop or `Buffer#copy` (which makes a new view per call) for 64 bytes.
 */
export function copyOut(u8: Buffer, i32: Int32Array, start: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  if (length > 1024) {
    u8.copy(out, 0, start, start + length);
    return out;
  }
  const ab = out.buffer;
  let i = 0;
  if ((out.byteOffset & 3) === 0 && (ab === pool.buffer || (ab.byteLength & 3) === 0)) {
    if (ab !== pool.buffer) {
      pool.buffer = ab;
      pool.words = new Int32Array(ab);
    }
    const poolWords = pool.words;
    const s = start >>> 2;
    const d = out.byteOffset >>> 2;
    const n = length >>> 2;
    for (let w = 0; w < n; w++) poolWords[d + w] = i32[s + w]!;
    i = n << 2;
  }
  for (; i < length; i++) out[i] = u8[start + i]!;
  return out;
}
