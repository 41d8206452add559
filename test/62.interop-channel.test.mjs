// Interop of Channel with a real C program: test/fixtures/channel-peer.c, compiled here with cc, knows
// nothing of mmapkit but docs/channel-layout.md. Node creates a channel in named POSIX shared memory; the
// C peer opens it with shm_open + mmap (MAP_SHARED), checks the header, and is a producer or a consumer
// following the documented protocol: table entries, Vyukov slots, sleeping on the futex words with the
// sleeper counts, end of stream, and the repair of slots left behind by dead parties. If these tests
// pass, docs/channel-layout.md is the whole contract.
//
// Messages carry producer id, sequence number and checksum, with sizes and bodies drawn from a seed by
// the same functions here and in the C peer (makeMessage / msg_make), so every consumer checks every
// message it gets. Every child process has a timeout, and every wait in the C peer has one too (exit 3).
// MMAPKIT_CHANNEL_PEER_C=path runs the tests against another copy of the C peer (to check that a broken
// peer fails them).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { CHANNEL, Channel, SharedMemory } from '../dist/index.js';
import { assertKilled, assertOk as assertStdout, asleepInFutex, compileC, exitedFirst, have, killIfRunning, startProc, until, xorshift32 } from './helpers.mjs';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');
const PEER_C = process.env.MMAPKIT_CHANNEL_PEER_C ?? join(FIXTURES, 'channel-peer.c');
const DIST = new URL('../dist/index.js', import.meta.url).href;

const PEER_TIMEOUT_MS = 60_000; // kill a child (SIGKILL) that runs longer than this
const WAIT_MS = 10_000; // any single wait in these tests
/** asleepInFutex: fail after WAIT_MS; where /proc/PID/wchan tells nothing, pause 100 ms instead. */
const ASLEEP = Object.freeze({ ms: WAIT_MS, fallbackMs: 100 });
const MAX_MESSAGE = 1000; // not a multiple of 64: slots of align64(16 + 1000) = 1024 bytes
const OPTIONS = Object.freeze({ capacity: 16, maxMessageSize: MAX_MESSAGE, maxProducers: 8, maxConsumers: 8 });
const MAGIC = 0x48434b4d; // 'MKCH'
const ATTACHED = 1;
const CLOSED = 2;
const TORN = -1;

const HAVE_CC = have('cc');

// ---------------------------------------------------------------------------------------------
// Messages: the same functions as msg_make in channel-peer.c. Message `seq` of producer `id` is
// u32 id | u32 seq | u32 checksum | body; key = mix32(seed ^ mix32(id * 0x9e3779b9 + seq)) gives its size
// (every 16th the largest, every 16th the smallest, 12) and the xorshift32 stream of its body. The
// checksum is FNV-1a 32 over bytes 0-7 and 12-end. These are function declarations without outside
// references (xorshift32 from helpers.mjs too): NODE_CHILD embeds their source.

function mix32(x) {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

function fnv1a(h, buf, from, to) {
  for (let i = from; i < to; i++) h = Math.imul(h ^ buf[i], 0x01000193) >>> 0;
  return h;
}

function makeMessage(seed, id, seq, max) {
  const key = mix32((seed ^ mix32((Math.imul(id, 0x9e3779b9) + seq) >>> 0)) >>> 0);
  const size = (key & 15) === 0 ? max : (key & 15) === 1 ? 12 : 12 + ((key >>> 4) % (max - 11));
  const b = Buffer.alloc(size);
  b.writeUInt32LE(id, 0);
  b.writeUInt32LE(seq, 4);
  let x = (key | 1) >>> 0;
  for (let j = 12; j < size; j += 4) {
    x = xorshift32(x);
    for (let k = 0; k < 4 && j + k < size; k++) b[j + k] = (x >>> (8 * k)) & 0xff;
  }
  b.writeUInt32LE(fnv1a(fnv1a(0x811c9dc5, b, 0, 8), b, 12, size), 8);
  return b;
}

const MESSAGE_CODE = [xorshift32, mix32, fnv1a, makeMessage].map(String).join('\n');

/**
 * Check one received message against what producer id sent as its message seq; `expected` maps the
 * producer ids to their message counts. Returns [id, seq].
 */
function checkMessage(msg, seed, expected, what) {
  if (!Buffer.isBuffer(msg)) assert.fail(`${what}: ${msg} instead of a message`);
  if (msg.length < 12) assert.fail(`${what}: ${msg.length} bytes, shorter than id, seq and checksum`);
  const id = msg.readUInt32LE(0);
  const seq = msg.readUInt32LE(4);
  if (!expected.has(id)) assert.fail(`${what}: producer id ${id} was not expected`);
  if (seq >= expected.get(id)) assert.fail(`${what}: producer ${id} seq ${seq}, expected below ${expected.get(id)}`);
  const sum = fnv1a(fnv1a(0x811c9dc5, msg, 0, 8), msg, 12, msg.length);
  if (sum !== msg.readUInt32LE(8)) {
    assert.fail(`${what} (producer ${id} seq ${seq}, ${msg.length} bytes): checksum 0x${msg.readUInt32LE(8).toString(16)}, computed 0x${sum.toString(16)}`);
  }
  const want = makeMessage(seed, id, seq, MAX_MESSAGE);
  if (want.length !== msg.length) assert.fail(`${what} (producer ${id} seq ${seq}): ${msg.length} bytes, expected ${want.length}`);
  if (!want.equals(msg)) assert.fail(`${what} (producer ${id} seq ${seq}): the bytes differ from the ones sent`);
  return [id, seq];
}

/** Records what one consumer got: per producer, the seqs in arrival order, strictly increasing. */
class Tally {
  constructor(label) {
    this.label = label;
    this.seqs = new Map();
  }
  add(id, seq) {
    const list = this.seqs.get(id) ?? [];
    if (list.length > 0 && seq <= list.at(-1)) {
      assert.fail(`${this.label}: producer ${id} seq ${seq} after seq ${list.at(-1)}: duplicated or out of order`);
    }
    list.push(seq);
    this.seqs.set(id, list);
  }
  count() {
    let n = 0;
    for (const list of this.seqs.values()) n += list.length;
    return n;
  }
}

// ---------------------------------------------------------------------------------------------
// Child processes: the C peer and a Node producer. Every spawn has a timeout (SIGKILL).

/**
 * A Node producer in its own process:
 *   produce <name> <id> <n> <seed> <others> [wait]: wait until `others` other producers have attached
 *     (read from the producer table), then send messages 0..n-1 (send and sendAsync in turn) with wait
 *     strategy `wait` (default 'block'), and close.
 *   reserve-die <name> <id> <k> <seed>: send k messages, reserve() a slot, write into it, print
 *     "reserved pos=<position>", and wait to be killed.
 */
const NODE_CHILD = `
import { CHANNEL, Channel, SharedMemory } from ${JSON.stringify(DIST)};
${MESSAGE_CODE}
const [mode, name, idArg, nArg, seedArg, extra, wait = 'block'] = process.argv.slice(1);
const [id, n, seed] = [Number(idArg), Number(nArg), Number(seedArg)];
const fail = (msg) => { console.error('node child ' + mode + ': ' + msg); process.exit(1); };
const shm = SharedMemory.open(name);
const i32 = new Int32Array(shm.buffer.buffer, shm.buffer.byteOffset, shm.size >>> 2);
const ch = Channel.open(shm, { wait });
const producers = i32[CHANNEL.PRODUCERS_OFFSET >>> 2];
/** Producer entries with a pid that are attached or closed. */
const attached = () => {
  let k = 0;
  for (let i = 0; i < i32[CHANNEL.MAX_PRODUCERS >>> 2]; i++) {
    const e = (producers + i * CHANNEL.ENTRY_SIZE) >>> 2;
    const state = Atomics.load(i32, e + (CHANNEL.ENTRY_STATE >>> 2));
    if (Atomics.load(i32, e + (CHANNEL.ENTRY_PID >>> 2)) !== 0 && (state === ${ATTACHED} || state === ${CLOSED})) k++;
  }
  return k;
};
// Made before the first send, so that sending runs as fast as it can (and contends with the others).
const messages = Array.from({ length: n }, (_, i) => makeMessage(seed, id, i, ${MAX_MESSAGE}));
if (mode === 'produce') {
  // Start with the others: wait until they have attached (we attach with our first send).
  const deadline = Date.now() + ${WAIT_MS};
  while (attached() < Number(extra)) {
    if (Date.now() > deadline) fail('only ' + attached() + ' other producers attached');
  }
}
for (let i = 0; i < n; i++) {
  if (i % 2 === 0) ch.send(messages[i], ${WAIT_MS});
  else await ch.sendAsync(messages[i], ${WAIT_MS});
}
if (mode === 'produce') {
  ch.close();
  console.log('ok produce id=' + id + ' n=' + n);
} else if (mode === 'reserve-die') {
  const r = ch.reserve(${WAIT_MS});
  r.buffer.fill(0xee, 0, 100);
  console.log('reserved pos=' + ((Atomics.load(i32, CHANNEL.TAIL >>> 2) - 1) | 0));
  setTimeout(() => fail('was not killed'), 20_000);
} else {
  fail('unknown mode');
}
`;

/** The last line of stdout must match (consumers with list=1 print a line per message before it); returns the match. */
function assertOk(res, pattern) {
  return assertStdout(res, pattern, { lastLine: true });
}

/** Wait for a line of p's stdout matching pattern; returns the match. */
async function line(p, pattern) {
  let m = null;
  await until(() => (m = p.stdout().match(pattern)) !== null, [p], `${p.label} printing ${pattern}`, WAIT_MS);
  return m;
}

// ---------------------------------------------------------------------------------------------

describe('interop of Channel with a C producer and consumer', { skip: HAVE_CC ? false : 'cc not found' }, () => {
  let dir;
  let peerBin;
  let shmNo = 0;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'mmapkit-interop-channel-'));
    // -I: a copy of the peer elsewhere (MMAPKIT_CHANNEL_PEER_C) finds peer-common.h here too.
    peerBin = compileC(PEER_C, join(dir, 'channel-peer'), { cflags: ['-I', FIXTURES], libs: ['-lrt'] });
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /**
   * A fresh channel in named shared memory; its handles, children and name go when the test ends.
   * The test keeps its own SharedMemory (`shm`, `i32`) to look at the words.
   */
  function setup(t, options = OPTIONS) {
    const name = `/mmapkit-62-${process.pid}-${++shmNo}-${Math.random().toString(36).slice(2, 8)}`;
    const shm = SharedMemory.create(name, Channel.byteLength(options));
    const procs = [];
    const handles = [];
    t.after(async () => {
      for (const p of procs) killIfRunning(p);
      await Promise.all(procs.map((p) => p.done.catch(() => {})));
      for (const h of handles) h.close();
      shm.close();
      try {
        SharedMemory.unlink(name);
      } catch {}
    });
    handles.push(Channel.create(shm, { ...options, wait: 'block' }));
    const i32 = new Int32Array(shm.buffer.buffer, shm.buffer.byteOffset, shm.size >>> 2);
    const u32 = (off) => shm.buffer.readUInt32LE(off);
    const s = {
      name,
      shm,
      i32,
      /** A new handle on the channel (closed when the test ends). */
      open(opts) {
        const h = Channel.open(shm, opts);
        handles.push(h);
        return h;
      },
      /** The C peer: channel-peer <mode> <name> [args]. */
      peer(mode, args = [], opts) {
        const p = startProc([peerBin, mode, name, ...args], `channel-peer ${mode} ${args.join(' ')}`.trim(), { timeout: PEER_TIMEOUT_MS, ...opts });
        procs.push(p);
        return p;
      },
      /** A Node producer process (NODE_CHILD). */
      nodeChild(mode, ...args) {
        const p = startProc([process.execPath, '--input-type=module', '-e', NODE_CHILD, mode, name, ...args], `node child ${mode} ${args.join(' ')}`, {
          timeout: PEER_TIMEOUT_MS,
        });
        procs.push(p);
        return p;
      },
      word: (off) => Atomics.load(i32, off >>> 2),
      /** Byte offset of a position's slot. */
      slot: (pos) => u32(CHANNEL.SLOTS_OFFSET) + (pos & (u32(CHANNEL.CAPACITY) - 1)) * u32(CHANNEL.SLOT_SIZE),
      /** The producer (or consumer) table entry of pid: { index, pid, state, position, busy }. */
      entry(table, pid) {
        const off = u32(table === 'producers' ? CHANNEL.PRODUCERS_OFFSET : CHANNEL.CONSUMERS_OFFSET);
        const n = u32(table === 'producers' ? CHANNEL.MAX_PRODUCERS : CHANNEL.MAX_CONSUMERS);
        for (let i = 0; i < n; i++) {
          const e = off + i * CHANNEL.ENTRY_SIZE;
          if (s.word(e + CHANNEL.ENTRY_PID) === pid) {
            return { index: i, pid, state: s.word(e + CHANNEL.ENTRY_STATE), position: s.word(e + CHANNEL.ENTRY_POSITION), busy: s.word(e + CHANNEL.ENTRY_BUSY) };
          }
        }
        return undefined;
      },
    };
    return s;
  }

  // ------------------------------------------------------------------------------------- header

  test('the C peer finds every header field where docs/channel-layout.md says, with the geometry it computes itself', async (t) => {
    for (const options of [OPTIONS, { capacity: 1000, maxMessageSize: 1, maxProducers: 1, maxConsumers: 5 }, { capacity: 2, maxMessageSize: 4032, maxProducers: 64, maxConsumers: 64 }]) {
      const s = setup(t, options);
      const m = assertOk(
        await s.peer('check').done,
        /^ok channel capacity=(\d+) slot-size=(\d+) max-message=(\d+) producers=(\d+)@(\d+) consumers=(\d+)@(\d+) slots@(\d+) total=(\d+) flags=(\d+)$/,
      );
      const h = (off) => s.shm.buffer.readUInt32LE(off);
      assert.deepEqual(m.slice(1).map(Number), [
        h(CHANNEL.CAPACITY),
        h(CHANNEL.SLOT_SIZE),
        options.maxMessageSize,
        options.maxProducers,
        h(CHANNEL.PRODUCERS_OFFSET),
        options.maxConsumers,
        h(CHANNEL.CONSUMERS_OFFSET),
        h(CHANNEL.SLOTS_OFFSET),
        Channel.byteLength(options),
        0,
      ]);
      assert.equal(h(CHANNEL.CAPACITY), 2 ** Math.ceil(Math.log2(options.capacity)));
      assert.equal(h(CHANNEL.MAGIC), MAGIC);
    }
  });

  test('the C peer rejects a corrupted header, naming the field, and a channel larger than the memory', async (t) => {
    const s = setup(t);
    const buf = s.shm.buffer;
    const total = Channel.byteLength(OPTIONS);
    // [field, offset, width, bad value, the message after "bad channel header: "]
    const cases = [
      ['magic', CHANNEL.MAGIC, 4, 0x48434b4e, 'magic is 0x48434b4e, expected 0x48434b4d (\'MKCH\')'],
      ['version', CHANNEL.VERSION, 2, 3, 'version is 3, expected 2'],
      ['header size', CHANNEL.HEADER_SIZE, 2, 16, 'header size is 16, expected 64'],
      ['capacity', CHANNEL.CAPACITY, 4, 24, 'capacity 24 is not a power of two from 2 to 2^24'],
      ['capacity', CHANNEL.CAPACITY, 4, 2 ** 25, 'capacity 33554432 is not a power of two from 2 to 2^24'],
      ['slot size', CHANNEL.SLOT_SIZE, 4, 1088, 'slot size is 1088, expected 1024'],
      ['max message', CHANNEL.MAX_MESSAGE, 4, 0, 'max message 0 is not from 1 to 1073741760'],
      ['max message', CHANNEL.MAX_MESSAGE, 4, 1009, 'slot size is 1024, expected 1088'],
      ['max producers', CHANNEL.MAX_PRODUCERS, 4, 0, 'max producers 0 is not from 1 to 4096'],
      ['max consumers', CHANNEL.MAX_CONSUMERS, 4, 5000, 'max consumers 5000 is not from 1 to 4096'],
      ['max consumers', CHANNEL.MAX_CONSUMERS, 4, 9, 'slots offset is 576, expected 640'],
      ['producers offset', CHANNEL.PRODUCERS_OFFSET, 4, 384, 'producers offset is 384, expected 320'],
      ['consumers offset', CHANNEL.CONSUMERS_OFFSET, 4, 320, 'consumers offset is 320, expected 448'],
      ['slots offset', CHANNEL.SLOTS_OFFSET, 4, 0, 'slots offset is 0, expected 576'],
      ['total size', CHANNEL.TOTAL_SIZE_LO, 4, total + 64, `total size is ${total + 64}, expected ${total}`],
      ['total size', CHANNEL.TOTAL_SIZE_HI, 4, 1, `total size is ${total + 2 ** 32}, expected ${total}`],
    ];
    for (const [field, at, width, bad, message] of cases) {
      const read = () => (width === 4 ? buf.readUInt32LE(at) : buf.readUInt16LE(at));
      const good = read();
      if (width === 4) buf.writeUInt32LE(bad, at);
      else buf.writeUInt16LE(bad, at);
      try {
        const res = await s.peer('check').done;
        assert.equal(res.status, 1, `a bad ${field} (${bad}): status ${res.status}, stdout ${res.stdout}`);
        assert.equal(res.stderr.trim(), `channel-peer.c: bad channel header: ${message}`, `a bad ${field} (${bad})`);
      } finally {
        if (width === 4) buf.writeUInt32LE(good, at);
        else buf.writeUInt16LE(good, at);
      }
    }
    assertOk(await s.peer('check').done, /^ok channel/);

    // A good header in memory too small for the channel it describes: never read past the end.
    const small = `${s.name}-small`;
    const shm2 = SharedMemory.create(small, 4096);
    t.after(() => {
      shm2.close();
      SharedMemory.unlink(small);
    });
    buf.copy(shm2.buffer, 0, 0, 4096);
    const res = await startProc([peerBin, 'check', small], 'channel-peer check (small)', { timeout: PEER_TIMEOUT_MS }).done;
    assert.equal(res.status, 1, res.stderr);
    assert.equal(res.stderr.trim(), `channel-peer.c: bad channel header: total size ${total} is larger than the shared memory (4096 bytes)`);
  });

  test('a message length out of range in a slot is reported as corruption by the C consumer, never read', async (t) => {
    const s = setup(t);
    const prod = s.open();
    for (const [bad, seq] of [[MAX_MESSAGE + 1, 0], [-2, 1], [0x7fffffff, 2]]) {
      prod.send(makeMessage(1, 1, seq, MAX_MESSAGE));
      s.i32[(s.slot(seq) + CHANNEL.SLOT_LENGTH) >>> 2] = bad;
      const res = await s.peer('consume', ['1', 'expect=1:3']).done;
      assert.equal(res.status, 1, res.stderr);
      assert.equal(res.stderr.trim(), `channel-peer.c: corrupt channel: message length ${bad} at position ${seq} (max ${MAX_MESSAGE})`);
      assert.equal(s.word(s.slot(seq)), seq + OPTIONS.capacity, 'the C consumer released the slot it reported');
    }
  });

  // ------------------------------------------------------------------------------------- C -> Node

  test('a C producer sends 20000 messages to a Node consumer, which checks each and sees the end when C closes', async (t) => {
    const s = setup(t);
    const n = 20_000;
    const seed = 0x2545f491;
    // Pauses let the Node consumer run dry and sleep, so that the C producer must wake it.
    const c = s.peer('produce', ['1', n, seed, 'pause-every=1000', 'pause-ms=5', 'linger=1'], { stdin: 'pipe' });
    const cons = s.open();
    const expected = new Map([[1, n]]);
    for (let i = 0; i < n; i++) {
      const msg = i % 2 === 0 ? cons.receive(WAIT_MS) : await cons.receiveAsync(WAIT_MS);
      const [, seq] = checkMessage(msg, seed, expected, `message ${i}`);
      assert.equal(seq, i, 'one producer, one consumer: in order');
    }
    // The end of the stream: the C producer has closed its entry and lingers, alive.
    assert.equal(await cons.receiveAsync(WAIT_MS), null);
    assert.equal(cons.receive(WAIT_MS), null);
    assert.equal(cons.ended, true);
    assert.equal(c.result, undefined, 'the C producer is still running: the end came from its close, not its death');
    const e = s.entry('producers', c.child.pid);
    assert.ok(e, 'the C producer has an entry with its pid');
    assert.equal(e.state, CLOSED);
    assert.equal(s.word(CHANNEL.FLAGS) & 1, 1, 'FLAGS bit 0: a producer attached');
    assert.equal(s.word(CHANNEL.TAIL), n);
    assert.equal(s.word(CHANNEL.HEAD), n);
    c.child.stdin.end();
    const m = assertOk(await c.done, new RegExp(`^ok produce id=1 n=${n} full=(\\d+) slept=(\\d+) woke=(\\d+)$`));
    t.diagnostic(`the C producer found the queue full ${m[1]} times, slept ${m[2]} times, woke the Node consumer ${m[3]} times`);
    assert.ok(Number(m[3]) > 0, 'the C producer never woke a sleeping consumer: the Node consumer did not sleep, or C did not wake it');
    assert.equal(s.word(CHANNEL.CONSUMER_SLEEPERS), 0);
    assert.equal(s.word(CHANNEL.PRODUCER_SLEEPERS), 0);
  });

  // ------------------------------------------------------------------------------------- Node -> C

  test('a Node producer sends 20000 messages to a C consumer, which checks each and sees the end when Node closes', async (t) => {
    const s = setup(t);
    const n = 20_000;
    const seed = 0x9e3779b9;
    // Pauses let the queue fill, so that the Node producer sleeps and the C consumer must wake it.
    const c = s.peer('consume', [seed, `expect=2:${n}`, 'all=1', 'pause-every=1000', 'pause-ms=5']);
    const prod = s.open();
    let full = 0;
    for (let i = 0; i < n; i++) {
      const msg = makeMessage(seed, 2, i, MAX_MESSAGE);
      if (prod.size === OPTIONS.capacity) full++;
      if (i % 2 === 0) prod.send(msg, WAIT_MS);
      else await prod.sendAsync(msg, WAIT_MS);
    }
    assert.equal(c.result, undefined, 'the C consumer waits for more until the producer closes');
    prod.close();
    const m = assertOk(await c.done, new RegExp(`^ok consume n=${n} torn=0 repaired=0 slept=(\\d+) timeouts=(\\d+) woke=(\\d+) got=2:${n}$`));
    t.diagnostic(`Node found the queue full ${full} times; the C consumer slept ${m[1]} times (${m[2]} timeouts) and woke the Node producer ${m[3]} times`);
    assert.ok(full > 0, 'the queue was never full: the test did not make the producer wait');
    assert.ok(Number(m[3]) > 0, 'the C consumer never woke a sleeping producer: the Node producer did not sleep, or C did not wake it');
    assert.ok(s.word(CHANNEL.NOT_FULL) > 0, 'nobody ever bumped NOT_FULL');
    assert.equal(s.word(CHANNEL.HEAD), n);
    assert.equal(s.entry('consumers', c.child.pid), undefined, 'the C consumer freed its entry (pid 0) when done');
  });

  // ------------------------------------------------------------------------------------- mixed

  test('a C and a Node producer into a Node and a C consumer at once: every message exactly once, in order per producer', async (t) => {
    const s = setup(t, { ...OPTIONS, capacity: 32 });
    const n = 30_000; // per producer: enough for the claims of both sides to collide now and then
    const seed = 0x1234567;
    const expected = new Map([[1, n], [2, n]]);
    const cc = s.peer('consume', [seed, `expect=1:${n},2:${n}`, 'list=1']);
    const nodeCons = s.open();
    // The producers start together: the C one attaches and waits for a second producer, the Node one
    // waits for the C one and attaches with its first send. (And neither can close before the other
    // attached: a producer attaching after every other one closed and the queue ran dry would come
    // after the end of the stream.)
    const cp = s.peer('produce', ['1', n, seed, 'await-producers=2']);
    const np = s.nodeChild('produce', 2, n, seed, 1, 'spin');
    // Checked after the end, so that receiving runs as fast as it can (and contends with the C consumer).
    const received = [];
    for (;;) {
      const msg = await nodeCons.receiveAsync(WAIT_MS);
      if (msg === null) break;
      received.push(msg);
    }
    const mine = new Tally('the Node consumer');
    for (const [i, msg] of received.entries()) mine.add(...checkMessage(msg, seed, expected, `Node consumer, message ${i}`));
    assertOk(await cp.done, new RegExp(`^ok produce id=1 n=${n} `));
    assertOk(await np.done, new RegExp(`^ok produce id=2 n=${n}$`));
    const res = await cc.done;
    const m = assertOk(res, /^ok consume n=(\d+) torn=0 repaired=0 slept=\d+ timeouts=\d+ woke=\d+ got=1:(\d+),2:(\d+)$/);
    const theirs = new Tally('the C consumer');
    for (const l of res.stdout.split('\n')) {
      const lm = l.match(/^m (\d+) (\d+)$/);
      if (lm) theirs.add(Number(lm[1]), Number(lm[2]));
    }
    assert.equal(theirs.count(), Number(m[1]));
    t.diagnostic(`the Node consumer got ${mine.count()}, the C consumer ${m[1]} (of producer 1: ${m[2]}, of producer 2: ${m[3]})`);
    for (const [id, count] of expected) {
      const seen = new Array(count).fill(0);
      for (const tally of [mine, theirs]) for (const seq of tally.seqs.get(id) ?? []) seen[seq]++;
      const missing = seen.findIndex((k) => k === 0);
      const twice = seen.findIndex((k) => k > 1);
      assert.equal(missing, -1, `producer ${id}: message ${missing} was never received`);
      assert.equal(twice, -1, `producer ${id}: message ${twice} was received ${seen[twice]} times`);
    }
    assert.ok(mine.count() > 0 && theirs.count() > 0, 'both consumers got messages');
  });

  // ------------------------------------------------------------------------------------- sleeping

  test("a C consumer asleep in FUTEX_WAIT is woken by each Node send and by Node's close", async (t) => {
    const s = setup(t);
    const rounds = 3;
    const seed = 77;
    // slice-ms beyond the wait: only a FUTEX_WAKE can end a sleep before the 10 s deadline (exit 3).
    const c = s.peer('consume', [seed, `expect=2:${rounds}`, 'all=1', 'slice-ms=60000']);
    const prod = s.open();
    let observed = 0;
    for (let r = 0; r <= rounds; r++) {
      await until(() => s.word(CHANNEL.CONSUMER_SLEEPERS) === 1, [c], `round ${r}: the C consumer counted as a sleeper`, WAIT_MS);
      if (await asleepInFutex([c], `round ${r}: the C consumer asleep in the kernel`, ASLEEP)) observed++;
      await sleep(100); // and it stays asleep: nothing else wakes it
      exitedFirst([c], `round ${r}`);
      assert.equal(s.word(CHANNEL.CONSUMER_SLEEPERS), 1, `round ${r}: the C consumer woke up by itself`);
      if (r < rounds) assert.equal(prod.trySend(makeMessage(seed, 2, r, MAX_MESSAGE)), true);
      else prod.close(); // the end of the stream: close wakes every consumer
      if (r < rounds) await until(() => s.word(CHANNEL.HEAD) === r + 1, [c], `round ${r}: the C consumer took the message`, WAIT_MS);
    }
    const m = assertOk(await c.done, new RegExp(`^ok consume n=${rounds} torn=0 repaired=0 slept=(\\d+) timeouts=(\\d+) woke=0 got=2:${rounds}$`));
    t.diagnostic(`the C consumer slept ${m[1]} times, seen asleep in /proc/PID/wchan ${observed} times`);
    assert.equal(Number(m[2]), 0, 'a FUTEX_WAIT of the C consumer timed out');
    if (observed === rounds + 1) assert.ok(Number(m[1]) >= rounds + 1, `the C consumer was asleep ${observed} times, so Node had to wake it as often`);
    assert.equal(s.word(CHANNEL.CONSUMER_SLEEPERS), 0);
  });

  // ------------------------------------------------------------------------------------- fan-in (layout version 2)

  test("fan-in with create({ producers: 3 }): C producers one after the other, the last killed; the Node consumer sees every message, then an end that says 'producer-died'", async (t) => {
    const s = setup(t, { ...OPTIONS, producers: 3 });
    const seed = 0x51ed;
    const cons = s.open();
    const expected = new Map([[1, 8], [2, 8], [3, 10]]);
    // Each producer attaches only after the one before has closed and its messages are taken: without
    // `producers`, the end would come after the first.
    for (const id of [1, 2]) {
      assertOk(await s.peer('produce', [String(id), 8, seed]).done, new RegExp(`^ok produce id=${id} n=8 `));
      for (let i = 0; i < 8; i++) assert.deepEqual(checkMessage(cons.receive(WAIT_MS), seed, expected, `producer ${id} message ${i}`), [id, i]);
      assert.equal(cons.tryReceive(), undefined, `${id} of 3 producers have come and gone: not the end`);
      assert.equal(s.word(CHANNEL.PRODUCER_COUNT), id, 'the C producer counted its attach');
    }
    const c = s.peer('produce', ['3', 10, seed, 'die-after=4']);
    await line(c, /^dying pos=\d+$/m);
    c.child.kill('SIGKILL');
    assertKilled(await c.done);
    for (let i = 0; i < 4; i++) assert.deepEqual(checkMessage(cons.receive(WAIT_MS), seed, expected, `producer 3 message ${i}`), [3, i]);
    assert.equal(cons.receive(WAIT_MS), null, 'three producers attached, two closed, one dead: the end');
    assert.equal(cons.endReason, 'producer-died');
    assert.equal(s.word(CHANNEL.FLAGS) & 3, 3, 'FLAGS: a producer attached (bit 0), one went away without closing (bit 1)');
  });

  test('fan-in with create({ producers: 2 }): a C consumer waits through the first Node producer\'s close for the second', async (t) => {
    const s = setup(t, { ...OPTIONS, producers: 2 });
    const seed = 0x7a11;
    const c = s.peer('consume', [seed, 'expect=1:20,2:20', 'all=1']);
    const first = s.open();
    for (let i = 0; i < 20; i++) first.send(makeMessage(seed, 1, i, MAX_MESSAGE), WAIT_MS);
    first.close();
    await until(() => s.word(CHANNEL.HEAD) === 20, [c], 'the C consumer to take the first 20 messages', WAIT_MS);
    await sleep(300); // three of its 100 ms looks for the end
    assert.equal(c.result, undefined, 'one of two producers closed: the C consumer must still wait');
    const second = s.open();
    for (let i = 0; i < 20; i++) second.send(makeMessage(seed, 2, i, MAX_MESSAGE), WAIT_MS);
    second.close();
    assertOk(await c.done, /^ok consume n=40 torn=0 repaired=0 slept=\d+ timeouts=\d+ woke=\d+ got=1:20,2:20$/);
    assert.equal(s.word(CHANNEL.FLAGS) & 2, 0, 'both closed: no producer died');
  });

  // ------------------------------------------------------------------------------------- dead parties

  test('a C producer killed in the middle of a message: the Node consumer skips the torn slot and carries on', async (t) => {
    const s = setup(t);
    const seed = 5;
    const c = s.peer('produce', ['1', 10, seed, 'die-after=5']);
    const pos = Number((await line(c, /^dying pos=(\d+)$/m))[1]);
    assert.equal(pos, 5);
    const e = s.entry('producers', c.child.pid);
    assert.deepEqual([e.state, e.position, e.busy], [ATTACHED, pos, 1], "the C producer's entry claims the position it is writing");
    const prod = s.open();
    for (let i = 0; i < 5; i++) prod.send(makeMessage(seed, 2, i, MAX_MESSAGE), WAIT_MS);
    const cons = s.open();
    const expected = new Map([[1, 10], [2, 5]]);
    for (let i = 0; i < 5; i++) assert.deepEqual(checkMessage(cons.receive(WAIT_MS), seed, expected, `message ${i}`), [1, i]);
    await sleep(10);
    assert.equal(cons.tryReceive(), undefined, 'the slot is unpublished and its producer alive: wait');
    c.child.kill('SIGKILL');
    assertKilled(await c.done);
    for (let i = 0; i < 5; i++) assert.deepEqual(checkMessage(cons.receive(WAIT_MS), seed, expected, `message ${5 + i}`), [2, i]);
    assert.equal(s.i32[(s.slot(pos) + CHANNEL.SLOT_LENGTH) >>> 2], TORN, 'the consumer marked the slot torn');
    prod.close();
    assert.equal(cons.receive(WAIT_MS), null, 'the end: one producer closed, the other dead');
  });

  test('a Node producer killed holding a reservation: the C consumer repairs the torn slot and carries on', async (t) => {
    const s = setup(t);
    const seed = 6;
    const k = s.nodeChild('reserve-die', 1, 5, seed);
    const pos = Number((await line(k, /^reserved pos=(\d+)$/m))[1]);
    assert.equal(pos, 5);
    assertOk(await s.peer('produce', ['2', 5, seed]).done, /^ok produce id=2 n=5 /);
    k.child.kill('SIGKILL');
    assertKilled(await k.done);
    const c = s.peer('consume', [seed, 'expect=1:5,2:5', 'all=1', 'list=1']);
    const res = await c.done;
    assertOk(res, /^ok consume n=10 torn=1 repaired=1 slept=\d+ timeouts=\d+ woke=0 got=1:5,2:5$/);
    assert.deepEqual(
      res.stdout.split('\n').filter((l) => l.startsWith('m ')),
      [0, 1, 2, 3, 4].map((i) => `m 1 ${i}`).concat([0, 1, 2, 3, 4].map((i) => `m 2 ${i}`)),
    );
    assert.equal(s.i32[(s.slot(pos) + CHANNEL.SLOT_LENGTH) >>> 2], TORN);
    assert.equal(s.word(s.slot(pos)), pos + OPTIONS.capacity, 'the torn slot was released for the next lap');
  });

  test('a C consumer killed holding a message: the Node producer frees its slot (the message is lost with it)', async (t) => {
    const s = setup(t, { ...OPTIONS, capacity: 4 });
    const seed = 7;
    const prod = s.open();
    for (let i = 0; i < 4; i++) prod.send(makeMessage(seed, 2, i, MAX_MESSAGE), WAIT_MS);
    const c = s.peer('consume', [seed, 'expect=2:6', 'hold-after=1']);
    const pos = Number((await line(c, /^holding pos=(\d+)$/m))[1]);
    assert.equal(pos, 1);
    const e = s.entry('consumers', c.child.pid);
    assert.deepEqual([e.position, e.busy], [pos, 1], "the C consumer's entry claims the position it holds");
    assert.equal(prod.trySend(makeMessage(seed, 2, 4, MAX_MESSAGE)), true, 'the slot the C consumer released is free');
    assert.equal(prod.trySend(makeMessage(seed, 2, 5, MAX_MESSAGE)), false, 'the slot the live C consumer holds is not');
    c.child.kill('SIGKILL');
    assertKilled(await c.done);
    prod.send(makeMessage(seed, 2, 5, MAX_MESSAGE), WAIT_MS); // frees the dead consumer's slot
    prod.close();
    const cons = s.open();
    const expected = new Map([[2, 6]]);
    for (const want of [2, 3, 4, 5]) assert.deepEqual(checkMessage(cons.receive(WAIT_MS), seed, expected, `seq ${want}`), [2, want]);
    assert.equal(cons.receive(WAIT_MS), null);
  });
});
