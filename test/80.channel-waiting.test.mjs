// Channel waits: every wait strategy ('spin', 'block', 'async', 'hybrid') across processes, as
// ping-pong with the parent and the child each in any strategy and as a one-way flow through a full
// 4 KiB lane; ERR_MMAP_CHANNEL_TIMEOUT after about the timeout from every method that waits, with the
// sleeper counts in shared memory back to zero; async methods that leave the event loop running, and
// an AbortSignal that cancels them. (The event loop under a flood of messages: test/82.)
import assert from 'node:assert/strict';
import { Channel, CHANNEL } from '../dist/index.js';
import { throwsCode } from './helpers.mjs';
import { startChild as start } from './fixtures/channel-child.mjs';
import { STRATEGIES, anon, echoThroughChild, elapsed, fill, laneWord, rejectsCode, test, words } from './channel-helpers.mjs';

// ------------------------------------------------------------------------------------------ every strategy, across processes

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

// ------------------------------------------------------------------------------------------ timeouts and the event loop

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
