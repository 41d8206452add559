// Topics across real processes (test/fixtures/topic-child.mjs): broadcast to 8 subscribers through
// a 'block' ring that fills, 'overwrite' with slow subscribers that get lapped and count exactly what
// they missed, a publisher killed (SIGKILL) holding the publish lock in the middle of a message, a
// subscriber killed while a 'block' publisher waits for it, and garbage from a hostile peer process.
//
// Messages carry their publisher's sequence number and a checksum, have seeded sizes, and are checked
// byte for byte by the receiving child (see the fixture). Every receive in a child has a timeout and
// every wait here has one, so a bug fails the test instead of hanging it.
import assert from 'node:assert/strict';
import { randomFillSync } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SharedMemory, Topic, TOPIC, map } from '../dist/index.js';
import { killed, shmName, startNode, tempDir, timedTests, until, xorshift } from './helpers.mjs';
import { CTL, KINDS, Messages, recordSize } from './fixtures/topic-child.mjs';

const CHILD = new URL('./fixtures/topic-child.mjs', import.meta.url).pathname;
const SEED = 0x7091c;

/** Every test has a time limit (awaiting a child or a stream has none of its own). */
const test = timedTests(120_000);

/**
 * Start topic-child.mjs MODE with options `o` (JSON), with the tests' child harness (startProc): killed
 * after `timeout` ms and when the test ends; line(re), tell(), report() as there.
 */
const start = (t, mode, o, { label = mode, timeout = 90_000 } = {}) => startNode([CHILD, mode, JSON.stringify(o)], label, { t, timeout, stdin: 'pipe' });

/** Control words shared with the children (CTL in the fixture): named shared memory. */
function control(t) {
  const name = shmName(t, 'ctl');
  const shm = SharedMemory.create(name, CTL.WORDS * 4);
  t.after(() => shm.close());
  return { ctlName: name, ctl: new Int32Array(shm.buffer.buffer, shm.buffer.byteOffset, CTL.WORDS) };
}

/** An Int32Array over a topic in named shared memory (to watch its words). */
function wordsOfShm(t, name) {
  const shm = SharedMemory.open(name);
  t.after(() => shm.close());
  return { buf: shm.buffer, i32: new Int32Array(shm.buffer.buffer, shm.buffer.byteOffset, shm.buffer.length >>> 2) };
}

/** The entry of process `pid` in Topic.inspect()'s subscriber list. */
function cursorOf(report, pid) {
  const s = report.subscribers.find((e) => e.pid === pid);
  assert.ok(s !== undefined, `process ${pid} holds no subscriber entry: ${JSON.stringify(report.subscribers)}`);
  return s.cursor;
}

// ------------------------------------------------------------------------------------- 1. block

// Fails if a 'block' publisher writes over a record a live subscriber has not read (the held
// subscriber's lag would pass the capacity, and its messages would be lost or torn: checked byte by
// byte), if a wake-up is lost (a receive or publish times out), if a message is lost, duplicated or
// reordered for any of the 8 receive methods, or if the end of the stream comes early, late or with
// the wrong reason.
test('block: 1 publisher and 8 subscriber processes (each receive method) through a 16 KiB ring that fills: every subscriber gets every message once, whole and in order, and the end as closed', async (t) => {
  const N = 12_000;
  const MAX = 1000;
  const opts = { capacity: 16384, maxMessageSize: MAX, policy: 'block', maxSubscribers: 9, publishers: 1 };
  const name = shmName(t, 'topic-block');
  const creator = Topic.create({ name }, opts);
  t.after(() => creator.close());
  const { i32 } = wordsOfShm(t, name);
  const { ctlName, ctl } = control(t);
  const spec = `name:${name}`;
  const METHODS = ['receive', 'tryReceive', 'receiveMany', 'receiveInto', 'drain', 'receiveAsync', 'forawait', 'readable'];
  const subs = METHODS.map((method, i) =>
    start(t, 'subscribe', { spec, seed: SEED, minLen: 0, maxLen: MAX, method, single: 0, noGaps: true, lapped: i % 2 === 0 ? 'error' : 'count', hold: i === 0, ctl: ctlName }, { label: `subscriber ${i} (${method})` }));
  // Every subscriber is attached before the first message.
  for (const s of subs) await s.line(/^subscribed 0$/);
  const t0 = performance.now();
  const pub = start(t, 'publish', { spec, seed: SEED, pub: 0, count: N, minLen: 0, maxLen: MAX, methods: ['publish', 'publishMany', 'reserve', 'tryPublish', 'publishAsync', 'publishManyAsync'], ctl: ctlName });
  // Subscriber 0 reads nothing until released: the publisher fills the ring and has to wait for it.
  await until(() => Atomics.load(i32, TOPIC.PUBLISHER_WAITING >>> 2) === 1 && Atomics.load(ctl, CTL.PUB_SENT) > 0, [pub, ...subs], 'the publisher waits for room', 30_000);
  const before = Topic.inspect({ name });
  const sent = Atomics.load(ctl, CTL.PUB_SENT);
  await sleep(200);
  const after = Topic.inspect({ name });
  assert.equal(cursorOf(after, subs[0].child.pid), 0, 'the held subscriber read something');
  assert.equal(after.positions.tail, before.positions.tail, 'the publisher went on while the held subscriber was a ring behind');
  assert.equal(Atomics.load(ctl, CTL.PUB_SENT), sent);
  // The ring is full for the held subscriber (the next record does not fit), and never more than full.
  const lag = after.positions.tail;
  assert.ok(lag <= opts.capacity && lag > opts.capacity - 2 * recordSize(MAX), `the held subscriber is ${lag} bytes behind (capacity ${opts.capacity})`);
  assert.ok(sent < N);
  Atomics.store(ctl, CTL.RELEASE, 1);
  const p = await pub.report();
  assert.equal(p.sent, N);
  for (const [i, s] of subs.entries()) {
    const r = await s.report();
    assert.deepEqual(
      { count: r.count, missed: r.missed, lappedErrors: r.lappedErrors, sequence: r.sequence, runs: r.runs, ended: r.ended, endReason: r.endReason },
      { count: N, missed: 0, lappedErrors: 0, sequence: N, runs: [[0, 0, 0, N]], ended: true, endReason: 'closed' },
      `subscriber ${i} (${METHODS[i]})`,
    );
  }
  t.diagnostic(`${N} messages to 8 subscribers in ${Math.round(performance.now() - t0)} ms; the publisher stopped at ${sent} for the held subscriber; publish methods ${JSON.stringify(p.used)}, tryPublish found no room ${p.full} times`);
});

// ------------------------------------------------------------------------------------- 2. overwrite

// The publisher is paced by the fast subscribers (CTL.PROGRESS): message k goes only once each has
// received k + 1 - WINDOW messages. Its cursor is then at most WINDOW records and one padding record
// (26 KB) behind anything a publisher writes, and INTENT runs ahead of the records by an eighth of the
// ring at most (8 KiB): less than the 64 KiB ring, so a fast subscriber can never be lapped, however
// the machine schedules it. The slow ones (sleeping between receives) are not
// waited for: they are lapped over and over, and must count exactly what they missed.
// Fails if a lapped subscriber hands out a record that was being overwritten (torn: checked byte by
// byte), if the missed count (subscription.missed, or the sum of the errors' err.missed) differs from
// the gap in the sequence numbers by a single message, if a lapped error comes with lapped: 'count' or
// does not come with 'error', if a subscriber is lapped that was never a ring behind, or if the last
// message (never overwritten) does not arrive.
test('overwrite: a paced publisher, 2 fast and 4 slow subscriber processes: the fast ones get everything, the slow ones only whole messages, and received + missed = published exactly, counted or by lapped errors', async (t) => {
  const N = 20_000;
  const MAX = 1024;
  const WINDOW = 24;
  const opts = { capacity: 65536, maxMessageSize: MAX, policy: 'overwrite', maxSubscribers: 8, publishers: 1 };
  assert.ok(WINDOW * recordSize(MAX) + recordSize(MAX) + opts.capacity / 8 < opts.capacity);
  const path = join(tempDir(t), 'topic');
  const creator = Topic.create(path, opts);
  t.after(() => creator.close());
  const { ctlName } = control(t);
  const spec = `file:${path}`;
  const common = { spec, seed: SEED + 2, minLen: 0, maxLen: MAX, single: 0, ctl: ctlName };
  const kinds = [
    { label: 'fast 0 (receive, lapped: error)', method: 'receive', lapped: 'error', progress: 0 },
    { label: 'fast 1 (receiveMany, lapped: count)', method: 'receiveMany', lapped: 'count', progress: 1 },
    { label: 'slow 0 (receive, lapped: count)', method: 'receive', lapped: 'count', sleepMs: 2 },
    { label: 'slow 1 (receive, lapped: error)', method: 'receive', lapped: 'error', sleepMs: 2 },
    { label: 'slow 2 (receiveMany, lapped: error)', method: 'receiveMany', lapped: 'error', sleepMs: 3 },
    { label: 'slow 3 (drain, lapped: count)', method: 'drain', lapped: 'count', sleepMs: 3 },
  ];
  const subs = kinds.map(({ label, ...k }) => start(t, 'subscribe', { ...common, ...k }, { label }));
  for (const s of subs) await s.line(/^subscribed 0$/);
  const t0 = performance.now();
  const pub = start(t, 'publish', { ...common, pub: 0, count: N, methods: ['publish', 'publishMany', 'reserve', 'tryPublish'], pace: { subs: [0, 1], window: WINDOW } });
  const p = await pub.report();
  assert.equal(p.sent, N);
  assert.equal(p.full, 0, "tryPublish refused a message in an 'overwrite' topic");
  const results = [];
  for (const s of subs) results.push(await s.report());
  for (const [i, r] of results.slice(0, 2).entries()) {
    assert.deepEqual(
      { count: r.count, missed: r.missed, lappedErrors: r.lappedErrors, sequence: r.sequence, runs: r.runs, endReason: r.endReason },
      { count: N, missed: 0, lappedErrors: 0, sequence: N, runs: [[0, 0, 0, N]], endReason: 'closed' },
      kinds[i].label,
    );
  }
  for (const [i, r] of results.slice(2).entries()) {
    const { label, lapped } = kinds[i + 2];
    assert.equal(r.count + r.missed, N, `${label}: received ${r.count} + missed ${r.missed}`);
    assert.equal(r.gaps, r.missed, `${label}: the sequence numbers skipped ${r.gaps}, missed says ${r.missed}`);
    assert.ok(r.missed > 0 && r.count > 0, `${label}: received ${r.count}, missed ${r.missed}: it was never lapped`);
    assert.equal(r.last, N - 1, `${label}: the last message (never overwritten) did not arrive`);
    assert.equal(r.sequence, N);
    assert.equal(r.endReason, 'closed');
    assert.ok(r.runs.every(([pub, k, seq]) => pub === 0 && k === seq), `${label}: message numbers and sequence numbers disagree`);
    assert.equal(r.runs.reduce((n, run) => n + run[3], 0), r.count);
    if (lapped === 'error') {
      assert.equal(r.errMissed, r.missed, `${label}: the lapped errors said ${r.errMissed} were missed`);
      // Every gap was reported (the child checks that the errors since the message before add up to it).
      const gapsSeen = r.runs.filter(([, , seq], j) => seq !== (j === 0 ? 0 : r.runs[j - 1][2] + r.runs[j - 1][3])).length;
      assert.ok(r.lappedErrors >= gapsSeen && gapsSeen > 0, `${label}: ${r.lappedErrors} lapped errors for ${gapsSeen} gaps`);
    } else {
      assert.equal(r.lappedErrors, 0);
    }
  }
  t.diagnostic(`${N} messages in ${Math.round(performance.now() - t0)} ms; slow subscribers received/missed ${results.slice(2).map((r) => `${r.count}/${r.missed} (${r.lappedErrors} errors, ${r.runs.length} runs)`).join(', ')}`);
});

// ------------------------------------------------------------------------------------- 3. publisher killed

// Publisher A publishes K messages, reserves room for the largest message, writes half of message K
// into it and is SIGKILLed holding the publish lock. Publisher B (waiting for the lock) and a late
// subscriber C (subscribe() takes the lock too) must take it over from the dead holder.
// Fails if nobody takes the lock over (B's publish times out; C never subscribes), if the takeover
// publishes what A wrote past TAIL (a record of the largest size, half of it A's message K: checked
// byte by byte), if B's sequence numbers do not continue A's exactly (the repair of NEXT_SEQ), or if
// the end comes as 'closed' though A died attached.
test('a publisher killed (SIGKILL) holding the publish lock in the middle of a message: another publisher process takes the lock over, no subscriber sees the half-written message, sequence numbers go on without a gap, the end comes as publisher-died', async (t) => {
  const K = 40;
  const M = 200;
  const MAX = 512;
  const opts = { capacity: 131072, maxMessageSize: MAX, policy: 'block', maxPublishers: 4, maxSubscribers: 4, publishers: 2 };
  const name = shmName(t, 'topic-kill');
  const creator = Topic.create({ name }, opts);
  t.after(() => creator.close());
  const { buf, i32 } = wordsOfShm(t, name);
  const msgs = new Messages(SEED + 3, 16, MAX);
  const spec = `name:${name}`;
  const common = { spec, seed: SEED + 3, minLen: 16, maxLen: MAX };
  const early = [
    start(t, 'subscribe', { ...common, method: 'receive', lapped: 'error' }, { label: 'subscriber S1 (receive)' }),
    start(t, 'subscribe', { ...common, method: 'receiveMany', lapped: 'count' }, { label: 'subscriber S2 (receiveMany)' }),
  ];
  for (const s of early) await s.line(/^subscribed 0$/);
  const a = start(t, 'reserve-half', { ...common, pub: 0, count: K }, { label: 'publisher A' });
  await a.line(/^reserved$/);
  const held = Topic.inspect({ name });
  assert.equal(held.positions.locked, a.child.pid, 'A holds the publish lock');
  assert.equal(held.positions.nextSequence, K);
  // What A wrote past TAIL: a record of the largest size, the first half of its message K.
  const tail = held.positions.tail;
  const ring = buf.readUInt32LE(TOPIC.RING_OFFSET);
  let off = tail & (opts.capacity - 1);
  if (off + recordSize(MAX) > opts.capacity) off = 0;
  const half = msgs.encode(0, K);
  assert.equal(buf.readInt32LE(ring + off + TOPIC.RECORD_LENGTH), MAX, 'the reserved record');
  assert.ok(buf.subarray(ring + off + TOPIC.RECORD_HEADER, ring + off + TOPIC.RECORD_HEADER + (half.length >> 1)).equals(half.subarray(0, half.length >> 1)), 'half of message K is in the ring');
  // B attaches and asks for the lock; C subscribes from the oldest message (it takes the lock too).
  const b = start(t, 'publish', { ...common, pub: 1, count: M, go: true, methods: ['publish', 'publishMany', 'reserve', 'tryPublish'] }, { label: 'publisher B' });
  await b.line(/^attached$/);
  b.tell('go');
  const c = start(t, 'subscribe', { ...common, method: 'drain', lapped: 'error', from: 'oldest' }, { label: 'subscriber C (drain, from oldest)' });
  await until(() => Atomics.load(i32, TOPIC.LOCK_WAITERS >>> 2) >= 2, [a, b, c], 'B and C wait for the lock', 30_000);
  await sleep(50);
  assert.ok(!/first|subscribed/.test(b.stdout() + c.stdout()), 'B published or C subscribed while A held the lock');
  assert.equal(Topic.inspect({ name }).positions.tail, tail);
  const t0 = performance.now();
  await killed(a);
  await b.line(/^first$/, 10_000);
  const tookOver = performance.now() - t0;
  assert.ok(tookOver < 3000, `B published its first message ${Math.round(tookOver)} ms after A's death`);
  await c.line(/^subscribed 0$/, 10_000);
  assert.equal((await b.report()).sent, M);
  const expected = [[0, 0, 0, K], [1, 0, K, M]];
  for (const [s, label] of [[early[0], 'S1'], [early[1], 'S2'], [c, 'C']]) {
    const r = await s.report();
    assert.deepEqual({ runs: r.runs, missed: r.missed, count: r.count, sequence: r.sequence, endReason: r.endReason }, { runs: expected, missed: 0, count: K + M, sequence: K + M, endReason: 'publisher-died' }, `subscriber ${label}`);
  }
  const end = Topic.inspect({ name });
  assert.equal(end.positions.nextSequence, K + M);
  assert.equal(end.positions.locked, 0);
  assert.equal(end.publisherDied, true);
  t.diagnostic(`B published ${Math.round(tookOver)} ms after A was killed`);
});

// ------------------------------------------------------------------------------------- 4. subscriber killed

// Fails if a 'block' publisher keeps waiting for a dead subscriber (it must look for dead ones while
// it waits: it would time out after 20 s), if it waits for the live ones that have caught up, or if
// the others lose anything meanwhile.
test('block: a subscriber killed (SIGKILL) while the publisher waits for it: the publisher carries on within a bounded time, and the other subscribers still get everything', async (t) => {
  const N = 4000;
  const MAX = 512;
  const opts = { capacity: 16384, maxMessageSize: MAX, policy: 'block', maxSubscribers: 4, publishers: 1 };
  const path = join(tempDir(t), 'topic');
  const creator = Topic.create(path, opts);
  t.after(() => creator.close());
  const spec = `file:${path}`;
  const common = { spec, seed: SEED + 4, minLen: 0, maxLen: MAX, single: 0, noGaps: true };
  const victim = start(t, 'subscribe', { ...common, method: 'receive', lapped: 'error', stallAfter: 5 }, { label: 'victim subscriber' });
  const others = [
    start(t, 'subscribe', { ...common, method: 'receiveAsync', lapped: 'error' }, { label: 'subscriber H1 (receiveAsync)' }),
    start(t, 'subscribe', { ...common, method: 'drain', lapped: 'count' }, { label: 'subscriber H2 (drain)' }),
  ];
  for (const s of [victim, ...others]) await s.line(/^subscribed 0$/);
  const pub = start(t, 'publish', { ...common, pub: 0, count: N, methods: ['publish', 'publishMany', 'reserve'] });
  await victim.line(/^stalled 5$/);
  // The publisher is a ring ahead of the victim, and the others have read everything published.
  const stuck = () => {
    const r = Topic.inspect(path);
    const tail = r.positions.tail;
    return tail - cursorOf(r, victim.child.pid) > opts.capacity - 2 * recordSize(MAX) && others.every((s) => cursorOf(r, s.child.pid) === tail);
  };
  await until(stuck, [pub, victim, ...others], 'the publisher waits for the stalled subscriber', 30_000);
  const { tail } = Topic.inspect(path).positions;
  await sleep(300);
  assert.equal(Topic.inspect(path).positions.tail, tail, 'the publisher went on past a live subscriber a ring behind');
  assert.ok(Topic.inspect(path).positions.tail - cursorOf(Topic.inspect(path), victim.child.pid) <= opts.capacity);
  const t0 = performance.now();
  await killed(victim);
  await until(() => Topic.inspect(path).positions.tail > tail, [pub, ...others], 'the publisher carries on after the subscriber died', 10_000);
  const ms = performance.now() - t0;
  assert.ok(ms < 3000, `the publisher carried on ${Math.round(ms)} ms after the subscriber died`);
  assert.equal((await pub.report()).sent, N);
  for (const [i, s] of others.entries()) {
    const r = await s.report();
    assert.deepEqual({ count: r.count, missed: r.missed, runs: r.runs, endReason: r.endReason }, { count: N, missed: 0, runs: [[0, 0, 0, N]], endReason: 'closed' }, `subscriber H${i + 1}`);
  }
  assert.ok(!Topic.inspect(path).subscribers.some((s) => s.pid === victim.child.pid), "the dead subscriber's entry was not freed");
  t.diagnostic(`the publisher went on ${Math.round(ms)} ms after the subscriber was killed`);
});

// ------------------------------------------------------------------------------------- 5. garbage

// The fuzz run, in rounds. Each round: the publisher process publishes a few messages; every
// subscriber process reads all there is (each says so once a receive of its finds nothing); then the
// hostile process, which maps the topic's file itself, writes one kind of garbage (seeded): random
// bytes in the ring, TAIL / HEAD / INTENT / NEXT_SEQ, a record length, subscriber table entries.
// The subscribers call receive methods with 20 ms timeouts all along. Garbage written while nothing
// is unread can lose messages but never spoil one that is read afterwards: every message delivered
// must be whole (its checksum and bytes), every call must return a message, nothing, or throw
// ERR_MMAP_TOPIC_CORRUPT, _LAPPED or _TIMEOUT in time, and the children must exit cleanly.
// 'unread-length' rounds stop the subscribers first, so that the record the hostile damages (with a
// length out of range, or one that runs past TAIL) is unread by all: each must then get
// ERR_MMAP_TOPIC_CORRUPT before anything else. Garbage may keep subscribers from catching up until
// the publisher rewrites the word (see caughtUp): a bounded number of messages more is allowed.
// At the end the publisher publishes until it has rewritten every position the garbage left, the
// subscribers subscribe again, and the publisher publishes final messages, which every subscriber
// must receive, whole, in order and without a gap; nothing may be written past the topic (a canary
// after it in the file).
// Fails on a crash, a hang (a call that overruns its timeout, a round that never finishes), a torn or
// made-up message, a damaged length delivered as a message, or a topic that does not carry on.
// TAIL gets random words, far positions and misaligned moves here, not positions within a ring of
// the records (subscribers move there): those are the last test's, which shows a library issue with
// them (with them here, this test fails now and then for that issue alone).
/** The fuzz run: ROUNDS rounds of garbage of the kinds in WEIGHTS (picked with these weights). */
async function fuzz(t, policy, { ROUNDS, WEIGHTS, tailInRing }) {
  const FINAL = 40;
  const MAX = 512;
  const CANARY = 4096;
  // A publisher rewrites INTENT once what it publishes passes its own copy, which runs ahead by an
  // eighth of the ring at most: that many bytes (and a record) of the smallest messages, and a few more.
  const PUMP_MAX = Math.ceil((16384 / 8 + recordSize(MAX)) / recordSize(16)) + 8;
  const opts = { capacity: 16384, maxMessageSize: MAX, policy, maxSubscribers: 8, maxPublishers: 2, publishers: 1 };
  const size = Topic.byteLength(opts);
  const path = join(tempDir(t), 'topic');
  writeFileSync(path, Buffer.alloc(size + CANARY, 0xa5));
  const creator = Topic.create(path, opts);
  t.after(() => creator.close());
  // Random bytes in the ring, as after a long life: a reader that garbage sends into stale bytes
  // must find random words there (zeros read as a run of empty records).
  {
    const m = map(path, { access: 'write' });
    const ring = m.buffer.readUInt32LE(TOPIC.RING_OFFSET);
    randomFillSync(m.buffer, ring, opts.capacity);
    m.unmap();
  }
  const canaryIntact = () => readFileSync(path).subarray(size).every((b) => b === 0xa5);
  const { ctlName, ctl } = control(t);
  const spec = `file:${path}`;
  const common = { spec, seed: SEED + 5, minLen: 16, maxLen: MAX, ctl: ctlName, pub: 0 };
  const publisher = start(t, 'fuzz-publish', { ...common, finalCount: FINAL }, { label: 'publisher' });
  await publisher.line(/^attached$/);
  const LAPPED = ['error', 'count', 'error'];
  const subs = LAPPED.map((lapped, id) => start(t, 'fuzz-subscribe', { ...common, id, lapped }, { label: `subscriber ${id} (lapped: ${lapped})` }));
  for (const s of subs) await s.line(/^subscribed$/);
  const hostile = start(t, 'hostile', { path, ctl: ctlName, seed: SEED ^ 0xbad, tailInRing }, { label: 'hostile peer' });
  await hostile.line(/^started$/);
  const all = [publisher, ...subs, hostile];
  const rng = xorshift(SEED + policy.length);
  const rnd = (n) => (rng.next().value >>> 0) % n;
  const kinds = Object.entries(WEIGHTS).flatMap(([k, w]) => Array(w).fill(k));
  let target = 0;
  const publish = async (n, what) => {
    target += n;
    Atomics.store(ctl, CTL.PUB_TARGET, target);
    await until(() => Atomics.load(ctl, CTL.PUB_DONE) === target, all, `${what}: the publisher publishes`, 10_000);
  };
  // Wait until every subscriber has read all there is. Garbage in INTENT or HEAD stays until the
  // publisher next writes that word (it keeps its own copies while it is the last writer: WRITER),
  // and meanwhile a subscriber may find itself lapped at every look: while one has not caught up
  // (300 ms, then 50 ms at a time), one more message goes, up to PUMP_MAX.
  const pumped = [];
  const caughtUp = async (gen, what) => {
    Atomics.store(ctl, CTL.GEN, gen);
    const idle = () => subs.every((_, i) => Atomics.load(ctl, CTL.IDLE + i) >= gen);
    try {
      let pumps = 0;
      for (;;) {
        try {
          await until(idle, all, `${what}: every subscriber reads all there is`, pumps === 0 ? 300 : 50);
          break;
        } catch (err) {
          if (!/still not the case/.test(err.message) || pumps === PUMP_MAX) throw err;
        }
        pumps++;
        await publish(1, `${what}, caught up`);
      }
      if (pumps > 0) pumped.push(`${what}: ${pumps}`);
    } catch (err) {
      const idle = subs.map((_, i) => Atomics.load(ctl, CTL.IDLE + i));
      const intent = readFileSync(path).readBigUInt64LE(TOPIC.INTENT);
      err.message += `; idle in rounds ${idle}; ${JSON.stringify(Topic.inspect(path).positions)}, INTENT ${intent}; ${subs.map((s) => s.stderr().slice(-600)).join('\n')}\n${hostile.stderr().slice(-1500)}`;
      throw err;
    }
  };
  const garbage = async (round, kind) => {
    Atomics.store(ctl, CTL.HOSTILE_KIND, KINDS.indexOf(kind));
    Atomics.store(ctl, CTL.HOSTILE_CMD, round);
    await until(() => Atomics.load(ctl, CTL.HOSTILE_DONE) === round, all, `round ${round}: the hostile peer writes ${kind}`, 10_000);
  };
  const t0 = performance.now();
  const rounds = {};
  for (let round = 1; round <= ROUNDS; round++) {
    const kind = kinds[rnd(kinds.length)];
    rounds[kind] = (rounds[kind] ?? 0) + 1;
    const what = `round ${round} (${kind})`;
    if (kind === 'unread-length') {
      // Caught up after a message (or more, while garbage of the round before keeps them lapped),
      // then stopped.
      await publish(1, what);
      await caughtUp(round, what);
      for (let i = 0; i < subs.length; i++) Atomics.store(ctl, CTL.FIRST + i, 0);
      Atomics.store(ctl, CTL.PAUSE, round);
      await until(() => subs.every((_, i) => Atomics.load(ctl, CTL.PAUSED + i) === round), all, `${what}: the subscribers stop`, 10_000);
      const pos = Topic.inspect(path).positions.tail;
      Atomics.store(ctl, CTL.POS_LO, pos % 2 ** 32);
      Atomics.store(ctl, CTL.POS_HI, Math.floor(pos / 2 ** 32));
      await publish(rnd(2) === 0 ? 1 : 2 + rnd(5), what);
      await garbage(round, kind);
      Atomics.store(ctl, CTL.PAUSE, 0);
      await until(() => subs.every((_, i) => Atomics.load(ctl, CTL.FIRST + i) !== 0), all, `${what}: the subscribers receive`, 10_000);
      const first = subs.map((_, i) => ['', 'ERR_MMAP_TOPIC_CORRUPT', 'a message', 'ERR_MMAP_TOPIC_LAPPED', 'ERR_MMAP_TOPIC_TIMEOUT', 'fruitless laps', 'another error'][Atomics.load(ctl, CTL.FIRST + i)]);
      assert.deepEqual(first, subs.map(() => 'ERR_MMAP_TOPIC_CORRUPT'), `${what}: what each subscriber got first from a record with a damaged length`);
    } else {
      await publish(1 + rnd(12), what);
      await caughtUp(round, what);
      await garbage(round, kind);
    }
    assert.ok(canaryIntact(), `${what}: a byte after the topic was written`);
  }
  const fuzzMs = performance.now() - t0;
  Atomics.store(ctl, CTL.STOP, 1);
  const { counts } = await hostile.report();
  all.pop(); // the hostile peer has exited
  // The garbage has stopped. Messages until the publisher has rewritten every position it left
  // (within a ring of messages: HEAD is rewritten when the publisher next moves it past what it
  // overwrites; until then subscribe() refuses the topic as corrupt) and every subscriber has caught
  // up; then every subscriber subscribes again (its old table entry may hold garbage), and the
  // final messages go.
  const positionsClean = () => {
    const b = readFileSync(path);
    const [tail, intent, head, next] = [TOPIC.TAIL, TOPIC.INTENT, TOPIC.HEAD, TOPIC.NEXT_SEQ].map((o) => b.readBigUInt64LE(o));
    const cap = BigInt(opts.capacity);
    return tail % 8n === 0n && head % 8n === 0n && head <= tail && tail - head <= cap && intent >= tail && intent - tail <= cap && next < 2n ** 52n;
  };
  let settle = 1;
  await publish(1, 'after the garbage');
  for (; !positionsClean(); settle++) {
    assert.ok(settle <= opts.capacity / recordSize(16), `the publisher has not rewritten the positions after ${settle} messages: ${JSON.stringify(Topic.inspect(path).positions)}`);
    await publish(1, 'after the garbage');
  }
  await caughtUp(ROUNDS + 1, 'after the garbage');
  Atomics.store(ctl, CTL.FINAL, 1);
  await until(() => subs.every((_, i) => Atomics.load(ctl, CTL.RESUBSCRIBED + i) === 1), all, 'the subscribers subscribe again', 10_000);
  Atomics.store(ctl, CTL.FINAL, 2);
  const p = await publisher.report();
  const results = [];
  for (const s of subs) results.push(await s.report());
  assert.ok(canaryIntact(), 'a byte after the topic was written');
  const total = (key) => results.reduce((n, r) => n + (r.outcomes[key] ?? 0), 0);
  t.diagnostic(`${ROUNDS} rounds in ${Math.round(fuzzMs)} ms: ${JSON.stringify(rounds)}; the hostile wrote ${JSON.stringify(counts)}; publisher ${JSON.stringify(p.outcomes)}`);
  t.diagnostic(`rounds that needed more messages before every subscriber caught up: ${pumped.join(', ') || 'none'}; ${settle} messages after the garbage before the positions were clean`);
  for (const [i, r] of results.entries()) {
    t.diagnostic(`subscriber ${i} (lapped: ${LAPPED[i]}): ${JSON.stringify(r.outcomes)}, slowest call ${r.slowest} ms`);
    assert.deepEqual(r.problems, [], `subscriber ${i}`);
    // Every final message, once each, in order, numbered without a gap.
    assert.equal(r.finals.length, 1, `subscriber ${i}: the final messages came as ${JSON.stringify(r.finals)}`);
    assert.deepEqual([r.finals[0][0], r.finals[0][1], r.finals[0][3]], [0, p.finalFrom, FINAL], `subscriber ${i}: final messages ${JSON.stringify(r.finals)}`);
    assert.equal(r.finalMissed, 0);
    assert.equal(r.endReason, 'closed');
  }
  assert.equal(p.sent, p.finalFrom + FINAL);
  assert.equal(p.outcomes.ok, p.sent);
  assert.ok(total('messages') > ROUNDS, `only ${total('messages')} messages were delivered`);
  assert.ok(total('ERR_MMAP_TOPIC_CORRUPT') >= subs.length * (rounds['unread-length'] ?? 1), 'the garbage was not reported as ERR_MMAP_TOPIC_CORRUPT');
  return { rounds, counts };
}

for (const policy of ['overwrite', 'block']) {
  test(`${policy}: garbage from a hostile peer process in the ring, the positions, record lengths and the subscriber table: subscribers get ERR_MMAP_TOPIC_CORRUPT, lapped errors or whole messages, never hang, and the topic carries on`, async (t) => {
    const { rounds, counts } = await fuzz(t, policy, { ROUNDS: 60, WEIGHTS: { ring: 3, position: 4, length: 3, table: 3, 'unread-length': 2 }, tailInRing: true }); // 60 rounds: every kind of garbage many times
    for (const kind of ['ring', 'position', 'length', 'table', 'unread-length']) assert.ok(rounds[kind] > 0, `no round of ${kind}`);
    assert.ok(Object.keys(counts).some((k) => k.startsWith('table.live')), 'the hostile never wrote the entry of a live subscriber');
    assert.ok(counts['unread-length.pastTail'] > 0, 'no unread record got a length that runs past TAIL');
  });
}

// TAIL moved back by a hostile peer onto a retained record, 8 bytes past its start (its sequence
// number there reads as a length in range), while every subscriber has read everything. Subscribers
// report ERR_MMAP_TOPIC_CORRUPT and move to that TAIL, taking the next record's number as it is
// (docs/topic-layout.md, "Reading"). A publisher that reloads the positions writes its next record
// there (or drops the history if they are not consistent), and what subscribers read next is whole.
//
// A publisher that finds its own value in WRITER keeps its own copies of the positions
// (src/topic/publisher.ts, begin()); it compares TAIL with its copy, so a TAIL moved under it is
// caught and the positions are checked again. Before that comparison this test failed: the publisher
// wrote on at its own copy, TAIL jumped past the subscribers, who then read from the bogus position,
// took a sequence number 8 bytes into an old record as a length, and handed out bytes no publisher sent.
test('block: TAIL moved back onto the middle of a retained record by a hostile peer process: subscribers never hand out bytes no publisher sent as a message', async (t) => {
  const { counts } = await fuzz(t, 'block', { ROUNDS: 6, WEIGHTS: { 'tail-back': 1 }, tailInRing: true });
  assert.ok(counts['tail-back'] > 0, 'the hostile never moved TAIL onto a record');
});
