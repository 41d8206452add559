// A Channel or Topic whose memory faulted (issue 17): another process truncated the file or shared
// memory object under it, or the file system could not provide a page of a sparse object (tmpfs out of
// space). The SIGBUS guard repairs such a page with zeros, and zeros look like valid records (an empty
// message): every handle must instead throw ERR_MMAP_FAULTED, never hand out a message read from a
// repaired page, never report one sent whose bytes went into one, and throw on every later call.
//
// Messages carry their number, their length and a checksum, with bytes that depend on all three, so a
// message of zeros (or one with zeros in it) is never mistaken for one that was sent. Geometries are
// chosen so that a truncation to a page boundary keeps every position and table a party uses and
// loses every record: the case where a stale read gets zeros that pass the layout's checks.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { Channel, Topic, map } from '../dist/index.js';
import { distUrl, isRoot, runNode, shmName, startNode, tempDir, throwsCode, timedTests, until } from './helpers.mjs';

/** Every test has a time limit (awaiting a child has none of its own). */
const test = timedTests(120_000);

/**
 * Message `seq`: its number, its length and a checksum of the rest in the first 12 bytes, then bytes
 * that depend on the number and the position. Self-contained: child programs embed its source.
 */
function makeMsg(seq, min = 16, spread = 200) {
  const len = min + ((seq * 7919) % spread);
  const b = Buffer.alloc(len);
  let sum = 7;
  for (let i = 12; i < len; i++) {
    b[i] = (seq * 31 + i * 7 + 1) & 0xff;
    sum = (sum * 33 + b[i]) >>> 0;
  }
  b.writeUInt32LE(seq, 0);
  b.writeUInt32LE(len, 4);
  b.writeUInt32LE(sum, 8);
  return b;
}

/** A child program (`node --input-type=module -e`) with the library and makeMsg in scope. */
const program = (body) => `import { Channel, Topic } from ${JSON.stringify(distUrl)};\n${makeMsg}\n${body}`;

/** Truncate `path` to `size` bytes from another process, as an attacker or a careless peer would. */
function truncateElsewhere(path, size) {
  const r = runNode('import { truncateSync } from "node:fs"; truncateSync(process.argv[1], Number(process.argv[2]));', { args: [path, String(size)] });
  assert.equal(r.status, 0, `truncating ${path}: ${r.stderr}`);
}

/** A checker of a stream of messages numbered from `first`: each must be exactly the one sent. */
function sequence(first = 0, min, spread) {
  const s = {
    next: first,
    take(m) {
      assert.ok(Buffer.isBuffer(m) || m instanceof Uint8Array, `message ${s.next} is ${m}`);
      const want = makeMsg(s.next, min, spread);
      assert.ok(Buffer.from(m.buffer, m.byteOffset, m.byteLength).equals(want), `message ${s.next} is not the one sent: ${m.byteLength} bytes (${Buffer.from(m.buffer, m.byteOffset, Math.min(m.byteLength, 16)).toString('hex')}...), ${want.length} were sent`);
      s.next++;
    },
  };
  return s;
}

const FAULTED = 'ERR_MMAP_FAULTED';

/** Call `receive` until it throws (an assertion about a message is rethrown); the error. */
function receiveUntilError(receive, seq, most = 2000) {
  for (let i = 0; i < most; i++) {
    let m;
    try {
      m = receive();
    } catch (err) {
      return err;
    }
    assert.notEqual(m, null, `the end of the stream after message ${seq.next - 1}, where ${FAULTED} was due`);
    seq.take(m);
  }
  assert.fail(`${most} messages after the truncation and no error`);
}

// ------------------------------------------------------------------------------ across processes

// The producer child sends until a send fails; it then tries once more and reports both errors.
const CHANNEL_PRODUCER = program(`
const ch = Channel.open(process.argv[1]);
let sent = 0;
let err;
try {
  for (;;) {
    ch.send(makeMsg(sent), { timeout: 30000 });
    if (++sent === 1) console.log('started');
  }
} catch (e) {
  err = e;
}
let again = 'sent';
try { ch.trySend(makeMsg(sent)); } catch (e) { again = e.code; }
ch.close();
console.log(JSON.stringify({ sent, code: err.code, message: err.message, again }));
`);

// Fails without the fix: the consumer takes an empty message (the zeros of a repaired page pass for a
// record of length 0), and the producer keeps sending into pages that nobody will ever see.
test('channel: another process truncates the file under queued messages; the consumer (this process) and the producer process get ERR_MMAP_FAULTED, and no message of zeros is delivered', async (t) => {
  const path = join(tempDir(t), 'channel');
  // 16 lanes' control blocks put the rings past the first page: truncated to it, every position
  // survives and every record is lost.
  const ch = Channel.create(path, { laneSize: 65536, maxMessageSize: 256 });
  t.after(() => ch.close());
  const producer = startNode(['--input-type=module', '-e', CHANNEL_PRODUCER, path], 'producer', { t, timeout: 90_000 });
  const seq = sequence();
  while (seq.next < 300) seq.take(ch.receive({ timeout: 30_000 }));
  // Stop taking: the lane fills and the producer waits for room (or is still writing).
  await until(() => ch.size >= 200, [producer], 'messages queue up in the lane', 30_000);
  truncateElsewhere(path, 4096);
  const err = receiveUntilError(() => ch.receive({ timeout: 30_000 }), seq);
  assert.equal(err.code, FAULTED, `${err.code}: ${err.message}`);
  assert.match(err.message, /truncated/);
  // The handle stays unusable, whatever the call.
  throwsCode(() => ch.receive(0), FAULTED);
  throwsCode(() => ch.tryReceive(), FAULTED);
  throwsCode(() => ch.trySend('x'), FAULTED);
  throwsCode(() => ch.size, FAULTED);
  ch.close();
  const rep = await producer.report();
  assert.equal(rep.code, FAULTED, `the producer got ${rep.code}: ${rep.message}`);
  assert.match(rep.message, /truncated/);
  assert.equal(rep.again, FAULTED);
  assert.ok(rep.sent >= seq.next, `the producer reports ${rep.sent} sent, the consumer took ${seq.next}`);
});

const TOPIC_PUBLISHER = program(`
const topic = Topic.open({ name: process.argv[1] });
let sent = 0;
let err;
try {
  for (;;) {
    topic.publish(makeMsg(sent), { timeout: 30000 });
    if (++sent === 1) console.log('started');
  }
} catch (e) {
  err = e;
}
let again = 'sent';
try { topic.tryPublish(makeMsg(sent)); } catch (e) { again = e.code; }
topic.close();
console.log(JSON.stringify({ sent, code: err.code, message: err.message, again }));
`);

// Fails without the fix: the subscriber reads the zeros of a repaired page and reports them as
// ERR_MMAP_TOPIC_CORRUPT (and skips on), and the publisher keeps publishing into lost pages.
test('topic: another process truncates the shared memory object under unread messages; the subscriber (this process) and the publisher process get ERR_MMAP_FAULTED, and no message of zeros is delivered', async (t) => {
  const name = shmName(t, 'faulted-topic');
  // 64 subscriber entries of 128 bytes put the ring past 8 KiB: truncated to 8 KiB, the positions and
  // the tables survive and every record is lost.
  const topic = Topic.create({ name }, { capacity: 65536, maxMessageSize: 256, policy: 'block' });
  t.after(() => topic.close());
  const sub = topic.subscribe();
  const publisher = startNode(['--input-type=module', '-e', TOPIC_PUBLISHER, name], 'publisher', { t, timeout: 90_000 });
  const seq = sequence();
  while (seq.next < 300) seq.take(sub.receive({ timeout: 30_000 }));
  await until(() => sub.lag >= 16384, [publisher], 'messages pile up in the ring', 30_000);
  truncateElsewhere(`/dev/shm/${name}`, 8192);
  const err = receiveUntilError(() => sub.receive({ timeout: 30_000 }), seq);
  assert.equal(err.code, FAULTED, `${err.code}: ${err.message}`);
  assert.match(err.message, /truncated/);
  throwsCode(() => sub.receive(0), FAULTED);
  throwsCode(() => sub.tryReceive(), FAULTED);
  throwsCode(() => topic.tryPublish('x'), FAULTED);
  throwsCode(() => topic.subscribe(), FAULTED);
  topic.close();
  const rep = await publisher.report();
  assert.equal(rep.code, FAULTED, `the publisher got ${rep.code}: ${rep.message}`);
  assert.match(rep.message, /truncated/);
  assert.equal(rep.again, FAULTED);
});

// ------------------------------------------------------------------------------ every method

/** A channel in a file with a producer and a consumer handle of their own (two mappings), `n` messages queued. */
function channelPair(t, n) {
  const path = join(tempDir(t), 'channel');
  const producer = Channel.create(path, { laneSize: 65536, maxMessageSize: 256 });
  const consumer = Channel.open(path);
  t.after(() => {
    producer.close();
    consumer.close();
  });
  for (let i = 0; i < n; i++) producer.send(makeMsg(i));
  return { path, producer, consumer };
}

async function rejectsCode(promise, code) {
  await assert.rejects(promise, (err) => {
    assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`);
    return true;
  });
}

/** Each receive method of a Channel, given the consumer and a checker of what it hands out. */
const CHANNEL_RECEIVES = {
  receive: (c, seq) => seq.take(c.receive(1000)),
  tryReceive: (c, seq) => seq.take(c.tryReceive()),
  receiveMany: (c, seq) => c.receiveMany(100, 1000).forEach(seq.take),
  tryReceiveMany: (c, seq) => c.tryReceiveMany(100).forEach(seq.take),
  receiveInto: (c, seq) => {
    const target = Buffer.alloc(4096);
    const lengths = new Uint32Array(16);
    const n = c.receiveInto(target, lengths, 1000);
    for (let i = 0, pos = 0; i < n; pos += lengths[i++]) seq.take(target.subarray(pos, pos + lengths[i]));
  },
  drain: (c, seq) => c.drain((buf, off, len) => seq.take(buf.subarray(off, off + len)), 100, 1000),
  receiveInPlace: (c, seq) => {
    const m = c.receiveInPlace(1000);
    seq.take(m.data);
    m.release();
  },
  receiveAsync: async (c, seq) => seq.take(await c.receiveAsync(1000)),
  receiveManyAsync: async (c, seq) => (await c.receiveManyAsync(100, 1000)).forEach(seq.take),
  receiveIntoAsync: async (c, seq) => {
    const target = Buffer.alloc(4096);
    const lengths = new Uint32Array(16);
    const n = await c.receiveIntoAsync(target, lengths, 1000);
    for (let i = 0, pos = 0; i < n; pos += lengths[i++]) seq.take(target.subarray(pos, pos + lengths[i]));
  },
  drainAsync: async (c, seq) => c.drainAsync((buf, off, len) => seq.take(buf.subarray(off, off + len)), 100, 1000),
  'for await': async (c, seq) => {
    for await (const m of c) seq.take(m);
  },
  readable: async (c, seq) => {
    for await (const m of c.readable()) seq.take(m);
  },
};

// Fails without the fix: every method hands out an empty message (or a run of them).
test('channel: every receive method throws ERR_MMAP_FAULTED for messages in truncated pages, hands out none of them, and the handle then throws on every call', async (t) => {
  for (const [method, receive] of Object.entries(CHANNEL_RECEIVES)) {
    await t.test(method, async (t) => {
      const { path, consumer } = channelPair(t, 20);
      truncateSync(path, 4096);
      const seq = sequence();
      await assert.rejects(async () => receive(consumer, seq), (err) => err.code === FAULTED || assert.fail(`${method}: ${err.stack}`));
      assert.equal(seq.next, 0, `${method} handed out ${seq.next} messages`);
      throwsCode(() => consumer.tryReceive(), FAULTED);
      throwsCode(() => consumer.trySend('x'), FAULTED);
      throwsCode(() => consumer.attach('producer'), FAULTED);
      await rejectsCode(consumer.receiveAsync(0), FAULTED);
    });
  }
});

// Fails without the fix: the consumer takes an empty message, and release() says nothing.
test('channel: zero copy: a truncation while a message is held in place or handled by drain() makes release() (and drain() after the handler) throw ERR_MMAP_FAULTED', (t) => {
  {
    const { path, consumer } = channelPair(t, 20);
    const m = consumer.receiveInPlace(1000);
    sequence().take(m.data);
    truncateSync(path, 4096);
    const first = m.data[0]; // reads a repaired page: zeros
    assert.equal(first, 0);
    throwsCode(() => m.release(), FAULTED);
    throwsCode(() => consumer.receiveInPlace(0), FAULTED);
  }
  {
    const { path, consumer } = channelPair(t, 20);
    const seq = sequence();
    let calls = 0;
    throwsCode(
      () =>
        consumer.drain((buf, off, len) => {
          calls++;
          seq.take(buf.subarray(off, off + len));
          if (calls === 1) truncateSync(path, 4096);
        }),
      FAULTED,
    );
    assert.equal(calls, 1, 'drain() called the handler for a message in a lost page');
  }
});

/** Each send method of a Channel: sends message `i` (or a run from it). */
const CHANNEL_SENDS = {
  send: (p) => p.send(makeMsg(20), 1000),
  trySend: (p) => {
    assert.equal(p.trySend(makeMsg(20)), true, 'trySend() reported the message sent');
  },
  sendMany: (p) => p.sendMany([makeMsg(20), makeMsg(21), makeMsg(22)], 1000),
  trySendMany: (p) => {
    assert.equal(p.trySendMany([makeMsg(20), makeMsg(21)]), 2, 'trySendMany() reported the messages sent');
  },
  sendAsync: (p) => p.sendAsync(makeMsg(20), 1000),
  sendManyAsync: (p) => p.sendManyAsync([makeMsg(20), makeMsg(21)], 1000),
  'reserve/commit': (p) => {
    const r = p.reserve(1000);
    const msg = makeMsg(20);
    msg.copy(r.buffer);
    r.commit(msg.length);
  },
  writable: (p) =>
    new Promise((resolve, reject) => {
      const w = p.writable({ close: false });
      w.on('error', reject);
      w.write(makeMsg(20), (err) => (err ? reject(err) : resolve()));
    }),
};

// Fails without the fix: every method reports its message sent, into a page that no one will read.
test('channel: every send method throws ERR_MMAP_FAULTED when the message went into a truncated page, and publishes nothing', async (t) => {
  for (const [method, send] of Object.entries(CHANNEL_SENDS)) {
    await t.test(method, async (t) => {
      const { path, producer, consumer } = channelPair(t, 20);
      truncateSync(path, 4096);
      await assert.rejects(async () => send(producer), (err) => err.code === FAULTED || assert.fail(`${method}: ${err.stack}`));
      throwsCode(() => producer.trySend('x'), FAULTED);
      // The consumer's own mapping: the positions survive and show nothing new (or it faults).
      let m;
      try {
        m = consumer.tryReceive();
      } catch (err) {
        assert.equal(err.code, FAULTED);
      }
      assert.equal(m, undefined, `the consumer got a message of ${m?.length} bytes`);
    });
  }
});

/** A topic in a file with a publishing handle and a subscribing handle of their own, `n` messages published. */
function topicPair(t, n, options = {}) {
  const path = join(tempDir(t), 'topic');
  const pub = Topic.create(path, { capacity: 65536, maxMessageSize: 256, ...options });
  const other = Topic.open(path);
  const sub = other.subscribe();
  t.after(() => {
    pub.close();
    other.close();
  });
  for (let i = 0; i < n; i++) pub.publish(makeMsg(i));
  return { path, pub, other, sub };
}

test('tryReceive() on an empty channel or topic whose memory was truncated to nothing throws ERR_MMAP_FAULTED at once, not "nothing yet"', (t) => {
  const { path, producer, consumer } = channelPair(t, 1);
  consumer.receive(1000);
  truncateElsewhere(path, 0);
  throwsCode(() => consumer.tryReceive(), FAULTED);
  throwsCode(() => producer.trySend('x'), FAULTED);
  const { path: topicPath, sub } = topicPair(t, 1);
  sub.receive(1000);
  truncateElsewhere(topicPath, 0);
  throwsCode(() => sub.tryReceive(), FAULTED);
});

test('Channel.inspect() and Topic.inspect() of memory truncated under them throw ERR_MMAP_FAULTED instead of reporting zeros as state', (t) => {
  const { path } = channelPair(t, 20);
  const m = map(path, { access: 'write' });
  assert.equal(Channel.inspect(m).state, 'channel');
  truncateElsewhere(path, 4096);
  assert.throws(() => Channel.inspect(m), (err) => err.code === FAULTED && /channel's memory was lost/.test(err.message) && /truncated/.test(err.message) && /Unmap it/.test(err.message));
  m.unmap();
  const { path: topicPath } = topicPair(t, 20);
  const tm = map(topicPath, { access: 'write' });
  assert.equal(Topic.inspect(tm).state, 'topic');
  truncateElsewhere(topicPath, 4096);
  assert.throws(() => Topic.inspect(tm), (err) => err.code === FAULTED && /topic's memory was lost/.test(err.message) && /truncated/.test(err.message));
  tm.unmap();
});

const TOPIC_RECEIVES = {
  receive: (s, seq) => seq.take(s.receive(1000)),
  tryReceive: (s, seq) => seq.take(s.tryReceive()),
  receiveMany: (s, seq) => s.receiveMany(100, 1000).forEach(seq.take),
  receiveInto: (s, seq) => {
    const target = Buffer.alloc(4096);
    const lengths = new Uint32Array(16);
    const n = s.receiveInto(target, lengths, 1000);
    for (let i = 0, pos = 0; i < n; pos += lengths[i++]) seq.take(target.subarray(pos, pos + lengths[i]));
  },
  drain: (s, seq) => s.drain((buf, off, len) => seq.take(buf.subarray(off, off + len)), 100, 1000),
  receiveAsync: async (s, seq) => seq.take(await s.receiveAsync(1000)),
  receiveManyAsync: async (s, seq) => (await s.receiveManyAsync(100, 1000)).forEach(seq.take),
  receiveIntoAsync: async (s, seq) => {
    const target = Buffer.alloc(4096);
    const lengths = new Uint32Array(16);
    const n = await s.receiveIntoAsync(target, lengths, 1000);
    for (let i = 0, pos = 0; i < n; pos += lengths[i++]) seq.take(target.subarray(pos, pos + lengths[i]));
  },
  drainAsync: async (s, seq) => s.drainAsync((buf, off, len) => seq.take(buf.subarray(off, off + len)), 100, 1000),
  'for await': async (s, seq) => {
    for await (const m of s) seq.take(m);
  },
  readable: async (s, seq) => {
    for await (const m of s.readable()) seq.take(m);
  },
};

// Fails without the fix: the zeros fail the sequence check and come out as ERR_MMAP_TOPIC_CORRUPT.
test('topic: every receive method throws ERR_MMAP_FAULTED for messages in truncated pages and hands out none of them', async (t) => {
  for (const policy of ['block', 'overwrite']) {
    for (const [method, receive] of Object.entries(TOPIC_RECEIVES)) {
      await t.test(`${policy}: ${method}`, async (t) => {
        const { path, sub } = topicPair(t, 20, { policy });
        truncateSync(path, 8192);
        const seq = sequence();
        await assert.rejects(async () => receive(sub, seq), (err) => err.code === FAULTED || assert.fail(`${method}: ${err.stack}`));
        assert.equal(seq.next, 0, `${method} handed out ${seq.next} messages`);
        throwsCode(() => sub.tryReceive(), FAULTED);
        await rejectsCode(sub.receiveAsync(0), FAULTED);
      });
    }
  }
});

const TOPIC_PUBLISHES = {
  publish: (p) => p.publish(makeMsg(20), 1000),
  tryPublish: (p) => {
    assert.equal(p.tryPublish(makeMsg(20)), true, 'tryPublish() reported the message published');
  },
  publishMany: (p) => p.publishMany([makeMsg(20), makeMsg(21)], 1000),
  publishAsync: (p) => p.publishAsync(makeMsg(20), 1000),
  publishManyAsync: (p) => p.publishManyAsync([makeMsg(20), makeMsg(21)], 1000),
  'reserve/commit': (p) => {
    const msg = makeMsg(20);
    const r = p.reserve(msg.length, 1000);
    msg.copy(r.buffer);
    r.commit();
  },
};

// Fails without the fix: every method reports its message published.
test('topic: every publish method throws ERR_MMAP_FAULTED when the message went into a truncated page, publishes nothing, and lets go of the publish lock', async (t) => {
  for (const [method, publish] of Object.entries(TOPIC_PUBLISHES)) {
    await t.test(method, async (t) => {
      const { path, pub, other, sub } = topicPair(t, 20);
      truncateSync(path, 8192);
      await assert.rejects(async () => publish(pub), (err) => err.code === FAULTED || assert.fail(`${method}: ${err.stack}`));
      throwsCode(() => pub.tryPublish('x'), FAULTED);
      // Another handle (its own mapping: the control page survives) sees nothing published, and can
      // take the publish lock: the faulted publisher let go of it.
      assert.equal(other.nextSequence, 20);
      other.subscribe({ timeout: 5000 }).close();
      let m;
      try {
        m = sub.tryReceive();
      } catch (err) {
        assert.equal(err.code, FAULTED);
      }
      assert.equal(m, undefined, `the subscriber got a message of ${m?.length} bytes`);
    });
  }
});

// ------------------------------------------------------------------------------ out of space

/**
 * Run `code` (a child program, given the directory as argv[1]) with a 1 MiB tmpfs mounted at a fresh
 * directory, in a mount namespace of its own (the mount goes away with the process): needs root, or
 * unprivileged user namespaces. The child's result, or a reason to skip.
 */
function inSmallTmpfs(t, code) {
  const dir = join(tempDir(t), 'small');
  mkdirSync(dir);
  const ns = isRoot ? ['--mount', '--propagation', 'private'] : ['--user', '--map-root-user', '--mount', '--propagation', 'private'];
  const script = 'mount -t tmpfs -o size=1m,mode=0700 mmapkit-enospc "$1" || exit 97; [ "$2" = probe ] && exit 0; exec "$2" --input-type=module -e "$3" "$1"';
  const run = (...args) => spawnSync('unshare', [...ns, 'sh', '-c', script, 'sh', dir, ...args], { encoding: 'utf8', timeout: 60_000 });
  const probe = run('probe');
  if (probe.error !== undefined || probe.status !== 0) {
    return { skip: `cannot mount a small tmpfs here (unshare ${ns.join(' ')}: ${probe.error?.message ?? probe.stderr.trim()}): needs root or unprivileged user namespaces` };
  }
  const r = run(process.execPath, code);
  assert.equal(r.status, 0, `the child failed (${r.signal ?? r.status}): ${r.stderr}\n${r.stdout}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1));
}

// The channel and the topic are sparse files of 4 MiB on a 1 MiB tmpfs: the first page that cannot be
// allocated raises SIGBUS in the producer. Its consumer is another handle (another mapping) in the
// same process: it must see every message reported sent, whole, and nothing else.
const OUT_OF_SPACE = program(`
import { rmSync } from 'node:fs';
const dir = process.argv[1];
const SIZE = [900, 100];
const check = (m, i) => m !== null && m !== undefined && m.equals(makeMsg(i, ...SIZE));
const out = {};
{
  const path = dir + '/channel';
  const producer = Channel.create(path, { laneSize: 4 << 20, maxMessageSize: 1024, maxProducers: 1, maxConsumers: 1 });
  const consumer = Channel.open(path);
  let sent = 0;
  let err;
  try {
    for (; sent < 5000; sent++) producer.send(makeMsg(sent, ...SIZE), 0);
  } catch (e) {
    err = e;
  }
  let got = 0;
  let bad = 0;
  for (let m; (m = consumer.tryReceive()) !== undefined; got++) if (!check(m, got)) bad++;
  let again = 'sent';
  try { producer.trySend('x'); } catch (e) { again = e.code; }
  producer.close();
  const end = consumer.receive(1000);
  consumer.close();
  out.channel = { sent, code: err?.code, message: err?.message, got, bad, again, end };
  rmSync(path);
}
{
  const path = dir + '/topic';
  const pub = Topic.create(path, { capacity: 4 << 20, maxMessageSize: 1024, policy: 'overwrite' });
  const other = Topic.open(path);
  const sub = other.subscribe();
  let sent = 0;
  let err;
  try {
    for (; sent < 5000; sent++) pub.publish(makeMsg(sent, ...SIZE));
  } catch (e) {
    err = e;
  }
  let got = 0;
  let bad = 0;
  for (let m; (m = sub.tryReceive()) !== undefined; got++) if (!check(m, got)) bad++;
  let again = 'sent';
  try { pub.tryPublish('x'); } catch (e) { again = e.code; }
  pub.close();
  other.close();
  out.topic = { sent, code: err?.code, message: err?.message, got, bad, again };
  rmSync(path);
}
console.log(JSON.stringify(out));
`);

// Fails without the fix: the producer reports every message sent, and the consumer gets zeros (for the
// channel, empty messages) where the pages could not be allocated.
test('out of space: a channel and a topic in sparse files on a full tmpfs: the producer gets ERR_MMAP_FAULTED saying "out of space", and the consumer every message reported sent, whole', (t) => {
  const r = inSmallTmpfs(t, OUT_OF_SPACE);
  if (r.skip !== undefined) return t.skip(r.skip);
  for (const kind of ['channel', 'topic']) {
    const c = r[kind];
    assert.equal(c.code, FAULTED, `${kind}: the producer got ${c.code} after ${c.sent} messages: ${c.message}`);
    assert.match(c.message, /out of space/, kind);
    // About 1,000 messages of about 1 KB fill 1 MiB; the lane or ring would hold over 4,000.
    assert.ok(c.sent > 100 && c.sent < 2000, `${kind}: ${c.sent} messages sent into a 4 MiB ring on a 1 MiB file system`);
    assert.equal(c.bad, 0, `${kind}: ${c.bad} of the messages received are not the ones sent`);
    assert.equal(c.got, c.sent, `${kind}: ${c.sent} reported sent, ${c.got} received`);
    assert.equal(c.again, FAULTED, kind);
  }
  assert.equal(r.channel.end, null, 'the consumer sees the end of the stream once the producer closed');
});

// A fault in one mapping says nothing about another: the count of repaired faults is per process.
test('a fault in another mapping of this process leaves a channel and a topic working', (t) => {
  const dir = tempDir(t);
  const ch = Channel.create(join(dir, 'channel'), { laneSize: 65536, maxMessageSize: 256 });
  const topic = Topic.create(join(dir, 'topic'), { capacity: 65536, maxMessageSize: 256 });
  t.after(() => {
    ch.close();
    topic.close();
  });
  const sub = topic.subscribe();
  ch.send(makeMsg(0));
  topic.publish(makeMsg(0));
  // Another channel in this process faults.
  const { path, consumer } = channelPair(t, 5);
  truncateSync(path, 4096);
  throwsCode(() => consumer.receive(0), FAULTED);
  sequence().take(ch.receive(0));
  sequence().take(sub.receive(0));
  ch.send(makeMsg(1));
  topic.publish(makeMsg(1));
  sequence(1).take(ch.receive(0));
  sequence(1).take(sub.receive(0));
  rmSync(path, { force: true });
});
