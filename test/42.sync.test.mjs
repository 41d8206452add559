// Mutex (robust), Semaphore and Event in shared memory, across real processes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Event, Mutex, Semaphore, SharedMemory, map, mapAnonymous, HEADER } from '../dist/index.js';
import { assertOk, cannotEmulate, distUrl, startNode, tempDir, throwsCode, xorshift } from './helpers.mjs';

const CHILD = new URL('./fixtures/sync-child.mjs', import.meta.url).pathname;
/** The two kinds of Mutex: each mutex test runs with both ('futex' is the default). */
const KINDS = ['futex', 'pthread'];
const uniq = (tag) => `mmapkit-test-${tag}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;

/** Start sync-child.mjs with the tests' child harness (startProc), killed after 60 s and when the test ends. */
const start = (t, args, spawnOptions) => startNode([CHILD, ...args], args[0], { t, spawnOptions });


for (const kind of KINDS) test(`a ${kind} mutex makes a non-atomic counter exact across three processes`, async (t) => {
  const name = uniq('counter');
  t.after(() => { try { SharedMemory.unlink(name); } catch {} });
  const shm = SharedMemory.create(name, 4096);
  const mx = Mutex.create(shm, 0, { kind });
  const go = Event.create(shm, 64);
  const counter = new Int32Array(shm.buffer.buffer, shm.buffer.byteOffset + 128, 1);
  const iterations = 20_000;
  const kids = [start(t, ['counter', name, String(iterations)], { stdio: ['ignore', 'pipe', 'pipe'] }), start(t, ['counter', name, String(iterations)], { stdio: ['ignore', 'pipe', 'pipe'] })];
  go.set();
  for (let i = 0; i < iterations; i++) {
    // half blocking, half async, to exercise both paths against the children
    if (i % 2 === 0) mx.lock(10_000);
    else await mx.lockAsync(10_000);
    const v = counter[0];
    counter[0] = v + 1;
    mx.unlock();
  }
  for (const k of kids) {
    const r = await k.done;
    assert.equal(r.status, 0, r.stderr);
  }
  assert.equal(counter[0], 3 * iterations);
  shm.close();
});

for (const kind of KINDS) for (const how of ['lock', 'lockAsync', 'tryLock']) {
  test(`robust ${kind} mutex: the owner is killed with SIGKILL while holding it; ${how} gets 'owner-died'`, async (t) => {
    if (cannotEmulate(t, 'robust futexes (set_robust_list): a dead owner\'s mutex is never marked')) return;
    const shm = SharedMemory.anonymous(4096);
    const mx = Mutex.create(shm, 0, { kind });
    const held = Event.create(shm, 64);
    const k = start(t, ['hold-lock'], shm.childOptions({ stdio: ['ignore', 'pipe', 'pipe'] }));
    assert.equal(await held.waitAsync(60_000), true, k.output());
    assert.equal(mx.tryLock(), 'busy');
    await assert.rejects(mx.lockAsync(50), { code: 'ERR_MMAP_LOCK_TIMEOUT' });
    throwsCode(() => mx.lock(50), 'ERR_MMAP_LOCK_TIMEOUT', 'MmapkitError');
    let result;
    if (how === 'lockAsync') {
      const p = mx.lockAsync(10_000);
      setTimeout(() => k.child.kill('SIGKILL'), 50); // dies while we sleep on the lock
      result = await p;
    } else {
      k.child.kill('SIGKILL');
      await k.done;
      result = how === 'lock' ? mx.lock(10_000) : mx.tryLock();
    }
    assert.equal(result, 'owner-died');
    assert.equal(shm.buffer.toString('latin1', 256, 268), 'half-written', 'the dead owner\'s data is there to repair');
    shm.buffer.write('repaired!!!!', 256);
    mx.markConsistent();
    mx.unlock();
    assert.equal(mx.lock(1000), 'acquired', 'consistent again');
    mx.unlock();
    const r = await k.done;
    assert.equal(r.signal, 'SIGKILL');
    shm.close();
  });
}

for (const kind of KINDS) test(`robust ${kind} mutex: unlocking after 'owner-died' without markConsistent makes it unusable, as in POSIX`, async (t) => {
  if (cannotEmulate(t, 'robust futexes (set_robust_list)')) return;
  const shm = SharedMemory.anonymous(4096);
  const mx = Mutex.create(shm, 0, { kind });
  const held = Event.create(shm, 64);
  const k = start(t, ['hold-lock'], shm.childOptions({ stdio: ['ignore', 'pipe', 'pipe'] }));
  assert.equal(await held.waitAsync(60_000), true, k.output());
  k.child.kill('SIGKILL');
  await k.done;
  assert.equal(mx.lock(5000), 'owner-died');
  mx.unlock();
  throwsCode(() => mx.lock(100), 'ERR_MMAP_LOCK_NOT_RECOVERABLE', 'MmapkitError');
  throwsCode(() => mx.tryLock(), 'ERR_MMAP_LOCK_NOT_RECOVERABLE', 'MmapkitError');
  await assert.rejects(mx.lockAsync(100), { code: 'ERR_MMAP_LOCK_NOT_RECOVERABLE' });
  shm.close();
});

for (const kind of KINDS) test(`${kind} mutex: owner checks, relock, and async waiters queue up in one thread`, async () => {
  const shm = SharedMemory.anonymous(4096);
  const mx = Mutex.create(shm, 0, { kind });
  throwsCode(() => mx.unlock(), 'ERR_MMAP_LOCK_NOT_OWNER', 'MmapkitError');
  assert.equal(mx.lock(), 'acquired');
  throwsCode(() => mx.lock(), 'ERR_MMAP_LOCK_DEADLOCK', 'MmapkitError');
  assert.equal(mx.tryLock(), 'busy');
  const order = [];
  const a = mx.lockAsync(5000).then(() => { order.push('a'); mx.unlock(); });
  const b = mx.lockAsync(5000).then(() => { order.push('b'); mx.unlock(); });
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(order, []);
  mx.unlock();
  await Promise.all([a, b]);
  assert.equal(order.length, 2);
  const ac = new AbortController();
  mx.lock();
  const p = mx.lockAsync(undefined, { signal: ac.signal });
  setTimeout(() => ac.abort(), 20);
  await assert.rejects(p, { name: 'AbortError' });
  mx.unlock();
  shm.close();
});

test('semaphore: a producer process posts, we consume every item in order', async (t) => {
  const count = 500;
  const shm = SharedMemory.anonymous(4096);
  const sem = Semaphore.create(shm, 0, 0);
  const slots = new Int32Array(shm.buffer.buffer, shm.buffer.byteOffset + 64, count);
  const k = start(t, ['sem-producer', String(count)], shm.childOptions({ stdio: ['ignore', 'pipe', 'pipe'] }));
  const seq = xorshift(7);
  for (let i = 0; i < count; i++) {
    const ok = i % 2 === 0 ? sem.wait(10_000) : await sem.waitAsync(10_000);
    assert.equal(ok, true, `item ${i}: ${k.output()}`);
    assert.equal(slots[i], seq.next().value, `item ${i}`);
  }
  assert.equal(sem.tryWait(), false);
  assert.equal((await k.done).status, 0);
  shm.close();
});

test('semaphore: counts, timeouts, post(n)', async () => {
  const shm = SharedMemory.anonymous(4096);
  const sem = Semaphore.create(shm, 32, 2);
  assert.equal(sem.value, 2);
  assert.equal(sem.tryWait(), true);
  assert.equal(sem.wait(0), true);
  assert.equal(sem.tryWait(), false);
  const t0 = performance.now();
  assert.equal(sem.wait(40), false);
  assert.ok(performance.now() - t0 >= 35);
  assert.equal(await sem.waitAsync(30), false);
  const ps = [sem.waitAsync(5000), sem.waitAsync(5000), sem.waitAsync(5000)];
  setTimeout(() => sem.post(3), 20);
  assert.deepEqual(await Promise.all(ps), [true, true, true]);
  assert.equal(sem.value, 0);
  const again = Semaphore.attach(shm, 32);
  again.post();
  assert.equal(sem.value, 1);
  shm.close();
});

test('event: one-shot across processes and resettable', async (t) => {
  const shm = SharedMemory.anonymous(4096);
  const ev = Event.create(shm, 0);
  assert.equal(ev.isSet, false);
  assert.equal(ev.wait(20), false);
  assert.equal(await ev.waitAsync(20), false);
  const waiters = [ev.waitAsync(5000), ev.waitAsync(5000)];
  setTimeout(() => ev.set(), 20);
  assert.deepEqual(await Promise.all(waiters), [true, true]);
  assert.equal(ev.wait(0), true, 'stays set');
  ev.reset();
  assert.equal(ev.isSet, false);
  assert.equal(ev.wait(10), false);
  // Another process sets it (the hold-lock child sets the event at offset 64 after locking at 0).
  const shm2 = SharedMemory.anonymous(4096);
  Mutex.create(shm2, 0);
  const remote = Event.create(shm2, 64);
  const k = start(t, ['hold-lock'], shm2.childOptions({ stdio: ['ignore', 'pipe', 'pipe'] }));
  assert.equal(remote.wait(60_000), true, k.output()); // a child's start under qemu on a loaded machine took over 10 s
  k.child.kill('SIGKILL');
  await k.done;
  shm.close();
  shm2.close();
});

test('headers are checked on attach', () => {
  const shm = SharedMemory.anonymous(4096);
  for (const T of [Mutex, Semaphore, Event]) throwsCode(() => T.attach(shm, 0), 'ERR_MMAP_BAD_HEADER', 'MmapkitError');
  Semaphore.create(shm, 0);
  throwsCode(() => Mutex.attach(shm, 0), 'ERR_MMAP_BAD_HEADER', 'MmapkitError');
  throwsCode(() => Event.attach(shm, 0), 'ERR_MMAP_BAD_HEADER', 'MmapkitError');
  shm.buffer.writeUInt16LE(99, HEADER.VERSION);
  throwsCode(() => Semaphore.attach(shm, 0), 'ERR_MMAP_BAD_HEADER', 'MmapkitError');
  assert.throws(() => Semaphore.attach(shm, 0), /version 99/);
  for (const [kind, magic] of [['futex', 'MKFX'], ['pthread', 'MKMX']]) {
    const m = Mutex.create(shm, 64, { kind });
    assert.equal(shm.buffer.toString('latin1', 64, 68), magic);
    assert.equal(shm.buffer.readUInt32LE(64 + HEADER.TOTAL_SIZE), Mutex.byteLengthOf(kind));
    assert.ok(Mutex.byteLengthOf(kind) <= Mutex.byteLength);
    const again = Mutex.attach(shm.buffer.subarray(64));
    assert.equal(again.kind, kind);
    assert.equal(again.tryLock(), 'acquired');
    m.unlock();
  }
  assert.equal(Semaphore.create(shm, 128) && shm.buffer.toString('latin1', 128, 132), 'MKSM');
  assert.equal(Event.create(shm, 160) && shm.buffer.toString('latin1', 160, 164), 'MKEV');
  shm.close();
});

test('bad input and closed memory', async (t) => {
  const shm = SharedMemory.anonymous(4096);
  const file = join(tempDir(t), 'p.bin');
  writeFileSync(file, Buffer.alloc(4096));
  for (const T of [Mutex, Semaphore, Event]) {
    throwsCode(() => T.create(undefined), 'ERR_INVALID_ARG_TYPE', 'TypeError');
    throwsCode(() => T.create({}), 'ERR_INVALID_ARG_TYPE', 'TypeError');
    throwsCode(() => T.create(shm, -8), 'ERR_OUT_OF_RANGE', 'RangeError');
    throwsCode(() => T.create(shm, '0'), 'ERR_INVALID_ARG_TYPE', 'TypeError');
    throwsCode(() => T.create(shm, 4), 'ERR_INVALID_ARG_VALUE', 'TypeError'); // not 8-byte aligned
    throwsCode(() => T.create(shm, 4096 - 8), 'ERR_INVALID_ARG_VALUE', 'TypeError'); // no room
    throwsCode(() => T.create(Buffer.alloc(64)), 'ERR_MMAP_NOT_SHARED', 'MmapkitError');
    throwsCode(() => T.create(mapAnonymous(4096)), 'ERR_MMAP_NOT_SHARED', 'MmapkitError');
    throwsCode(() => T.create(map(file, { access: 'copy' })), 'ERR_MMAP_NOT_SHARED', 'MmapkitError');
    throwsCode(() => T.attach(Buffer.alloc(64)), 'ERR_MMAP_NOT_SHARED', 'MmapkitError');
  }
  const fileMutex = Mutex.create(map(file, { access: 'write' }));
  assert.equal(fileMutex.tryLock(), 'acquired', 'a write mapping of a file is shared memory');
  fileMutex.unlock();
  const mx = Mutex.create(shm, 0);
  const sem = Semaphore.create(shm, 64);
  const ev = Event.create(shm, 128);
  throwsCode(() => mx.lock(-1), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  throwsCode(() => mx.lock('1'), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  await assert.rejects(mx.lockAsync(1, { spinn: 1 }), { code: 'ERR_INVALID_ARG_VALUE' });
  throwsCode(() => sem.post(0), 'ERR_OUT_OF_RANGE', 'RangeError');
  throwsCode(() => sem.post(1.5), 'ERR_OUT_OF_RANGE', 'RangeError');
  throwsCode(() => sem.post(2 ** 31 - 1) || sem.post(1), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  throwsCode(() => Semaphore.create(shm, 192, -1), 'ERR_OUT_OF_RANGE', 'RangeError');
  throwsCode(() => sem.wait(NaN), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  await assert.rejects(sem.waitAsync(-5), { code: 'ERR_INVALID_ARG_VALUE' });
  await assert.rejects(ev.waitAsync(1, { ref: 'no' }), { code: 'ERR_INVALID_ARG_TYPE' });
  shm.close();
  const closed = [
    () => mx.lock(), () => mx.tryLock(), () => mx.unlock(), () => mx.markConsistent(),
    () => sem.post(), () => sem.wait(0), () => sem.tryWait(), () => sem.value,
    () => ev.set(), () => ev.reset(), () => ev.wait(0), () => ev.isSet,
  ];
  for (const fn of closed) throwsCode(fn, 'ERR_MMAP_CLOSED', 'MmapkitError');
  for (const p of [mx.lockAsync(), sem.waitAsync(), ev.waitAsync()]) await assert.rejects(p, { code: 'ERR_MMAP_CLOSED' });
});

for (const kind of KINDS) test(`robust ${kind} mutex: a worker that ends holding the lock, and a process that exits normally holding it, both leave 'owner-died'`, async (t) => {
  if (cannotEmulate(t, 'robust futexes (set_robust_list)')) return;
  const { Worker } = await import('node:worker_threads');
  const shm = SharedMemory.anonymous(4096);
  const mx = Mutex.create(shm, 0, { kind });
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    import(workerData.dist).then(({ SharedMemory, Mutex }) => {
      const shm = SharedMemory.fromFd(workerData.fd);
      parentPort.postMessage(Mutex.attach(shm, 0).lock(5000)); // and the worker ends, never unlocking
    }).catch((e) => require('node:worker_threads').parentPort.postMessage('worker failed: ' + (e && e.stack)));`;
  // Listen for every event from the start: Node delivers a worker's last message and its 'exit' in
  // the same turn when the worker ends quickly (Worker[kOnExit] drains the port, then emits 'exit'), so
  // a listener added after the message can miss the exit for good. That was the 20 s hang seen under load.
  const w = new Worker(code, { eval: true, workerData: { fd: shm.fd, dist: distUrl } });
  const t0 = performance.now();
  const events = [];
  const log = (what) => events.push(`${(performance.now() - t0).toFixed(1)} ms: ${what}`);
  const firstMessage = new Promise((resolve) => w.once('message', (m) => { log(`message ${JSON.stringify(m)}`); resolve(m); }));
  w.on('error', (e) => log(`error ${e?.stack ?? e}`));
  const exited = new Promise((resolve) => w.once('exit', (code) => { log(`exit ${code}`); resolve(code); }));
  let killer;
  const late = new Promise((resolve) => { killer = setTimeout(() => { log('still running after 20 s: terminate()'); resolve('late'); w.terminate(); }, 20_000); });
  const code0 = await Promise.race([exited, late]);
  clearTimeout(killer);
  const story = () => `what the worker did:\n  ${events.join('\n  ')}`;
  assert.equal(code0, 0, story());
  assert.equal(await Promise.race([firstMessage, 'no message']), 'acquired', story());
  assert.equal(mx.lock(5000), 'owner-died', story());
  mx.markConsistent();
  mx.unlock();
  // A child process whose event loop simply ends while it holds the lock.
  const child = startNode(['--input-type=module', '-e', `
    import { SharedMemory, Mutex } from ${JSON.stringify(distUrl)};
    const shm = SharedMemory.inherited();
    console.log(Mutex.attach(shm, 0).lock(5000));
  `], 'a child that exits holding the lock', { t, timeout: 20_000, spawnOptions: shm.childOptions() });
  assertOk(await child.done, /^acquired$/);
  assert.equal(await mx.lockAsync(5000), 'owner-died');
  mx.markConsistent();
  mx.unlock();
  shm.close();
});

test("memory holding a locked 'pthread' Mutex is not unmapped under it (glibc would crash the next lock)", async () => {
  const a = SharedMemory.anonymous(4096);
  const b = SharedMemory.anonymous(4096);
  const ma = Mutex.create(a, 0, { kind: 'pthread' });
  const mb = Mutex.create(b, 0, { kind: 'pthread' });
  ma.lock();
  throwsCode(() => a.close(), 'ERR_MMAP_BUSY', 'MmapkitError');
  throwsCode(() => a.mapping.unmap(), 'ERR_MMAP_BUSY', 'MmapkitError');
  throwsCode(() => a.resize(8192), 'ERR_MMAP_BUSY', 'MmapkitError');
  assert.equal(a.closed, false);
  assert.equal(a.size, 4096, 'resize left it as it was');
  assert.equal(mb.lock(), 'acquired', 'locking another mutex still works');
  mb.unlock();
  ma.unlock();
  a.close();
  b.close();
  // Dropped while locked: the garbage collector must leave that memory mapped.
  const r = (await import('./helpers.mjs')).runNode(`
    import { SharedMemory, Mutex } from ${JSON.stringify(distUrl)};
    import { readFileSync } from 'node:fs';
    const mapped = () => readFileSync('/proc/self/maps', 'utf8').split('\\n').filter((l) => l.includes('memfd:')).length;
    const settle = async () => { for (let i = 0; i < 5; i++) { globalThis.gc(); await new Promise((r) => setTimeout(r, 10)); } };
    (() => { Mutex.create(SharedMemory.anonymous(4096), 0, { kind: 'pthread' }).lock(); })();
    (() => { Mutex.create(SharedMemory.anonymous(4096), 0, { kind: 'pthread' }).lock(); Mutex.create(SharedMemory.anonymous(4096), 0, { kind: 'pthread' }); })();
    await settle();
    const kept = mapped();
    const other = Mutex.create(SharedMemory.anonymous(4096), 0, { kind: 'pthread' });
    console.log(JSON.stringify({ kept, lock: other.lock() }));
  `, { nodeArgs: ['--expose-gc'] });
  assert.equal(r.signal, null, `killed by ${r.signal}`);
  assert.deepEqual(JSON.parse(r.stdout), { kept: 2, lock: 'acquired' }, r.stderr);
});

test('an abort that lands together with a wake-up passes the wake-up on (semaphore and mutex)', async () => {
  const shm = SharedMemory.anonymous(4096);
  const sem = Semaphore.create(shm, 0);
  for (let i = 0; i < 40; i++) {
    const ac = new AbortController();
    const a = sem.waitAsync(5000, { signal: ac.signal }).then((v) => (v ? 'a' : 'a-timeout'), () => 'aborted');
    const b = sem.waitAsync(3000).then((v) => (v ? 'b' : 'b-timeout'));
    await new Promise((r) => setTimeout(r, 2)); // both asleep on waiter threads
    sem.post(1);
    ac.abort();
    // A either took the post (its wake-up came before the abort) or was aborted; in that case the
    // post must reach B. Either way exactly one of them has it.
    const ra = await a;
    if (ra === 'a') sem.post(1); // give B one too
    else assert.equal(ra, 'aborted', `round ${i}`);
    assert.equal(await b, 'b', `round ${i}: a post was lost with the aborted waiter (A: ${ra})`);
    assert.equal(sem.value, 0);
  }
  const mx = Mutex.create(shm, 64);
  for (let i = 0; i < 40; i++) {
    mx.lock();
    const ac = new AbortController();
    const a = mx.lockAsync(5000, { signal: ac.signal }).then((r) => { mx.unlock(); return r; }, () => 'aborted');
    const b = mx.lockAsync(3000).then((r) => { mx.unlock(); return r; }, (e) => e.code);
    await new Promise((r) => setTimeout(r, 2));
    mx.unlock();
    ac.abort();
    const results = await Promise.all([a, b]);
    assert.equal(results[1], 'acquired', `round ${i}: ${results}`);
  }
  shm.close();
});

test('protect() while lockAsync or waitAsync sleeps: they fail cleanly instead of writing read-only memory', async (t) => {
  const shm = SharedMemory.anonymous(4096);
  const mx = Mutex.create(shm, 0);
  const sem = Semaphore.create(shm, 64);
  const child = startNode(['--input-type=module', '-e', `
    import { SharedMemory, Mutex } from ${JSON.stringify(distUrl)};
    const shm = SharedMemory.inherited();
    const mx = Mutex.attach(shm, 0);
    mx.lock(5000); process.stdout.write('locked\\n');
    setTimeout(() => { mx.unlock(); process.stdout.write('unlocked\\n'); }, 300);
  `], 'a child holding the lock for 300 ms', { t, timeout: 20_000, spawnOptions: shm.childOptions() });
  await child.line(/^locked$/);
  const p = mx.lockAsync(5000);
  const q = sem.waitAsync(5000);
  await new Promise((r) => setTimeout(r, 20));
  shm.mapping.protect('read');
  sem; // the semaphore is posted by nobody: its waiter sleeps on
  await assert.rejects(p, { code: 'ERR_MMAP_NOT_ACCESSIBLE' });
  shm.mapping.protect('write');
  Semaphore.attach(shm, 64).post();
  await assert.rejects(q, { code: 'ERR_MMAP_NOT_ACCESSIBLE' });
  assertOk(await child.done, /unlocked$/);
  shm.close();
});
