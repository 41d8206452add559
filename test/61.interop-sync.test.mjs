// Interop of the synchronization structures with a real C program: test/fixtures/sync-peer.c, compiled
// here with cc, knows nothing of mmapkit but docs/layout.md. Node creates named POSIX shared memory with
// a Mutex of each kind, an Event, a Semaphore and plain futex words in it; the C peer opens it with
// shm_open + mmap (MAP_SHARED), checks the headers, and then locks the 'pthread' mutex with
// pthread_mutex_lock and the 'futex' one by its protocol (compare-and-swap, FUTEX_LOCK_PI), waits and
// wakes with syscall(SYS_futex) and C11 atomics, following the protocols of the layout document. If these tests
// pass, the tables in docs/layout.md are the whole contract.
//
// Where things are (bytes from the start of the shared memory) is LAYOUT below; the C peer gets it on
// its command line. Every child process has a timeout, and every wait in the C peer has one too (exit 3).
import { before, after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { Event, HEADER, Mutex, Semaphore, SharedMemory, notify, wait, waitAsync } from '../dist/index.js';
import { assertKilled, assertOk, asleepInFutex, compileC, exitedFirst, have, startProc, until, xorshift32 } from './helpers.mjs';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');
const PEER_C = join(FIXTURES, 'sync-peer.c');
const DIST = new URL('../dist/index.js', import.meta.url).href;

const PEER_TIMEOUT_MS = 30_000; // kill a child (SIGKILL) that runs longer than this
const WAIT_MS = 10_000; // any single wait in these tests
/** asleepInFutex: fail after WAIT_MS; where /proc/PID/wchan tells nothing, pause 50 ms instead. */
const ASLEEP = Object.freeze({ ms: WAIT_MS, fallbackMs: 50 });
const SHM_SIZE = 8192;
const SEM_ITEMS = 1000;
const TEXT_LEN = 32;
const FUTEX_WAITERS = 0x80000000;
const FUTEX_TID_MASK = 0x3fffffff;

/**
 * Where everything is. The 'pthread' Mutex first, the Event right after it (an 8-byte boundary that is
 * not a 16-byte one where its byteLength is 56), the Semaphore right after that, then the 'futex'
 * Mutex, then plain words: turn and data for the ping-pong, the counter the mutexes protect, and
 * `ready`, which each peer increments (with FUTEX_WAKE) once it is about to wait. Then text (what a
 * lock owner wrote) and the semaphore's item slots.
 */
const LAYOUT = (() => {
  const mutex = 0;
  const event = mutex + Mutex.byteLengthOf('pthread');
  const sem = event + Event.byteLength;
  const fmutex = sem + Semaphore.byteLength;
  const turn = fmutex + Mutex.byteLengthOf('futex');
  return Object.freeze({ mutex, event, sem, fmutex, turn, data: turn + 4, counter: turn + 8, ready: turn + 12, text: turn + 16, slots: turn + 16 + TEXT_LEN });
})();
const LAYOUT_ARG = Object.entries(LAYOUT).map(([k, v]) => `${k}=${v}`).join(',');
/** Int32Array indexes of the words. */
const I = Object.freeze({
  lock: (LAYOUT.mutex + HEADER.SIZE) / 4, // the glibc mutex's first word: the robust futex word
  mutexFlags: (LAYOUT.mutex + HEADER.FLAGS) / 4,
  flock: (LAYOUT.fmutex + HEADER.SIZE) / 4, // the 'futex' mutex's PI futex word
  fmutexFlags: (LAYOUT.fmutex + HEADER.FLAGS) / 4,
  fsleeping: (LAYOUT.fmutex + HEADER.SIZE + 12) / 4, // its flag: an async locker may be asleep
  evState: (LAYOUT.event + 16) / 4,
  evSleepers: (LAYOUT.event + 20) / 4,
  semValue: (LAYOUT.sem + 16) / 4,
  semSleepers: (LAYOUT.sem + 20) / 4,
  turn: LAYOUT.turn / 4,
  data: LAYOUT.data / 4,
  counter: LAYOUT.counter / 4,
  ready: LAYOUT.ready / 4,
  slots: LAYOUT.slots / 4,
});

/**
 * Run a Node wait and return its result and how long it took. An Event or Semaphore wait that times out
 * looks at the word once more, so a wake that never came shows as a wait that took its whole timeout:
 * callers assert that it took less than half of it.
 */
async function timed(waitFn) {
  const t0 = performance.now();
  const result = await waitFn();
  return [result, performance.now() - t0];
}
const PROMPT_MS = WAIT_MS / 2;

const HAVE_CC = have('cc');

/**
 * The two kinds of Mutex as the tests use them: where it is (LAYOUT key), the C peer's name for a mode
 * on it, how the C peer locks it, its lock word and FLAGS (I indexes), and how to tell that Node's
 * lockAsync() waits (glibc's protocol sets FUTEX_WAITERS in the lock word; the futex kind counts
 * raises its SLEEPING flag).
 */
const KINDS = {
  pthread: { at: 'mutex', mode: (m) => m, how: 'pthread_mutex_lock', lock: I.lock, flags: I.mutexFlags, asyncWaits: (i32) => (Atomics.load(i32, I.lock) & FUTEX_WAITERS) !== 0 },
  futex: { at: 'fmutex', mode: (m) => `f${m}`, how: 'compare-and-swap, FUTEX_LOCK_PI', lock: I.flock, flags: I.fmutexFlags, asyncWaits: (i32) => Atomics.load(i32, I.fsleeping) === 1 },
};

// ---------------------------------------------------------------------------------------------
// Child processes: the C peer and a second Node process. Every spawn has a timeout (SIGKILL).

/**
 * The second Node process: `counter <n>` (lock/lockAsync around a plain increment, like the parent) and
 * `hold <text>` (lock, write text, set the event, wait to be killed), on the mutex at L[which].
 */
const NODE_CHILD = `
import { Event, Mutex, SharedMemory, notify } from ${JSON.stringify(DIST)};
import { setTimeout as sleep } from 'node:timers/promises';
const [mode, name, layout, arg, which] = process.argv.slice(1);
const L = JSON.parse(layout);
const fail = (msg) => { console.error('node child ' + mode + ': ' + msg); process.exit(1); };
const shm = SharedMemory.open(name);
const mx = Mutex.attach(shm, L[which]); // attach() tells the kind by the magic
const ev = Event.attach(shm, L.event);
const i32 = new Int32Array(shm.buffer.buffer, shm.buffer.byteOffset, shm.size >> 2);
if (mode === 'counter') {
  Atomics.add(i32, L.ready >> 2, 1);
  notify(i32, L.ready >> 2);
  if (!ev.wait(${WAIT_MS})) fail('the start event was not set');
  for (let i = 0; i < Number(arg); i++) {
    const r = i % 2 === 0 ? mx.lock(${WAIT_MS}) : await mx.lockAsync(${WAIT_MS});
    if (r !== 'acquired') fail('lock returned ' + r + ' at iteration ' + i);
    const v = i32[L.counter >> 2];
    if (i % 500 === 499) await sleep(1); // hold it: the others must sleep
    i32[L.counter >> 2] = v + 1;
    mx.unlock();
  }
  console.log('ok counter');
} else if (mode === 'hold') {
  const r = mx.lock(${WAIT_MS});
  if (r !== 'acquired') fail('lock returned ' + r);
  shm.buffer.fill(0, L.text, L.text + ${TEXT_LEN});
  shm.buffer.write(arg, L.text, 'latin1');
  ev.set();
  console.log('holding');
  setTimeout(() => fail('was not killed'), 20_000);
} else {
  fail('unknown mode');
}
`;

// ---------------------------------------------------------------------------------------------

describe('interop of Mutex, Event, Semaphore and futex words with a C peer', { skip: HAVE_CC ? false : 'cc not found' }, () => {
  let dir;
  let peerBin;
  let shmNo = 0;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'mmapkit-interop-sync-'));
    peerBin = compileC(PEER_C, join(dir, 'sync-peer'), { cflags: ['-pthread'], libs: ['-lrt'] });
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Fresh named shared memory with the three structures; children and the name go when the test ends. */
  function setup(t) {
    const name = `/mmapkit-61-${process.pid}-${++shmNo}-${Math.random().toString(36).slice(2, 8)}`;
    const shm = SharedMemory.create(name, SHM_SIZE);
    const procs = [];
    t.after(async () => {
      for (const p of procs) p.kill();
      await Promise.all(procs.map((p) => p.done.catch(() => {})));
      // A failed test may have left the mutex locked by this thread. Unlock before unmapping: glibc keeps
      // a locked robust mutex on the thread's robust list, and the next lock of any robust mutex would
      // write into the unmapped list node (SIGSEGV). (The 'futex' kind has no such list.)
      for (const mx of [s.mx, s.fx]) {
        try {
          mx.unlock();
        } catch {}
      }
      shm.close();
      try {
        SharedMemory.unlink(name);
      } catch {}
    });
    const s = {
      name,
      shm,
      buf: shm.buffer,
      i32: new Int32Array(shm.buffer.buffer, shm.buffer.byteOffset, SHM_SIZE / 4),
      mx: Mutex.create(shm, LAYOUT.mutex, { kind: 'pthread' }),
      fx: Mutex.create(shm, LAYOUT.fmutex, { kind: 'futex' }),
      /** The Mutex of `kind`. */
      mutex: (kind) => (kind === 'futex' ? s.fx : s.mx),
      ev: Event.create(shm, LAYOUT.event),
      sem: Semaphore.create(shm, LAYOUT.sem),
      /** Start the C peer: sync-peer <mode> <name> <layout> [args]. */
      peer(mode, ...args) {
        const p = startProc([peerBin, mode, name, LAYOUT_ARG, ...args], `sync-peer ${mode} ${args.join(' ')}`.trim(), { timeout: PEER_TIMEOUT_MS });
        procs.push(p);
        return p;
      },
      /** Start the second Node process (NODE_CHILD) on the Mutex of `kind`. */
      nodeChild(mode, arg, kind = 'pthread') {
        const p = startProc([process.execPath, '--input-type=module', '-e', NODE_CHILD, mode, name, JSON.stringify(LAYOUT), arg, KINDS[kind].at], `node child ${mode}`, {
          timeout: PEER_TIMEOUT_MS,
        });
        procs.push(p);
        return p;
      },
      text: () => shm.buffer.toString('latin1', LAYOUT.text, LAYOUT.text + TEXT_LEN).replace(/\0.*$/s, ''),
      setText(str) {
        shm.buffer.fill(0, LAYOUT.text, LAYOUT.text + TEXT_LEN);
        shm.buffer.write(str, LAYOUT.text, 'latin1');
      },
      lockWord: (kind = 'pthread') => Atomics.load(s.i32, KINDS[kind].lock) >>> 0,
      /** Wait (waitAsync on the `ready` word, which the peers FUTEX_WAKE) until n peers are ready. */
      async ready(n, peers) {
        const deadline = Date.now() + WAIT_MS;
        for (;;) {
          const seen = Atomics.load(s.i32, I.ready);
          if (seen >= n) return;
          exitedFirst(peers, `waiting for ${n} peers to be ready`);
          if (Date.now() > deadline) assert.fail(`only ${seen} of ${n} peers ready after ${WAIT_MS} ms`);
          await waitAsync(s.i32, I.ready, seen, 100);
        }
      },
    };
    return s;
  }

  // ------------------------------------------------------------------------------------- headers

  test('the C peer finds every header where docs/layout.md says, with the sizes it computes itself', async (t) => {
    const s = setup(t);
    const m = assertOk(
      await s.peer('check').done,
      /^ok headers mutex@(\d+) event@(\d+) semaphore@(\d+) sizeof\(pthread_mutex_t\)=(\d+) mutex-size=(\d+) mutex-flags=(\d+) fmutex@(\d+) fmutex-flags=(\d+)$/,
    );
    assert.deepEqual(m.slice(1, 4).map(Number), [LAYOUT.mutex, LAYOUT.event, LAYOUT.sem]);
    const [sizeofMutex, mutexSize, flags, fmutexAt, fflags] = m.slice(4).map(Number);
    assert.equal(mutexSize, Mutex.byteLengthOf('pthread'), `C: roundup8(16 + sizeof(pthread_mutex_t) = ${sizeofMutex}) vs Mutex.byteLengthOf('pthread')`);
    assert.equal(Mutex.byteLength, Math.max(mutexSize, Mutex.byteLengthOf('futex')), 'Mutex.byteLength fits either kind');
    assert.equal(fmutexAt, LAYOUT.fmutex);
    assert.deepEqual([flags, fflags], [0, 0]);
  });

  test('the C peer rejects a wrong magic, version, header size or total size and names the offset', async (t) => {
    const s = setup(t);
    const { buf } = s;
    const structures = [
      ['Mutex', LAYOUT.mutex, 0x584d4b4d, Mutex.byteLengthOf('pthread')],
      ['futex Mutex', LAYOUT.fmutex, 0x58464b4d, Mutex.byteLengthOf('futex')],
      ['Event', LAYOUT.event, 0x56454b4d, Event.byteLength],
      ['Semaphore', LAYOUT.sem, 0x4d534b4d, Semaphore.byteLength],
    ];
    for (const [what, off, magic, size] of structures) {
      const fields = [
        ['magic', HEADER.MAGIC, 4, magic, magic ^ 0x20, (v) => `0x${v.toString(16).padStart(8, '0')}`],
        ['version', HEADER.VERSION, 2, 1, 2, String],
        ['header size', HEADER.HEADER_SIZE, 2, 16, 24, String],
        ['total size', HEADER.TOTAL_SIZE, 4, size, size + 8, String],
      ];
      for (const [field, at, width, good, bad, fmt] of fields) {
        const read = () => (width === 4 ? buf.readUInt32LE(off + at) : buf.readUInt16LE(off + at));
        assert.equal(read(), good, `${what} ${field} as written by create()`);
        if (width === 4) buf.writeUInt32LE(bad, off + at);
        else buf.writeUInt16LE(bad, off + at);
        try {
          const res = await s.peer('check').done;
          assert.equal(res.status, 1, `${res.label} with a bad ${what} ${field}: status ${res.status}, stdout ${res.stdout}`);
          assert.equal(
            res.stderr.trim(),
            `sync-peer.c: bad ${what} header at offset ${off}: ${field} is ${fmt(bad)}, expected ${fmt(good)}` +
              (field === 'magic' ? ` ('${Buffer.from(Uint32Array.of(magic).buffer).toString('latin1')}')` : ''),
          );
        } finally {
          if (width === 4) buf.writeUInt32LE(good, off + at);
          else buf.writeUInt16LE(good, off + at);
        }
      }
    }
    assertOk(await s.peer('check').done, /^ok headers/);
  });

  test('the C peer rejects a structure at the wrong offset or off an 8-byte boundary', async (t) => {
    const s = setup(t);
    const run = (event) =>
      startProc([peerBin, 'check', s.name, LAYOUT_ARG.replace(/event=\d+/, `event=${event}`)], `sync-peer check event=${event}`, { timeout: PEER_TIMEOUT_MS }).done;
    let res = await run(LAYOUT.event + 8); // inside the Event: its TOTAL_SIZE field is no magic
    assert.equal(res.status, 1, res.stderr);
    assert.match(res.stderr, new RegExp(`^sync-peer\\.c: bad Event header at offset ${LAYOUT.event + 8}: magic is 0x00000020, expected 0x56454b4d`));
    res = await run(LAYOUT.event + 4);
    assert.equal(res.status, 1, res.stderr);
    assert.match(res.stderr, new RegExp(`^sync-peer\\.c: bad Event at offset ${LAYOUT.event + 4}: not 8-byte aligned`));
  });

  // ------------------------------------------------------------------------------------- Mutex

  for (const [kind, K] of Object.entries(KINDS)) {
    test(`Mutex (${kind}): a C peer (${K.how}) and two Node processes (lock and lockAsync) keep a plain counter exact`, async (t) => {
      const s = setup(t);
      const mx = s.mutex(kind);
      const n = 20_000;
      const c = s.peer(K.mode('counter'), n);
      const k = s.nodeChild('counter', n, kind);
      await s.ready(2, [c, k]);
      s.ev.set(); // go
      let held = 0;
      for (let i = 0; i < n; i++) {
        if (s.lockWord(kind) !== 0) held++;
        const r = i % 2 === 0 ? mx.lock(WAIT_MS) : await mx.lockAsync(WAIT_MS);
        assert.equal(r, 'acquired', `iteration ${i}`);
        const v = s.i32[I.counter];
        if (i % 500 === 499) await sleep(1); // hold it: the others must sleep
        s.i32[I.counter] = v + 1;
        mx.unlock();
      }
      const [rc, rk] = await Promise.all([c.done, k.done]);
      const m = assertOk(rc, new RegExp(`^ok counter n=${n} waiters=(\\d+)${kind === 'futex' ? ' wakes=(\\d+)' : ''}$`));
      const waiters = Number(m[1]);
      assertOk(rk, /^ok counter$/);
      assert.equal(s.i32[I.counter], 3 * n, 'the plain counter lost or gained increments: the processes did not exclude each other');
      t.diagnostic(`the C peer found FUTEX_WAITERS set before unlocking ${waiters} times${m[2] === undefined ? '' : `, async lockers asleep ${m[2]} times`}; Node found the lock held ${held} times`);
      // Every locker held it for 1 ms now and then, so there were sleepers, announced with FUTEX_WAITERS.
      assert.ok(waiters > 0, 'the C peer never saw FUTEX_WAITERS: nobody slept on the lock');
      assert.ok(held > 0, 'Node never found the lock held: the processes did not contend');
      // The futex kind: Node's lockAsync() sleeps on WAKE with its SLEEPING flag up; C unlocks must see it.
      if (kind === 'futex') assert.ok(Number(m[2]) > 0, 'the C peer never found an async locker asleep');
      assert.equal(Atomics.load(s.i32, K.flags), 0);
    });

    for (const how of ['lock() after the C owner died', 'lock() asleep when the C owner dies', 'lockAsync() asleep when the C owner dies']) {
      test(`Mutex (${kind}): the C owner is killed holding the lock; Node's ${how}: 'owner-died'`, async (t) => {
        const s = setup(t);
        const mx = s.mutex(kind);
        const c = s.peer(K.mode('hold'));
        assert.equal(await s.ev.waitAsync(WAIT_MS), true, `the C peer did not set the event: ${c.stderr()}`);
        assert.equal(mx.tryLock(), 'busy');
        assert.equal(s.lockWord(kind) & FUTEX_TID_MASK, c.child.pid, "the lock word holds the owner's TID (the C peer's pid)");
        let result;
        if (how.startsWith('lock() after')) {
          c.child.kill('SIGKILL');
          await c.done;
          result = mx.lock(WAIT_MS);
        } else if (how.startsWith('lock() asleep')) {
          // The main thread blocks in lock(): a worker thread watches it and kills the C peer once it
          // sleeps in the kernel (its wchan names the futex or rt_mutex code; glibc also sets
          // FUTEX_WAITERS before it sleeps; where wchan tells nothing, after 300 ms).
          const killer = new Worker(
            `const { parentPort, workerData: w } = require('node:worker_threads');
            const { readFileSync } = require('node:fs');
            import(w.dist).then(({ SharedMemory }) => {
              const shm = SharedMemory.open(w.name);
              const i32 = new Int32Array(shm.buffer.buffer, shm.buffer.byteOffset, 256);
              const pause = new Int32Array(new SharedArrayBuffer(4));
              const wchan = () => { try { return readFileSync('/proc/self/task/' + w.main + '/wchan', 'latin1'); } catch { return ''; } };
              const start = Date.now();
              const asleep = () => (Atomics.load(i32, w.index) & 0x80000000) !== 0 &&
                (/futex|rt_mutex/.test(wchan()) || (!/^[a-z_]/.test(wchan()) && Date.now() - start > 300));
              while (!asleep()) {
                if (Date.now() - start > w.ms) { parentPort.postMessage('the main thread never slept in lock()'); return; }
                Atomics.wait(pause, 0, 0, 1);
              }
              process.kill(w.pid, 'SIGKILL');
              parentPort.postMessage('killed');
              shm.close();
            });`,
            { eval: true, workerData: { dist: DIST, name: s.name, index: K.lock, pid: c.child.pid, main: process.pid, ms: WAIT_MS / 2 } },
          );
          const said = new Promise((resolve, reject) => killer.once('message', resolve).once('error', reject));
          try {
            result = mx.lock(WAIT_MS);
          } catch (err) {
            err.message += ` (killer: ${await said})`;
            throw err;
          }
          assert.equal(await said, 'killed');
          await killer.terminate();
        } else {
          const p = mx.lockAsync(WAIT_MS);
          await until(() => K.asyncWaits(s.i32), [c], 'lockAsync waiting (FUTEX_WAITERS, or the SLEEPING flag)', WAIT_MS);
          c.child.kill('SIGKILL');
          result = await p;
        }
        assert.equal(result, 'owner-died');
        assertKilled(await c.done);
        assert.equal(s.text(), 'half-written by C', "the dead owner's data is there to repair");
        s.setText('repaired by Node');
        mx.markConsistent();
        mx.unlock();
        assert.equal(mx.lock(1000), 'acquired', 'consistent again');
        mx.unlock();
        assertOk(await s.peer('check').done, / mutex-flags=0 fmutex@\d+ fmutex-flags=0$/);
      });
    }

    for (const how of ['wait', 'now']) {
      const label = how === 'wait' ? `asleep in ${K.how} when it dies` : `locks (${K.how}) after it died`;
      const repaired = kind === 'pthread' ? 'EOWNERDEAD, pthread_mutex_consistent' : 'HELD was set, repaired, FLAGS bit 1 cleared';
      test(`Mutex (${kind}): a Node owner is killed holding the lock; the C peer ${label}: ${repaired}`, async (t) => {
        const s = setup(t);
        const mx = s.mutex(kind);
        const k = s.nodeChild('hold', 'half-written by Node', kind);
        assert.equal(await s.ev.waitAsync(WAIT_MS), true, `the Node child did not set the event: ${k.stderr()}`);
        let c;
        if (how === 'wait') {
          c = s.peer(K.mode('lock-dead'), 'wait', 'half-written by Node');
          await s.ready(1, [c, k]);
          await until(() => (s.lockWord(kind) & FUTEX_WAITERS) !== 0, [c, k], 'the C peer announcing itself with FUTEX_WAITERS', WAIT_MS);
          await asleepInFutex([c], 'the C peer asleep in the kernel (FUTEX_WAIT or FUTEX_LOCK_PI)', { ms: WAIT_MS, fallbackMs: 300, pattern: /futex|rt_mutex/ });
          k.child.kill('SIGKILL');
        } else {
          k.child.kill('SIGKILL');
          await k.done;
          c = s.peer(K.mode('lock-dead'), 'now', 'half-written by Node');
        }
        assertOk(await c.done, /^ok owner-died text="half-written by Node"$/);
        assertKilled(await k.done);
        assert.equal(s.text(), 'repaired by C');
        assert.equal(mx.lock(1000), 'acquired', 'the C peer made it consistent');
        mx.unlock();
        assert.equal(Atomics.load(s.i32, K.flags), 0);
      });
    }

    test(`Mutex (${kind}): Node unlocks after 'owner-died' without markConsistent; the C peer sees FLAGS bit 0${kind === 'pthread' ? ' and ENOTRECOVERABLE' : ''}`, async (t) => {
      const s = setup(t);
      const mx = s.mutex(kind);
      const k = s.nodeChild('hold', 'half-written by Node', kind);
      assert.equal(await s.ev.waitAsync(WAIT_MS), true, `the Node child did not set the event: ${k.stderr()}`);
      k.child.kill('SIGKILL');
      assertKilled(await k.done);
      assert.equal(mx.lock(WAIT_MS), 'owner-died');
      mx.unlock();
      assert.equal(Atomics.load(s.i32, K.flags), 1);
      assertOk(await s.peer(K.mode('lock-unrecoverable')).done, /^ok not-recoverable$/);
    });
  }

  // ------------------------------------------------------------------------------------- Event

  test('Event: three C peers sleep in FUTEX_WAIT with the sleepers protocol; one Node set() wakes them all', async (t) => {
    const s = setup(t);
    const peers = [s.peer('event-wait'), s.peer('event-wait'), s.peer('event-wait')];
    await s.ready(3, peers);
    await until(() => Atomics.load(s.i32, I.evSleepers) === 3, peers, 'three sleepers counted on the Event', WAIT_MS);
    const observed = await asleepInFutex(peers, 'the C peers asleep in the kernel', ASLEEP);
    s.ev.set();
    for (const p of peers) {
      const slept = Number(assertOk(await p.done, /^ok event-wait slept=(\d+)$/)[1]);
      if (observed) assert.ok(slept >= 1, `${p.label} was asleep in FUTEX_WAIT, so set() had to wake it`);
    }
    assert.equal(Atomics.load(s.i32, I.evSleepers), 0, 'every C waiter took itself off the sleepers count');
    assert.equal(s.ev.isSet, true);
  });

  for (const how of ['waitAsync', 'wait']) {
    test(`Event: Node ${how}()s, the C peer sets it (store 1, FUTEX_WAKE when sleepers > 0)`, async (t) => {
      const s = setup(t);
      const c = s.peer('event-set', 1);
      const [ok, ms] = await timed(() => (how === 'wait' ? s.ev.wait(WAIT_MS) : s.ev.waitAsync(WAIT_MS)));
      assert.equal(ok, true, `the event was not set: ${c.stderr()}`);
      assert.ok(ms < PROMPT_MS, `${how}() returned only after ${Math.round(ms)} ms: the C peer's set() did not wake it`);
      const woke = Number(assertOk(await c.done, /^ok event-set woke=(\d+)$/)[1]);
      t.diagnostic(`the C peer's FUTEX_WAKE woke ${woke}`);
      assert.equal(Atomics.load(s.i32, I.evState), 1);
      assert.equal(Atomics.load(s.i32, I.evSleepers), 0);
      // and again after reset: set() from C is seen by the next wait too
      s.ev.reset();
      const c2 = s.peer('event-set', 1);
      const [ok2, ms2] = await timed(() => (how === 'wait' ? s.ev.waitAsync(WAIT_MS) : s.ev.wait(WAIT_MS)));
      assert.equal(ok2, true, c2.stderr());
      assert.ok(ms2 < PROMPT_MS, `the wait after reset() returned only after ${Math.round(ms2)} ms: not woken`);
      assertOk(await c2.done, /^ok event-set/);
    });
  }

  // ------------------------------------------------------------------------------------- Semaphore

  test(`Semaphore: the C peer posts ${SEM_ITEMS} items in batches; Node takes them with wait/waitAsync, in order`, async (t) => {
    const s = setup(t);
    const seed = 0x2545f491;
    const c = s.peer('sem-post', SEM_ITEMS, seed);
    let x = seed;
    let empty = 0;
    for (let i = 0; i < SEM_ITEMS; i++) {
      if (s.sem.value === 0) empty++;
      const [ok, ms] = await timed(() => (i % 2 === 0 ? s.sem.wait(WAIT_MS) : s.sem.waitAsync(WAIT_MS)));
      assert.equal(ok, true, `item ${i}: the semaphore was not posted; ${c.stderr()}`);
      assert.ok(ms < PROMPT_MS, `item ${i}: the wait returned only after ${Math.round(ms)} ms: the C peer's post did not wake it`);
      x = xorshift32(x);
      const got = s.i32[I.slots + i] >>> 0;
      assert.equal(got, x, `item ${i} at offset ${LAYOUT.slots + 4 * i}: 0x${got.toString(16)}, expected 0x${x.toString(16)}`);
    }
    assertOk(await c.done, new RegExp(`^ok sem-post k=${SEM_ITEMS}$`));
    assert.equal(s.sem.tryWait(), false, 'exactly as many posts as items');
    assert.equal(Atomics.load(s.i32, I.semSleepers), 0);
    t.diagnostic(`Node found the semaphore empty ${empty} times`);
    assert.ok(empty >= SEM_ITEMS / 50, `Node found the semaphore empty only ${empty} times: the C peer did not wait for it to sleep`);
  });

  test(`Semaphore: Node posts ${SEM_ITEMS} items in batches; the C peer takes them (sleepers, FUTEX_WAIT) and verifies`, async (t) => {
    const s = setup(t);
    const seed = 0x9e3779b9;
    const c = s.peer('sem-take', SEM_ITEMS, seed);
    let x = seed;
    let observed = 0;
    for (let i = 0, nextPause = 0; i < SEM_ITEMS; ) {
      if (i >= nextPause) {
        // Now and then let it run dry and fall asleep, so that post() must wake it.
        await until(() => Atomics.load(s.i32, I.semValue) === 0 && Atomics.load(s.i32, I.semSleepers) === 1, [c], `the C peer took all and counted as a sleeper before item ${i}`, WAIT_MS);
        if (await asleepInFutex([c], `the C peer asleep in the kernel before item ${i}`, ASLEEP)) observed++;
        nextPause += 50;
      }
      const batch = Math.min(1 + (i % 3), SEM_ITEMS - i);
      for (let j = 0; j < batch; j++) s.i32[I.slots + i + j] = x = xorshift32(x);
      s.sem.post(batch);
      i += batch;
    }
    const slept = Number(assertOk(await c.done, new RegExp(`^ok sem-take k=${SEM_ITEMS} slept=(\\d+)$`))[1]);
    t.diagnostic(`the C peer slept ${slept} times, ${observed} of them seen in /proc/PID/wchan`);
    assert.ok(slept >= observed, `the C peer was seen asleep ${observed} times, so post() had to wake it as often, but it slept ${slept} times`);
    assert.equal(s.sem.value, 0);
    assert.equal(Atomics.load(s.i32, I.semSleepers), 0);
  });

  // ------------------------------------------------------------------------------------- plain words

  for (const how of ['wait', 'waitAsync']) {
    test(`plain futex word: 3000 rounds of ping-pong, Node ${how}/notify against C FUTEX_WAIT/FUTEX_WAKE`, async (t) => {
      const s = setup(t);
      const rounds = 3000;
      const seed = 0x1234567;
      const c = s.peer('pingpong', rounds, seed);
      const { i32 } = s;
      let x = seed;
      let sleeps = 0;
      for (let r = 0; r < rounds; r++) {
        x = xorshift32(x);
        i32[I.data] = x;
        Atomics.store(i32, I.turn, 2 * r + 1);
        notify(i32, I.turn);
        const want = 2 * r + 2;
        for (;;) {
          const seen = Atomics.load(i32, I.turn); // read once: compare and sleep on the same value
          if (seen === want) break;
          assert.equal(seen, want - 1, `round ${r}: turn`);
          const res = how === 'wait' ? wait(i32, I.turn, seen, WAIT_MS) : await waitAsync(i32, I.turn, seen, WAIT_MS);
          assert.notEqual(res, 'timed-out', `round ${r}: the C peer did not answer; ${c.stderr()}`);
          if (res === 'ok') sleeps++;
        }
        const got = i32[I.data] >>> 0;
        assert.equal(got, ~x >>> 0, `round ${r}: data 0x${got.toString(16)}, expected ~0x${x.toString(16)}`);
      }
      const m = assertOk(await c.done, new RegExp(`^ok pingpong rounds=${rounds} slept=(\\d+)$`));
      t.diagnostic(`Node slept ${sleeps} times, the C peer ${m[1]} times`);
      assert.ok(sleeps > 0, 'Node never slept: the test did not exercise the wake');
    });
  }
});
