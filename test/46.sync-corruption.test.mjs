// Synchronization objects whose shared memory holds what they can never hold (issue 17): a negative
// Semaphore count, an Event state other than 0 and 1 (ERR_MMAP_SYNC_CORRUPT), a 'pthread' Mutex whose
// glibc fields another process overwrote (ERR_MMAP_LOCK_CORRUPT). Each is an error with a code at
// once: never a wait that spins on a core or freezes the event loop, memory that can never be
// unmapped, or a robust list left pointing into freed memory. Also: timeouts too large to represent
// (Number.MAX_VALUE, 2**53, 1e300) wait forever instead of throwing.
// The garbage is written by the test through an Int32Array over the same memory, or by a real second
// process; the dangerous Mutex cases run in child processes, so that a crash fails one test.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  Channel,
  Event,
  HEADER,
  Mutex,
  Semaphore,
  SharedMemory,
  Topic,
  notify,
  wait,
  waitAsync,
} from '../dist/index.js';
import { cannotEmulate, distUrl, runNode, throwsCode, timedTests, until } from './helpers.mjs';

const test = timedTests(120_000);
const CORRUPT = 'ERR_MMAP_SYNC_CORRUPT';
const isCorrupt = (what) => (err) => {
  assert.equal(err.code, CORRUPT, `expected ${CORRUPT}, got ${err.code}: ${err.message}`);
  assert.equal(err.name, 'MmapkitError');
  assert.match(err.message, new RegExp(`this ${what}`));
  return true;
};
const throwsCorrupt = (fn, what) => assert.throws(fn, isCorrupt(what));

// Byte offsets after an object's start (docs/layout.md).
const VALUE = HEADER.SIZE; // Semaphore count, Event state: the futex word
const SLEEPERS = HEADER.SIZE + 4;
const i32Of = (shm) => new Int32Array(shm.buffer.buffer, shm.buffer.byteOffset, shm.size / 4);

/**
 * A node child with this memory inherited (SharedMemory.inherited()), killed after 60 s; stdout and
 * stderr collected. Its code gets `shm` and the library's exports in scope.
 */
function child(shm, code) {
  const src = `import * as lib from ${JSON.stringify(distUrl)};
    const { Event, Mutex, Semaphore, SharedMemory, notify, wait } = lib;
    const shm = SharedMemory.inherited();
    const i32 = new Int32Array(shm.buffer.buffer, shm.buffer.byteOffset, shm.size / 4);
    ${code}`;
  const c = spawn(process.execPath, ['--input-type=module', '-e', src], shm.childOptions({ stdio: ['ignore', 'pipe', 'pipe'] }));
  const p = { child: c, out: '', result: undefined };
  c.stdout.setEncoding('utf8').on('data', (d) => (p.out += d));
  c.stderr.setEncoding('utf8').on('data', (d) => (p.out += d));
  const killer = setTimeout(() => c.kill('SIGKILL'), 60_000);
  p.done = new Promise((resolve) =>
    c.on('close', (status, signal) => {
      clearTimeout(killer);
      resolve((p.result = { status, signal, out: p.out }));
    }),
  );
  p.kill = () => c.exitCode === null && c.signalCode === null && c.kill('SIGKILL');
  return p;
}

/** Fail (with its output) if the child has exited while we wait for something else. */
const alive = (p, what) => () => {
  if (p.result !== undefined) assert.fail(`${what}: the child exited first (${p.result.status ?? p.result.signal}): ${p.result.out}`);
  return true;
};

/** Whether the main thread of process `pid` sleeps in a futex wait (false when /proc tells nothing). */
function inFutex(pid) {
  try {
    return /futex/.test(readFileSync(`/proc/${pid}/wchan`, 'utf8'));
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------- Semaphore

test('Semaphore: a negative count is ERR_MMAP_SYNC_CORRUPT at once from wait, waitAsync, tryWait, value and post', async () => {
  const shm = SharedMemory.anonymous(4096);
  const sem = Semaphore.create(shm, 0, 0);
  const i32 = i32Of(shm);
  Atomics.store(i32, VALUE / 4, -3);
  // Before the fix: wait() kept re-reading (futex 'not-equal' at once) until its timeout, on a busy core.
  throwsCorrupt(() => sem.wait(2000), 'Semaphore');
  throwsCorrupt(() => sem.tryWait(), 'Semaphore');
  throwsCorrupt(() => sem.value, 'Semaphore');
  throwsCorrupt(() => sem.post(), 'Semaphore');
  assert.equal(Atomics.load(i32, VALUE / 4), -3, 'post() added nothing to the garbage');
  assert.equal(Atomics.load(i32, SLEEPERS / 4), 0, 'the sleeper count is balanced');

  // waitAsync: rejects, and the event loop runs: before the fix it looped through microtasks for the
  // whole timeout, and no timer could fire until it resolved false.
  let fired = false;
  setTimeout(() => (fired = true), 1);
  await assert.rejects(sem.waitAsync(2000), isCorrupt('Semaphore'));
  await until(() => fired, [], 'a timer fires', 10_000);
  assert.match(
    await sem.waitAsync(2000).catch((err) => err.message),
    /^The memory of this Semaphore holds a value it can never hold: count -3/,
  );
  shm.close();
});

test('Semaphore: the count turns negative while a waitAsync sleeps; post() finds it, throws, and wakes the sleeper, which rejects', async () => {
  const shm = SharedMemory.anonymous(4096);
  const sem = Semaphore.create(shm, 0, 0);
  const i32 = i32Of(shm);
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  try {
    const p = sem.waitAsync(5000);
    const settled = p.then(() => 'resolved', (err) => err);
    await until(() => Atomics.load(i32, SLEEPERS / 4) === 1, [], 'the waiter counts itself as a sleeper', 10_000);
    const before = ticks;
    await until(() => ticks > before + 2, [], 'timers run while the waiter sleeps', 10_000);
    Atomics.store(i32, VALUE / 4, -1);
    throwsCorrupt(() => sem.post(), 'Semaphore');
    // Before the fix, post() made the count 0, woke the sleeper, which then re-read 0 and slept again
    // until its timeout (false).
    const outcome = await settled;
    assert.ok(outcome instanceof Error, `waitAsync ${outcome}`);
    isCorrupt('Semaphore')(outcome);
    const after = ticks;
    await until(() => ticks > after, [], 'timers still run', 10_000);
  } finally {
    clearInterval(timer);
  }
  assert.equal(Atomics.load(i32, SLEEPERS / 4), 0);
  shm.close();
});

// -------------------------------------------------------------------------------------------- Event

test('Event: a state other than 0 or 1 is ERR_MMAP_SYNC_CORRUPT at once; set() and reset() store a valid state again', async () => {
  const shm = SharedMemory.anonymous(4096);
  const ev = Event.create(shm, 64);
  const i32 = i32Of(shm);
  for (const garbage of [2, -1, 0x7fffffff, -0x80000000]) {
    Atomics.store(i32, (64 + VALUE) / 4, garbage);
    throwsCorrupt(() => ev.wait(2000), 'Event');
    throwsCorrupt(() => ev.isSet, 'Event');
    let fired = false;
    setTimeout(() => (fired = true), 1);
    await assert.rejects(ev.waitAsync(2000), isCorrupt('Event'));
    await until(() => fired, [], 'a timer fires', 10_000);
    assert.match(await ev.waitAsync(2000).then(String, (err) => err.message), new RegExp(`: state ${garbage} `));
  }
  ev.set();
  assert.equal(ev.isSet, true);
  assert.equal(ev.wait(0), true);
  Atomics.store(i32, (64 + VALUE) / 4, 5);
  ev.reset();
  assert.equal(ev.isSet, false);
  assert.equal(ev.wait(0), false);
  assert.equal(Atomics.load(i32, (64 + SLEEPERS) / 4), 0);
  shm.close();
});

test('Event: another process writes garbage and wakes the waiters: wait() throws, waitAsync() rejects, timers ran meanwhile', async (t) => {
  if (cannotEmulate(t, 'futex waits across processes')) return;
  const shm = SharedMemory.anonymous(4096);
  const ev = Event.create(shm, 0);
  const i32 = i32Of(shm);
  const GO = 64 / 4; // the parent's turn number: the child spoils the state once per turn
  // The child: whenever the parent sleeps on the event (the sleeper count says so), write 7 into the
  // state and wake the sleepers, the way a broken or hostile peer would.
  const c = child(shm, `
    const ev = Event.attach(shm, 0);
    for (let turn = 1; turn <= 2; turn++) {
      const end = Date.now() + 30_000;
      while (Atomics.load(i32, ${GO}) !== turn || Atomics.load(i32, ${SLEEPERS / 4}) === 0) {
        if (Date.now() > end) { console.log('no sleeper in turn ' + turn); process.exit(1); }
        await new Promise((r) => setTimeout(r, 1));
      }
      await new Promise((r) => setTimeout(r, 20)); // let it fall asleep in the kernel
      Atomics.store(i32, ${VALUE / 4}, 7);
      notify(i32, ${VALUE / 4});
    }
    console.log('spoiled');
    shm.close();
  `);
  try {
    // Turn 1, async. Before the fix: the wake-up read 7, the wait found 'not-equal' at once, forever:
    // the event loop froze for the rest of the timeout, and the promise resolved false.
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    try {
      Atomics.store(i32, GO, 1);
      const outcome = await ev.waitAsync(8000).then((v) => v, (err) => err);
      assert.ok(outcome instanceof Error, `waitAsync resolved ${outcome}; child: ${c.out}`);
      isCorrupt('Event')(outcome);
      assert.ok(ticks > 0, 'the interval ran while waitAsync waited');
      const after = ticks;
      await until(() => ticks > after, [], 'timers still run after the rejection', 10_000);
    } finally {
      clearInterval(timer);
    }
    // Turn 2, blocking: the same process writes 7 and wakes it.
    ev.reset();
    Atomics.store(i32, GO, 2);
    throwsCorrupt(() => ev.wait(8000), 'Event');
    const r = await c.done;
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, /spoiled/);
  } finally {
    c.kill();
  }
  assert.equal(Atomics.load(i32, SLEEPERS / 4), 0);
  shm.close();
});

// ----------------------------------------------------------------------------------------- timeouts

// 1e15 ms: finite nanoseconds that still overflowed the kernel's 64-bit ones (EINVAL from futex).
const HUGE = [Number.MAX_VALUE, 2 ** 53, 1e300, 1e15];

test('a timeout too large to represent (Number.MAX_VALUE, 2**53, 1e300) waits forever: every waiting function, state already signaled', async () => {
  const shm = SharedMemory.anonymous(1 << 20);
  const i32 = i32Of(shm);
  const sem = Semaphore.create(shm, 0, 0);
  const ev = Event.create(shm, 64);
  const mx = Mutex.create(shm, 128);
  const px = Mutex.create(shm, 192, { kind: 'pthread' });
  ev.set();
  for (const v of HUGE) {
    const label = `timeout ${v}`;
    assert.equal(wait(i32, 1000, 1, v), 'not-equal', label);
    assert.equal(await waitAsync(i32, 1000, 1, v), 'not-equal', label);
    sem.post(2);
    assert.equal(sem.wait(v), true, label);
    assert.equal(await sem.waitAsync(v), true, label);
    assert.equal(ev.wait(v), true, label);
    assert.equal(await ev.waitAsync(v), true, label);
    assert.equal(mx.lock(v), 'acquired', label);
    mx.unlock();
    assert.equal(await mx.lockAsync(v), 'acquired', label);
    mx.unlock();
    assert.equal(px.lock(v), 'acquired', label);
    px.unlock();
    assert.equal(await px.lockAsync(v), 'acquired', label);
    px.unlock();
  }
  // Channels and topics take the same timeouts.
  const chm = SharedMemory.anonymous(Channel.byteLength({ capacity: 16, maxMessageSize: 64, maxProducers: 1, maxConsumers: 1 }));
  const ch = Channel.create(chm, { capacity: 16, maxMessageSize: 64, maxProducers: 1, maxConsumers: 1 });
  const tpm = SharedMemory.anonymous(Topic.byteLength({ capacity: 4096, maxMessageSize: 64 }));
  const topic = Topic.create(tpm, { capacity: 4096, maxMessageSize: 64 });
  const sub = topic.subscribe({ timeout: Number.MAX_VALUE });
  for (const v of HUGE) {
    const label = `timeout ${v}`;
    ch.send(Buffer.from('x'), { timeout: v });
    await ch.sendAsync(Buffer.from('y'), { timeout: v });
    assert.equal(ch.receive({ timeout: v }).toString(), 'x', label);
    assert.equal((await ch.receiveAsync({ timeout: v })).toString(), 'y', label);
    topic.publish(Buffer.from('z'), { timeout: v });
    assert.equal(sub.receive({ timeout: v }).toString(), 'z', label);
    await topic.publishAsync(Buffer.from('w'), { timeout: v });
    assert.equal((await sub.receiveAsync({ timeout: v })).toString(), 'w', label);
  }
  sub.close();
  topic.close();
  ch.close();
  tpm.close();
  chm.close();
  // What stays an error: negative, NaN, not a number.
  for (const bad of [-1, -Infinity, NaN]) throwsCode(() => sem.wait(bad), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  throwsCode(() => sem.wait('1'), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  shm.close();
});

test('a timeout too large to represent really sleeps, until woken: wait(), semaphore.wait(), event.wait() and their async forms in another process', async (t) => {
  if (cannotEmulate(t, 'futex waits across processes')) return;
  const shm = SharedMemory.anonymous(4096);
  const i32 = i32Of(shm);
  const sem = Semaphore.create(shm, 0, 0);
  const ev = Event.create(shm, 64);
  const WORD = 256 / 4;
  const STEP = 260 / 4; // which wait the child is in (it sets it just before waiting)
  // Before the fix, the blocking waits failed at once with EINVAL from futex (the nanoseconds overflowed
  // the kernel's timespec), or with an uncoded RangeError (BigInt(Infinity)).
  const c = child(shm, `
    const sem = Semaphore.attach(shm, 0);
    const ev = Event.attach(shm, 64);
    const out = [];
    let step = 0;
    const run = async (f) => {
      Atomics.store(i32, ${STEP}, ++step);
      try { out.push(String(await f())); } catch (err) { out.push(err.code ?? String(err)); }
    };
    for (const v of [Number.MAX_VALUE, 2 ** 53, 1e300]) {
      await run(() => wait(i32, ${WORD}, 0, v));
      await run(() => sem.wait(v));
      await run(() => ev.wait(v));
      ev.reset();
      await run(() => lib.waitAsync(i32, ${WORD}, 0, v));
      await run(() => sem.waitAsync(v));
      await run(() => ev.waitAsync(v));
      ev.reset();
    }
    Atomics.store(i32, ${STEP}, -1);
    console.log(out.join(' '));
    shm.close();
  `);
  try {
    for (let step = 1; step <= 18; step++) {
      await until(() => Atomics.load(i32, STEP) === step && alive(c, `step ${step}`)(), [], `the child reaches wait ${step}`, 30_000);
      const kind = (step - 1) % 3; // 0: the word, 1: the semaphore, 2: the event
      const blocking = (step - 1) % 6 < 3;
      // Let it fall asleep (the main thread in futex for a blocking wait; a short pause otherwise).
      // (Where /proc does not tell, go on after 2 s: the wake then may come before the sleep.)
      if (blocking) await until(() => inFutex(c.child.pid), [], `step ${step} asleep`, 2000).catch(() => {});
      else await sleep(20);
      if (kind === 0) {
        // notify() until it returns: a wake before it sleeps is lost, so repeat.
        while (Atomics.load(i32, STEP) === step && c.result === undefined) {
          notify(i32, WORD);
          await sleep(5);
        }
      } else if (kind === 1) sem.post();
      else ev.set();
    }
    const r = await c.done;
    assert.equal(r.status, 0, r.out);
    assert.equal(r.out.trim(), Array(3).fill('ok true true ok true true').join(' '));
  } finally {
    c.kill();
  }
  shm.close();
});

// -------------------------------------------------------------------------------------------- Mutex

const LOCK_CORRUPT = 'ERR_MMAP_LOCK_CORRUPT';

// glibc's pthread_mutex_t on 64-bit Linux: __lock at +0 (the robust futex word), __kind at +16.
const LOCK = HEADER.SIZE;
const KIND = HEADER.SIZE + 16;

/** Run a child that locks a Mutex, lets `spoil` write into it, and reports what follows, as JSON. */
function mutexChild(spoil) {
  const r = runNode(
    `import { Mutex, SharedMemory } from ${JSON.stringify(distUrl)};
     const out = [];
     const note = (f) => { try { out.push(f()); } catch (err) { out.push(err.code ?? String(err)); } };
     const shm = SharedMemory.anonymous(4096);
     const i32 = new Int32Array(shm.buffer.buffer, shm.buffer.byteOffset, 1024);
     const mx = Mutex.create(shm, 0, { kind: 'pthread' });
     ${spoil}
     note(() => shm.close() ?? 'closed');
     // Any robust lock now writes into the first entry of this thread's robust list: had the spoiled
     // mutex stayed on it, into memory that is unmapped (SIGSEGV).
     const other = SharedMemory.anonymous(4096);
     const m2 = Mutex.create(other, 0, { kind: 'pthread' });
     note(() => m2.lock(1000));
     note(() => m2.unlock() ?? 'unlocked');
     other.close();
     console.log(JSON.stringify(out));`,
  );
  return r;
}

function assertChild(r, expected) {
  assert.equal(r.signal, null, `the child died of ${r.signal}; ${r.stdout}${r.stderr}`);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.deepEqual(JSON.parse(r.stdout.trim().split('\n').at(-1)), expected);
}

test('Mutex: a corrupt type field (__kind) while this thread holds it: unlock throws ERR_MMAP_LOCK_CORRUPT, lets go, and the memory can be unmapped', (t) => {
  if (cannotEmulate(t, 'robust futexes (set_robust_list)')) return;
  // Before the fix: unlock was EINVAL and close() ERR_MMAP_BUSY for good.
  const r = mutexChild(`
    note(() => mx.lock(1000));
    const tid = Atomics.load(i32, ${LOCK / 4});
    Atomics.store(i32, ${KIND / 4}, 0x7777);
    note(() => mx.unlock() ?? 'unlocked');
    note(() => Atomics.load(i32, ${LOCK / 4}) === 0x40000000 ? 'marked owner-died' : 'lock word ' + Atomics.load(i32, ${LOCK / 4}) + ', tid ' + tid);
    note(() => mx.lock(10));
    note(() => mx.unlock() ?? 'unlocked');
  `);
  assertChild(r, ['acquired', LOCK_CORRUPT, 'marked owner-died', LOCK_CORRUPT, LOCK_CORRUPT, 'closed', 'acquired', 'unlocked']);
});

test('Mutex: a valid but non-robust type written while this thread holds it never unlocks it through glibc (which would leave the robust list pointing into unmapped memory: SIGSEGV)', (t) => {
  if (cannotEmulate(t, 'robust futexes (set_robust_list)')) return;
  for (const kind of [0, 1, 2, 130]) {
    // Before the fix: unlock "worked", close() worked, and the next robust lock crashed the process.
    const r = mutexChild(`
      note(() => mx.lock(1000));
      Atomics.store(i32, ${KIND / 4}, ${kind});
      note(() => mx.unlock() ?? 'unlocked');
    `);
    assertChild(r, ['acquired', LOCK_CORRUPT, 'closed', 'acquired', 'unlocked']);
  }
});

test('Mutex: the lock word overwritten while this thread holds it: unlock throws ERR_MMAP_LOCK_CORRUPT and the memory can be unmapped', (t) => {
  if (cannotEmulate(t, 'robust futexes (set_robust_list)')) return;
  // Before the fix: ERR_MMAP_LOCK_NOT_OWNER, then ERR_MMAP_BUSY for good.
  const r = mutexChild(`
    note(() => mx.lock(1000));
    Atomics.store(i32, ${LOCK / 4}, 12345);
    note(() => mx.unlock() ?? 'unlocked');
    note(() => Atomics.load(i32, ${LOCK / 4}));
  `);
  assertChild(r, ['acquired', LOCK_CORRUPT, 12345, 'closed', 'acquired', 'unlocked']);
});

test('Mutex: a corrupt type field makes lock() and tryLock() ERR_MMAP_LOCK_CORRUPT; nothing is locked, and the memory can be unmapped', (t) => {
  if (cannotEmulate(t, 'robust futexes (set_robust_list)')) return;
  const r = mutexChild(`
    for (const kind of [0x7777, 0, 2]) {
      Atomics.store(i32, ${KIND / 4}, kind);
      note(() => mx.tryLock());
      note(() => mx.lock(10));
    }
  `);
  assertChild(r, [LOCK_CORRUPT, LOCK_CORRUPT, LOCK_CORRUPT, LOCK_CORRUPT, LOCK_CORRUPT, LOCK_CORRUPT, 'closed', 'acquired', 'unlocked']);
});

test('Mutex: the spoiled one between two others on the robust list is taken off; the other two unlock normally', (t) => {
  if (cannotEmulate(t, 'robust futexes (set_robust_list)')) return;
  const r = mutexChild(`
    const a = SharedMemory.anonymous(4096);
    const c = SharedMemory.anonymous(4096);
    const ma = Mutex.create(a, 0, { kind: 'pthread' });
    const mc = Mutex.create(c, 0, { kind: 'pthread' });
    note(() => ma.lock(1000));
    note(() => mx.lock(1000));
    note(() => mc.lock(1000));
    Atomics.store(i32, ${KIND / 4}, -1);
    note(() => mx.unlock() ?? 'unlocked');
    note(() => { try { a.close(); return 'closed a'; } catch (err) { return err.code; } });
    note(() => ma.unlock() ?? 'unlocked a');
    note(() => mc.unlock() ?? 'unlocked c');
    note(() => ma.lock(1000));
    note(() => ma.unlock() ?? 'unlocked a');
    a.close();
    c.close();
  `);
  assertChild(r, ['acquired', 'acquired', 'acquired', LOCK_CORRUPT, 'ERR_MMAP_BUSY', 'unlocked a', 'unlocked c', 'acquired', 'unlocked a', 'closed', 'acquired', 'unlocked']);
});

test('Mutex: a corrupt type and a garbage robust-list link: unlock throws ERR_MMAP_LOCK_CORRUPT and keeps the memory mapped (ERR_MMAP_BUSY), never following the link', (t) => {
  if (cannotEmulate(t, 'robust futexes (set_robust_list)')) return;
  // glibc's __list.__next of the mutex (offset 32 in it) names the next mutex on the robust list: a
  // peer's garbage there cannot be followed, so the mutex stays on the list and its memory mapped.
  const NEXT = HEADER.SIZE + 32;
  const r = mutexChild(`
    const b = SharedMemory.anonymous(4096);
    const mb = Mutex.create(b, 0, { kind: 'pthread' });
    const bi = new Int32Array(b.buffer.buffer, b.buffer.byteOffset, 1024);
    note(() => mx.lock(1000));
    note(() => mb.lock(1000));
    Atomics.store(bi, ${KIND / 4}, 0x7777);
    Atomics.store(bi, ${NEXT / 4}, 0x1230);
    Atomics.store(bi, ${NEXT / 4 + 1}, 0);
    note(() => { try { mb.unlock(); return 'unlocked'; } catch (err) { return err.code + (/stays mapped/.test(err.message) ? ': stays mapped' : ''); } });
    note(() => { try { b.close(); return 'closed b'; } catch (err) { return err.code; } });
    note(() => mx.unlock() ?? 'unlocked');
  `);
  assertChild(r, ['acquired', 'acquired', `${LOCK_CORRUPT}: stays mapped`, 'ERR_MMAP_BUSY', 'unlocked', 'closed', 'acquired', 'unlocked']);
});

test('Mutex: a process asleep in lock() when the holder finds the type corrupt gets the mutex as owner-died, not a timeout', async (t) => {
  if (cannotEmulate(t, 'robust futexes (set_robust_list)')) return;
  const shm = SharedMemory.anonymous(4096);
  const mx = Mutex.create(shm, 0, { kind: 'pthread' });
  const i32 = i32Of(shm);
  assert.equal(mx.lock(1000), 'acquired');
  const c = child(shm, `
    const mx = Mutex.attach(shm, 0);
    const out = [];
    try { out.push(mx.lock(8000)); } catch (err) { out.push(err.code); }
    try { mx.unlock(); out.push('unlocked'); } catch (err) { out.push(err.code); }
    try { shm.close(); out.push('closed'); } catch (err) { out.push(err.code); }
    console.log(JSON.stringify(out));
  `);
  let unlocked = false;
  try {
    // glibc sets FUTEX_WAITERS in the lock word before it sleeps.
    await until(() => (Atomics.load(i32, LOCK / 4) & 0x80000000) !== 0 && alive(c, 'the child sleeps in lock()')(), [], 'the child sleeps in lock()', 30_000);
    Atomics.store(i32, KIND / 4, 0x7777);
    assert.throws(() => mx.unlock(), { code: LOCK_CORRUPT, name: 'MmapkitError', message: /^The Mutex's type field \(glibc __kind\) is corrupt: 30583, where .* let go of it as if it had died holding it/ });
    unlocked = true;
    const r = await c.done;
    assert.equal(r.status, 0, r.out);
    // Before the fix: our unlock failed (EINVAL) and the child timed out.
    assert.deepEqual(JSON.parse(r.out.trim().split('\n').at(-1)), ['owner-died', LOCK_CORRUPT, 'closed']);
  } finally {
    c.kill();
    if (!unlocked) {
      Atomics.store(i32, KIND / 4, 146);
      try {
        mx.unlock();
      } catch {}
    }
  }
  shm.close();
});

test('Mutex: another process flips the type field while this thread locks and unlocks in a loop: errors with a code, never a crash, and the memory can be unmapped at the end', (t) => {
  if (cannotEmulate(t, 'robust futexes (set_robust_list)')) return;
  // The flips land anywhere, also inside glibc's calls, between the check of the type and glibc's own
  // read of it: there the lock or unlock takes a non-robust path, which the checks after each call
  // catch (before the fix: the robust list kept pointing into the unmapped memory, and the next lock
  // of another mutex died of SIGSEGV).
  const r = runNode(
    `import { spawn } from 'node:child_process';
     import { Mutex, SharedMemory } from ${JSON.stringify(distUrl)};
     const shm = SharedMemory.anonymous(4096);
     const i32 = new Int32Array(shm.buffer.buffer, shm.buffer.byteOffset, 1024);
     let mx = Mutex.create(shm, 0, { kind: 'pthread' });
     const good = Atomics.load(i32, ${KIND / 4});
     const flipper = spawn(process.execPath, ['--input-type=module', '-e', \`
       import { SharedMemory } from ${JSON.stringify(distUrl)};
       const shm = SharedMemory.inherited();
       const i32 = new Int32Array(shm.buffer.buffer, shm.buffer.byteOffset, 1024);
       Atomics.store(i32, 100, 1);
       // Until told to stop, or at most 60 s (if the parent dies without telling).
       const end = Date.now() + 60_000;
       for (let n = 0; Atomics.load(i32, 100) === 1 && ((n & 0xfffff) !== 0 || Date.now() < end); n++) Atomics.store(i32, ${KIND / 4}, n & 1 ? \${good} : 0);
       shm.close();
     \`], shm.childOptions({ stdio: 'inherit' }));
     process.on('exit', () => flipper.kill('SIGKILL'));
     const end = Date.now() + 20_000;
     while (Atomics.load(i32, 100) !== 1) { if (Date.now() > end) process.exit(3); await new Promise((r) => setTimeout(r, 1)); }
     const counts = {};
     const count = (what) => (counts[what] = (counts[what] ?? 0) + 1);
     // 30,000 rounds, or 20 s: a round can cost a lock's 100 ms timeout.
     const stop = Date.now() + 20_000;
     for (let n = 0; n < 30_000 && Date.now() < stop; n++) {
       let held = false;
       try {
         const result = mx.lock(100);
         held = true;
         count(result); // 'owner-died' after an unlock that had to let go of the mutex
         if (result === 'owner-died') try { mx.markConsistent(); } catch (err) { count('markConsistent ' + err.code); }
       } catch (err) {
         count('lock ' + err.code);
         // An owner-died lock unlocked without markConsistent(), or a lock word that a let-go left
         // marked FUTEX_OWNER_DIED, which glibc's plain path (the type flipped during the call) waits
         // on for ever: make a new one (nobody holds it), or every later round costs the timeout.
         if (err.code === 'ERR_MMAP_LOCK_NOT_RECOVERABLE' || err.code === 'ERR_MMAP_LOCK_TIMEOUT') mx = Mutex.create(shm, 0, { kind: 'pthread' });
       }
       if (held) try { mx.unlock(); count('unlocked'); } catch (err) { count('unlock ' + err.code); if (/stays mapped/.test(err.message)) count('stuck'); }
     }
     Atomics.store(i32, 100, 2);
     await new Promise((r) => flipper.on('exit', r));
     Atomics.store(i32, ${KIND / 4}, good);
     try { mx.unlock(); } catch {} // in case a flip landed between a lock and its unlock
     shm.close();
     const other = SharedMemory.anonymous(4096);
     const m2 = Mutex.create(other, 0, { kind: 'pthread' });
     count('after: ' + m2.lock(1000));
     m2.unlock();
     other.close();
     console.log(JSON.stringify(counts));`,
    { timeout: 120_000 },
  );
  assert.equal(r.signal, null, `the child died of ${r.signal}; ${r.stdout}${r.stderr}`);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const counts = JSON.parse(r.stdout.trim().split('\n').at(-1));
  t.diagnostic(JSON.stringify(counts));
  if (r.stderr.trim() !== '') t.diagnostic(r.stderr.trim());
  assert.equal(counts['after: acquired'], 1);
  assert.ok(counts['lock ERR_MMAP_LOCK_CORRUPT'] > 0 || counts['unlock ERR_MMAP_LOCK_CORRUPT'] > 0, JSON.stringify(counts));
  // A lock can also time out: glibc's plain path (the type flipped during the call) waits for a lock
  // word of 0, and one marked FUTEX_OWNER_DIED by a let-go never is.
  const allowed = /^(acquired|owner-died|unlocked|after: acquired|(lock|unlock) ERR_MMAP_LOCK_CORRUPT|lock ERR_MMAP_LOCK_(NOT_RECOVERABLE|TIMEOUT)|markConsistent EINVAL)$/;
  for (const key of Object.keys(counts)) assert.match(key, allowed, JSON.stringify(counts));
});
