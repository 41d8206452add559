#!/usr/bin/env node
/**
 * Diagnostic (not part of `npm run bench`): the async round trip of a channel against the bare
 * waitAsync/notify it is built on, in the same run, between two processes.
 *
 *   node bench/channel/async-ab.mjs [rounds] [runs]
 *
 * raw:  the parent stores k in a shared word and notifies; the child, in waitAsync, answers with k in
 *       another word; the parent waits for it in waitAsync.
 * chan: the same ping-pong with two channels ('async' strategy), sendAsync / receiveAsync of 64 bytes.
 * The difference is what the channel's own async path costs per round trip (on 2026-11-26, with
 * io_uring waits: raw 25 µs, chan 35 µs p50; the JavaScript of the channel path profiles at under
 * 2 µs per side, so most of the gap is not yet explained). MMAPKIT_ASYNC_WAIT=threads compares the
 * waiter-thread path instead.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Channel, SharedMemory, notify, waitAsync } from '../../dist/index.js';

const SELF = fileURLToPath(import.meta.url);
const TIMEOUT_MS = 5000;
const OPTIONS = { capacity: 1024, maxMessageSize: 64 };

async function child(mode, rounds) {
  if (mode === 'raw') {
    const shm = SharedMemory.inherited('a');
    const w = new Int32Array(shm.buffer.buffer, shm.buffer.byteOffset, 64);
    for (let k = 1; k <= rounds; k++) {
      while (Atomics.load(w, 0) !== k) if ((await waitAsync(w, 0, k - 1, TIMEOUT_MS)) === 'timed-out') throw new Error(`no ping ${k}`);
      Atomics.store(w, 16, k);
      notify(w, 16);
    }
  } else {
    const a = Channel.open(SharedMemory.inherited('a'), { wait: 'async' });
    const b = Channel.open(SharedMemory.inherited('b'), { wait: 'async' });
    for (let k = 0; k < rounds; k++) await b.sendAsync(await a.receiveAsync(TIMEOUT_MS), TIMEOUT_MS);
  }
  process.exit(0);
}

async function parent(mode, rounds) {
  const sa = SharedMemory.anonymous(Channel.byteLength(OPTIONS));
  const sb = SharedMemory.anonymous(Channel.byteLength(OPTIONS));
  const w = new Int32Array(sa.buffer.buffer, sa.buffer.byteOffset, 64);
  const a = mode === 'chan' ? Channel.create(sa, { ...OPTIONS, wait: 'async' }) : null;
  const b = mode === 'chan' ? Channel.create(sb, { ...OPTIONS, wait: 'async' }) : null;
  const proc = spawn(process.execPath, [...process.execArgv, SELF, 'child', mode, String(rounds)], sb.childOptions(sa.childOptions({ stdio: 'inherit' }, 'a'), 'b'));
  const exited = new Promise((resolve) => proc.on('exit', resolve));
  const msg = Buffer.alloc(64, 1);
  const times = new Float64Array(rounds);
  for (let k = 1; k <= rounds; k++) {
    const t0 = performance.now();
    if (mode === 'raw') {
      Atomics.store(w, 0, k);
      notify(w, 0);
      while (Atomics.load(w, 16) !== k) if ((await waitAsync(w, 16, k - 1, TIMEOUT_MS)) === 'timed-out') throw new Error(`no pong ${k}`);
    } else {
      await a.sendAsync(msg, TIMEOUT_MS);
      if ((await b.receiveAsync(TIMEOUT_MS)) === null) throw new Error('ended');
    }
    times[k - 1] = performance.now() - t0;
  }
  if ((await exited) !== 0) throw new Error('the child failed');
  times.sort();
  return times[rounds >> 1] * 1000;
}

const [role, ...rest] = process.argv.slice(2);
if (role === 'child') await child(rest[0], Number(rest[1]));
else {
  const rounds = Number(role ?? 20000);
  const runs = Number(rest[0] ?? 3);
  for (let r = 0; r < runs; r++) {
    const raw = await parent('raw', rounds);
    const chan = await parent('chan', rounds);
    console.log(`run ${r + 1}: raw p50 ${raw.toFixed(2)} µs, chan p50 ${chan.toFixed(2)} µs (chan - raw ${(chan - raw).toFixed(2)} µs)`);
  }
}
