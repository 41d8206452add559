// Channel errors: messages larger than maxMessageSize (ERR_OUT_OF_RANGE at once from every send, never a
// wait); closed handles and closed memory (ERR_MMAP_CLOSED from every method; close() settles a pending
// wait of its handle); bad input: options of create(), open(), byteLength(), readable() and writable(),
// targets, message data, timeouts. (Header checks: test/80.channel-header.)
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Channel, SharedMemory, map, mapAnonymous } from '../dist/index.js';
import { shmName, tempDir, throwsCode } from './helpers.mjs';
import { anon, elapsed, fill, rejectsCode, sleep, test, uniq } from './channel-helpers.mjs';

// ------------------------------------------------------------------------------------------ too large

test('messages larger than maxMessageSize are ERR_OUT_OF_RANGE at once, never a wait', async (t) => {
  const opts = { capacity: 2, maxMessageSize: 100 };
  const shm = anon(t, opts);
  const p = Channel.create(shm, opts);
  p.send('a');
  p.send('b');
  // Full: a wait would hang until the timeout. Records: 16 + 16 + 36 x 112 = 4064 of 4096 bytes.
  assert.equal(fill(p, Buffer.alloc(100, 7)), 36);
  const t0 = performance.now();
  for (const big of [Buffer.alloc(101), 'x'.repeat(101), 'é'.repeat(51), new Uint32Array(26)]) {
    throwsCode(() => p.trySend(big), 'ERR_OUT_OF_RANGE', 'RangeError');
    throwsCode(() => p.send(big), 'ERR_OUT_OF_RANGE', 'RangeError');
    throwsCode(() => p.send(big, 10_000), 'ERR_OUT_OF_RANGE', 'RangeError');
    throwsCode(() => p.sendMany(['ok', big], 10_000), 'ERR_OUT_OF_RANGE', 'RangeError');
    await rejectsCode(p.sendAsync(big), 'ERR_OUT_OF_RANGE', 'RangeError');
    await rejectsCode(p.sendManyAsync([big]), 'ERR_OUT_OF_RANGE', 'RangeError');
  }
  assert.ok(elapsed(t0) < 500, 'no waiting');
  const c = Channel.open(shm);
  // 'a', 'b' and one message of 100 bytes free 144 bytes: with the 32 left at the end of the ring,
  // room for a record of 112 after 32 of padding.
  assert.deepEqual(c.receiveMany(3).map((m) => m.length), [1, 1, 100]);
  const r = p.reserve(0);
  throwsCode(() => r.commit(101), 'ERR_OUT_OF_RANGE', 'RangeError');
  throwsCode(() => r.commit(-1), 'ERR_OUT_OF_RANGE', 'RangeError');
  throwsCode(() => r.commit(1.5), 'ERR_OUT_OF_RANGE', 'RangeError');
  throwsCode(() => r.commit('5'), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  r.buffer.write('hello');
  r.commit(5);
  // The reservation took the room of what it committed only (16 bytes): 128 are left.
  assert.equal(p.trySend(Buffer.alloc(100, 1)), true, 'exactly maxMessageSize is fine (when there is room)');
  assert.equal(p.trySend(Buffer.alloc(100, 2)), false, 'full');
  assert.deepEqual(c.receiveMany(1000, 1000), [...Array(35).fill(Buffer.alloc(100, 7)), Buffer.from('hello'), Buffer.alloc(100, 1)]);
  assert.equal(p.trySend(Buffer.alloc(100, 2)), true);
  assert.deepEqual(c.receive(0), Buffer.alloc(100, 2));
  p.close();
  c.close();
});

// ------------------------------------------------------------------------------------------ closed

test('a closed handle throws ERR_MMAP_CLOSED from every method, and so does a channel whose memory was closed', async (t) => {
  const opts = { capacity: 4, maxMessageSize: 16 };
  const path = join(tempDir(t), 'closed.bin');
  const shm = anon(t, opts);
  const handles = [Channel.create(path, opts), Channel.open(path, { wait: 'spin' }), Channel.create(shm, opts), Channel.open(shm, { wait: 'async' })];
  handles[0].send('x');
  handles[1].receive(0);
  const { capacity, laneSize } = handles[0];
  for (const h of handles) h.close();
  const gone = Channel.open(shm);
  shm.close(); // the memory goes away under a handle that is still open
  throwsCode(() => Channel.inspect(shm), 'ERR_MMAP_CLOSED', 'MmapkitError');
  const target = Buffer.alloc(16);
  const lengths = new Uint32Array(4);
  for (const h of [...handles, gone]) {
    const calls = [
      () => h.trySend('x'), () => h.send('x'), () => h.send('x', 10), () => h.reserve(), () => h.reserve(0),
      () => h.tryReceive(), () => h.receive(), () => h.receive(10), () => h.receiveInPlace(0),
      () => h.readable(), () => h.writable(), () => h.size, () => h.attach('producer'), () => h.attach('consumer'),
      () => h.sendMany(['x']), () => h.trySendMany(['x']), () => h.receiveMany(), () => h.receiveMany(2, 10), () => h.tryReceiveMany(),
      () => h.receiveInto(target, lengths), () => h.receiveInto(target, lengths, 10), () => h.drain(() => {}), () => h.drain(() => {}, 2, { timeout: 10 }),
    ];
    for (const fn of calls) throwsCode(fn, 'ERR_MMAP_CLOSED', 'MmapkitError');
    await rejectsCode(h.sendAsync('x'), 'ERR_MMAP_CLOSED', 'MmapkitError');
    await rejectsCode(h.receiveAsync(), 'ERR_MMAP_CLOSED', 'MmapkitError');
    await rejectsCode(h.sendManyAsync(['x']), 'ERR_MMAP_CLOSED', 'MmapkitError');
    await rejectsCode(h.receiveManyAsync(), 'ERR_MMAP_CLOSED', 'MmapkitError');
    await rejectsCode(h.receiveIntoAsync(target, lengths), 'ERR_MMAP_CLOSED', 'MmapkitError');
    await rejectsCode(h.drainAsync(() => {}), 'ERR_MMAP_CLOSED', 'MmapkitError');
    await rejectsCode(h[Symbol.asyncIterator]().next(), 'ERR_MMAP_CLOSED', 'MmapkitError');
    h.close(); // idempotent
    h[Symbol.dispose]();
    assert.equal(h.closed, true);
    // The getters that need no memory still answer (producers: the memory is gone, so not known).
    assert.deepEqual([h.capacity, h.laneSize, h.maxMessageSize, h.ended, h.endReason, h.producers], [capacity, laneSize, 16, false, undefined, undefined]);
  }
  // A pending async wait on a handle that owns its mapping is cancelled by close().
  const live = Channel.open(path);
  live.send('y');
  Channel.open(path).receive(0);
  const own = Channel.open(path);
  const pending = own.receiveAsync();
  own.close();
  await rejectsCode(pending, 'ERR_MMAP_CLOSED');
  live.close();
});

// ------------------------------------------------------------------------------------------ bad input

test('bad input: unknown options, bad capacity/maxMessageSize types and ranges, bad targets, bad timeouts', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'bad.bin');
  const name = uniq('bad');
  const TYPE = ['ERR_INVALID_ARG_TYPE', 'TypeError'];
  const VALUE = ['ERR_INVALID_ARG_VALUE', 'TypeError'];
  const RANGE = ['ERR_OUT_OF_RANGE', 'RangeError'];
  // `spin` with 'block' or 'async' (which never spin) is refused now, no longer ignored: the spin
  // cases name a spinning strategy. capacity 1 is valid now (a lane for at least one message).
  const createCases = [
    [{ capacty: 8 }, VALUE], [{ wait: 'busy' }, VALUE], [{ wait: 1 }, VALUE], [{ wait: 'hybrid', spin: '5' }, TYPE], [{ wait: 'spin', spin: -1 }, VALUE],
    [{ wait: 'hybrid', spin: NaN }, VALUE], [{ wait: 'spin', spin: 1e6 + 1 }, VALUE], [{ spin: 5 }, VALUE], [{ wait: 'block', spin: 0 }, VALUE],
    [{ wait: 'async', spin: 5 }, VALUE],
    [{ capacity: '8' }, TYPE], [{ capacity: 8n }, TYPE], [{ capacity: null }, TYPE], [{ capacity: 0 }, RANGE],
    [{ capacity: -4 }, RANGE], [{ capacity: 2 ** 24 + 1 }, RANGE], [{ capacity: 4.5 }, RANGE], [{ capacity: NaN }, RANGE], [{ capacity: Infinity }, RANGE],
    [{ maxMessageSize: '1' }, TYPE], [{ maxMessageSize: 0 }, RANGE], [{ maxMessageSize: -1 }, RANGE], [{ maxMessageSize: 2 ** 30 }, RANGE],
    [{ maxMessageSize: 1.5 }, RANGE], [{ maxProducers: 0 }, RANGE], [{ maxProducers: 4097 }, RANGE], [{ maxConsumers: 0 }, RANGE],
    [{ maxConsumers: '2' }, TYPE], [{ capacity: 2 ** 20, maxMessageSize: 2 ** 12 }, RANGE], // a lane of more than 1 GiB
    [{ laneSize: 2 ** 30 }, VALUE], [{ capacity: 2 ** 17, maxMessageSize: 2 ** 12, maxProducers: 4096 }, VALUE], // more than 4 GiB
    [{ laneSize: '4096' }, TYPE], [{ laneSize: 4096n }, TYPE], [{ laneSize: null }, TYPE], [{ laneSize: 0 }, RANGE], [{ laneSize: 4095 }, RANGE],
    [{ laneSize: 2 ** 30 + 1 }, RANGE], [{ laneSize: 4096.5 }, RANGE], [{ laneSize: NaN }, RANGE], [{ laneSize: -4096 }, RANGE],
    [{ laneSize: 4096, capacity: 4 }, VALUE], [{ laneSize: 4096, maxMessageSize: 2041 }, RANGE], // both; too small for two records
    [null, TYPE], [5, TYPE], ['opts', TYPE], [[], TYPE],
  ];
  for (const [options, [code, errName]] of createCases) {
    for (const target of [path, { name }]) {
      throwsCode(() => Channel.create(target, options), code, errName);
    }
  }
  assert.equal(existsSync(path), false, 'bad options create no file');
  assert.equal(existsSync(`/dev/shm/${name}`), false, 'bad options create no shared memory');
  for (const [options, [code, errName]] of createCases) {
    // byteLength() takes the channel's own options only: to it, wait and spin (options of a handle) are
    // unknown options, so those cases are left out here; unknown options and non-objects have a test
    // of their own ('unknown or mistyped options of byteLength(), readable() and writable() are errors').
    if (options === null || typeof options !== 'object' || Array.isArray(options) || 'capacty' in options || 'wait' in options || 'spin' in options) continue;
    throwsCode(() => Channel.byteLength(options), code, errName);
  }
  Channel.create(path, { capacity: 4, maxMessageSize: 8 }).close();
  for (const [options, [code, errName]] of [[{ capacity: 4 }, VALUE], [{ laneSize: 4096 }, VALUE], [{ maxProducers: 2 }, VALUE], [{ wiat: 'spin' }, VALUE],
    [{ wait: 'sleep' }, VALUE], [{ wait: 'spin', spin: 'x' }, TYPE], [{ spin: 5 }, VALUE], [{ wait: 'async', spin: 1 }, VALUE], [null, TYPE], [1, TYPE]]) {
    throwsCode(() => Channel.open(path, options), code, errName);
  }
  // targets
  const small = SharedMemory.anonymous(4096);
  t.after(() => small.close());
  const roName = shmName(t, 'ro');
  Channel.create({ name: roName }, { capacity: 4, maxMessageSize: 8 }).close();
  const ro = SharedMemory.open(roName, { access: 'read' });
  t.after(() => ro.close());
  const roMapping = map(path, { access: 'read' });
  const priv = mapAnonymous(Channel.byteLength());
  t.after(() => { roMapping.unmap(); priv.unmap(); });
  for (const [target, code, errName] of [
    [undefined, ...TYPE], [null, ...TYPE], [42, ...TYPE], [{}, ...TYPE], [{ name: 5 }, ...TYPE], [Buffer.alloc(8192), ...TYPE], [new URL('file:///tmp/x'), ...TYPE],
    [{ name: 'a/b' }, ...VALUE], [{ name: '' }, ...VALUE],
    [small, 'ERR_INVALID_ARG_VALUE', 'TypeError'], // too small for a default channel
    [priv, 'ERR_MMAP_NOT_SHARED', 'MmapkitError'], [roMapping, 'ERR_MMAP_NOT_SHARED', 'MmapkitError'],
    [join(dir, 'no', 'such', 'dir'), 'ENOENT', 'Error'], [dir, 'EISDIR', 'Error'],
  ]) {
    throwsCode(() => Channel.create(target), code, errName);
  }
  for (const [target, code, errName] of [
    [undefined, ...TYPE], [42, ...TYPE], [{ name: 5 }, ...TYPE], [{ name: 'a/b' }, ...VALUE],
    [join(dir, 'missing'), 'ENOENT', 'Error'], [priv, 'ERR_MMAP_NOT_SHARED', 'MmapkitError'],
    [ro, 'ERR_MMAP_NOT_SHARED', 'MmapkitError'],
  ]) {
    throwsCode(() => Channel.open(target), code, errName);
  }
  throwsCode(() => new Channel(), undefined, 'TypeError');
  // method arguments
  const ch = Channel.create(path, { capacity: 4, maxMessageSize: 8 });
  for (const data of [undefined, null, 5, {}, [1, 2], new ArrayBuffer(4), Symbol('x')]) {
    throwsCode(() => ch.trySend(data), ...TYPE);
    throwsCode(() => ch.send(data), ...TYPE);
    await rejectsCode(ch.sendAsync(data), ...TYPE);
  }
  const timeouts = [['1', TYPE], [-1, VALUE], [NaN, VALUE], [-Infinity, VALUE], [null, TYPE], [true, TYPE], [{ timeout: '1' }, TYPE],
    [{ timeout: -5 }, VALUE], [{ timout: 5 }, VALUE], [{ signal: 'x' }, TYPE], [{ timeout: 5, extra: 1 }, VALUE]];
  for (const [timeout, [code, errName]] of timeouts) {
    throwsCode(() => ch.send('x', timeout), code, errName);
    throwsCode(() => ch.receive(timeout), code, errName);
    throwsCode(() => ch.receiveInPlace(timeout), code, errName);
    throwsCode(() => ch.reserve(timeout), code, errName);
    await rejectsCode(ch.sendAsync('x', timeout), code, errName);
    await rejectsCode(ch.receiveAsync(timeout), code, errName);
  }
  throwsCode(() => ch.readable({ highWaterMark: -1 }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  assert.equal(ch.size, 0, 'no bad call sent anything');
  ch.close();
  // A writable() refused for its options does not make the handle a producer (which would hold the
  // end of the stream back until the handle closed).
  const shm2 = anon(t, { capacity: 4, maxMessageSize: 16 });
  const w = Channel.create(shm2, { capacity: 4, maxMessageSize: 16 });
  const r = Channel.open(shm2);
  t.after(() => [w, r].forEach((h) => h.close()));
  Channel.open(shm2).writable().end(); // a producer that attached and closed: the stream can end
  await sleep(20);
  throwsCode(() => w.writable({ highWaterMark: -1 }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  assert.equal(r.tryReceive(), null, 'the end: the refused handle is no producer');
});

// ------------------------------------------------------------------------------------------ regressions
// Bugs found earlier, one test each.

test('close() settles a pending receiveAsync/sendAsync of that handle even when it did not map the memory', async (t) => {
  const opts = { capacity: 2, maxMessageSize: 16 };
  const shm = anon(t, opts);
  const a = Channel.create(shm, opts);
  const b = Channel.open(shm);
  b.send('x');
  Channel.open(shm).receive(0);
  const pending = a.receiveAsync({ timeout: 2000 });
  a.close();
  b.send('for others');
  await rejectsCode(pending, 'ERR_MMAP_CLOSED');
  assert.equal(b.size, 1, 'the message is still there for open consumers');
  b.close();
});

test('unknown or mistyped options of byteLength(), readable() and writable() are errors', (t) => {
  throwsCode(() => Channel.byteLength({ capcity: 8 }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  throwsCode(() => Channel.byteLength(5), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  const opts = { capacity: 2, maxMessageSize: 16 };
  const ch = Channel.create(anon(t, opts), opts);
  throwsCode(() => ch.writable({ clsoe: false }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  throwsCode(() => ch.writable({ close: 'no' }), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  throwsCode(() => ch.readable({ hwm: 1 }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  ch.close();
});
