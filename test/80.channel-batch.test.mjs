// Channel batches: sendMany/trySendMany/receiveMany/tryReceiveMany in one process (order and bytes,
// max, partial sends that say how many were `sent`, timeouts, every message checked before the first
// is sent, bad arguments, null at the end); the async forms (waits that leave the event loop running,
// timeouts, AbortSignal, when a waiting producer is woken); who a batch wakes (as many consumers as it
// sent messages; the producer of every lane it freed room in); and sendMany → receiveMany across
// processes in every wait strategy.
import assert from 'node:assert/strict';
import { Channel } from '../dist/index.js';
import { throwsCode } from './helpers.mjs';
import { startChild as start } from './fixtures/channel-child.mjs';
import { STRATEGIES, anon, bytesOf, elapsed, fill, recordOf, rejectsCode, sleep, test } from './channel-helpers.mjs';

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

// ------------------------------------------------------------------------------------------ across processes

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
