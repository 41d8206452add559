#!/usr/bin/env node
/**
 * The two kinds of Mutex side by side: `node bench/mutex.mjs [--quick]` (compile src/ first).
 *
 * - Uncontended, one thread: lock() + unlock(), tryLock() + unlock() and await lockAsync() + unlock()
 *   on a free mutex, in ns per pair. The 'futex' kind does both halves with one compare-and-swap in
 *   JavaScript; the 'pthread' kind calls pthread_mutex_trylock/unlock through the addon.
 * - Contended, two processes: each takes the lock 20,000 times around a one-word critical section
 *   (both with lock(), or one with lock() and one with lockAsync()), in ns per lock + unlock pair
 *   (wall time from "go" until both are done, divided by all pairs).
 *
 * Variants run interleaved (every variant once per run, so that drifting load spreads over all of
 * them); the tables give the median of the runs and its range. Prints markdown.
 */
import { spawn } from 'node:child_process';
import { Event, Mutex, Semaphore, SharedMemory } from '../dist/index.js';
import { fmt, markdownTable, nowNs, stats, tick } from './lib.mjs';

const QUICK = process.argv.includes('--quick');
const RUNS = QUICK ? 3 : 9;
const PAIRS = QUICK ? 20_000 : 200_000; // uncontended sync pairs per run
const ASYNC_PAIRS = QUICK ? 5_000 : 50_000;
const CONTENDED = QUICK ? 5_000 : 20_000; // pairs per process
const KINDS = ['futex', 'pthread'];
const DIST = new URL('../dist/index.js', import.meta.url).href;

// Shared memory of a contended run: the Mutex at 0, "go" at 64, "done" at 128, "ready" at 160, a
// counter at 192.
const GO = 64;
const DONE = 128;
const READY = 160;
const COUNTER = 192;

/** Uncontended pairs on one mutex per kind: { variant: ns per pair, per run }. */
async function uncontended() {
  const shm = SharedMemory.anonymous(4096);
  const mx = { futex: Mutex.create(shm, 0, { kind: 'futex' }), pthread: Mutex.create(shm, 64, { kind: 'pthread' }) };
  const cases = [];
  for (const kind of KINDS) {
    const m = mx[kind];
    cases.push([`${kind}: lock() + unlock()`, PAIRS, (n) => { for (let i = 0; i < n; i++) { m.lock(); m.unlock(); } }]);
    cases.push([`${kind}: tryLock() + unlock()`, PAIRS, (n) => { for (let i = 0; i < n; i++) { m.tryLock(); m.unlock(); } }]);
    cases.push([`${kind}: await lockAsync() + unlock()`, ASYNC_PAIRS, async (n) => { for (let i = 0; i < n; i++) { await m.lockAsync(); m.unlock(); } }]);
  }
  for (const [, n, fn] of cases) await fn(Math.ceil(n / 10)); // warm up
  const per = Object.fromEntries(cases.map(([key]) => [key, []]));
  for (let r = 0; r < RUNS; r++) {
    for (const [key, n, fn] of cases) {
      await tick();
      const t0 = nowNs();
      await fn(n);
      per[key].push((nowNs() - t0) / n);
    }
  }
  shm.close();
  return Object.fromEntries(Object.entries(per).map(([k, v]) => [k, stats(v)]));
}

/** A child that waits for "go", then takes the mutex CONTENDED times (lock() or lockAsync()). */
const CHILD = `
import { Event, Mutex, Semaphore, SharedMemory } from ${JSON.stringify(DIST)};
const shm = SharedMemory.inherited();
const mx = Mutex.attach(shm, 0);
const go = Event.attach(shm, ${GO});
const done = Semaphore.attach(shm, ${DONE});
Semaphore.attach(shm, ${READY}).post();
const counter = new Int32Array(shm.buffer.buffer, shm.buffer.byteOffset + ${COUNTER}, 1);
const [how, n] = process.argv.slice(1);
if (!go.wait(30_000)) process.exit(3);
for (let i = 0; i < Number(n); i++) {
  if (how === 'async') await mx.lockAsync(30_000);
  else mx.lock(30_000);
  counter[0]++;
  mx.unlock();
}
done.post();
`;

/** One contended run: two processes (`hows`) on a fresh mutex of `kind`; ns per lock + unlock pair. */
async function contendedRun(kind, hows) {
  const shm = SharedMemory.anonymous(4096);
  Mutex.create(shm, 0, { kind });
  const go = Event.create(shm, GO);
  const done = Semaphore.create(shm, DONE);
  const ready = Semaphore.create(shm, READY);
  const kids = hows.map((how) => {
    const c = spawn(process.execPath, ['--input-type=module', '-e', CHILD, how, String(CONTENDED)], shm.childOptions({ stdio: ['ignore', 'inherit', 'inherit'] }));
    return new Promise((resolve) => c.on('exit', (code, signal) => resolve(code === 0 ? null : `child exited with ${code ?? signal}`)));
  });
  for (let i = 0; i < hows.length; i++) if (!(await ready.waitAsync(60_000))) throw new Error('a child did not start');
  await new Promise((resolve) => setTimeout(resolve, 20)); // let both fall asleep on "go"
  const t0 = nowNs();
  go.set();
  for (let i = 0; i < hows.length; i++) if (!(await done.waitAsync(60_000))) throw new Error('a child did not finish');
  const ns = (nowNs() - t0) / (CONTENDED * hows.length);
  const errors = (await Promise.all(kids)).filter((e) => e !== null);
  const total = new Int32Array(shm.buffer.buffer, shm.buffer.byteOffset + COUNTER, 1)[0];
  shm.close();
  if (errors.length > 0) throw new Error(errors.join('; '));
  if (total !== CONTENDED * hows.length) throw new Error(`the counter is ${total}, expected ${CONTENDED * hows.length}`);
  return ns;
}

async function contended() {
  const variants = [];
  for (const kind of KINDS) {
    variants.push([`${kind}: lock() vs lock()`, kind, ['sync', 'sync']]);
    variants.push([`${kind}: lock() vs lockAsync()`, kind, ['sync', 'async']]);
  }
  const per = Object.fromEntries(variants.map(([key]) => [key, []]));
  for (let r = 0; r < RUNS; r++) {
    for (const [key, kind, hows] of variants) {
      per[key].push(await contendedRun(kind, hows));
      process.stderr.write(`  run ${r + 1}/${RUNS} ${key}: ${fmt(per[key].at(-1))} ns\n`);
    }
  }
  return Object.fromEntries(Object.entries(per).map(([k, v]) => [k, stats(v)]));
}

function table(title, results) {
  const rows = Object.entries(results).map(([k, s]) => [k, fmt(s.median), `${fmt(s.min)}–${fmt(s.max)}`]);
  return `### ${title}\n\n${markdownTable(['variant', 'ns per pair (median)', 'range'], rows)}\n`;
}

const u = await uncontended();
console.log(table(`Uncontended, one thread (${RUNS} runs)`, u));
const c = await contended();
console.log(table(`Contended, two processes, ${CONTENDED.toLocaleString('en-US')} pairs each (${RUNS} runs)`, c));
