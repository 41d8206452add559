// After unmap: every method throws ERR_MMAP_CLOSED, every view is empty, nothing can touch freed memory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, openSync, closeSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { constants, map, mapAnonymous, madvise, mincore, mlock, mprotect, msync, munlock, munmap, pageSize } from '../dist/index.js';
import { runNode, distUrl, tempDir, throwsCode } from './helpers.mjs';

const CLOSED = ['ERR_MMAP_CLOSED', 'MmapkitError'];

test('every method of an unmapped Mapping throws ERR_MMAP_CLOSED', async () => {
  const m = mapAnonymous(2 * pageSize);
  const view = m.buffer;
  m.unmap();
  assert.equal(m.closed, true);
  m.unmap(); // idempotent
  m[Symbol.dispose](); // idempotent too
  munmap(m); // and through the low-level call
  throwsCode(() => m.buffer, ...CLOSED);
  throwsCode(() => m.view(0, 1), ...CLOSED);
  throwsCode(() => m.flush(), ...CLOSED);
  await assert.rejects(m.flushAsync(), { code: 'ERR_MMAP_CLOSED' });
  throwsCode(() => m.protect('read'), ...CLOSED);
  throwsCode(() => m.advise('normal'), ...CLOSED);
  throwsCode(() => m.discard(), ...CLOSED);
  throwsCode(() => m.residency(), ...CLOSED);
  throwsCode(() => m.lock(), ...CLOSED);
  throwsCode(() => m.unlock(), ...CLOSED);
  throwsCode(() => msync(m, 1, constants.MS_SYNC), ...CLOSED);
  throwsCode(() => mprotect(m, 1, constants.PROT_READ), ...CLOSED);
  throwsCode(() => madvise(m, 1, constants.MADV_NORMAL), ...CLOSED);
  throwsCode(() => mincore(m, 1), ...CLOSED);
  throwsCode(() => mlock(m, 1), ...CLOSED);
  throwsCode(() => munlock(m, 1), ...CLOSED);
  throwsCode(() => msync(view, 0, constants.MS_SYNC), ...CLOSED); // a detached view still names its mapping
  assert.equal(m.faulted, false);
  assert.equal(m.length, 2 * pageSize, 'plain properties stay readable');
});

test('views of an unmapped mapping are empty: reads give undefined, methods throw, no crash', () => {
  const m = mapAnonymous(pageSize);
  const b = m.buffer;
  const sub = b.subarray(100, 200);
  const w = m.view(10, 10);
  const i32 = new Int32Array(b.buffer, b.byteOffset, 4);
  const dv = new DataView(b.buffer);
  b.fill(7);
  m.unmap();
  for (const v of [b, sub, w, i32]) assert.equal(v.length, 0);
  assert.equal(b[0], undefined);
  b[0] = 1; // a write to a detached view goes nowhere
  assert.equal(b[0], undefined);
  assert.throws(() => b.readUInt32LE(0), RangeError);
  assert.equal(b.write('x', 0), 0, 'nothing written');
  assert.throws(() => b.fill(1), TypeError);
  assert.equal(Buffer.from('abcd').copy(b), 0);
  assert.equal(b.indexOf(7), -1);
  assert.throws(() => Atomics.load(i32, 0), (e) => e instanceof TypeError || e instanceof RangeError);
  assert.throws(() => dv.getUint8(0), TypeError);
  assert.equal(b.toString(), '');
  assert.throws(() => [...sub], TypeError);
});

test('access past the end of a view is bounds-checked', (t) => {
  const file = join(tempDir(t), 'end.bin');
  writeFileSync(file, Buffer.alloc(100, 3));
  const m = map(file);
  const b = m.buffer;
  assert.equal(b.length, 100);
  assert.equal(b[100], undefined);
  assert.equal(b[pageSize - 1], undefined, 'the rest of the last page is not reachable');
  assert.throws(() => b.readUInt8(100), { code: 'ERR_OUT_OF_RANGE' });
  assert.throws(() => b.readBigUInt64LE(95), { code: 'ERR_OUT_OF_RANGE' });
  assert.equal(b.subarray(90, 500).length, 10);
  m.unmap();
});

test('unmap during flushAsync keeps the memory until the flush settles', async (t) => {
  const file = join(tempDir(t), 'fa.bin');
  writeFileSync(file, Buffer.alloc(64 * pageSize));
  const m = map(file, { access: 'write' });
  m.buffer.fill(1);
  const p = m.flushAsync();
  m.unmap();
  await p;
  assert.equal(m.closed, true);
});

test('a mapping is unmapped by the garbage collector only when neither it nor a view is reachable', (t) => {
  const file = join(tempDir(t), 'gc.bin');
  writeFileSync(file, Buffer.alloc(pageSize, 65));
  const code = `
    import { map } from ${JSON.stringify(distUrl)};
    import { readFileSync } from 'node:fs';
    const file = process.argv[1];
    const mapped = () => readFileSync('/proc/self/maps', 'utf8').split('\\n').filter((l) => l.endsWith(' ' + file)).length;
    const settle = async () => { for (let i = 0; i < 5; i++) { globalThis.gc(); await new Promise((r) => setTimeout(r, 10)); } };
    let keep = (() => map(file).buffer.subarray(1, 2))(); // the Mapping object is dropped at once
    await settle();
    const whileViewAlive = mapped();
    const byte = keep[0];
    keep = null;
    await settle();
    const afterDrop = mapped();
    for (let i = 0; i < 1000; i++) map(file); // churn: each dropped mapping must be released
    await settle();
    console.log(JSON.stringify({ whileViewAlive, byte, afterDrop, afterChurn: mapped() }));
  `;
  const r = runNode(code, { args: [file], nodeArgs: ['--expose-gc'] });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.equal(out.whileViewAlive, 1, 'a live view keeps its mapping');
  assert.equal(out.byte, 65, 'and its memory readable');
  assert.equal(out.afterDrop, 0, 'dropped mapping is unmapped');
  assert.ok(out.afterChurn < 50, `churned mappings are released (still mapped: ${out.afterChurn})`);
});

test('closing the fd, then the file being replaced, leaves the mapping valid', (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'r.bin');
  writeFileSync(file, Buffer.alloc(pageSize, 1));
  const fd = openSync(file, 'r+');
  const m = map(fd, { access: 'write' });
  closeSync(fd);
  writeFileSync(file + '.new', 'x');
  const fd2 = openSync(file, 'r+');
  writeSync(fd2, Buffer.from([9]), 0, 1, 0);
  closeSync(fd2);
  assert.equal(m.buffer[0], 9);
  m.unmap();
});

test('a worker thread maps the same file; its mappings are released when it exits', async (t) => {
  const { Worker } = await import('node:worker_threads');
  const { readFileSync } = await import('node:fs');
  const file = join(tempDir(t), 'worker.bin');
  writeFileSync(file, Buffer.alloc(pageSize));
  const count = () => readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.endsWith(' ' + file)).length;
  const main = map(file, { access: 'write' });
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    import(workerData.dist).then(({ map }) => {
      globalThis.keep = [];
      for (let i = 0; i < 20; i++) keep.push(map(workerData.file, { access: 'write' }));
      keep[0].buffer.write('from the worker');
      parentPort.postMessage('written');
      parentPort.once('message', () => {}); // stay alive until terminated
    });`;
  const w = new Worker(code, { eval: true, workerData: { file, dist: distUrl } });
  const timer = setTimeout(() => w.terminate(), 20_000);
  const msg = await new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject); });
  assert.equal(msg, 'written');
  assert.equal(main.buffer.toString('latin1', 0, 15), 'from the worker');
  assert.equal(count(), 21);
  await w.terminate();
  clearTimeout(timer);
  assert.equal(count(), 1, 'the worker did not unmap, but its mappings went with it');
  assert.equal(main.buffer.toString('latin1', 0, 15), 'from the worker');
  main.unmap();
});

test('an fs.write in flight when its view is unmapped never writes another mapping\'s bytes', async (t) => {
  const { open } = await import('node:fs/promises');
  const dir = tempDir(t);
  const a = join(dir, 'a.bin');
  const b = join(dir, 'b.bin');
  const size = 256 * 1024;
  writeFileSync(a, Buffer.alloc(size, 0x41));
  writeFileSync(b, Buffer.alloc(size, 0x42));
  const out = await open(join(dir, 'out.bin'), 'w+');
  let efault = 0;
  let ok = 0;
  for (let i = 0; i < 200; i++) {
    const m = map(a);
    const pending = out.write(m.buffer, 0, size, i * size).then(() => ok++, (e) => { assert.equal(e.code, 'EFAULT'); efault++; });
    m.unmap(); // while the libuv thread may not have read the memory yet
    const other = map(b); // would likely land on the same addresses if they were free
    await pending;
    other.unmap();
  }
  const data = Buffer.alloc(size);
  for (let i = 0; i < 200; i++) {
    const { bytesRead } = await out.read(data, 0, size, i * size);
    assert.equal(data.subarray(0, bytesRead).includes(0x42), false, `write ${i} contains bytes of the other mapping`);
  }
  await out.close();
  assert.equal(ok + efault, 200);
});

// An argument whose getter unmaps the memory (CPython gh-103987): every method reads and validates
// its arguments before it checks the state, so the call is ERR_MMAP_CLOSED, never a system call on
// the reserved placeholder that the addresses become after unmap().
test('a range getter that unmaps: every range method says ERR_MMAP_CLOSED and touches nothing', async () => {
  const calls = {
    flush: (m, r) => m.flush(r),
    flushAsync: (m, r) => m.flushAsync(r),
    advise: (m, r) => m.advise('willneed', r),
    discard: (m, r) => m.discard(r),
    residency: (m, r) => m.residency(r),
    lock: (m, r) => m.lock(r),
    unlock: (m, r) => m.unlock(r),
  };
  for (const [name, call] of Object.entries(calls)) {
    for (const key of ['offset', 'length']) {
      const m = mapAnonymous(4 * pageSize, { shared: true });
      m.buffer[0] = 1;
      let read = 0;
      const range = { get [key]() { read++; m.unmap(); return key === 'offset' ? 0 : pageSize; } };
      let err;
      try {
        await call(m, range);
      } catch (e) {
        err = e;
      }
      assert.equal(err?.code, 'ERR_MMAP_CLOSED', `${name} with a ${key} getter that unmaps: ${err?.code ?? 'no error'}: ${err?.message}`);
      assert.equal(read, 1, `${name} reads range.${key} once`);
      assert.equal(m.closed, true);
    }
  }
  // The same getter on a live mapping is still used as the range (read once, validated).
  const m = mapAnonymous(4 * pageSize, { shared: true });
  m.buffer.fill(1);
  let reads = 0;
  assert.deepEqual([...m.residency({ get length() { reads++; return 2 * pageSize; } })], [1, 1]);
  assert.equal(reads, 1);
  m.unmap();
});

test('an option getter that unmaps: waitAsync, Semaphore/Event waitAsync, Mutex.lockAsync, Channel.sendMany give ERR_MMAP_CLOSED', async () => {
  const { SharedMemory, Semaphore, Event, Mutex, Channel, waitAsync } = await import('../dist/index.js');
  const cases = {
    waitAsync: (shm, opts) => waitAsync(new Int32Array(shm.buffer.buffer, shm.buffer.byteOffset + 256, 1), 0, 0, 5000, opts),
    'semaphore.waitAsync': (shm, opts) => Semaphore.create(shm, 0).waitAsync(5000, opts),
    'event.waitAsync': (shm, opts) => Event.create(shm, 0).waitAsync(5000, opts),
    'mutex.lockAsync': (shm, opts) => Mutex.create(shm, 0).lockAsync(5000, opts),
  };
  for (const [name, call] of Object.entries(cases)) {
    for (const key of ['signal', 'ref', 'spin', 'threadSpin']) {
      const shm = SharedMemory.anonymous(4096);
      const opts = { get [key]() { shm.close(); return undefined; } };
      const err = await Promise.resolve().then(() => call(shm, opts)).then(() => undefined, (e) => e);
      assert.equal(err?.code, 'ERR_MMAP_CLOSED', `${name} with an options.${key} getter that unmaps: ${err?.code ?? 'no error'}: ${err?.message}`);
    }
  }
  // Channel: an element getter that unmaps, and an options getter that closes the channel.
  for (const method of ['sendMany', 'sendManyAsync', 'trySendMany']) {
    const shm = SharedMemory.anonymous(Channel.byteLength({ capacity: 8, maxMessageSize: 64 }));
    const ch = Channel.create(shm, { capacity: 8, maxMessageSize: 64 });
    const messages = ['a', 'b'];
    Object.defineProperty(messages, 1, { get() { shm.close(); return 'b'; } });
    const err = await Promise.resolve().then(() => ch[method](messages)).then(() => undefined, (e) => e);
    assert.equal(err?.code, 'ERR_MMAP_CLOSED', `${method} with an element getter that unmaps: ${err?.code ?? 'no error'}: ${err?.message}`);
  }
  const args = {
    receiveInto: [Buffer.alloc(64), new Uint32Array(4)],
    receiveIntoAsync: [Buffer.alloc(64), new Uint32Array(4)],
    drain: [() => {}, 4],
    drainAsync: [() => {}, 4],
  };
  for (const method of ['send', 'sendAsync', 'receive', 'receiveAsync', 'reserve', 'receiveInPlace', 'receiveInto', 'receiveIntoAsync', 'drain', 'drainAsync']) {
    const shm = SharedMemory.anonymous(Channel.byteLength({ capacity: 8, maxMessageSize: 64 }));
    const ch = Channel.create(shm, { capacity: 8, maxMessageSize: 64 });
    const opts = { get timeout() { ch.close(); shm.close(); return 1000; } };
    const err = await Promise.resolve().then(() => (method.startsWith('send') ? ch[method]('x', opts) : ch[method](...(args[method] ?? []), opts))).then(() => undefined, (e) => e);
    assert.equal(err?.code, 'ERR_MMAP_CLOSED', `${method} with an options.timeout getter that closes: ${err?.code ?? 'no error'}: ${err?.message}`);
  }
});

test("Channel: a drain() handler that unmaps the channel's memory: the call returns what it handled or ERR_MMAP_CLOSED, and the handle then says closed memory", async () => {
  const { SharedMemory, Channel } = await import('../dist/index.js');
  const opts = { capacity: 8, maxMessageSize: 64, maxProducers: 1 };
  for (const form of ['drain', 'drainAsync']) {
    const shm = SharedMemory.anonymous(Channel.byteLength(opts));
    const ch = Channel.create(shm, opts);
    ch.sendMany(['m0', 'm1', 'm2']);
    let calls = 0;
    const outcome = await Promise.resolve().then(() => ch[form](() => {
      calls++;
      shm.close(); // the memory goes, the handle stays open
    }, 10, 1000)).then((n) => n, (e) => e);
    assert.ok(outcome === 1 || outcome?.code === 'ERR_MMAP_CLOSED', `${form}: ${outcome?.stack ?? outcome}`);
    assert.equal(calls, 1, 'no handler call after the memory was gone');
    throwsCode(() => ch.receive(0), ...CLOSED);
    ch.close();
  }
});

/**
 * 5 waiting messages of 2 bytes (sent by `tx`), and a handle `rx` that has taken nothing yet.
 * `queued()` (bytes in the lane, from `Channel.inspect()`) and `reader()` (the lane's LANE_READER word)
 * tell whether anything was taken, or the lane is held.
 */
async function fiveWaiting() {
  const { SharedMemory, Channel, CHANNEL } = await import('../dist/index.js');
  const opts = { capacity: 8, maxMessageSize: 64, maxProducers: 1 };
  const shm = SharedMemory.anonymous(Channel.byteLength(opts));
  const tx = Channel.create(shm, opts);
  tx.sendMany(['m0', 'm1', 'm2', 'm3', 'm4']);
  const rx = Channel.open(shm);
  const queued = () => Channel.inspect(shm).producers[0].queuedBytes;
  const reader = () => shm.buffer.readInt32LE(shm.buffer.readUInt32LE(CHANNEL.LANES_OFFSET) + CHANNEL.LANE_READER);
  return { Channel, shm, tx, rx, queued, reader, full: queued() };
}

/**
 * `lengths` arrays that receiveInto() refuses: an Array with an element setter that runs `during` (user
 * code that would run in the middle of the copy, with a lane held), a plain Array, an array-like object
 * with a setter, and typed arrays of the wrong kind. Only a Uint32Array, Int32Array or Float64Array is
 * accepted.
 */
function refusedLengths(during) {
  const withSetter = [0, 0, 0, 0, 0, 0];
  Object.defineProperty(withSetter, 0, { get: () => 2, set: during });
  const arrayLike = { length: 6 };
  Object.defineProperty(arrayLike, 0, { get: () => 2, set: during });
  return [
    ['an Array with an element setter', withSetter],
    ['a plain Array', [0, 0, 0, 0, 0, 0]],
    ['an array-like object with an element setter', arrayLike],
    ['a Uint8Array', new Uint8Array(6)],
    ['a Uint16Array', new Uint16Array(6)],
    ['a Float32Array', new Float32Array(6)],
    ['a BigUint64Array', new BigUint64Array(6)],
  ];
}

/** receiveInto() or receiveIntoAsync() (a rejection, not a throw): the error, or what it returned. */
async function receiveIntoOutcome(rx, method, lengths) {
  try {
    return { n: await rx[method](Buffer.alloc(64), lengths, 1000) };
  } catch (err) {
    return { err };
  }
}

test('Channel: receiveInto() into an Array `lengths` whose element setter unmaps the memory: ERR_INVALID_ARG_TYPE before anything is taken, nothing unmapped', async () => {
  for (const method of ['receiveInto', 'receiveIntoAsync']) {
    let calls = 0;
    const ctx = await fiveWaiting();
    for (const [what, lengths] of refusedLengths(() => {
      calls++;
      ctx.shm.close();
    })) {
      const { err, n } = await receiveIntoOutcome(ctx.rx, method, lengths);
      assert.equal(err?.code, 'ERR_INVALID_ARG_TYPE', `${method} into ${what}: returned ${n}, or threw: ${err?.stack}`);
      assert.equal(err.name, 'TypeError');
      assert.equal(calls, 0, `${method} into ${what}: the setter ran`);
      assert.equal(ctx.shm.closed, false, `${method} into ${what}: the memory was unmapped`);
      assert.equal(ctx.rx.closed, false, `${method} into ${what}: the handle was closed`);
      assert.deepEqual([ctx.queued(), ctx.reader()], [ctx.full, 0], `${method} into ${what}: something was taken, or the lane is held`);
    }
    // The messages are all there for another consumer, and the refusing handle still receives.
    const other = ctx.Channel.open(ctx.shm);
    assert.deepEqual(other.tryReceiveMany(3).map(String), ['m0', 'm1', 'm2']);
    const target = Buffer.alloc(64);
    const lengths = new Uint32Array(4);
    assert.equal(await ctx.rx[method](target, lengths, 1000), 2);
    assert.deepEqual([target.toString('latin1', 0, 4), Array.from(lengths.subarray(0, 2))], ['m3m4', [2, 2]]);
    for (const h of [other, ctx.rx, ctx.tx, ctx.shm]) h.close();
  }
});

test('Channel: a receiveInto() Array `lengths` whose element setter closes the handle: refused with ERR_INVALID_ARG_TYPE, the handle stays open, every message is delivered once', async () => {
  for (const method of ['receiveInto', 'receiveIntoAsync']) {
    const ctx = await fiveWaiting();
    const byOther = [];
    let other;
    let calls = 0;
    // The setter would close the handle and let another consumer of this process take what the lane holds.
    for (const [what, lengths] of refusedLengths(() => {
      calls++;
      other ??= ctx.Channel.open(ctx.shm);
      ctx.rx.close();
      for (let m; (m = other.tryReceive()) !== undefined;) byOther.push(String(m));
    })) {
      const { err, n } = await receiveIntoOutcome(ctx.rx, method, lengths);
      assert.equal(err?.code, 'ERR_INVALID_ARG_TYPE', `${method} into ${what}: returned ${n}, or threw: ${err?.stack}`);
      assert.equal(calls, 0, `${method} into ${what}: the setter ran`);
      assert.equal(ctx.rx.closed, false, `${method} into ${what}: the handle was closed`);
      assert.deepEqual([ctx.queued(), ctx.reader()], [ctx.full, 0], `${method} into ${what}: something was taken, or the lane is held`);
    }
    assert.equal(other, undefined);
    // Each message exactly once: the refusing handle takes them all with a typed array.
    const target = Buffer.alloc(64);
    const lengths = new Float64Array(8);
    assert.equal(await ctx.rx[method](target, lengths, 1000), 5);
    assert.deepEqual([target.toString('latin1', 0, 10), Array.from(lengths.subarray(0, 5))], ['m0m1m2m3m4', [2, 2, 2, 2, 2]]);
    assert.equal(ctx.rx.tryReceive(), undefined);
    for (const h of [ctx.rx, ctx.tx, ctx.shm]) h.close();
  }
});

// A Proxy of a Uint32Array passes `instanceof Uint32Array`, and its set trap is user code that runs in the
// middle of the copy, with the lane held: unmapping there gives a raw TypeError from Atomics.store, and
// closing the handle there (close() lets go of the lane without storing LANE_READ) lets another consumer
// take the same messages that receiveInto() then returns too.
test(
  'Channel: a receiveInto() `lengths` that is a Proxy of a Uint32Array is refused like an Array (its set trap would run in the middle of the copy)',
  async () => {
    for (const action of ['unmap', 'close']) {
      const ctx = await fiveWaiting();
      let other;
      const byOther = [];
      let calls = 0;
      const lengths = new Proxy(new Uint32Array(6), {
        get: (t, k) => (typeof t[k] === 'function' ? t[k].bind(t) : t[k]),
        set(t, k, v) {
          t[k] = v;
          if (calls++ === 0 && action === 'unmap') ctx.shm.close();
          if (calls === 1 && action === 'close') {
            other = ctx.Channel.open(ctx.shm);
            ctx.rx.close();
            for (let m; (m = other.tryReceive()) !== undefined;) byOther.push(String(m));
          }
          return true;
        },
      });
      const { err, n } = await receiveIntoOutcome(ctx.rx, 'receiveInto', lengths);
      assert.equal(err?.code, 'ERR_INVALID_ARG_TYPE', `${action}: returned ${n} (the other consumer took ${JSON.stringify(byOther)}), or threw: ${err?.stack}`);
      assert.equal(calls, 0);
      for (const h of [other, ctx.rx, ctx.tx, ctx.shm]) h?.close();
    }
  },
);
