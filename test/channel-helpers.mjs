// Helpers shared by the channel test files test/80.channel-*.test.mjs: a test() with a time limit,
// channel memory, message bytes, error assertions for promises, the lane arithmetic of
// docs/channel-layout.md, and the echo round trips through a child. The child programs themselves are
// in test/fixtures/channel-child.mjs.
import { test as nodeTest } from 'node:test';
import assert from 'node:assert/strict';
import { Channel, CHANNEL, SharedMemory } from '../dist/index.js';
import { encode, verify } from './fixtures/channel-child.mjs';

/** Every test has a time limit (async waits such as `for await` and streams have none of their own). */
export function test(name, options, fn) {
  return typeof options === 'function' ? nodeTest(name, { timeout: 120_000 }, options) : nodeTest(name, { timeout: 120_000, ...options }, fn);
}

/** The wait strategies of a channel handle. */
export const STRATEGIES = ['spin', 'block', 'async', 'hybrid'];

/** A fresh name for named shared memory that must not come to exist (nothing removes it: shmName() of helpers.mjs does). */
export const uniq = (tag) => `mmapkit-test-ch-${tag}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Milliseconds since t0 (a performance.now()). */
export function elapsed(t0) {
  return performance.now() - t0;
}

/** Anonymous shared memory sized for a channel, closed when the test ends. */
export function anon(t, options) {
  const shm = SharedMemory.anonymous(Channel.byteLength(options));
  t.after(() => shm.close());
  return shm;
}

/** The bytes a message becomes (what receive() must give back). */
export function bytesOf(data) {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/** Assert that a promise rejects with exactly this code (and name, if given). */
export async function rejectsCode(promise, code, name) {
  await assert.rejects(promise, (err) => {
    assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`);
    if (name !== undefined) assert.equal(err.name, name);
    return true;
  });
}

/** Send `msg` until this producer's lane is full (trySend false): how many went. */
export function fill(ch, msg) {
  let n = 0;
  while (ch.trySend(msg)) n++;
  return n;
}

/** Bytes a message of n bytes takes in a lane: record(n) of docs/channel-layout.md. */
export const recordOf = (n) => (CHANNEL.RECORD_HEADER + n + 7) & ~7;

/** An Int32Array over the whole memory of a SharedMemory or Mapping. */
export const words = (mem) => new Int32Array(mem.buffer.buffer, mem.buffer.byteOffset, mem.buffer.length >>> 2);

/** The i32 index of word `field` of lane `lane`'s control block, in the channel at offset 0 of `mem`. */
export const laneWord = (mem, lane, field) => (mem.buffer.readUInt32LE(CHANNEL.LANES_OFFSET) + lane * CHANNEL.LANE_CONTROL + field) >>> 2;

/** Ping-pong N messages through a child that echoes them (IN → child → OUT); verify every echo. */
export async function echoThroughChild(t, { tx, rx, child, rounds, seed, asyncParent = false, maxPayload = 200 }) {
  for (let i = 0; i < rounds; i++) {
    // Every 10th message a string (UTF-8), every 7th a Uint32Array, the others binary with a checksum.
    const text = i % 10 === 0 ? `ключ ${i} ✓ ${'é'.repeat(i % 50)}` : undefined;
    const msg = text ?? (i % 7 === 0 ? new Uint32Array([i, ~i, 0xdeadbeef]) : encode(seed, 1, i, maxPayload));
    if (asyncParent) await tx.sendAsync(msg, { timeout: 10_000 });
    else tx.send(msg, 10_000);
    const back = asyncParent ? await rx.receiveAsync({ timeout: 10_000 }) : rx.receive(10_000);
    assert.ok(back !== null, `round ${i}: end of stream: ${child.output()}`);
    if (text !== undefined) assert.equal(back.toString('utf8'), text, `round ${i}`);
    else if (msg instanceof Uint32Array) assert.deepEqual(new Uint32Array(back.buffer.slice(back.byteOffset, back.byteOffset + back.length)), msg, `round ${i}`);
    else assert.deepEqual(verify(back, seed, maxPayload), [1, i], `round ${i}`);
    assert.ok(back.equals(bytesOf(msg)), `round ${i}`);
  }
  tx.close();
  assert.equal(asyncParent ? await rx.receiveAsync({ timeout: 10_000 }) : rx.receive(10_000), null, 'the child closed its end');
  rx.close();
  assert.deepEqual(await child.result(), { count: rounds });
}
