// Interop of Channel (layout version 3) with a real C program: test/fixtures/channel-peer.c, compiled here
// with cc, knows nothing of mmapkit but docs/channel-layout.md. Node creates a channel in named POSIX shared
// memory; the C peer opens it with shm_open + mmap (MAP_SHARED, between two PROT_NONE guard pages), checks the
// header, and is a producer or a consumer following the documented protocol: one lane (a single-producer
// byte ring) per producer with one store of LANE_WRITE per batch and padding at the wrap, consumers locking a
// lane per poll, the consumer table with generations, sleeping on the futex words (a sleeper count for
// consumers; a flag for a lane's producer, woken once per sleep when a quarter of its lane is free), end of
// stream (FLAGS bit 1 for a dead producer), garbage handling (the lane resynced to LANE_WRITE exactly; a
// producer storing its write position again), and the repair of lanes held by dead consumers or with a
// consumer's own lock value. If these tests pass, docs/channel-layout.md is the whole contract.
//
// Messages carry producer id, sequence number and checksum, with sizes and bodies drawn from a seed by the
// same functions here and in the C peer (makeMessage / msg_make), so every consumer checks every message it
// gets. Every child process has a timeout, every wait here has one, and every wait in the C peer too (exit 3).
// MMAPKIT_CHANNEL_PEER_C=path runs the tests against another copy of the C peer (to check that a broken peer
// fails them).
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { CHANNEL, Channel, SharedMemory } from '../dist/index.js';
import { assertKilled, buildPeer, shmName as sharedName, assertOk as assertStdout, asleepInFutex, exitedFirst, have, startProc, throwsCode, until, xorshift32 } from './helpers.mjs';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');
const PEER_C = process.env.MMAPKIT_CHANNEL_PEER_C ?? join(FIXTURES, 'channel-peer.c');
const DIST = new URL('../dist/index.js', import.meta.url).href;

const PEER_TIMEOUT_MS = 120_000; // kill a child (SIGKILL) that runs longer than this
const WAIT_MS = 20_000; // any single wait in these tests (the C peer gives up after 20 s too)
/** asleepInFutex: fail after WAIT_MS; where /proc/PID/wchan tells nothing, pause 100 ms instead. */
const ASLEEP = Object.freeze({ ms: WAIT_MS, fallbackMs: 100 });
const MAX_MESSAGE = 1000; // not a multiple of 8: records of align8(8 + n) bytes
// Lanes of 8 KiB: about 16 of these messages, so that producers find their lane full and sleep.
const OPTIONS = Object.freeze({ laneSize: 8192, maxMessageSize: MAX_MESSAGE, maxProducers: 8, maxConsumers: 8 });
const MAGIC = 0x48434b4d; // 'MKCH'
const ATTACHED = 1;
const CLOSED = 2;
const PAD = -1;

const HAVE_CC = have('cc');

// ---------------------------------------------------------------------------------------------
// docs/channel-layout.md, computed here on its own (not with the library's layout module).

const align8 = (n) => Math.ceil(n / 8) * 8;
const align128 = (n) => Math.ceil(n / 128) * 128;
/** record(n): the bytes a message of n bytes takes in a ring. */
const recordSize = (n) => align8(8 + n);

/** The geometry of the header table's formulas, for options that give laneSize. */
function docGeometry({ laneSize, maxMessageSize, maxProducers, maxConsumers }) {
  const lanesOffset = 256;
  const consumersOffset = lanesOffset + 256 * maxProducers;
  const ringsOffset = align128(consumersOffset + 16 * maxConsumers);
  return { laneSize, maxMessageSize, maxProducers, maxConsumers, lanesOffset, consumersOffset, ringsOffset, totalSize: ringsOffset + maxProducers * laneSize };
}

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

/** The "m <id> <seq>" (or "h <id> <seq>") lines of a C consumer's stdout, as [id, seq] pairs. */
function listed(stdout, tag = 'm') {
  const out = [];
  for (const l of stdout.split('\n')) {
    const m = l.match(new RegExp(`^${tag} (\\d+) (\\d+)$`));
    if (m) out.push([Number(m[1]), Number(m[2])]);
  }
  return out;
}

/** key=value and key@value pairs of a line, as numbers (end=... stays a string). */
function fieldsOf(line) {
  const o = {};
  for (const [, k, v] of line.matchAll(/([a-z-]+)[=@](\S+)/g)) o[k] = /^-?\d+$|^0x[0-9a-f]+$/.test(v) ? Number(v) : v;
  return o;
}

// Node consumers in this process: every receive method in turn, each message copied out.
const intoTarget = Buffer.alloc(16 * 1024);
const intoLengths = new Uint32Array(8);

function unpackInto(n) {
  const out = [];
  for (let i = 0, pos = 0; i < n; pos += intoLengths[i], i++) out.push(Buffer.from(intoTarget.subarray(pos, pos + intoLengths[i])));
  return out;
}

/** Some messages by method k % 4 (receive, receiveMany, receiveInto, drain); null at the end. */
function takeSome(ch, k) {
  switch (k % 4) {
    case 0: {
      const m = ch.receive(WAIT_MS);
      return m === null ? null : [m];
    }
    case 1:
      return ch.receiveMany(5, WAIT_MS);
    case 2: {
      const n = ch.receiveInto(intoTarget, intoLengths, WAIT_MS);
      return n === null ? null : unpackInto(n);
    }
    default: {
      const out = [];
      const n = ch.drain((buf, off, len) => out.push(Buffer.from(buf.subarray(off, off + len))), 6, WAIT_MS);
      return n === null ? null : out;
    }
  }
}

/**
 * Every message until the end of the stream (receive()), and the ERR_MMAP_CHANNEL_CORRUPT errors met on
 * the way (more than 10 fail: garbage that never clears).
 */
function takeAll(ch) {
  const got = [];
  const errors = [];
  for (;;) {
    let m;
    try {
      m = ch.receive(WAIT_MS);
    } catch (err) {
      if (err?.code !== 'ERR_MMAP_CHANNEL_CORRUPT' || errors.length >= 10) throw err;
      errors.push(err);
      continue;
    }
    if (m === null) return { got, errors };
    got.push(m);
  }
}

/** takeSome with the async methods (receiveAsync, receiveManyAsync, receiveIntoAsync, drainAsync). */
async function takeSomeAsync(ch, k) {
  switch (k % 4) {
    case 0: {
      const m = await ch.receiveAsync(WAIT_MS);
      return m === null ? null : [m];
    }
    case 1:
      return ch.receiveManyAsync(5, WAIT_MS);
    case 2: {
      const n = await ch.receiveIntoAsync(intoTarget, intoLengths, WAIT_MS);
      return n === null ? null : unpackInto(n);
    }
    default: {
      const out = [];
      const n = await ch.drainAsync((buf, off, len) => out.push(Buffer.from(buf.subarray(off, off + len))), 6, WAIT_MS);
      return n === null ? null : out;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Child processes: the C peer and Node producers and consumers. Every spawn has a timeout (SIGKILL).

/**
 * A Node party in its own process (argv: mode, shm name, then the mode's arguments):
 *   produce <id> <n> <seed> <count> [wait]: wait until PRODUCER_COUNT is at least <count> (other producers
 *     have attached), then send messages 0..n-1 (send, sendAsync and sendMany of 5 in turn) with wait
 *     strategy `wait` (default 'block'), and close.
 *   reserve-die <id> <k> <seed>: send messages 0..k-1, reserve() room for one more, write into it, print
 *     "reserved lane=<lane> write=<LANE_WRITE>", and wait to be killed.
 *   hold-inplace: take a message with receiveInPlace(), print "holding id=<id> seq=<seq> lane=<lane>
 *     reader=<LANE_READER>", and wait to be killed without releasing it.
 */
const NODE_CHILD = `
import { CHANNEL, Channel, SharedMemory } from ${JSON.stringify(DIST)};
${MESSAGE_CODE}
const [mode, name, ...args] = process.argv.slice(1);
const fail = (msg) => { console.error('node child ' + mode + ': ' + msg); process.exit(1); };
const shm = SharedMemory.open(name);
const i32 = new Int32Array(shm.buffer.buffer, shm.buffer.byteOffset, shm.size >>> 2);
const lanes = shm.buffer.readUInt32LE(CHANNEL.LANES_OFFSET);
const laneWord = (lane, off) => Atomics.load(i32, (lanes + lane * CHANNEL.LANE_CONTROL + off) >>> 2);
if (mode === 'produce') {
  const [id, n, seed, count] = args.slice(0, 4).map(Number);
  const ch = Channel.open(shm, { wait: args[4] ?? 'block' });
  // Made before the first send, so that sending runs as fast as it can (and contends with the others).
  const messages = Array.from({ length: n }, (_, i) => makeMessage(seed, id, i, ${MAX_MESSAGE}));
  const deadline = Date.now() + ${WAIT_MS};
  while ((Atomics.load(i32, CHANNEL.PRODUCER_COUNT >>> 2) >>> 0) < count) {
    if (Date.now() > deadline) fail('only ' + Atomics.load(i32, CHANNEL.PRODUCER_COUNT >>> 2) + ' producers attached');
  }
  for (let i = 0, k = 0; i < n; k++) {
    if (k % 3 === 0) ch.send(messages[i++], ${WAIT_MS});
    else if (k % 3 === 1) await ch.sendAsync(messages[i++], ${WAIT_MS});
    else {
      const batch = messages.slice(i, i + 5);
      ch.sendMany(batch, ${WAIT_MS});
      i += batch.length;
    }
  }
  ch.close();
  console.log('ok produce id=' + id + ' n=' + n);
} else if (mode === 'reserve-die') {
  const [id, k, seed] = args.map(Number);
  const ch = Channel.open(shm);
  for (let i = 0; i < k; i++) ch.send(makeMessage(seed, id, i, ${MAX_MESSAGE}), ${WAIT_MS});
  const r = ch.reserve(${WAIT_MS});
  makeMessage(seed, id, k, ${MAX_MESSAGE}).copy(r.buffer);
  console.log('reserved lane=' + ch.lane + ' write=' + (laneWord(ch.lane, CHANNEL.LANE_WRITE) >>> 0));
  setTimeout(() => fail('was not killed'), 60_000);
} else if (mode === 'hold-inplace') {
  const ch = Channel.open(shm);
  const m = ch.receiveInPlace(${WAIT_MS});
  if (m === null) fail('end of stream');
  let lane = -1;
  for (let i = 0; i < shm.buffer.readUInt32LE(CHANNEL.MAX_PRODUCERS); i++) if (laneWord(i, CHANNEL.LANE_READER) !== 0) lane = i;
  console.log('holding id=' + m.data.readUInt32LE(0) + ' seq=' + m.data.readUInt32LE(4) + ' lane=' + lane + ' reader=' + laneWord(lane, CHANNEL.LANE_READER));
  setTimeout(() => fail('was not killed'), 60_000);
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
  let peerBin;

  before(() => {
    // -I: a copy of the peer elsewhere (MMAPKIT_CHANNEL_PEER_C) finds peer-common.h here too.
    peerBin = buildPeer(PEER_C, 'channel-peer', { cflags: ['-I', FIXTURES], libs: ['-lrt'] });
  });

  /** A fresh shared memory name, POSIX style (unlinked when the test ends). */
  const shmName = (t) => `/${sharedName(t, '62')}`;

  /**
   * A fresh channel in named shared memory (`extra` bytes more than it needs); its handles, children and
   * name go when the test ends. The test keeps its own SharedMemory (`shm`, `i32`) to look at the words.
   */
  function setup(t, options = OPTIONS, { extra = 0 } = {}) {
    const name = shmName(t);
    const shm = SharedMemory.create(name, Channel.byteLength(options) + extra);
    const procs = [];
    const handles = [];
    t.after(async () => {
      for (const p of procs) p.kill();
      await Promise.all(procs.map((p) => p.done.catch(() => {})));
      for (const h of handles) h.close();
      shm.close();
    });
    handles.push(Channel.create(shm, { ...options, wait: 'block' }));
    const i32 = new Int32Array(shm.buffer.buffer, shm.buffer.byteOffset, shm.size >>> 2);
    const u32 = (off) => shm.buffer.readUInt32LE(off);
    // The geometry as the header has it (the first test checks it against the doc's formulas).
    const g = { laneSize: u32(CHANNEL.LANE_SIZE), lanesOffset: u32(CHANNEL.LANES_OFFSET), consumersOffset: u32(CHANNEL.CONSUMERS_OFFSET), ringsOffset: u32(CHANNEL.RINGS_OFFSET) };
    const s = {
      name,
      shm,
      i32,
      g,
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
      /** A Node party in its own process (NODE_CHILD). */
      nodeChild(mode, ...args) {
        const p = startProc([process.execPath, '--input-type=module', '-e', NODE_CHILD, mode, name, ...args], `node child ${mode} ${args.join(' ')}`, {
          timeout: PEER_TIMEOUT_MS,
        });
        procs.push(p);
        return p;
      },
      word: (off) => Atomics.load(i32, off >>> 2),
      setWord: (off, v) => Atomics.store(i32, off >>> 2, v | 0),
      /** Byte offset of lane i's control block. */
      ctl: (i) => g.lanesOffset + i * CHANNEL.LANE_CONTROL,
      /** Lane i's control block, positions as u32. */
      lane(i) {
        const at = s.ctl(i);
        return {
          write: s.word(at + CHANNEL.LANE_WRITE) >>> 0,
          pid: s.word(at + CHANNEL.LANE_PID),
          state: s.word(at + CHANNEL.LANE_STATE),
          read: s.word(at + CHANNEL.LANE_READ) >>> 0,
          reader: s.word(at + CHANNEL.LANE_READER),
          notFull: s.word(at + CHANNEL.LANE_NOT_FULL),
          waiting: s.word(at + CHANNEL.LANE_PRODUCER_WAITING),
        };
      },
      /** Byte offset (in the channel) of position pos of lane i's ring. */
      ringAt: (i, pos) => g.ringsOffset + i * g.laneSize + ((pos >>> 0) & (g.laneSize - 1)),
      /** The length word of the record at position pos of lane i. */
      recordLength: (i, pos) => s.word(s.ringAt(i, pos) + CHANNEL.RECORD_LENGTH),
      /** The position of the record at pos of lane i, or after the padding there. */
      skipPad: (i, pos) => (s.recordLength(i, pos) === PAD && (pos & (g.laneSize - 1)) !== 0 ? pos + g.laneSize - (pos & (g.laneSize - 1)) : pos),
      /** Consumer entry i. */
      consumer(i) {
        const at = g.consumersOffset + i * CHANNEL.CONSUMER_ENTRY;
        return { pid: s.word(at + CHANNEL.CONSUMER_PID), generation: s.word(at + CHANNEL.CONSUMER_GENERATION) };
      },
    };
    return s;
  }

  // ------------------------------------------------------------------------------------- header

  test('the C peer finds every header field where docs/channel-layout.md says, with the geometry it computes itself', async (t) => {
    const sets = [
      OPTIONS,
      { laneSize: 4096, maxMessageSize: 1, maxProducers: 1, maxConsumers: 1 },
      { laneSize: 4096, maxMessageSize: 2040, maxProducers: 64, maxConsumers: 100 }, // two records of 2048: exactly 4096
      { laneSize: 65536, maxMessageSize: 30000, maxProducers: 3, maxConsumers: 4095 },
    ];
    for (const options of sets) {
      const s = setup(t, options, { extra: 4096 }); // more memory than the channel needs is fine
      const res = await s.peer('check').done;
      const f = fieldsOf(assertStdout(res, /^ok channel .*$/m)[0]);
      const want = docGeometry(options);
      const h = (off) => s.shm.buffer.readUInt32LE(off);
      assert.deepEqual(f, {
        version: 3,
        'header-size': 128,
        total: want.totalSize,
        'lane-size': options.laneSize,
        'max-message': options.maxMessageSize,
        'max-producers': options.maxProducers,
        'max-consumers': options.maxConsumers,
        lanes: want.lanesOffset,
        consumers: want.consumersOffset,
        rings: want.ringsOffset,
        flags: 0,
        expected: 0,
        'producer-count': 0,
        creator: process.pid,
        'lanes-used': 0,
        'not-empty': 0,
        'consumer-sleepers': 0,
      });
      // The same numbers where mmapkit wrote them, at the offsets of its CHANNEL constants.
      assert.deepEqual(
        [h(CHANNEL.MAGIC), s.shm.buffer.readUInt16LE(CHANNEL.VERSION), s.shm.buffer.readUInt16LE(CHANNEL.HEADER_SIZE), h(CHANNEL.TOTAL_SIZE), h(CHANNEL.LANE_SIZE), h(CHANNEL.MAX_MESSAGE)],
        [MAGIC, 3, 128, want.totalSize, options.laneSize, options.maxMessageSize],
      );
      assert.deepEqual([h(CHANNEL.LANES_OFFSET), h(CHANNEL.CONSUMERS_OFFSET), h(CHANNEL.RINGS_OFFSET), h(CHANNEL.CREATOR)], [want.lanesOffset, want.consumersOffset, want.ringsOffset, process.pid]);
      assert.equal(Channel.byteLength(options), want.totalSize);
      assert.equal(res.stdout.trim().split('\n').length, 1, 'no lanes used, no consumers: nothing else to print');
    }
    // capacity instead of laneSize: whatever mmapkit picks must be a lane the peer accepts.
    const s = setup(t, { capacity: 100, maxMessageSize: 300, maxProducers: 2, maxConsumers: 2 });
    const f = fieldsOf(assertStdout(await s.peer('check').done, /^ok channel .*$/m)[0]);
    assert.equal(f['lane-size'], s.g.laneSize);
    assert.ok(f['lane-size'] >= 101 * recordSize(300), `lane of ${f['lane-size']} bytes for 100 messages of 300`);
  });

  test('the C peer reads the live state of a channel where the doc says: lanes, records and padding, consumer entries', async (t) => {
    const options = { laneSize: 4096, maxMessageSize: MAX_MESSAGE, maxProducers: 3, maxConsumers: 5, producers: 4 };
    const s = setup(t, options);
    const msg = (i) => Buffer.alloc(700, i + 1).fill(i, 0, 4); // records of 712 bytes
    const a = s.open();
    for (let i = 0; i < 5; i++) a.send(msg(i)); // positions 0, 712, 1424, 2136, 2848: write 3560
    const x = s.open();
    x.attach('consumer'); // entry 0, generation 1
    x.close(); // entry 0 free again
    const y = s.open();
    for (let i = 0; i < 3; i++) assert.deepEqual(y.receive(WAIT_MS), msg(i)); // entry 0, generation 2: read 2136
    const z = s.open();
    z.attach('consumer'); // entry 1, generation 1
    a.send(msg(5)); // 3560 + 712 crosses the end of the ring: padding of 536 bytes, the record at 4096
    const held = y.receiveInPlace(WAIT_MS); // y holds lane 0 (LANE_READER = (2 << 13) | 1) with message 3
    assert.deepEqual(held.data, msg(3));
    const b = s.open();
    b.send('b'); // lane 1
    b.close(); // LANE_STATE 2, NOT_EMPTY + 1
    const res = await s.peer('check').done;
    const lines = assertStdout(res, /^ok channel/).input.trim().split('\n');
    const sum = (buf) => `0x${fnv1a(0x811c9dc5, buf, 0, buf.length).toString(16).padStart(8, '0')}`;
    const lane0 = s.lane(0);
    const lane1 = s.lane(1);
    assert.deepEqual(lines.slice(1), [
      `lane 0 write=4808 pid=${process.pid} state=${ATTACHED} read=2136 reader=${(2 << 13) | 1} not-full=0 producer-waiting=0`,
      `record lane=0 pos=2136 length=700 sum=${sum(msg(3))}`,
      `record lane=0 pos=2848 length=700 sum=${sum(msg(4))}`,
      'pad lane=0 pos=3560 bytes=536',
      `record lane=0 pos=4096 length=700 sum=${sum(msg(5))}`,
      `lane 1 write=16 pid=${process.pid} state=${CLOSED} read=0 reader=0 not-full=0 producer-waiting=0`,
      `record lane=1 pos=0 length=1 sum=${sum(Buffer.from('b'))}`,
      `consumer 0 pid=${process.pid} generation=2`,
      `consumer 1 pid=${process.pid} generation=1`,
    ]);
    const f = fieldsOf(lines[0]);
    assert.deepEqual([f.flags, f.expected, f['producer-count'], f.creator, f['lanes-used'], f['not-empty'], f['consumer-sleepers']], [1, 4, 2, process.pid, 2, 1, 0]);
    // The same state where mmapkit keeps it (its CHANNEL offsets, and Channel.inspect()).
    assert.deepEqual([lane0.write, lane0.read, lane0.state, lane1.write, lane1.state], [4808, 2136, ATTACHED, 16, CLOSED]);
    assert.equal(s.recordLength(0, 3560), PAD);
    assert.deepEqual([s.word(CHANNEL.FLAGS), s.word(CHANNEL.EXPECTED_PRODUCERS), s.word(CHANNEL.PRODUCER_COUNT), s.word(CHANNEL.LANES_USED), s.word(CHANNEL.NOT_EMPTY)], [1, 4, 2, 2, 1]);
    const seen = Channel.inspect(s.shm);
    assert.deepEqual(seen.producers.map((p) => [p.lane, p.state, p.queuedBytes, p.heldBy]), [[0, 'attached', 4808 - 2136, 0], [1, 'closed', 16, -1]]);
    assert.deepEqual(seen.consumers.map((c) => c.entry), [0, 1]);
    held.release();
  });

  test('the C peer rejects a corrupted header, naming the field, and a channel larger than its memory', async (t) => {
    const s = setup(t);
    const buf = s.shm.buffer;
    const total = Channel.byteLength(OPTIONS); // 2432 + 8 x 8192
    // [field, offset, width, bad value, the message after "bad channel header: "]
    const cases = [
      ['MAGIC', CHANNEL.MAGIC, 4, 0x48434b4e, "MAGIC is 0x48434b4e, expected 0x48434b4d ('MKCH')"],
      ['VERSION', CHANNEL.VERSION, 2, 2, 'VERSION is 2, expected 3'], // a channel made before lanes
      ['VERSION', CHANNEL.VERSION, 2, 4, 'VERSION is 4, expected 3'],
      ['HEADER_SIZE', CHANNEL.HEADER_SIZE, 2, 64, 'HEADER_SIZE is 64, expected 128'],
      ['LANE_SIZE', CHANNEL.LANE_SIZE, 4, 12288, 'LANE_SIZE 12288 is not a power of two from 4096 to 2^30'],
      ['LANE_SIZE', CHANNEL.LANE_SIZE, 4, 2048, 'LANE_SIZE 2048 is not a power of two from 4096 to 2^30'],
      ['LANE_SIZE', CHANNEL.LANE_SIZE, 4, 2 ** 31, 'LANE_SIZE 2147483648 is not a power of two from 4096 to 2^30'],
      ['LANE_SIZE', CHANNEL.LANE_SIZE, 4, 4096, `TOTAL_SIZE is ${total}, expected ${total - 8 * 4096}`],
      ['MAX_MESSAGE', CHANNEL.MAX_MESSAGE, 4, 0, 'MAX_MESSAGE is 0, at least 1'],
      ['MAX_MESSAGE', CHANNEL.MAX_MESSAGE, 4, 4089, 'MAX_MESSAGE 4089 needs lanes of 16384 bytes (two records), LANE_SIZE is 8192'],
      ['MAX_PRODUCERS', CHANNEL.MAX_PRODUCERS, 4, 0, 'MAX_PRODUCERS 0 is not from 1 to 4096'],
      ['MAX_PRODUCERS', CHANNEL.MAX_PRODUCERS, 4, 4097, 'MAX_PRODUCERS 4097 is not from 1 to 4096'],
      ['MAX_PRODUCERS', CHANNEL.MAX_PRODUCERS, 4, 9, 'CONSUMERS_OFFSET is 2304, expected 2560'],
      ['MAX_CONSUMERS', CHANNEL.MAX_CONSUMERS, 4, 0, 'MAX_CONSUMERS 0 is not from 1 to 4096'],
      ['MAX_CONSUMERS', CHANNEL.MAX_CONSUMERS, 4, 5000, 'MAX_CONSUMERS 5000 is not from 1 to 4096'],
      ['MAX_CONSUMERS', CHANNEL.MAX_CONSUMERS, 4, 9, 'RINGS_OFFSET is 2432, expected 2560'], // align128(2304 + 144)
      ['LANES_OFFSET', CHANNEL.LANES_OFFSET, 4, 384, 'LANES_OFFSET is 384, expected 256'],
      ['CONSUMERS_OFFSET', CHANNEL.CONSUMERS_OFFSET, 4, 2432, 'CONSUMERS_OFFSET is 2432, expected 2304'],
      ['RINGS_OFFSET', CHANNEL.RINGS_OFFSET, 4, 2304, 'RINGS_OFFSET is 2304, expected 2432'],
      ['TOTAL_SIZE', CHANNEL.TOTAL_SIZE, 4, total + 8, `TOTAL_SIZE is ${total + 8}, expected ${total}`],
      ['TOTAL_SIZE', CHANNEL.TOTAL_SIZE, 4, total - 8192, `TOTAL_SIZE is ${total - 8192}, expected ${total}`],
      ['MAX_MESSAGE', CHANNEL.MAX_MESSAGE, 4, 0xfffffff8, 'MAX_MESSAGE 4294967288 needs lanes of 8589934592 bytes (two records), LANE_SIZE is 8192'],
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
        assert.equal(res.stdout, '', 'nothing printed for a channel that does not validate');
      } finally {
        if (width === 4) buf.writeUInt32LE(good, at);
        else buf.writeUInt16LE(good, at);
      }
    }
    assertOk(await s.peer('check').done, /^ok channel/);

    // A good header in memory too small for the channel it describes (the C peer must never read past
    // its end), and memory too small even for the part before the lanes.
    for (const [size, message] of [
      [4096, `bad channel header: TOTAL_SIZE ${total} is larger than the shared memory (4096 bytes)`],
      [200, 'bad channel: the shared memory has 200 bytes, fewer than the 256 before the lanes'],
    ]) {
      const small = shmName(t);
      const shm2 = SharedMemory.create(small, size);
      t.after(() => shm2.close());
      buf.copy(shm2.buffer, 0, 0, size);
      const res = await startProc([peerBin, 'check', small], `channel-peer check (${size} bytes)`, { timeout: PEER_TIMEOUT_MS }).done;
      assert.equal(res.status, 1, res.stderr);
      assert.equal(res.stderr.trim(), `channel-peer.c: ${message}`);
    }
  });

  test('mmapkit refuses the corrupted headers that the C peer refuses', () => {
    // The same contract on both sides: Channel.open validates what the C peer validates.
    const options = { ...OPTIONS };
    const shm = SharedMemory.anonymous(Channel.byteLength(options));
    const creator = Channel.create(shm, options);
    const buf = shm.buffer;
    try {
      for (const [at, bad] of [[CHANNEL.LANE_SIZE, 12288], [CHANNEL.MAX_MESSAGE, 0], [CHANNEL.MAX_MESSAGE, 4089], [CHANNEL.MAX_PRODUCERS, 4097], [CHANNEL.MAX_CONSUMERS, 9], [CHANNEL.RINGS_OFFSET, 2304], [CHANNEL.TOTAL_SIZE, buf.readUInt32LE(CHANNEL.TOTAL_SIZE) + 8]]) {
        const good = buf.readUInt32LE(at);
        buf.writeUInt32LE(bad, at);
        try {
          throwsCode(() => Channel.open(shm), 'ERR_MMAP_BAD_HEADER');
        } finally {
          buf.writeUInt32LE(good, at);
        }
      }
    } finally {
      creator.close();
      shm.close();
    }
  });

  test('mmapkit refuses a MAX_MESSAGE too large for any lane (0xfffffff8, whose record size wraps in 32 bits), as the C peer does', () => {
    const shm = SharedMemory.anonymous(Channel.byteLength(OPTIONS));
    const creator = Channel.create(shm, OPTIONS);
    try {
      for (const bad of [0xfffffff8, 0xfffffff0, 0x80000000, 0x7ffffff9]) {
        shm.buffer.writeUInt32LE(bad, CHANNEL.MAX_MESSAGE);
        throwsCode(() => Channel.open(shm).close(), 'ERR_MMAP_BAD_HEADER');
      }
    } finally {
      shm.buffer.writeUInt32LE(OPTIONS.maxMessageSize, CHANNEL.MAX_MESSAGE);
      creator.close();
      shm.close();
    }
  });

  // ------------------------------------------------------------------------------------- garbage

  // Two lanes, the last one's ring ending at the end of the channel: a C consumer that read a record
  // past the end of its ring would read past the end of the memory (and its guard page).
  const GARBAGE_OPTIONS = Object.freeze({ laneSize: 8192, maxMessageSize: MAX_MESSAGE, maxProducers: 2, maxConsumers: 2 });

  /**
   * Lane 0: three good messages of producer 1. Lane 1: messages of producer 2 (after `skip` ones taken
   * already), `before` of them, then a victim record, then `afterVictim` more. `corrupt(s, victimPos)` writes garbage, then both producers
   * close. Returns { s, victim, write }: the victim's position and lane 1's write position.
   */
  function garbageLanes(t, seed, { skip = 0, before = 3, afterVictim = 2 } = {}, corrupt) {
    const s = setup(t, GARBAGE_OPTIONS);
    const p1 = s.open();
    const p2 = s.open();
    p1.attach('producer');
    p2.attach('producer');
    assert.deepEqual([p1.lane, p2.lane], [0, 1]);
    // `skip` messages of producer 2 go first and are taken at once by a Node consumer (lane 0 is still
    // empty), to move lane 1's positions along.
    let seq = 0;
    if (skip > 0) {
      const taker = s.open();
      for (; seq < skip; seq++) {
        p2.send(makeMessage(seed, 2, seq, MAX_MESSAGE));
        assert.equal(taker.receive(WAIT_MS).readUInt32LE(4), seq);
      }
      taker.close();
    }
    for (let i = 0; i < 3; i++) p1.send(makeMessage(seed, 1, i, MAX_MESSAGE));
    for (let i = 0; i < before; i++, seq++) p2.send(makeMessage(seed, 2, seq, MAX_MESSAGE));
    const victim = s.lane(1).write;
    for (let i = 0; i <= afterVictim; i++, seq++) p2.send(makeMessage(seed, 2, seq, MAX_MESSAGE));
    corrupt(s, victim, seq);
    p1.close();
    p2.close();
    return { s, victim, write: s.lane(1).write, sent: seq };
  }

  test('garbage in a record length is reported by the C consumer as corruption, never delivered, never read out of bounds', async (t) => {
    const seed = 0xbad5eed;
    // [what, bad length (or a function of the record), options of garbageLanes]
    const cases = [
      ['longer than MAX_MESSAGE', () => MAX_MESSAGE + 1],
      ['negative', () => -2],
      ['2^31 - 1 (past any memory)', () => 0x7fffffff],
      ['-2^31', () => -0x80000000],
      ['padding at ring offset 0', () => PAD, { before: 0 }],
      ['padding that passes the write position', () => PAD, { afterVictim: 0 }],
      ['a record that passes the write position', (queued) => queued, { afterVictim: 0 }],
    ];
    for (const [what, badOf, opts = {}] of cases) {
      let bad;
      const { s, victim, write, sent } = garbageLanes(t, seed, opts, (s2, pos, seq) => {
        const queued = s2.lane(1).write - pos;
        bad = badOf(queued);
        s2.setWord(s2.ringAt(1, pos) + CHANNEL.RECORD_LENGTH, bad);
      });
      const before = opts.before ?? 3;
      if (what === 'a record that passes the write position') assert.ok(bad >= 0 && bad <= MAX_MESSAGE, `${what}: length ${bad} is a valid message length`);
      const res = await s.peer('consume', [seed, `expect=1:3,2:${sent}`, 'keep-going=1', 'list=1']).done;
      const m = assertOk(res, /^ok consume n=(\d+) end=closed corrupt=1 repaired=0 released=0 slept=\d+ timeouts=\d+ woke=\d+ got=1:3,2:(\d+)$/);
      const queued = write - victim;
      const detail =
        bad === PAD && (victim & 8191) !== 0
          ? `padding of ${8192 - (victim & 8191)} bytes at position ${victim} passes the write position ${write}`
          : `record length ${bad} at position ${victim} (max message ${MAX_MESSAGE}, ${queued} bytes published)`;
      assert.equal(res.stderr.trim(), `channel-peer.c: corrupt channel: lane 1: ${detail}`, what);
      // Lane 1's messages before the garbage are delivered, none from it on (dropped: LANE_READ = LANE_WRITE).
      assert.deepEqual(listed(res.stdout), [[1, 0], [1, 1], [1, 2], ...Array.from({ length: before }, (_, i) => [2, i])], what);
      assert.equal(Number(m[2]), before, what);
      const lane1 = s.lane(1);
      assert.deepEqual([lane1.read, lane1.reader], [write, 0], `${what}: the C consumer dropped the lane's records and let go of it`);
    }

    // Without keep-going=1 the C peer stops at the garbage (exit 1), after dropping the lane and letting go of it,
    // and after delivering (checking, listing) the records it took from the lane in the same poll before the
    // garbage: they were taken ("Garbage": the caller's).
    const { s, victim, write, sent } = garbageLanes(t, seed, {}, (s2, pos) => s2.setWord(s2.ringAt(1, pos) + CHANNEL.RECORD_LENGTH, MAX_MESSAGE + 8));
    const res = await s.peer('consume', [seed, `expect=1:3,2:${sent}`, 'list=1']).done;
    assert.equal(res.status, 1, res.stderr);
    assert.equal(res.stderr.trim(), `channel-peer.c: corrupt channel: lane 1: record length ${MAX_MESSAGE + 8} at position ${victim} (max message ${MAX_MESSAGE}, ${write - victim} bytes published)`);
    assert.deepEqual(listed(res.stdout), [[1, 0], [1, 1], [1, 2], [2, 0], [2, 1], [2, 2]], 'the records of the poll that found the garbage were delivered before it was reported');
    assert.deepEqual([s.lane(1).read, s.lane(1).reader], [write, 0]);
    // The C consumer took lane 0's messages first; for mmapkit nothing is left in either lane: the end.
    const cons = s.open();
    assert.equal(cons.receive(WAIT_MS), null);
  });

  test('a record that would cross the end of its ring (the end of the channel) is garbage to the C consumer', async (t) => {
    const seed = 0x5ca1ab1e;
    // Move lane 1's positions along until the next record of producer 2 starts near the end of the ring
    // (and fits before it), then make its length reach past the end: record(len) stays within what is
    // published (records wrapped to the ring's start follow), but the ring offset plus it does not.
    let skip = 0;
    for (let pos = 0; ; skip++) {
      const off = pos & 8191;
      const next = recordSize(makeMessage(seed, 2, skip, MAX_MESSAGE).length);
      if (off >= 8192 - MAX_MESSAGE + 8 && off + next <= 8192 - 16) break;
      pos += (off + next > 8192 ? 8192 - off : 0) + next;
      assert.ok(skip < 10_000, 'no suitable position found');
    }
    const { s, victim, write, sent } = garbageLanes(t, seed, { skip, before: 0, afterVictim: 4 }, (s2, pos) => {
      s2.setWord(s2.ringAt(1, pos) + CHANNEL.RECORD_LENGTH, 8192 - (pos & 8191)); // record(len) > the rest of the ring
    });
    const off = victim & 8191;
    assert.ok(write - victim >= recordSize(8192 - off), 'the bad record stays within what is published');
    assert.equal(s.ringAt(1, victim) + 8192 - off, Channel.byteLength(GARBAGE_OPTIONS), 'the ring of lane 1 ends where the channel ends');
    const res = await s.peer('consume', [seed, `expect=1:3,2:${sent}`, 'keep-going=1', 'list=1']).done;
    assertOk(res, /^ok consume n=3 end=closed corrupt=1 /);
    assert.equal(res.stderr.trim(), `channel-peer.c: corrupt channel: lane 1: record length ${8192 - off} at position ${victim} (max message ${MAX_MESSAGE}, ${write - victim} bytes published)`);
    assert.deepEqual([s.lane(1).read, s.lane(1).reader], [write, 0]);
  });

  test('garbage in LANE_WRITE and LANE_READ is reported by the C consumer and by mmapkit as corruption once, and the lane is dropped', async (t) => {
    const seed = 0xfeed;
    // [what, word, the garbage as a function of the lane's positions]
    const cases = [
      ['LANE_WRITE two lanes ahead', CHANNEL.LANE_WRITE, ({ read }) => read + 2 * 8192],
      ['LANE_WRITE behind LANE_READ', CHANNEL.LANE_WRITE, ({ read }) => read - 8],
      // LANE_READ := LANE_WRITE & ~7 would leave the lane looking non-empty, garbage again at every poll:
      // no end of the stream, ever (the C consumer would time out).
      ['LANE_WRITE not a multiple of 8', CHANNEL.LANE_WRITE, ({ write }) => write + 3],
      ['LANE_WRITE not a multiple of 8, behind LANE_READ', CHANNEL.LANE_WRITE, ({ read }) => read - 5],
      ['LANE_READ not a multiple of 8', CHANNEL.LANE_READ, ({ write }) => write - 3],
      ['LANE_READ ahead of LANE_WRITE', CHANNEL.LANE_READ, ({ write }) => write + 16],
      ['LANE_READ more than a lane behind', CHANNEL.LANE_READ, ({ write }) => write - 8192 - 8],
    ];
    for (const [what, word, garbageOf] of cases) {
      let r;
      let w;
      const corrupt = (s2) => {
        s2.setWord(s2.ctl(1) + word, garbageOf(s2.lane(1)));
        ({ read: r, write: w } = s2.lane(1));
      };
      const { s, sent } = garbageLanes(t, seed, {}, corrupt);
      const res = await s.peer('consume', [seed, `expect=1:3,2:${sent}`, 'keep-going=1', 'list=1']).done;
      assertOk(res, /^ok consume n=3 end=closed corrupt=1 repaired=0 released=0 slept=\d+ timeouts=\d+ woke=\d+ got=1:3,2:0$/);
      const q = (w - r) | 0;
      assert.equal(res.stderr.trim(), `channel-peer.c: corrupt channel: lane 1: read position ${r} and write position ${w} are ${q} bytes apart (lane size 8192)`, what);
      assert.deepEqual(listed(res.stdout), [[1, 0], [1, 1], [1, 2]], what);
      assert.deepEqual([s.lane(1).read, s.lane(1).write, s.lane(1).reader], [w, w, 0], `${what}: LANE_READ = LANE_WRITE exactly, let go`);
      // For mmapkit too, the lane is empty now: the end of the stream.
      assert.equal(s.open().receive(WAIT_MS), null, what);

      // The same garbage met by a Node consumer: one ERR_MMAP_CHANNEL_CORRUPT, the same positions after it,
      // lane 0's messages, then the end.
      const n = garbageLanes(t, seed, {}, corrupt);
      const cons = n.s.open();
      const { got, errors } = takeAll(cons);
      assert.deepEqual([got.map((m) => m.readUInt32LE(0)), errors.map((e) => e.code)], [[1, 1, 1], ['ERR_MMAP_CHANNEL_CORRUPT']], `${what}: mmapkit`);
      assert.deepEqual([n.s.lane(1).read, n.s.lane(1).write, n.s.lane(1).reader], [w, w, 0], `${what}: mmapkit resyncs as the doc says`);
    }
  });

  test('a C producer that takes a lane with garbage positions starts where the consumers are', async (t) => {
    const s = setup(t, { ...OPTIONS, maxProducers: 1 });
    const seed = 0x600d;
    const first = s.open();
    const cons = s.open();
    for (let i = 0; i < 3; i++) first.send(makeMessage(seed, 1, i, MAX_MESSAGE));
    for (let i = 0; i < 3; i++) checkMessage(cons.receive(WAIT_MS), seed, new Map([[1, 3]]), `message ${i}`);
    first.close();
    const { read } = s.lane(0);
    s.setWord(s.ctl(0) + CHANNEL.LANE_WRITE, read + 5); // garbage: not a multiple of 8
    assertOk(await s.peer('produce', ['2', 6, seed]).done, /^ok produce id=2 n=6 lane=0 /); // six always fit in the lane
    for (let i = 0; i < 6; i++) assert.deepEqual(checkMessage(cons.receive(WAIT_MS), seed, new Map([[2, 6]]), `message ${i}`), [2, i]);
    assert.equal(cons.receive(WAIT_MS), null);
    assert.equal(cons.endReason, 'closed');
  });

  test('garbage in LANE_WRITE under a C producer waiting for room: the Node consumer resyncs, the producer stores its write position again, and the lane carries on', async (t) => {
    const s = setup(t, { ...OPTIONS, maxProducers: 1 });
    const n = 60; // more than a lane holds
    const seed = 0x7e5c;
    const c = s.peer('produce', ['1', n, seed, 'keep-going=1']);
    // Nobody takes: the producer fills its lane and sleeps for room.
    await until(() => s.lane(0).waiting === 1, [c], 'the C producer waiting for room', WAIT_MS);
    await asleepInFutex([c], 'the C producer asleep in the kernel', ASLEEP);
    const { read, write } = s.lane(0);
    // The messages published so far: the ones the garbage makes us lose.
    let lost = 0;
    for (let pos = read; pos !== write; lost++) {
      pos = s.skipPad(0, pos);
      pos += recordSize(s.recordLength(0, pos));
    }
    assert.ok(lost > 0 && lost < n, `${lost} messages in the full lane`);
    const garbage = (write + 3 * 8192) | 0;
    s.setWord(s.ctl(0) + CHANNEL.LANE_WRITE, garbage);
    // 1. The Node consumer finds the positions a lane apart: LANE_READ := the garbage LANE_WRITE (the lane looks
    // empty), and it wakes the producer (its flag is set, the lane is empty). 2. The producer finds LANE_READ out
    // of range: it stores its own write position to LANE_WRITE again and reports it (once). 3. The Node consumer
    // finds LANE_READ ahead of that write position: LANE_READ := it. Then the producer has room again.
    const cons = s.open();
    const { got, errors } = takeAll(cons);
    assert.deepEqual(errors.map((e) => e.code), ['ERR_MMAP_CHANNEL_CORRUPT', 'ERR_MMAP_CHANNEL_CORRUPT']);
    assert.deepEqual(got.map((m) => checkMessage(m, seed, new Map([[1, n]]), 'message')[1]), Array.from({ length: n - lost }, (_, i) => lost + i), 'the messages sent after the garbage, in order');
    assert.equal(cons.endReason, 'closed');
    const res = await c.done;
    assertOk(res, new RegExp(`^ok produce id=1 n=${n} lane=0 publishes=\\d+ full=\\d+ slept=\\d+ timeouts=\\d+ woke=\\d+ corrupt=1$`));
    assert.equal(res.stderr.trim(), `channel-peer.c: corrupt channel: lane 0: read position ${garbage >>> 0} is not within the 8192 bytes before the write position ${write}`);
    const lane = s.lane(0);
    assert.deepEqual([lane.read, lane.reader, lane.state, lane.waiting], [lane.write, 0, CLOSED, 0]);

    // Without keep-going=1: the C producer stores its write position again, then exits 1.
    const s2 = setup(t, { ...OPTIONS, maxProducers: 1 });
    const c2 = s2.peer('produce', ['1', n, seed]);
    await until(() => s2.lane(0).waiting === 1, [c2], 'the second C producer waiting for room', WAIT_MS);
    const w2 = s2.lane(0).write;
    s2.setWord(s2.ctl(0) + CHANNEL.LANE_WRITE, w2 + 3 * 8192);
    s2.setWord(s2.ctl(0) + CHANNEL.LANE_READ, w2 + 3 * 8192); // as a consumer's resync leaves it
    const res2 = await c2.done;
    assert.equal(res2.status, 1, res2.stderr);
    assert.equal(res2.stderr.trim(), `channel-peer.c: corrupt channel: lane 0: read position ${w2 + 3 * 8192} is not within the 8192 bytes before the write position ${w2}`);
    assert.equal(s2.lane(0).write, w2, 'the C producer stored its write position to LANE_WRITE before it reported the garbage');
  });

  // ------------------------------------------------------------------------------------- C -> Node

  test('a C producer sends 20000 messages in batches to a Node consumer, which checks each and sees the end when C closes', async (t) => {
    const s = setup(t);
    const n = 20_000;
    const batch = 8;
    const seed = 0x2545f491;
    // Pauses let the Node consumer run dry and sleep, so that the C producer must wake it.
    const c = s.peer('produce', ['1', n, seed, `batch=${batch}`, 'pause-every=1000', 'pause-ms=5', 'linger=1'], { stdin: 'pipe' });
    const cons = s.open();
    const expected = new Map([[1, n]]);
    let got = 0;
    let stops = 0;
    let asleep = 0;
    for (let k = 0; got < n; k++) {
      if (got >= (stops + 1) * 5000) {
        // Stop taking: the C producer fills its lane and sleeps on LANE_NOT_FULL; our next receive wakes it.
        stops++;
        await until(() => s.lane(0).waiting === 1, [c], `stop ${stops}: the C producer waiting for room`, WAIT_MS);
        if (await asleepInFutex([c], `stop ${stops}: the C producer asleep in the kernel`, ASLEEP)) asleep++;
      }
      const msgs = takeSome(cons, k);
      assert.notEqual(msgs, null, `the end of the stream after ${got} messages`);
      for (const msg of msgs) {
        assert.deepEqual(checkMessage(msg, seed, expected, `message ${got}`), [1, got], 'one producer, one consumer: in order');
        got++;
      }
    }
    assert.equal(got, n);
    // The end of the stream: the C producer has closed its lane and lingers, alive.
    assert.equal(await cons.receiveAsync(WAIT_MS), null);
    assert.equal(cons.receive(WAIT_MS), null);
    assert.equal(cons.endReason, 'closed');
    assert.equal(c.result, undefined, 'the C producer is still running: the end came from its close, not its death');
    const lane = s.lane(0);
    assert.deepEqual([lane.pid, lane.state, lane.write, lane.read, lane.reader, lane.waiting], [c.child.pid, CLOSED, lane.read, lane.write, 0, 0]);
    assert.equal(s.word(CHANNEL.FLAGS) & 3, 1, 'FLAGS: a producer attached (bit 0), none died (bit 1)');
    c.child.stdin.end();
    const m = assertOk(await c.done, new RegExp(`^ok produce id=1 n=${n} lane=0 publishes=(\\d+) full=(\\d+) slept=(\\d+) timeouts=\\d+ woke=(\\d+) corrupt=0$`));
    const [publishes, full, slept, woke] = m.slice(1).map(Number);
    t.diagnostic(`C: ${publishes} publishes, lane full ${full} times, slept ${slept} times (seen asleep ${asleep} of ${stops} stops), woke the Node consumer ${woke} times`);
    // One store of LANE_WRITE per batch, plus one per full lane and one per pause.
    assert.ok(publishes >= n / batch && publishes <= n / batch + full + n / 1000, `${publishes} publishes for ${n / batch} batches`);
    assert.ok(full >= stops, 'the C producer found its lane full at every stop');
    if (asleep > 0) assert.ok(slept >= asleep, 'a C producer seen asleep was woken by a Node receive');
    assert.ok(woke > 0, 'the C producer never woke a sleeping consumer: the Node consumer did not sleep, or C did not wake it');
    assert.equal(s.word(CHANNEL.CONSUMER_SLEEPERS), 0);
  });

  // ------------------------------------------------------------------------------------- Node -> C

  test('a Node producer sends 20000 messages to a C consumer, which checks each and sees the end when Node closes', async (t) => {
    const s = setup(t);
    const n = 20_000;
    const seed = 0x9e3779b9;
    // Pauses let the lane fill, so that the Node producer sleeps and the C consumer must wake it.
    const c = s.peer('consume', [seed, `expect=2:${n}`, 'all=1', 'pause-every=1000', 'pause-ms=5']);
    const prod = s.open();
    let full = 0;
    for (let i = 0, k = 0; i < n; k++) {
      const msg = makeMessage(seed, 2, i, MAX_MESSAGE);
      switch (k % 4) {
        case 0:
          if (!prod.trySend(msg)) {
            full++;
            prod.send(msg, WAIT_MS);
          }
          i++;
          break;
        case 1:
          prod.send(msg, WAIT_MS);
          i++;
          break;
        case 2:
          await prod.sendAsync(msg, WAIT_MS);
          i++;
          break;
        default: {
          const batch = [];
          for (let j = 0; j < 8 && i < n; j++, i++) batch.push(makeMessage(seed, 2, i, MAX_MESSAGE));
          prod.sendMany(batch, WAIT_MS);
        }
      }
    }
    assert.equal(c.result, undefined, 'the C consumer waits for more until the producer closes');
    prod.close();
    const m = assertOk(await c.done, new RegExp(`^ok consume n=${n} end=closed corrupt=0 repaired=0 released=0 slept=(\\d+) timeouts=(\\d+) woke=(\\d+) got=2:${n}$`));
    t.diagnostic(`Node found the lane full ${full} times; the C consumer slept ${m[1]} times (${m[2]} timeouts) and woke the Node producer ${m[3]} times`);
    assert.ok(full > 0, 'the lane was never full: the test did not make the producer wait');
    assert.ok(Number(m[3]) > 0, 'the C consumer never woke a sleeping producer: the Node producer did not sleep, or C did not wake it');
    const lane = s.lane(0);
    assert.ok(lane.notFull > 0, 'nobody ever bumped LANE_NOT_FULL');
    assert.deepEqual([lane.read, lane.reader, lane.state, lane.waiting], [lane.write, 0, CLOSED, 0], 'the C consumer cleared the flag of the Node producer');
    assert.equal(s.consumer(0).pid, 0, 'the C consumer freed its entry (pid 0) when done');
    assert.equal(s.consumer(0).generation, 1);
  });

  // ------------------------------------------------------------------------------------- mixed

  // Two consumers on the same lanes: each locks lanes the other has just moved LANE_READ along (the
  // look-then-lock race below, hit now and then), and wakes producers that sleep for room.
  test('a C and a Node producer into a Node and a C consumer at once: every message exactly once, in order per producer', async (t) => {
    const s = setup(t);
    const n = 30_000; // per producer: enough for the locks of both consumers to collide now and then
    const seed = 0x1234567;
    const expected = new Map([[1, n], [2, n]]);
    const cc = s.peer('consume', [seed, `expect=1:${n},2:${n}`, 'list=1', 'batch=8']);
    const nodeCons = s.open();
    // The producers start together: the C one attaches and waits for a second producer, the Node one
    // waits for the C one and attaches with its first send. (And neither can close before the other
    // attached: a producer attaching after every other one closed and the lanes ran dry would come
    // after the end of the stream.)
    const cp = s.peer('produce', ['1', n, seed, 'batch=4', 'await-producers=2']);
    const np = s.nodeChild('produce', 2, n, seed, 1, 'spin');
    // Checked after the end, so that receiving runs as fast as it can (and contends with the C consumer).
    const received = [];
    for (let k = 0; ; k++) {
      const msgs = await takeSomeAsync(nodeCons, k);
      if (msgs === null) break;
      received.push(...msgs);
    }
    assert.equal(nodeCons.endReason, 'closed');
    const mine = new Tally('the Node consumer');
    for (const [i, msg] of received.entries()) mine.add(...checkMessage(msg, seed, expected, `Node consumer, message ${i}`));
    assertOk(await cp.done, new RegExp(`^ok produce id=1 n=${n} `));
    assertOk(await np.done, new RegExp(`^ok produce id=2 n=${n}$`));
    const res = await cc.done;
    const m = assertOk(res, /^ok consume n=(\d+) end=closed corrupt=0 repaired=0 released=0 slept=\d+ timeouts=\d+ woke=\d+ got=1:(\d+),2:(\d+)$/);
    const theirs = new Tally('the C consumer');
    for (const [id, seq] of listed(res.stdout)) theirs.add(id, seq);
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
    for (const lane of [0, 1]) assert.deepEqual([s.lane(lane).read, s.lane(lane).reader, s.lane(lane).state], [s.lane(lane).write, 0, CLOSED]);
  });

  // ------------------------------------------------------------------------------------- the look-then-lock race

  // docs/channel-layout.md, "Receiving": step 1 loads w = LANE_WRITE before the lock (step 2), step 3 loads
  // LANE_READ after it. Another consumer may have locked the lane between our steps 1 and 2, taken records up
  // to a LANE_WRITE newer than our w, and stored LANE_READ past it: then (int32_t)(w - r) < 0 with nothing
  // wrong. Step 3 loads LANE_WRITE again when w - r <= 0; without that, the pair looks like garbage and the
  // resync (LANE_READ = w) moves LANE_READ backwards: the records between are delivered a second time, and the
  // producer (whose cached read position is ahead) finds "corrupt" positions. The C peer stops between its look
  // and its lock (pause-lock=1), as a preempted consumer would, while Node takes the records.
  test('a consumer that locks a lane after another consumer moved LANE_READ past the LANE_WRITE it loaded loads LANE_WRITE again (Receiving, step 3): nothing delivered twice', async (t) => {
    const seed = 0x1007;
    // `more`: messages the producer sends after the Node consumer took the first six, before the C consumer
    // locks: with none the C consumer lets go of an empty lane; with three, it takes them (its second load of
    // LANE_WRITE sees them), and only them.
    for (const more of [0, 3]) {
      const s = setup(t);
      const expected = new Map([[2, 6 + more]]);
      const prod = s.open();
      for (let i = 0; i < 3; i++) prod.send(makeMessage(seed, 2, i, MAX_MESSAGE), WAIT_MS);
      const c = s.peer('consume', [seed, `expect=2:${6 + more}`, 'list=1', 'keep-going=1', 'pause-lock=1'], { stdin: 'pipe' });
      const [, lane, w1] = (await line(c, /^looked lane=(\d+) write=(\d+)$/m)).map(Number);
      assert.deepEqual([lane, w1], [0, s.lane(0).write]);
      for (let i = 3; i < 6; i++) prod.send(makeMessage(seed, 2, i, MAX_MESSAGE), WAIT_MS);
      const cons = s.open();
      for (let i = 0; i < 6; i++) assert.deepEqual(checkMessage(cons.receive(WAIT_MS), seed, expected, `seq ${i}`), [2, i]);
      const w2 = s.lane(0).write;
      assert.equal(s.lane(0).read, w2, 'the Node consumer took every record: LANE_READ is past the w the C consumer loaded');
      for (let i = 6; i < 6 + more; i++) prod.send(makeMessage(seed, 2, i, MAX_MESSAGE), WAIT_MS);
      const w3 = s.lane(0).write;
      prod.close();
      c.child.stdin.end('go\n'); // the C consumer locks the lane now, and finds LANE_READ past its w
      const res = await c.done;
      const what = `${more} more: `;
      assert.deepEqual(listed(res.stdout), Array.from({ length: more }, (_, i) => [2, 6 + i]), `${what}the C consumer got messages the Node consumer had already taken (LANE_READ went back from ${w2} to ${w1}), or missed new ones; stderr: ${res.stderr}`);
      assertOk(res, new RegExp(`^ok consume n=${more} end=closed corrupt=0 repaired=0 released=0 slept=\\d+ timeouts=\\d+ woke=0 got=2:${more}$`));
      assert.equal(s.lane(0).read, w3, `${what}LANE_READ never goes backwards`);
      assert.equal(cons.receive(WAIT_MS), null);
    }
  });

  // ------------------------------------------------------------------------------------- sleeping

  test("a C consumer asleep in FUTEX_WAIT is woken by each Node send and by Node's close", async (t) => {
    const s = setup(t);
    const rounds = 3;
    const seed = 77;
    // slice-ms beyond the wait: only a FUTEX_WAKE can end a sleep before the 20 s deadline (exit 3).
    const c = s.peer('consume', [seed, `expect=2:${rounds}`, 'all=1', 'slice-ms=60000']);
    const prod = s.open();
    let observed = 0;
    for (let r = 0; r <= rounds; r++) {
      await until(() => s.word(CHANNEL.CONSUMER_SLEEPERS) === 1, [c], `round ${r}: the C consumer counted as a sleeper`, WAIT_MS);
      if (await asleepInFutex([c], `round ${r}: the C consumer asleep in the kernel`, ASLEEP)) observed++;
      await sleep(100); // and it stays asleep: nothing else wakes it
      exitedFirst([c], `round ${r}`);
      assert.equal(s.word(CHANNEL.CONSUMER_SLEEPERS), 1, `round ${r}: the C consumer woke up by itself`);
      if (r < rounds) {
        const before = s.word(CHANNEL.NOT_EMPTY);
        assert.equal(prod.trySend(makeMessage(seed, 2, r, MAX_MESSAGE)), true);
        assert.equal(s.word(CHANNEL.NOT_EMPTY), before + 1, 'the send saw a sleeper and bumped NOT_EMPTY');
        await until(() => s.lane(0).read === s.lane(0).write, [c], `round ${r}: the C consumer took the message`, WAIT_MS);
      } else {
        prod.close(); // the end of the stream: close wakes every consumer
      }
    }
    const m = assertOk(await c.done, new RegExp(`^ok consume n=${rounds} end=closed corrupt=0 repaired=0 released=0 slept=(\\d+) timeouts=(\\d+) woke=0 got=2:${rounds}$`));
    t.diagnostic(`the C consumer slept ${m[1]} times, seen asleep in /proc/PID/wchan ${observed} times`);
    assert.equal(Number(m[2]), 0, 'a FUTEX_WAIT of the C consumer timed out');
    if (observed === rounds + 1) assert.ok(Number(m[1]) >= rounds + 1, `the C consumer was asleep ${observed} times, so Node had to wake it as often`);
    assert.equal(s.word(CHANNEL.CONSUMER_SLEEPERS), 0);
  });

  // "Receiving", step 6, and "Sleeping": a producer that sleeps for room stores 1 in LANE_PRODUCER_WAITING (a
  // flag, not a count); a consumer letting go of the lane wakes it only once the lane is at most three quarters
  // full ((int32_t)(LANE_WRITE - r) <= LANE_SIZE - LANE_SIZE / 4), and exchanges the flag with 0 first: one
  // wake per sleep. The C producer sleeps in slices of 60 s, so that only a FUTEX_WAKE ends its sleep within
  // the test (LANE_WRITE stays put until then), and the consumer takes one message per step.
  test('a C producer asleep for room is woken once, by the consumer (C, then Node) that leaves its lane at most three quarters full', async (t) => {
    const seed = 0x3a7e;
    const n = 40; // more than two lanes' worth
    const limit = 8192 - 8192 / 4;
    for (const consumer of ['C', 'Node']) {
      const s = setup(t, { ...OPTIONS, maxProducers: 1 });
      const expected = new Map([[1, n]]);
      const p = s.peer('produce', ['1', n, seed, 'slice-ms=60000']);
      await until(() => s.lane(0).waiting === 1, [p], `${consumer}: the C producer waiting for room`, WAIT_MS);
      await asleepInFutex([p], `${consumer}: the C producer asleep in the kernel`, ASLEEP);
      const { write, notFull } = s.lane(0);
      let c;
      let cons;
      /** Take message k, and only it. */
      const step = async (k) => {
        if (consumer === 'C') {
          c.child.stdin.write('\n');
          await until(() => listed(c.stdout()).length === k + 1, [c, p], `the C consumer taking message ${k}`, WAIT_MS);
          assert.deepEqual(listed(c.stdout())[k], [1, k]);
        } else {
          assert.deepEqual(checkMessage(cons.receive(WAIT_MS), seed, expected, `message ${k}`), [1, k]);
        }
      };
      if (consumer === 'C') {
        c = s.peer('consume', [seed, `expect=1:${n}`, 'all=1', 'list=1', 'batch=1', 'step=1'], { stdin: 'pipe' });
        c.child.stdin.on('error', () => {}); // a C consumer that failed early: until() reports it
      } else {
        cons = s.open();
      }
      let k = 0;
      for (; ; k++) {
        await step(k);
        const lane = s.lane(0);
        const queued = (write - lane.read) | 0;
        if (queued > limit) {
          assert.deepEqual([lane.write, lane.waiting, lane.notFull], [write, 1, notFull], `${consumer} consumer, message ${k}: ${queued} bytes left, more than three quarters: no wake, the flag stays`);
          continue;
        }
        // This let-go woke the producer: LANE_NOT_FULL bumped once. The flag is 0, or the producer, awake, has
        // filled its lane again since and set it again.
        assert.equal(lane.notFull, notFull + 1, `${consumer} consumer, message ${k}: ${queued} bytes left: LANE_NOT_FULL bumped once`);
        assert.ok(lane.waiting === 0 || lane.write !== write, `${consumer} consumer, message ${k}: the flag was left set`);
        break;
      }
      assert.ok(k > 0, 'the first message taken left the lane at most three quarters full: no step with the flag kept (choose another seed)');
      t.diagnostic(`${consumer} consumer: ${k} messages taken before the lane was three quarters full`);
      // The rest, with the producer woken at every sleep (none of its 60 s sleeps times out).
      if (consumer === 'C') {
        c.child.stdin.end();
        assertOk(await c.done, new RegExp(`^ok consume n=${n} end=closed corrupt=0 repaired=0 released=0 slept=\\d+ timeouts=\\d+ woke=\\d+ got=1:${n}$`));
      } else {
        for (k++; k < n; k++) assert.deepEqual(checkMessage(cons.receive(WAIT_MS), seed, expected, `message ${k}`), [1, k]);
        assert.equal(cons.receive(WAIT_MS), null);
      }
      const m = assertOk(await p.done, new RegExp(`^ok produce id=1 n=${n} lane=0 publishes=\\d+ full=(\\d+) slept=(\\d+) timeouts=0 woke=\\d+ corrupt=0$`));
      assert.ok(Number(m[2]) >= 1, `${consumer}: the producer slept ${m[2]} times`);
      assert.deepEqual([s.lane(0).waiting, s.lane(0).read], [0, s.lane(0).write], `${consumer}: the flag cleared at the end`);
    }
  });

  // ------------------------------------------------------------------------------------- fan-in

  test("fan-in with create({ producers: 3 }): C producers one after the other, the last killed in a batch; the Node consumer sees every published message, then 'producer-died'", async (t) => {
    const s = setup(t, { ...OPTIONS, producers: 3 });
    const seed = 0x51ed;
    const cons = s.open();
    const expected = new Map([[1, 5], [2, 5], [3, 4]]);
    // Each producer attaches only after the one before has closed and its messages are taken: without
    // `producers`, the end would come after the first. (Five messages always fit in a lane of 8 KiB.)
    for (const id of [1, 2]) {
      const p = s.peer('produce', [String(id), 5, seed, 'batch=3']);
      assertOk(await p.done, new RegExp(`^ok produce id=${id} n=5 lane=0 publishes=2 `));
      for (let i = 0; i < 5; i++) assert.deepEqual(checkMessage(cons.receive(WAIT_MS), seed, expected, `producer ${id} message ${i}`), [id, i]);
      assert.equal(cons.tryReceive(), undefined, `${id} of 3 producers have come and gone: not the end`);
      assert.equal(s.word(CHANNEL.PRODUCER_COUNT), id, 'the C producer counted its attach');
      assert.deepEqual([s.lane(0).pid, s.lane(0).state], [p.child.pid, CLOSED], 'the C producer closed its lane');
    }
    const c = s.peer('produce', ['3', 10, seed, 'batch=3', 'die-after=4']);
    const [, lane, write, local, unpublished] = (await line(c, /^dying lane=(\d+) write=(\d+) local=(\d+) unpublished=(\d+)$/m)).map(Number);
    assert.equal(lane, 0, 'the C producer took the closed lane');
    assert.ok(local !== write && unpublished > 0, 'the C producer wrote a batch past LANE_WRITE');
    assert.equal(s.recordLength(0, s.skipPad(0, write)), makeMessage(seed, 3, 4, MAX_MESSAGE).length, 'the unpublished records are there in the ring');
    for (let i = 0; i < 4; i++) assert.deepEqual(checkMessage(cons.receive(WAIT_MS), seed, expected, `producer 3 message ${i}`), [3, i]);
    assert.equal(cons.tryReceive(), undefined, 'the producer is alive: wait (the batch is not published)');
    c.child.kill('SIGKILL');
    assertKilled(await c.done);
    assert.equal(cons.receive(WAIT_MS), null, 'three producers attached, two closed, one dead: the end');
    assert.equal(cons.endReason, 'producer-died');
    assert.equal(s.word(CHANNEL.FLAGS) & 3, 3, 'FLAGS: a producer attached (bit 0), one went away without closing (bit 1)');
    assert.equal(s.lane(0).write, write, 'nothing of the batch was ever published');
  });

  test("fan-in with create({ producers: 2 }): a C consumer waits through the first Node producer's close for the second", async (t) => {
    const s = setup(t, { ...OPTIONS, producers: 2 });
    const seed = 0x7a11;
    const c = s.peer('consume', [seed, 'expect=1:20,2:20', 'all=1']);
    const first = s.open();
    for (let i = 0; i < 20; i++) first.send(makeMessage(seed, 1, i, MAX_MESSAGE), WAIT_MS);
    first.close();
    await until(() => s.lane(0).read === s.lane(0).write, [c], 'the C consumer to take the first 20 messages', WAIT_MS);
    await sleep(300); // three of its 100 ms looks for the end
    assert.equal(c.result, undefined, 'one of two producers closed: the C consumer must still wait');
    const second = s.open();
    for (let i = 0; i < 20; i++) second.send(makeMessage(seed, 2, i, MAX_MESSAGE), WAIT_MS);
    second.close();
    assertOk(await c.done, /^ok consume n=40 end=closed corrupt=0 repaired=0 released=0 slept=\d+ timeouts=\d+ woke=\d+ got=1:20,2:20$/);
    assert.equal(s.word(CHANNEL.FLAGS) & 2, 0, 'both closed: no producer died');
  });

  // ------------------------------------------------------------------------------------- dead parties

  test('a C producer killed in the middle of a batch: the Node consumer never sees any of it and carries on; a new producer takes the lane over', async (t) => {
    const s = setup(t, { ...OPTIONS, maxProducers: 2 });
    const seed = 5;
    const c = s.peer('produce', ['1', 20, seed, 'batch=2', 'die-after=4']);
    const [, lane, write, local, unpublished] = (await line(c, /^dying lane=(\d+) write=(\d+) local=(\d+) unpublished=(\d+)$/m)).map(Number);
    assert.equal(lane, 0);
    assert.ok(local !== write && unpublished > 0);
    const torn = makeMessage(seed, 1, 4, MAX_MESSAGE);
    const at = s.ringAt(0, s.skipPad(0, write));
    assert.equal(s.word(at + CHANNEL.RECORD_LENGTH), torn.length, 'message 4 is written in the ring, past LANE_WRITE');
    assert.ok(s.shm.buffer.subarray(at + 8, at + 8 + torn.length).equals(torn));
    const prod = s.open();
    for (let i = 0; i < 5; i++) prod.send(makeMessage(seed, 2, i, MAX_MESSAGE), WAIT_MS);
    assert.equal(prod.lane, 1);
    const cons = s.open();
    const expected = new Map([[1, 4], [2, 10], [3, 30]]); // producer 1: only 0..3 were published
    const tally = new Tally('the Node consumer');
    for (let k = 0; tally.count() < 9; k++) for (const msg of takeSome(cons, k)) tally.add(...checkMessage(msg, seed, expected, `message ${tally.count()}`));
    assert.deepEqual(tally.seqs.get(1), [0, 1, 2, 3]);
    assert.deepEqual(tally.seqs.get(2), [0, 1, 2, 3, 4]);
    await sleep(10);
    assert.equal(cons.tryReceive(), undefined, 'the batch is unpublished and its producer alive: nothing');
    c.child.kill('SIGKILL');
    assertKilled(await c.done);
    assert.equal(cons.tryReceive(), undefined, 'the producer died: still nothing of its batch (and not the end: another producer lives)');
    // A new producer: no lane is free or closed, lane 0's owner is dead: it takes that lane over, at
    // LANE_WRITE (its records overwrite the unpublished batch). It sends more than a lane holds, so we
    // consume while it sends; attached before the Node producer closes, so that the end waits for it.
    const c3 = s.peer('produce', ['3', 30, seed, 'batch=3']);
    await until(() => s.lane(0).pid === c3.child.pid && s.lane(0).state === ATTACHED, [c3], 'the new C producer attached to lane 0', WAIT_MS);
    assert.equal(s.word(CHANNEL.FLAGS) & 2, 2, "taking over a dead producer's lane set FLAGS bit 1");
    for (let i = 0; i < 5; i++) prod.send(makeMessage(seed, 2, 5 + i, MAX_MESSAGE), WAIT_MS);
    prod.close();
    for (let k = 0; ; k++) {
      const msgs = takeSome(cons, k);
      if (msgs === null) break;
      for (const msg of msgs) tally.add(...checkMessage(msg, seed, expected, `message ${tally.count()}`));
    }
    assertOk(await c3.done, /^ok produce id=3 n=30 lane=0 /);
    assert.deepEqual(tally.seqs.get(1), [0, 1, 2, 3], 'nothing of the unpublished batch, ever');
    assert.deepEqual(tally.seqs.get(2), [...Array(10).keys()]);
    assert.deepEqual(tally.seqs.get(3), [...Array(30).keys()]);
    assert.equal(cons.endReason, 'producer-died');
  });

  test('a Node producer killed holding a reservation: the C consumer carries on and sees the end as producer-died', async (t) => {
    const s = setup(t);
    const seed = 6;
    const c = s.peer('consume', [seed, 'expect=1:5,2:5', 'all=1', 'list=1']);
    const k = s.nodeChild('reserve-die', 1, 5, seed);
    const [, lane, write] = (await line(k, /^reserved lane=(\d+) write=(\d+)$/m)).map(Number);
    assertOk(await s.peer('produce', ['2', 5, seed]).done, /^ok produce id=2 n=5 /);
    await until(() => listed(c.stdout()).length === 10, [c], 'the C consumer to take the 10 published messages', WAIT_MS);
    await sleep(300); // three of its 100 ms looks for the end
    assert.equal(c.result, undefined, 'the Node producer lives: not the end');
    assert.equal(s.lane(lane).write, write, 'the reservation is not published');
    k.child.kill('SIGKILL');
    assertKilled(await k.done);
    const res = await c.done;
    assertOk(res, /^ok consume n=10 end=producer-died corrupt=0 repaired=0 released=0 slept=\d+ timeouts=\d+ woke=\d+ got=1:5,2:5$/);
    const byProducer = (id) => listed(res.stdout).filter(([p]) => p === id).map(([, seq]) => seq);
    assert.deepEqual([byProducer(1), byProducer(2)], [[0, 1, 2, 3, 4], [0, 1, 2, 3, 4]]);
    assert.equal(s.word(CHANNEL.FLAGS) & 3, 3, 'the C consumer set FLAGS bit 1: a producer died');
    assert.deepEqual([s.lane(lane).state, s.lane(lane).write], [ATTACHED, write]);
  });

  /** Store `generation` in every consumer entry's CONSUMER_GENERATION (the next attach adds 1). */
  function presetGenerations(s, generation) {
    for (let i = 0; i < OPTIONS.maxConsumers; i++) s.setWord(s.g.consumersOffset + i * CHANNEL.CONSUMER_ENTRY + CHANNEL.CONSUMER_GENERATION, generation);
  }

  // Generation 0x40000 (2^18) and up makes the lock value negative as an i32: (g << 13) passes 2^31. The holder
  // check must shift it unsigned ((uint32_t)value >> 13, value >>> 13): a signed shift never matches the entry's
  // generation, and a live holder's lane would be taken (its messages delivered twice).
  const GENERATIONS = [0, 0x3ffff];

  test('a C consumer killed holding a lane: the Node consumer takes the lane back after the stall check and gets what it held again', async (t) => {
    for (const preset of GENERATIONS) {
      const s = setup(t, { ...OPTIONS, laneSize: 16384 }); // ten messages always fit
      presetGenerations(s, preset);
      const seed = 7;
      const prod = s.open();
      for (let i = 0; i < 10; i++) prod.send(makeMessage(seed, 2, i, MAX_MESSAGE), WAIT_MS);
      const c = s.peer('consume', [seed, 'expect=2:10', 'batch=1', 'hold-after=2', 'hold=3', 'list=1']);
      const [, lane, read, value, taken] = (await line(c, /^holding lane=(\d+) read=(\d+) value=(-?\d+) taken=(\d+)$/m)).map(Number);
      const what = `generation ${preset + 1}: `;
      assert.deepEqual(listed(c.stdout()), [[2, 0], [2, 1]], what);
      assert.deepEqual(listed(c.stdout(), 'h'), [[2, 2], [2, 3], [2, 4]], what);
      assert.deepEqual([lane, taken], [0, 3], what);
      const l = s.lane(0);
      assert.deepEqual([l.reader, l.read], [value, read], `${what}the C consumer holds the lane with its lock value, LANE_READ not moved past what it holds`);
      // Its lock value names its consumer entry (0) and generation, computed unsigned.
      const entry = (value & 0x1fff) - 1;
      assert.equal(value, (((preset + 1) << 13) | 1) | 0, what);
      assert.equal(value < 0, preset + 1 >= 0x40000, what);
      assert.deepEqual([entry, s.consumer(entry).pid, s.consumer(entry).generation & 0x7ffff], [0, c.child.pid, value >>> 13], what);
      const cons = s.open();
      throwsCode(() => cons.receive(300), 'ERR_MMAP_CHANNEL_TIMEOUT'); // a live holder keeps its lane
      assert.equal(s.lane(0).reader, value, what);
      c.child.kill('SIGKILL');
      assertKilled(await c.done);
      const expected = new Map([[2, 10]]);
      for (let i = 2; i < 10; i++) assert.deepEqual(checkMessage(cons.receive(WAIT_MS), seed, expected, `${what}seq ${i}`), [2, i], 'delivered again from where LANE_READ was');
      prod.close();
      assert.equal(cons.receive(WAIT_MS), null);
      assert.equal(cons.endReason, 'closed');
      assert.equal(s.lane(0).reader, 0);
    }
  });

  test("a C consumer that takes the entry of a consumer killed holding a lane lets go of that lane when it attaches", async (t) => {
    const s = setup(t, { ...OPTIONS, maxConsumers: 1 });
    const seed = 8;
    const prod = s.open();
    for (let i = 0; i < 6; i++) prod.send(makeMessage(seed, 2, i, MAX_MESSAGE), WAIT_MS);
    prod.close();
    const c1 = s.peer('consume', [seed, 'expect=2:6', 'batch=1', 'hold-after=1', 'hold=2']);
    const [, , , value] = (await line(c1, /^holding lane=(\d+) read=(\d+) value=(-?\d+) taken=(\d+)$/m)).map(Number);
    assert.equal(value, (1 << 13) | 1, 'entry 0, generation 1');
    c1.child.kill('SIGKILL');
    assertKilled(await c1.done);
    // The only entry belongs to a dead process: the next C consumer takes it (generation 2) and at once lets
    // go of the lane its earlier holder left locked (no stall check needed).
    const res = await s.peer('consume', [seed, 'expect=2:6', 'list=1']).done;
    assertOk(res, /^ok consume n=5 end=closed corrupt=0 repaired=0 released=1 slept=\d+ timeouts=\d+ woke=0 got=2:5$/);
    assert.deepEqual(listed(res.stdout), [1, 2, 3, 4, 5].map((i) => [2, i]), 'seqs 1 and 2 (held by the dead one) delivered again');
    assert.deepEqual([s.consumer(0).pid, s.consumer(0).generation], [0, 2]);
  });

  test('a Node consumer killed holding a message in place: the C consumer leaves its lane alone while it lives, then takes it back and gets the message again', async (t) => {
    for (const preset of GENERATIONS) {
      const s = setup(t);
      presetGenerations(s, preset);
      const seed = 9;
      const prod = s.open();
      for (let i = 0; i < 5; i++) prod.send(makeMessage(seed, 2, i, MAX_MESSAGE), WAIT_MS);
      prod.close();
      const k = s.nodeChild('hold-inplace');
      const [, id, seq, lane, reader] = (await line(k, /^holding id=(\d+) seq=(\d+) lane=(\d+) reader=(-?\d+)$/m)).map(Number);
      const what = `generation ${preset + 1}: `;
      assert.deepEqual([id, seq, lane], [2, 0, 0], what);
      assert.equal(reader, (((preset + 1) << 13) | 1) | 0, `${what}the Node consumer's lock value (entry 0)`);
      assert.equal(s.lane(0).reader, reader, what);
      const c = s.peer('consume', [seed, 'expect=2:5', 'all=1', 'list=1']);
      await sleep(300); // three of its 100 ms looks, each past the 2 ms stall check
      exitedFirst([c], `${what}the C consumer, while the holder lives`);
      assert.deepEqual(listed(c.stdout()), [], `${what}the C consumer took a lane from a live holder`);
      assert.equal(s.lane(0).reader, reader, what);
      k.child.kill('SIGKILL');
      assertKilled(await k.done);
      const res = await c.done;
      assertOk(res, /^ok consume n=5 end=closed corrupt=0 repaired=1 released=0 slept=\d+ timeouts=\d+ woke=0 got=2:5$/);
      assert.deepEqual(listed(res.stdout), [0, 1, 2, 3, 4].map((i) => [2, i]), what);
      assert.equal(s.lane(0).reader, 0, what);
    }
  });

  test('a lane held with the C consumer\'s own lock value, which it does not hold (garbage): it takes it back at once', async (t) => {
    const s = setup(t);
    const seed = 10;
    const prod = s.open();
    for (let i = 0; i < 5; i++) prod.send(makeMessage(seed, 2, i, MAX_MESSAGE), WAIT_MS);
    prod.close();
    // The C consumer will take entry 0, generation 1: lock value (1 << 13) | 1. Attaching lets go only of
    // values of earlier generations of its entry, not of its own; a consumer that waits for another holder
    // would wait for ever (and the C consumer time out, exit 3).
    s.setWord(s.ctl(0) + CHANNEL.LANE_READER, (1 << 13) | 1);
    const res = await s.peer('consume', [seed, 'expect=2:5', 'all=1', 'list=1']).done;
    assertOk(res, /^ok consume n=5 end=closed corrupt=0 repaired=1 released=0 slept=\d+ timeouts=\d+ woke=0 got=2:5$/);
    assert.deepEqual(listed(res.stdout), [0, 1, 2, 3, 4].map((i) => [2, i]));
    assert.equal(s.lane(0).reader, 0);
  });
});
