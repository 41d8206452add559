// Topic (issue 12) in one process: every subscription sees every message in one order; from
// 'latest' and 'oldest'; sequence numbers; 'block' (tryPublish false, timeouts, a subscriber closing
// frees room) and 'overwrite' (a lapped subscription counts exactly what it missed, as a count or an
// error, and never hands out an overwritten message); every way to receive; reserve/commit/cancel;
// end of stream; inspect(); create() over a topic in use; and bad input of every public function.
// Several processes, dead parties and garbage: test/87; a C subscriber: test/63.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Channel, SharedMemory, Subscription, TOPIC, Topic, mapAnonymous } from '../dist/index.js';
import { assertOk, distUrl, shmName, startNode, tempDir, throwsCode, timedTests } from './helpers.mjs';

/** Every test has a time limit (awaiting a child or a stream has none of its own). */
const test = timedTests(60_000);

/** The memory of each topic made by topicIn(), to open more handles on it. */
const shmOf = new WeakMap();

/** A topic in anonymous shared memory, closed (with the memory) when the test ends. */
function topicIn(t, options) {
  const shm = SharedMemory.anonymous(Topic.byteLength(options));
  const topic = Topic.create(shm, options);
  shmOf.set(topic, shm);
  t.after(() => {
    topic.close();
    shm.close();
  });
  return topic;
}

const recordOf = (n) => (16 + n + 7) & ~7;
const msg = (i, size = 40) => {
  const b = Buffer.alloc(size, i & 0xff);
  if (size >= 4) b.writeUInt32LE(i, 0);
  return b;
};

test('every subscription sees every message, in the order published, with sequence numbers from 0', (t) => {
  const topic = topicIn(t, { capacity: 65536, maxMessageSize: 256 });
  const a = topic.subscribe();
  const b = topic.subscribe();
  assert.ok(a instanceof Subscription);
  assert.equal(a.sequence, 0);
  for (let i = 0; i < 100; i++) topic.publish(msg(i, i % 200));
  topic.publishMany([msg(100), 'text', new Uint16Array([1, 2]), new DataView(new ArrayBuffer(3))]);
  for (const sub of [a, b]) {
    for (let i = 0; i < 100; i++) {
      const m = sub.receive({ timeout: 1000 });
      assert.equal(m.length, i % 200);
      if (m.length >= 4) assert.equal(m.readUInt32LE(0), i);
    }
    assert.equal(sub.receive(1000).readUInt32LE(0), 100);
    assert.equal(String(sub.receive(1000)), 'text');
    assert.deepEqual([...sub.receive(1000)], [1, 0, 2, 0]);
    assert.equal(sub.receive(1000).length, 3);
    assert.equal(sub.tryReceive(), undefined);
    assert.equal(sub.sequence, 104);
    assert.equal(sub.missed, 0);
  }
  assert.equal(topic.nextSequence, 104);
});

test("from: 'latest' starts after what is published; from: 'oldest' at the oldest message still in the ring", (t) => {
  const topic = topicIn(t, { capacity: 4096, maxMessageSize: 100, policy: 'overwrite' });
  for (let i = 0; i < 10; i++) topic.publish(msg(i, 24));
  const latest = topic.subscribe();
  const oldest = topic.subscribe({ from: 'oldest' });
  topic.publish(msg(10, 24));
  assert.equal(latest.receive(1000).readUInt32LE(0), 10);
  assert.equal(latest.tryReceive(), undefined);
  for (let i = 0; i <= 10; i++) assert.equal(oldest.receive(1000).readUInt32LE(0), i);
  // Past a lap of the ring, 'oldest' starts at the first message not yet overwritten (records of 40
  // bytes; publishers retire up to an eighth of the ring ahead of what they write).
  for (let i = 11; i < 300; i++) topic.publish(msg(i, 24));
  const late = topic.subscribe({ from: 'oldest' });
  const first = late.receive(1000).readUInt32LE(0);
  const retained = Math.floor(4096 / recordOf(24));
  assert.ok(first >= 300 - retained && first <= 300 - Math.floor((retained * 7) / 8) + 1, `first retained ${first} of 300 (a ring holds ${retained})`);
  assert.equal(late.sequence, first + 1);
  for (let i = first + 1; i < 300; i++) assert.equal(late.receive(1000).readUInt32LE(0), i);
  assert.equal(late.missed, 0);
});

test("'block': a publisher waits for the slowest subscription; tryPublish is false, publish times out, reading or closing frees room", (t) => {
  const topic = topicIn(t, { capacity: 4096, maxMessageSize: 100 });
  const fast = topic.subscribe();
  const slow = topic.subscribe();
  let n = 0;
  while (topic.tryPublish(msg(n, 56))) n++;
  assert.equal(n, Math.floor(4096 / recordOf(56)));
  throwsCode(() => topic.publish(msg(n, 56), { timeout: 20 }), 'ERR_MMAP_TOPIC_TIMEOUT', 'MmapkitError');
  throwsCode(() => topic.publish(msg(n, 56), 0), 'ERR_MMAP_TOPIC_TIMEOUT', 'MmapkitError');
  assert.equal(fast.receiveMany().length, n);
  assert.equal(topic.tryPublish(msg(n, 56)), false, 'the slow subscription still holds the ring');
  assert.equal(slow.receive(1000).readUInt32LE(0), 0);
  assert.equal(topic.tryPublish(msg(n, 56)), true, 'one record read: room for one');
  slow.close();
  for (let i = 0; i < n - 1; i++) assert.ok(topic.tryPublish(msg(n + 1 + i, 56)));
  assert.equal(fast.receiveMany().length, n);
  // A publishMany that does not fit waits for room, then times out with `sent`.
  assert.throws(() => topic.publishMany(Array.from({ length: 2 * n }, (_, i) => msg(i, 56)), { timeout: 30 }), (err) => {
    assert.equal(err.code, 'ERR_MMAP_TOPIC_TIMEOUT');
    assert.equal(err.sent, n, 'a ring of them went; then fast, which has not read them, holds the rest');
    return true;
  });
});

test("'block' with no subscription: publishers never wait (the history is overwritten)", (t) => {
  const topic = topicIn(t, { capacity: 4096, maxMessageSize: 100 });
  for (let i = 0; i < 1000; i++) assert.ok(topic.tryPublish(msg(i, 56)));
  const s = topic.subscribe({ from: 'oldest' });
  assert.equal(s.receiveMany().at(-1).readUInt32LE(0), 999);
});

test("'overwrite': a lapped subscription counts exactly what it missed ('count'), or gets ERR_MMAP_TOPIC_LAPPED with missed ('error'), and goes on with the oldest message", (t) => {
  const topic = topicIn(t, { capacity: 4096, maxMessageSize: 100, policy: 'overwrite' });
  const counting = topic.subscribe({ lapped: 'count' });
  const erring = topic.subscribe();
  const total = 500;
  for (let i = 0; i < total; i++) assert.ok(topic.tryPublish(msg(i, 40)));
  const got = [];
  for (let m; (m = counting.tryReceive()) !== undefined;) got.push(m.readUInt32LE(0));
  assert.equal(got.length + counting.missed, total);
  assert.deepEqual(got, Array.from({ length: got.length }, (_, i) => total - got.length + i), 'the newest, in order');
  assert.equal(counting.sequence, total);
  let err;
  try {
    erring.receive(1000);
  } catch (e) {
    err = e;
  }
  assert.equal(err?.code, 'ERR_MMAP_TOPIC_LAPPED');
  assert.equal(err.missed, counting.missed);
  assert.equal(err.totalMissed, counting.missed);
  assert.equal(erring.missed, counting.missed);
  assert.equal(erring.receive(1000).readUInt32LE(0), got[0], 'goes on with the oldest message still there');
  // Lapped again during a batch: receiveMany, receiveInto and drain count too.
  for (let i = total; i < 2 * total; i++) topic.publish(msg(i, 40));
  const many = counting.receiveMany(10_000);
  assert.equal(many.at(-1).readUInt32LE(0), 2 * total - 1);
  assert.equal(counting.missed + got.length + many.length, 2 * total);
});

test('receiveInto, drain, receiveMany, the async forms, for await and readable() all see the same stream', async (t) => {
  const home = topicIn(t, { capacity: 1 << 16, maxMessageSize: 64 });
  const subs = Array.from({ length: 7 }, () => home.subscribe());
  const topic = Topic.open(shmOf.get(home));
  const total = 300;
  for (let i = 0; i < total; i++) topic.publish(msg(i, i % 60));
  topic.close(); // the only publisher: the end of the stream
  const expected = Array.from({ length: total }, (_, i) => i % 60);
  const lengthsOf = (bufs) => bufs.map((b) => b.length);
  // receiveInto
  const target = Buffer.alloc(1000);
  const lengths = new Uint32Array(16);
  let seen = [];
  for (let n; (n = subs[0].receiveInto(target, lengths, 1000)) !== null;) seen.push(...lengths.subarray(0, n));
  assert.deepEqual(seen, expected);
  assert.equal(subs[0].endReason, 'closed');
  // drain
  seen = [];
  for (let n; (n = subs[1].drain((buf, off, len) => seen.push(len), 7, 1000)) !== null;) assert.ok(n <= 7);
  assert.deepEqual(seen, expected);
  // receiveMany / receiveManyAsync / receiveIntoAsync / drainAsync
  seen = [];
  for (let b; (b = subs[2].receiveMany(13, 1000)) !== null;) seen.push(...lengthsOf(b));
  assert.deepEqual(seen, expected);
  seen = [];
  for (let b; (b = await subs[3].receiveManyAsync(13, { timeout: 1000 })) !== null;) seen.push(...lengthsOf(b));
  assert.deepEqual(seen, expected);
  seen = [];
  for (let n; (n = await subs[4].receiveIntoAsync(target, lengths, 1000)) !== null;) seen.push(...lengths.subarray(0, n));
  assert.deepEqual(seen, expected);
  // for await, readable()
  seen = [];
  for await (const m of subs[5]) seen.push(m.length);
  assert.deepEqual(seen, expected);
  seen = [];
  for await (const m of subs[6].readable()) seen.push(m.length);
  assert.deepEqual(seen, expected);
});

test('receiveAsync waits without blocking the event loop and is woken by a publish; a signal aborts it', async (t) => {
  const topic = topicIn(t, { capacity: 4096, maxMessageSize: 64 });
  const sub = topic.subscribe({ wait: 'async' });
  const pending = sub.receiveAsync({ timeout: 5000 });
  let settled = false;
  pending.then(() => (settled = true));
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  // The timers run while it waits (a blocked event loop would never get to the publish below: the
  // test would time out), and it is still waiting: nothing was published yet.
  await new Promise((r) => setTimeout(r, 30));
  clearInterval(timer);
  assert.ok(ticks >= 1, `the event loop ran (${ticks} ticks)`);
  assert.equal(settled, false, 'nothing was published: still waiting');
  topic.publish('wake');
  assert.equal(String(await pending), 'wake');
  const ac = new AbortController();
  const aborted = sub.receiveAsync({ signal: ac.signal });
  ac.abort();
  await assert.rejects(aborted, { name: 'AbortError' });
  await assert.rejects(sub.receiveAsync({ timeout: 10 }), { code: 'ERR_MMAP_TOPIC_TIMEOUT' });
  await topic.publishAsync('after');
  assert.equal(String(await sub.receiveAsync()), 'after');
  await topic.publishManyAsync(['x', 'y']);
  assert.deepEqual((await sub.receiveManyAsync()).map(String), ['x', 'y']);
});

test('reserve() / commit() publishes in place; cancel() publishes nothing; one reservation at a time', (t) => {
  const topic = topicIn(t, { capacity: 4096, maxMessageSize: 100 });
  const sub = topic.subscribe();
  const r = topic.reserve(50);
  assert.equal(r.buffer.length, 50);
  r.buffer.write('zero copy');
  throwsCode(() => topic.publish('x'), 'ERR_INVALID_STATE', 'Error');
  throwsCode(() => topic.reserve(), 'ERR_INVALID_STATE', 'Error');
  throwsCode(() => topic.subscribe(), 'ERR_INVALID_STATE', 'Error');
  assert.equal(sub.tryReceive(), undefined, 'nothing before the commit');
  r.commit(9);
  throwsCode(() => r.commit(), 'ERR_INVALID_STATE', 'Error');
  assert.equal(String(sub.receive(1000)), 'zero copy');
  const c = topic.reserve();
  assert.equal(c.buffer.length, 100);
  c.cancel();
  c.cancel();
  throwsCode(() => c.commit(1), 'ERR_INVALID_STATE', 'Error');
  topic.publish('next');
  assert.equal(String(sub.receive(1000)), 'next');
  assert.equal(sub.sequence, 2, 'a cancelled reservation takes no sequence number');
  throwsCode(() => topic.reserve(101), 'ERR_OUT_OF_RANGE', 'RangeError');
  throwsCode(() => topic.reserve(-1), 'ERR_OUT_OF_RANGE', 'RangeError');
  const held = topic.reserve(10);
  throwsCode(() => held.commit(11), 'ERR_OUT_OF_RANGE', 'RangeError');
  topic.close();
  throwsCode(() => held.commit(1), 'ERR_MMAP_CLOSED', 'MmapkitError');
});

test('end of stream: null once every publisher closed (endReason closed), not before the first publisher', (t) => {
  const shm = SharedMemory.anonymous(Topic.byteLength({ capacity: 4096, maxMessageSize: 64 }));
  t.after(() => shm.close());
  const creator = Topic.create(shm, { capacity: 4096, maxMessageSize: 64, publishers: 2 });
  const sub = creator.subscribe();
  throwsCode(() => sub.receive({ timeout: 20 }), 'ERR_MMAP_TOPIC_TIMEOUT', 'MmapkitError');
  const p1 = Topic.open(shm);
  const p2 = Topic.open(shm);
  p1.publish('one');
  p1.close();
  assert.equal(String(sub.receive(1000)), 'one');
  throwsCode(() => sub.receive({ timeout: 20 }), 'ERR_MMAP_TOPIC_TIMEOUT', 'MmapkitError', {}); // 1 of 2 expected publishers
  p2.attach();
  p2.close();
  assert.equal(sub.receive(1000), null);
  assert.equal(sub.ended, true);
  assert.equal(sub.endReason, 'closed');
  assert.equal(sub.tryReceive(), null);
  creator.close();
  assert.equal(sub.closed, true, "the topic handle's close() closes its subscriptions");
  throwsCode(() => sub.receive(), 'ERR_MMAP_CLOSED', 'MmapkitError');
});

test('inspect(): limits, positions, publishers and subscribers; other contents are told apart', (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'topic');
  const topic = Topic.create(path, { capacity: 8192, maxMessageSize: 64, maxPublishers: 2, maxSubscribers: 3, policy: 'overwrite' });
  t.after(() => topic.close());
  const sub = topic.subscribe();
  topic.publishMany(['a', 'bb']);
  const r = Topic.inspect(path);
  assert.equal(r.state, 'topic');
  assert.equal(r.version, 1);
  assert.deepEqual(r.limits, { capacity: 8192, maxMessageSize: 64, policy: 'overwrite', maxPublishers: 2, maxSubscribers: 3, totalSize: Topic.byteLength({ capacity: 8192, maxMessageSize: 64, maxPublishers: 2, maxSubscribers: 3 }), publishers: undefined });
  assert.deepEqual(r.positions, { head: 0, tail: 2 * 24, nextSequence: 2, locked: 0 });
  assert.deepEqual(r.creator, { pid: process.pid, alive: true });
  assert.deepEqual(r.publishers, [{ entry: 0, pid: process.pid, state: 'attached', alive: true }]);
  assert.deepEqual(r.subscribers, [{ entry: 0, pid: process.pid, alive: true, cursor: 0 }]);
  sub.receiveMany();
  assert.equal(sub.tryReceive(), undefined); // finding nothing, it reports where it is
  assert.equal(Topic.inspect(path).subscribers[0].cursor, 48);
  const other = join(dir, 'other');
  writeFileSync(other, Buffer.alloc(4096));
  assert.equal(Topic.inspect(other).state, 'uninitialized');
  writeFileSync(other, Buffer.alloc(4096, 1));
  assert.equal(Topic.inspect(other).state, 'foreign');
  const ch = Channel.create(join(dir, 'ch'), { maxMessageSize: 64 });
  assert.equal(Topic.inspect(join(dir, 'ch')).state, 'foreign');
  throwsCode(() => Topic.open(join(dir, 'ch')), 'ERR_MMAP_BAD_HEADER', 'MmapkitError');
  ch.close();
});

test('create() never resets a topic in use (ERR_MMAP_TOPIC_IN_USE); once its users are gone it may', (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'topic');
  const a = Topic.create(path, { capacity: 4096, maxMessageSize: 64 });
  throwsCode(() => Topic.create(path, { capacity: 4096, maxMessageSize: 64 }), 'ERR_MMAP_TOPIC_IN_USE', 'MmapkitError');
  const b = Topic.open(path);
  const sub = b.subscribe();
  a.close();
  throwsCode(() => Topic.create(path, { capacity: 4096, maxMessageSize: 64 }), 'ERR_MMAP_TOPIC_IN_USE', 'MmapkitError');
  sub.close();
  b.close();
  Topic.create(path, { capacity: 8192, maxMessageSize: 64 }).close();
  assert.equal(Topic.inspect(path).limits.capacity, 8192);
});

test('{ name } targets and tables: ERR_MMAP_TOPIC_FULL when every publisher or subscriber entry is taken', (t) => {
  const name = shmName(t, 'topic86');
  const topic = Topic.create({ name }, { capacity: 4096, maxMessageSize: 64, maxPublishers: 1, maxSubscribers: 2 });
  t.after(() => topic.close());
  const other = Topic.open({ name });
  t.after(() => other.close());
  topic.publish('mine');
  throwsCode(() => other.publish('x'), 'ERR_MMAP_TOPIC_FULL', 'MmapkitError');
  const s1 = other.subscribe();
  topic.subscribe();
  throwsCode(() => other.subscribe(), 'ERR_MMAP_TOPIC_FULL', 'MmapkitError');
  s1.close();
  other.subscribe().close();
  throwsCode(() => Topic.create({ name, owner: 'self' }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
});

test('bad input: options, targets, messages, subscriptions, receive arguments', (t) => {
  throwsCode(() => Topic.byteLength({ capacity: 100 }), 'ERR_OUT_OF_RANGE', 'RangeError');
  throwsCode(() => Topic.byteLength({ capacity: 4096, maxMessageSize: 4096 }), 'ERR_OUT_OF_RANGE', 'RangeError');
  throwsCode(() => Topic.byteLength({ maxMessageSize: 0 }), 'ERR_OUT_OF_RANGE', 'RangeError');
  throwsCode(() => Topic.byteLength({ policy: 'drop' }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  throwsCode(() => Topic.byteLength({ maxSubscribers: 0 }), 'ERR_OUT_OF_RANGE', 'RangeError');
  throwsCode(() => Topic.byteLength({ maxPublishers: 1.5 }), 'ERR_OUT_OF_RANGE', 'RangeError');
  throwsCode(() => Topic.byteLength({ capacity: '4096' }), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  throwsCode(() => Topic.byteLength({ bogus: 1 }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  throwsCode(() => Topic.byteLength(5), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  throwsCode(() => Topic.byteLength({ capacity: 2 ** 31 }), 'ERR_OUT_OF_RANGE', 'RangeError');
  throwsCode(() => Topic.create(42), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  throwsCode(() => Topic.open(null), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  throwsCode(() => Topic.create(mapAnonymous(1 << 20, { shared: false }), {}), 'ERR_MMAP_NOT_SHARED', 'MmapkitError');
  const small = SharedMemory.anonymous(4096);
  t.after(() => small.close());
  throwsCode(() => Topic.create(small, {}), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  throwsCode(() => Topic.open(small), 'ERR_MMAP_BAD_HEADER', 'MmapkitError');
  throwsCode(() => Topic.create(small, { capacity: 4096, maxMessageSize: 8, wait: 'sometimes' }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  throwsCode(() => Topic.create(small, { capacity: 4096, maxMessageSize: 8, wait: 'block', spin: 5 }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  throwsCode(() => Topic.open(small, { owner: 'self' }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  throwsCode(() => Topic.inspect(small, { bogus: 1 }), 'ERR_INVALID_ARG_VALUE', 'TypeError');

  const topic = topicIn(t, { capacity: 4096, maxMessageSize: 16 });
  throwsCode(() => topic.publish(Buffer.alloc(17)), 'ERR_OUT_OF_RANGE', 'RangeError');
  throwsCode(() => topic.publish(17), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  throwsCode(() => topic.publish('x', { timeout: -1 }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  throwsCode(() => topic.publish('x', { timeout: '1' }), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  throwsCode(() => topic.publish('x', { bogus: 1 }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  throwsCode(() => topic.tryPublish({}), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  throwsCode(() => topic.publishMany('abc'), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  throwsCode(() => topic.publishMany(['ok', Buffer.alloc(17)]), 'ERR_OUT_OF_RANGE', 'RangeError');
  throwsCode(() => topic.reserve('1'), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  throwsCode(() => topic.subscribe({ from: 'newest' }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  throwsCode(() => topic.subscribe({ lapped: 'ignore' }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  throwsCode(() => topic.subscribe({ wait: 'async', spin: 3 }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  throwsCode(() => topic.subscribe('oldest'), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  assert.equal(Topic.inspect(small).state, 'uninitialized');
  const sub = topic.subscribe();
  throwsCode(() => sub.receive({ timeout: NaN }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  throwsCode(() => sub.receiveMany(0), 'ERR_OUT_OF_RANGE', 'RangeError');
  throwsCode(() => sub.receiveInto(Buffer.alloc(8), new Uint32Array(1)), 'ERR_OUT_OF_RANGE', 'RangeError');
  throwsCode(() => sub.receiveInto([], new Uint32Array(1)), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  throwsCode(() => sub.receiveInto(Buffer.alloc(64), [0]), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  throwsCode(() => sub.receiveInto(Buffer.alloc(64), new Uint32Array(0)), 'ERR_OUT_OF_RANGE', 'RangeError');
  throwsCode(() => sub.drain('fn'), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  throwsCode(() => sub.drain(() => {}, 0), 'ERR_OUT_OF_RANGE', 'RangeError');
  throwsCode(() => sub.readable({ bogus: 1 }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  throwsCode(() => new Subscription(Symbol('x'), {}), undefined, 'TypeError');
  throwsCode(() => new Topic(Symbol('x')), undefined, 'TypeError');
  sub.close();
  sub.close();
  throwsCode(() => sub.tryReceive(), 'ERR_MMAP_CLOSED', 'MmapkitError');
  topic.close();
  topic.close();
  throwsCode(() => topic.publish('x'), 'ERR_MMAP_CLOSED', 'MmapkitError');
  throwsCode(() => topic.subscribe(), 'ERR_MMAP_CLOSED', 'MmapkitError');
  assert.equal(TOPIC.RECORD_HEADER, 16);
});

test('subscribe({ timeout }) bounds the wait for the publish lock; the same thread holding it (a reserve()) is refused at once', async (t) => {
  const name = shmName(t, 'topic86lock');
  const topic = Topic.create({ name }, { capacity: 4096, maxMessageSize: 64 });
  t.after(() => topic.close());
  const other = Topic.open({ name });
  const r = other.reserve(8);
  throwsCode(() => topic.subscribe({ timeout: 30 }), 'ERR_INVALID_STATE', 'Error');
  throwsCode(() => topic.subscribe({ timeout: -1 }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  r.cancel();
  other.close();
  // Another process holds the lock (an uncommitted reservation) until we close its stdin.
  const child = startNode(['--input-type=module', '-e', `
    import { Topic } from ${JSON.stringify(distUrl)};
    const t = Topic.open({ name: ${JSON.stringify(name)} });
    const r = t.reserve(8);
    console.log('held');
    process.stdin.on('end', () => { r.cancel(); t.close(); });
    process.stdin.resume();
  `], 'a reservation held in another process', { t, timeout: 30_000, stdin: 'pipe' });
  await child.line(/^held$/);
  throwsCode(() => topic.subscribe({ timeout: 50 }), 'ERR_MMAP_TOPIC_TIMEOUT', 'MmapkitError');
  child.child.stdin.end();
  assertOk(await child.done, /^held$/);
  const sub = topic.subscribe({ timeout: 1000 });
  topic.publish('after');
  assert.equal(String(sub.receive(1000)), 'after');
});
