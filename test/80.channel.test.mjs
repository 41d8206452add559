// Channel: message passing over shared memory between real processes (issue 4; layout version 3 of
// issue 10: one lane per producer). API on one process and across processes, every wait strategy,
// end of stream, zero copy, streams with backpressure, bad input, header validation. (Garbage from a
// peer and parties killed mid-message: test/83; receiveInto and drain: test/84; inspect() and the
// lane options: test/85.)
import { test as nodeTest } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Channel, CHANNEL, SharedMemory, map, mapAnonymous } from '../dist/index.js';
import { shmName, tempDir, throwsCode } from './helpers.mjs';
import { encode, startChild, verify, xorshift } from './fixtures/channel-child.mjs';

/** Every test has a time limit (async waits such as `for await` and streams have none of their own). */
function test(name, options, fn) {
  return typeof options === 'function' ? nodeTest(name, { timeout: 120_000 }, options) : nodeTest(name, { timeout: 120_000, ...options }, fn);
}
const STRATEGIES = ['spin', 'block', 'async', 'hybrid'];
const uniq = (tag) => `mmapkit-test-ch-${tag}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A fresh /dev/shm name, unlinked when the test ends (whether it passed or not). */

/** Anonymous shared memory sized for a channel, closed when the test ends. */
function anon(t, options) {
  const shm = SharedMemory.anonymous(Channel.byteLength(options));
  t.after(() => shm.close());
  return shm;
}

/** Start channel-child.mjs (output collected, killed after the timeout and when the test ends). */
const start = startChild;

/** The bytes a message becomes (what receive() must give back). */
function bytesOf(data) {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

function elapsed(t0) {
  return performance.now() - t0;
}

async function rejectsCode(promise, code, name) {
  await assert.rejects(promise, (err) => {
    assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`);
    if (name !== undefined) assert.equal(err.name, name);
    return true;
  });
}

/** Send `msg` until this producer's lane is full (trySend false): how many went. */
function fill(ch, msg) {
  let n = 0;
  while (ch.trySend(msg)) n++;
  return n;
}

/** Bytes a message of n bytes takes in a lane: record(n) of docs/channel-layout.md. */
const recordOf = (n) => (CHANNEL.RECORD_HEADER + n + 7) & ~7;

/** An Int32Array over the whole memory of a SharedMemory or Mapping. */
const words = (mem) => new Int32Array(mem.buffer.buffer, mem.buffer.byteOffset, mem.buffer.length >>> 2);

/** The i32 index of word `field` of lane `lane`'s control block, in the channel at offset 0 of `mem`. */
const laneWord = (mem, lane, field) => (mem.buffer.readUInt32LE(CHANNEL.LANES_OFFSET) + lane * CHANNEL.LANE_CONTROL + field) >>> 2;

/**
 * The room rule of docs/channel-layout.md ("Sending") for one lane, in plain numbers: whether a
 * message of n bytes fits (with a padding record first when it would cross the end of the ring),
 * and where the read position goes when the oldest message is taken.
 */
class LaneModel {
  constructor(laneSize) {
    this.size = laneSize;
    this.w = 0;
    this.r = 0;
    this.ends = []; // end position of every queued record (its padding included)
  }
  trySend(n) {
    const need = recordOf(n);
    const off = this.w & (this.size - 1);
    const pad = off + need > this.size ? this.size - off : 0;
    if (pad + need > this.size - (this.w - this.r)) return false;
    this.w += pad + need;
    this.ends.push(this.w);
    return true;
  }
  take() {
    this.r = this.ends.shift();
  }
  get count() {
    return this.ends.length;
  }
}

// ------------------------------------------------------------------------------------------ basics

test('one process, file target: strings, Buffers and TypedArrays; tryReceive undefined when empty, null at the end; trySend false exactly when the lane is full', async (t) => {
  const path = join(tempDir(t), 'ch.bin');
  const opts = { capacity: 4, maxMessageSize: 64 };
  const tx = Channel.create(path, opts);
  assert.equal(statSync(path).size, Channel.byteLength(opts));
  assert.equal(statSync(path).mode & 0o777, 0o600);
  // capacity 4 asks for a lane that holds at least 4 messages of 64 bytes: the least lane (4096
  // bytes) holds 56 of them whatever the padding at its wrap, and more smaller ones.
  assert.equal(tx.laneSize, 4096);
  assert.equal(tx.capacity, 56);
  assert.equal(tx.maxMessageSize, 64);
  assert.equal(tx.wait, 'block');
  assert.equal(tx.closed, false);
  assert.equal(tx.lane, undefined, 'not a producer yet: no lane');
  const rx = Channel.open(path);
  assert.equal(rx.tryReceive(), undefined, 'no producer yet: empty, not ended');
  assert.equal(rx.ended, false);
  const dv = new DataView(new ArrayBuffer(5));
  dv.setUint32(1, 0xdeadbeef);
  const messages = [
    'héllo wörld ✓ 🎉',
    '',
    Buffer.from([0, 1, 2, 255]),
    new Uint16Array([1, 0xffff, 0x1234]),
    new Float64Array([Math.PI, -0]),
    dv,
    Buffer.from('xxMIDDLExx').subarray(2, 8),
    new Uint8Array(64).fill(7),
    'z'.repeat(64),
  ];
  for (const m of messages) assert.equal(tx.trySend(m), true);
  assert.equal(tx.lane, 0, 'the first producer takes lane 0');
  assert.equal(rx.lane, undefined, 'a consumer has no lane');
  assert.equal(rx.size, messages.length);
  for (const [i, m] of messages.entries()) {
    const got = rx.tryReceive();
    assert.ok(Buffer.isBuffer(got), `message ${i}`);
    assert.deepEqual(got, bytesOf(m), `message ${i}`);
  }
  assert.equal(rx.tryReceive(), undefined, 'empty while the producer is open');
  assert.equal(rx.size, 0);
  // Full is per lane and per size (the old queue was full at `capacity` messages of any size): seeded
  // sizes from 0 to 64 bytes, sent and taken at random, the lane wrapping many times. trySend says
  // false exactly when the room rule of the layout doc says the record does not fit.
  const model = new LaneModel(tx.laneSize);
  for (const m of messages) {
    model.trySend(bytesOf(m).length);
    model.take();
  }
  const g = xorshift(80);
  const queue = [];
  let fulls = 0;
  for (let i = 0; i < 6000; i++) {
    const v = g.next().value;
    if (v % 3 !== 0 || model.count === 0) {
      const msg = Buffer.alloc((v >>> 8) % 65, i & 0xff);
      const fits = model.trySend(msg.length);
      assert.equal(tx.trySend(msg), fits, `send ${i}: ${msg.length} bytes at write position ${model.w}, ${model.count} queued`);
      if (fits) queue.push(msg);
      else fulls++;
    } else {
      model.take();
      assert.deepEqual(rx.tryReceive(), queue.shift(), `receive ${i}`);
    }
    assert.equal(rx.size, model.count);
  }
  t.diagnostic(`the lane was full for ${fulls} of the sends (${queue.length} messages queued at the end)`);
  assert.ok(fulls > 100, 'the lane was never full: the test did not test it');
  for (let m; (m = rx.tryReceive()) !== undefined;) assert.deepEqual(m, queue.shift());
  assert.equal(queue.length, 0);
  // From any position, an empty lane takes at least `capacity` messages of maxMessageSize.
  const n = fill(tx, Buffer.alloc(64, 1));
  assert.ok(n >= tx.capacity, `${n} messages of maxMessageSize fit, capacity says ${tx.capacity}`);
  assert.equal(rx.size, n);
  assert.equal(rx.receiveMany(n, 1000).length, n);
  tx.close();
  assert.equal(tx.closed, true);
  assert.equal(rx.tryReceive(), null, 'null once every producer has closed');
  assert.equal(rx.ended, true);
  assert.equal(rx.receive(1000), null);
  assert.equal(await rx.receiveAsync({ timeout: 1000 }), null);
  const rest = [];
  for await (const m of rx) rest.push(m);
  assert.deepEqual(rest, []);
  rx.close();
  // The lane is the least power of two (4096 at least) with room for capacity + 1 records of
  // maxMessageSize (the extra one for the padding at the wrap); `capacity` then says how many it
  // takes whatever the padding, and an empty lane at position 0 takes laneSize / record of them.
  // The file is exactly byteLength().
  const p2 = join(tempDir(t), 'ch2.bin');
  for (const [asked, max, lane] of [[2, 1, 4096], [1000, 1, 16384], [1000, 64, 131072], [30, 1024, 32768], [31, 1024, 65536], [1, 2040, 4096]]) {
    const o = { capacity: asked, maxMessageSize: max, maxProducers: 1 };
    const c = Channel.create(p2, o);
    const rec = recordOf(max);
    assert.equal(c.laneSize, lane, `capacity ${asked} of ${max} bytes`);
    assert.equal(c.capacity, Math.floor((lane - rec + CHANNEL.RECORD_HEADER) / rec));
    assert.ok(c.capacity >= asked);
    assert.equal(statSync(p2).size, Channel.byteLength(o));
    const again = Channel.open(p2);
    assert.deepEqual([again.capacity, again.laneSize, again.maxMessageSize], [c.capacity, lane, max]);
    assert.equal(fill(c, Buffer.alloc(max)), Math.floor(lane / rec));
    again.close();
    c.close();
    truncateSync(p2, 0); // the next create() starts from an empty file (and grows it)
  }
});

test('batches: sendMany/trySendMany/receiveMany/tryReceiveMany keep order and bytes, respect max, report partial sends', (t) => {
  const opts = { capacity: 8, maxMessageSize: 32 };
  const shm = anon(t, opts);
  const ch = Channel.create(shm, opts);
  t.after(() => ch.close());
  const u16 = new Uint16Array([1, 2, 3]);
  const dv = new DataView(new ArrayBuffer(4));
  dv.setUint32(0, 0xdeadbeef);
  const batch = ['one', Buffer.from('two'), u16, dv, new Uint8Array(0), 'é'];
  ch.sendMany(batch);
  assert.equal(ch.size, 6);
  assert.deepEqual(ch.receiveMany(4, 1000), batch.slice(0, 4).map(bytesOf), 'max 4: the first four, in order');
  assert.deepEqual(ch.tryReceiveMany(), batch.slice(4).map(bytesOf), 'the rest');
  assert.deepEqual(ch.tryReceiveMany(), [], 'empty: [] (not the end: this handle is an attached producer)');
  ch.sendMany([]);
  assert.equal(ch.trySendMany([]), 0);
  // trySendMany sends what fits in this producer's lane. On a fresh channel (positions at 0) a lane
  // of 4096 bytes takes 102 messages of 32 bytes (records of 40), leaving 16 bytes: room for one
  // more message of up to 8 bytes, not for another of 32 (full is per size now, not a slot count).
  const fresh = anon(t, opts);
  const f = Channel.create(fresh, opts);
  t.after(() => f.close());
  const msg32 = (tag) => tag.padEnd(32, '.');
  const many = Array.from({ length: 200 }, (_, i) => msg32(`m${i}`));
  assert.equal(f.laneSize, 4096);
  assert.equal(f.trySendMany(many), Math.floor(4096 / recordOf(32)));
  assert.equal(f.trySendMany(many.slice(102)), 0, 'full for 32 bytes');
  assert.equal(f.trySendMany(['x']), 1, 'a small message still fits');
  assert.equal(f.trySendMany(['y']), 0, 'full');
  // A timeout part-way says how many went (here none: the lane stays full).
  const t0 = performance.now();
  throwsCode(() => f.sendMany(['a', 'b'], 50), 'ERR_MMAP_CHANNEL_TIMEOUT', 'MmapkitError', { sent: 0 });
  assert.ok(elapsed(t0) >= 45, 'waited about the timeout');
  // Taking 3 records frees room for exactly 3 more of the same size (the ring wraps to offset 0).
  assert.deepEqual(f.receiveMany(3).map(String), many.slice(0, 3));
  const five = ['A', 'B', 'C', 'D', 'E'].map(msg32);
  throwsCode(() => f.sendMany(five, { timeout: 30 }), 'ERR_MMAP_CHANNEL_TIMEOUT', 'MmapkitError', { sent: 3 });
  assert.deepEqual(f.receiveMany(1000, 1000).map(String), [...many.slice(3, 102), 'x', ...five.slice(0, 3)], 'max larger than what waits: what waits');
  // Every message is checked before the first is sent.
  assert.throws(() => ch.sendMany(['ok', Buffer.alloc(33)]), { code: 'ERR_OUT_OF_RANGE', message: /messages\[1\]\.byteLength/ });
  assert.throws(() => ch.sendMany(['ok', 42]), { code: 'ERR_INVALID_ARG_TYPE', message: /messages\[1\]/ });
  throwsCode(() => ch.trySendMany(['ok', null]), 'ERR_INVALID_ARG_TYPE');
  assert.equal(ch.size, 0, 'nothing was sent by the refused batches');
  // Bad arguments.
  for (const bad of [undefined, null, 'abc', { length: 1, 0: 'x' }, new Set(['x'])]) {
    throwsCode(() => ch.sendMany(bad), 'ERR_INVALID_ARG_TYPE');
    throwsCode(() => ch.trySendMany(bad), 'ERR_INVALID_ARG_TYPE');
  }
  for (const bad of [0, -1, 1.5, 2 ** 31, NaN]) {
    throwsCode(() => ch.receiveMany(bad), 'ERR_OUT_OF_RANGE');
    throwsCode(() => ch.tryReceiveMany(bad), 'ERR_OUT_OF_RANGE');
  }
  for (const bad of ['3', {}, 3n]) throwsCode(() => ch.receiveMany(bad), 'ERR_INVALID_ARG_TYPE');
  throwsCode(() => ch.receiveMany(1, -1), 'ERR_INVALID_ARG_VALUE');
  throwsCode(() => ch.sendMany(['x'], { timeout: 'soon' }), 'ERR_INVALID_ARG_TYPE');
  throwsCode(() => ch.sendMany(['x'], { timeot: 5 }), 'ERR_INVALID_ARG_VALUE');
  assert.equal(ch.size, 0);
  // The end of the stream: null once the only producer closed and the queue is empty.
  const rx = Channel.open(shm);
  t.after(() => rx.close());
  ch.sendMany(['last']);
  ch.close();
  assert.deepEqual(rx.tryReceiveMany().map(String), ['last']);
  assert.equal(rx.tryReceiveMany(), null);
  assert.equal(rx.receiveMany(5, 1000), null);
  assert.equal(rx.ended, true);
});

test('batches: the async forms wait without blocking the event loop, time out with `sent`, and end with null', async (t) => {
  const opts = { capacity: 4, maxMessageSize: 8 };
  const shm = anon(t, opts);
  const tx = Channel.create(shm, { ...opts, wait: 'async' });
  const rx = Channel.open(shm, { wait: 'async' });
  t.after(() => {
    tx.close();
    rx.close();
  });
  const got = rx.receiveManyAsync(10, { timeout: 5000 });
  let ticks = 0;
  const ticker = setInterval(() => ticks++, 2);
  await sleep(30);
  tx.sendMany(['a', 'b']);
  assert.deepEqual((await got).map(String), ['a', 'b'], 'woken by sendMany, takes what waits');
  // Messages of up to 8 bytes take 16 bytes each: the 4096-byte lane holds exactly 256 of them.
  assert.equal(fill(tx, 'f'), 256);
  const sending = tx.sendManyAsync(['1', '2', '3', '4', '5', '6'], 5000);
  await sleep(30);
  assert.equal(tx.size, 256, 'the lane is full; the sender waits for room');
  assert.deepEqual(rx.receiveMany(4).map(String), ['f', 'f', 'f', 'f']);
  await sleep(30);
  // A waiting producer is woken once a quarter of its lane is free, not for every record taken.
  assert.equal(tx.size, 252, 'four taken: the lane is still more than three quarters full, the sender sleeps');
  assert.deepEqual(rx.receiveMany(60).map(String), Array(60).fill('f'));
  await sending;
  assert.equal(tx.size, 198, 'a quarter of the lane free: the sender was woken and sent all six');
  assert.deepEqual(rx.receiveMany(1024, 1000).map(String), [...Array(192).fill('f'), '1', '2', '3', '4', '5', '6']);
  clearInterval(ticker);
  assert.ok(ticks >= 5, `the event loop ran while waiting (${ticks} ticks)`);
  tx.sendMany(['w', 'x', 'y', 'z']);
  const fillers = fill(tx, 'F');
  await rejectsCode(tx.sendManyAsync(['full'], { timeout: 30 }), 'ERR_MMAP_CHANNEL_TIMEOUT');
  await assert.rejects(tx.sendManyAsync(['full'], { timeout: 20 }), { sent: 0 });
  const ac = new AbortController();
  const aborted = rx.receiveManyAsync(1, { signal: ac.signal });
  assert.equal((await aborted).length, 1, 'a message waited: no wait to abort');
  tx.sendMany(['p']); // full again
  const pending = tx.sendManyAsync(['q'], { signal: ac.signal });
  await sleep(10);
  ac.abort();
  await assert.rejects(pending, { name: 'AbortError', sent: 0 });
  await rejectsCode(rx.receiveManyAsync(0), 'ERR_OUT_OF_RANGE');
  await rejectsCode(tx.sendManyAsync('nope'), 'ERR_INVALID_ARG_TYPE');
  tx.close();
  assert.deepEqual((await rx.receiveManyAsync()).map(String), ['x', 'y', 'z', ...Array(fillers).fill('F'), 'p']);
  assert.equal(await rx.receiveManyAsync(), null);
});

test('batches: sendMany wakes as many sleeping consumers as it sent messages; receiveMany wakes the producer of every lane it freed room in', async (t) => {
  const opts = { capacity: 4, maxMessageSize: 8 };
  const shm = anon(t, opts);
  const tx = Channel.create(shm, { ...opts, wait: 'async' });
  const rx = [Channel.open(shm, { wait: 'async' }), Channel.open(shm, { wait: 'async' })];
  t.after(() => [tx, ...rx].forEach((h) => h.close()));
  tx.attach('producer');
  // Two consumers asleep on their waiter threads. A consumer that is not woken looks again 100 ms
  // after it went to sleep (about 90 ms after the send): the limit of 45 ms tells the two apart.
  const pending = rx.map((h) => h.receiveAsync({ timeout: 5000 }).then((m) => [String(m), performance.now()]));
  await sleep(10);
  const t0 = performance.now();
  tx.sendMany(['a', 'b']);
  const got = await Promise.all(pending);
  assert.deepEqual(got.map(([m]) => m).sort(), ['a', 'b']);
  for (const [, at] of got) assert.ok(at - t0 < 45, `each consumer woken at once (after ${(at - t0).toFixed(1)} ms)`);
  // Two producers asleep, each on its own full lane (full is per producer now: one full lane does
  // not hold the other producer back); one receiveMany frees room in both lanes and wakes both.
  const producers = [Channel.open(shm, { wait: 'async' }), Channel.open(shm, { wait: 'async' })];
  t.after(() => producers.forEach((h) => h.close()));
  for (const h of producers) assert.equal(fill(h, 'x'), 256);
  assert.deepEqual(producers.map((h) => h.lane), [1, 2]);
  const sending = producers.map((h, i) => h.sendAsync(`p${i}`, { timeout: 5000 }).then(() => performance.now()));
  await sleep(10);
  const t1 = performance.now();
  assert.equal(rx[0].receiveMany(1024, 1000).length, 512, 'both lanes taken in one call');
  for (const at of await Promise.all(sending)) assert.ok(at - t1 < 45, `each producer woken at once (after ${(at - t1).toFixed(1)} ms)`);
  assert.deepEqual(rx[1].receiveMany(1024, 1000).map(String).sort(), ['p0', 'p1']);
});

for (const wait of STRATEGIES) {
  test(`batches across processes: sendMany → receiveMany through a 4 KiB lane (27 messages of 140 bytes), '${wait}'`, async (t) => {
    const opts = { capacity: 8, maxMessageSize: 140 };
    const shm = anon(t, opts);
    Channel.create(shm, opts).close();
    const count = 4000;
    const spawnOpts = () => shm.childOptions({ stdio: ['pipe', 'pipe', 'pipe'] }, 'ch');
    const json = JSON.stringify({ wait });
    const async = wait === 'async';
    // The consumer first: it must wait on an empty queue, then the producer on a full one.
    const consumer = start(t, ['consume', 'inherit:ch', json, '9', '128', async ? 'receiveManyAsync' : 'receiveMany'], spawnOpts());
    const producer = start(t, ['produce', 'inherit:ch', json, '3', String(count), '9', '128', async ? 'sendManyAsync' : 'sendMany'], spawnOpts());
    assert.equal((await producer.result()).sent, count);
    const { seqs } = await consumer.result();
    assert.deepEqual(Object.keys(seqs), ['3']);
    assert.deepEqual(seqs[3], Array.from({ length: count }, (_, i) => i), 'every message once, in order');
  });
}

test('named shared memory and Mapping targets: create, open, exclusive names, alignment', async (t) => {
  const name = shmName(t, 'named');
  const opts = { capacity: 8, maxMessageSize: 100 };
  const a = Channel.create({ name }, opts);
  assert.equal(statSync(`/dev/shm/${name}`).size, Channel.byteLength(opts));
  throwsCode(() => Channel.create({ name }, opts), 'EEXIST', 'Error', { syscall: 'shm_open' });
  const b = Channel.open({ name: `/${name}` });
  assert.deepEqual([b.capacity, b.laneSize, b.maxMessageSize], [a.capacity, a.laneSize, 100]);
  assert.ok(b.capacity >= 8);
  a.send('to b');
  assert.deepEqual(b.receive(1000), Buffer.from('to b'));
  b.close();
  a.close();
  assert.ok(existsSync(`/dev/shm/${name}`), 'closing does not unlink the name');
  throwsCode(() => Channel.open({ name: uniq('missing') }), 'ENOENT', 'Error', { syscall: 'shm_open' });

  // A Mapping of a file: the channel does not unmap memory it did not map.
  const path = join(tempDir(t), 'm.bin');
  const size = Channel.byteLength(opts);
  const m = map(path, { access: 'write', size: size + 4096 });
  const c = Channel.create(m, opts);
  const d = Channel.open(path);
  c.send(new Uint8Array([9, 8, 7]));
  assert.deepEqual(d.receive(1000), Buffer.from([9, 8, 7]));
  c.close();
  d.close();
  assert.equal(m.closed, false);
  const reopened = Channel.open(m);
  assert.equal(reopened.capacity, a.capacity);
  reopened.close();
  m.unmap();
  // Inside a file at an offset: 128-byte aligned works (the hot words of a lane have a pair of
  // 128-byte lines each), anything else is refused, by create() and by open(); 64 was enough before.
  const at128 = map(path, { access: 'write', offset: 128, length: size });
  Channel.create(at128, opts).close();
  const whole = map(path, { access: 'write', offset: 128 });
  const inside = Channel.open(whole);
  assert.equal(inside.capacity, a.capacity);
  inside.close();
  whole.unmap();
  // A valid channel header at an address that is 64- but not 128-byte aligned: open() refuses it.
  const file = map(path, { access: 'write' });
  file.buffer.copy(file.buffer, 64, 128, 128 + size); // the channel made at offset 128, moved to 64
  file.unmap();
  const at64 = map(path, { access: 'write', offset: 64, length: size });
  assert.equal(Channel.inspect(at64).state, 'channel', 'the header there is valid');
  throwsCode(() => Channel.open(at64), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  at64.unmap();
  at128.unmap();
  for (const offset of [100, 64, 8]) {
    const unaligned = map(path, { access: 'write', offset, length: size });
    unaligned.buffer.fill(0xab);
    throwsCode(() => Channel.create(unaligned, opts), 'ERR_INVALID_ARG_VALUE', 'TypeError');
    assert.ok(unaligned.buffer.every((b) => b === 0xab), `offset ${offset}: the refused memory was not written`);
    unaligned.unmap();
  }
});

/** Ping-pong N messages through a child that echoes them (IN → child → OUT); verify every echo. */
async function echoThroughChild(t, { tx, rx, child, rounds, seed, asyncParent = false, maxPayload = 200 }) {
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

for (const kind of ['file', 'name', 'inherit']) {
  for (const method of ['sync', 'async', 'zerocopy']) {
    test(`across processes, ${kind} target: the child opens it and echoes (${method}); strings and binary intact`, async (t) => {
      const opts = { capacity: 16, maxMessageSize: 212 };
      let tx, rx, specs, spawnOptions = {};
      if (kind === 'file') {
        const dir = tempDir(t);
        tx = Channel.create(join(dir, 'in'), opts);
        rx = Channel.create(join(dir, 'out'), opts);
        specs = [`file:${join(dir, 'in')}`, `file:${join(dir, 'out')}`];
      } else if (kind === 'name') {
        const [n1, n2] = [shmName(t, 'in'), shmName(t, 'out')];
        tx = Channel.create({ name: n1 }, opts);
        rx = Channel.create({ name: n2 }, opts);
        specs = [`name:${n1}`, `name:${n2}`];
      } else {
        const [s1, s2] = [anon(t, opts), anon(t, opts)];
        tx = Channel.create(s1, opts);
        rx = Channel.create(s2, opts);
        specs = ['inherit:in', 'inherit:out'];
        spawnOptions = s2.childOptions(s1.childOptions({ stdio: ['pipe', 'pipe', 'pipe'] }, 'in'), 'out');
      }
      const child = start(t, ['echo', ...specs, '{}', method], spawnOptions);
      await echoThroughChild(t, { tx, rx, child, rounds: 300, seed: 11, asyncParent: method === 'async' });
    });
  }
}

// ------------------------------------------------------------------------------------------ wait strategies

for (const parentWait of STRATEGIES) {
  for (const childWait of STRATEGIES) {
    test(`wait strategies: ping-pong between processes, parent '${parentWait}', child '${childWait}'`, async (t) => {
      const opts = { capacity: 4, maxMessageSize: 212 };
      const [s1, s2] = [anon(t, opts), anon(t, opts)];
      Channel.create(s1, opts).close();
      Channel.create(s2, opts).close();
      const handle = { wait: parentWait, ...(parentWait === 'hybrid' ? { spin: 20 } : {}) };
      const tx = Channel.open(s1, handle);
      const rx = Channel.open(s2, handle);
      assert.equal(tx.wait, parentWait);
      const childOpts = JSON.stringify({ wait: childWait, ...(childWait === 'hybrid' ? { spin: 20 } : {}) });
      const child = start(t, ['echo', 'inherit:in', 'inherit:out', childOpts, childWait === 'async' ? 'async' : 'sync'],
        s2.childOptions(s1.childOptions({ stdio: ['pipe', 'pipe', 'pipe'] }, 'in'), 'out'));
      // Two spinning processes on two cores share them with everything else: fewer rounds.
      const rounds = parentWait === 'spin' && childWait === 'spin' ? 200 : 1000;
      const t0 = performance.now();
      await echoThroughChild(t, { tx, rx, child, rounds, seed: 5, asyncParent: parentWait === 'async' });
      t.diagnostic(`${rounds} round trips in ${Math.round(elapsed(t0))} ms (including the child's start)`);
    });
  }
}

for (const producerWait of STRATEGIES) {
  for (const consumerWait of STRATEGIES) {
    test(`wait strategies: one-way flow through a 4 KiB lane (27 messages of 140 bytes), producer '${producerWait}', consumer '${consumerWait}'`, async (t) => {
      const opts = { capacity: 8, maxMessageSize: 140 };
      const shm = anon(t, opts);
      Channel.create(shm, opts).close();
      const count = 4000;
      const spawnOpts = () => shm.childOptions({ stdio: ['pipe', 'pipe', 'pipe'] }, 'ch');
      const json = (w) => JSON.stringify({ wait: w });
      // The consumer first: it must wait on an empty queue, then the producer on a full one.
      const consumer = start(t, ['consume', 'inherit:ch', json(consumerWait), '9', '128', consumerWait === 'async' ? 'forawait' : 'receive'], spawnOpts());
      const producer = start(t, ['produce', 'inherit:ch', json(producerWait), '3', String(count), '9', '128', producerWait === 'async' ? 'sendAsync' : 'send'], spawnOpts());
      assert.equal((await producer.result()).sent, count);
      const { seqs } = await consumer.result();
      assert.deepEqual(Object.keys(seqs), ['3']);
      assert.deepEqual(seqs[3], Array.from({ length: count }, (_, i) => i), 'every message once, in order');
    });
  }
}

test('timeouts: send, receive, reserve and receiveInPlace give ERR_MMAP_CHANNEL_TIMEOUT after about the timeout, in every strategy', async (t) => {
  const opts = { capacity: 2, maxMessageSize: 16 };
  const full = anon(t, opts);
  const empty = anon(t, opts);
  Channel.create(full, opts).close();
  Channel.create(empty, opts).close();
  const filler = Channel.open(full);
  assert.ok(fill(filler, 'a') >= filler.capacity);
  const keepOpen = Channel.open(empty);
  keepOpen.send('x');
  Channel.open(empty).receive(0); // a producer is attached and the queue is empty: no end of stream
  const approx = (t0, ms, what) => {
    const took = elapsed(t0);
    assert.ok(took >= ms - 5 && took < ms + 900, `${what}: timed out after ${Math.round(took)} ms, asked ${ms}`);
  };
  const lanes = new Set();
  for (const wait of STRATEGIES) {
    const p = Channel.open(full, { wait });
    const c = Channel.open(empty, { wait });
    // Full is per producer: p fills its own lane (the lane of the p before it, closed with its
    // messages still queued: already full).
    fill(p, 'b');
    lanes.add(p.lane);
    let t0 = performance.now();
    throwsCode(() => p.send('c', 150), 'ERR_MMAP_CHANNEL_TIMEOUT', 'MmapkitError');
    approx(t0, 150, `${wait} send`);
    t0 = performance.now();
    throwsCode(() => p.reserve({ timeout: 100 }), 'ERR_MMAP_CHANNEL_TIMEOUT', 'MmapkitError');
    approx(t0, 100, `${wait} reserve`);
    t0 = performance.now();
    await rejectsCode(p.sendAsync('c', { timeout: 150 }), 'ERR_MMAP_CHANNEL_TIMEOUT', 'MmapkitError');
    approx(t0, 150, `${wait} sendAsync`);
    t0 = performance.now();
    throwsCode(() => c.receive({ timeout: 150 }), 'ERR_MMAP_CHANNEL_TIMEOUT', 'MmapkitError');
    approx(t0, 150, `${wait} receive`);
    t0 = performance.now();
    throwsCode(() => c.receiveInPlace(100), 'ERR_MMAP_CHANNEL_TIMEOUT', 'MmapkitError');
    approx(t0, 100, `${wait} receiveInPlace`);
    t0 = performance.now();
    await rejectsCode(c.receiveAsync(150), 'ERR_MMAP_CHANNEL_TIMEOUT', 'MmapkitError');
    approx(t0, 150, `${wait} receiveAsync`);
    throwsCode(() => p.send('c', 0), 'ERR_MMAP_CHANNEL_TIMEOUT', 'MmapkitError');
    throwsCode(() => c.receive(0), 'ERR_MMAP_CHANNEL_TIMEOUT', 'MmapkitError');
    p.close();
    c.close();
  }
  // The sleeper counts in shared memory are back to zero after the timeouts.
  assert.deepEqual([...lanes], [1], 'each p took the lane the one before it closed');
  assert.equal(words(full)[laneWord(full, 1, CHANNEL.LANE_PRODUCER_WAITING)], 0);
  assert.equal(words(empty)[CHANNEL.CONSUMER_SLEEPERS >>> 2], 0);
  filler.close();
  keepOpen.close();
});

test('async methods do not block the event loop, in every strategy; an AbortSignal cancels them', async (t) => {
  const opts = { capacity: 2, maxMessageSize: 64 };
  for (const wait of STRATEGIES) {
    const shm = anon(t, opts);
    Channel.create(shm, opts).close();
    const i32 = words(shm);
    const rx = Channel.open(shm, { wait });
    const tx = Channel.open(shm, { wait });
    // The message is sent by a timer of this same thread: only a wait that leaves the loop running sees it.
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 5);
    setTimeout(() => tx.send(`after 150 ms (${wait})`), 150);
    const t0 = performance.now();
    assert.deepEqual(await rx.receiveAsync({ timeout: 5000 }), Buffer.from(`after 150 ms (${wait})`));
    clearInterval(ticker);
    const took = elapsed(t0);
    t.diagnostic(`${wait}: a 5 ms interval ran ${ticks} times during a ${Math.round(took)} ms receiveAsync`);
    assert.ok(took >= 140 && took < 2500, `${wait}: received after ${Math.round(took)} ms`);
    assert.ok(ticks >= 1, `${wait}: the event loop never ran while waiting`);
    // Full lane: sendAsync waits while a timer frees room.
    const n = fill(tx, '1');
    setTimeout(() => rx.receive(0), 100);
    await tx.sendAsync('3', { timeout: 5000 });
    const rest = rx.receiveMany(1024, 1000).map(String);
    assert.deepEqual(rest, [...Array(n - 1).fill('1'), '3']);
    // Abort: the promise rejects with the signal's reason and the sleeper count is given back.
    const ac = new AbortController();
    const pending = rx.receiveAsync({ signal: ac.signal });
    setTimeout(() => ac.abort(), 50);
    await assert.rejects(pending, { name: 'AbortError' });
    assert.equal(i32[CHANNEL.CONSUMER_SLEEPERS >>> 2], 0, `${wait}: consumer sleepers after abort`);
    const m = fill(tx, 'a');
    const ac2 = new AbortController();
    const pendingSend = tx.sendAsync('c', { signal: ac2.signal });
    setTimeout(() => ac2.abort(new Error('stop')), 50);
    await assert.rejects(pendingSend, /stop/);
    assert.equal(i32[laneWord(shm, tx.lane, CHANNEL.LANE_PRODUCER_WAITING)], 0, `${wait}: producer waiting after abort`);
    assert.deepEqual(rx.receiveMany(1024, 1000).map(String), Array(m).fill('a'), 'the aborted send sent nothing');
    await assert.rejects(rx.receiveAsync({ signal: AbortSignal.abort() }), { name: 'AbortError' });
    tx.close();
    rx.close();
  }
});

// ------------------------------------------------------------------------------------------ end of stream

test('end of stream: a consumer sees the end only once every producer (in 3 processes) has closed, exited or died', async (t) => {
  const opts = { capacity: 64, maxMessageSize: 16 };
  const shm = anon(t, opts);
  const rx = Channel.create(shm, opts);
  const kids = [0, 1, 2].map((id) => start(t, ['wait-close', 'inherit:ch', String(id), '10'], shm.childOptions({ stdio: ['pipe', 'pipe', 'pipe'] }, 'ch')));
  await Promise.all(kids.map((k) => k.line(/^sent$/)));
  const got = [];
  for (let m; (m = rx.tryReceive()) !== undefined;) {
    assert.notEqual(m, null, 'end of stream while producers are open');
    got.push(m.toString());
  }
  assert.equal(got.length, 30);
  for (const id of [0, 1, 2]) assert.deepEqual(got.filter((s) => s.startsWith(`P${id}-`)), Array.from({ length: 10 }, (_, i) => `P${id}-${i}`));
  const notYet = async (what) => {
    assert.equal(rx.tryReceive(), undefined, what);
    throwsCode(() => rx.receive(120), 'ERR_MMAP_CHANNEL_TIMEOUT', 'MmapkitError');
    await rejectsCode(rx.receiveAsync(120), 'ERR_MMAP_CHANNEL_TIMEOUT');
    assert.equal(rx.ended, false, what);
  };
  await notYet('all three open');
  kids[0].tell('close');
  await kids[0].line(/^closed$/);
  await notYet('two open');
  kids[1].tell('exit'); // exits without closing its handle: a dead producer counts as closed
  assert.deepEqual(await kids[1].exited, { code: 0, signal: null });
  await notYet('one open');
  // The last one: a waiting for-await sees the end when it is killed.
  const iterating = (async () => {
    const rest = [];
    for await (const m of rx) rest.push(m);
    return rest;
  })();
  await sleep(100);
  kids[2].child.kill('SIGKILL');
  assert.deepEqual(await kids[2].exited, { code: null, signal: 'SIGKILL' });
  const t0 = performance.now();
  assert.deepEqual(await iterating, []);
  assert.ok(elapsed(t0) < 2000, 'the end was seen promptly');
  assert.equal(rx.ended, true);
  assert.equal(rx.tryReceive(), null);
  kids[0].child.kill('SIGKILL');
  rx.close();

  // In one process: two producer handles; the end only after both close.
  const shm2 = anon(t, opts);
  const c = Channel.create(shm2, opts);
  const p1 = Channel.open(shm2);
  const p2 = Channel.open(shm2);
  p1.send('one');
  p2.send('two');
  p1.close();
  assert.deepEqual([c.receive(0), c.receive(0)].map(String), ['one', 'two']);
  throwsCode(() => c.receive(50), 'ERR_MMAP_CHANNEL_TIMEOUT', 'MmapkitError');
  p2.close();
  assert.equal(c.receive(1000), null);
  c.close();
});

test("attach('producer') counts a handle for the end of stream before its first send", (t) => {
  const opts = { capacity: 4, maxMessageSize: 16 };
  const shm = anon(t, opts);
  const rx = Channel.create(shm, opts);
  const early = Channel.open(shm);
  const late = Channel.open(shm);
  early.send('e');
  late.attach('producer');
  late.attach('producer'); // idempotent
  early.close();
  assert.deepEqual(rx.receive(0), Buffer.from('e'));
  assert.equal(rx.tryReceive(), undefined, 'an attached producer that has sent nothing keeps the stream open');
  late.send('l');
  late.close();
  assert.deepEqual(rx.receive(0), Buffer.from('l'));
  assert.equal(rx.tryReceive(), null);
  const other = Channel.open(shm);
  other.attach('consumer');
  for (const bad of ['both', '', 1, undefined]) throwsCode(() => other.attach(bad), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  other.close();
  rx.close();
});

// ------------------------------------------------------------------------------------------ fan-in (issue 16)

/** Start child `i` of a fan-in: it sends 'result i' on the inherited channel and ends by `end`. */
const fanInChild = (t, shm, i, end) => start(t, ['send-one', 'inherit:ch', String(i), end], shm.childOptions({ stdio: ['pipe', 'pipe', 'pipe'] }, 'ch'));

test('fan-in: create({ producers: 4 }) and four child producers that each send one result and close, started together or one after the other', async (t) => {
  const opts = { capacity: 8, maxMessageSize: 32, producers: 4 };
  for (const order of ['together', 'one after the other']) {
    const shm = anon(t, opts);
    const rx = Channel.create(shm, opts);
    assert.equal(rx.producers, 4);
    assert.equal(rx.endReason, undefined);
    const got = [];
    if (order === 'together') {
      const kids = [1, 2, 3, 4].map((i) => fanInChild(t, shm, i, 'close'));
      for (let m; (m = await rx.receiveAsync({ timeout: 20_000 })) !== null;) got.push(m.toString());
      for (const k of kids) assert.deepEqual(await k.exited, { code: 0, signal: null });
    } else {
      // The worst case for an end decided by the producers attached so far: each child attaches only
      // after the one before has closed and its result was taken.
      for (const i of [1, 2, 3, 4]) {
        const k = fanInChild(t, shm, i, 'close');
        assert.deepEqual(await k.exited, { code: 0, signal: null });
        got.push((await rx.receiveAsync({ timeout: 20_000 })).toString());
        if (i < 4) assert.equal(rx.tryReceive(), undefined, `${i} of 4 producers came and closed: not the end yet`);
      }
      assert.equal(await rx.receiveAsync({ timeout: 20_000 }), null);
    }
    assert.deepEqual(got.sort(), ['result 1', 'result 2', 'result 3', 'result 4'], order);
    assert.equal(rx.ended, true);
    assert.equal(rx.endReason, 'closed', order);
    rx.close();
  }
  // Without `producers`, the same one-after-the-other run ends with the first close: what the option is for.
  const plain = { capacity: 8, maxMessageSize: 32 };
  const shm = anon(t, plain);
  const rx = Channel.create(shm, plain);
  assert.equal(rx.producers, undefined);
  assert.deepEqual(await fanInChild(t, shm, 1, 'close').exited, { code: 0, signal: null });
  assert.equal((await rx.receiveAsync({ timeout: 20_000 })).toString(), 'result 1');
  assert.equal(await rx.receiveAsync({ timeout: 20_000 }), null, 'the end after the only producer attached so far');
  rx.close();
});

test("fan-in: a producer that dies (killed, or exits with its handle open) ends the stream with endReason 'producer-died', for every consumer", async (t) => {
  const opts = { capacity: 8, maxMessageSize: 32, producers: 4 };
  for (const death of ['killed', 'exit']) {
    const shm = anon(t, opts);
    const rx = Channel.create(shm, opts);
    const kids = [1, 2, 3].map((i) => fanInChild(t, shm, i, 'close'));
    const last = fanInChild(t, shm, 4, death === 'killed' ? 'hang' : 'exit');
    if (death === 'killed') {
      await last.line(/^sent$/);
      last.child.kill('SIGKILL');
    }
    const got = [];
    const t0 = performance.now();
    for (let m; (m = await rx.receiveAsync({ timeout: 20_000 })) !== null;) got.push(m.toString());
    t.diagnostic(`${death}: the end came ${Math.round(elapsed(t0))} ms after the first receive`);
    assert.deepEqual(got.sort(), ['result 1', 'result 2', 'result 3', 'result 4'], 'the dead producer\'s message was published before it died');
    for (const k of [...kids, last]) await k.exited;
    assert.equal(rx.endReason, 'producer-died', death);
    // Another consumer, later: the same answer (the channel remembers, in FLAGS bit 1).
    const other = Channel.open(shm);
    assert.equal(other.tryReceive(), null);
    assert.equal(other.endReason, 'producer-died');
    assert.equal(shm.buffer.readUInt32LE(CHANNEL.FLAGS) & 2, 2);
    other.close();
    rx.close();
  }
  // A producer that dies after the others closed, its entry then reused by a new producer that
  // closes: the death is still remembered.
  const shm = anon(t, { capacity: 8, maxMessageSize: 32, maxProducers: 1 });
  const rx = Channel.create(shm, { capacity: 8, maxMessageSize: 32, maxProducers: 1 });
  const k = fanInChild(t, shm, 1, 'exit');
  await k.exited;
  const again = Channel.open(shm);
  again.send('after'); // takes the dead producer's (only) entry
  again.close();
  assert.deepEqual([rx.receive(0), rx.receive(0)].map(String), ['result 1', 'after']);
  assert.equal(rx.receive(0), null);
  assert.equal(rx.endReason, 'producer-died');
  rx.close();
});

test('fan-in: bad producers values are refused by create() and byteLength(); open() reads the value from the header', (t) => {
  const mem = mapAnonymous(4096, { shared: true });
  t.after(() => mem.unmap());
  for (const bad of [0, -1, 1.5, 2 ** 31, NaN, Infinity]) {
    throwsCode(() => Channel.create(mem, { capacity: 2, maxMessageSize: 8, producers: bad }), 'ERR_OUT_OF_RANGE', 'RangeError');
    throwsCode(() => Channel.byteLength({ producers: bad }), 'ERR_OUT_OF_RANGE', 'RangeError');
  }
  for (const bad of ['4', 4n, null, {}]) {
    throwsCode(() => Channel.byteLength({ producers: bad }), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  }
  throwsCode(() => Channel.byteLength({ producer: 4 }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  throwsCode(() => Channel.open(mem, { producers: 4 }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  assert.ok(mem.buffer.every((b) => b === 0), 'refused options wrote nothing');
  assert.equal(Channel.byteLength({ capacity: 4, maxMessageSize: 8, producers: 4 }), Channel.byteLength({ capacity: 4, maxMessageSize: 8 }));
  const opts = { capacity: 4, maxMessageSize: 8, producers: 2 ** 31 - 1 };
  const shm = anon(t, opts);
  const c = Channel.create(shm, opts);
  const o = Channel.open(shm);
  assert.equal(o.producers, 2 ** 31 - 1);
  assert.equal(shm.buffer.readUInt32LE(CHANNEL.EXPECTED_PRODUCERS), 2 ** 31 - 1);
  o.close();
  c.close();
});

// ------------------------------------------------------------------------------------------ create over a live channel (issue 16)

test('create() over a channel that a live process uses is refused with ERR_MMAP_CHANNEL_IN_USE, for a file, SharedMemory and a Mapping; nothing is lost', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'live.channel');
  // The case: a consumer in another process; create(path) here used to reset the channel under it.
  const consumer = start(t, ['hold', `file:${path}`, 'create', 'consumer']);
  await consumer.line(/^ready$/);
  const before = Buffer.from(map(path).buffer);
  for (const opts of [undefined, { capacity: 64, maxMessageSize: 4096 }]) {
    throwsCode(() => Channel.create(path, opts), 'ERR_MMAP_CHANNEL_IN_USE', 'MmapkitError');
  }
  assert.ok(map(path).buffer.equals(before), 'the file is as it was: not reset, not grown');
  const m = map(path, { access: 'write' });
  throwsCode(() => Channel.create(m, { capacity: 8, maxMessageSize: 64 }), 'ERR_MMAP_CHANNEL_IN_USE', 'MmapkitError');
  m.unmap();
  // Join it instead: the consumer gets this message, not a stale one.
  const tx = Channel.open(path);
  tx.send('fresh');
  consumer.tell('receive');
  assert.deepEqual(JSON.parse(await consumer.line(/^\{/)), { got: 'fresh' });
  tx.close();
  // Its process dies: the channel is abandoned, and may be created anew.
  consumer.child.kill('SIGKILL');
  await consumer.exited;
  const fresh = Channel.create(path, { capacity: 4, maxMessageSize: 16 });
  assert.equal(fresh.maxMessageSize, 16, 'the new channel, not the old one (maxMessageSize 64)');
  assert.ok(fresh.capacity >= 4);
  fresh.close();

  // SharedMemory: a child producer is attached (and alive) after the creator's handle closed.
  const opts = { capacity: 8, maxMessageSize: 64 };
  const shm = anon(t, opts);
  Channel.create(shm, opts).close();
  const producer = start(t, ['hold', 'inherit:ch', 'open', 'producer'], shm.childOptions({ stdio: ['pipe', 'pipe', 'pipe'] }, 'ch'));
  await producer.line(/^ready$/);
  throwsCode(() => Channel.create(shm, opts), 'ERR_MMAP_CHANNEL_IN_USE', 'MmapkitError');
  assert.throws(() => Channel.create(shm, opts), new RegExp(`in use by process ${producer.child.pid} \\(a producer\\)`));
  const rx = Channel.open(shm);
  assert.deepEqual(rx.receive(1000), Buffer.from('held'), 'the message the producer sent is still there');
  producer.tell('close');
  await producer.line(/^closed$/);
  assert.equal(rx.receive(1000), null);
  rx.close();
  Channel.create(shm, opts).close(); // every party closed: may be created anew
});

test('create() of one file by 4 processes at the same moment: exactly one succeeds, the others are refused', async (t) => {
  for (let round = 0; round < 5; round++) {
    const path = join(tempDir(t), `race-${round}.channel`);
    const go = SharedMemory.anonymous(4096);
    t.after(() => go.close());
    const word = new Int32Array(go.buffer.buffer, go.buffer.byteOffset, 1);
    const kids = [0, 1, 2, 3].map(() => start(t, ['race-create', path], go.childOptions({ stdio: ['pipe', 'pipe', 'pipe'] }, 'go')));
    await sleep(300); // all of them started and spinning (a late one only finds the winner's channel)
    Atomics.store(word, 0, 1);
    const results = await Promise.all(kids.map(async (k) => JSON.parse(await k.line(/^\{/))));
    const ok = results.filter((r) => r.ok);
    assert.equal(ok.length, 1, JSON.stringify(results));
    // Map's O_EXCL create of a missing file can refuse a racer too (EEXIST); nothing else.
    for (const r of results) if (!r.ok) assert.ok(['ERR_MMAP_CHANNEL_IN_USE', 'EEXIST'].includes(r.code), JSON.stringify(results));
    for (const k of kids) k.child.stdin.end();
    for (const k of kids) assert.deepEqual(await k.exited, { code: 0, signal: null });
    Channel.create(path).close(); // all closed: free again
  }
});

test("create() is refused while the handle that create() returned is open, even before it sends or receives (in this or another process)", async (t) => {
  const path = join(tempDir(t), 'creator.channel');
  const creator = start(t, ['hold', `file:${path}`, 'create', 'none']);
  await creator.line(/^ready$/);
  throwsCode(() => Channel.create(path), 'ERR_MMAP_CHANNEL_IN_USE', 'MmapkitError');
  assert.throws(() => Channel.create(path), new RegExp(`in use by process ${creator.child.pid} \\(the handle create\\(\\) returned\\)`));
  creator.tell('close');
  await creator.line(/^closed$/);
  await creator.exited;
  Channel.create(path).close();
  // In this process: the same.
  const opts = { capacity: 4, maxMessageSize: 16 };
  const shm = anon(t, opts);
  const first = Channel.create(shm, opts);
  throwsCode(() => Channel.create(shm, opts), 'ERR_MMAP_CHANNEL_IN_USE', 'MmapkitError');
  const user = Channel.open(shm);
  user.attach('consumer');
  first.close();
  throwsCode(() => Channel.create(shm, opts), 'ERR_MMAP_CHANNEL_IN_USE', 'MmapkitError'); // a consumer is still attached
  user.close();
  Channel.create(shm, opts).close();
  // Memory that holds no channel (zeros, other data, a corrupt header) is never "in use".
  const other = anon(t, opts);
  other.buffer.fill(0x5a);
  Channel.create(other, opts).close();
  // {name}: exclusive as before.
  const name = shmName(t, 'live');
  const named = Channel.create({ name }, opts);
  throwsCode(() => Channel.create({ name }, opts), 'EEXIST', 'Error', { syscall: 'shm_open' });
  named.close();
});

// ------------------------------------------------------------------------------------------ zero copy

test('zero copy: reserve/commit and receiveInPlace/release share the lane memory; a message in place holds its lane until release', (t) => {
  const opts = { capacity: 2, maxMessageSize: 100 };
  const shm = anon(t, opts);
  const p = Channel.create(shm, opts);
  const c = Channel.open(shm);
  const b = shm.buffer;
  const ringOf = (lane) => b.readUInt32LE(CHANNEL.RINGS_OFFSET) + lane * b.readUInt32LE(CHANNEL.LANE_SIZE);
  // reserve: the buffer is the lane's next record, after its 8-byte header
  const r = p.reserve(1000);
  assert.equal(p.lane, 0);
  assert.equal(r.buffer.length, 100);
  r.buffer.write('written in place');
  const at = ringOf(0) + CHANNEL.RECORD_HEADER;
  assert.equal(b.toString('latin1', at, at + 16), 'written in place');
  throwsCode(() => p.reserve(0), 'ERR_INVALID_STATE', 'Error');
  throwsCode(() => p.send('x'), 'ERR_INVALID_STATE', 'Error');
  throwsCode(() => p.sendMany(['x']), 'ERR_INVALID_STATE', 'Error');
  assert.equal(c.tryReceive(), undefined, 'a reservation is not visible before commit');
  assert.equal(Atomics.load(words(shm), laneWord(shm, 0, CHANNEL.LANE_WRITE)), 0, 'nothing published');
  r.commit(16);
  throwsCode(() => r.commit(16), 'ERR_INVALID_STATE', 'Error');
  assert.equal(b.readInt32LE(ringOf(0) + CHANNEL.RECORD_LENGTH), 16, 'the record says 16 bytes');
  assert.equal(Atomics.load(words(shm), laneWord(shm, 0, CHANNEL.LANE_WRITE)), recordOf(16), 'published');
  // commit() without a length publishes the whole buffer
  const r2 = p.reserve(1000);
  r2.buffer.fill(0x41);
  r2.commit();
  // in place: the data is a view of the record
  const m = c.receiveInPlace(1000);
  assert.equal(m.data.toString(), 'written in place');
  b[at] = 0x57; // 'W': a write to the lane shows through the message
  assert.equal(m.data.toString(), 'Written in place');
  throwsCode(() => c.receiveInPlace(0), 'ERR_INVALID_STATE', 'Error');
  throwsCode(() => c.receive(0), 'ERR_INVALID_STATE', 'Error');
  throwsCode(() => c.tryReceive(), 'ERR_INVALID_STATE', 'Error');
  throwsCode(() => c.receiveMany(), 'ERR_INVALID_STATE', 'Error');
  throwsCode(() => c.receiveInto(Buffer.alloc(100), new Uint32Array(4)), 'ERR_INVALID_STATE', 'Error');
  throwsCode(() => c.drain(() => {}), 'ERR_INVALID_STATE', 'Error');
  // c holds lane 0 while the message is in place: another consumer does not get lane 0's next
  // message meanwhile (it used to: slots were taken one by one), but takes from other lanes.
  const c2 = Channel.open(shm);
  assert.equal(c2.tryReceive(), undefined, "lane 0 is held: its next message waits for the holder's release");
  throwsCode(() => c2.receive(50), 'ERR_MMAP_CHANNEL_TIMEOUT', 'MmapkitError');
  const q = Channel.open(shm);
  q.send('from lane 1');
  assert.equal(q.lane, 1);
  assert.deepEqual(c2.receive(1000), Buffer.from('from lane 1'));
  const report = Channel.inspect(shm);
  assert.deepEqual(report.consumers.map((x) => [x.entry, x.pid]), [[0, process.pid], [1, process.pid]], 'c is entry 0, c2 entry 1');
  assert.deepEqual(report.producers.map((x) => [x.lane, x.heldBy]), [[0, 0], [1, -1]], 'c holds lane 0');
  // The producer cannot overwrite the held bytes: its lane fills up to them, however long it waits.
  const filled = fill(p, Buffer.alloc(100, 0x42));
  assert.ok(filled >= 1);
  throwsCode(() => p.send(Buffer.alloc(100), 100), 'ERR_MMAP_CHANNEL_TIMEOUT', 'MmapkitError');
  assert.equal(p.trySend(Buffer.alloc(100)), false, 'a live holder is never treated as dead');
  assert.equal(m.data.toString(), 'Written in place', 'the held message is intact');
  m.release();
  m.release(); // idempotent
  // Released: lane 0 is free for any consumer, and its producer has room once it is read.
  assert.deepEqual(c2.receive(0), Buffer.alloc(100, 0x41));
  assert.deepEqual(c2.receiveMany(1000, 1000), Array(filled).fill(Buffer.alloc(100, 0x42)));
  assert.equal(p.trySend('next lap'), true);
  assert.deepEqual(c.receive(0), Buffer.from('next lap'));
  // Closing with a reservation open gives it up: nothing of it is published (it used to publish a
  // torn slot that consumers skipped). The lane's write position did not move.
  const q2 = Channel.open(shm);
  const open = q2.reserve(1000);
  open.buffer.write('never committed');
  const lane2 = q2.lane;
  q2.close();
  assert.equal(Atomics.load(words(shm), laneWord(shm, lane2, CHANNEL.LANE_WRITE)), 0);
  assert.equal(c.tryReceive(), undefined, 'nothing to take: the reservation was given up');
  p.send('after the given-up reservation');
  assert.deepEqual(c.receive(1000), Buffer.from('after the given-up reservation'));
  // Closing with a message in place releases it (taken: it is not delivered again).
  p.send('held then closed');
  const held = c2.receiveInPlace(0);
  assert.equal(held.data.toString(), 'held then closed');
  c2.close();
  p.send('1');
  p.send('2');
  assert.deepEqual([c.receive(0), c.receive(0)].map(String), ['1', '2']);
  p.close();
  q.close();
  assert.equal(c.receive(0), null);
  c.close();
});

// ------------------------------------------------------------------------------------------ streams

test('streams: 40 MiB through pipeline(writable()) in a child and pipeline(readable()) here, checksums equal', async (t) => {
  const opts = { capacity: 64, maxMessageSize: 65536 };
  const shm = anon(t, opts);
  const rx = Channel.create(shm, opts);
  const total = 40 * 1024 * 1024;
  const producer = start(t, ['stream-produce', 'inherit:ch', String(total), '77', '65536'], shm.childOptions({ stdio: ['pipe', 'pipe', 'pipe'] }, 'ch'));
  const hash = createHash('sha256');
  let bytes = 0;
  let chunks = 0;
  const t0 = performance.now();
  await pipeline(rx.readable(), new Writable({
    write(chunk, _e, cb) {
      hash.update(chunk);
      bytes += chunk.length;
      chunks++;
      cb();
    },
  }));
  const sent = await producer.result();
  t.diagnostic(`${(bytes / 2 ** 20).toFixed(0)} MiB in ${chunks} messages in ${Math.round(elapsed(t0))} ms`);
  assert.equal(bytes, total);
  assert.equal(chunks, sent.chunks);
  assert.equal(hash.digest('hex'), sent.sha256);
  assert.equal(rx.ended, true);
  rx.close();
});

test('streams: the other way, pipeline(writable()) here and pipeline(readable()) in a child', async (t) => {
  const opts = { capacity: 32, maxMessageSize: 32768 };
  const shm = anon(t, opts);
  const tx = Channel.create(shm, opts);
  const consumer = start(t, ['stream-consume', 'inherit:ch'], shm.childOptions({ stdio: ['pipe', 'pipe', 'pipe'] }, 'ch'));
  const hash = createHash('sha256');
  const g = xorshift(3);
  let bytes = 0;
  async function* source() {
    for (let i = 0; i < 1500; i++) {
      const chunk = Buffer.allocUnsafe(1 + (g.next().value % 32768));
      for (let j = 0; j < chunk.length; j += 4096) chunk[j] = g.next().value & 0xff;
      chunk.writeUInt8(i & 0xff, chunk.length - 1);
      hash.update(chunk);
      bytes += chunk.length;
      yield chunk;
    }
  }
  await pipeline(Readable.from(source()), tx.writable());
  assert.equal(tx.closed, true, 'ending the writable closes the producer');
  assert.deepEqual(await consumer.result(), { bytes, sha256: hash.digest('hex') });
});

test('streams: backpressure: a slow consumer holds the producer writes back (seen in shared memory)', async (t) => {
  const opts = { capacity: 16, maxMessageSize: 1024 };
  const shm = anon(t, opts);
  const stats = SharedMemory.anonymous(4096);
  t.after(() => stats.close());
  const generated = new Int32Array(stats.buffer.buffer, stats.buffer.byteOffset, 16);
  const rx = Channel.create(shm, opts);
  // The lane holds 31 messages of 1 KiB (records of 1032 bytes in 32 KiB): at least the 16 asked.
  const full = Math.floor(rx.laneSize / recordOf(1024));
  assert.ok(full >= 16 && rx.capacity >= 16);
  const i32 = words(shm);
  const waiting = () => Atomics.load(i32, laneWord(shm, 0, CHANNEL.LANE_PRODUCER_WAITING));
  const count = 3000;
  const producer = start(t, ['bp-produce', 'inherit:ch', String(count)], stats.childOptions(shm.childOptions({ stdio: ['pipe', 'pipe', 'pipe'] }, 'ch'), 'stats'));
  // Read nothing for a while: the producer fills its lane and then sleeps.
  const deadline = performance.now() + 20_000;
  while ((rx.size < full || waiting() !== 1) && performance.now() < deadline) await sleep(10);
  await sleep(500);
  const ahead = Atomics.load(generated, 0);
  t.diagnostic(`with nobody reading: ${ahead} of ${count} chunks generated, ${rx.size} in the lane, producer waiting: ${waiting()}`);
  assert.equal(rx.size, full, 'the lane is full');
  assert.ok(ahead < full + 64, `the source ran ${ahead} chunks ahead: writes did not wait`);
  assert.equal(waiting(), 1, 'the producer sleeps in sendAsync');
  // A slow reader through readable(): the producer stays a bounded distance ahead all the way.
  let seq = 0;
  let maxAhead = 0;
  let reads = 0;
  for await (const chunk of rx.readable({ highWaterMark: 2 })) { // object mode: 2 messages
    // (one chunk per message now; the split below still checks every record)
    assert.equal(chunk.length % 1024, 0);
    for (let at = 0; at < chunk.length; at += 1024) {
      const record = chunk.subarray(at, at + 1024);
      assert.equal(record.readUInt32LE(0), seq, 'in order, none lost');
      assert.ok(record.subarray(4).every((b) => b === (seq & 0xff)));
      seq++;
    }
    maxAhead = Math.max(maxAhead, Atomics.load(generated, 0) - seq);
    if (++reads % 20 === 0) await sleep(5); // slow
  }
  assert.equal(seq, count);
  assert.ok(maxAhead < full + 64 + 4, `producer ran ${maxAhead} ahead of the reader`);
  await producer.result();
  rx.close();
});

test('streams: a chunk larger than maxMessageSize fails the pipeline with ERR_OUT_OF_RANGE', async (t) => {
  const opts = { capacity: 4, maxMessageSize: 10 };
  const shm = anon(t, opts);
  const tx = Channel.create(shm, opts);
  const t0 = performance.now();
  await assert.rejects(pipeline(Readable.from([Buffer.alloc(10), Buffer.alloc(11)]), tx.writable()), { code: 'ERR_OUT_OF_RANGE' });
  assert.ok(elapsed(t0) < 1000);
  const rx = Channel.open(shm);
  assert.deepEqual(rx.receive(0), Buffer.alloc(10));
  assert.equal(rx.tryReceive(), undefined);
  tx.close();
  rx.close();
});

// ------------------------------------------------------------------------------------------ errors

test('messages larger than maxMessageSize are ERR_OUT_OF_RANGE at once, never a wait', async (t) => {
  const opts = { capacity: 2, maxMessageSize: 100 };
  const shm = anon(t, opts);
  const p = Channel.create(shm, opts);
  p.send('a');
  p.send('b');
  // Full: a wait would hang until the timeout. Records: 16 + 16 + 36 x 112 = 4064 of 4096 bytes.
  assert.equal(fill(p, Buffer.alloc(100, 7)), 36);
  const t0 = performance.now();
  for (const big of [Buffer.alloc(101), 'x'.repeat(101), 'é'.repeat(51), new Uint32Array(26)]) {
    throwsCode(() => p.trySend(big), 'ERR_OUT_OF_RANGE', 'RangeError');
    throwsCode(() => p.send(big), 'ERR_OUT_OF_RANGE', 'RangeError');
    throwsCode(() => p.send(big, 10_000), 'ERR_OUT_OF_RANGE', 'RangeError');
    throwsCode(() => p.sendMany(['ok', big], 10_000), 'ERR_OUT_OF_RANGE', 'RangeError');
    await rejectsCode(p.sendAsync(big), 'ERR_OUT_OF_RANGE', 'RangeError');
    await rejectsCode(p.sendManyAsync([big]), 'ERR_OUT_OF_RANGE', 'RangeError');
  }
  assert.ok(elapsed(t0) < 500, 'no waiting');
  const c = Channel.open(shm);
  // 'a', 'b' and one message of 100 bytes free 144 bytes: with the 32 left at the end of the ring,
  // room for a record of 112 after 32 of padding.
  assert.deepEqual(c.receiveMany(3).map((m) => m.length), [1, 1, 100]);
  const r = p.reserve(0);
  throwsCode(() => r.commit(101), 'ERR_OUT_OF_RANGE', 'RangeError');
  throwsCode(() => r.commit(-1), 'ERR_OUT_OF_RANGE', 'RangeError');
  throwsCode(() => r.commit(1.5), 'ERR_OUT_OF_RANGE', 'RangeError');
  throwsCode(() => r.commit('5'), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  r.buffer.write('hello');
  r.commit(5);
  // The reservation took the room of what it committed only (16 bytes): 128 are left.
  assert.equal(p.trySend(Buffer.alloc(100, 1)), true, 'exactly maxMessageSize is fine (when there is room)');
  assert.equal(p.trySend(Buffer.alloc(100, 2)), false, 'full');
  assert.deepEqual(c.receiveMany(1000, 1000), [...Array(35).fill(Buffer.alloc(100, 7)), Buffer.from('hello'), Buffer.alloc(100, 1)]);
  assert.equal(p.trySend(Buffer.alloc(100, 2)), true);
  assert.deepEqual(c.receive(0), Buffer.alloc(100, 2));
  p.close();
  c.close();
});

test('a closed handle throws ERR_MMAP_CLOSED from every method, and so does a channel whose memory was closed', async (t) => {
  const opts = { capacity: 4, maxMessageSize: 16 };
  const path = join(tempDir(t), 'closed.bin');
  const shm = anon(t, opts);
  const handles = [Channel.create(path, opts), Channel.open(path, { wait: 'spin' }), Channel.create(shm, opts), Channel.open(shm, { wait: 'async' })];
  handles[0].send('x');
  handles[1].receive(0);
  const { capacity, laneSize } = handles[0];
  for (const h of handles) h.close();
  const gone = Channel.open(shm);
  shm.close(); // the memory goes away under a handle that is still open
  throwsCode(() => Channel.inspect(shm), 'ERR_MMAP_CLOSED', 'MmapkitError');
  const target = Buffer.alloc(16);
  const lengths = new Uint32Array(4);
  for (const h of [...handles, gone]) {
    const calls = [
      () => h.trySend('x'), () => h.send('x'), () => h.send('x', 10), () => h.reserve(), () => h.reserve(0),
      () => h.tryReceive(), () => h.receive(), () => h.receive(10), () => h.receiveInPlace(0),
      () => h.readable(), () => h.writable(), () => h.size, () => h.attach('producer'), () => h.attach('consumer'),
      () => h.sendMany(['x']), () => h.trySendMany(['x']), () => h.receiveMany(), () => h.receiveMany(2, 10), () => h.tryReceiveMany(),
      () => h.receiveInto(target, lengths), () => h.receiveInto(target, lengths, 10), () => h.drain(() => {}), () => h.drain(() => {}, 2, { timeout: 10 }),
    ];
    for (const fn of calls) throwsCode(fn, 'ERR_MMAP_CLOSED', 'MmapkitError');
    await rejectsCode(h.sendAsync('x'), 'ERR_MMAP_CLOSED', 'MmapkitError');
    await rejectsCode(h.receiveAsync(), 'ERR_MMAP_CLOSED', 'MmapkitError');
    await rejectsCode(h.sendManyAsync(['x']), 'ERR_MMAP_CLOSED', 'MmapkitError');
    await rejectsCode(h.receiveManyAsync(), 'ERR_MMAP_CLOSED', 'MmapkitError');
    await rejectsCode(h.receiveIntoAsync(target, lengths), 'ERR_MMAP_CLOSED', 'MmapkitError');
    await rejectsCode(h.drainAsync(() => {}), 'ERR_MMAP_CLOSED', 'MmapkitError');
    await rejectsCode(h[Symbol.asyncIterator]().next(), 'ERR_MMAP_CLOSED', 'MmapkitError');
    h.close(); // idempotent
    h[Symbol.dispose]();
    assert.equal(h.closed, true);
    // The getters that need no memory still answer (producers: the memory is gone, so not known).
    assert.deepEqual([h.capacity, h.laneSize, h.maxMessageSize, h.ended, h.endReason, h.producers], [capacity, laneSize, 16, false, undefined, undefined]);
  }
  // A pending async wait on a handle that owns its mapping is cancelled by close().
  const live = Channel.open(path);
  live.send('y');
  Channel.open(path).receive(0);
  const own = Channel.open(path);
  const pending = own.receiveAsync();
  own.close();
  await rejectsCode(pending, 'ERR_MMAP_CLOSED');
  live.close();
});

test('bad input: unknown options, bad capacity/maxMessageSize types and ranges, bad targets, bad timeouts', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'bad.bin');
  const name = uniq('bad');
  const TYPE = ['ERR_INVALID_ARG_TYPE', 'TypeError'];
  const VALUE = ['ERR_INVALID_ARG_VALUE', 'TypeError'];
  const RANGE = ['ERR_OUT_OF_RANGE', 'RangeError'];
  // `spin` with 'block' or 'async' (which never spin) is refused now, no longer ignored: the spin
  // cases name a spinning strategy. capacity 1 is valid now (a lane for at least one message).
  const createCases = [
    [{ capacty: 8 }, VALUE], [{ wait: 'busy' }, VALUE], [{ wait: 1 }, VALUE], [{ wait: 'hybrid', spin: '5' }, TYPE], [{ wait: 'spin', spin: -1 }, VALUE],
    [{ wait: 'hybrid', spin: NaN }, VALUE], [{ wait: 'spin', spin: 1e6 + 1 }, VALUE], [{ spin: 5 }, VALUE], [{ wait: 'block', spin: 0 }, VALUE],
    [{ wait: 'async', spin: 5 }, VALUE],
    [{ capacity: '8' }, TYPE], [{ capacity: 8n }, TYPE], [{ capacity: null }, TYPE], [{ capacity: 0 }, RANGE],
    [{ capacity: -4 }, RANGE], [{ capacity: 2 ** 24 + 1 }, RANGE], [{ capacity: 4.5 }, RANGE], [{ capacity: NaN }, RANGE], [{ capacity: Infinity }, RANGE],
    [{ maxMessageSize: '1' }, TYPE], [{ maxMessageSize: 0 }, RANGE], [{ maxMessageSize: -1 }, RANGE], [{ maxMessageSize: 2 ** 30 }, RANGE],
    [{ maxMessageSize: 1.5 }, RANGE], [{ maxProducers: 0 }, RANGE], [{ maxProducers: 4097 }, RANGE], [{ maxConsumers: 0 }, RANGE],
    [{ maxConsumers: '2' }, TYPE], [{ capacity: 2 ** 20, maxMessageSize: 2 ** 12 }, RANGE], // a lane of more than 1 GiB
    [{ laneSize: 2 ** 30 }, VALUE], [{ capacity: 2 ** 17, maxMessageSize: 2 ** 12, maxProducers: 4096 }, VALUE], // more than 4 GiB
    [{ laneSize: '4096' }, TYPE], [{ laneSize: 4096n }, TYPE], [{ laneSize: null }, TYPE], [{ laneSize: 0 }, RANGE], [{ laneSize: 4095 }, RANGE],
    [{ laneSize: 2 ** 30 + 1 }, RANGE], [{ laneSize: 4096.5 }, RANGE], [{ laneSize: NaN }, RANGE], [{ laneSize: -4096 }, RANGE],
    [{ laneSize: 4096, capacity: 4 }, VALUE], [{ laneSize: 4096, maxMessageSize: 2041 }, RANGE], // both; too small for two records
    [null, TYPE], [5, TYPE], ['opts', TYPE], [[], TYPE],
  ];
  for (const [options, [code, errName]] of createCases) {
    for (const target of [path, { name }]) {
      throwsCode(() => Channel.create(target, options), code, errName);
    }
  }
  assert.equal(existsSync(path), false, 'bad options create no file');
  assert.equal(existsSync(`/dev/shm/${name}`), false, 'bad options create no shared memory');
  for (const [options, [code, errName]] of createCases) {
    // (unknown options and non-objects are not rejected by byteLength: see the todo test)
    if (options === null || typeof options !== 'object' || Array.isArray(options) || 'capacty' in options || 'wait' in options || 'spin' in options) continue;
    throwsCode(() => Channel.byteLength(options), code, errName);
  }
  Channel.create(path, { capacity: 4, maxMessageSize: 8 }).close();
  for (const [options, [code, errName]] of [[{ capacity: 4 }, VALUE], [{ laneSize: 4096 }, VALUE], [{ maxProducers: 2 }, VALUE], [{ wiat: 'spin' }, VALUE],
    [{ wait: 'sleep' }, VALUE], [{ wait: 'spin', spin: 'x' }, TYPE], [{ spin: 5 }, VALUE], [{ wait: 'async', spin: 1 }, VALUE], [null, TYPE], [1, TYPE]]) {
    throwsCode(() => Channel.open(path, options), code, errName);
  }
  // targets
  const small = SharedMemory.anonymous(4096);
  t.after(() => small.close());
  const roName = shmName(t, 'ro');
  Channel.create({ name: roName }, { capacity: 4, maxMessageSize: 8 }).close();
  const ro = SharedMemory.open(roName, { access: 'read' });
  t.after(() => ro.close());
  const roMapping = map(path, { access: 'read' });
  const priv = mapAnonymous(Channel.byteLength());
  t.after(() => { roMapping.unmap(); priv.unmap(); });
  for (const [target, code, errName] of [
    [undefined, ...TYPE], [null, ...TYPE], [42, ...TYPE], [{}, ...TYPE], [{ name: 5 }, ...TYPE], [Buffer.alloc(8192), ...TYPE], [new URL('file:///tmp/x'), ...TYPE],
    [{ name: 'a/b' }, ...VALUE], [{ name: '' }, ...VALUE],
    [small, 'ERR_INVALID_ARG_VALUE', 'TypeError'], // too small for a default channel
    [priv, 'ERR_MMAP_NOT_SHARED', 'MmapkitError'], [roMapping, 'ERR_MMAP_NOT_SHARED', 'MmapkitError'],
    [join(dir, 'no', 'such', 'dir'), 'ENOENT', 'Error'], [dir, 'EISDIR', 'Error'],
  ]) {
    throwsCode(() => Channel.create(target), code, errName);
  }
  for (const [target, code, errName] of [
    [undefined, ...TYPE], [42, ...TYPE], [{ name: 5 }, ...TYPE], [{ name: 'a/b' }, ...VALUE],
    [join(dir, 'missing'), 'ENOENT', 'Error'], [priv, 'ERR_MMAP_NOT_SHARED', 'MmapkitError'],
    [ro, 'ERR_MMAP_NOT_SHARED', 'MmapkitError'],
  ]) {
    throwsCode(() => Channel.open(target), code, errName);
  }
  throwsCode(() => new Channel(), undefined, 'TypeError');
  // method arguments
  const ch = Channel.create(path, { capacity: 4, maxMessageSize: 8 });
  for (const data of [undefined, null, 5, {}, [1, 2], new ArrayBuffer(4), Symbol('x')]) {
    throwsCode(() => ch.trySend(data), ...TYPE);
    throwsCode(() => ch.send(data), ...TYPE);
    await rejectsCode(ch.sendAsync(data), ...TYPE);
  }
  const timeouts = [['1', TYPE], [-1, VALUE], [NaN, VALUE], [-Infinity, VALUE], [null, TYPE], [true, TYPE], [{ timeout: '1' }, TYPE],
    [{ timeout: -5 }, VALUE], [{ timout: 5 }, VALUE], [{ signal: 'x' }, TYPE], [{ timeout: 5, extra: 1 }, VALUE]];
  for (const [timeout, [code, errName]] of timeouts) {
    throwsCode(() => ch.send('x', timeout), code, errName);
    throwsCode(() => ch.receive(timeout), code, errName);
    throwsCode(() => ch.receiveInPlace(timeout), code, errName);
    throwsCode(() => ch.reserve(timeout), code, errName);
    await rejectsCode(ch.sendAsync('x', timeout), code, errName);
    await rejectsCode(ch.receiveAsync(timeout), code, errName);
  }
  throwsCode(() => ch.readable({ highWaterMark: -1 }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  assert.equal(ch.size, 0, 'no bad call sent anything');
  ch.close();
  // A writable() refused for its options does not make the handle a producer (which would hold the
  // end of the stream back until the handle closed).
  const shm2 = anon(t, { capacity: 4, maxMessageSize: 16 });
  const w = Channel.create(shm2, { capacity: 4, maxMessageSize: 16 });
  const r = Channel.open(shm2);
  t.after(() => [w, r].forEach((h) => h.close()));
  Channel.open(shm2).writable().end(); // a producer that attached and closed: the stream can end
  await sleep(20);
  throwsCode(() => w.writable({ highWaterMark: -1 }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  assert.equal(r.tryReceive(), null, 'the end: the refused handle is no producer');
});

// ------------------------------------------------------------------------------------------ robustness

test('the header is checked on open: magic, version, every size and offset field, sizes of files and memory', async (t) => {
  const opts = { capacity: 8, maxMessageSize: 100, maxProducers: 4, maxConsumers: 4 };
  const len = Channel.byteLength(opts);
  const shm = SharedMemory.anonymous(len);
  t.after(() => shm.close());
  const b = shm.buffer;
  const BAD = ['ERR_MMAP_BAD_HEADER', 'MmapkitError'];
  throwsCode(() => Channel.open(shm), ...BAD); // all zeros: no magic
  // The version 3 header (docs/channel-layout.md): lanes of 4096 bytes here; 4 lanes, 4 consumer
  // entries; lanes at 256, consumers at 1280, rings at 1408 (1344 rounded up to 128).
  Channel.create(shm, opts).close();
  assert.deepEqual(
    ['LANE_SIZE', 'MAX_MESSAGE', 'MAX_PRODUCERS', 'MAX_CONSUMERS', 'LANES_OFFSET', 'CONSUMERS_OFFSET', 'RINGS_OFFSET', 'TOTAL_SIZE'].map((f) => b.readUInt32LE(CHANNEL[f])),
    [4096, 100, 4, 4, 256, 1280, 1408, 1408 + 4 * 4096],
  );
  assert.equal(len, 1408 + 4 * 4096);
  const fields = [
    ['MAGIC', 4, [0, 0x48434b4e, 0xffffffff]],
    ['VERSION', 2, [0, 1, 2, 4, 0xffff]],
    ['HEADER_SIZE', 2, [0, 64, 127, 129, 256, 0xffff]],
    ['TOTAL_SIZE', 4, [0, len - 1, len + 1, len * 2, 0xffffffff]],
    ['LANE_SIZE', 4, [0, 2048, 4095, 4097, 6144, 8192, 2 ** 31, 0xffffffff]],
    ['MAX_MESSAGE', 4, [0, 2041, 4096, 2 ** 30]], // (and 2^31 - 15 and more: the next test)
    ['MAX_PRODUCERS', 4, [0, 3, 5, 4097, 0xffffffff]],
    ['MAX_CONSUMERS', 4, [0, 9, 4097, 0xffffffff]], // (3 to 8 entries end before 1408: a consistent header)
    ['LANES_OFFSET', 4, [0, 128, 384, 0xffffffff]],
    ['CONSUMERS_OFFSET', 4, [0, 1264, 1296, 0xffffffff]],
    ['RINGS_OFFSET', 4, [0, 1344, 1536, len, 0xffffffff]],
  ];
  let checked = 0;
  for (const [field, width, values] of fields) {
    for (const v of values) {
      // Start from memory without a magic: create() never resets a channel of layout 1 or 2, which
      // the VERSION cases below leave behind.
      b.writeUInt32LE(0, CHANNEL.MAGIC);
      Channel.create(shm, opts).close();
      const at = CHANNEL[field];
      const before = width === 2 ? b.readUInt16LE(at) : b.readUInt32LE(at);
      if (v === before) continue;
      if (width === 2) b.writeUInt16LE(v, at);
      else b.writeUInt32LE(v, at);
      assert.throws(() => Channel.open(shm), (err) => err.code === 'ERR_MMAP_BAD_HEADER' && err.name === 'MmapkitError', `${field} ${before} -> ${v}`);
      checked++;
    }
  }
  // A channel of layout version 1 or 2 (slots, before lanes) is refused with a clear message.
  for (const version of [1, 2]) {
    b.writeUInt32LE(0, CHANNEL.MAGIC);
    Channel.create(shm, opts).close();
    b.writeUInt16LE(version, CHANNEL.VERSION);
    assert.throws(() => Channel.open(shm), (err) => {
      assert.equal(err.code, 'ERR_MMAP_BAD_HEADER');
      assert.match(err.message, new RegExp(`version ${version}\\b.*version 3 only.*before lanes: once no process uses it, remove it, create it anew`));
      return true;
    });
  }
  assert.ok(checked >= 50);
  b.writeUInt32LE(0, CHANNEL.MAGIC);
  Channel.create(shm, opts).close();
  const untouched = Channel.open(shm);
  assert.deepEqual([untouched.laneSize, untouched.maxMessageSize], [4096, 100], 'the untouched header opens');
  untouched.close();

  // Files: too small for the size the header claims, truncated, too short for a header, garbage.
  const dir = tempDir(t);
  const path = join(dir, 'h.bin');
  Channel.create(path, opts).close();
  for (const size of [len - 1, len - 64, 1000, CHANNEL.CONTROL_END, CHANNEL.CONTROL_END - 1, 64, 1]) {
    truncateSync(path, size);
    throwsCode(() => Channel.open(path), ...BAD);
  }
  truncateSync(path, 0);
  throwsCode(() => Channel.open(path), 'ERR_MMAP_EMPTY_FILE', 'MmapkitError'); // from map(): see the report
  writeFileSync(path, Buffer.alloc(len, 0x5a));
  throwsCode(() => Channel.open(path), ...BAD);
  // Named memory that is too small, and empty.
  const name = shmName(t, 'hdr');
  const s = SharedMemory.create(name, 200);
  s.buffer.writeUInt32LE(0x48434b4d, 0);
  throwsCode(() => Channel.open({ name }), ...BAD);
  s.close();
  assert.ok(!existsSync(`/dev/shm/${uniq('x')}`));

  // Random damage to the header: always a clear error, or a channel that works within its memory.
  const g = xorshift(2024);
  let opened = 0;
  for (let i = 0; i < 3000; i++) {
    // A damaged CREATOR word can name a live process (pid 1, 2, 4, ...): create() then rightly
    // refuses the memory, so each round starts from zeros.
    b.fill(0, 0, CHANNEL.CONTROL_END);
    Channel.create(shm, opts).close();
    for (let k = 1 + (g.next().value % 3); k > 0; k--) {
      const at = g.next().value % 64;
      b[at] ^= 1 << (g.next().value % 8);
    }
    let ch;
    try {
      ch = Channel.open(shm);
    } catch (err) {
      assert.equal(err.code, 'ERR_MMAP_BAD_HEADER', err.stack);
      continue;
    }
    opened++;
    ch.trySend('ok');
    ch.tryReceive();
    ch.close();
  }
  t.diagnostic(`${opened} of 3000 damaged headers still opened (flags, reserved bytes, or sizes within the same alignment)`);
});

test('the header is checked on open: a MAX_MESSAGE so large that record(MAX_MESSAGE) overflows 32 bits is refused (computed in 64 bits, as the layout doc says)', (t) => {
  // A regression test: readGeometry() computed minLane(MAX_MESSAGE) with 32-bit arithmetic, so from
  // 2^31 - 15 up the record size wrapped to a small or negative number and the header validated. A
  // peer could then write a record length of 0x7ffffff1 that passed the per-record check too:
  // receive() allocated 2 GiB and delivered the bytes of other lanes.
  const opts = { capacity: 8, maxMessageSize: 100, maxProducers: 2, maxConsumers: 2 };
  const shm = SharedMemory.anonymous(Channel.byteLength(opts));
  t.after(() => shm.close());
  const opened = [];
  const inspected = [];
  const values = [2 ** 31 - 16, 2 ** 31 - 15, 2 ** 31, 0xfffffff0, 0xffffffff];
  for (const v of values) {
    Channel.create(shm, opts).close();
    shm.buffer.writeUInt32LE(v, CHANNEL.MAX_MESSAGE);
    try {
      const ch = Channel.open(shm);
      opened.push(`${v} (maxMessageSize ${ch.maxMessageSize}, capacity ${ch.capacity})`);
      ch.close();
    } catch (err) {
      assert.equal(err.code, 'ERR_MMAP_BAD_HEADER', err.stack);
    }
    inspected.push(Channel.inspect(shm).state);
  }
  assert.deepEqual(opened, [], 'headers with these MAX_MESSAGE values opened');
  assert.deepEqual(inspected, values.map(() => 'corrupt'));
});

// ------------------------------------------------------------------------------------------ known bugs
// Regressions of bugs found earlier, and (as a todo test, reported, not failing the run) one
// behaviour that is by design.

test('release() detaches the in-place message (as documented), so a stale view cannot read later messages', { todo: 'by design: data is a view of the lane, whose bytes the producer may reuse after release() (see InPlaceMessage.data); a stale view can show a later message' }, (t) => {
  const opts = { capacity: 2, maxMessageSize: 16 };
  const shm = anon(t, opts);
  const ch = Channel.create(shm, opts);
  ch.send('first');
  const m = ch.receiveInPlace(0);
  m.release();
  ch.send('second');
  ch.send('third');
  ch.receive(0);
  assert.equal(m.data.length, 0, `after release the view still reads '${m.data.toString()}'`);
  ch.close();
});

test('close() settles a pending receiveAsync/sendAsync of that handle even when it did not map the memory', async (t) => {
  const opts = { capacity: 2, maxMessageSize: 16 };
  const shm = anon(t, opts);
  const a = Channel.create(shm, opts);
  const b = Channel.open(shm);
  b.send('x');
  Channel.open(shm).receive(0);
  const pending = a.receiveAsync({ timeout: 2000 });
  a.close();
  b.send('for others');
  await rejectsCode(pending, 'ERR_MMAP_CLOSED');
  assert.equal(b.size, 1, 'the message is still there for open consumers');
  b.close();
});

test('a producer handle that closes without sending (an empty pipeline into writable()) still ends the stream', async (t) => {
  const opts = { capacity: 4, maxMessageSize: 16 };
  const shm = anon(t, opts);
  const rx = Channel.create(shm, opts);
  const tx = Channel.open(shm);
  await pipeline(Readable.from([]), tx.writable());
  assert.equal(tx.closed, true);
  assert.equal(rx.receive(500), null, 'the consumer waits forever instead');
  rx.close();
});

test('destroying a readable() does not take (and lose) the next message', async (t) => {
  const opts = { capacity: 4, maxMessageSize: 16 };
  const shm = anon(t, opts);
  const tx = Channel.create(shm, opts);
  const a = Channel.open(shm);
  const b = Channel.open(shm);
  tx.attach('producer');
  const rs = a.readable();
  rs.on('data', () => {});
  await sleep(50); // its pump now waits in receiveAsync
  rs.destroy();
  await sleep(50);
  tx.send('after destroy');
  await sleep(50);
  assert.deepEqual(b.tryReceive(), Buffer.from('after destroy'), 'the message is gone');
  for (const h of [tx, a, b]) h.close();
});

test('a send() refused for a bad timeout does not make the handle a producer', (t) => {
  const opts = { capacity: 4, maxMessageSize: 16 };
  const shm = anon(t, opts);
  const rx = Channel.create(shm, opts);
  const p = Channel.open(shm);
  p.send('m');
  p.close();
  const h = Channel.open(shm);
  throwsCode(() => h.send('x', -1), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  assert.deepEqual(rx.receive(0), Buffer.from('m'));
  assert.equal(rx.tryReceive(), null, 'the only real producer closed: end of stream');
  rx.close();
});

test('unknown or mistyped options of byteLength(), readable() and writable() are errors', (t) => {
  throwsCode(() => Channel.byteLength({ capcity: 8 }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  throwsCode(() => Channel.byteLength(5), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  const opts = { capacity: 2, maxMessageSize: 16 };
  const ch = Channel.create(anon(t, opts), opts);
  throwsCode(() => ch.writable({ clsoe: false }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  throwsCode(() => ch.writable({ close: 'no' }), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  throwsCode(() => ch.readable({ hwm: 1 }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  ch.close();
});

test('commit() after close() says the channel is closed', (t) => {
  const opts = { capacity: 2, maxMessageSize: 16 };
  const ch = Channel.create(join(tempDir(t), 'c.bin'), opts);
  const r = ch.reserve(0);
  ch.close();
  throwsCode(() => r.commit(1), 'ERR_MMAP_CLOSED', 'MmapkitError');
});

test('receiveInPlace/reserve in a long synchronous loop: bounded memory, not much slower than receive/send', () => {
  const opts = { capacity: 16, maxMessageSize: 64 };
  const shm = SharedMemory.anonymous(Channel.byteLength(opts));
  const ch = Channel.create(shm, opts);
  const b = Buffer.alloc(64, 1);
  const n = 100_000;
  let t0 = performance.now();
  for (let i = 0; i < n; i++) {
    ch.send(b);
    ch.receive(0);
  }
  const copyMs = elapsed(t0);
  const heap0 = process.memoryUsage().heapUsed;
  t0 = performance.now();
  for (let i = 0; i < n; i++) {
    ch.send(b);
    ch.receiveInPlace(0).release();
  }
  const inPlaceMs = elapsed(t0);
  const grew = process.memoryUsage().heapUsed - heap0;
  ch.close();
  shm.close();
  assert.ok(grew < 20 * 2 ** 20, `heap grew ${(grew / 2 ** 20).toFixed(0)} MiB over ${n} in-place messages`);
  assert.ok(inPlaceMs < copyMs * 3, `in place ${inPlaceMs.toFixed(0)} ms, copying ${copyMs.toFixed(0)} ms`);
});
