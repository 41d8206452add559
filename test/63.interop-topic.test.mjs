// Interop of Topic (layout version 1) with a real C program: test/fixtures/topic-subscriber.c, compiled here
// with cc, knows nothing of mmapkit but docs/topic-layout.md. Node creates a topic in named POSIX shared
// memory; the C subscriber opens it with shm_open + mmap (MAP_SHARED, between two PROT_NONE guard pages),
// checks the header, attaches under the publish lock (taking it over from a dead holder), reads with its own
// cursor (the INTENT check, lapping to HEAD and counting what it missed by RECORD_SEQ), sleeps on NOT_EMPTY,
// wakes 'block' publishers waiting for room, and finds the end of the stream (closed or publisher-died). If
// these tests pass, docs/topic-layout.md is the whole contract for a subscriber.
//
// Messages are made from their sequence number and a seed by the same function here and in the C subscriber
// (makeMessage / msg_make): u32 index | u32 FNV-1a of the body | body, sizes 0..maxMessageSize, so every
// subscriber checks every message it gets, byte for byte. Every child process has a timeout (SIGKILL), every
// wait here has one, and every wait in the C subscriber too (exit 3).
// MMAPKIT_TOPIC_SUBSCRIBER_C=path runs the tests against another copy of the C subscriber.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { SharedMemory, TOPIC, Topic } from '../dist/index.js';
import { assertKilled, buildPeer, shmName as sharedName, assertOk as assertStdout, have, startProc, throwsCode, until, xorshift32 } from './helpers.mjs';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');
const SUBSCRIBER_C = process.env.MMAPKIT_TOPIC_SUBSCRIBER_C ?? join(FIXTURES, 'topic-subscriber.c');
const DIST = new URL('../dist/index.js', import.meta.url).href;

const PEER_TIMEOUT_MS = 200_000; // kill a child (SIGKILL) that runs longer than this
const WAIT_MS = 20_000; // any single wait in these tests (the C subscriber gives up after 20 s too)
const TEST_TIMEOUT_MS = 280_000;
const MAX_MESSAGE = 1001; // not a multiple of 8: records of align8(16 + n) bytes
const SEED = 0x2545f491;

const HAVE_CC = have('cc');

// ---------------------------------------------------------------------------------------------
// docs/topic-layout.md, computed here on its own (not with the library's layout module).

const align8 = (n) => Math.ceil(n / 8) * 8;
const align128 = (n) => Math.ceil(n / 128) * 128;
/** recordSize(n) = (16 + n + 7) & ~7 */
const recordSize = (n) => align8(16 + n);
const nextPow2 = (n) => 2 ** Math.ceil(Math.log2(n));

/** The offsets of the doc's tables, by their TOPIC names. */
const DOC_OFFSETS = Object.freeze({
  MAGIC: 0, VERSION: 4, HEADER_SIZE: 6, TOTAL_SIZE: 8, FLAGS: 12, CAPACITY: 16, MAX_MESSAGE: 20, POLICY: 24, MAX_PUBLISHERS: 28,
  MAX_SUBSCRIBERS: 32, PUBLISHERS_OFFSET: 36, SUBSCRIBERS_OFFSET: 40, RING_OFFSET: 44, EXPECTED_PUBLISHERS: 48, PUBLISHER_COUNT: 52,
  CREATOR: 56, JOINS: 60, INSTANCE: 64, TAIL: 128, INTENT: 136, HEAD: 144, NEXT_SEQ: 152, LOCK: 160, LOCK_WAITERS: 164, WRITER: 168, NOT_EMPTY: 256,
  SUBSCRIBER_SLEEPERS: 260, NOT_FULL: 264, PUBLISHER_WAITING: 268, PUBLISHER_PID: 0, PUBLISHER_STATE: 4, PUBLISHER_ENTRY: 16,
  SUBSCRIBER_CURSOR: 0, SUBSCRIBER_PID: 8, SUBSCRIBER_ENTRY: 128, RECORD_LENGTH: 0, RECORD_RESERVED: 4, RECORD_SEQ: 8,
});

/** The header table's formulas for create() options (capacity rounded up to a power of two, as the API says). */
function docGeometry({ capacity = 1 << 20, maxMessageSize = 4096, maxPublishers = 16, maxSubscribers = 64, policy = 'block', publishers = 0 }) {
  const cap = Math.max(4096, nextPow2(capacity), nextPow2(2 * recordSize(maxMessageSize)));
  const publishersOffset = 384;
  const subscribersOffset = align128(384 + 16 * maxPublishers);
  const ringOffset = subscribersOffset + 128 * maxSubscribers;
  return { capacity: cap, maxMessageSize, policy, maxPublishers, maxSubscribers, publishersOffset, subscribersOffset, ringOffset, totalSize: ringOffset + cap, publishers };
}

/**
 * Where the records of messages 0..n-1 (of these lengths) lie after they were published one by one into an
 * empty ring ("Records", "Publishing" step 4): TAIL, HEAD (the first record or PAD boundary at or after
 * TAIL - CAPACITY) and the RECORD_SEQ there (a PAD carries the number of the record after it).
 */
function docRing(lengths, capacity) {
  const bounds = []; // [position, sequence number]
  let tail = 0;
  lengths.forEach((len, i) => {
    const size = recordSize(len);
    const off = tail % capacity;
    if (off + size > capacity) {
      bounds.push([tail, i]); // PAD
      tail += capacity - off;
    }
    bounds.push([tail, i]);
    tail += size;
  });
  const at = bounds.find(([pos]) => pos >= tail - capacity);
  return at === undefined ? { tail, head: tail, headSeq: lengths.length } : { tail, head: at[0], headSeq: at[1] };
}

// ---------------------------------------------------------------------------------------------
// Messages: the same function as msg_make in topic-subscriber.c. Message i (its sequence number):
// x = xorshift32(((i * 0x9e3779b9) ^ seed) | 1); length: every 8th maxMessageSize, every 8th 0..7, the others
// 0..maxMessageSize; body bytes from the next xorshift32 values (little-endian); then u32 i | u32 FNV-1a(body)
// in front, of which a message shorter than 8 bytes keeps what fits. Declarations without outside
// references (xorshift32 from helpers.mjs too): NODE_CHILD embeds their source.

function fnv1a(buf, from, to) {
  let h = 0x811c9dc5;
  for (let i = from; i < to; i++) h = Math.imul(h ^ buf[i], 0x01000193) >>> 0;
  return h;
}

function makeMessage(seed, i, max) {
  let x = xorshift32(((Math.imul(i, 0x9e3779b9) ^ seed) | 1) >>> 0);
  const len = (x & 7) === 0 ? max : (x & 7) === 1 ? (x >>> 3) % 8 : (x >>> 3) % (max + 1);
  const b = Buffer.alloc(Math.max(len, 8));
  for (let j = 8; j < len; j += 4) {
    x = xorshift32(x);
    for (let k = 0; k < 4 && j + k < len; k++) b[j + k] = (x >>> (8 * k)) & 0xff;
  }
  b.writeUInt32LE(i >>> 0, 0);
  b.writeUInt32LE(fnv1a(b, 8, Math.max(len, 8)), 4);
  return b.subarray(0, len);
}

const MESSAGE_CODE = [xorshift32, fnv1a, makeMessage].map(String).join('\n');

// ---------------------------------------------------------------------------------------------
// Node parties in their own processes (argv: mode, shm name, seed, then the mode's arguments).
//
//   publish <name> <seed> <n> <json>: open the topic, attach ("attached pid=<pid>"), publish messages 0..n-1
//     (publish, publishAsync, publishMany of 5, publishManyAsync of 5, reserve() + commit(), tryPublish then
//     publish, in turn), close, print "ok published=<n> full=<tryPublish found no room>". Options (json):
//       forever: publish past n until killed; progress: print "published <i>" every that many messages;
//       paceFor: pid of a subscriber never to get more than half a ring ahead of (by its cursor, as
//         Topic.inspect reports it): an 'overwrite' topic's fast subscriber is then never lapped;
//       dieReserving: after n messages, reserve() room, write half of message n, print "reserved n=<n>"
//         and wait to be killed with the publish lock held;
//       timeout: the publish timeout (default WAIT_MS).
//   subscribe <name> <seed> <json>: subscribe ({ from, lapped: 'error' }: a lap fails it), print "attached
//     seq=<sequence>", receive until the end of the stream (receive, receiveMany, receiveInto, drain,
//     receiveAsync, receiveManyAsync, in turn), check each message against its sequence number, close and
//     print "ok received=<n> missed=<m> checksum_errors=<k> bad=<b> first=<seq> last=<seq> endReason=<reason>".
const NODE_CHILD = `
import { Topic } from ${JSON.stringify(DIST)};
import { setTimeout as sleep } from 'node:timers/promises';
${MESSAGE_CODE}
const [mode, name, seedArg, ...args] = process.argv.slice(1);
const seed = Number(seedArg);
const fail = (msg) => { console.error('node ' + mode + ': ' + msg); process.exit(1); };
if (mode === 'publish') {
  const n = Number(args[0]);
  const o = JSON.parse(args[1] ?? '{}');
  const timeout = o.timeout ?? ${WAIT_MS};
  const topic = Topic.open({ name });
  topic.attach();
  console.log('attached pid=' + process.pid);
  const max = topic.maxMessageSize;
  const cap = topic.capacity;
  const total = o.forever ? Infinity : n;
  let i = 0;
  let full = 0;
  let report = o.progress ?? Infinity;
  const pace = async () => {
    const deadline = Date.now() + ${WAIT_MS};
    for (;;) {
      const info = Topic.inspect({ name });
      const s = info.subscribers.find((s) => s.pid === o.paceFor);
      if (s === undefined) fail('the subscriber to pace for (' + o.paceFor + ') is gone');
      if (info.positions.tail - s.cursor <= cap / 2) return;
      if (Date.now() > deadline) fail('the subscriber to pace for does not move');
      await sleep(1);
    }
  };
  const some = () => {
    const batch = [];
    while (batch.length < 5 && i < total) batch.push(makeMessage(seed, i++, max));
    return batch;
  };
  for (let k = 0; i < total; k++) {
    if (o.paceFor !== undefined) await pace();
    switch (k % 6) {
      case 0: topic.publish(makeMessage(seed, i++, max), timeout); break;
      case 1: await topic.publishAsync(makeMessage(seed, i++, max), timeout); break;
      case 2: topic.publishMany(some(), timeout); break;
      case 3: await topic.publishManyAsync(some(), timeout); break;
      case 4: {
        const m = makeMessage(seed, i++, max);
        const r = topic.reserve(undefined, timeout);
        m.copy(r.buffer);
        r.commit(m.length);
        break;
      }
      default: {
        const m = makeMessage(seed, i++, max);
        if (!topic.tryPublish(m)) {
          full++;
          topic.publish(m, timeout);
        }
      }
    }
    if (i >= report) {
      console.log('published ' + i);
      report += o.progress;
      await sleep(0);
    }
  }
  if (o.dieReserving) {
    const m = makeMessage(seed, i, max);
    const r = topic.reserve(undefined, timeout);
    m.copy(r.buffer, 0, 0, m.length >> 1);
    console.log('reserved n=' + i);
    setTimeout(() => fail('was not killed'), 120_000);
  } else {
    topic.close();
    console.log('ok published=' + i + ' full=' + full);
  }
} else if (mode === 'subscribe') {
  const o = JSON.parse(args[0] ?? '{}');
  const topic = Topic.open({ name });
  const sub = topic.subscribe({ from: o.from ?? 'latest', lapped: 'error' });
  console.log('attached seq=' + sub.sequence);
  const max = topic.maxMessageSize;
  const target = Buffer.alloc(4 * max);
  const lengths = new Uint32Array(6);
  let received = 0, checksumErrors = 0, bad = 0, first = -1, last = -1;
  for (let k = 0; ; k++) {
    const seq = sub.sequence;
    let msgs;
    switch (k % 6) {
      case 0: { const m = sub.receive(${WAIT_MS}); msgs = m === null ? null : [m]; break; }
      case 1: msgs = sub.receiveMany(7, ${WAIT_MS}); break;
      case 2: {
        const got = sub.receiveInto(target, lengths, ${WAIT_MS});
        if (got === null) { msgs = null; break; }
        msgs = [];
        for (let j = 0, pos = 0; j < got; pos += lengths[j], j++) msgs.push(Buffer.from(target.subarray(pos, pos + lengths[j])));
        break;
      }
      case 3: {
        const out = [];
        const got = sub.drain((buf, off, len) => out.push(Buffer.from(buf.subarray(off, off + len))), 5, ${WAIT_MS});
        msgs = got === null ? null : out;
        break;
      }
      case 4: { const m = await sub.receiveAsync(${WAIT_MS}); msgs = m === null ? null : [m]; break; }
      default: msgs = await sub.receiveManyAsync(7, ${WAIT_MS});
    }
    if (msgs === null) break;
    if (sub.sequence !== seq + msgs.length) fail('sequence ' + sub.sequence + ' after ' + msgs.length + ' messages from ' + seq);
    msgs.forEach((m, j) => {
      if (m.length >= 8 && m.readUInt32LE(4) !== fnv1a(m, 8, m.length)) checksumErrors++;
      else if (!m.equals(makeMessage(seed, seq + j, max))) {
        if (bad++ < 5) console.error('node subscribe: message ' + (seq + j) + ' (' + m.length + ' bytes) is not the one published');
      }
      if (first < 0) first = seq + j;
      last = seq + j;
      received++;
    });
  }
  const line = 'ok received=' + received + ' missed=' + sub.missed + ' checksum_errors=' + checksumErrors + ' bad=' + bad + ' first=' + first + ' last=' + last + ' endReason=' + sub.endReason;
  topic.close();
  console.log(line);
} else {
  fail('unknown mode');
}
`;

/** key=value pairs of a line, as numbers where they are numbers. */
function fieldsOf(line) {
  const o = {};
  for (const [, k, v] of line.matchAll(/([A-Za-z_-]+)=(\S+)/g)) o[k] = /^-?\d+$/.test(v) ? Number(v) : v;
  return o;
}

/** The last line of stdout must match; returns its fields. */
function okFields(res, pattern = /^ok .*$/) {
  return fieldsOf(assertStdout(res, pattern, { lastLine: true })[0]);
}

/** Wait for a line of p's stdout matching pattern; returns its fields. */
async function line(p, pattern, ms = WAIT_MS) {
  let m = null;
  await until(() => (m = p.stdout().match(pattern)) !== null, [p], `${p.label} printing ${pattern}`, ms);
  return fieldsOf(m[0]);
}

/** p's result, failing (after killing it) if it has not exited within ms. */
async function exited(p, ms) {
  let timer;
  const late = new Promise((resolve) => (timer = setTimeout(resolve, ms, 'late')));
  const r = await Promise.race([p.done, late]);
  clearTimeout(timer);
  if (r === 'late') {
    p.kill();
    assert.fail(`${p.label} still running after ${ms} ms; stdout: ${p.stdout().slice(-500)} stderr: ${p.stderr()}`);
  }
  return r;
}

// ---------------------------------------------------------------------------------------------

describe('interop of Topic with a C subscriber', { skip: HAVE_CC ? false : 'cc not found' }, () => {
  let subBin;

  before(() => {
    subBin = buildPeer(SUBSCRIBER_C, 'topic-subscriber', { cflags: ['-I', FIXTURES], libs: ['-lrt'] });
  });

  /** A fresh shared memory name, POSIX style (unlinked when the test ends). */
  const shmName = (t) => `/${sharedName(t, '63')}`;

  /** A topic in fresh named shared memory; its handles and children go when the test ends. */
  function setup(t, options) {
    const name = shmName(t);
    const procs = [];
    const handles = [];
    t.after(async () => {
      for (const p of procs) p.kill();
      await Promise.all(procs.map((p) => p.done.catch(() => {})));
      for (const h of handles) h.close();
    });
    const topic = Topic.create({ name }, options);
    handles.push(topic);
    return {
      name,
      topic,
      /** The C subscriber on this topic. */
      sub(args = [], label = 'topic-subscriber') {
        const p = startProc([subBin, name, ...args], `${label} ${args.join(' ')}`.trim(), { timeout: PEER_TIMEOUT_MS });
        procs.push(p);
        return p;
      },
      /** A Node party in its own process (NODE_CHILD). */
      node(mode, ...args) {
        const p = startProc([process.execPath, '--input-type=module', '-e', NODE_CHILD, mode, name, SEED, ...args], `node ${mode}`, { timeout: PEER_TIMEOUT_MS });
        procs.push(p);
        return p;
      },
      inspect: () => Topic.inspect({ name }),
    };
  }

  // ------------------------------------------------------------------------------------- header

  test('the header is where docs/topic-layout.md says, with the geometry of its formulas, for mmapkit and the C subscriber', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    for (const [key, offset] of Object.entries(DOC_OFFSETS)) assert.equal(TOPIC[key], offset, `TOPIC.${key}`);
    // and the doc names every offset mmapkit has (HEADER_END, CONTROL_END and the entry and header sizes aside)
    const sizes = ['HEADER_END', 'CONTROL_END', 'PUBLISHER_ENTRY', 'SUBSCRIBER_ENTRY', 'RECORD_HEADER'];
    assert.deepEqual(Object.keys(TOPIC).filter((k) => !(k in DOC_OFFSETS) && !sizes.includes(k)), [], 'offsets the doc table does not name');
    const sets = [
      { capacity: 8192, maxMessageSize: MAX_MESSAGE, maxPublishers: 3, maxSubscribers: 5 },
      { capacity: 4096, maxMessageSize: 2032, maxPublishers: 9, maxSubscribers: 1, policy: 'overwrite', publishers: 2 }, // two records of 2048: exactly 4096
      { capacity: 20000, maxMessageSize: 5000, maxPublishers: 4096, maxSubscribers: 4096 }, // capacity rounded up to 32768
      {}, // the defaults: 1 MiB, 4096, 16, 64
    ];
    for (const options of sets) {
      const want = docGeometry(options);
      assert.equal(Topic.byteLength(options), want.totalSize, `byteLength(${JSON.stringify(options)})`);
      const s = setup(t, options);
      const shm = SharedMemory.open(s.name);
      t.after(() => shm.close());
      const b = shm.buffer;
      const u32 = (off) => b.readUInt32LE(off);
      assert.deepEqual(
        [u32(0), b.readUInt16LE(4), b.readUInt16LE(6), u32(8), u32(12), u32(16), u32(20), u32(24), u32(28), u32(32), u32(36), u32(40), u32(44), u32(48), u32(52), u32(56), u32(60)],
        [0x50544b4d, 1, 128, want.totalSize, 0, want.capacity, want.maxMessageSize, want.policy === 'block' ? 0 : 1, want.maxPublishers, want.maxSubscribers,
          want.publishersOffset, want.subscribersOffset, want.ringOffset, want.publishers, 0, process.pid, 0],
        `the header of ${JSON.stringify(options)} at the doc's offsets`,
      );
      const seen = s.inspect();
      assert.equal(seen.state, 'topic');
      assert.deepEqual(seen.limits, {
        capacity: want.capacity,
        maxMessageSize: want.maxMessageSize,
        policy: want.policy,
        maxPublishers: want.maxPublishers,
        maxSubscribers: want.maxSubscribers,
        totalSize: want.totalSize,
        publishers: want.publishers === 0 ? undefined : want.publishers,
      });
      assert.deepEqual(seen.positions, { head: 0, tail: 0, nextSequence: 0, locked: 0 });
      const f = okFields(await s.sub(['--check']).done, /^ok topic .*$/);
      assert.deepEqual(f, {
        version: 1,
        'header-size': 128,
        total: want.totalSize,
        capacity: want.capacity,
        'max-message': want.maxMessageSize,
        policy: want.policy,
        'max-publishers': want.maxPublishers,
        'max-subscribers': want.maxSubscribers,
        publishers: want.publishersOffset,
        subscribers: want.subscribersOffset,
        ring: want.ringOffset,
        expected: want.publishers,
        flags: 0,
        'publisher-count': 0,
        creator: process.pid,
        joins: 0,
        tail: 0,
        head: 0,
        'next-seq': 0,
      });
    }
  });

  test('the C subscriber and Topic.open refuse a corrupted header, naming the field; more memory than the topic is fine', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const options = { capacity: 8192, maxMessageSize: MAX_MESSAGE, maxPublishers: 3, maxSubscribers: 5 };
    const total = docGeometry(options).totalSize; // ring at 512 + 5 * 128 = 1152: 9344
    const name = shmName(t);
    const shm = SharedMemory.create(name, total + 4096);
    t.after(() => shm.close());
    const creator = Topic.create(shm, options);
    t.after(() => creator.close());
    const buf = shm.buffer;
    const check = () => startProc([subBin, name, '--check'], 'topic-subscriber --check', { timeout: PEER_TIMEOUT_MS }).done;
    okFields(await check(), /^ok topic .*$/);
    // [field, offset, width, bad value, the message after "bad topic header: "]
    const cases = [
      ['MAGIC', 0, 4, 0x48434b4d, "MAGIC is 0x48434b4d, expected 0x50544b4d ('MKTP')"],
      ['VERSION', 4, 2, 2, 'VERSION is 2, expected 1'],
      ['HEADER_SIZE', 6, 2, 64, 'HEADER_SIZE is 64, expected 128'],
      ['CAPACITY', 16, 4, 12288, 'CAPACITY 12288 is not a power of two from 4096 to 2^30'],
      ['CAPACITY', 16, 4, 2048, 'CAPACITY 2048 is not a power of two from 4096 to 2^30'],
      ['CAPACITY', 16, 4, 2 ** 31, 'CAPACITY 2147483648 is not a power of two from 4096 to 2^30'],
      ['CAPACITY', 16, 4, 4096, `TOTAL_SIZE is ${total}, expected ${total - 4096}`],
      ['CAPACITY', 16, 4, 16384, `TOTAL_SIZE is ${total}, expected ${total + 8192}`],
      ['MAX_MESSAGE', 20, 4, 0, 'MAX_MESSAGE is 0, at least 1'],
      ['MAX_MESSAGE', 20, 4, 4081, 'MAX_MESSAGE 4081 does not fit twice in a ring of 8192 bytes'], // 2 x 4104
      ['MAX_MESSAGE', 20, 4, 0xfffffff8, 'MAX_MESSAGE 4294967288 does not fit twice in a ring of 8192 bytes'],
      ['POLICY', 24, 4, 2, 'POLICY is 2, expected 0 or 1'],
      ['MAX_PUBLISHERS', 28, 4, 0, 'MAX_PUBLISHERS 0 is not from 1 to 4096'],
      ['MAX_PUBLISHERS', 28, 4, 9, 'SUBSCRIBERS_OFFSET is 512, expected 640'],
      ['MAX_SUBSCRIBERS', 32, 4, 4097, 'MAX_SUBSCRIBERS 4097 is not from 1 to 4096'],
      ['MAX_SUBSCRIBERS', 32, 4, 4, 'RING_OFFSET is 1152, expected 1024'],
      ['PUBLISHERS_OFFSET', 36, 4, 256, 'PUBLISHERS_OFFSET is 256, expected 384'],
      ['SUBSCRIBERS_OFFSET', 40, 4, 384 + 48, 'SUBSCRIBERS_OFFSET is 432, expected 512'],
      ['RING_OFFSET', 44, 4, 1024, 'RING_OFFSET is 1024, expected 1152'],
      ['TOTAL_SIZE', 8, 4, total + 8, `TOTAL_SIZE is ${total + 8}, expected ${total}`],
    ];
    for (const [field, at, width, bad, message] of cases) {
      const read = () => (width === 4 ? buf.readUInt32LE(at) : buf.readUInt16LE(at));
      const good = read();
      if (width === 4) buf.writeUInt32LE(bad, at);
      else buf.writeUInt16LE(bad, at);
      try {
        const res = await check();
        assert.equal(res.status, 1, `a bad ${field} (${bad}): status ${res.status}, stdout ${res.stdout}, stderr ${res.stderr}`);
        assert.equal(res.stderr.trim(), `topic-subscriber.c: bad topic header: ${message}`, `a bad ${field} (${bad})`);
        assert.equal(res.stdout, '');
        throwsCode(() => Topic.open(shm), 'ERR_MMAP_BAD_HEADER');
      } finally {
        if (width === 4) buf.writeUInt32LE(good, at);
        else buf.writeUInt16LE(good, at);
      }
    }
    Topic.open(shm).close();
    // A good header in memory too small for it: the C subscriber must not read past the memory's end.
    for (const [size, message] of [
      [4096, `bad topic header: TOTAL_SIZE ${total} is larger than the shared memory (4096 bytes)`],
      [300, 'bad topic: the shared memory has 300 bytes, fewer than 384'],
    ]) {
      const small = shmName(t);
      const shm2 = SharedMemory.create(small, size);
      t.after(() => shm2.close());
      buf.copy(shm2.buffer, 0, 0, size);
      const res = await startProc([subBin, small, '--check'], `topic-subscriber --check (${size} bytes)`, { timeout: PEER_TIMEOUT_MS }).done;
      assert.equal(res.status, 1, res.stderr);
      assert.equal(res.stderr.trim(), `topic-subscriber.c: ${message}`);
    }
  });

  // ------------------------------------------------------------------------------------- streams

  test("'block': two C subscribers and a Node subscriber get all 20,000 messages in order, then the end (closed)", { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const N = 20_000;
    const s = setup(t, { capacity: 8192, maxMessageSize: MAX_MESSAGE, maxSubscribers: 8, publishers: 1 });
    assert.equal(s.topic.capacity, 8192);
    const subs = [
      s.sub([`--expect=${N}`, `--seed=${SEED}`], 'C subscriber A'),
      s.sub([`--expect=${N}`, `--seed=${SEED}`, '--batch=3', '--slow-us=20'], 'C subscriber B (slow)'),
    ];
    const nodeSub = s.node('subscribe', '{}');
    for (const p of subs) {
      const a = await line(p, /^attached .*$/m);
      assert.deepEqual([a.cursor, a.seq], [0, 0], `${p.label} attached at the start`);
    }
    assert.deepEqual(await line(nodeSub, /^attached .*$/m), { seq: 0 });
    assert.equal(s.inspect().subscribers.length, 3);
    const started = Date.now();
    const pub = s.node('publish', N, '{}');
    const pf = okFields(await exited(pub, PEER_TIMEOUT_MS));
    assert.equal(pf.published, N);
    for (const p of [...subs, nodeSub]) {
      const f = okFields(await exited(p, WAIT_MS));
      assert.equal(f.received, N, `${p.label}: ${JSON.stringify(f)}`);
      assert.deepEqual([f.missed, f.checksum_errors, f.bad, f.first, f.last, f.endReason], [0, 0, 0, 0, N - 1, 'closed'], `${p.label}: ${JSON.stringify(f)}`);
      if (f.laps !== undefined) assert.equal(f.laps, 0);
    }
    // The slow C subscriber held the publisher back: the ring filled, and its cursor stores woke the publisher.
    // The fast one caught up and slept on NOT_EMPTY: publishes woke it.
    const slow = okFields(subs[1].result);
    const fastC = okFields(subs[0].result);
    assert.ok(fastC.slept > 0, `the fast C subscriber was never woken by a publish: ${JSON.stringify(fastC)}`);
    assert.ok(slow.woke > 0, `the slow C subscriber never woke a waiting publisher: ${JSON.stringify(slow)} (tryPublish found no room ${pf.full} times)`);
    t.diagnostic(`${N} messages in ${Date.now() - started} ms; the publisher found no room ${pf.full} times; C subscriber B woke it ${slow.woke} times`);
    const seen = s.inspect();
    assert.deepEqual(seen.subscribers, [], 'every subscriber left');
    assert.deepEqual(seen.publishers.map((p) => p.state), ['closed']);
    assert.equal(seen.positions.nextSequence, N);
  });

  test("from: 'oldest': a C subscriber attached late gets the retained history from HEAD, numbered right", { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const cap = 8192;
    const s = setup(t, { capacity: cap, maxMessageSize: MAX_MESSAGE, maxSubscribers: 4 });
    const FIRST = 300;
    const MORE = 200;
    const lengths = [];
    for (let i = 0; i < FIRST; i++) {
      const m = makeMessage(SEED, i, MAX_MESSAGE);
      lengths.push(m.length);
      s.topic.publish(m, WAIT_MS); // no subscriber: nothing to wait for, the ring keeps what fits
    }
    const ring = docRing(lengths, cap);
    assert.ok(ring.head > 0 && ring.headSeq > 0, 'the history was overwritten: HEAD moved');
    assert.deepEqual(s.inspect().positions, { head: ring.head, tail: ring.tail, nextSequence: FIRST, locked: 0 });
    const inProcess = s.topic.subscribe({ from: 'oldest' });
    assert.equal(inProcess.sequence, ring.headSeq);
    inProcess.close(); // it would hold the 'block' publisher back
    const oldest = s.sub(['--from=oldest', `--seed=${SEED}`, `--expect=${FIRST + MORE - ring.headSeq}`], 'C subscriber (oldest)');
    const latest = s.sub(['--from=latest', `--seed=${SEED}`, `--expect=${MORE}`], 'C subscriber (latest)');
    const fo0 = await line(oldest, /^attached .*$/m);
    const fl0 = await line(latest, /^attached .*$/m);
    assert.deepEqual([fo0.cursor, fo0.seq], [ring.head, ring.headSeq], 'oldest: HEAD and the RECORD_SEQ there');
    assert.deepEqual([fl0.cursor, fl0.seq], [ring.tail, FIRST], 'latest: TAIL and NEXT_SEQ');
    assert.deepEqual([fo0.entry, fl0.entry].sort(), [0, 1]);
    for (let i = FIRST; i < FIRST + MORE; i++) await s.topic.publishAsync(makeMessage(SEED, i, MAX_MESSAGE), WAIT_MS);
    s.topic.close(); // the publisher goes: the end of the stream
    const fo = okFields(await exited(oldest, WAIT_MS));
    assert.deepEqual([fo.received, fo.missed, fo.checksum_errors, fo.bad, fo.first, fo.last, fo.endReason], [FIRST + MORE - ring.headSeq, 0, 0, 0, ring.headSeq, FIRST + MORE - 1, 'closed']);
    const fl = okFields(await exited(latest, WAIT_MS));
    assert.deepEqual([fl.received, fl.missed, fl.checksum_errors, fl.bad, fl.first, fl.last, fl.endReason], [MORE, 0, 0, 0, FIRST, FIRST + MORE - 1, 'closed']);
  });

  test("'overwrite': slow C subscribers are lapped and count exactly what they missed; a fast Node subscriber sees everything", { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const N = 8_000; // the slow ones are lapped many times over; more only takes longer
    const s = setup(t, { capacity: 65536, maxMessageSize: MAX_MESSAGE, policy: 'overwrite', maxSubscribers: 4 });
    // One slow between polls (lapped: step 1 finds TAIL a ring ahead), one slow while it copies a poll's
    // records (lapped under its feet: step 3 finds INTENT past start + CAPACITY and throws the copies away).
    const slow = [
      // 3 ms a message (between polls, or per record copied): a third or less of what the paced publisher
      // does even on a loaded machine, so each falls a ring behind within a second (at 0.3-0.4 ms, a
      // publisher slowed down by load let them keep up, and they were never lapped).
      s.sub([`--expect=${N}`, `--seed=${SEED}`, '--slow-us=3000', '--batch=4'], 'C subscriber (slow reader)'),
      s.sub([`--expect=${N}`, `--seed=${SEED}`, '--slow-copy-us=3000', '--batch=32'], 'C subscriber (slow copier)'),
    ];
    const fast = s.node('subscribe', '{}');
    for (const p of [...slow, fast]) await line(p, /^attached .*$/m);
    // The publisher never gets more than half a ring ahead of the fast subscriber (it never waits for the slow ones).
    const pub = s.node('publish', N, JSON.stringify({ paceFor: fast.child.pid }));
    assert.equal(okFields(await exited(pub, PEER_TIMEOUT_MS)).published, N);
    const ff = okFields(await exited(fast, WAIT_MS));
    assert.deepEqual([ff.received, ff.missed, ff.checksum_errors, ff.bad, ff.first, ff.last, ff.endReason], [N, 0, 0, 0, 0, N - 1, 'closed']);
    for (const p of slow) {
      const f = okFields(await exited(p, WAIT_MS));
      t.diagnostic(`${p.label}: ${JSON.stringify(f)}`);
      assert.ok(f.missed > 0 && f.laps > 0, `${p.label} was never lapped: ${JSON.stringify(f)}`);
      assert.equal(f.received + f.missed, N, `${p.label}: received + missed must be every message published`);
      assert.deepEqual([f.checksum_errors, f.bad, f.first, f.last, f.endReason], [0, 0, 0, N - 1, 'closed'], p.label);
    }
    const copier = okFields(slow[1].result);
    assert.ok(copier.discarded > 0, `step 3 never threw copies away: ${JSON.stringify(copier)}`);
  });

  test("'block': C subscribers joining a running stream get everything from their start, and hold the publisher back from then on", { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const N = 12_000;
    const s = setup(t, { capacity: 8192, maxMessageSize: MAX_MESSAGE, maxSubscribers: 4 });
    // No subscriber yet: the publisher finds room everywhere (and caches that until JOINS changes).
    const pub = s.node('publish', N, JSON.stringify({ progress: 250, timeout: 60_000 }));
    await line(pub, /^published [1-9]\d{3,}$/m, PEER_TIMEOUT_MS);
    const late = [
      s.sub(['--from=oldest', `--seed=${SEED}`, '--slow-us=50'], 'C subscriber (joins, oldest)'),
      s.sub(['--from=latest', `--seed=${SEED}`, '--slow-us=50', '--batch=5'], 'C subscriber (joins, latest)'),
    ];
    const starts = [];
    for (const p of late) starts.push(await line(p, /^attached .*$/m));
    assert.ok(starts.every((a) => a.seq < N), `joined before the end: ${JSON.stringify(starts)}`);
    assert.equal(okFields(await exited(pub, PEER_TIMEOUT_MS)).published, N);
    for (const [i, p] of late.entries()) {
      const f = okFields(await exited(p, WAIT_MS));
      assert.deepEqual([f.received, f.missed, f.laps, f.checksum_errors, f.bad, f.first, f.last, f.endReason], [N - starts[i].seq, 0, 0, 0, 0, starts[i].seq, N - 1, 'closed'], `${p.label}: ${JSON.stringify(f)}`);
    }
  });

  // ------------------------------------------------------------------------------------- deaths

  test("'block': a C subscriber killed while the publisher waits for it stops holding the publisher back", { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const N = 3000;
    const cap = 8192;
    const s = setup(t, { capacity: cap, maxMessageSize: MAX_MESSAGE, maxSubscribers: 4 });
    const stuck = s.sub(['--hang-after=100', `--seed=${SEED}`], 'C subscriber (hangs)');
    const live = s.sub([`--expect=${N}`, `--seed=${SEED}`], 'C subscriber (live)');
    await line(stuck, /^attached .*$/m);
    await line(live, /^attached .*$/m);
    const pub = s.node('publish', N, JSON.stringify({ timeout: 120_000 }));
    const hanging = await line(stuck, /^hanging .*$/m);
    assert.equal(hanging.received, 100);
    // The publisher fills the ring up to the hung cursor and waits: TAIL stops moving.
    let tail = s.inspect().positions.tail;
    for (const deadline = Date.now() + WAIT_MS; ; ) {
      await sleep(200);
      const now = s.inspect().positions.tail;
      if (now === tail && now > hanging.cursor + cap / 2) break;
      tail = now;
      if (pub.result !== undefined || Date.now() > deadline) assert.fail(`the publisher did not wait for the hung subscriber: TAIL ${now}, hung cursor ${hanging.cursor}; publisher ${JSON.stringify(pub.result)}`);
    }
    await sleep(300);
    assert.equal(s.inspect().positions.tail, tail, 'TAIL does not move while the hung subscriber is a ring behind');
    assert.ok(tail - hanging.cursor <= cap, 'never more than a ring past the hung cursor');
    assert.equal(pub.result, undefined, 'the publisher waits');
    const me = s.inspect().subscribers.find((x) => x.pid === stuck.child.pid);
    assert.equal(me?.cursor, hanging.cursor);
    const killedAt = Date.now();
    stuck.child.kill('SIGKILL');
    assertKilled(await stuck.done);
    const pf = okFields(await exited(pub, WAIT_MS));
    const took = Date.now() - killedAt;
    t.diagnostic(`the publisher finished ${took} ms after the hung subscriber was killed`);
    assert.equal(pf.published, N);
    assert.ok(took < 15_000, `the publisher took ${took} ms to carry on`);
    const fl = okFields(await exited(live, WAIT_MS));
    assert.deepEqual([fl.received, fl.missed, fl.checksum_errors, fl.bad, fl.first, fl.last, fl.endReason], [N, 0, 0, 0, 0, N - 1, 'closed']);
    assert.deepEqual(s.inspect().subscribers.filter((x) => x.pid === stuck.child.pid), [], "the dead subscriber's entry was freed");
  });

  test('a publisher killed mid-stream: the C subscriber ends with publisher-died; a late one takes over the lock if it was held', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const s = setup(t, { capacity: 8192, maxMessageSize: MAX_MESSAGE, maxSubscribers: 4 });
    const first = s.sub([`--seed=${SEED}`], 'C subscriber');
    await line(first, /^attached .*$/m);
    const pub = s.node('publish', 0, JSON.stringify({ forever: true, progress: 500 }));
    await line(pub, /^published [2-9]\d{3,}$/m, PEER_TIMEOUT_MS);
    pub.child.kill('SIGKILL');
    assertKilled(await pub.done);
    const f = okFields(await exited(first, WAIT_MS));
    assert.ok(f.received >= 2000, JSON.stringify(f));
    assert.deepEqual([f.missed, f.checksum_errors, f.bad, f.first, f.last, f.endReason], [0, 0, 0, 0, f.received - 1, 'publisher-died']);
    // Whatever the publisher was doing when it died (maybe holding the lock, TAIL stored and NEXT_SEQ not yet),
    // a late subscriber attaches, reads the history up to the last message published, and sees the end.
    const late = s.sub(['--from=oldest', `--seed=${SEED}`], 'C subscriber (late)');
    const fl = okFields(await exited(late, WAIT_MS));
    assert.deepEqual([fl.missed, fl.checksum_errors, fl.bad, fl.last, fl.endReason], [0, 0, 0, f.last, 'publisher-died']);
    assert.equal(fl.received, f.last - fl.first + 1);
    const seen = s.inspect();
    assert.deepEqual([seen.positions.locked, seen.positions.nextSequence, seen.publisherDied], [0, f.last + 1, true]);
  });

  test('the publish lock held by a live process: the C subscriber waits on LOCK (no takeover) and publish() times out; once the holder dies, the C subscriber takes it over', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const s = setup(t, { capacity: 8192, maxMessageSize: MAX_MESSAGE, maxSubscribers: 4 });
    const holder = s.node('publish', 10, JSON.stringify({ dieReserving: true }));
    await line(holder, /^reserved .*$/m);
    assert.equal(s.inspect().positions.locked, holder.child.pid);
    const sub = s.sub([`--seed=${SEED}`], 'C subscriber (waits for the lock)');
    const shm = SharedMemory.open(s.name);
    t.after(() => shm.close());
    const i32 = new Int32Array(shm.buffer.buffer, shm.buffer.byteOffset, 384 >>> 2);
    // "A waiter adds 1 to LOCK_WAITERS, loads LOCK again and FUTEX_WAITs on it".
    await until(() => Atomics.load(i32, DOC_OFFSETS.LOCK_WAITERS >>> 2) > 0, [sub, holder], 'the C subscriber counted in LOCK_WAITERS', WAIT_MS);
    const started = Date.now();
    throwsCode(() => s.topic.publish(makeMessage(SEED, 10, MAX_MESSAGE), 300), 'ERR_MMAP_TOPIC_TIMEOUT');
    assert.ok(Date.now() - started < 5000, `publish(..., 300) took ${Date.now() - started} ms`);
    await sleep(200);
    assert.doesNotMatch(sub.stdout(), /attached|took-over/, 'the C subscriber must not take the lock from a live holder');
    assert.equal(Atomics.load(i32, DOC_OFFSETS.LOCK >>> 2), holder.child.pid);
    holder.child.kill('SIGKILL');
    assertKilled(await holder.done);
    const a = await line(sub, /^attached .*$/m);
    assert.match(sub.stdout(), new RegExp(`^took-over lock=${holder.child.pid}$`, 'm'));
    assert.equal(a.seq, 10);
    assert.equal(Atomics.load(i32, DOC_OFFSETS.LOCK >>> 2), 0, 'let go of after attaching');
    // The publisher in this process goes on (it attached on its publish above), then closes: the end, with
    // FLAGS bit 1 from the dead holder.
    for (let i = 10; i < 60; i++) s.topic.publish(makeMessage(SEED, i, MAX_MESSAGE), WAIT_MS);
    s.topic.close();
    const f = okFields(await exited(sub, WAIT_MS));
    assert.deepEqual([f.received, f.missed, f.checksum_errors, f.bad, f.first, f.last, f.endReason], [50, 0, 0, 0, 10, 59, 'publisher-died']);
  });

  test('a publisher killed holding the publish lock (an uncommitted reserve()): the C subscribers end with publisher-died, a late one repairs and attaches', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const N = 1000;
    const s = setup(t, { capacity: 8192, maxMessageSize: MAX_MESSAGE, maxSubscribers: 4 });
    const first = s.sub([`--seed=${SEED}`, `--expect=${N}`], 'C subscriber');
    await line(first, /^attached .*$/m);
    const pub = s.node('publish', N, JSON.stringify({ dieReserving: true }));
    await line(pub, /^reserved .*$/m);
    const before = s.inspect();
    assert.equal(before.positions.locked, pub.child.pid);
    assert.equal(before.positions.nextSequence, N);
    pub.child.kill('SIGKILL');
    assertKilled(await pub.done);
    const f = okFields(await exited(first, WAIT_MS));
    assert.deepEqual([f.received, f.missed, f.checksum_errors, f.bad, f.first, f.last, f.endReason], [N, 0, 0, 0, 0, N - 1, 'publisher-died']);
    // The lock still names the dead publisher: the late subscriber takes it over ("The publish lock").
    assert.equal(s.inspect().positions.locked, pub.child.pid);
    const late = s.sub(['--from=oldest', `--seed=${SEED}`], 'C subscriber (late)');
    const fl = okFields(await exited(late, WAIT_MS));
    assert.match(late.result.stdout, new RegExp(`^took-over lock=${pub.child.pid}$`, 'm'));
    // The reservation (room for maxMessageSize) moved HEAD past what it would overwrite; TAIL stayed.
    const lengths = Array.from({ length: N }, (_, i) => makeMessage(SEED, i, MAX_MESSAGE).length);
    const { tail } = docRing(lengths, 8192);
    const { head, headSeq } = docRing([...lengths, MAX_MESSAGE], 8192);
    assert.deepEqual([fl.received, fl.missed, fl.checksum_errors, fl.bad, fl.first, fl.last, fl.endReason], [N - headSeq, 0, 0, 0, headSeq, N - 1, 'publisher-died']);
    const seen = s.inspect();
    assert.deepEqual([seen.positions.locked, seen.positions.head, seen.positions.tail, seen.positions.nextSequence, seen.publisherDied], [0, head, tail, N, true]);
  });
});
