// Channel stress: 4 producer processes and 2 consumer processes move 4,000,000 messages of random
// sizes (seeded) through one channel (a lane per producer, consumers locking lanes per poll); every
// (producer, seq) must arrive exactly once, intact, and in increasing order per producer at each
// consumer. Each consumer switches between receive methods call by call (seeded): drain, in place and
// receiveMany in one, receiveInto, receive and drain in the other.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Channel, SharedMemory } from '../dist/index.js';
import { startNode } from './helpers.mjs';

const CHILD = new URL('./fixtures/channel-child.mjs', import.meta.url).pathname;

const PRODUCERS = 4;
const CONSUMERS = 2;
const PER_PRODUCER = 1_000_000;
const SEED = 4_000_004;
const MAX_PAYLOAD = 500; // + 12 bytes of header: messages of 13..512 bytes
// Lanes of 1 MiB (at least 1024 messages of 512 bytes each); lanes for the 4 producers and the holder.
const OPTS = { capacity: 1024, maxMessageSize: 512, maxProducers: 8 };
const WAIT = JSON.stringify({ wait: 'block' });
// How each producer sends and each consumer receives (copying and zero-copy paths both under load).
const SEND = ['send', 'reserve', 'sendMany', 'sendAsync'];
const RECEIVE = ['drain+inplace+receiveMany', 'receiveInto+receive+drain'];
const CHILD_TIMEOUT = 240_000;

const running = new Set();

/** Start a child (the tests' harness, startProc); if any child fails, the others are killed at once (so a failure is quick). */
const start = (t, args, spawnOptions) => startNode([CHILD, ...args], `${args[0]} ${args[3]}`, { t, timeout: CHILD_TIMEOUT, spawnOptions, group: running });

const popcount8 = new Uint8Array(256).map((_, i) => (i.toString(2).match(/1/g) ?? []).length);

test(`stress: ${PRODUCERS} producer and ${CONSUMERS} consumer processes move ${PRODUCERS * PER_PRODUCER} messages of 13..512 bytes; none lost, duplicated, corrupted or out of order`, { timeout: 300_000 }, async (t) => {
  const channelShm = SharedMemory.anonymous(Channel.byteLength(OPTS));
  const perProducer = Math.ceil(PER_PRODUCER / 8);
  const results = SharedMemory.anonymous(CONSUMERS * PRODUCERS * perProducer);
  t.after(() => {
    channelShm.close();
    results.close();
  });
  Channel.create(channelShm, OPTS).close();
  // This handle is a producer from the start (one sentinel message) and closes only after every
  // producer process has finished: so no consumer can see the end of the stream too early, even if
  // one producer finished before another had started.
  const holder = Channel.open(channelShm);
  holder.send(Buffer.from([0xff, 0xff, 0xff, 0xff]));
  const spawnOptions = () => results.childOptions(channelShm.childOptions({ stdio: ['ignore', 'pipe', 'pipe'] }, 'ch'), 'results');
  const t0 = performance.now();
  const consumers = Array.from({ length: CONSUMERS }, (_, i) =>
    start(t, ['stress-consume', 'inherit:ch', WAIT, String(i), String(PRODUCERS), String(PER_PRODUCER), String(SEED), String(MAX_PAYLOAD), RECEIVE[i]], spawnOptions()));
  const producers = Array.from({ length: PRODUCERS }, (_, p) =>
    start(t, ['produce', 'inherit:ch', WAIT, String(p), String(PER_PRODUCER), String(SEED), String(MAX_PAYLOAD), SEND[p]], spawnOptions()));
  const sent = [];
  for (const k of producers) sent.push(await k.report());
  holder.close();
  const received = [];
  for (const k of consumers) received.push(await k.report());
  const seconds = (performance.now() - t0) / 1000;
  for (const s of sent) assert.equal(s.sent, PER_PRODUCER);
  assert.equal(received.reduce((n, r) => n + r.sentinels, 0), 1, 'the sentinel arrived once');

  // Every (producer, seq) exactly once across the consumers: the bitmaps are disjoint and complete.
  const bits = results.buffer;
  const area = (consumer, producer) => bits.subarray((consumer * PRODUCERS + producer) * perProducer, (consumer * PRODUCERS + producer + 1) * perProducer);
  const lastMask = PER_PRODUCER % 8 === 0 ? 0xff : (1 << (PER_PRODUCER % 8)) - 1;
  let total = 0;
  for (let p = 0; p < PRODUCERS; p++) {
    const maps = Array.from({ length: CONSUMERS }, (_, c) => area(c, p));
    for (let c = 0; c < CONSUMERS; c++) {
      let ones = 0;
      for (const byte of maps[c]) ones += popcount8[byte];
      assert.equal(ones, received[c].counts[p], `consumer ${c}, producer ${p}: bitmap and count agree`);
      total += ones;
    }
    for (let i = 0; i < perProducer; i++) {
      let union = 0;
      for (let c = 0; c < CONSUMERS; c++) {
        assert.equal(union & maps[c][i], 0, `producer ${p}: seq ${i * 8}..${i * 8 + 7} delivered twice`);
        union |= maps[c][i];
      }
      const want = i === perProducer - 1 ? lastMask : 0xff;
      if (union !== want) {
        const missing = [...Array(8).keys()].filter((b) => (want >> b) & 1 && !((union >> b) & 1)).map((b) => i * 8 + b);
        assert.fail(`producer ${p}: seq ${missing.join(', ')} never delivered`);
      }
    }
  }
  assert.equal(total, PRODUCERS * PER_PRODUCER);
  const split = received.map((r) => r.counts.reduce((a, b) => a + b, 0));
  t.diagnostic(`${total} messages in ${seconds.toFixed(1)} s (${Math.round(total / seconds)} messages/s); producers ${sent.map((s) => `${(s.ms / 1000).toFixed(1)} s`).join(', ')}; consumers took ${split.join(' + ')}`);
  t.diagnostic(`by method: ${received.map((r) => JSON.stringify(r.used)).join(', ')}`);
  // Every method of each consumer took messages (a consumer that got any took a good share: calls pick
  // a method at random, and each call takes at least one message).
  for (const [i, r] of received.entries()) {
    assert.deepEqual(Object.keys(r.used).sort(), RECEIVE[i].split('+').sort());
    const took = Object.values(r.used).reduce((a, b) => a + b, 0);
    assert.equal(took, split[i] + r.sentinels);
    if (took >= 1000) for (const [m, n] of Object.entries(r.used)) assert.ok(n > 0, `consumer ${i}: ${m} took no message`);
  }
});
