// Shared memory objects: named (shm_open) and anonymous (memfd) handed to children; no leaks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { SharedMemory, SHM_NAME_MAX, INHERIT_ENV } from '../dist/index.js';
import { assertOk, distUrl, startNode, throwsCode, uniqueName } from './helpers.mjs';

const CHILD = new URL('./fixtures/sync-child.mjs', import.meta.url).pathname;
const uniq = uniqueName;

function runChild(args, options = {}) {
  const r = spawnSync(process.execPath, [CHILD, ...args], { encoding: 'utf8', timeout: 20_000, ...options });
  if (r.error) throw r.error;
  return r;
}

test('create is exclusive with mode 0o600; open sees the same memory; unlink removes the name', (t) => {
  const name = uniq('basic');
  t.after(() => { try { SharedMemory.unlink(name); } catch {} });
  const a = SharedMemory.create(name, 10_000);
  assert.equal(a.name, `/${name}`);
  assert.equal(a.size, 10_000);
  assert.equal(statSync(`/dev/shm/${name}`).mode & 0o777, 0o600);
  throwsCode(() => SharedMemory.create(name, 10), 'EEXIST', 'Error', { syscall: 'shm_open', path: `/${name}` });
  const b = SharedMemory.open(`/${name}`);
  a.buffer.write('same memory');
  assert.equal(b.buffer.toString('latin1', 0, 11), 'same memory');
  const ro = SharedMemory.open(name, { access: 'read' });
  assert.equal(ro.buffer.toString('latin1', 0, 11), 'same memory');
  throwsCode(() => ro.resize(20_000), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  SharedMemory.unlink(name);
  assert.equal(existsSync(`/dev/shm/${name}`), false);
  throwsCode(() => SharedMemory.open(name), 'ENOENT', 'Error', { syscall: 'shm_open' });
  throwsCode(() => SharedMemory.unlink(name), 'ENOENT', 'Error', { syscall: 'shm_unlink' });
  a.buffer.write('still usable after unlink');
  assert.equal(b.buffer.toString('latin1', 0, 25), 'still usable after unlink');
  for (const s of [a, b, ro]) s.close();
});

test('create with exclusive: false reuses, and a custom mode applies', (t) => {
  const name = uniq('reuse');
  t.after(() => { try { SharedMemory.unlink(name); } catch {} });
  const a = SharedMemory.create(name, 4096, { mode: 0o640 });
  assert.equal(statSync(`/dev/shm/${name}`).mode & 0o777, 0o640);
  a.buffer.write('kept');
  // Reusing it takes a mode that lets in its group too (the default 0o600 would refuse it: 44.shm-ownership).
  throwsCode(() => SharedMemory.create(name, 8192, { exclusive: false }), 'ERR_MMAP_UNSAFE_PERMISSIONS', 'MmapkitError');
  const b = SharedMemory.create(name, 8192, { exclusive: false, mode: 0o640 });
  assert.equal(b.size, 8192, 'grown to the asked size');
  assert.equal(b.buffer.toString('latin1', 0, 4), 'kept');
  const c = SharedMemory.create(name, 100, { exclusive: false, mode: 0o660 });
  assert.equal(c.size, 8192, 'never shrunk');
  for (const s of [a, b, c]) s.close();
});

test('resize and refresh', (t) => {
  const name = uniq('resize');
  t.after(() => { try { SharedMemory.unlink(name); } catch {} });
  const a = SharedMemory.create(name, 4096);
  const b = SharedMemory.open(name);
  const old = a.buffer;
  a.buffer.write('data');
  a.resize(3 * 4096);
  assert.equal(old.length, 0, 'views of the old mapping are detached');
  assert.equal(a.size, 3 * 4096);
  assert.equal(a.buffer.toString('latin1', 0, 4), 'data');
  assert.equal(b.size, 4096);
  assert.equal(b.refresh(), true);
  assert.equal(b.size, 3 * 4096);
  assert.equal(b.refresh(), false);
  a.close();
  b.close();
});

test('names are validated', () => {
  for (const bad of ['', '/', 'a/b', '/a/b', '.', '..', '/..', 'x\0y', 'x'.repeat(SHM_NAME_MAX + 1)]) {
    throwsCode(() => SharedMemory.create(bad, 1), 'ERR_INVALID_ARG_VALUE', 'TypeError');
    throwsCode(() => SharedMemory.open(bad), 'ERR_INVALID_ARG_VALUE', 'TypeError');
    throwsCode(() => SharedMemory.unlink(bad), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  }
  for (const bad of [undefined, null, 5, {}, Buffer.from('x')]) {
    throwsCode(() => SharedMemory.create(bad, 1), 'ERR_INVALID_ARG_TYPE', 'TypeError');
    throwsCode(() => SharedMemory.open(bad), 'ERR_INVALID_ARG_TYPE', 'TypeError');
    throwsCode(() => SharedMemory.unlink(bad), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  }
  const longest = 'y'.repeat(SHM_NAME_MAX);
  SharedMemory.create(longest, 1).close();
  SharedMemory.unlink(longest);
});

test('bad sizes, options and descriptors', () => {
  const name = uniq('bad');
  for (const size of [0, -1, 1.5, NaN, 2 ** 53]) throwsCode(() => SharedMemory.create(name, size), 'ERR_OUT_OF_RANGE', 'RangeError');
  throwsCode(() => SharedMemory.create(name, '1'), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  throwsCode(() => SharedMemory.create(name, 1, { mod: 1 }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  throwsCode(() => SharedMemory.create(name, 1, { mode: 0o1777 }), 'ERR_OUT_OF_RANGE', 'RangeError');
  throwsCode(() => SharedMemory.create(name, 1, { exclusive: 'yes' }), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  throwsCode(() => SharedMemory.open(name, { access: 'copy' }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  throwsCode(() => SharedMemory.anonymous(0), 'ERR_OUT_OF_RANGE', 'RangeError');
  throwsCode(() => SharedMemory.anonymous('1'), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  throwsCode(() => SharedMemory.fromFd(-1), 'ERR_OUT_OF_RANGE', 'RangeError');
  throwsCode(() => SharedMemory.fromFd('3'), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  throwsCode(() => SharedMemory.fromFd(99999), 'EBADF', 'Error', { syscall: 'fcntl' });
  throwsCode(() => SharedMemory.inherited('nothing-here'), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  throwsCode(() => SharedMemory.inherited(5), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  assert.equal(existsSync(`/dev/shm/${name}`), false, 'nothing was created by bad calls');
  const a = SharedMemory.anonymous(16);
  throwsCode(() => a.childOptions({ stdio: 5 }), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  throwsCode(() => a.childOptions({}, ''), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  throwsCode(() => a.resize(0), 'ERR_OUT_OF_RANGE', 'RangeError');
  throwsCode(() => a.unlink(), 'ERR_INVALID_STATE', 'Error');
  a.close();
});

test('a create that fails at any step leaves no name behind (a retry gets the same error, not EEXIST)', (t) => {
  const name = uniq('huge');
  t.after(() => { try { SharedMemory.unlink(name); } catch {} });
  const huge = 2 ** 53 - 1; // ftruncate makes an 8 PiB sparse object; mmap of it fails with ENOMEM
  for (let attempt = 0; attempt < 2; attempt++) {
    throwsCode(() => SharedMemory.create(name, huge), 'ENOMEM', 'Error', { syscall: 'mmap' });
    assert.equal(existsSync(`/dev/shm/${name}`), false, `attempt ${attempt}: the failed create removed its name`);
  }
  // Without `exclusive` on an object that exists already, a failure leaves that object alone.
  const other = SharedMemory.create(name, 4096);
  other.buffer.write('kept');
  throwsCode(() => SharedMemory.create(name, huge, { exclusive: false }), 'ENOMEM', 'Error', { syscall: 'mmap' });
  assert.equal(existsSync(`/dev/shm/${name}`), true, 'an object this call did not create is never unlinked');
  other.close();
  SharedMemory.unlink(name);
  // And a non-exclusive create that makes the object removes it when mapping fails.
  throwsCode(() => SharedMemory.create(name, huge, { exclusive: false }), 'ENOMEM', 'Error', { syscall: 'mmap' });
  assert.equal(existsSync(`/dev/shm/${name}`), false);
});

test('childOptions reads its options before it checks the handle: a getter that closes it gives ERR_MMAP_CLOSED', () => {
  for (const key of ['stdio', 'env', 'cwd']) {
    const a = SharedMemory.anonymous(16);
    const options = { get [key]() { a.close(); return undefined; } };
    throwsCode(() => a.childOptions(options), 'ERR_MMAP_CLOSED', 'MmapkitError');
  }
});

test('every method of a closed SharedMemory throws ERR_MMAP_CLOSED', () => {
  const a = SharedMemory.anonymous(4096);
  const view = a.buffer;
  a.close();
  a.close(); // idempotent
  a[Symbol.dispose]();
  assert.equal(a.closed, true);
  assert.equal(view.length, 0);
  for (const fn of [() => a.fd, () => a.mapping, () => a.buffer, () => a.size, () => a.resize(1), () => a.refresh(), () => a.childOptions()]) {
    throwsCode(fn, 'ERR_MMAP_CLOSED', 'MmapkitError');
  }
});

test('an empty object (created but not yet sized by someone else) is a clear error', (t) => {
  const name = uniq('empty');
  t.after(() => { try { SharedMemory.unlink(name); } catch {} });
  const r = spawnSync('sh', ['-c', `umask 077 && : > /dev/shm/${name}`]); // 0600: nothing else to refuse
  assert.equal(r.status, 0);
  throwsCode(() => SharedMemory.open(name), 'ERR_MMAP_EMPTY_FILE', 'MmapkitError');
});

test('anonymous memory reaches a child through spawn options, and only that child', () => {
  const a = SharedMemory.anonymous(8192);
  const r = runChild(['write-greeting'], a.childOptions({ stdio: ['ignore', 'pipe', 'pipe'] }));
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { size: 8192 });
  assert.match(a.buffer.toString('latin1', 0, 40), /^hello from child \d+/);
  // A child started without the options gets neither the descriptor nor the variable.
  const other = runChild(['list-fds'], { stdio: ['ignore', 'pipe', 'pipe'] });
  assert.equal(other.status, 0, other.stderr);
  assert.deepEqual(JSON.parse(other.stdout), [], 'no memfd or /dev/shm descriptor leaked');
  a.close();
});

test('two objects handed to one child under two keys, with fork-style stdio', () => {
  const a = SharedMemory.anonymous(4096);
  const b = SharedMemory.anonymous(4096);
  const opts = b.childOptions(a.childOptions({ stdio: 'pipe' }, 'first'), 'second');
  assert.equal(opts.stdio.length, 5);
  assert.deepEqual(JSON.parse(opts.env[INHERIT_ENV]), { first: 3, second: 4 });
  const r1 = runChild(['write-greeting', 'second'], { ...opts, encoding: 'utf8' });
  assert.equal(r1.status, 0, r1.stderr);
  assert.match(b.buffer.toString('latin1', 0, 16), /^hello from child/);
  assert.equal(a.buffer[0], 0, 'the other key was not touched');
  a.close();
  b.close();
});

test('an async child process: the parent sees the write', async (t) => {
  const a = SharedMemory.anonymous(4096);
  assertOk(await startNode([CHILD, 'write-greeting'], 'write-greeting', { t, timeout: 20_000, spawnOptions: a.childOptions() }).done, /.*/);
  assert.match(a.buffer.toString('latin1', 0, 16), /^hello from child/);
  a.close();
});

test('worker threads attach by name and by descriptor', async (t) => {
  const name = uniq('worker');
  t.after(() => { try { SharedMemory.unlink(name); } catch {} });
  const named = SharedMemory.create(name, 4096);
  const anon = SharedMemory.anonymous(4096);
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    import(workerData.dist).then(({ SharedMemory }) => {
      const a = SharedMemory.open(workerData.name);
      a.buffer.write('named from worker');
      const b = SharedMemory.fromFd(workerData.fd);
      b.buffer.write('fd from worker');
      a.close(); b.close();
      parentPort.postMessage('done');
    }, (e) => parentPort.postMessage(String(e)));`;
  const w = new Worker(code, { eval: true, workerData: { name, fd: anon.fd, dist: distUrl } });
  const timer = setTimeout(() => w.terminate(), 20_000);
  const msg = await new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject); });
  clearTimeout(timer);
  await w.terminate();
  assert.equal(msg, 'done');
  assert.equal(named.buffer.toString('latin1', 0, 17), 'named from worker');
  assert.equal(anon.buffer.toString('latin1', 0, 14), 'fd from worker');
  assert.doesNotThrow(() => anon.fd, 'the worker closed its duplicate, not ours');
  named.close();
  anon.close();
});

test('no leaks: 10,000 create/remove cycles leave /dev/shm, descriptors and mappings as they were', () => {
  const count = () => ({
    shm: readdirSync('/dev/shm').filter((n) => n.startsWith(`mmapkit-test-leak-${process.pid}`)).length,
    fds: readdirSync('/proc/self/fd').length,
    maps: readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes('/dev/shm/') || l.includes('memfd:')).length,
  });
  const before = count();
  const base = `mmapkit-test-leak-${process.pid}`;
  for (let i = 0; i < 10_000; i++) {
    const name = `${base}-${i % 7}`;
    const s = SharedMemory.create(name, 4096 * (1 + (i % 3)));
    s.buffer[i % 4096] = i & 0xff;
    if (i % 2 === 0) s.unlink();
    s.close();
    if (i % 2 === 1) SharedMemory.unlink(name);
    if (i % 10 === 0) SharedMemory.anonymous(4096).close();
  }
  assert.deepEqual(count(), before);
});

test('childOptions does not pass on entries this process inherited from its own parent', () => {
  const saved = process.env[INHERIT_ENV];
  process.env[INHERIT_ENV] = JSON.stringify({ a: 3, default: 4 });
  try {
    const s = SharedMemory.anonymous(4096);
    const opts = s.childOptions({ stdio: 'ignore' }, 'mine');
    assert.deepEqual(JSON.parse(opts.env[INHERIT_ENV]), { mine: 3 });
    const chained = s.childOptions(opts, 'again');
    assert.deepEqual(JSON.parse(chained.env[INHERIT_ENV]), { mine: 3, again: 4 });
    s.close();
  } finally {
    if (saved === undefined) delete process.env[INHERIT_ENV];
    else process.env[INHERIT_ENV] = saved;
  }
});

test('a SharedMemory dropped without close() gives its descriptor back to the garbage collector', async () => {
  const { runNode, distUrl } = await import('./helpers.mjs');
  const r = runNode(`
    import { SharedMemory } from ${JSON.stringify(distUrl)};
    import { readdirSync } from 'node:fs';
    const fds = () => readdirSync('/proc/self/fd').length;
    const before = fds();
    for (let i = 0; i < 200; i++) SharedMemory.anonymous(4096);
    for (let i = 0; i < 5; i++) { globalThis.gc(); await new Promise((r) => setTimeout(r, 10)); }
    console.log(fds() - before);
  `, { nodeArgs: ['--expose-gc'] });
  assert.equal(r.status, 0, r.stderr);
  assert.ok(Number(r.stdout) < 10, `descriptors left open: ${r.stdout}`);
});

test('inherited() takes the inherited descriptor itself: close() releases it, a second attach is refused', () => {
  const a = SharedMemory.anonymous(4096);
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', `
    import { SharedMemory } from ${JSON.stringify(distUrl)};
    import { readdirSync, readlinkSync } from 'node:fs';
    const memfds = () => readdirSync('/proc/self/fd').filter((fd) => { try { return readlinkSync('/proc/self/fd/' + fd).includes('memfd:'); } catch { return false; } }).length;
    const before = memfds();
    const shm = SharedMemory.inherited();
    let again;
    try { SharedMemory.inherited(); again = 'attached twice'; } catch (e) { again = e.code; }
    const extra = SharedMemory.fromFd(shm.fd);
    extra.close();
    shm.close();
    console.log(JSON.stringify({ before, after: memfds(), fd: shm.closed, again }));
  `], { ...a.childOptions({ stdio: ['ignore', 'pipe', 'pipe'] }), encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { before: 1, after: 0, fd: true, again: 'ERR_INVALID_STATE' });
  a.close();
});
