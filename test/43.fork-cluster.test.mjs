// The child_process.fork() and cluster recipes of docs/fork-and-cluster.md, run across real processes
// (test/fixtures/fork-cluster.mjs is the recipe code): anonymous shared memory handed over with
// childOptions(), next to the IPC channel that fork() and cluster need.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fork, spawnSync } from 'node:child_process';
import { SharedMemory } from '../dist/index.js';

const FIXTURE = new URL('./fixtures/fork-cluster.mjs', import.meta.url).pathname;

function runRecipe(mode) {
  const r = spawnSync(process.execPath, [FIXTURE, mode], { encoding: 'utf8', timeout: 60_000, killSignal: 'SIGKILL' });
  if (r.error) throw r.error;
  assert.equal(r.signal, null, `${mode}: killed by ${r.signal} (timed out?); stderr: ${r.stderr}`);
  assert.equal(r.status, 0, `${mode}: exited with ${r.status}; stderr: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1));
}

for (const [mode, how] of [['fork', 'before'], ['fork-ipc-last', 'after']]) {
  test(`fork(): 'ipc' in stdio ${how} the descriptor from childOptions() hands over the memory and keeps the IPC channel`, { timeout: 90_000 }, () => {
    const out = runRecipe(mode);
    assert.equal(out.woken, true, 'the child set the Event in the shared memory');
    assert.equal(out.text, 'HELLO THROUGH FORK', 'the child wrote what it received over IPC into the shared memory');
    assert.deepEqual(out.messages, ['ready', { pid: out.childPid, wrote: 18 }]);
    assert.deepEqual(out.exit, { code: 0, signal: null });
  });
}

test('cluster: setupPrimary({ stdio }) and fork(env) give every worker the same memory', { timeout: 90_000 }, () => {
  const out = runRecipe('cluster');
  assert.equal(out.sum, out.expected, 'Atomics.add of every worker reached one word');
  assert.equal(new Set(out.pids).size, 3);
  assert.deepEqual(out.messages.map((m) => m.pid), out.pids, 'each worker wrote its pid into its own word');
  assert.deepEqual(out.exits, Array(3).fill({ code: 0, signal: null }));
});

test('fork() without \'ipc\' in childOptions()\'s stdio is refused by Node, before any process starts', () => {
  const shm = SharedMemory.anonymous(4096);
  try {
    assert.throws(() => fork(FIXTURE, ['fork', 'child'], shm.childOptions()), { code: 'ERR_CHILD_PROCESS_IPC_REQUIRED' });
    assert.throws(() => fork(FIXTURE, ['fork', 'child'], shm.childOptions({ stdio: 'inherit' })), { code: 'ERR_CHILD_PROCESS_IPC_REQUIRED' });
  } finally {
    shm.close();
  }
});
