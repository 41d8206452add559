// Channel.inspect() and the lanes (issue 10): the read-only report of what a target holds (a live
// channel across processes, with its producers' lanes and consumers; an empty file, zeros, a channel
// of layout version 1 or 2, a corrupt header, a foreign file, a create() under way, a { name }
// target, a file this user may only read), the `lane` of a producer handle, the lane options
// (laneSize or capacity; maxProducers, one lane each), `size` over all lanes, and bad input.
import assert from 'node:assert/strict';
import { chmodSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Channel, CHANNEL, SharedMemory, map, mapAnonymous } from '../dist/index.js';
import { shmName, tempDir, throwsCode, timedTests, uniqueName } from './helpers.mjs';
import { startChild } from './fixtures/channel-child.mjs';

/** Every test has a time limit (awaiting a child or a stream has none of its own). */
const test = timedTests(120_000);
const uniq = (tag) => uniqueName(`ch85-${tag}`);

/** Anonymous shared memory sized for a channel, closed when the test ends. */
function anon(t, options) {
  const shm = SharedMemory.anonymous(Channel.byteLength(options));
  t.after(() => shm.close());
  return shm;
}


/** Bytes a message of n bytes takes in a lane: record(n) of docs/channel-layout.md. */
const recordOf = (n) => (CHANNEL.RECORD_HEADER + n + 7) & ~7;
const align128 = (n) => Math.ceil(n / 128) * 128;
/** The total size of a channel by the formulas of the layout doc's header table. */
const totalOf = (laneSize, maxProducers = 16, maxConsumers = 64) => align128(256 + 256 * maxProducers + 16 * maxConsumers) + maxProducers * laneSize;

/** Send `msg` until this producer's lane is full: how many went. */
function fill(ch, msg) {
  let n = 0;
  while (ch.trySend(msg)) n++;
  return n;
}

/** Spawn options handing `shm` to a child as 'ch'. */
const handOver = (shm) => shm.childOptions({ stdio: ['pipe', 'pipe', 'pipe'] }, 'ch');

// ------------------------------------------------------------------------------------------ inspect()

test('inspect() of a live channel across processes: limits, creator, every producer lane (pid, state, alive, queued and taken bytes, holder), the consumers; it writes nothing', async (t) => {
  const opts = { capacity: 8, maxMessageSize: 64, maxProducers: 4, maxConsumers: 4, producers: 3 };
  const shm = anon(t, opts);
  const tx = Channel.create(shm, opts);
  tx.sendMany(['a0', 'a1', 'a2']); // lane 0: three records of 16 bytes
  // A consumer child takes a0 in place and holds lane 0; a producer child sends 'held' (lane 1) and
  // stays attached; another sends 'result 9' (lane 2) and exits with its handle open.
  const holder = startChild(t, ['hold-inplace', 'inherit:ch'], handOver(shm));
  assert.deepEqual(JSON.parse(await holder.line(/^\{/)), { held: 'a0' });
  const producer = startChild(t, ['hold', 'inherit:ch', 'open', 'producer'], handOver(shm));
  await producer.line(/^ready$/);
  const quitter = startChild(t, ['send-one', 'inherit:ch', '9', 'exit'], handOver(shm));
  assert.deepEqual(await quitter.exited, { code: 0, signal: null });
  const before = Buffer.from(shm.buffer);
  const r = Channel.inspect(shm);
  assert.ok(shm.buffer.equals(before), 'inspect() wrote nothing');
  assert.equal(r.state, 'channel');
  assert.equal(r.version, 3);
  assert.equal(r.memorySize, shm.size);
  assert.deepEqual(r.limits, { laneSize: 4096, maxMessageSize: 64, capacity: tx.capacity, maxProducers: 4, maxConsumers: 4, totalSize: Channel.byteLength(opts), producers: 3 });
  assert.deepEqual(r.creator, { pid: process.pid, alive: true });
  assert.deepEqual([r.hadProducer, r.producerDied, r.producerAttaches], [true, false, 3]);
  assert.deepEqual(r.producers, [
    { lane: 0, pid: process.pid, state: 'attached', alive: true, queuedBytes: 3 * 16, takenBytes: 0, heldBy: 0 },
    { lane: 1, pid: producer.child.pid, state: 'attached', alive: true, queuedBytes: 16, takenBytes: 0, heldBy: -1 },
    { lane: 2, pid: quitter.child.pid, state: 'attached', alive: false, queuedBytes: 16, takenBytes: 0, heldBy: -1 },
  ]);
  assert.deepEqual(r.consumers, [{ entry: 0, pid: holder.child.pid, alive: true }]);
  // Released: lane 0 is free, a0 taken. A consumer here takes the rest.
  holder.tell('release');
  await holder.line(/^released$/);
  const rx = Channel.open(shm);
  assert.deepEqual(rx.receiveMany(10).map(String).sort(), ['a1', 'a2', 'held', 'result 9']);
  let now = Channel.inspect(shm);
  assert.deepEqual(now.producers.map((p) => [p.queuedBytes, p.takenBytes, p.heldBy]), [[0, 48, -1], [0, 16, -1], [0, 16, -1]]);
  assert.deepEqual(now.consumers, [{ entry: 0, pid: holder.child.pid, alive: true }, { entry: 1, pid: process.pid, alive: true }]);
  // The producer child closes (its lane says so), the holder closes (its entry is free).
  producer.tell('close');
  await producer.line(/^closed$/);
  holder.tell('close');
  await holder.line(/^closed$/);
  now = Channel.inspect(shm);
  // (alive: true or false, the child exits as soon as it said 'closed')
  const { alive, ...closed } = now.producers[1];
  assert.deepEqual(closed, { lane: 1, pid: producer.child.pid, state: 'closed', queuedBytes: 0, takenBytes: 16, heldBy: -1 });
  assert.equal(typeof alive, 'boolean');
  assert.deepEqual(now.consumers, [{ entry: 1, pid: process.pid, alive: true }]);
  await producer.exited;
  assert.equal(Channel.inspect(shm).producers[1].alive, false, 'alive says whether the process lives now');
  // The creator's handle closes: the end of the stream, and the dead producer is remembered.
  tx.close();
  assert.equal(rx.receive(5000), null);
  assert.equal(rx.endReason, 'producer-died');
  now = Channel.inspect(shm);
  assert.deepEqual(now.creator, { pid: 0, alive: false });
  assert.deepEqual([now.producerDied, now.producers[0].state], [true, 'closed']);
  rx.close();
  assert.deepEqual(Channel.inspect(shm).consumers, []);
});

test('inspect() of a { name } target and of a file: mapped read-only (a file this user may only read works), with the ownership options of open() for a name', async (t) => {
  const opts = { capacity: 4, maxMessageSize: 32, maxProducers: 2, maxConsumers: 2 };
  const name = shmName(t, 'insp');
  const made = Channel.create({ name }, opts);
  const child = startChild(t, ['hold', `name:${name}`, 'open', 'producer']);
  await child.line(/^ready$/);
  const r = Channel.inspect({ name });
  assert.equal(r.state, 'channel');
  assert.deepEqual(r.producers.map((p) => [p.lane, p.pid, p.state, p.queuedBytes]), [[0, child.child.pid, 'attached', 16]]);
  assert.deepEqual(Channel.inspect({ name: `/${name}` }, { owner: 'self', sharedWith: 'nobody' }).producers, r.producers);
  assert.equal(Channel.inspect({ name }, { owner: process.getuid(), sharedWith: 'anyone' }).state, 'channel');
  child.tell('close');
  await child.line(/^closed$/);
  made.close();
  // A file with mode 0400: inspect() maps it read-only; open() cannot join it.
  const path = join(tempDir(t), 'ro.channel');
  Channel.create(path, opts).close();
  chmodSync(path, 0o400);
  const before = statSync(path).mtimeMs;
  const f = Channel.inspect(path);
  assert.equal(f.state, 'channel');
  assert.deepEqual(f.creator, { pid: 0, alive: false });
  assert.deepEqual([f.producers, f.consumers], [[], []]);
  assert.equal(statSync(path).mtimeMs, before);
  if (process.getuid() !== 0) throwsCode(() => Channel.open(path), 'EACCES', 'Error');
  // A Mapping target, shared or private: looked at as it is.
  const m = map(path, { access: 'read' });
  assert.equal(Channel.inspect(m).state, 'channel');
  m.unmap();
  const priv = mapAnonymous(8192);
  assert.deepEqual(Channel.inspect(priv), { state: 'uninitialized', memorySize: 8192, partial: false });
  priv.unmap();
});

test('inspect() of what is not a live channel: an empty file, zeros, too few bytes, layout versions 1 and 2, a corrupt header, a foreign file, a create() under way', (t) => {
  const dir = tempDir(t);
  const at = (name, bytes) => {
    const path = join(dir, name);
    writeFileSync(path, bytes);
    return path;
  };
  // An empty file cannot be mapped: the same error as open() gives (ERR_MMAP_EMPTY_FILE).
  const empty = at('empty', '');
  throwsCode(() => Channel.inspect(empty), 'ERR_MMAP_EMPTY_FILE', 'MmapkitError');
  throwsCode(() => Channel.open(empty), 'ERR_MMAP_EMPTY_FILE', 'MmapkitError');
  assert.deepEqual(Channel.inspect(at('zeros', Buffer.alloc(8192))), { state: 'uninitialized', memorySize: 8192, partial: false });
  const zeros = SharedMemory.anonymous(4096);
  t.after(() => zeros.close());
  assert.deepEqual(Channel.inspect(zeros), { state: 'uninitialized', memorySize: 4096, partial: false });
  for (const size of [1, 100, CHANNEL.CONTROL_END - 1]) {
    const r = Channel.inspect(at(`small${size}`, Buffer.alloc(size, 0x4d)));
    assert.deepEqual([r.state, r.memorySize], ['foreign', size]);
    assert.match(r.reason, new RegExp(`^${size} bytes, less than a channel header`));
  }
  const text = Channel.inspect(at('script.sh', '#!/bin/sh\necho hello\n'.repeat(50)));
  assert.equal(text.state, 'foreign');
  assert.match(text.reason, /^magic 0x622f2123$/);
  assert.equal(text.limits, undefined);
  // A channel of an earlier layout version: reported as such; open() refuses it.
  const opts = { capacity: 4, maxMessageSize: 64, maxProducers: 2, maxConsumers: 2 };
  const path = join(dir, 'old.channel');
  for (const version of [1, 2]) {
    Channel.create(path, opts).close();
    const m = map(path, { access: 'write' });
    m.buffer.writeUInt16LE(version, CHANNEL.VERSION);
    m.unmap();
    assert.deepEqual(Channel.inspect(path), { state: 'other-version', memorySize: Channel.byteLength(opts), version });
    throwsCode(() => Channel.open(path), 'ERR_MMAP_BAD_HEADER', 'MmapkitError');
    // create() never resets another version's channel (its users are not in our tables).
    throwsCode(() => Channel.create(path, opts), 'ERR_MMAP_CHANNEL_IN_USE', 'MmapkitError');
    assert.equal(readFileSync(path).readUInt16LE(CHANNEL.VERSION), version, 'nothing was written');
    rmSync(path);
  }
  // Corrupt: a version 3 header that does not validate says why.
  for (const [field, value, why] of [['LANE_SIZE', 5000, /lane size 5000 is not a power of two/], ['RINGS_OFFSET', 0, /offsets do not match/], ['TOTAL_SIZE', 1, /total size 1/]]) {
    Channel.create(path, opts).close();
    const m = map(path, { access: 'write' });
    m.buffer.writeUInt32LE(value, CHANNEL[field]);
    m.unmap();
    const r = Channel.inspect(path);
    assert.deepEqual([r.state, r.version, r.limits, r.producers], ['corrupt', 3, undefined, undefined], field);
    assert.match(r.reason, why);
    throwsCode(() => Channel.open(path), 'ERR_MMAP_BAD_HEADER', 'MmapkitError');
  }
  // A create() under way (or abandoned): the header written, the magic not yet.
  Channel.create(path, opts).close();
  const m = map(path, { access: 'write' });
  Atomics.store(new Int32Array(m.buffer.buffer, m.buffer.byteOffset, 1), 0, 0);
  m.unmap();
  assert.deepEqual(Channel.inspect(path), { state: 'uninitialized', memorySize: Channel.byteLength(opts), partial: true, version: 3 });
});

test('bad input to inspect(): targets, options, ownership options for a target other than { name }', (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'c.channel');
  Channel.create(path, { maxProducers: 1, maxConsumers: 1, maxMessageSize: 64 }).close();
  const TYPE = ['ERR_INVALID_ARG_TYPE', 'TypeError'];
  const VALUE = ['ERR_INVALID_ARG_VALUE', 'TypeError'];
  const name = uniq('missing');
  for (const [target, [code, errName]] of [
    [undefined, TYPE], [null, TYPE], [42, TYPE], [{}, TYPE], [{ name: 5 }, TYPE], [Buffer.alloc(8192), TYPE], [new URL(`file://${path}`), TYPE],
    [new ArrayBuffer(8192), TYPE], [{ name: 'a/b' }, VALUE], [{ name: '' }, VALUE], [{ name, owner: 'self' }, VALUE],
    [join(dir, 'missing'), ['ENOENT', 'Error']], [dir, ['EISDIR', 'Error']], [{ name }, ['ENOENT', 'Error']],
  ]) {
    throwsCode(() => Channel.inspect(target), code, errName);
  }
  for (const [options, [code, errName]] of [
    [null, TYPE], [5, TYPE], ['self', TYPE], [{ wait: 'spin' }, VALUE], [{ capacity: 4 }, VALUE], [{ ownr: 'self' }, VALUE],
    [{ owner: 'self' }, VALUE], [{ sharedWith: 'anyone' }, VALUE], // for a { name } target only
  ]) {
    throwsCode(() => Channel.inspect(path, options), code, errName);
  }
  const shm = SharedMemory.anonymous(4096);
  t.after(() => shm.close());
  throwsCode(() => Channel.inspect(shm, { owner: 'any' }), ...VALUE);
  const named = shmName(t, 'own');
  Channel.create({ name: named }, { maxProducers: 1, maxConsumers: 1, maxMessageSize: 64 }).close();
  for (const [options, [code, errName]] of [[{ owner: 'someone' }, VALUE], [{ owner: -2 }, ['ERR_OUT_OF_RANGE', 'RangeError']], [{ sharedWith: 'world' }, VALUE], [{ owner: '0' }, VALUE]]) {
    throwsCode(() => Channel.inspect({ name: named }, options), code, errName);
  }
  assert.equal(Channel.inspect({ name: named }).state, 'channel');
});

// ------------------------------------------------------------------------------------------ lanes

test('lane: undefined until a handle is a producer, then the lane it sends through; one lane per producer, reused after close with its messages; no lane left is ERR_MMAP_CHANNEL_FULL', (t) => {
  const opts = { capacity: 4, maxMessageSize: 16, maxProducers: 3 };
  const shm = anon(t, opts);
  const c = Channel.create(shm, opts);
  assert.equal(c.lane, undefined);
  c.attach('consumer');
  assert.equal(c.tryReceive(), undefined);
  assert.equal(c.lane, undefined, 'a consumer has no lane');
  const a = Channel.open(shm);
  const b = Channel.open(shm);
  const d = Channel.open(shm);
  b.attach('producer');
  assert.deepEqual([a.lane, b.lane], [undefined, 0], 'the first to attach takes lane 0');
  a.send('a1');
  d.reserve(0).commit(0);
  assert.deepEqual([a.lane, b.lane, d.lane], [1, 0, 2]);
  const e = Channel.open(shm);
  throwsCode(() => e.send('no lane'), 'ERR_MMAP_CHANNEL_FULL', 'MmapkitError');
  throwsCode(() => e.attach('producer'), 'ERR_MMAP_CHANNEL_FULL', 'MmapkitError');
  assert.equal(e.lane, undefined);
  // Full is per lane: a's lane full does not hold b back.
  const X = 'x'.repeat(16);
  const n = fill(a, X);
  assert.ok(n >= a.capacity);
  assert.equal(a.trySend('x'), false);
  assert.equal(b.trySend('b1'), true);
  // a closes: its lane goes to the next producer, with a's messages still queued ahead of e's (the
  // lane is still full for e until a consumer takes some).
  a.close();
  assert.equal(e.trySend('e1'), false);
  assert.equal(e.lane, 1);
  assert.equal(Channel.inspect(shm).producers[1].pid, process.pid);
  const all = [];
  while (!e.trySend('e1')) all.push(...c.receiveMany(1, 1000).map(String));
  all.push(...c.receiveMany(1000, 1000).map(String));
  assert.deepEqual(all.filter((m) => m !== 'b1' && m !== ''), ['a1', ...Array(n).fill(X), 'e1'], "lane 1: a's messages, then e's");
  assert.deepEqual(all.filter((m) => m === 'b1' || m === '').sort(), ['', 'b1']);
  for (const h of [b, d, e, c]) h.close();
});

test('size counts the messages queued in all lanes; capacity and full are per lane', (t) => {
  const opts = { capacity: 10, maxMessageSize: 1000, maxProducers: 3 };
  const shm = anon(t, opts);
  const rx = Channel.create(shm, opts);
  const producers = [0, 1, 2].map(() => Channel.open(shm));
  t.after(() => [rx, ...producers].forEach((h) => h.close()));
  // 11 records of 1008 bytes at least: a lane of 16384 bytes, which takes 16 of them from empty...
  assert.equal(rx.laneSize, 16384);
  assert.equal(rx.capacity, 15);
  assert.equal(fill(producers[0], Buffer.alloc(1000)), 16);
  // ...and many more smaller ones: "full" comes later than `capacity` messages.
  assert.equal(fill(producers[1], Buffer.alloc(10)), Math.floor(16384 / recordOf(10)));
  producers[2].sendMany(['x', 'y']);
  assert.equal(rx.size, 16 + Math.floor(16384 / recordOf(10)) + 2);
  for (const p of producers) assert.equal(p.size, rx.size, 'the same from every handle');
  rx.receiveMany(5000);
  assert.equal(rx.size, 0);
});

test('the options laneSize and capacity: lanes are powers of two of 4096 bytes at least; the defaults; maxProducers (16 by default) lanes; byteLength() by the layout formulas', (t) => {
  // laneSize: rounded up to a power of two.
  for (const [asked, lane] of [[4096, 4096], [4097, 8192], [5000, 8192], [65536, 65536], [2 ** 20 + 1, 2 ** 21]]) {
    const o = { laneSize: asked, maxMessageSize: 100, maxProducers: 2, maxConsumers: 2 };
    assert.equal(Channel.byteLength(o), totalOf(lane, 2, 2), `laneSize ${asked}`);
    const mem = SharedMemory.anonymous(Channel.byteLength(o));
    const ch = Channel.create(mem, o);
    assert.equal(ch.laneSize, lane);
    assert.equal(ch.capacity, Math.floor((lane - recordOf(100) + 8) / recordOf(100)));
    assert.deepEqual(Channel.inspect(mem).limits, { laneSize: lane, maxMessageSize: 100, capacity: ch.capacity, maxProducers: 2, maxConsumers: 2, totalSize: totalOf(lane, 2, 2), producers: undefined });
    ch.close();
    mem.close();
  }
  // The least lane for a maxMessageSize: two records of it (one always fits in an empty lane).
  assert.equal(Channel.byteLength({ laneSize: 8192, maxMessageSize: 2041, maxProducers: 1, maxConsumers: 1 }), totalOf(8192, 1, 1));
  throwsCode(() => Channel.byteLength({ laneSize: 4096, maxMessageSize: 2041 }), 'ERR_OUT_OF_RANGE', 'RangeError');
  assert.equal(Channel.byteLength({ laneSize: 4096, maxMessageSize: 2040, maxProducers: 1, maxConsumers: 1 }), totalOf(4096, 1, 1));
  // Defaults: 16 producers and 64 consumers; lanes of 256 KiB, or the least for a larger maxMessageSize.
  assert.equal(Channel.byteLength(), totalOf(256 * 1024));
  assert.equal(Channel.byteLength({}), totalOf(256 * 1024));
  assert.equal(Channel.byteLength({ maxMessageSize: 100_000 }), totalOf(256 * 1024));
  assert.equal(Channel.byteLength({ maxMessageSize: 200_000 }), totalOf(512 * 1024));
  assert.equal(Channel.byteLength({ capacity: 1 }), totalOf(16384), 'capacity 1 of 4096 bytes: 2 records of 4104 bytes');
  // The default maxProducers: 16 lanes, a 17th producer is refused.
  const o = { laneSize: 4096, maxMessageSize: 16 };
  assert.equal(Channel.byteLength(o), totalOf(4096));
  const mem = SharedMemory.anonymous(Channel.byteLength(o));
  t.after(() => mem.close());
  const creator = Channel.create(mem, o);
  const handles = Array.from({ length: 16 }, () => Channel.open(mem));
  handles.forEach((h, i) => {
    h.attach('producer');
    assert.equal(h.lane, i);
  });
  const extra = Channel.open(mem);
  throwsCode(() => extra.attach('producer'), 'ERR_MMAP_CHANNEL_FULL', 'MmapkitError');
  assert.equal(Channel.inspect(mem).producers.length, 16);
  for (const h of [...handles, extra, creator]) h.close();
});

test('bad laneSize and capacity: wrong types and ranges, both given, a lane too small for maxMessageSize; byteLength() and create() refuse them alike and create nothing', (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'never.channel');
  const name = uniq('never');
  const TYPE = ['ERR_INVALID_ARG_TYPE', 'TypeError'];
  const VALUE = ['ERR_INVALID_ARG_VALUE', 'TypeError'];
  const RANGE = ['ERR_OUT_OF_RANGE', 'RangeError'];
  const cases = [
    [{ laneSize: '4096' }, TYPE], [{ laneSize: 4096n }, TYPE], [{ laneSize: null }, TYPE], [{ laneSize: [4096] }, TYPE], [{ laneSize: true }, TYPE],
    [{ laneSize: 0 }, RANGE], [{ laneSize: -1 }, RANGE], [{ laneSize: 1.5 }, RANGE], [{ laneSize: NaN }, RANGE], [{ laneSize: Infinity }, RANGE],
    [{ laneSize: 2 ** 30 + 1 }, RANGE], [{ laneSize: 2 ** 31 }, RANGE],
    [{ capacity: '8' }, TYPE], [{ capacity: null }, TYPE], [{ capacity: 0 }, RANGE], [{ capacity: -1 }, RANGE], [{ capacity: 0.5 }, RANGE],
    [{ capacity: NaN }, RANGE], [{ capacity: 2 ** 31 }, RANGE],
    // Too much for a lane of at most 1 GiB.
    [{ capacity: 2 ** 30, maxMessageSize: 1 }, RANGE], [{ capacity: 262144, maxMessageSize: 4096 }, RANGE],
    // Both size the lanes: pick one.
    [{ laneSize: 4096, capacity: 1, maxMessageSize: 1 }, VALUE], [{ laneSize: 65536, capacity: 8 }, VALUE],
    // Too small for two records of maxMessageSize (or 4096 bytes).
    [{ laneSize: 4095, maxMessageSize: 1 }, RANGE], [{ laneSize: 4096 }, RANGE], [{ laneSize: 8192, maxMessageSize: 4089 }, RANGE],
    [{ laneSize: 2 ** 29, maxMessageSize: 2 ** 28 }, RANGE],
  ];
  for (const [options, [code, errName]] of cases) {
    throwsCode(() => Channel.byteLength(options), code, errName);
    for (const target of [path, { name }]) throwsCode(() => Channel.create(target, options), code, errName);
  }
  assert.throws(() => Channel.byteLength({ laneSize: 4096, capacity: 4 }), /pick one/);
  assert.throws(() => Channel.byteLength({ laneSize: 4096 }), /must be >= 16384 \(two records of maxMessageSize 4096/);
  assert.throws(() => statSync(path), { code: 'ENOENT' }, 'no file was made');
  throwsCode(() => SharedMemory.open(name), 'ENOENT', 'Error');
  // The edges that are fine.
  assert.equal(Channel.byteLength({ laneSize: 8192, maxMessageSize: 4088, maxProducers: 1, maxConsumers: 1 }), totalOf(8192, 1, 1));
  assert.equal(Channel.byteLength({ laneSize: 2 ** 30, maxProducers: 1, maxConsumers: 1 }), totalOf(2 ** 30, 1, 1));
  assert.equal(Channel.byteLength({ capacity: 1, maxMessageSize: 1, maxProducers: 1, maxConsumers: 1 }), totalOf(4096, 1, 1));
});
