// Channel streams: readable() and writable() with pipeline() across processes, both ways (40 MiB here,
// 1500 random chunks there; checksums equal), backpressure (a slow consumer holds the producer's writes
// back, seen in shared memory), a chunk larger than maxMessageSize, and destroying a readable().
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Channel, CHANNEL, SharedMemory } from '../dist/index.js';
import { startChild as start, xorshift } from './fixtures/channel-child.mjs';
import { anon, elapsed, laneWord, recordOf, sleep, test, words } from './channel-helpers.mjs';

test('streams: 40 MiB through pipeline(writable()) in a child and pipeline(readable()) here, checksums equal', async (t) => {
  const opts = { capacity: 64, maxMessageSize: 65536 };
  const shm = anon(t, opts);
  const rx = Channel.create(shm, opts);
  const total = 40 * 1024 * 1024;
  const producer = start(t, ['stream-produce', 'inherit:ch', String(total), '77', '65536'], shm.childOptions({ stdio: ['pipe', 'pipe', 'pipe'] }, 'ch'));
  const hash = createHash('sha256');
  let bytes = 0;
  let chunks = 0;
  const t0 = performance.now();
  await pipeline(rx.readable(), new Writable({
    write(chunk, _e, cb) {
      hash.update(chunk);
      bytes += chunk.length;
      chunks++;
      cb();
    },
  }));
  const sent = await producer.result();
  t.diagnostic(`${(bytes / 2 ** 20).toFixed(0)} MiB in ${chunks} messages in ${Math.round(elapsed(t0))} ms`);
  assert.equal(bytes, total);
  assert.equal(chunks, sent.chunks);
  assert.equal(hash.digest('hex'), sent.sha256);
  assert.equal(rx.ended, true);
  rx.close();
});

test('streams: the other way, pipeline(writable()) here and pipeline(readable()) in a child', async (t) => {
  const opts = { capacity: 32, maxMessageSize: 32768 };
  const shm = anon(t, opts);
  const tx = Channel.create(shm, opts);
  const consumer = start(t, ['stream-consume', 'inherit:ch'], shm.childOptions({ stdio: ['pipe', 'pipe', 'pipe'] }, 'ch'));
  const hash = createHash('sha256');
  const g = xorshift(3);
  let bytes = 0;
  async function* source() {
    for (let i = 0; i < 1500; i++) {
      const chunk = Buffer.allocUnsafe(1 + (g.next().value % 32768));
      for (let j = 0; j < chunk.length; j += 4096) chunk[j] = g.next().value & 0xff;
      chunk.writeUInt8(i & 0xff, chunk.length - 1);
      hash.update(chunk);
      bytes += chunk.length;
      yield chunk;
    }
  }
  await pipeline(Readable.from(source()), tx.writable());
  assert.equal(tx.closed, true, 'ending the writable closes the producer');
  assert.deepEqual(await consumer.result(), { bytes, sha256: hash.digest('hex') });
});

test('streams: backpressure: a slow consumer holds the producer writes back (seen in shared memory)', async (t) => {
  const opts = { capacity: 16, maxMessageSize: 1024 };
  const shm = anon(t, opts);
  const stats = SharedMemory.anonymous(4096);
  t.after(() => stats.close());
  const generated = new Int32Array(stats.buffer.buffer, stats.buffer.byteOffset, 16);
  const rx = Channel.create(shm, opts);
  // The lane holds 31 messages of 1 KiB (records of 1032 bytes in 32 KiB): at least the 16 asked.
  const full = Math.floor(rx.laneSize / recordOf(1024));
  assert.ok(full >= 16 && rx.capacity >= 16);
  const i32 = words(shm);
  const waiting = () => Atomics.load(i32, laneWord(shm, 0, CHANNEL.LANE_PRODUCER_WAITING));
  const count = 3000;
  const producer = start(t, ['bp-produce', 'inherit:ch', String(count)], stats.childOptions(shm.childOptions({ stdio: ['pipe', 'pipe', 'pipe'] }, 'ch'), 'stats'));
  // Read nothing for a while: the producer fills its lane and then sleeps.
  const deadline = performance.now() + 20_000;
  while ((rx.size < full || waiting() !== 1) && performance.now() < deadline) await sleep(10);
  await sleep(500);
  const ahead = Atomics.load(generated, 0);
  t.diagnostic(`with nobody reading: ${ahead} of ${count} chunks generated, ${rx.size} in the lane, producer waiting: ${waiting()}`);
  assert.equal(rx.size, full, 'the lane is full');
  assert.ok(ahead < full + 64, `the source ran ${ahead} chunks ahead: writes did not wait`);
  assert.equal(waiting(), 1, 'the producer sleeps in sendAsync');
  // A slow reader through readable(): the producer stays a bounded distance ahead all the way.
  let seq = 0;
  let maxAhead = 0;
  let reads = 0;
  for await (const chunk of rx.readable({ highWaterMark: 2 })) { // object mode: 2 messages
    // (one chunk per message now; the split below still checks every record)
    assert.equal(chunk.length % 1024, 0);
    for (let at = 0; at < chunk.length; at += 1024) {
      const record = chunk.subarray(at, at + 1024);
      assert.equal(record.readUInt32LE(0), seq, 'in order, none lost');
      assert.ok(record.subarray(4).every((b) => b === (seq & 0xff)));
      seq++;
    }
    maxAhead = Math.max(maxAhead, Atomics.load(generated, 0) - seq);
    if (++reads % 20 === 0) await sleep(5); // slow
  }
  assert.equal(seq, count);
  assert.ok(maxAhead < full + 64 + 4, `producer ran ${maxAhead} ahead of the reader`);
  await producer.result();
  rx.close();
});

test('streams: a chunk larger than maxMessageSize fails the pipeline with ERR_OUT_OF_RANGE', async (t) => {
  const opts = { capacity: 4, maxMessageSize: 10 };
  const shm = anon(t, opts);
  const tx = Channel.create(shm, opts);
  const t0 = performance.now();
  await assert.rejects(pipeline(Readable.from([Buffer.alloc(10), Buffer.alloc(11)]), tx.writable()), { code: 'ERR_OUT_OF_RANGE' });
  assert.ok(elapsed(t0) < 1000);
  const rx = Channel.open(shm);
  assert.deepEqual(rx.receive(0), Buffer.alloc(10));
  assert.equal(rx.tryReceive(), undefined);
  tx.close();
  rx.close();
});

// ------------------------------------------------------------------------------------------ regressions
// Bugs found earlier, one test each.

test('destroying a readable() does not take (and lose) the next message', async (t) => {
  const opts = { capacity: 4, maxMessageSize: 16 };
  const shm = anon(t, opts);
  const tx = Channel.create(shm, opts);
  const a = Channel.open(shm);
  const b = Channel.open(shm);
  tx.attach('producer');
  const rs = a.readable();
  rs.on('data', () => {});
  await sleep(50); // its pump now waits in receiveAsync
  rs.destroy();
  await sleep(50);
  tx.send('after destroy');
  await sleep(50);
  assert.deepEqual(b.tryReceive(), Buffer.from('after destroy'), 'the message is gone');
  for (const h of [tx, a, b]) h.close();
});
