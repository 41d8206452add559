// Channel basics (issue 4; layout version 3 of issue 10: one lane per producer): a channel on every kind
// of target in one process (a file, named shared memory, a Mapping, at 128-byte aligned offsets inside a
// file; unaligned ones refused), the message types (strings, Buffers, TypedArrays, DataViews), empty
// (undefined) and full (trySend false exactly when the room rule of docs/channel-layout.md says so,
// checked against a model of a lane), the lane sizes that capacity and maxMessageSize give, null at the
// end; and across processes, a child that opens the channel by file, name or inherited memory and echoes
// strings and binary (send/receive, the async forms, zero copy). The other test/80.channel-*.test.mjs
// files: batches, waiting, end of stream, create() over a live channel, zero copy, streams, errors,
// header checks. Garbage from a peer and parties killed mid-message: test/83; receiveInto and drain:
// test/84; inspect() and the lane options: test/85.
import assert from 'node:assert/strict';
import { existsSync, statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { Channel, CHANNEL, map } from '../dist/index.js';
import { shmName, tempDir, throwsCode } from './helpers.mjs';
import { startChild as start, xorshift } from './fixtures/channel-child.mjs';
import { anon, bytesOf, echoThroughChild, fill, recordOf, test, uniq } from './channel-helpers.mjs';

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

// ------------------------------------------------------------------------------------------ one process

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

// ------------------------------------------------------------------------------------------ targets

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

// ------------------------------------------------------------------------------------------ across processes

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
