// wait / waitAsync / notify across processes and threads (futex).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SharedMemory, map, mapAnonymous, notify, wait, waitAsync } from '../dist/index.js';
import { assertOk, cannotEmulate, distUrl, runNode, startNode, tempDir, throwsCode, xorshift } from './helpers.mjs';

const CHILD = new URL('./fixtures/sync-child.mjs', import.meta.url).pathname;


function words(shm, n = 16) {
  return new Int32Array(shm.buffer.buffer, shm.buffer.byteOffset, n);
}

for (const childMode of ['sync', 'async']) {
  for (const parentMode of ['sync', 'async']) {
    test(`ping-pong with a child process: parent ${parentMode}, child ${childMode}, every value checked`, async (t) => {
      const shm = SharedMemory.anonymous(4096);
      const turn = words(shm);
      const data = new Int32Array(shm.buffer.buffer, shm.buffer.byteOffset + 64, 1);
      const rounds = 2000;
      const child = startNode([CHILD, 'pingpong', rounds, childMode], `pingpong ${childMode}`, { t, spawnOptions: shm.childOptions() });
      const seq = xorshift(42);
      for (let r = 0; r < rounds; r++) {
        const value = seq.next().value;
        data[0] = value;
        Atomics.store(turn, 0, 2 * r + 1); // publish the data, then the turn
        notify(turn, 0);
        const want = 2 * r + 2;
        for (;;) {
          const seen = Atomics.load(turn, 0); // read once: comparing and waiting on two reads loses wakes
          if (seen === want) break;
          const res = parentMode === 'async' ? await waitAsync(turn, 0, seen, 10_000) : wait(turn, 0, seen, 10_000);
          assert.notEqual(res, 'timed-out', `round ${r}: ${child.output()}`);
        }
        assert.equal(data[0], ~value, `round ${r}`);
      }
      assertOk(await child.done, /pingpong ok/);
      shm.close();
    });
  }
}

test('wait: not-equal, timed-out (with a real delay), ok after a notify from another process', (t) => {
  const shm = SharedMemory.anonymous(4096);
  const w = words(shm);
  assert.equal(wait(w, 0, 1, 1000), 'not-equal');
  let t0 = performance.now();
  assert.equal(wait(w, 0, 0, 50), 'timed-out');
  assert.ok(performance.now() - t0 >= 45, 'waited about 50 ms');
  assert.equal(wait(w, 0, 0, 0), 'timed-out');
  // A separate process stores and notifies after 100 ms: we block until then.
  const child = startNode(['--input-type=module', '-e', `
    import { SharedMemory, notify } from ${JSON.stringify(distUrl)};
    const shm = SharedMemory.inherited();
    const w = new Int32Array(shm.buffer.buffer, shm.buffer.byteOffset, 4);
    setTimeout(() => { Atomics.store(w, 1, 7); notify(w, 1); }, 100);
  `], 'a notifier', { t, spawnOptions: shm.childOptions() });
  t0 = performance.now();
  assert.equal(wait(w, 1, 0, 10_000), 'ok');
  assert.ok(performance.now() - t0 >= 50);
  assert.equal(Atomics.load(w, 1), 7);
  child.kill();
  shm.close();
});

test('notify returns how many woke; count limits it', async () => {
  const shm = SharedMemory.anonymous(4096);
  const w = words(shm);
  assert.equal(notify(w, 0), 0, 'nobody waits');
  const ps = [0, 1, 2].map(() => waitAsync(w, 0, 0, 10_000));
  // Let the waiter threads go to sleep.
  let woken = 0;
  const deadline = Date.now() + 5000;
  await new Promise((r) => setTimeout(r, 50));
  woken += notify(w, 0, 2);
  while (woken < 2 && Date.now() < deadline) { await new Promise((r) => setTimeout(r, 10)); woken += notify(w, 0, 2 - woken); }
  assert.equal(woken, 2);
  woken = 0;
  while (woken < 1 && Date.now() < deadline) { await new Promise((r) => setTimeout(r, 10)); woken += notify(w, 0, Infinity); }
  assert.equal(woken, 1);
  assert.deepEqual(await Promise.all(ps), ['ok', 'ok', 'ok']);
  shm.close();
});

test('waitAsync: not-equal and timed-out, abort, and unmap reject', async (t) => {
  const shm = SharedMemory.anonymous(4096);
  const w = words(shm);
  assert.equal(await waitAsync(w, 0, 5), 'not-equal');
  assert.equal(await waitAsync(w, 0, 0, 0), 'timed-out');
  const t0 = performance.now();
  assert.equal(await waitAsync(w, 0, 0, 60), 'timed-out');
  assert.ok(performance.now() - t0 >= 55);
  const ac = new AbortController();
  const p = waitAsync(w, 0, 0, undefined, { signal: ac.signal });
  setTimeout(() => ac.abort(), 20);
  await assert.rejects(p, { name: 'AbortError' });
  await assert.rejects(waitAsync(w, 0, 0, undefined, { signal: AbortSignal.abort() }), { name: 'AbortError' });
  const reason = new Error('custom reason');
  const ac2 = new AbortController();
  const p2 = waitAsync(w, 0, 0, 10_000, { signal: ac2.signal });
  ac2.abort(reason);
  await assert.rejects(p2, (e) => e === reason);
  const p3 = waitAsync(w, 2, 0, 10_000);
  shm.close();
  await assert.rejects(p3, { code: 'ERR_MMAP_CLOSED' });
});

test('16 pending waitAsync calls leave fs I/O running normally (no threadpool use)', async (t) => {
  const shm = SharedMemory.anonymous(4096);
  const w = words(shm);
  const file = join(tempDir(t), 'io.txt');
  writeFileSync(file, 'x'.repeat(1000));
  const ps = Array.from({ length: 16 }, (_, i) => waitAsync(w, i % 4, 0, 20_000));
  const t0 = performance.now();
  for (let i = 0; i < 20; i++) await readFile(file); // each needs the libuv threadpool (4 threads)
  const ms = performance.now() - t0;
  assert.ok(ms < 1000, `20 readFile calls took ${ms.toFixed(1)} ms with 16 waits pending`);
  for (let i = 0; i < 4; i++) { Atomics.store(w, i, 1); notify(w, i); }
  assert.deepEqual(new Set(await Promise.all(ps)), new Set(['ok']));
  shm.close();
});

test('3000 pending waitAsync calls settle when woken together, 600 when they time out together', { timeout: 60_000 }, async (t) => {
  if (cannotEmulate(t, 'a real CPU\'s speed: 3000 waiter threads started within the 20 s timeout')) return;
  // More completions at once than an io_uring's completion ring holds (4096 entries, two per wait):
  // the rest wait on the kernel's overflow list, and must still be collected.
  const shm = SharedMemory.anonymous(4 * 4096);
  const w = new Int32Array(shm.buffer.buffer, shm.buffer.byteOffset, 4096);
  const woken = Array.from({ length: 3000 }, (_, i) => waitAsync(w, i % 1000, 0, 20_000));
  setTimeout(() => {
    for (let i = 0; i < 1000; i++) {
      Atomics.store(w, i, 1);
      notify(w, i);
    }
  }, 50);
  const t0 = performance.now();
  const results = await Promise.all(woken);
  assert.equal(results.filter((r) => r === 'ok').length, 3000);
  assert.ok(performance.now() - t0 < 10_000, 'woken, not timed out');
  const late = await Promise.all(Array.from({ length: 600 }, (_, i) => waitAsync(w, 2000 + i, 0, 30)));
  assert.equal(late.filter((r) => r === 'timed-out').length, 600);
  shm.close();
});

test('a pending waitAsync keeps the process alive like a timer; ref: false does not', () => {
  const program = (ref, ms) => `
    import { SharedMemory, waitAsync } from ${JSON.stringify(distUrl)};
    const shm = SharedMemory.anonymous(4096);
    const w = new Int32Array(shm.buffer.buffer, 0, 1);
    const t0 = Date.now();
    waitAsync(w, 0, 0, ${ms}, { ref: ${ref} }).then((r) => console.log(r, Date.now() - t0 >= ${ms} - 50));
  `;
  const kept = runNode(program(true, 300), { timeout: 30_000 });
  assert.equal(kept.status, 0, kept.stderr);
  assert.equal(kept.stdout.trim(), 'timed-out true');
  // A wait of a minute that must not keep the process alive: it exits at once, well before the wait
  // would end (the bound leaves room for a slow start-up, under an emulator on a loaded machine).
  const t0 = Date.now();
  const unref = runNode(program(false, 60_000), { timeout: 45_000 });
  assert.equal(unref.status, 0, unref.stderr);
  assert.equal(unref.stdout.trim(), '', 'the process exited without waiting');
  assert.ok(Date.now() - t0 < 40_000, 'it did not wait for the minute');
});

test('both places async waits sleep: io_uring (where the kernel has FUTEX_WAIT in it) and waiter threads (MMAPKIT_ASYNC_WAIT=threads)', (t) => {
  if (cannotEmulate(t, 'io_uring (ENOSYS: waits use waiter threads there)')) return;
  // The same checks in two child processes: wake, timeout, abort, unmap, a worker's waits; and which
  // of the two was used, from /proc: a ring is an anon_inode:[io_uring] descriptor, a waiter a thread.
  const program = `
    import { readdirSync, readlinkSync } from 'node:fs';
    import { Worker } from 'node:worker_threads';
    import { SharedMemory, waitAsync, notify } from ${JSON.stringify(distUrl)};
    const rings = () => readdirSync('/proc/self/fd').filter((fd) => { try { return readlinkSync('/proc/self/fd/' + fd) === 'anon_inode:[io_uring]'; } catch { return false; } }).length;
    const threads = () => readdirSync('/proc/self/task').length;
    const shm = SharedMemory.anonymous(4096);
    const w = new Int32Array(shm.buffer.buffer, shm.buffer.byteOffset, 16);
    const out = { threadsBefore: threads(), ringsBefore: rings() };
    const woken = waitAsync(w, 0, 0, 10_000);
    out.threadsDuring = threads();
    out.ringsDuring = rings();
    setTimeout(() => { Atomics.store(w, 0, 1); notify(w, 0); }, 20);
    out.woken = await woken;
    let t0 = performance.now();
    out.timedOut = await waitAsync(w, 1, 0, 50);
    out.timeoutMs = Math.round(performance.now() - t0);
    const ac = new AbortController();
    const aborted = waitAsync(w, 2, 0, 10_000, { signal: ac.signal });
    setTimeout(() => ac.abort(), 20);
    out.aborted = await aborted.then(() => 'resolved', (e) => e.name);
    // Many at once, woken together.
    const many = Array.from({ length: 50 }, () => waitAsync(w, 3, 0, 10_000));
    setTimeout(() => { Atomics.store(w, 3, 1); out.notified = notify(w, 3); }, 30);
    out.many = [...new Set(await Promise.all(many))];
    // A worker whose waits are pending when it is terminated, then one that waits and is woken.
    const src = 'import { workerData, parentPort } from "node:worker_threads";' +
      'const { SharedMemory, waitAsync } = await import(workerData.url);' +
      'const s = SharedMemory.fromFd(workerData.fd); const a = new Int32Array(s.buffer.buffer, s.buffer.byteOffset, 16);' +
      'const p = waitAsync(a, 4, 0, 10_000); parentPort.postMessage("waiting"); parentPort.postMessage(await p);';
    for (const stop of [true, false]) {
      const worker = new Worker(src, { eval: true, workerData: { url: ${JSON.stringify(distUrl)}, fd: shm.fd } });
      const first = await new Promise((resolve) => worker.once('message', resolve));
      if (stop) { await worker.terminate(); continue; }
      setTimeout(() => { Atomics.store(w, 4, 1); notify(w, 4); }, 20);
      out.worker = await new Promise((resolve) => worker.once('message', resolve));
      await worker.terminate();
    }
    const late = waitAsync(w, 5, 0, 10_000);
    shm.close();
    out.unmapped = await late.then(() => 'resolved', (e) => e.code);
    console.log(JSON.stringify(out));
  `;
  const run = (env) => {
    const r = runNode(program, { timeout: 30_000, env: { ...process.env, ...env } });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout.trim().split('\n').pop());
  };
  // notify() counts the waiters asleep at that moment: on a loaded machine some of the 50 are still on
  // their way into the kernel 30 ms later (32 of 50 under Node 24 at load 8), and those return 'ok' when
  // they find the word changed. So: every one of the 50 ends 'ok', and notify woke between 1 and 50.
  const same = { woken: 'ok', timedOut: 'timed-out', aborted: 'AbortError', many: ['ok'], worker: 'ok', unmapped: 'ERR_MMAP_CLOSED' };
  const notifiedSome = (r, what) => assert.ok(r.notified >= 1 && r.notified <= 50, `${what}: notify woke ${r.notified} of 50`);
  const threads = run({ MMAPKIT_ASYNC_WAIT: 'threads' });
  assert.deepEqual({ ...threads, ...same }, threads, 'waiter threads: every check');
  notifiedSome(threads, 'waiter threads');
  assert.ok(threads.timeoutMs >= 45, `timed out after ${threads.timeoutMs} ms`);
  // Count only rings opened by the wait: Node 22's libuv opens io_uring descriptors of its own at startup.
  assert.equal(threads.ringsDuring - threads.ringsBefore, 0, 'no io_uring');
  assert.ok(threads.threadsDuring > threads.threadsBefore, 'a waiter thread was started');
  const env = { ...process.env };
  delete env.MMAPKIT_ASYNC_WAIT;
  const dflt = run(env);
  assert.deepEqual({ ...dflt, ...same }, dflt, 'default: every check');
  notifiedSome(dflt, 'default');
  assert.ok(dflt.timeoutMs >= 45, `timed out after ${dflt.timeoutMs} ms`);
  const [major, minor] = (readFileSync('/proc/sys/kernel/osrelease', 'utf8').match(/^(\d+)\.(\d+)/) ?? []).slice(1).map(Number);
  if (major > 6 || (major === 6 && minor >= 7)) {
    assert.equal(dflt.ringsDuring - dflt.ringsBefore, 1, 'Linux 6.7+: the wait is queued in an io_uring');
    assert.equal(dflt.threadsDuring, dflt.threadsBefore, 'and no waiter thread was started');
  }
});

test('memory that is not shared between processes is refused with a clear error', (t) => {
  const file = join(tempDir(t), 'f.bin');
  writeFileSync(file, Buffer.alloc(4096));
  const cases = [
    new Int32Array(4),
    new Int32Array(new SharedArrayBuffer(16)),
    new Int32Array(mapAnonymous(4096).buffer.buffer), // private anonymous
    new Int32Array(map(file, { access: 'copy' }).buffer.buffer),
    new Int32Array(map(file).buffer.buffer), // 'read' is private underneath
  ];
  for (const arr of cases) {
    throwsCode(() => wait(arr, 0, 0, 0), 'ERR_MMAP_NOT_SHARED', 'MmapkitError');
    throwsCode(() => notify(arr, 0), 'ERR_MMAP_NOT_SHARED', 'MmapkitError');
    assert.rejects(waitAsync(arr, 0, 0, 0), { code: 'ERR_MMAP_NOT_SHARED' });
  }
  const shared = new Int32Array(map(file, { access: 'write' }).buffer.buffer);
  assert.equal(wait(shared, 0, 0, 1), 'timed-out', 'a write mapping of a file is shared');
});

test('bad input to wait, waitAsync and notify', async (t) => {
  const shm = SharedMemory.anonymous(8192);
  const w = words(shm, 4);
  for (const arr of [undefined, null, [1], new Uint32Array(shm.buffer.buffer, 0, 4), new BigInt64Array(shm.buffer.buffer, 0, 2), shm.buffer]) {
    throwsCode(() => wait(arr, 0, 0, 0), 'ERR_INVALID_ARG_TYPE', 'TypeError');
    throwsCode(() => notify(arr, 0), 'ERR_INVALID_ARG_TYPE', 'TypeError');
    await assert.rejects(waitAsync(arr, 0, 0, 0), { code: 'ERR_INVALID_ARG_TYPE' });
  }
  throwsCode(() => wait(w, 4, 0, 0), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  throwsCode(() => wait(w, -1, 0, 0), 'ERR_OUT_OF_RANGE', 'RangeError');
  throwsCode(() => wait(w, 1.5, 0, 0), 'ERR_OUT_OF_RANGE', 'RangeError');
  throwsCode(() => wait(w, '0', 0, 0), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  throwsCode(() => wait(w, 0, '0', 0), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  throwsCode(() => wait(w, 0, 2 ** 33, 0), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  throwsCode(() => wait(w, 0, 0.5, 0), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  throwsCode(() => wait(w, 0, 0, -1), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  throwsCode(() => wait(w, 0, 0, NaN), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  throwsCode(() => wait(w, 0, 0, '10'), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  throwsCode(() => notify(w, 0, -1), 'ERR_OUT_OF_RANGE', 'RangeError');
  throwsCode(() => notify(w, 0, '1'), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  await assert.rejects(waitAsync(w, 0, 0, 0, { signal: 'x' }), { code: 'ERR_INVALID_ARG_TYPE' });
  await assert.rejects(waitAsync(w, 0, 0, 0, { ref: 1 }), { code: 'ERR_INVALID_ARG_TYPE' });
  await assert.rejects(waitAsync(w, 0, 0, 0, { spin: -1 }), { code: 'ERR_INVALID_ARG_VALUE' });
  await assert.rejects(waitAsync(w, 0, 0, 0, { sigal: null }), { code: 'ERR_INVALID_ARG_VALUE' });
  // Memory alignment: a view at an odd byte offset of the mapping.
  const odd = map(shm.fd, { access: 'write', offset: 2, length: 16 });
  throwsCode(() => wait(new Int32Array(odd.buffer.buffer, 0, 2), 0, 0, 0), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  odd.unmap();
  const view = w;
  shm.close();
  throwsCode(() => wait(view, 0, 0, 0), 'ERR_MMAP_CLOSED', 'MmapkitError'); // detached with its mapping
});

test('worker threads: waits across threads, and a worker terminated with waits pending does not crash', async () => {
  const { Worker } = await import('node:worker_threads');
  const shm = SharedMemory.anonymous(4096);
  const w = words(shm);
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    import(workerData.dist).then(async ({ SharedMemory, waitAsync, wait, notify }) => {
      const shm = SharedMemory.fromFd(workerData.fd);
      const w = new Int32Array(shm.buffer.buffer, 0, 16);
      for (let i = 0; i < 8; i++) waitAsync(w, 8, 0); // never notified: pending at termination
      parentPort.postMessage('ready');
      const r = wait(w, 0, 0, 10000);            // blocking wait, woken by the main thread
      Atomics.store(w, 1, 1); notify(w, 1);
      parentPort.postMessage(r);
    });`;
  for (let round = 0; round < 3; round++) {
    Atomics.store(w, 0, 0);
    Atomics.store(w, 1, 0);
    const worker = new Worker(code, { eval: true, workerData: { fd: shm.fd, dist: distUrl } });
    const killer = setTimeout(() => worker.terminate(), 20_000);
    const messages = [];
    worker.on('message', (m) => messages.push(m));
    while (!messages.includes('ready')) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 20));
    Atomics.store(w, 0, 1);
    notify(w, 0);
    assert.notEqual(await waitAsync(w, 1, 0, 10_000), 'timed-out');
    while (messages.length < 2) await new Promise((r) => setTimeout(r, 5));
    assert.deepEqual(messages, ['ready', 'ok']);
    await worker.terminate(); // 8 async waits pending in the worker
    clearTimeout(killer);
  }
  shm.close();
});

test('waitAsync spin options: a hybrid wait sees a change made while it spins; threadSpin still sleeps', async (t) => {
  if (cannotEmulate(t, 'a real CPU\'s speed: a child that wakes and writes within the 1 s spin')) return;
  const shm = SharedMemory.anonymous(4096);
  const w = words(shm);
  // A child, once started and told that we spin (word 3), changes word 0 5 ms later; we spin for up to
  // 1 s on the calling thread. The child starts first so that a slow start on a loaded machine does
  // not eat the spin.
  const child = startNode(['--input-type=module', '-e', `
    import { SharedMemory, wait, notify } from ${JSON.stringify(distUrl)};
    const shm = SharedMemory.inherited();
    const w = new Int32Array(shm.buffer.buffer, shm.buffer.byteOffset, 4);
    Atomics.store(w, 3, 1); notify(w, 3); // started
    while (Atomics.load(w, 3) !== 2) wait(w, 3, 1, 30_000);
    setTimeout(() => Atomics.store(w, 0, 1), 5); // no notify: only a spinning reader can see it
    setTimeout(() => {}, 3000);
  `], 'a writer that does not notify', { t, spawnOptions: shm.childOptions() });
  while (Atomics.load(w, 3) !== 1) assert.notEqual(await waitAsync(w, 3, 0, 30_000), 'timed-out', 'the child started');
  Atomics.store(w, 3, 2);
  notify(w, 3);
  const t0 = performance.now();
  assert.equal(await waitAsync(w, 0, 0, 10_000, { spin: 1_000_000 }), 'ok');
  assert.ok(performance.now() - t0 < 2000, 'resolved by the spin, before any sleep');
  child.kill();
  assert.equal(await waitAsync(w, 1, 0, 5, { spin: 50_000 }), 'timed-out', 'a spin longer than the timeout times out');
  const p = waitAsync(w, 2, 0, 5000, { threadSpin: 100 });
  setTimeout(() => { Atomics.store(w, 2, 1); notify(w, 2); }, 20);
  assert.equal(await p, 'ok');
  await assert.rejects(waitAsync(w, 0, 1, 0, { threadSpin: -1 }), { code: 'ERR_INVALID_ARG_VALUE' });
  await assert.rejects(waitAsync(w, 0, 1, 0, { threadSpin: '1' }), { code: 'ERR_INVALID_ARG_TYPE' });
  await assert.rejects(waitAsync(w, 0, 1, 0, { spin: 2e6 }), { code: 'ERR_INVALID_ARG_VALUE' });
  shm.close();
});
