// Channel async methods and the event loop (issue 16; receiveIntoAsync and drainAsync of issue 10):
// while 100,000 messages flow between two processes as fast as the other side can go, the async
// methods of this process must give its event loop regular turns. A 5 ms interval measures the lag;
// before the fix it never ticked at all (every call found a message or room at once and settled in a
// microtask).
import assert from 'node:assert/strict';
import { Channel, SharedMemory } from '../dist/index.js';
import { startNode, timedTests } from './helpers.mjs';

const CHILD = new URL('./fixtures/channel-child.mjs', import.meta.url).pathname;
const MESSAGES = 100_000;
const SIZE = 64;
/**
 * Generous on a loaded 2-core machine: with the fix the longest gap is a few ms, tens when the
 * machine is busy (a yield every 256 messages or 4 ms); without it, the interval never ticks while
 * the messages flow (the single-message loops hold the event loop for 500-1500 ms here).
 */
const MAX_LAG_MS = 250;
/**
 * Room for every message in the one producer's lane (16 MiB): a sender here never finds its lane
 * full, and a receiver that starts after the child has sent everything never finds it empty, so no
 * call ever has to wait (a wait that sleeps would give the event loop a turn of its own, load
 * permitting). One lane: a lane per producer, and there is one producer.
 */
const OPTIONS = { capacity: 131072, maxMessageSize: SIZE, maxProducers: 1 };

/** Every test has a time limit (awaiting a child or a stream has none of its own). */
const test = timedTests(120_000);

/** Anonymous shared memory with a channel in it, closed when the test ends. */
function channelMemory(t) {
  const shm = SharedMemory.anonymous(Channel.byteLength(OPTIONS));
  t.after(() => shm.close());
  Channel.create(shm, OPTIONS).close();
  return shm;
}

/** Start channel-child.mjs MODE (the tests' child harness); resolves with its last stdout line as JSON once it exits cleanly. */
const child = (t, shm, args) => startNode([CHILD, ...args], args[0], { t, spawnOptions: shm.childOptions({}, 'ch') }).report();

/** A 5 ms interval: how often it ticked, and the longest time between ticks (or since the last one). */
function lagMeter() {
  let last = performance.now();
  let maxGap = 0;
  let ticks = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
    ticks++;
  }, 5);
  return {
    stop() {
      clearInterval(timer);
      maxGap = Math.max(maxGap, performance.now() - last);
      return { ticks, lagMs: Math.round(maxGap - 5) };
    },
  };
}

/**
 * Receive MESSAGES in this process (by `receive`) from a child that floods the channel: while it
 * sends, or (`prefilled`) once it has sent them all.
 */
async function receiving(t, receive, { prefilled = false } = {}) {
  const shm = channelMemory(t);
  const rx = Channel.open(shm, { wait: 'async' });
  t.after(() => rx.close());
  rx.attach('consumer');
  const sent = child(t, shm, ['flood', 'inherit:ch', String(MESSAGES), String(SIZE)]);
  // The first message: the child is up and sending (and far ahead: sendMany is faster than any receive).
  const first = await rx.receiveAsync({ timeout: 30_000 });
  assert.equal(first.readUInt32LE(0), 0);
  if (prefilled) assert.deepEqual(await sent, { sent: MESSAGES });
  const meter = lagMeter();
  const t0 = performance.now();
  const next = await receive(rx);
  const { ticks, lagMs } = meter.stop();
  const ms = Math.round(performance.now() - t0);
  assert.equal(next, MESSAGES, 'every message, in order');
  assert.deepEqual(await sent, { sent: MESSAGES });
  return { ticks, lagMs, ms };
}

/** Send MESSAGES from this process (by `send`) to a child that drains the channel as fast as it can. */
async function sending(t, send) {
  const shm = channelMemory(t);
  const tx = Channel.open(shm, { wait: 'async' });
  tx.attach('producer');
  const received = child(t, shm, ['drain', 'inherit:ch']);
  // Made before the clock starts: building 100,000 Buffers is the test's work, not the channel's.
  const messages = Array.from({ length: MESSAGES }, (_, seq) => {
    const b = Buffer.alloc(SIZE, 0xa5);
    b.writeUInt32LE(seq, 0);
    return b;
  });
  const meter = lagMeter();
  const t0 = performance.now();
  await send(tx, messages);
  const { ticks, lagMs } = meter.stop();
  const ms = Math.round(performance.now() - t0);
  tx.close(); // the end of the stream for the child
  assert.deepEqual(await received, { received: MESSAGES });
  return { ticks, lagMs, ms };
}

function check(t, what, { ticks, lagMs, ms }) {
  t.diagnostic(`${what}: ${MESSAGES} messages in ${ms} ms (${Math.round(MESSAGES / ms)}k/s); a 5 ms interval ticked ${ticks} times, longest lag ${lagMs} ms`);
  assert.ok(lagMs < MAX_LAG_MS, `${what}: the event loop was held for ${lagMs} ms (limit ${MAX_LAG_MS} ms; ${ticks} ticks in ${ms} ms)`);
  assert.ok(ticks >= Math.max(1, Math.floor(ms / 50)), `${what}: only ${ticks} ticks of a 5 ms interval in ${ms} ms`);
}

test('receiveAsync in a loop, while a child floods the channel: the event loop keeps turning', async (t) => {
  check(t, 'receiveAsync', await receiving(t, async (rx) => {
    let next = 1;
    for (let m; (m = await rx.receiveAsync({ timeout: 30_000 })) !== null;) assert.equal(m.readUInt32LE(0), next++);
    return next;
  }));
});

test('for await over the channel, while a child floods it: the event loop keeps turning', async (t) => {
  check(t, 'for await', await receiving(t, async (rx) => {
    let next = 1;
    for await (const m of rx) if (m.readUInt32LE(0) !== next++) assert.fail(`message ${m.readUInt32LE(0)} where ${next - 1} was due`);
    return next;
  }));
});

test('receiveManyAsync in a loop (small batches), 100,000 messages from a child waiting: the event loop keeps turning', async (t) => {
  check(t, 'receiveManyAsync(16)', await receiving(t, async (rx) => {
    let next = 1;
    for (let ms; (ms = await rx.receiveManyAsync(16, { timeout: 30_000 })) !== null;) {
      for (const m of ms) if (m.readUInt32LE(0) !== next++) assert.fail(`message ${m.readUInt32LE(0)} where ${next - 1} was due`);
    }
    return next;
  }, { prefilled: true }));
});

/** Receive into one target by receiveIntoAsync until the end; check the back-to-back layout and order. */
async function intoLoop(rx, batch) {
  const target = Buffer.alloc(batch * SIZE);
  const lengths = new Uint32Array(batch);
  let next = 1;
  for (let n; (n = await rx.receiveIntoAsync(target, lengths, { timeout: 30_000 })) !== null;) {
    assert.ok(n >= 1 && n <= batch);
    for (let i = 0; i < n; i++) {
      if (lengths[i] !== SIZE) assert.fail(`message ${next}: length ${lengths[i]}`);
      if (target.readUInt32LE(i * SIZE) !== next++) assert.fail(`message ${target.readUInt32LE(i * SIZE)} where ${next - 1} was due`);
    }
  }
  return next;
}

/** Take messages in place by drainAsync until the end; check their order. */
async function drainLoop(rx, max) {
  let next = 1;
  const handler = (buf, offset, length) => {
    if (length !== SIZE) assert.fail(`message ${next}: length ${length}`);
    if (buf.readUInt32LE(offset) !== next++) assert.fail(`message ${buf.readUInt32LE(offset)} where ${next - 1} was due`);
  };
  for (let n; (n = await rx.drainAsync(handler, max, { timeout: 30_000 })) !== null;) assert.ok(n >= 1 && n <= (max ?? 1024));
  return next;
}

test('receiveIntoAsync in a loop (16 messages at a time), while a child floods the channel: the event loop keeps turning', async (t) => {
  check(t, 'receiveIntoAsync(16)', await receiving(t, (rx) => intoLoop(rx, 16)));
});

test('receiveIntoAsync in a loop (1024 messages at a time), 100,000 messages from a child waiting: the event loop keeps turning', async (t) => {
  check(t, 'receiveIntoAsync(1024)', await receiving(t, (rx) => intoLoop(rx, 1024), { prefilled: true }));
});

test('drainAsync in a loop (16 messages at a time), while a child floods the channel: the event loop keeps turning', async (t) => {
  check(t, 'drainAsync(16)', await receiving(t, (rx) => drainLoop(rx, 16)));
});

test('drainAsync in a loop (default max), 100,000 messages from a child waiting: the event loop keeps turning', async (t) => {
  check(t, 'drainAsync()', await receiving(t, (rx) => drainLoop(rx, undefined), { prefilled: true }));
});

test('sendAsync in a loop, while a child drains the channel: the event loop keeps turning', async (t) => {
  check(t, 'sendAsync', await sending(t, async (tx, messages) => {
    for (const m of messages) await tx.sendAsync(m, { timeout: 30_000 });
  }));
});

test('one sendManyAsync of 100,000 messages, while a child drains the channel: the event loop keeps turning', async (t) => {
  check(t, 'sendManyAsync', await sending(t, (tx, messages) => tx.sendManyAsync(messages, { timeout: 30_000 })));
});

test('yielding keeps the order of concurrent calls on one handle, and a closed handle stops a long sendManyAsync', async (t) => {
  const opts = { capacity: 1024, maxMessageSize: 16 };
  const shm = SharedMemory.anonymous(Channel.byteLength(opts));
  t.after(() => shm.close());
  const ch = Channel.create(shm, opts);
  // 1000 receives started at once, 1000 messages waiting: they settle in the order they were called.
  for (let i = 0; i < 1000; i++) ch.send(String(i));
  const order = [];
  await Promise.all(Array.from({ length: 1000 }, (_, i) => ch.receiveAsync(1000).then((m) => order.push([i, Number(m)]))));
  assert.deepEqual(order, Array.from({ length: 1000 }, (_, i) => [i, i]));
  // A batch larger than the queue, drained by a timer: the timer gets its turns while the batch goes.
  let drained = 0;
  const drain = setInterval(() => (drained += ch.tryReceiveMany(2048).length), 1);
  await ch.sendManyAsync(Array.from({ length: 5000 }, (_, i) => String(i)), { timeout: 10_000 });
  clearInterval(drain);
  drained += ch.tryReceiveMany(2048).length;
  assert.equal(drained, 5000);
  // Closing the handle at a yield of a long batch stops it with ERR_MMAP_CLOSED and says how many went.
  const pending = ch.sendManyAsync(Array.from({ length: 1000 }, () => 'x'), { timeout: 10_000 });
  setImmediate(() => ch.close());
  await assert.rejects(pending, (err) => {
    assert.equal(err.code, 'ERR_MMAP_CLOSED');
    assert.ok(err.sent > 0 && err.sent < 1000, `sent ${err.sent}`);
    return true;
  });
});

test("the yields use Node's own setImmediate: fake timers that replace the global one do not stall the async methods", async (t) => {
  const opts = { capacity: 1024, maxMessageSize: 16 };
  const shm = SharedMemory.anonymous(Channel.byteLength(opts));
  t.after(() => shm.close());
  const ch = Channel.create(shm, opts);
  const real = globalThis.setImmediate;
  let faked = 0;
  globalThis.setImmediate = () => faked++; // as @sinonjs/fake-timers does: queued, never run by itself
  try {
    for (let i = 0; i < 2000; i++) {
      await ch.sendAsync('x', { timeout: 1000 });
      assert.equal(String(await ch.receiveAsync({ timeout: 1000 })), 'x');
    }
  } finally {
    globalThis.setImmediate = real;
  }
  assert.equal(faked, 0);
  ch.close();
});
