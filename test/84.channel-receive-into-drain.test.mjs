// Channel.receiveInto / receiveIntoAsync and drain / drainAsync (issue 10: no allocation per message).
// receiveInto copies as many waiting messages as fit, back to back, into one target and writes their
// lengths; drain hands each message to a handler where it lies in the lane. Both wait like receive for
// the first message, return how many they took, null at the end of the stream; lanes are served in
// turn. In one process (every byte, length and offset checked against seeded data), across real
// processes (producers and consumers as children, checksums and sequence numbers), the handler's
// contract (a throwing handler, a receive from inside the handler, close() inside it), timeouts,
// every wait strategy, and bad input.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Channel, CHANNEL, SharedMemory } from '../dist/index.js';
import { tempDir, throwsCode, timedTests } from './helpers.mjs';
import { encode, startChild, takeBackToBack, verify, xorshift } from './fixtures/channel-child.mjs';

/** Every test has a time limit (awaiting a child or a stream has none of its own). */
const test = timedTests(120_000);
const STRATEGIES = ['spin', 'block', 'async', 'hybrid'];
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const elapsed = (t0) => performance.now() - t0;

/** Anonymous shared memory sized for a channel, closed when the test ends. */
function anon(t, options) {
  const shm = SharedMemory.anonymous(Channel.byteLength(options));
  t.after(() => shm.close());
  return shm;
}

async function rejectsCode(promise, code, name) {
  await assert.rejects(promise, (err) => {
    assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`);
    if (name !== undefined) assert.equal(err.name, name);
    return true;
  });
}

/** Message i of a seeded stream: 0..max bytes (every 16th one empty), bytes from the seed. */
function seeded(seed, count, max) {
  const g = xorshift(seed);
  return Array.from({ length: count }, (_, i) => {
    const len = i % 16 === 5 ? 0 : g.next().value % (max + 1);
    const b = Buffer.allocUnsafe(len);
    for (let j = 0; j < len; j++) b[j] = g.next().value & 0xff;
    return b;
  });
}

/** Send `messages` from `tx` while a consumer takes them with `take` (which returns how many it took). */
function pump(tx, messages, take) {
  let sent = 0;
  let got = 0;
  while (got < messages.length) {
    while (sent < messages.length && tx.trySend(messages[sent])) sent++;
    const n = take(got);
    assert.ok(n >= 1, `nothing taken with ${messages.length - got} messages waiting`);
    got += n;
  }
}

// ------------------------------------------------------------------------------------------ receiveInto, one process

test('receiveInto: the waiting messages that fit, back to back from offset 0, lengths written, count returned; in order; nothing written past them', (t) => {
  const opts = { capacity: 16, maxMessageSize: 600, maxProducers: 2 };
  const shm = anon(t, opts);
  const tx = Channel.create(shm, opts);
  const rx = Channel.open(shm);
  // Sizes from 0 to 600 bytes: small ones (copied a word at a time) and large ones (Buffer#copy).
  const messages = seeded(84, 3000, 600);
  const arena = Buffer.alloc(4096);
  const cases = [
    // [target, lengths]: a Buffer of exactly maxMessageSize bytes, of 2.5 times it, a Uint8Array at an
    // odd offset of a larger buffer (not word-aligned), a DataView, a Float64Array; the lengths in a
    // Uint32Array, an Int32Array, a Float64Array or an Array.
    [Buffer.alloc(600), new Uint32Array(8)],
    [Buffer.alloc(1500), new Int32Array(3)],
    [new Uint8Array(arena.buffer, arena.byteOffset + 13, 1700), new Float64Array(64)],
    [new DataView(new ArrayBuffer(2048)), new Float64Array(5)],
    [new Float64Array(100), new Uint32Array(1)],
  ];
  let got = 0;
  let calls = 0;
  let full = 0;
  pump(tx, messages, () => {
    const [target, lengths] = cases[calls++ % cases.length];
    const bytes = new Uint8Array(target.buffer, target.byteOffset, target.byteLength);
    arena.fill(0xee);
    bytes.fill(0xee);
    const n = rx.receiveInto(target, lengths, 1000);
    assert.ok(n >= 1 && n <= lengths.length, `${n} messages`);
    let at = 0;
    for (let i = 0; i < n; i++) {
      const want = messages[got + i];
      assert.equal(lengths[i], want.length, `message ${got + i}: its length`);
      assert.ok(Buffer.from(bytes.buffer, bytes.byteOffset + at, want.length).equals(want), `message ${got + i}: its bytes, at offset ${at}`);
      at += want.length;
    }
    assert.ok(bytes.subarray(at).every((b) => b === 0xee), 'nothing written past the messages');
    if (bytes !== target && bytes.buffer === arena.buffer) {
      assert.ok(arena.subarray(0, 13).every((b) => b === 0xee) && arena.subarray(13 + 1700).every((b) => b === 0xee), 'nothing written outside the view');
    }
    // As many as fit: the call stopped at the lengths' end, at a message larger than the room left,
    // or when nothing more was waiting.
    const next = messages[got + n];
    if (n < lengths.length && next !== undefined && rx.size > 0) assert.ok(at + next.length > bytes.length, `message ${got + n} (${next.length} bytes) would have fit at ${at}`);
    if (at + (next?.length ?? 0) > bytes.length) full++;
    got += n;
    return n;
  });
  t.diagnostic(`${messages.length} messages in ${calls} calls; ${full} calls stopped because the next message did not fit`);
  assert.ok(full > 50, 'the target was rarely full: the test did not test it');
  // Empty: waits like receive, up to the timeout.
  const target = Buffer.alloc(600);
  const lengths = new Uint32Array(4);
  let t0 = performance.now();
  throwsCode(() => rx.receiveInto(target, lengths, 50), 'ERR_MMAP_CHANNEL_TIMEOUT', 'MmapkitError');
  assert.ok(elapsed(t0) >= 45);
  throwsCode(() => rx.receiveInto(target, lengths, { timeout: 0 }), 'ERR_MMAP_CHANNEL_TIMEOUT', 'MmapkitError');
  // An empty message, then one that fills the target exactly; the next waits for the next call.
  tx.send('');
  tx.send(Buffer.alloc(600, 1));
  tx.send('x');
  assert.equal(rx.receiveInto(target, lengths, 0), 2);
  assert.deepEqual([lengths[0], lengths[1]], [0, 600]);
  assert.deepEqual(target, Buffer.alloc(600, 1));
  assert.equal(rx.receiveInto(target, lengths, 0), 1);
  assert.deepEqual([lengths[0], target.toString('latin1', 0, 1)], [1, 'x']);
  // The end of the stream: null, and `ended`.
  tx.close();
  t0 = performance.now();
  assert.equal(rx.receiveInto(target, lengths, 5000), null);
  assert.ok(elapsed(t0) < 1000, 'the end is seen at once');
  assert.equal(rx.ended, true);
  assert.equal(rx.endReason, 'closed');
  assert.equal(rx.receiveInto(target, lengths), null);
  rx.close();
});

// ------------------------------------------------------------------------------------------ drain, one process

test('drain: handler(buffer, offset, length) sees each message where it lies in the lane, in order; at most max per call; count returned; null at the end', (t) => {
  const opts = { capacity: 1600, maxMessageSize: 300, maxProducers: 1 };
  const shm = anon(t, opts);
  const tx = Channel.create(shm, opts);
  const rx = Channel.open(shm);
  const rings = shm.buffer.readUInt32LE(CHANNEL.RINGS_OFFSET);
  const messages = seeded(85, 4000, 300);
  let got = 0;
  let calls = 0;
  pump(tx, messages, () => {
    const max = [1, 3, 17, 1024][calls++ % 4];
    let seen = 0;
    const n = rx.drain((buffer, offset, length) => {
      const want = messages[got + seen];
      // In place: `buffer` is the channel's whole memory and the message is inside its lane's ring.
      assert.equal(buffer.length, Channel.byteLength(opts));
      assert.ok(offset >= rings + CHANNEL.RECORD_HEADER && offset + length <= rings + rx.laneSize, `offset ${offset}, length ${length}`);
      assert.equal(offset % 8, 0, 'the message bytes of a record are 8-aligned');
      assert.equal(length, want.length, `message ${got + seen}: its length`);
      assert.ok(buffer.subarray(offset, offset + length).equals(want), `message ${got + seen}: its bytes`);
      seen++;
    }, max, 1000);
    assert.equal(n, seen, 'the count is the number of handler calls');
    assert.ok(n >= 1 && n <= max, `${n} messages with max ${max}`);
    if (n < max) assert.equal(rx.size, 0, 'fewer than max only when no more was waiting');
    got += n;
    return n;
  });
  // The default max is 1024.
  assert.equal(tx.trySendMany(Array(1500).fill('m')), 1500);
  let count = 0;
  assert.equal(rx.drain(() => count++), 1024);
  assert.equal(rx.drain(() => count++, undefined, { timeout: 0 }), 476);
  assert.equal(count, 1500);
  // Zero copy: the handler's view is the lane itself (a write through it shows in shared memory).
  tx.send('abc');
  let where = -1;
  rx.drain((buffer, offset) => {
    buffer[offset] = 0x41;
    where = offset;
  }, 1, 1000);
  assert.equal(shm.buffer.toString('latin1', where, where + 3), 'Abc');
  // Empty: waits like receive, up to the timeout.
  let t0 = performance.now();
  throwsCode(() => rx.drain(() => assert.fail('no message'), 1, 50), 'ERR_MMAP_CHANNEL_TIMEOUT', 'MmapkitError');
  assert.ok(elapsed(t0) >= 45);
  throwsCode(() => rx.drain(() => {}, undefined, 0), 'ERR_MMAP_CHANNEL_TIMEOUT', 'MmapkitError');
  tx.close();
  t0 = performance.now();
  assert.equal(rx.drain(() => assert.fail('no message'), 5, 5000), null);
  assert.ok(elapsed(t0) < 1000, 'the end is seen at once');
  assert.equal(rx.ended, true);
  assert.equal(rx.drain(() => {}), null);
  rx.close();
});

test('receiveInto and drain serve the producers\' lanes in turn, each producer\'s messages in order', (t) => {
  const opts = { capacity: 64, maxMessageSize: 16, maxProducers: 3 };
  const shm = anon(t, opts);
  const rx = Channel.create(shm, opts);
  const producers = [0, 1, 2].map(() => Channel.open(shm));
  t.after(() => [rx, ...producers].forEach((h) => h.close()));
  const send = () => producers.forEach((p, i) => p.sendMany(Array.from({ length: 6 }, (_, k) => `P${i}-${k}`)));
  send();
  assert.deepEqual(producers.map((p) => p.lane), [0, 1, 2]);
  // Two at a time: one lane per call, the next call starting at the next lane.
  const target = Buffer.alloc(64);
  const lengths = new Uint32Array(2);
  const calls = [];
  for (let n; calls.length < 9 && (n = rx.receiveInto(target, lengths, 0)) !== null;) {
    const got = [];
    takeBackToBack(target, lengths, n, (b) => got.push(b.toString()), assert.fail);
    calls.push(got.join(' '));
  }
  assert.deepEqual(calls, [
    'P0-0 P0-1', 'P1-0 P1-1', 'P2-0 P2-1',
    'P0-2 P0-3', 'P1-2 P1-3', 'P2-2 P2-3',
    'P0-4 P0-5', 'P1-4 P1-5', 'P2-4 P2-5',
  ]);
  // drain, the same.
  send();
  const drained = [];
  for (let i = 0; i < 9; i++) {
    const got = [];
    assert.equal(rx.drain((b, o, l) => got.push(b.toString('latin1', o, o + l)), 2, 0), 2);
    drained.push(got.join(' '));
  }
  assert.deepEqual(drained, calls);
  // One call with room for all: lane after lane (starting after the last lane served), each in order.
  send();
  const all = [];
  assert.equal(rx.drain((b, o, l) => all.push(b.toString('latin1', o, o + l))), 18);
  assert.deepEqual(all, [0, 1, 2].flatMap((p) => Array.from({ length: 6 }, (_, k) => `P${p}-${k}`)));
  send();
  const big = Buffer.alloc(1024);
  const many = new Uint32Array(100);
  const n = rx.receiveInto(big, many, 0);
  assert.equal(n, 18);
  const into = [];
  takeBackToBack(big, many, n, (b) => into.push(b.toString()), assert.fail);
  assert.deepEqual(into, all);
});

// ------------------------------------------------------------------------------------------ the handler's contract

test("drain's handler: one that throws has its message taken and the error propagates; the messages after it stay; the handle works on", async (t) => {
  const opts = { capacity: 64, maxMessageSize: 16, maxProducers: 1 };
  const shm = anon(t, opts);
  const tx = Channel.create(shm, opts);
  const rx = Channel.open(shm);
  const other = Channel.open(shm);
  t.after(() => [tx, rx, other].forEach((h) => h.close()));
  tx.sendMany(['m0', 'm1', 'm2', 'm3', 'm4', 'm5', 'm6']);
  const boom = new Error('boom');
  const seen = [];
  assert.throws(() => rx.drain((b, o, l) => {
    const m = b.toString('latin1', o, o + l);
    seen.push(m);
    if (m === 'm2') throw boom;
  }), (err) => err === boom);
  assert.deepEqual(seen, ['m0', 'm1', 'm2']);
  assert.equal(rx.size, 4, 'm0-m2 taken (m2 with its throwing handler), m3-m6 stay');
  assert.equal(Channel.inspect(shm).producers[0].heldBy, -1, 'the lane was let go of');
  // Another consumer gets the next one; the same handle receives on (it is not stuck in the handler).
  assert.equal(String(other.receive(0)), 'm3');
  assert.equal(String(rx.receive(0)), 'm4');
  // drainAsync: the promise rejects with the handler's error, the same way.
  await assert.rejects(rx.drainAsync(() => {
    throw boom;
  }), (err) => err === boom);
  assert.deepEqual([String(rx.tryReceive()), rx.tryReceive()], ['m6', undefined]);
  // A handler that throws on the first message of a later call: the count before it is not returned,
  // but nothing else is lost.
  tx.sendMany(['a', 'b']);
  assert.throws(() => rx.drain(() => {
    throw new RangeError('first');
  }, 5), RangeError);
  assert.deepEqual(rx.receiveMany(5).map(String), ['b']);
});

test("drain's handler: receiving on the same handle from inside it is ERR_INVALID_STATE (it holds the lane); other handles and sending are fine", async (t) => {
  const opts = { capacity: 64, maxMessageSize: 16, maxProducers: 3 };
  const shm = anon(t, opts);
  const tx = Channel.create(shm, opts);
  const rx = Channel.open(shm);
  const other = Channel.open(shm);
  const tx2 = Channel.open(shm);
  t.after(() => [tx, rx, other, tx2].forEach((h) => h.close()));
  tx.sendMany(['a', 'b']);
  tx2.send('from lane 1');
  const target = Buffer.alloc(16);
  const lengths = new Uint32Array(2);
  const refused = [];
  const inner = [];
  const rejections = [];
  const n = rx.drain((buffer, offset, length) => {
    for (const [what, call] of Object.entries({
      receive: () => rx.receive(0),
      tryReceive: () => rx.tryReceive(),
      receiveMany: () => rx.receiveMany(1, 100),
      tryReceiveMany: () => rx.tryReceiveMany(),
      receiveInto: () => rx.receiveInto(target, lengths, 0),
      drain: () => rx.drain(() => {}, 1, 100),
      receiveInPlace: () => rx.receiveInPlace(0),
      readable: () => rx.readable(),
    })) {
      assert.throws(call, (err) => {
        assert.equal(err.code, 'ERR_INVALID_STATE', `${what}: ${err.message}`);
        assert.equal(err.name, 'Error');
        return true;
      });
      refused.push(what);
    }
    for (const call of [() => rx.receiveAsync(0), () => rx.receiveManyAsync(1, 100), () => rx.receiveIntoAsync(target, lengths, 100), () => rx.drainAsync(() => {}, 1, 100), () => rx[Symbol.asyncIterator]().next()]) {
      rejections.push(rejectsCode(call(), 'ERR_INVALID_STATE', 'Error'));
    }
    // Another handle of this process takes from the other lane meanwhile; this handle may send.
    inner.push(String(other.tryReceive()));
    rx.send(`echo ${buffer.toString('latin1', offset, offset + length)}`);
  }, 1);
  await Promise.all(rejections);
  assert.equal(n, 1);
  assert.equal(refused.length, 8);
  assert.deepEqual(inner, ['from lane 1']);
  // After the handler, the handle receives again: 'b' (lane 0) and its own echo (its lane, 2).
  assert.equal(rx.lane, 2);
  assert.deepEqual(rx.receiveMany(5).map(String).sort(), ['b', 'echo a']);
  assert.deepEqual(other.tryReceiveMany(), []);
});

test("drain's handler may close() the handle: the messages handled so far are taken, the others stay for other consumers", async (t) => {
  const opts = { capacity: 64, maxMessageSize: 16, maxProducers: 1 };
  const dir = tempDir(t);
  // Shared memory (the handle does not own it) and a file path (the handle unmaps it when it closes).
  for (const kind of ['shm', 'file']) {
    const path = join(dir, 'c.bin');
    const shm = kind === 'shm' ? anon(t, opts) : undefined;
    const target = shm ?? path;
    const tx = Channel.create(target, opts);
    tx.sendMany(['m0', 'm1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm7']);
    for (const form of ['drain', 'drainAsync']) {
      const rx = Channel.open(target);
      const seen = [];
      let buffer;
      const handler = (b, o, l) => {
        seen.push(b.toString('latin1', o, o + l));
        buffer = b;
        if (seen.length === 2) rx.close();
      };
      const n = form === 'drain' ? rx.drain(handler, 100, 0) : await rx.drainAsync(handler, 100, 0);
      assert.equal(n, 2, `${kind} ${form}: the count includes the message whose handler closed`);
      assert.equal(rx.closed, true);
      throwsCode(() => rx.receive(0), 'ERR_MMAP_CLOSED', 'MmapkitError');
      if (kind === 'file') assert.equal(buffer.length, 0, 'the handle unmapped its memory: the view is detached');
      assert.deepEqual(seen, form === 'drain' ? ['m0', 'm1'] : ['m3', 'm4']);
      const rest = Channel.open(target);
      assert.equal(String(rest.tryReceive()), form === 'drain' ? 'm2' : 'm5', `${kind} ${form}: the next message is the one after those handled`);
      rest.close();
    }
    const last = Channel.open(target);
    assert.deepEqual(last.tryReceiveMany().map(String), ['m6', 'm7']);
    assert.equal(last.tryReceive(), undefined, 'every message delivered once');
    tx.close();
    assert.equal(last.tryReceive(), null);
    last.close();
  }
});

// ------------------------------------------------------------------------------------------ async forms

test('receiveIntoAsync and drainAsync wait without blocking the event loop, time out, are cancelled by a signal, and end with null', async (t) => {
  const opts = { capacity: 64, maxMessageSize: 32, maxProducers: 1 };
  const shm = anon(t, opts);
  const tx = Channel.create(shm, { ...opts, wait: 'async' });
  const rx = Channel.open(shm, { wait: 'async' });
  t.after(() => [tx, rx].forEach((h) => h.close()));
  tx.attach('producer');
  const target = Buffer.alloc(64);
  const lengths = new Uint32Array(8);
  let ticks = 0;
  const ticker = setInterval(() => ticks++, 2);
  // The messages are sent by a timer of this thread: only a wait that lets the loop run sees them.
  setTimeout(() => tx.sendMany(['one', 'two', 'three']), 60);
  let t0 = performance.now();
  assert.equal(await rx.receiveIntoAsync(target, lengths, { timeout: 5000 }), 3);
  assert.ok(elapsed(t0) >= 50);
  assert.equal(target.toString('latin1', 0, 11), 'onetwothree');
  assert.deepEqual([...lengths.subarray(0, 3)], [3, 3, 5]);
  setTimeout(() => tx.sendMany(['four', 'five']), 60);
  const got = [];
  t0 = performance.now();
  assert.equal(await rx.drainAsync((b, o, l) => got.push(b.toString('latin1', o, o + l)), 10, { timeout: 5000 }), 2);
  assert.ok(elapsed(t0) >= 50);
  assert.deepEqual(got, ['four', 'five']);
  clearInterval(ticker);
  // (The messages came from timers of this thread: the loop ran while both waited. A loaded machine
  // may run the 2 ms interval only a few times in those 120 ms.)
  assert.ok(ticks >= 2, `the event loop ran while waiting (${ticks} ticks)`);
  // Timeouts.
  t0 = performance.now();
  await rejectsCode(rx.receiveIntoAsync(target, lengths, { timeout: 80 }), 'ERR_MMAP_CHANNEL_TIMEOUT', 'MmapkitError');
  assert.ok(elapsed(t0) >= 75 && elapsed(t0) < 3000);
  t0 = performance.now();
  await rejectsCode(rx.drainAsync(() => {}, 1, 80), 'ERR_MMAP_CHANNEL_TIMEOUT', 'MmapkitError');
  assert.ok(elapsed(t0) >= 75 && elapsed(t0) < 3000);
  // A signal cancels the wait; nothing is taken.
  const ac = new AbortController();
  const pending = [rx.receiveIntoAsync(target, lengths, { signal: ac.signal }), rx.drainAsync(() => assert.fail('taken after the abort'), 1, { signal: ac.signal })];
  setTimeout(() => ac.abort(), 30);
  for (const p of pending) await assert.rejects(p, { name: 'AbortError' });
  await assert.rejects(rx.receiveIntoAsync(target, lengths, { signal: AbortSignal.abort() }), { name: 'AbortError' });
  assert.equal(Atomics.load(new Int32Array(shm.buffer.buffer, shm.buffer.byteOffset, 64), CHANNEL.CONSUMER_SLEEPERS >>> 2), 0, 'the sleeper count was given back');
  tx.send('after');
  assert.equal(String(rx.tryReceive()), 'after', 'the aborted calls took nothing');
  // The end: null from both, also while waiting.
  const ending = [rx.receiveIntoAsync(target, lengths, { timeout: 5000 }), rx.drainAsync(() => {}, 1, { timeout: 5000 })];
  setTimeout(() => tx.close(), 30);
  assert.deepEqual(await Promise.all(ending), [null, null]);
  assert.equal(rx.ended, true);
});

// ------------------------------------------------------------------------------------------ every strategy, across processes

test('receiveInto and drain wait for the first message in every strategy: a child sends it and closes; then null', async (t) => {
  const opts = { capacity: 8, maxMessageSize: 32, maxProducers: 2 };
  for (const wait of STRATEGIES) {
    for (const form of ['receiveInto', 'drain']) {
      const shm = anon(t, opts);
      const rx = Channel.create(shm, { ...opts, wait, producers: 1 });
      // The child starts after this call began to wait (starting Node takes 50 ms at least).
      const child = startChild(t, ['send-one', 'inherit:ch', '7', 'close'], shm.childOptions({ stdio: ['pipe', 'pipe', 'pipe'] }, 'ch'));
      const target = Buffer.alloc(64);
      const lengths = new Uint32Array(4);
      const got = [];
      const take = () => {
        if (form === 'receiveInto') {
          const n = rx.receiveInto(target, lengths, 30_000);
          if (n !== null) takeBackToBack(target, lengths, n, (b) => got.push(b.toString()), assert.fail);
          return n;
        }
        return rx.drain((b, o, l) => got.push(b.toString('latin1', o, o + l)), 4, { timeout: 30_000 });
      };
      assert.equal(take(), 1, `${wait} ${form}`);
      assert.equal(take(), null, `${wait} ${form}: the end once the child closed`);
      assert.deepEqual(got, ['result 7']);
      assert.deepEqual(await child.exited, { code: 0, signal: null });
      rx.close();
    }
  }
});

for (const method of ['receiveInto', 'receiveIntoAsync', 'drain', 'drainAsync']) {
  test(`across processes: 2 producer children → 2 consumer children with ${method}, through 4 KiB lanes; each message once, intact, in order per producer`, async (t) => {
    const opts = { capacity: 8, maxMessageSize: 140, maxProducers: 2, producers: 2 };
    const shm = anon(t, opts);
    Channel.create(shm, opts).close();
    const count = 5000;
    const spawnOpts = () => shm.childOptions({ stdio: ['pipe', 'pipe', 'pipe'] }, 'ch');
    const json = JSON.stringify({ wait: method.endsWith('Async') ? 'async' : 'block' });
    // The consumers first: they wait on empty lanes, then the producers on full ones.
    const consumers = [0, 1].map(() => startChild(t, ['consume', 'inherit:ch', json, '84', '128', method], spawnOpts()));
    const producers = [1, 2].map((id) => startChild(t, ['produce', 'inherit:ch', '{}', String(id), String(count), '84', '128', id === 1 ? 'sendMany' : 'send'], spawnOpts()));
    for (const p of producers) assert.equal((await p.result()).sent, count);
    const results = [];
    for (const c of consumers) results.push((await c.result()).seqs);
    for (const id of [1, 2]) {
      const lists = results.map((seqs) => seqs[id] ?? []);
      for (const list of lists) assert.deepEqual(list, [...list].sort((a, b) => a - b), `producer ${id}: in order at each consumer`);
      assert.deepEqual(lists.flat().sort((a, b) => a - b), Array.from({ length: count }, (_, i) => i), `producer ${id}: every message exactly once`);
    }
    t.diagnostic(`consumers took ${results.map((seqs) => (seqs[1]?.length ?? 0) + (seqs[2]?.length ?? 0)).join(' + ')}`);
  });
}

test('this process takes with receiveInto and drain while a child sends seeded messages with checksums', async (t) => {
  const opts = { capacity: 8, maxMessageSize: 212, maxProducers: 1, producers: 1 };
  const shm = anon(t, opts);
  const rx = Channel.create(shm, opts);
  const count = 4000;
  const child = startChild(t, ['produce', 'inherit:ch', '{}', '5', String(count), '41', '200', 'sendMany'], shm.childOptions({ stdio: ['pipe', 'pipe', 'pipe'] }, 'ch'));
  const target = Buffer.alloc(700);
  const lengths = new Int32Array(5);
  let next = 0;
  const take = (buf) => {
    assert.deepEqual(verify(buf, 41, 200), [5, next]);
    assert.ok(buf.equals(encode(41, 5, next, 200)));
    next++;
  };
  for (let calls = 0; ; calls++) {
    const n = calls % 2 === 0
      ? rx.receiveInto(target, lengths, 30_000)
      : rx.drain((b, o, l) => take(b.subarray(o, o + l)), 5, 30_000);
    if (n === null) break;
    if (calls % 2 === 0) takeBackToBack(target, lengths, n, take, assert.fail);
  }
  assert.equal(next, count);
  assert.equal((await child.result()).sent, count);
  rx.close();
});

// ------------------------------------------------------------------------------------------ bad input

test('bad input to receiveInto, receiveIntoAsync, drain and drainAsync: { code, name } for each, and nothing is taken', async (t) => {
  const opts = { capacity: 8, maxMessageSize: 64, maxProducers: 1 };
  const shm = anon(t, opts);
  const ch = Channel.create(shm, opts);
  t.after(() => ch.close());
  ch.send('still here');
  const TYPE = ['ERR_INVALID_ARG_TYPE', 'TypeError'];
  const VALUE = ['ERR_INVALID_ARG_VALUE', 'TypeError'];
  const RANGE = ['ERR_OUT_OF_RANGE', 'RangeError'];
  const target = Buffer.alloc(64);
  const lengths = new Uint32Array(4);
  const targets = [
    [undefined, TYPE], [null, TYPE], [64, TYPE], ['x'.repeat(64), TYPE], [new ArrayBuffer(64), TYPE], [new SharedArrayBuffer(64), TYPE],
    [Array(64).fill(0), TYPE], [{ buffer: new ArrayBuffer(64), byteOffset: 0, byteLength: 64 }, TYPE],
    // Smaller than maxMessageSize: a message that does not fit could never be taken.
    [Buffer.alloc(63), RANGE], [Buffer.alloc(0), RANGE], [new Uint32Array(15), RANGE], [new DataView(new ArrayBuffer(63)), RANGE], [Buffer.alloc(100).subarray(50), RANGE],
  ];
  const lengthsCases = [
    [undefined, TYPE], [null, TYPE], [4, TYPE], ['abcd', TYPE], [{ length: 4 }, TYPE], [new Uint8Array(4), TYPE], [new Uint16Array(4), TYPE],
    [new Int16Array(4), TYPE], [new Float32Array(4), TYPE], [new BigUint64Array(4), TYPE], [new ArrayBuffer(16), TYPE], [new Set([1]), TYPE],
    [new Uint32Array(0), RANGE], [new Int32Array(0), RANGE], [new Float64Array(0), RANGE],
    // An Array is refused: an element setter could run user code in the middle of a copy.
    [[], TYPE], [[0, 0, 0], TYPE],
  ];
  const optionsCases = [
    ['1', TYPE], [-1, VALUE], [NaN, VALUE], [null, TYPE], [true, TYPE], [{ timeout: '1' }, TYPE], [{ timeout: -5 }, VALUE],
    [{ timout: 5 }, VALUE], [{ signal: 'x' }, TYPE], [{ timeout: 5, extra: 1 }, VALUE],
  ];
  const handlers = [[undefined, TYPE], [null, TYPE], ['() => {}', TYPE], [{}, TYPE], [42, TYPE], [Symbol('h'), TYPE]];
  const maxes = [[0, RANGE], [-1, RANGE], [1.5, RANGE], [2 ** 31, RANGE], [NaN, RANGE], [Infinity, RANGE], ['3', TYPE], [null, TYPE], [3n, TYPE], [{}, TYPE]];
  let checked = 0;
  const expect = (call, [code, name]) => {
    throwsCode(call, code, name);
    checked++;
  };
  const expectAsync = async (call, [code, name]) => {
    await rejectsCode(call(), code, name);
    checked++;
  };
  for (const [bad, err] of targets) {
    expect(() => ch.receiveInto(bad, lengths, 100), err);
    await expectAsync(() => ch.receiveIntoAsync(bad, lengths, 100), err);
  }
  for (const [bad, err] of lengthsCases) {
    expect(() => ch.receiveInto(target, bad, 100), err);
    await expectAsync(() => ch.receiveIntoAsync(target, bad, 100), err);
  }
  for (const [bad, err] of optionsCases) {
    expect(() => ch.receiveInto(target, lengths, bad), err);
    await expectAsync(() => ch.receiveIntoAsync(target, lengths, bad), err);
    expect(() => ch.drain(() => {}, 1, bad), err);
    await expectAsync(() => ch.drainAsync(() => {}, 1, bad), err);
  }
  for (const [bad, err] of handlers) {
    expect(() => ch.drain(bad, 1, 100), err);
    await expectAsync(() => ch.drainAsync(bad, 1, 100), err);
  }
  for (const [bad, err] of maxes) {
    expect(() => ch.drain(() => {}, bad, 100), err);
    await expectAsync(() => ch.drainAsync(() => {}, bad, 100), err);
  }
  t.diagnostic(`${checked} bad calls refused`);
  assert.equal(ch.size, 1, 'no refused call took a message');
  assert.equal(String(ch.receive(0)), 'still here');
});

test('a channel larger than 2 GiB: messages past 2 GiB that cross pages come out whole through drain() and receiveInPlace()', () => {
  // Three lanes of 1 GiB in sparse memory: the third lane starts past 2 GiB, where an int32 page
  // mask of the message's position is negative.
  const options = { laneSize: 2 ** 30, maxMessageSize: 16384, maxProducers: 3 };
  const shm = SharedMemory.anonymous(Channel.byteLength(options));
  const consumer = Channel.create(shm, options);
  const producers = [0, 1, 2].map(() => Channel.open(shm));
  for (const p of producers) p.attach('producer');
  assert.equal(producers[2].lane, 2);
  const message = (i) => Buffer.alloc(10_000, i); // 10,000 bytes: every one crosses a page
  for (let i = 1; i <= 3; i++) producers[2].send(message(i));
  const got = [];
  assert.equal(consumer.drain((buffer, offset, length) => got.push(Buffer.from(buffer.subarray(offset, offset + length))), 2, 1000), 2);
  const inPlace = consumer.receiveInPlace(1000);
  got.push(Buffer.from(inPlace.data));
  inPlace.release();
  assert.deepEqual(got, [message(1), message(2), message(3)]);
  for (const c of [...producers, consumer]) c.close();
  shm.close();
});
