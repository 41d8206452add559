// The pointer-free Mutex (kind 'futex', the default): a priority-inheritance futex word with the owner's
// thread id, a HELD word, and a WAKE word with a SLEEPING flag for async lockers (docs/layout.md).
// Real processes and worker threads: an exact counter across three processes, owners killed with
// SIGKILL or ending as threads while others wait (blocking and async), a hostile peer that writes
// garbage into the words (errors or 'owner-died', never a crash or a hang), and bad input. Every wait
// has a timeout; the C peer of the same protocol is in test/61.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import { Event, HEADER, Mutex, Semaphore, SharedMemory } from '../dist/index.js';
import { asleepInFutex, assertKilled, assertOk, distUrl, killed, startProc, throwsCode, timedTests, until } from './helpers.mjs';

const test = timedTests(120_000);
const WAIT_MS = 10_000;

// docs/layout.md, "Mutex, futex kind": byte offsets from the mutex's start.
const LOCK = HEADER.SIZE;
const HELD = HEADER.SIZE + 4;
const WAKE = HEADER.SIZE + 8;
const SLEEPING = HEADER.SIZE + 12;
const FUTEX_WAITERS = 0x80000000 | 0;
const FUTEX_OWNER_DIED = 0x40000000;
const FUTEX_TID_MASK = 0x3fffffff;
// Where the tests put things in their shared memory.
const EVENT = 64; // an Event: "go", or "the owner holds the lock"
const COUNTER = 128; // a plain (non-atomic) counter the mutex protects
const READY = 132; // children count themselves here once they wait for "go"
const TEXT = 256; // what the owner wrote under the lock

const i32Of = (shm) => new Int32Array(shm.buffer.buffer, shm.buffer.byteOffset, shm.size / 4);
const word = (shm, off) => Atomics.load(i32Of(shm), off / 4);

/**
 * A Node child process over `shm` (inherited), with the library's exports, the mutex at 0 (`mx`) and
 * the event (`ev`) in scope; killed after 60 s and when test `t` ends.
 */
function child(t, shm, label, code, { cpu } = {}) {
  const src = `import { Event, Mutex, SharedMemory } from ${JSON.stringify(distUrl)};
    import { setTimeout as sleep } from 'node:timers/promises';
    const shm = SharedMemory.inherited();
    const i32 = new Int32Array(shm.buffer.buffer, shm.buffer.byteOffset, shm.size / 4);
    const mx = Mutex.attach(shm, 0);
    const ev = Event.attach(shm, ${EVENT});
    const fail = (msg) => { console.error('${label}: ' + msg); process.exit(1); };
    ${code}`;
  const pin = cpu === undefined ? [] : ['taskset', '-c', cpu];
  return startProc([...pin, process.execPath, '--input-type=module', '-e', src], label, { t, spawnOptions: shm.childOptions() });
}

/** A child that locks the mutex, writes "half-written", sets the event, and waits to be killed. */
const holder = (t, shm, options) =>
  child(t, shm, 'holder', `
    if (mx.lock(${WAIT_MS}) !== 'acquired') fail('lock');
    shm.buffer.write('half-written', ${TEXT});
    ev.set();
    console.log('holding');
    setTimeout(() => fail('was not killed'), 30_000);`, options);

/** Fresh shared memory with a Mutex (of `kind`) at 0 and an Event at EVENT. */
function setup(options) {
  const shm = SharedMemory.anonymous(4096);
  return { shm, mx: Mutex.create(shm, 0, options), ev: Event.create(shm, EVENT) };
}

/** The next owner after a death: the dead owner's data is there, repaired, marked consistent, unlocked. */
function repair(shm, mx) {
  assert.equal(shm.buffer.toString('latin1', TEXT, TEXT + 12), 'half-written', "the dead owner's data is there to repair");
  shm.buffer.write('repaired!!!!', TEXT);
  mx.markConsistent();
  mx.unlock();
  assert.equal(mx.lock(1000), 'acquired', 'consistent again');
  mx.unlock();
  assert.equal(word(shm, HEADER.FLAGS), 0);
}

/**
 * A worker thread that waits until the main thread sleeps in the kernel (its /proc wchan names the
 * rt_mutex or futex code; where wchan tells nothing, 300 ms), then SIGKILLs `pid`: for a test whose
 * main thread blocks in lock() and cannot run a timer. Resolves to 'killed'.
 */
function killWhenAsleep(pid) {
  const w = new Worker(
    `const { parentPort, workerData: w } = require('node:worker_threads');
    const { readFileSync } = require('node:fs');
    const pause = new Int32Array(new SharedArrayBuffer(4));
    const wchan = () => { try { return readFileSync('/proc/self/task/' + w.main + '/wchan', 'latin1'); } catch { return ''; } };
    const fallback = Date.now() + 300;
    const deadline = Date.now() + w.ms;
    for (;;) {
      const where = wchan();
      if (/rt_mutex|futex/.test(where) || (!/^[a-z_]/.test(where) && Date.now() > fallback) || Date.now() > deadline) break;
      Atomics.wait(pause, 0, 0, 1);
    }
    process.kill(w.pid, 'SIGKILL');
    parentPort.postMessage('killed');`,
    { eval: true, workerData: { main: process.pid, pid, ms: WAIT_MS } },
  );
  return new Promise((resolve, reject) => w.once('message', resolve).once('error', reject)).finally(() => w.terminate());
}

/**
 * Wait until a child process sleeps in FUTEX_LOCK_PI on the mutex of `shm`: the kernel has set
 * FUTEX_WAITERS in the lock word (which only a locker queued in the kernel does; our async lockers do
 * not) and the child's wchan names the rt_mutex or futex code (where wchan tells nothing, 300 ms more).
 * wchan alone is not enough: a Node process starting up also sleeps in futexes of its own.
 */
async function asleepInLock(p, shm) {
  await until(() => (word(shm, LOCK) & FUTEX_WAITERS) !== 0, [p], `${p.label} queued in FUTEX_LOCK_PI (FUTEX_WAITERS set)`, WAIT_MS);
  await asleepInFutex([p], `${p.label} asleep in FUTEX_LOCK_PI`, { ms: WAIT_MS, fallbackMs: 300, pattern: /rt_mutex|futex/ });
}

// ------------------------------------------------------------------------------------------ basics

test("the default kind is 'futex': its header, its words, and what create() and attach() report", () => {
  const shm = SharedMemory.anonymous(4096);
  const mx = Mutex.create(shm, 0);
  assert.equal(mx.kind, 'futex');
  assert.equal(shm.buffer.toString('latin1', 0, 4), 'MKFX');
  assert.equal(shm.buffer.readUInt16LE(HEADER.VERSION), 1);
  assert.equal(shm.buffer.readUInt32LE(HEADER.TOTAL_SIZE), 32);
  assert.equal(Mutex.byteLengthOf('futex'), 32);
  assert.ok(Mutex.byteLength >= Mutex.byteLengthOf('pthread') && Mutex.byteLength >= 32, 'byteLength fits either kind');
  const px = Mutex.create(shm, 64, { kind: 'pthread' });
  assert.equal(px.kind, 'pthread');
  assert.equal(shm.buffer.toString('latin1', 64, 68), 'MKMX');
  assert.equal(Mutex.attach(shm, 0).kind, 'futex');
  assert.equal(Mutex.attach(shm.buffer.subarray(64)).kind, 'pthread');
  // The lock word holds this thread's id (the main thread's is the pid), HELD too, while it is locked.
  assert.equal(mx.lock(), 'acquired');
  assert.equal(word(shm, LOCK), process.pid);
  assert.equal(word(shm, HELD), process.pid);
  throwsCode(() => mx.lock(), 'ERR_MMAP_LOCK_DEADLOCK', 'MmapkitError');
  assert.equal(mx.tryLock(), 'busy');
  assert.equal(Mutex.attach(shm, 0).tryLock(), 'busy', 'another object over the same memory: held by this thread');
  mx.unlock();
  assert.deepEqual([LOCK, HELD, WAKE, SLEEPING].map((o) => word(shm, o)), [0, 0, 0, 0]);
  throwsCode(() => mx.unlock(), 'ERR_MMAP_LOCK_NOT_OWNER', 'MmapkitError');
  assert.throws(() => mx.markConsistent(), { code: 'ERR_INVALID_STATE' });
  // Memory holding a locked futex mutex can be unmapped: nothing in it points anywhere.
  assert.equal(mx.lock(), 'acquired');
  shm.close();
  throwsCode(() => mx.unlock(), 'ERR_MMAP_CLOSED', 'MmapkitError');
  const other = setup();
  assert.equal(other.mx.lock(1000), 'acquired');
  other.mx.unlock();
  other.shm.close();
});

test('a worker thread cannot unlock the main thread\'s lock, and waits for it (lock and lockAsync)', async () => {
  const { shm, mx } = setup();
  assert.equal(mx.lock(), 'acquired');
  const w = new Worker(
    `const { parentPort, workerData: w } = require('node:worker_threads');
    import(w.dist).then(async ({ SharedMemory, Mutex }) => {
      const mx = Mutex.attach(SharedMemory.fromFd(w.fd), 0);
      const out = [];
      try { mx.unlock(); out.push('unlocked'); } catch (err) { out.push(err.code); }
      out.push(mx.tryLock());
      try { mx.lock(20); } catch (err) { out.push(err.code); }
      try { await mx.lockAsync(20); } catch (err) { out.push(err.code); }
      parentPort.postMessage(out);
      parentPort.once('message', async () => {
        const got = [mx.lock(${WAIT_MS})];
        mx.unlock();
        got.push(await mx.lockAsync(${WAIT_MS}));
        mx.unlock();
        parentPort.postMessage(got);
      });
    });`,
    { eval: true, workerData: { dist: distUrl, fd: shm.fd } },
  );
  const next = () => new Promise((resolve, reject) => w.once('message', resolve).once('error', reject));
  assert.deepEqual(await next(), ['ERR_MMAP_LOCK_NOT_OWNER', 'busy', 'ERR_MMAP_LOCK_TIMEOUT', 'ERR_MMAP_LOCK_TIMEOUT']);
  w.postMessage('go');
  await sleep(20);
  mx.unlock();
  assert.deepEqual(await next(), ['acquired', 'acquired']);
  await w.terminate();
  shm.close();
});

test('a non-atomic counter stays exact across three processes (lock and lockAsync, with sleepers)', async (t) => {
  const { shm, mx, ev } = setup();
  const n = 10_000;
  const code = `
    const counter = ${COUNTER / 4};
    Atomics.add(i32, ${READY / 4}, 1);
    if (!ev.wait(${WAIT_MS})) fail('no start');
    for (let i = 0; i < ${n}; i++) {
      const r = i % 2 === 0 ? mx.lock(${WAIT_MS}) : await mx.lockAsync(${WAIT_MS});
      if (r !== 'acquired') fail('lock returned ' + r);
      const v = i32[counter];
      if (i % 500 === 499) await sleep(1); // hold it for a while: the others must sleep
      i32[counter] = v + 1;
      mx.unlock();
    }
    console.log('ok');`;
  const kids = [child(t, shm, 'counter 1', code), child(t, shm, 'counter 2', code)];
  const i32 = i32Of(shm);
  await until(() => Atomics.load(i32, READY / 4) === 2, kids, 'both children ready', WAIT_MS);
  ev.set();
  let contended = 0;
  for (let i = 0; i < n; i++) {
    if (Atomics.load(i32, LOCK / 4) !== 0) contended++;
    const r = i % 2 === 0 ? mx.lock(WAIT_MS) : await mx.lockAsync(WAIT_MS);
    assert.equal(r, 'acquired', `iteration ${i}`);
    const v = i32[COUNTER / 4];
    if (i % 500 === 250) await sleep(1);
    i32[COUNTER / 4] = v + 1;
    mx.unlock();
  }
  for (const k of kids) assertOk(await k.done, /^ok$/);
  assert.equal(i32[COUNTER / 4], 3 * n);
  assert.equal(word(shm, LOCK), 0);
  assert.equal(word(shm, HELD), 0);
  t.diagnostic(`found the lock held ${contended} times; WAKE was bumped ${word(shm, WAKE)} times`);
  assert.ok(contended + word(shm, WAKE) > 0, 'the processes never contended');
  shm.close();
});

// ------------------------------------------------------------------------------------ owner death

for (const how of ['lock() after the death', 'tryLock() after the death', 'lockAsync() after the death', 'lock() asleep', 'lockAsync() asleep']) {
  test(`the owner process is killed with SIGKILL holding the lock; ${how}: 'owner-died'`, async (t) => {
    const { shm, mx, ev } = setup();
    const k = holder(t, shm);
    assert.equal(await ev.waitAsync(WAIT_MS), true, k.output());
    assert.equal(word(shm, LOCK) & FUTEX_TID_MASK, k.child.pid, "the lock word holds the owner's thread id");
    assert.equal(mx.tryLock(), 'busy');
    throwsCode(() => mx.lock(30), 'ERR_MMAP_LOCK_TIMEOUT', 'MmapkitError');
    await assert.rejects(mx.lockAsync(30), { code: 'ERR_MMAP_LOCK_TIMEOUT' });
    let result;
    if (how === 'lock() asleep') {
      // We sleep in FUTEX_LOCK_PI; the kernel hands us the lock when the owner exits.
      const killed = killWhenAsleep(k.child.pid);
      result = mx.lock(WAIT_MS);
      assert.equal(await killed, 'killed');
    } else if (how === 'lockAsync() asleep') {
      const p = mx.lockAsync(WAIT_MS);
      await until(() => word(shm, SLEEPING) === 1, [k], 'lockAsync asleep (its SLEEPING flag up)', WAIT_MS);
      k.kill();
      result = await p;
    } else {
      k.kill();
      await k.done;
      result = how.startsWith('lock()') ? mx.lock(WAIT_MS) : how.startsWith('tryLock') ? mx.tryLock() : await mx.lockAsync(WAIT_MS);
    }
    assert.equal(result, 'owner-died');
    assertKilled(await k.done);
    assert.equal(word(shm, HEADER.FLAGS), 2, 'FLAGS bit 1: inconsistent until markConsistent()');
    repair(shm, mx);
    assert.equal(word(shm, SLEEPING), 0);
    shm.close();
  });
}

test("a blocking and an async locker wait when the owner is killed: one gets 'owner-died', the other the repaired lock", async (t) => {
  const { shm, mx, ev } = setup();
  const k = holder(t, shm);
  assert.equal(await ev.waitAsync(WAIT_MS), true, k.output());
  const blocking = child(t, shm, 'blocking locker', `
    const r = mx.lock(${WAIT_MS});
    if (r === 'owner-died') { shm.buffer.write('repaired!!!!', ${TEXT}); mx.markConsistent(); }
    mx.unlock();
    console.log(r);`);
  const p = mx.lockAsync(WAIT_MS);
  await until(() => word(shm, SLEEPING) === 1, [k, blocking], 'lockAsync asleep (its SLEEPING flag up)', WAIT_MS);
  await asleepInLock(blocking, shm);
  k.kill();
  const mine = await p;
  if (mine === 'owner-died') {
    shm.buffer.write('repaired!!!!', TEXT);
    mx.markConsistent();
  }
  mx.unlock();
  const theirs = assertOk(await blocking.done, /^(acquired|owner-died)$/)[1];
  assert.deepEqual([mine, theirs].sort(), ['acquired', 'owner-died']);
  assert.equal(shm.buffer.toString('latin1', TEXT, TEXT + 12), 'repaired!!!!');
  assert.equal(word(shm, HEADER.FLAGS), 0);
  assert.equal(mx.lock(1000), 'acquired');
  mx.unlock();
  shm.close();
});

/** The CPUs this process may run on (/proc/self/status), in order. */
function allowedCpus() {
  const list = /^Cpus_allowed_list:\s*(\S+)/m.exec(readFileSync('/proc/self/status', 'latin1'))?.[1] ?? '';
  return list.split(',').flatMap((r) => {
    const [a, b = a] = r.split('-').map(Number);
    return Array.from({ length: b - a + 1 }, (_, i) => a + i);
  });
}

test("an owner dies while the waiter the kernel hands its lock to cannot run yet: the lock is busy (not ERR_MMAP_LOCK_CORRUPT), then that waiter gets 'owner-died'", async (t) => {
  // When an owner dies with a locker asleep in FUTEX_LOCK_PI, the kernel drops it as the owner and
  // wakes the locker, but the word keeps the dead TID until that locker runs; until then the kernel
  // refuses every other lock attempt with EINVAL. On a loaded machine the locker may wait long for a
  // CPU (CI once failed so). Here it cannot run: it is pinned to a CPU that a real-time spinner holds.
  const cpus = allowedCpus();
  if (cpus.length < 2) return t.skip('needs two CPUs: one for a real-time spinner that keeps the woken waiter off it');
  const [busyCpu, freeCpu] = cpus;
  // Self-limiting, so that no spinner outlives the test even if it is orphaned.
  const spinner = (seconds) =>
    startProc(['taskset', '-c', busyCpu, 'chrt', '-f', '1', 'python3', '-c', `import time\nprint('spinning', flush=True)\ne = time.monotonic() + ${seconds}\nwhile time.monotonic() < e: pass`], 'real-time spinner', { t });
  const probe = spinner(0);
  if ((await probe.line(/^spinning$/, WAIT_MS).catch(() => undefined)) === undefined) {
    return t.skip(`cannot run a SCHED_FIFO spinner here (root, or CAP_SYS_NICE, and real-time CPU time are needed): ${probe.stderr().trim()}`);
  }
  await probe.done;
  let window = 0;
  for (let attempt = 0; attempt < 3 && window === 0; attempt++) {
    const { shm, mx, ev } = setup();
    const k = holder(t, shm, { cpu: freeCpu });
    assert.equal(await ev.waitAsync(WAIT_MS), true, k.output());
    const waiter = child(t, shm, 'pinned waiter', `
      const r = mx.lock(${WAIT_MS});
      if (r === 'owner-died') { shm.buffer.write('repaired!!!!', ${TEXT}); mx.markConsistent(); }
      mx.unlock();
      console.log(r);`, { cpu: busyCpu });
    await asleepInLock(waiter, shm);
    const spin = spinner(2);
    await spin.line(/^spinning$/, WAIT_MS);
    const dead = k.child.pid;
    await killed(k);
    const got = [];
    for (const f of [() => mx.tryLock(), () => mx.lock(50), () => mx.lockAsync(50)]) {
      try {
        got.push(await f());
      } catch (err) {
        got.push(err.code);
      }
    }
    // Still the dead owner's TID: the waiter had not run, so the calls above met the kernel's refusal.
    if ((word(shm, LOCK) & FUTEX_TID_MASK) === dead) window++;
    spin.kill();
    assert.deepEqual(got, ['busy', 'ERR_MMAP_LOCK_TIMEOUT', 'ERR_MMAP_LOCK_TIMEOUT']);
    assert.equal(assertOk(await waiter.done, /^(acquired|owner-died)$/)[1], 'owner-died');
    assert.equal(shm.buffer.toString('latin1', TEXT, TEXT + 12), 'repaired!!!!');
    assert.equal(mx.lock(1000), 'acquired');
    mx.unlock();
    shm.close();
  }
  assert.ok(window > 0, 'in 3 attempts, the woken waiter always ran before the checks: nothing was tested');
});

for (const how of ['lock() after it ended', 'lock() asleep while it ends', 'lockAsync() asleep while it ends']) {
  test(`a worker thread ends holding the lock; ${how}: 'owner-died'`, async () => {
    const { shm, mx } = setup();
    const w = new Worker(
      `const { parentPort, workerData: w } = require('node:worker_threads');
      import(w.dist).then(({ SharedMemory, Mutex }) => {
        const shm = SharedMemory.fromFd(w.fd);
        const r = Mutex.attach(shm, 0).lock(5000);
        shm.buffer.write('half-written', ${TEXT});
        parentPort.postMessage(r);
        // and the worker ends, never unlocking: at once, or when told
        if (w.wait) parentPort.once('message', () => parentPort.close());
      });`,
      { eval: true, workerData: { dist: distUrl, fd: shm.fd, wait: !how.endsWith('ended') } },
    );
    const exited = new Promise((resolve) => w.once('exit', resolve));
    assert.equal(await new Promise((resolve, reject) => w.once('message', resolve).once('error', reject)), 'acquired');
    let result;
    if (how === 'lock() after it ended') {
      assert.equal(await exited, 0);
      result = mx.lock(WAIT_MS);
    } else if (how.startsWith('lockAsync')) {
      const p = mx.lockAsync(WAIT_MS);
      await until(() => word(shm, SLEEPING) === 1, [], 'lockAsync asleep (its SLEEPING flag up)', WAIT_MS);
      w.postMessage('end');
      result = await p;
    } else {
      // The worker runs its own event loop: tell it to end, then block; its thread exits while we sleep.
      w.postMessage('end');
      result = mx.lock(WAIT_MS);
    }
    assert.equal(result, 'owner-died');
    assert.equal(await exited, 0);
    repair(shm, mx);
    shm.close();
  });
}

test("unlocking after 'owner-died' without markConsistent() makes it unusable for every process", async (t) => {
  const { shm, mx, ev } = setup();
  const k = holder(t, shm);
  assert.equal(await ev.waitAsync(WAIT_MS), true, k.output());
  k.kill();
  await k.done;
  assert.equal(mx.lock(WAIT_MS), 'owner-died');
  mx.unlock();
  assert.equal(word(shm, HEADER.FLAGS), 1, 'FLAGS bit 0: not recoverable');
  throwsCode(() => mx.lock(100), 'ERR_MMAP_LOCK_NOT_RECOVERABLE', 'MmapkitError');
  throwsCode(() => mx.tryLock(), 'ERR_MMAP_LOCK_NOT_RECOVERABLE', 'MmapkitError');
  await assert.rejects(mx.lockAsync(100), { code: 'ERR_MMAP_LOCK_NOT_RECOVERABLE' });
  const other = child(t, shm, 'other', `
    const out = [];
    for (const f of [() => mx.lock(100), () => mx.tryLock()]) { try { out.push(f()); } catch (err) { out.push(err.code); } }
    console.log(out.join(' '));`);
  assertOk(await other.done, /^ERR_MMAP_LOCK_NOT_RECOVERABLE ERR_MMAP_LOCK_NOT_RECOVERABLE$/);
  shm.close();
});

// -------------------------------------------------------------------------------- a hostile peer

/** The id of some kernel thread in our pid namespace (PF_KTHREAD in /proc/PID/stat), or undefined. */
function kernelThread() {
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
      const flags = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[6]);
      if ((flags & 0x00200000) !== 0) return Number(pid);
    } catch {}
  }
  return undefined;
}

test('garbage in the lock words: dead and made-up owners are taken over, live ones time out, refused ones are ERR_MMAP_LOCK_CORRUPT', async (t) => {
  const { shm, mx, ev } = setup();
  const i32 = i32Of(shm);
  const set = (lock, held = 0) => {
    Atomics.store(i32, LOCK / 4, lock);
    Atomics.store(i32, HELD / 4, held);
  };
  const gone = startProc(['true'], 'a process that exits');
  await gone.done;
  const dead = gone.child.pid;
  const live = startProc(['sleep', '60'], 'a live process', { t });
  const outcomes = async () => {
    const out = [];
    for (const f of [() => mx.tryLock(), () => mx.lock(30), () => mx.lockAsync(30)]) {
      try {
        const r = await f();
        out.push(r);
        if (r === 'busy') continue;
        if (r === 'owner-died') mx.markConsistent();
        mx.unlock();
      } catch (err) {
        out.push(err.code);
      }
    }
    return out;
  };
  const cases = [
    // [lock word, HELD, what each of tryLock, lock(30), lockAsync(30) gives]
    [dead, dead, ['owner-died']],
    [dead | FUTEX_WAITERS, 0, ['acquired']],
    [dead | FUTEX_WAITERS | FUTEX_OWNER_DIED, 12345, ['owner-died']],
    [0x12345678 & FUTEX_TID_MASK, 0, ['acquired']], // no such thread
    [FUTEX_TID_MASK, 0, ['acquired']],
    [FUTEX_WAITERS, 0, ['acquired']], // no owner, waiters bit set: the kernel takes it
    [FUTEX_OWNER_DIED, 0, ['acquired']],
    [FUTEX_WAITERS | FUTEX_OWNER_DIED, 0, ['acquired']],
    [-1, -1, ['owner-died']], // every bit: thread id 0x3fffffff exists nowhere
    [live.child.pid, 0, ['busy', 'ERR_MMAP_LOCK_TIMEOUT', 'ERR_MMAP_LOCK_TIMEOUT']],
    [live.child.pid | FUTEX_WAITERS, 0, ['busy', 'ERR_MMAP_LOCK_TIMEOUT', 'ERR_MMAP_LOCK_TIMEOUT']],
    // Our own id: it says we hold it (lockAsync waits for our own unlock, as it does when we do).
    [process.pid, 0, ['busy', 'ERR_MMAP_LOCK_DEADLOCK', 'ERR_MMAP_LOCK_TIMEOUT']],
  ];
  const kthread = kernelThread();
  if (kthread !== undefined) cases.push([kthread, 0, Array(3).fill('ERR_MMAP_LOCK_CORRUPT')]);
  else t.diagnostic('no kernel thread visible in this pid namespace: that case is skipped');
  for (const [lock, held, expected] of cases) {
    set(lock, held);
    const got = await outcomes();
    const want = expected.length === 3 ? expected : [expected[0], 'acquired', 'acquired'];
    assert.deepEqual(got, want, `lock word 0x${(lock >>> 0).toString(16)}, HELD ${held}`);
    assert.equal(word(shm, HEADER.FLAGS), 0);
  }
  // While we hold it, the word is overwritten: unlock() refuses (it is not ours any more).
  set(0);
  assert.equal(mx.lock(), 'acquired');
  Atomics.store(i32, LOCK / 4, live.child.pid);
  throwsCode(() => mx.unlock(), 'ERR_MMAP_LOCK_NOT_OWNER', 'MmapkitError');
  Atomics.store(i32, LOCK / 4, process.pid | FUTEX_WAITERS); // ours, with a waiters bit nobody set
  mx.unlock();
  assert.equal(word(shm, LOCK), 0);
  // A peer asleep in a plain FUTEX_WAIT on the lock word (PI and non-PI waiters do not mix): the
  // kernel refuses our FUTEX_TRYLOCK_PI / FUTEX_LOCK_PI with EINVAL.
  set(live.child.pid);
  const waiter = child(t, shm, 'plain waiter', `
    const { wait } = await import(${JSON.stringify(distUrl)});
    ev.set();
    console.log(wait(i32, ${LOCK / 4}, ${live.child.pid}, 20_000));`);
  assert.equal(await ev.waitAsync(WAIT_MS), true, waiter.output());
  await asleepInFutex([waiter], 'the plain waiter asleep in FUTEX_WAIT', { ms: WAIT_MS, fallbackMs: 300 });
  const got = [];
  for (const deadline = Date.now() + WAIT_MS; !got.includes('ERR_MMAP_LOCK_CORRUPT') && Date.now() < deadline; await sleep(10)) got.push(...(await outcomes()));
  assert.ok(got.every((r) => r === 'ERR_MMAP_LOCK_CORRUPT' || r === 'busy' || r === 'ERR_MMAP_LOCK_TIMEOUT'), got.join());
  assert.ok(got.includes('ERR_MMAP_LOCK_CORRUPT'), `the kernel refused nothing: ${got}`);
  assert.equal(word(shm, LOCK) & FUTEX_TID_MASK, live.child.pid, 'the word is as it was');
  waiter.kill();
  live.kill();
  shm.close();
});

test('garbage in SLEEPING and WAKE: an async locker still gets the lock (it looks at the owner every 100 ms)', async (t) => {
  // [what SLEEPING is forged to once we sleep (0: the unlock wakes nobody), what WAKE is forged to]
  for (const [sleeping, wake] of [[0, 7], [-1000, -1], [0x7fffffff, 0x7fffffff]]) {
    const { shm, mx, ev } = setup();
    const i32 = i32Of(shm);
    const k = child(t, shm, 'short holder', `
      mx.lock(${WAIT_MS}); ev.set(); await sleep(200); mx.unlock(); console.log('ok');`);
    assert.equal(await ev.waitAsync(WAIT_MS), true, k.output());
    const p = mx.lockAsync(WAIT_MS);
    await until(() => word(shm, SLEEPING) === 1, [k], 'lockAsync asleep (its SLEEPING flag up)', WAIT_MS);
    Atomics.store(i32, SLEEPING / 4, sleeping);
    Atomics.store(i32, WAKE / 4, wake);
    assert.equal(await p, 'acquired', `SLEEPING ${sleeping}, WAKE ${wake}`);
    mx.unlock();
    assertOk(await k.done, /^ok$/);
    shm.close();
  }
});

test('a hostile peer scribbles all four words while two processes lock and unlock: errors or owner-died, never a crash or a hang', async (t) => {
  const { shm } = setup();
  const i32 = i32Of(shm);
  const ALLOWED = ['ERR_MMAP_LOCK_TIMEOUT', 'ERR_MMAP_LOCK_CORRUPT', 'ERR_MMAP_LOCK_NOT_OWNER', 'ERR_MMAP_LOCK_DEADLOCK', 'ERR_MMAP_LOCK_NOT_RECOVERABLE', 'ERR_INVALID_STATE'];
  const code = `
    const seen = {};
    const note = (k) => { seen[k] = (seen[k] ?? 0) + 1; };
    const allowed = ${JSON.stringify(ALLOWED)};
    const end = Date.now() + 1500;
    let i = 0;
    while (Date.now() < end) {
      i++;
      let r;
      try {
        r = i % 3 === 0 ? mx.tryLock() : i % 3 === 1 ? mx.lock(20) : await mx.lockAsync(20);
      } catch (err) {
        if (!allowed.includes(err.code)) fail('lock: ' + (err.stack ?? err));
        note(err.code);
        continue;
      }
      note(r);
      if (r === 'busy') { if (i % 50 === 0) await sleep(1); continue; }
      try {
        if (r === 'owner-died') mx.markConsistent();
        i32[${COUNTER / 4}]++;
        mx.unlock();
        note('unlocked');
      } catch (err) {
        if (!allowed.includes(err.code)) fail('unlock: ' + (err.stack ?? err));
        note(err.code);
      }
    }
    console.log(JSON.stringify(seen));`;
  const victims = [child(t, shm, 'victim 1', code), child(t, shm, 'victim 2', code)];
  const gone = startProc(['true'], 'a process that exits');
  await gone.done;
  const kthread = kernelThread() ?? 0;
  const pids = victims.map((v) => v.child.pid);
  let x = 0x9e3779b9;
  const rand = () => ((x ^= x << 13), (x ^= x >>> 17), (x ^= x << 5), x >>> 0);
  const values = () => {
    const r = rand();
    const pick = [0, FUTEX_WAITERS, FUTEX_OWNER_DIED, -1, gone.child.pid, kthread, pids[r % 2], r | 0, process.pid][r % 9];
    return r & 0x100 ? pick | FUTEX_WAITERS : pick;
  };
  let writes = 0;
  while (victims.some((v) => v.result === undefined)) {
    const r = rand();
    const field = [LOCK, LOCK, HELD, WAKE, SLEEPING][r % 5];
    Atomics.store(i32, field / 4, field === LOCK || field === HELD ? values() : rand() | 0);
    writes++;
    // Leave it alone now and then, so that the victims also get some honest work done.
    if (r % 4 === 0) Atomics.store(i32, LOCK / 4, 0);
    await sleep(r % 3);
  }
  const seen = [];
  for (const v of victims) {
    const res = await v.done;
    assert.ok(!res.timedOut, `${res.label} hung: killed at its timeout`);
    seen.push(JSON.parse(assertOk(res, /^\{.*\}$/)[0]));
  }
  t.diagnostic(`${writes} scribbles; what the victims saw: ${JSON.stringify(seen)}`);
  assert.ok(seen.some((s) => s.unlocked > 0), 'no victim ever locked and unlocked');
  // After the storm: the words cleared, the mutex works for everyone (it may report the death it saw).
  if ((word(shm, HEADER.FLAGS) & 1) === 0) {
    for (const off of [LOCK, HELD, WAKE, SLEEPING]) Atomics.store(i32, off / 4, 0);
    const mx = Mutex.attach(shm, 0);
    assert.equal(mx.lock(1000), 'acquired');
    mx.unlock();
  }
  shm.close();
});

// ------------------------------------------------------------------------------------- bad input

test('bad input: options, kinds, headers, offsets', () => {
  const shm = SharedMemory.anonymous(4096);
  for (const bad of [{ kind: 'robust' }, { kind: 1 }, { kind: null }, { knd: 'futex' }]) {
    throwsCode(() => Mutex.create(shm, 0, bad), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  }
  assert.throws(() => Mutex.create(shm, 0, { knd: 'futex' }), /did you mean 'kind'/);
  for (const bad of ['futex', null, 1]) throwsCode(() => Mutex.create(shm, 0, bad), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  for (const bad of ['', 'FUTEX', undefined, 2]) throwsCode(() => Mutex.byteLengthOf(bad), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  assert.equal(word(shm, HEADER.MAGIC), 0, 'nothing was written');
  // 32 bytes fit before the end, the pthread kind's do not.
  assert.equal(Mutex.create(shm, 4096 - 32, { kind: 'futex' }).tryLock(), 'acquired');
  throwsCode(() => Mutex.create(shm, 4096 - 32, { kind: 'pthread' }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  // attach: another structure, a bad version, a bad size, nothing at all
  Semaphore.create(shm, 0);
  throwsCode(() => Mutex.attach(shm, 0), 'ERR_MMAP_BAD_HEADER', 'MmapkitError');
  Mutex.create(shm, 64);
  shm.buffer.writeUInt16LE(2, 64 + HEADER.VERSION);
  throwsCode(() => Mutex.attach(shm, 64), 'ERR_MMAP_BAD_HEADER', 'MmapkitError');
  shm.buffer.writeUInt16LE(1, 64 + HEADER.VERSION);
  shm.buffer.writeUInt32LE(56, 64 + HEADER.TOTAL_SIZE);
  throwsCode(() => Mutex.attach(shm, 64), 'ERR_MMAP_BAD_HEADER', 'MmapkitError');
  throwsCode(() => Mutex.attach(shm, 128), 'ERR_MMAP_BAD_HEADER', 'MmapkitError');
  throwsCode(() => Mutex.attach(shm, 4096 - 8), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  throwsCode(() => Mutex.attach(shm, 4), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  shm.close();
});
