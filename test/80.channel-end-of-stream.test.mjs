// Channel end of stream: a consumer sees the end (null) only once every producer that attached has
// closed, exited or died (in 3 processes, and in one); attach('producer') before a first send; fan-in
// (issue 16): create({ producers }) waits for that many producers, and a producer that dies ends the
// stream with endReason 'producer-died', for every consumer; bad producers values. Regressions: a
// producer that closes without sending (an empty pipeline into writable()) still ends the stream, and
// a send() refused for a bad timeout makes no producer.
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Channel, CHANNEL, mapAnonymous } from '../dist/index.js';
import { throwsCode } from './helpers.mjs';
import { startChild as start } from './fixtures/channel-child.mjs';
import { anon, elapsed, rejectsCode, sleep, test } from './channel-helpers.mjs';

/** Start child `i` of a fan-in: it sends 'result i' on the inherited channel and ends by `end`. */
const fanInChild = (t, shm, i, end) => start(t, ['send-one', 'inherit:ch', String(i), end], shm.childOptions({ stdio: ['pipe', 'pipe', 'pipe'] }, 'ch'));

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

// ------------------------------------------------------------------------------------------ regressions
// Bugs found earlier, one test each.

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
