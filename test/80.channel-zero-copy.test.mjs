// Channel zero copy: reserve()/commit() write a record in the lane and receiveInPlace()/release()
// read it there; a message in place holds its lane (other consumers take other lanes; its producer
// cannot overwrite it) until release(); close() gives up an open reservation and releases a message in
// place; commit() after close(); memory and speed of a long in-place loop; and, as a todo test, the
// view left after release().
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Channel, CHANNEL, SharedMemory } from '../dist/index.js';
import { tempDir, throwsCode } from './helpers.mjs';
import { anon, elapsed, fill, laneWord, recordOf, test, words } from './channel-helpers.mjs';

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

// ------------------------------------------------------------------------------------------ regressions
// Bugs found earlier, one test each; the first is a todo test (reported, not failing the run) of a
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
