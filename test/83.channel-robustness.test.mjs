// Channel robustness (layout 3, issue 10 "Robustness stays"), across real processes: garbage from a
// hostile peer in every part of a live channel, producers killed in the middle of a message or of a
// batch, consumers killed holding a lane or between receives, a dead producer seen while its parent
// blocks, messages larger than the channel, positions moved far apart or behind.
//
// Messages are made by test/fixtures/channel-robust-child.mjs: sequence numbers, seeded payloads and
// a tag keyed by a secret made for this run (SECRET below), which the hostile peer never sees: a
// delivered message verifies only if a producer of this run sent it.
import assert from 'node:assert/strict';
import { randomBytes, randomFillSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Channel, CHANNEL, SharedMemory } from '../dist/index.js';
import { assertKilled, asleepInFutex, exitedFirst, killed, startNode, throwsCode, timedTests, until } from './helpers.mjs';
import { FUZZ, Format, HDR, batchSizes, ctlWords, geometryOf, laneWord, ringOf, wordsOf, xorshift } from './fixtures/channel-robust-child.mjs';

const CHILD = new URL('./fixtures/channel-robust-child.mjs', import.meta.url).pathname;
const SECRET = randomBytes(32);
const ORIGIN = process.hrtime.bigint();
/** The environment of children that produce or check messages (the hostile peer gets no secret). */
const ENV = { ...process.env, MMAPKIT_ROBUST_SECRET: SECRET.toString('hex'), MMAPKIT_ROBUST_ORIGIN: String(ORIGIN) };
const SMALL = 64; // payload bytes of small messages (+ HDR)
const CANARY = 4096;
const INT32_MAX = 0x7fffffff;
const INT32_MIN = -0x80000000;

/** Every test has a time limit (awaiting a child or a stream has none of its own). */
const test = timedTests(120_000);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const elapsed = (t0) => performance.now() - t0;
const fmt = (maxPayload = SMALL, fixed, fixedFrom) => new Format(SECRET, ORIGIN, maxPayload, fixed, fixedFrom);

/** Anonymous shared memory for a channel with CANARY bytes of 0xa5 right after it; closed at the end. */
function channelMemory(t, opts) {
  const len = Channel.byteLength(opts);
  const shm = SharedMemory.anonymous(len + CANARY);
  shm.buffer.fill(0xa5, len);
  t.after(() => shm.close());
  return { shm, len, canaryIntact: () => shm.buffer.subarray(len).every((b) => b === 0xa5) };
}

/** Spawn options handing `shms` ({ key: SharedMemory }) to a child, with the message environment. */
function childOptions(shms, env = ENV) {
  let o = { stdio: ['pipe', 'pipe', 'pipe'], env };
  for (const [key, shm] of Object.entries(shms)) o = shm.childOptions(o, key);
  return o;
}

/**
 * Start channel-robust-child.mjs with the tests' child harness (startProc): output collected, killed
 * after `timeout` ms and when the test ends; line(re), tell(), report() as there.
 */
const start = (t, args, spawnOptions, { timeout = 60_000 } = {}) => startNode([CHILD, ...args], String(args[0]), { t, timeout, stdin: 'pipe', spawnOptions });

/**
 * Wait until `child` holds a producer lane of the channel in `shm`. Without `producers`, a consumer
 * sees the end of the stream once every producer that attached is gone: a producer whose start-up is
 * slow (a loaded machine) must be attached before the others can die.
 */
async function attached(shm, child, what) {
  for (const until = Date.now() + 30_000; ;) {
    if ((Channel.inspect(shm).producers ?? []).some((p) => p.pid === child.child.pid && p.state === 'attached')) return;
    assert.ok(Date.now() < until, `${what} attached within 30 s`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Busy-wait (the event loop does not run) until cond() holds; fail after ms. */
function spinUntil(cond, ms, what) {
  const end = performance.now() + ms;
  while (!cond()) if (performance.now() > end) throw new Error(`${what}: not within ${ms} ms`);
}

/** Whether a process is a zombie (dead, not reaped). */
function zombie(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.charAt(stat.lastIndexOf(')') + 2) === 'Z';
  } catch {
    return false;
  }
}

/** Assert that `runs` ([first, last] runs of consecutive sequence numbers) are exactly 0, 1, ..., n - 1. */
function assertRuns(runs = [], n, what) {
  assert.deepEqual(runs, n === 0 ? [] : [[0, n - 1]], `${what}: expected 0..${n - 1} in order, each once`);
}

/** Assert that `list` is exactly 0, 1, ..., n - 1. */
function assertSequence(list = [], n, what) {
  assert.equal(list.length, n, `${what}: ${list.length} messages, expected ${n}`);
  for (let i = 0; i < n; i++) if (list[i] !== i) assert.fail(`${what}: message ${list[i]} where ${i} was due (out of order, lost or duplicated)`);
}

// ------------------------------------------------------------------------------------- 1. garbage

// The fuzz run. Two victim processes each run two producer and two consumer handles, calling every
// send and receive method with short timeouts; a hostile process writes garbage into every part of
// the channel (see hostile() in the fixture); the parent checks the bytes after the channel and calls
// Channel.inspect() meanwhile. Each call must return or throw ERR_MMAP_CHANNEL_CORRUPT or
// _TIMEOUT (open(): ERR_MMAP_BAD_HEADER; attach(): ERR_MMAP_CHANNEL_FULL) within its timeout + 3 s.
// Each delivered message must be one a producer of this run made (tag keyed by the secret), unless
// the hostile wrote into that very record (its stamps say where and when), or, for a torn message
// of ours, into the lane's positions, holder or owner or the consumer table lately: nothing in a
// record says who wrote it, so garbage there lets a stale reader or a second writer spoil messages
// (docs/channel-layout.md: "A peer that writes garbage can lose or spoil messages"). A message
// delivered in place must lie inside one ring. Then the garbage stops, every handle attaches again,
// and every producer's next messages must all arrive, intact, with no excuse.
test('garbage from a hostile peer process in every part of a live channel while 4 producers and 4 consumers run in 2 processes: no crash, no access outside, no hang, no message no producer sent; the channel carries on', async (t) => {
  const BUDGET_MS = 10_000;
  const { shm, len, canaryIntact } = channelMemory(t, FUZZ.opts);
  const creator = Channel.create(shm, FUZZ.opts);
  const g = geometryOf(shm.buffer);
  // Random bytes in the rings, as after a long life of the channel: a reader that garbage sends
  // into stale bytes must find random words there (fresh memory is zeros, which read as a run of
  // valid empty records: what position garbage shows then is not something the library makes up).
  randomFillSync(shm.buffer, g.ringsOffset, len - g.ringsOffset);
  const ctlShm = SharedMemory.anonymous(ctlWords(g) * 4);
  t.after(() => ctlShm.close());
  const ctl = wordsOf(ctlShm);
  ctl.fill(-1, FUZZ.TABLE_TAINT); // stamps: never
  const victims = [0, 1].map((v) => start(t, ['victim', v, 0x5eed + v], childOptions({ ch: shm, ctl: ctlShm }), { timeout: 100_000 }));
  await Promise.all(victims.map((v) => v.line(/^ready$/)));
  // The hostile peer has the memory but not the secret.
  const hostileEnv = { ...process.env, MMAPKIT_ROBUST_ORIGIN: String(ORIGIN) };
  const hostile = start(t, ['hostile', 0xbad5eed], childOptions({ ch: shm, ctl: ctlShm }, hostileEnv), { timeout: 100_000 });
  await hostile.line(/^started$/);
  // While it runs: the bytes after the channel stay untouched, and inspect() answers.
  const t0 = performance.now();
  let inspections = 0;
  while (elapsed(t0) < BUDGET_MS) {
    assert.ok(canaryIntact(), 'a byte after the channel was written');
    const report = Channel.inspect(shm);
    assert.equal(typeof report.state, 'string');
    inspections++;
    exitedFirst([...victims, hostile], 'the garbage');
    await sleep(50);
  }
  Atomics.store(ctl, FUZZ.PHASE, 1);
  const { counts } = await hostile.report();
  // The garbage has stopped: every handle closes and attaches again, the lanes are drained, then each
  // producer sends FUZZ.finalCount messages that must all arrive intact.
  for (const phase of [2, 3]) {
    Atomics.store(ctl, FUZZ.PHASE, phase);
    await until(() => [0, 1].every((v) => Atomics.load(ctl, FUZZ.ACK + v) >= phase), victims, `victims finish phase ${phase}`, 30_000);
  }
  Atomics.store(ctl, FUZZ.PHASE, 4);
  const results = await Promise.all(victims.map((v) => v.report()));
  creator.close();
  assert.ok(canaryIntact(), 'a byte after the channel was written');

  const sum = (key) => results.reduce((s, r) => s + (r.outcomes[key] ?? 0), 0);
  const tally = (key) => results.reduce((s, r) => s + r.tally[key], 0);
  t.diagnostic(`secret ${SECRET.toString('hex').slice(0, 16)}..., hostile writes ${JSON.stringify(counts)}`);
  for (const [v, r] of results.entries()) {
    t.diagnostic(`victim ${v}: outcomes ${JSON.stringify(r.outcomes)}; ${JSON.stringify({ ...r.tally, final: undefined })}; slowest call ${r.slowest} ms`);
    assert.deepEqual(r.problems, [], `victim ${v} found problems`);
  }
  t.diagnostic(`${inspections} inspections during the garbage`);
  for (const kind of ['header', 'lanesUsed', 'wakeLine', 'lane.LANE_WRITE', 'lane.LANE_READ', 'lane.LANE_READER', 'lane.LANE_STATE', 'lane.LANE_PID', 'lane.NOT_FULL', 'lane.WAITING', 'table', 'record.length', 'ring.bytes']) {
    assert.ok(counts[kind] > 0, `the hostile peer never wrote ${kind}`);
  }
  assert.ok(sum('ok') > 1000, `only ${sum('ok')} calls succeeded`);
  assert.ok(sum('ERR_MMAP_CHANNEL_CORRUPT') > 0, 'the garbage was never reported as ERR_MMAP_CHANNEL_CORRUPT');
  assert.ok(tally('verified') > 1000, `only ${tally('verified')} messages arrived intact during the garbage`);
  // After the garbage: every final message of every producer arrived exactly once, in order in
  // each process (its two consumers take turns, each in lane order).
  for (let p = 0; p < FUZZ.producers; p++) {
    for (const [v, r] of results.entries()) {
      const list = r.tally.final[p] ?? [];
      assert.ok(list.every((s, i) => i === 0 || s > list[i - 1]), `producer ${p}: final messages out of order in victim ${v}`);
    }
    const all = results.flatMap((r) => r.tally.final[p] ?? []).sort((a, b) => a - b);
    assertSequence(all, FUZZ.finalCount, `producer ${p}: the messages sent once the garbage stopped`);
  }
});

test('garbage in record lengths and padding markers: ERR_MMAP_CHANNEL_CORRUPT from every receive method, nothing written outside, and the next message is delivered', async (t) => {
  const opts = { laneSize: 4096, maxMessageSize: 100, maxProducers: 1, maxConsumers: 2 };
  const { shm, canaryIntact } = channelMemory(t, opts);
  const f = fmt(SMALL);
  const i32 = wordsOf(shm);
  const target = Buffer.alloc(400);
  const lengths = new Uint32Array(4);
  const one = (list) => (list === null || list.length === 0 ? list : list[0]);
  const methods = {
    receive: (c) => c.receive(1000),
    tryReceive: (c) => c.tryReceive(),
    receiveMany: (c) => one(c.receiveMany(4, 1000)),
    tryReceiveMany: (c) => one(c.tryReceiveMany(4)),
    receiveInto: (c) => { const n = c.receiveInto(target, lengths, 1000); return n === null ? null : Buffer.from(target.subarray(0, lengths[0])); },
    drain: (c) => { let got; c.drain((b, o, l) => (got ??= Buffer.from(b.subarray(o, o + l))), 4, 1000); return got; },
    receiveInPlace: (c) => { const m = c.receiveInPlace(1000); const d = Buffer.from(m.data); m.release(); return d; },
    receiveAsync: (c) => c.receiveAsync({ timeout: 1000 }),
    receiveManyAsync: async (c) => one(await c.receiveManyAsync(4, { timeout: 1000 })),
    drainAsync: async (c) => { let got; await c.drainAsync((b, o, l) => (got ??= Buffer.from(b.subarray(o, o + l))), 4, { timeout: 1000 }); return got; },
    receiveIntoAsync: async (c) => { const n = await c.receiveIntoAsync(target, lengths, { timeout: 1000 }); return n === null ? null : Buffer.from(target.subarray(0, lengths[0])); },
  };
  // Each case: where the damaged record goes (its ring offset), and what its length word becomes.
  const cases = {
    'longer than maxMessageSize': [0, () => 101],
    'INT32_MAX': [0, () => INT32_MAX],
    'negative': [0, () => -2],
    'INT32_MIN': [0, () => INT32_MIN],
    '1 MiB': [0, () => 1 << 20],
    'longer than what was published': [0, () => 90],
    'crossing the end of the ring': [4096 - 48, () => 60],
    'padding past the write position': [2048, () => -1],
    'padding at ring offset 0': [0, () => -1],
  };
  let seq = 0;
  const report = [];
  for (const [name, method] of Object.entries(methods)) {
    for (const [what, [at, bad]] of Object.entries(cases)) {
      const creator = Channel.create(shm, opts);
      const g = geometryOf(shm.buffer);
      const p = Channel.open(shm);
      const c = Channel.open(shm);
      // Move the lane to `at` with filler records that the consumer takes.
      for (let off = 0; off < at;) {
        const rec = at - off <= 104 ? at - off : at - off - 104 >= 8 ? 104 : 64;
        p.send(Buffer.alloc(rec - 8, 0x11));
        assert.equal(c.receive(1000).length, rec - 8);
        off += rec;
      }
      const w = Atomics.load(i32, laneWord(g, 0, CHANNEL.LANE_WRITE));
      assert.equal(w & (g.laneSize - 1), at);
      p.send('damaged!'); // a record of 16 bytes
      if (what === 'crossing the end of the ring') p.send(Buffer.alloc(40)); // padding to the end and 48 bytes at 0: 96 bytes published
      i32[(ringOf(g, 0) + at) >>> 2] = bad();
      const t0 = performance.now();
      await assert.rejects(async () => method(c), (err) => {
        assert.equal(err.code, 'ERR_MMAP_CHANNEL_CORRUPT', `${name}, ${what}: ${err.code}: ${err.message}`);
        assert.equal(err.name, 'MmapkitError');
        return true;
      }, `${name}, ${what}: delivered something`);
      assert.ok(elapsed(t0) < 1000, `${name}, ${what}: the error took ${Math.round(elapsed(t0))} ms`);
      // The channel carries on with the next message.
      const intact = f.encode(0, seq++);
      p.send(intact);
      const got = await method(c);
      assert.ok(Buffer.isBuffer(got), `${name}, ${what}: got ${got} after the error`);
      assert.deepEqual(got, intact, `${name}, ${what}: the next message`);
      assert.ok(f.check(got).ok);
      assert.ok(canaryIntact(), `${name}, ${what}: a byte after the channel was written`);
      report.push(name);
      for (const h of [p, c, creator]) h.close();
    }
  }
  assert.equal(report.length, Object.keys(methods).length * Object.keys(cases).length);
});

test('garbage in any header word of a live channel: open() refuses it (ERR_MMAP_BAD_HEADER) or gets limits that fit its lanes; live handles carry on', async (t) => {
  const opts = { laneSize: 8192, maxMessageSize: 256, maxProducers: 2, maxConsumers: 2 };
  const { shm, canaryIntact } = channelMemory(t, opts);
  const creator = Channel.create(shm, opts);
  const f = fmt(SMALL);
  const p = Channel.open(shm);
  const c = Channel.open(shm);
  p.attach('producer');
  c.attach('consumer');
  const header = Buffer.from(shm.buffer.subarray(0, CHANNEL.HEADER_END));
  const rng = xorshift(0x4ead);
  const values = [0, 1, 2, 7, 8, 257, 4080, 4081, 8192, 1 << 20, 1 << 30, 0x7ffffff0, 0x7ffffff9, 0x7fffffff, 0x80000000, 0xbeddbeac, 0xfffffff8, 0xffffffff];
  const wrong = [];
  let opened = 0;
  let seq = 0;
  for (let word = 0; word < CHANNEL.HEADER_END / 4; word++) {
    for (const v of [...values, ...Array.from({ length: 8 }, () => rng.next().value)]) {
      shm.buffer.writeUInt32LE(v >>> 0, word * 4);
      let h;
      try {
        h = Channel.open(shm);
      } catch (err) {
        assert.equal(err.code, 'ERR_MMAP_BAD_HEADER', `word ${word} = 0x${v.toString(16)}: ${err.stack}`);
      }
      if (h !== undefined) {
        opened++;
        // What open() accepted must describe a lane that takes two records of the largest message
        // (docs/channel-layout.md, "What a reader must validate").
        const max = h.maxMessageSize;
        if (!(Number.isInteger(max) && max >= 1 && 2 * ((8 + max + 7) & ~7) <= h.laneSize && h.laneSize === 8192 && h.capacity >= 1)) {
          wrong.push(`word ${word} (byte ${word * 4}) = 0x${(v >>> 0).toString(16)}: maxMessageSize ${max}, laneSize ${h.laneSize}, capacity ${h.capacity}`);
        }
        h.close();
      }
      header.copy(shm.buffer, word * 4, word * 4, word * 4 + 4);
    }
    // The handles attached before carry on.
    const m = f.encode(0, seq++);
    p.send(m, 1000);
    assert.deepEqual(c.receive(1000), m);
  }
  assert.ok(canaryIntact());
  for (const h of [p, c, creator]) h.close();
  t.diagnostic(`${opened} damaged headers opened (words the checks do not cover, or values they allow)`);
  assert.deepEqual(wrong, [], 'open() accepted limits that do not fit the lanes');
});

// ------------------------------------------------------------------------------------- 2. producers killed

test('producers killed (SIGKILL) in the middle of 1 MiB messages, at random moments: a consumer never receives part of one, the other producer carries on, the end comes as producer-died', async (t) => {
  const SIZE = 1 << 20;
  const ROUNDS = 6;
  const opts = { maxMessageSize: SIZE, laneSize: 16 << 20, maxProducers: 3, maxConsumers: 2 };
  const { shm, canaryIntact } = channelMemory(t, opts);
  const rx = Channel.create(shm, opts);
  const g = geometryOf(shm.buffer);
  const i32 = wordsOf(shm);
  const marksShm = SharedMemory.anonymous(4 * 4 * ROUNDS);
  t.after(() => marksShm.close());
  const marks = wordsOf(marksShm);
  const f = fmt(SMALL, SIZE - HDR, 1);
  const steady = start(t, ['steady', 0, SMALL], childOptions({ ch: shm }));
  await attached(shm, steady, 'the steady producer');
  const consumer = start(t, ['consume', SMALL, SIZE], childOptions({ ch: shm }), { timeout: 100_000 });
  const rng = xorshift(0x1ee7);
  const expected = {};
  let torn = 0;
  let whole = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const base = r * 4;
    const victim = start(t, ['big', r + 1, base, SIZE, SMALL], childOptions({ ch: shm, marks: marksShm }));
    // Kill it once it has started message `at`, after a random spin: while it copies, mostly.
    const at = 1 + (rng.next().value % 6);
    spinUntil(() => Atomics.load(marks, base) >= at || zombie(victim.child.pid), 30_000, `victim ${r} starts message ${at}`);
    const spinUntilNs = process.hrtime.bigint() + BigInt(rng.next().value % 400_000);
    while (process.hrtime.bigint() < spinUntilNs);
    await killed(victim);
    const started = Atomics.load(marks, base);
    const done = Atomics.load(marks, base + 1);
    const lane = Atomics.load(marks, base + 2) - 1;
    const before = Atomics.load(marks, base + 3);
    const w = Atomics.load(i32, laneWord(g, lane, CHANNEL.LANE_WRITE));
    if (started === done || w !== before) {
      expected[r + 1] = started; // it published every message it started
    } else {
      expected[r + 1] = done;
      // Message started - 1 was not published: how much of it lies in the ring past the write position?
      let off = before & (g.laneSize - 1);
      if (off + 8 + SIZE > g.laneSize) off = 0;
      const inRing = shm.buffer.subarray(ringOf(g, lane) + off + 8 + HDR, ringOf(g, lane) + off + 8 + SIZE);
      const payload = f.payload(r + 1, started - 1, SIZE - HDR);
      let same = 0;
      const chunks = Math.ceil(payload.length / 4096);
      for (let k = 0; k < chunks; k++) if (inRing.subarray(k * 4096, (k + 1) * 4096).equals(payload.subarray(k * 4096, (k + 1) * 4096))) same++;
      if (same > 0 && same < chunks) torn++;
      if (same === chunks) whole++;
    }
  }
  steady.tell('close');
  const { sent } = await steady.report();
  const { runs, endReason } = await consumer.report();
  assertRuns(runs[0], sent, 'the other producer');
  for (let r = 0; r < ROUNDS; r++) assertRuns(runs[r + 1], expected[r + 1], `killed producer ${r}: exactly its published messages, whole`);
  assert.equal(endReason, 'producer-died');
  assert.ok(canaryIntact());
  rx.close();
  t.diagnostic(`${torn} of ${ROUNDS} kills left a half-copied message in the ring, ${whole} a whole unpublished one; published ${JSON.stringify(expected)}; the other producer sent ${sent}`);
  assert.ok(torn > 0, 'no kill landed in the middle of a message: the test did not test the torn case');
});

test('producers killed (SIGKILL) in the middle of sendMany batches of small messages, many times: never part of a batch, the other producer carries on, the end comes as producer-died', async (t) => {
  const ROUNDS = 12;
  const BATCHES = 400; // 5.3 MB at most: the lane never fills, so a batch is published whole or not at all
  const PAYLOAD = 240; // larger messages: the appends of a batch take most of a sendMany
  const opts = { maxMessageSize: HDR + PAYLOAD, laneSize: 8 << 20, maxProducers: 3, maxConsumers: 2 };
  const { shm, canaryIntact } = channelMemory(t, opts);
  const rx = Channel.create(shm, opts);
  const g = geometryOf(shm.buffer);
  const i32 = wordsOf(shm);
  const marksShm = SharedMemory.anonymous(4 * 4 * ROUNDS);
  t.after(() => marksShm.close());
  const marks = wordsOf(marksShm);
  const f = fmt(PAYLOAD);
  const steady = start(t, ['steady', 0, PAYLOAD], childOptions({ ch: shm }));
  await attached(shm, steady, 'the steady producer');
  const consumer = start(t, ['consume', PAYLOAD, 0], childOptions({ ch: shm }), { timeout: 100_000 });
  const rng = xorshift(0xba7c);
  const expected = {};
  const timings = [];
  let torn = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const id = r + 1;
    const base = r * 4;
    const sizes = batchSizes(id, BATCHES);
    const upTo = (b) => sizes.slice(0, b).reduce((s, n) => s + n, 0);
    // The lanes of earlier victims are drained first (one may be taken over by this one).
    await until(() => Channel.inspect(shm).producers.every((p) => p.lane === 0 || p.queuedBytes === 0), [consumer], 'the consumer drains the killed producers\' lanes', 30_000);
    const t0 = performance.now();
    const victim = start(t, ['batches', id, base, BATCHES, PAYLOAD], childOptions({ ch: shm, marks: marksShm }));
    const at = 1 + (rng.next().value % 100);
    spinUntil(() => Atomics.load(marks, base) >= at || zombie(victim.child.pid), 30_000, `victim ${r} starts batch ${at}`);
    const spinUntilNs = process.hrtime.bigint() + BigInt(rng.next().value % 50_000);
    while (process.hrtime.bigint() < spinUntilNs);
    await killed(victim);
    const started = Atomics.load(marks, base);
    const done = Atomics.load(marks, base + 1);
    const lane = Atomics.load(marks, base + 2) - 1;
    const before = Atomics.load(marks, base + 3);
    const w = Atomics.load(i32, laneWord(g, lane, CHANNEL.LANE_WRITE));
    // (On a loaded machine the victim may send every batch before the kill comes: then it is killed idle.)
    timings.push(`${Math.round(elapsed(t0))}ms:${at}/${started}/${done}`);
    if (started === done || w !== before) {
      expected[id] = upTo(started);
    } else {
      expected[id] = upTo(done);
      // Batch started - 1 was not published: count its records written past the write position.
      let pos = before;
      let written = 0;
      for (let seq = upTo(started - 1); seq < upTo(started); seq++) {
        const length = f.lengthOf(id, seq);
        const need = (8 + length + 7) & ~7;
        if ((pos & (g.laneSize - 1)) + need > g.laneSize) pos += g.laneSize - (pos & (g.laneSize - 1));
        const at = ringOf(g, lane) + (pos & (g.laneSize - 1));
        if (shm.buffer.readInt32LE(at) !== length || !shm.buffer.subarray(at + 8 + HDR, at + 8 + length).equals(f.payload(id, seq, length - HDR))) break;
        written++;
        pos += need;
      }
      if (written > 0) torn++;
    }
  }
  steady.tell('close');
  const { sent } = await steady.report();
  const { runs, endReason } = await consumer.report();
  assertRuns(runs[0], sent, 'the other producer');
  for (let r = 0; r < ROUNDS; r++) assertRuns(runs[r + 1], expected[r + 1], `killed producer ${r}: exactly its published batches`);
  assert.equal(endReason, 'producer-died');
  assert.ok(canaryIntact());
  rx.close();
  t.diagnostic(`${torn} of ${ROUNDS} kills left a batch appended but not published; delivered per killed producer ${JSON.stringify(expected)}; the other producer sent ${sent}; rounds (ms:kill at/started/done) ${timings.join(' ')}`);
  assert.ok(torn > 0, 'no kill landed between the appends and the publish of a batch: the test did not test that case');
});

// ------------------------------------------------------------------------------------- 3. consumers killed holding a lane

test('a consumer killed while holding a message in place (never released): the producer is not wedged, another consumer blocked in receive() takes the lane back and gets the message again', async (t) => {
  const opts = { laneSize: 4096, maxMessageSize: HDR + SMALL, maxProducers: 2, maxConsumers: 3 };
  const { shm, canaryIntact } = channelMemory(t, opts);
  const rx = Channel.create(shm, opts);
  const f = fmt(SMALL);
  const N = 400; // far more than a lane holds: the producer has to wait for the lane
  const producer = start(t, ['produce', 0, N, SMALL], childOptions({ ch: shm }));
  await until(() => rx.size > 0, [producer], 'the producer sends', 10_000);
  // It kills itself (SIGKILL) 400 ms after it took the message: meanwhile this process blocks.
  const holder = start(t, ['hold-inplace', SMALL, 400], childOptions({ ch: shm }));
  assert.deepEqual(JSON.parse(await holder.line(/held/)).held, [0, 0]);
  // While the holder lives its lane is its own: nothing from it here.
  assert.equal(rx.tryReceive(), undefined, 'a lane held by a live consumer was taken');
  const t0 = performance.now();
  const first = rx.receive(10_000);
  const ms = elapsed(t0);
  assert.deepEqual(f.check(first), { ok: true, producer: 0, seq: 0, time: first.readUInt32LE(20), why: '' }, 'the unreleased message comes again');
  assertKilled(await holder.done);
  const seqs = [0];
  for (let m; (m = rx.receive(10_000)) !== null;) {
    const c = f.check(m);
    assert.ok(c.ok, c.why);
    seqs.push(c.seq);
  }
  assert.deepEqual(await producer.report(), { sent: N }, 'the producer finished');
  assertSequence(seqs, N, 'after the holder died');
  t.diagnostic(`lane back ${Math.round(ms - 400)} ms after the holder's death (it held it ${Math.round(ms)} ms)`);
  assert.ok(ms < 400 + 3000, `the lane came back ${Math.round(ms)} ms after the receive started`);
  assert.ok(canaryIntact());
  rx.close();
});

test('a consumer killed inside a drain() handler: other lanes flow meanwhile, and another consumer takes the lane back and gets every message the handler was given, again', async (t) => {
  const opts = { laneSize: 4096, maxMessageSize: HDR + SMALL, maxProducers: 2, maxConsumers: 3 };
  const { shm, canaryIntact } = channelMemory(t, opts);
  const rx = Channel.create(shm, { ...opts, producers: 2 });
  const f = fmt(SMALL);
  const N = 400;
  const M = 300;
  const p0 = start(t, ['produce', 0, N, SMALL], childOptions({ ch: shm }));
  await until(() => rx.size >= 5, [p0], 'the producer sends', 10_000);
  const holder = start(t, ['hold-drain', SMALL, 3, 16], childOptions({ ch: shm }));
  assert.deepEqual(JSON.parse(await holder.line(/handled/)).handled, [[0, 0], [0, 1], [0, 2]]);
  // Another producer's lane flows while the holder blocks in its handler.
  const p1 = start(t, ['produce', 1, M, SMALL], childOptions({ ch: shm }));
  const seqs = { 0: [], 1: [] };
  const take = (m) => {
    const c = f.check(m);
    assert.ok(c.ok, c.why);
    seqs[c.producer].push(c.seq);
  };
  while (seqs[1].length < M) take(await rx.receiveAsync({ timeout: 10_000 }));
  assert.deepEqual(seqs[0], [], 'a lane held by a live consumer was taken');
  assert.deepEqual(await p1.report(), { sent: M });
  const t0 = performance.now();
  await killed(holder);
  take(await rx.receiveAsync({ timeout: 10_000 }));
  const ms = elapsed(t0);
  for (let m; (m = await rx.receiveAsync({ timeout: 10_000 })) !== null;) take(m);
  assert.deepEqual(await p0.report(), { sent: N }, 'the producer was not wedged');
  assertSequence(seqs[0], N, 'the held lane, from the first message the dead consumer was given');
  assertSequence(seqs[1], M, 'the other lane');
  assert.equal(rx.endReason, 'closed');
  t.diagnostic(`lane back ${Math.round(ms)} ms after the kill`);
  assert.ok(ms < 3000, `the lane came back ${Math.round(ms)} ms after the kill`);
  assert.ok(canaryIntact());
  rx.close();
});

// ------------------------------------------------------------------------------------- 4. consumers killed between receives

test('consumers killed between receives (idle, and asleep in receive()) do not wedge the others; new consumers reuse their table entries', async (t) => {
  const opts = { laneSize: 4096, maxMessageSize: HDR + SMALL, maxProducers: 1, maxConsumers: 3 };
  const { shm, canaryIntact } = channelMemory(t, opts);
  const creator = Channel.create(shm, opts);
  const rx = Channel.open(shm);
  rx.attach('consumer'); // entry 0
  const f = fmt(SMALL);
  const producer = start(t, ['produce-on-demand', 0, SMALL], childOptions({ ch: shm }));
  await producer.line(/^ready$/);
  const sent = async (n) => producer.line(new RegExp(`^sent ${n}$`));
  const idle = start(t, ['idle-consumer', SMALL, 5], childOptions({ ch: shm }));
  producer.tell('send 5');
  await sent(5);
  const idleGot = JSON.parse(await idle.line(/got/)).got.map(([, s]) => s);
  assert.deepEqual(idleGot, [0, 1, 2, 3, 4]);
  const sleeper = start(t, ['block-consumer'], childOptions({ ch: shm }));
  await sleeper.line(/^attached$/);
  await asleepInFutex([sleeper], 'the consumer sleeps in receive()', { ms: 10_000, fallbackMs: 300 });
  const entries = () => Channel.inspect(shm).consumers.map((c) => [c.entry, c.pid, c.alive]);
  assert.deepEqual(entries(), [[0, process.pid, true], [1, idle.child.pid, true], [2, sleeper.child.pid, true]]);
  await killed(idle);
  await killed(sleeper);
  // The others carry on: every message to the live consumer, promptly.
  const seqs = [];
  const take = (m) => {
    const c = f.check(m);
    assert.ok(c.ok, c.why);
    seqs.push(c.seq);
  };
  producer.tell('send 1000');
  const t0 = performance.now();
  for (let i = 0; i < 1000; i++) take(await rx.receiveAsync({ timeout: 5000 }));
  t.diagnostic(`1000 messages in ${Math.round(elapsed(t0))} ms after the two consumers died`);
  await sent(1005);
  assert.deepEqual(entries(), [[0, process.pid, true], [1, idle.child.pid, false], [2, sleeper.child.pid, false]]);
  // The table is full of the dead: new consumers take their entries; one more finds none.
  const late = [0, 1].map(() => start(t, ['late-consumer', SMALL], childOptions({ ch: shm })));
  await Promise.all(late.map((c) => c.line(/^attached$/)));
  const taken = entries().filter(([, pid]) => late.some((c) => c.child.pid === pid)).map(([entry, , alive]) => [entry, alive]).sort();
  assert.deepEqual(taken, [[1, true], [2, true]], "the new consumers took the dead ones' entries");
  assert.deepEqual(entries()[0], [0, process.pid, true]);
  const extra = Channel.open(shm);
  throwsCode(() => extra.attach('consumer'), 'ERR_MMAP_CHANNEL_FULL', 'MmapkitError');
  extra.close();
  producer.tell('send 600');
  await sent(1605);
  producer.tell('close');
  await producer.line(/^closed$/);
  for (let m; (m = await rx.receiveAsync({ timeout: 10_000 })) !== null;) take(m);
  const lateGot = await Promise.all(late.map((c) => c.report()));
  for (const r of lateGot) assert.equal(r.endReason, 'closed');
  const all = [...idleGot, ...seqs, ...lateGot.flatMap((r) => r.got.map(([, s]) => s))].sort((a, b) => a - b);
  assertSequence(all, 1605, 'every message exactly once, over the dead and the new consumers');
  assert.ok(lateGot.some((r) => r.got.length > 0), 'the new consumers received nothing');
  assert.ok(canaryIntact());
  rx.close();
  creator.close();
});

// ------------------------------------------------------------------------------------- 5. a dead producer, unreaped

test('a producer that died is seen dead while its parent blocks in receive() (it is a zombie until reaped)', async (t) => {
  const opts = { laneSize: 4096, maxMessageSize: HDR + SMALL, maxProducers: 1, maxConsumers: 1 };
  const { shm } = channelMemory(t, opts);
  const rx = Channel.create(shm, opts);
  const f = fmt(SMALL);
  const victim = start(t, ['reserve-half', 0, SMALL], childOptions({ ch: shm }));
  await victim.line(/^reserved$/);
  const first = rx.receive(1000);
  assert.ok(f.check(first).ok && f.check(first).seq === 0);
  victim.child.kill('SIGKILL');
  // From here the event loop does not run: the child is not reaped.
  spinUntil(() => zombie(victim.child.pid), 5000, 'the killed child becomes a zombie');
  const t0 = performance.now();
  let result;
  try {
    result = rx.receive(3000);
  } catch (err) {
    result = err.code;
  }
  const ms = elapsed(t0);
  assert.ok(zombie(victim.child.pid), 'the child was reaped during the receive');
  await victim.done;
  assert.equal(result, null, 'the half-written message is not delivered and the stream ends');
  assert.equal(rx.endReason, 'producer-died');
  assert.ok(ms < 2000, `the end took ${Math.round(ms)} ms`);
  rx.close();
});

// ------------------------------------------------------------------------------------- 6. too large

test('a message larger than maxMessageSize (and than the lane) is ERR_OUT_OF_RANGE at once from send, sendMany, trySend, trySendMany, sendAsync, sendManyAsync, writable() and commit(), even with the lane full', async (t) => {
  const opts = { laneSize: 4096, maxMessageSize: 100, maxProducers: 3, maxConsumers: 1 };
  const { shm, canaryIntact } = channelMemory(t, opts);
  const rx = Channel.create(shm, opts);
  const p = Channel.open(shm);
  const small = Buffer.alloc(100, 1);
  while (p.trySend(small));
  const queued = rx.size;
  const producers = () => Channel.inspect(shm).producers.length;
  // The lane is full: a call that waited for room before it looked at the size would end in
  // ERR_MMAP_CHANNEL_TIMEOUT after 3 s (calls without a timeout are raced against 2 s).
  const atOnce = async (what, fn) => {
    const t0 = performance.now();
    const outcome = await Promise.race([
      (async () => fn())().then(() => 'accepted', (err) => err),
      sleep(2000).then(() => 'still waiting after 2 s'),
    ]);
    assert.ok(outcome instanceof Error, `${what}: ${outcome}`);
    assert.equal(outcome.code, 'ERR_OUT_OF_RANGE', `${what}: ${outcome.code}: ${outcome.message}`);
    assert.equal(outcome.name, 'RangeError');
    assert.ok(elapsed(t0) < 1000, `${what}: the error took ${Math.round(elapsed(t0))} ms`);
  };
  for (const size of [101, 4096, 4097, 1 << 20, 16 << 20]) {
    const big = Buffer.alloc(size, 2);
    await atOnce(`send ${size}`, () => p.send(big, 3000));
    await atOnce(`trySend ${size}`, () => p.trySend(big));
    await atOnce(`sendMany [small, ${size}]`, () => p.sendMany([small, big], 3000));
    await atOnce(`trySendMany [${size}]`, () => p.trySendMany([big]));
    await atOnce(`sendAsync ${size}`, () => p.sendAsync(big, { timeout: 3000 }));
    await atOnce(`sendAsync ${size}, no timeout`, () => p.sendAsync(big));
    await atOnce(`sendManyAsync [small, ${size}], no timeout`, () => p.sendManyAsync([small, big]));
    const text = 'é'.repeat(Math.ceil(size / 2)); // UTF-8: 2 bytes a character
    await atOnce(`send of ${size} bytes as a string`, () => p.send(text, 3000));
    // A handle that is not a producer yet does not become one.
    const fresh = Channel.open(shm);
    const before = producers();
    await atOnce(`first send ${size} of a new handle`, () => fresh.send(big, 3000));
    assert.equal(producers(), before, 'a refused message made the handle a producer');
    fresh.close();
    // writable(): the pipeline fails, without waiting for room (it would wait forever).
    const w = Channel.open(shm);
    const t0 = performance.now();
    const settled = await Promise.race([pipeline(Readable.from([big]), w.writable({ close: false })).then(() => 'finished', (err) => err.code), sleep(2000).then(() => 'still waiting')]);
    assert.equal(settled, 'ERR_OUT_OF_RANGE', `writable(), ${size} bytes`);
    assert.ok(elapsed(t0) < 1000);
    w.close();
  }
  assert.equal(rx.size, queued, 'a batch with a message too large sent part of itself');
  // commit() of more than maxMessageSize; exactly maxMessageSize goes.
  const q = Channel.open(shm);
  const r = q.reserve(0);
  assert.equal(r.buffer.length, 100);
  throwsCode(() => r.commit(101), 'ERR_OUT_OF_RANGE', 'RangeError');
  r.commit(100);
  assert.equal(q.trySend(Buffer.alloc(100, 3)), true);
  q.close();
  p.close();
  const got = { small: 0, committed: 0, last: 0 };
  for (let m; (m = rx.receive(0)) !== null;) {
    assert.equal(m.length, 100);
    if (m.equals(small)) got.small++;
    else if (m.equals(Buffer.alloc(100, 3))) got.last++;
    else got.committed++;
  }
  assert.deepEqual(got, { small: queued, committed: 1, last: 1 });
  assert.ok(canaryIntact());
  rx.close();
});

// ------------------------------------------------------------------------------------- 7. positions

test('positions moved far apart or behind: bounded answers (ERR_MMAP_CHANNEL_CORRUPT), nothing written outside, and the lane carries on', async (t) => {
  const opts = { laneSize: 4096, maxMessageSize: 100, maxProducers: 1, maxConsumers: 1 };
  const { shm, len, canaryIntact } = channelMemory(t, opts);
  const i32 = wordsOf(shm);
  const f = fmt(SMALL);
  // Positions outside what a lane can hold (or not multiples of 8): the first receive must say so.
  const corrupt = {
    'WRITE far ahead': (w, r) => ['W', w + 8000],
    'WRITE behind READ': (w, r) => ['W', r - 8],
    'READ ahead of WRITE': (w, r) => ['R', w + 64],
    'READ far behind': (w, r) => ['R', w - 2 * 4096],
    'READ one lane behind and 8 more': (w, r) => ['R', w - 4096 - 8],
    'READ not a multiple of 8': (w, r) => ['R', r + 4],
    'WRITE not a multiple of 8': (w, r) => ['W', w + 3],
    'WRITE INT32_MAX': () => ['W', INT32_MAX],
    'READ INT32_MIN': () => ['R', INT32_MIN],
    'WRITE INT32_MIN, READ INT32_MAX': () => ['WR', INT32_MIN, INT32_MAX],
  };
  // Positions a lane could hold, pointing at stale bytes: anything may come, but only what a producer sent.
  const stale = {
    'READ 8 behind': (w, r) => ['R', r - 8],
    'READ a whole lane behind': (w, r) => ['R', w - 4096],
    'WRITE 64 ahead': (w, r) => ['W', w + 64],
    'WRITE a lane ahead of READ': (w, r) => ['W', r + 4096],
  };
  const report = {};
  let seq = 0;
  for (const [what, damage] of Object.entries({ ...corrupt, ...stale })) {
    const strict = what in corrupt;
    const creator = Channel.create(shm, opts);
    const g = geometryOf(shm.buffer);
    // Stale bytes in the ring are random, as after a long life (zeros read as valid empty records).
    randomFillSync(shm.buffer, g.ringsOffset, len - g.ringsOffset);
    const p = Channel.open(shm);
    const c = Channel.open(shm);
    for (let i = 0; i < 5; i++) p.send(f.encode(0, seq++));
    c.receive(0);
    c.receive(0);
    const W = laneWord(g, 0, CHANNEL.LANE_WRITE);
    const R = laneWord(g, 0, CHANNEL.LANE_READ);
    const [which, a, b] = damage(i32[W], i32[R]);
    if (which === 'W') i32[W] = a | 0;
    else if (which === 'R') i32[R] = a | 0;
    else [i32[W], i32[R]] = [a, b];
    const outcomes = [];
    const ops = [
      () => c.receive(30), () => c.tryReceive(), () => c.receiveMany(4, 30), () => c.receiveInPlace(30),
      () => c.drain(() => {}, 4, 30), () => c.receiveInto(Buffer.alloc(400), new Uint32Array(4), 30),
      () => c.receiveAsync({ timeout: 30 }), () => c.size, () => Channel.inspect(shm).producers[0].queuedBytes,
      () => p.trySend(f.encode(0, seq++)), () => p.send(f.encode(0, seq++), 30), () => p.sendMany([f.encode(0, seq++)], 30),
      () => p.sendAsync(f.encode(0, seq++), { timeout: 30 }), () => { const r = p.reserve(30); r.commit(f.encodeInto(r.buffer, 0, seq++)); },
    ];
    for (const [k, op] of ops.entries()) {
      const t0 = performance.now();
      let outcome;
      try {
        const v = await op();
        outcome = 'ok';
        const got = v === null || v === undefined || typeof v !== 'object' ? [] : Buffer.isBuffer(v) ? [v] : Array.isArray(v) ? v : 'data' in v ? [v.data] : [];
        for (const m of got) assert.ok(f.check(m).ok, `${what}: delivered a message no producer sent (${m.length} bytes)`);
        if (typeof v === 'object' && v !== null && 'release' in v) v.release();
        if (typeof v === 'number') assert.ok(v >= 0 && v <= 4096, `${what}: ${v}`);
      } catch (err) {
        outcome = err.code;
        assert.ok(['ERR_MMAP_CHANNEL_CORRUPT', 'ERR_MMAP_CHANNEL_TIMEOUT'].includes(err.code), `${what}: op ${k}: ${err.stack}`);
      }
      if (strict && k === 0) assert.equal(outcome, 'ERR_MMAP_CHANNEL_CORRUPT', `${what}: the first receive`);
      assert.ok(elapsed(t0) < 1000, `${what}: op ${k} took ${Math.round(elapsed(t0))} ms`);
      outcomes.push(outcome === 'ERR_MMAP_CHANNEL_CORRUPT' ? 'C' : outcome === 'ERR_MMAP_CHANNEL_TIMEOUT' ? 'T' : '.');
    }
    // The lane carries on: within a few tries a new message goes through.
    let through = false;
    for (let k = 0; k < 4 && !through; k++) {
      try {
        const m = f.encode(0, seq++);
        p.trySend(m);
        let got;
        while ((got = c.tryReceive()) !== undefined && got !== null) {
          assert.ok(f.check(got).ok, `${what}: delivered a message no producer sent`);
          if (got.equals(m)) through = true;
        }
      } catch (err) {
        assert.equal(err.code, 'ERR_MMAP_CHANNEL_CORRUPT', `${what}: ${err.stack}`);
      }
    }
    assert.ok(through, `${what}: the lane does not carry messages any more`);
    report[what] = outcomes.join('');
    for (const h of [p, c, creator]) h.close();
    assert.ok(canaryIntact(), `${what}: a byte after the channel was written`);
  }
  t.diagnostic(`outcomes (C corrupt, T timeout, . ok): ${JSON.stringify(report)}`);
});

test('a lane whose WRITE position a peer moved ahead carries on once a consumer has reported it: its producer is not wedged for good', async (t) => {
  const opts = { laneSize: 4096, maxMessageSize: 100, maxProducers: 1, maxConsumers: 1 };
  const { shm, len, canaryIntact } = channelMemory(t, opts);
  const i32 = wordsOf(shm);
  const f = fmt(SMALL);
  let seq = 0;
  for (const ahead of [64, 1024, 4096]) {
    const creator = Channel.create(shm, opts);
    const g = geometryOf(shm.buffer);
    randomFillSync(shm.buffer, g.ringsOffset, len - g.ringsOffset); // stale bytes, as after a long life
    const p = Channel.open(shm);
    const c = Channel.open(shm);
    const big = () => { const m = Buffer.alloc(100); f.encodeInto(m, 0, seq++); return m; };
    while (p.trySend(big())); // full: the producer's cached READ says so
    while (c.tryReceive() !== undefined); // a consumer takes everything
    i32[laneWord(g, 0, CHANNEL.LANE_WRITE)] += ahead;
    throwsCode(() => { while (c.tryReceive() !== undefined); }, 'ERR_MMAP_CHANNEL_CORRUPT', 'MmapkitError');
    // The garbage was reported; from here on the lane must carry messages again, within a few tries.
    const outcomes = [];
    let through = false;
    for (let k = 0; k < 5 && !through; k++) {
      // Exactly the encoded message (its length comes from the format), not the whole buffer.
      const whole = Buffer.alloc(100);
      const m = whole.subarray(0, f.encodeInto(whole, 0, seq++));
      try {
        p.send(m, 50);
        outcomes.push('sent');
      } catch (err) {
        outcomes.push(err.code);
        assert.ok(['ERR_MMAP_CHANNEL_CORRUPT', 'ERR_MMAP_CHANNEL_TIMEOUT'].includes(err.code), err.stack);
      }
      try {
        for (let got; (got = c.tryReceive()) !== undefined;) {
          assert.ok(f.check(got).ok, 'a message no producer sent');
          if (got.equals(m)) through = true;
        }
      } catch (err) {
        assert.equal(err.code, 'ERR_MMAP_CHANNEL_CORRUPT', err.stack);
      }
    }
    assert.ok(through, `WRITE moved ${ahead} bytes ahead: the producer's sends were ${outcomes.join(', ')}; the lane never carries a message again`);
    assert.ok(canaryIntact());
    for (const h of [p, c, creator]) h.close();
  }
});

test('a producer whose READ position was corrupted gets ERR_MMAP_CHANNEL_CORRUPT rather than overwriting unread messages; a producer that takes over a lane with garbage positions starts clean', async (t) => {
  const opts = { laneSize: 4096, maxMessageSize: 100, maxProducers: 1, maxConsumers: 1 };
  const { shm, canaryIntact } = channelMemory(t, opts);
  const i32 = wordsOf(shm);
  const f = fmt(SMALL);
  let seq = 0;
  for (const [what, bad] of [['ahead of WRITE', (w) => w + 512], ['far behind', (w) => w - 3 * 4096], ['not a multiple of 8', (w, r) => r + 4], ['INT32_MIN', () => INT32_MIN]]) {
    const creator = Channel.create(shm, opts);
    const g = geometryOf(shm.buffer);
    const p = Channel.open(shm);
    const c = Channel.open(shm);
    const first = seq;
    while (p.trySend(f.encode(0, seq))) seq++; // full: every byte of the ring holds unread messages
    const ring = Buffer.from(shm.buffer.subarray(ringOf(g, 0), ringOf(g, 0) + g.laneSize));
    const R = laneWord(g, 0, CHANNEL.LANE_READ);
    const read = i32[R];
    i32[R] = bad(i32[laneWord(g, 0, CHANNEL.LANE_WRITE)], read) | 0;
    for (const [name, op] of [
      ['trySend', () => p.trySend(f.encode(0, seq))], ['send', () => p.send(f.encode(0, seq), 50)],
      ['sendMany', () => p.sendMany([f.encode(0, seq)], 50)], ['trySendMany', () => p.trySendMany([f.encode(0, seq)])],
      ['reserve', () => p.reserve(50)], ['sendAsync', () => p.sendAsync(f.encode(0, seq), { timeout: 50 })],
    ]) {
      await assert.rejects(async () => op(), (err) => {
        assert.equal(err.code, 'ERR_MMAP_CHANNEL_CORRUPT', `READ ${what}: ${name}: ${err.code}: ${err.message}`);
        return true;
      }, `READ ${what}: ${name} went ahead`);
    }
    assert.ok(ring.equals(shm.buffer.subarray(ringOf(g, 0), ringOf(g, 0) + g.laneSize)), `READ ${what}: unread messages were overwritten`);
    // With the position put back, every unread message is there, intact.
    i32[R] = read;
    for (let s = first; s < seq; s++) {
      const c0 = f.check(c.receive(0));
      assert.ok(c0.ok && c0.seq === s, `READ ${what}: message ${s}: ${c0.why}`);
    }
    assert.ok(canaryIntact());
    for (const h of [p, c, creator]) h.close();
  }
  // A producer that closed; its lane's positions turn to garbage; the next producer takes the lane over.
  for (const [what, damage] of [['WRITE INT32_MAX', (W) => (i32[W] = INT32_MAX)], ['WRITE not a multiple of 8', (W) => (i32[W] += 5)], ['WRITE behind READ', (W) => (i32[W] -= 4096)]]) {
    const creator = Channel.create(shm, opts);
    const g = geometryOf(shm.buffer);
    const p = Channel.open(shm);
    const c = Channel.open(shm);
    p.send(f.encode(0, seq++));
    c.receive(0);
    p.close();
    damage(laneWord(g, 0, CHANNEL.LANE_WRITE));
    const p2 = Channel.open(shm);
    const m = f.encode(0, seq++);
    p2.send(m, 100);
    assert.equal(p2.lane, 0);
    let got;
    for (let k = 0; k < 3 && got === undefined; k++) {
      try {
        got = c.receive(100);
      } catch (err) {
        assert.equal(err.code, 'ERR_MMAP_CHANNEL_CORRUPT', `${what}: ${err.stack}`);
      }
    }
    assert.deepEqual(got, m, `${what}: the new producer's message`);
    assert.ok(canaryIntact());
    for (const h of [p2, c, creator]) h.close();
  }
});
