// mapping.resize(newLength[, options]): mremap with the file grown first, views detached, the SIGBUS
// guard's registry following the move, and the refusals (busy, bad input, private growth past the end).
import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync, renameSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Event, Mutex, constants, map, mapAnonymous, mappingCount, msync, notify, pageSize, wait } from '../dist/index.js';
import { distUrl, runNode, tempDir, throwsCode, timedTests } from './helpers.mjs';

const test = timedTests(60_000);

test('anonymous memory grows and shrinks: content kept, new bytes zero, old views detached', () => {
  const m = mapAnonymous(pageSize);
  const before = mappingCount();
  m.buffer.fill(7);
  const old = m.buffer;
  const sub = old.subarray(10, 20);
  m.resize(64 * pageSize + 3);
  assert.equal(m.length, 64 * pageSize + 3);
  assert.equal(old.length, 0, 'the old buffer is detached');
  assert.equal(sub.length, 0, 'and its subarrays');
  assert.equal(m.buffer.length, m.length, 'buffer sees the new length');
  assert.equal(m.buffer[pageSize - 1], 7);
  assert.equal(m.buffer[pageSize], 0);
  assert.equal(m.buffer[m.length - 1], 0);
  m.buffer[m.length - 1] = 5;
  assert.equal(mappingCount(), before, 'a resize makes no new mapping');
  m.resize(100);
  assert.equal(m.buffer.length, 100);
  assert.equal(m.buffer[99], 7);
  assert.throws(() => m.view(0, 101), { code: 'ERR_OUT_OF_RANGE' });
  assert.equal(mappingCount(), before);
  m.unmap();
  assert.equal(mappingCount(), before - 1);
});

test('a shared file mapping grows its file; another process sees it; shrinking leaves the file unless asked', (t) => {
  const file = join(tempDir(t), 'log.bin');
  writeFileSync(file, Buffer.alloc(100, 1));
  const m = map(file, { access: 'write' });
  const old = m.buffer;
  m.resize(3 * pageSize + 1);
  assert.equal(statSync(file).size, 3 * pageSize + 1, 'ftruncate grew the file');
  assert.equal(old.length, 0);
  assert.equal(m.buffer[99], 1);
  assert.equal(m.buffer[100], 0, 'new bytes read as zeros');
  m.buffer.write('tail', 3 * pageSize - 3);
  const child = runNode(
    `import { map } from ${JSON.stringify(distUrl)};
     const m = map(process.argv[1]);
     process.stdout.write(m.length + ' ' + m.buffer.toString('latin1', m.length - 4));`,
    { args: [file] },
  );
  assert.equal(child.status, 0, child.stderr);
  assert.equal(child.stdout, `${3 * pageSize + 1} tail`);
  // A second mapping in this process sees the same bytes.
  const second = map(file);
  assert.equal(second.buffer.toString('latin1', 3 * pageSize - 3, 3 * pageSize + 1), 'tail');
  second.unmap();

  m.resize(50);
  assert.equal(statSync(file).size, 3 * pageSize + 1, 'shrinking the mapping leaves the file');
  assert.equal(m.buffer.length, 50);
  m.resize(10, { shrinkFile: true });
  assert.equal(statSync(file).size, 10, 'shrinkFile truncates it to offset + newLength');
  assert.deepEqual([...readFileSync(file)], new Array(10).fill(1));
  m.unmap();
});

test('resize with an offset grows the file to offset + newLength', (t) => {
  const file = join(tempDir(t), 'off.bin');
  writeFileSync(file, Buffer.alloc(pageSize + 50, 2));
  const m = map(file, { access: 'write', offset: pageSize + 10 });
  assert.equal(m.length, 40);
  m.resize(1000);
  assert.equal(statSync(file).size, pageSize + 10 + 1000);
  assert.equal(m.buffer[39], 2);
  assert.equal(m.buffer[40], 0);
  m.unmap();
});

test('the SIGBUS guard follows the resized mapping: a page lost to truncation is repaired and faulted', (t) => {
  const file = join(tempDir(t), 'trunc.bin');
  writeFileSync(file, Buffer.alloc(pageSize, 3));
  const m = map(file, { access: 'write' });
  const keep = m.buffer; // alive: the resize keeps the old addresses reserved and may move
  m.resize(8 * pageSize);
  assert.equal(keep.length, 0);
  m.buffer[6 * pageSize] = 1;
  truncateSync(file, pageSize);
  const b = m.buffer;
  assert.equal(b[6 * pageSize], 0, 'the lost page reads zeros instead of killing the process');
  assert.equal(b[0], 3);
  assert.equal(m.faulted, true);
  throwsCode(() => m.resize(9 * pageSize), 'ERR_MMAP_FAULTED', 'MmapkitError');
  m.unmap();
});

test('a private mapping grows up to the end of the file, not past it', (t) => {
  const file = join(tempDir(t), 'ro.bin');
  writeFileSync(file, Buffer.alloc(3 * pageSize, 4));
  for (const access of ['read', 'copy']) {
    const m = map(file, { access, length: 10 });
    m.resize(3 * pageSize);
    assert.equal(m.buffer[3 * pageSize - 1], 4);
    throwsCode(() => m.resize(3 * pageSize + 1), 'ERR_OUT_OF_RANGE', 'RangeError');
    assert.equal(statSync(file).size, 3 * pageSize, 'the file never grows');
    throwsCode(() => m.resize(10, { shrinkFile: true }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
    m.unmap();
  }
});

test('the file is reached by its path, checked to be the mapped one; a descriptor mapping needs options.fd', (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'a.bin');
  writeFileSync(file, Buffer.alloc(100, 1));
  const m = map(file, { access: 'write' });
  renameSync(file, join(dir, 'rotated.bin'));
  writeFileSync(file, Buffer.alloc(100, 9)); // a new file at the old path
  throwsCode(() => m.resize(pageSize * 2), 'ERR_INVALID_STATE', 'Error');
  assert.equal(statSync(file).size, 100, 'the file at the path was not touched');
  const fd = openSync(join(dir, 'rotated.bin'), 'r+');
  t.after(() => closeSync(fd));
  m.resize(pageSize * 2, { fd });
  assert.equal(statSync(join(dir, 'rotated.bin')).size, pageSize * 2);
  m.unmap();

  const byFd = map(fd, { access: 'write' });
  throwsCode(() => byFd.resize(pageSize * 3), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  const other = openSync(file, 'r+');
  t.after(() => closeSync(other));
  throwsCode(() => byFd.resize(pageSize * 3, { fd: other }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  byFd.resize(pageSize * 3, { fd });
  assert.equal(byFd.buffer[0], 1);
  byFd.resize(10); // shrinking the mapping alone needs no file
  byFd.unmap();
});

test('busy: a pending flushAsync, a pthread Mutex this thread holds', async (t) => {
  const file = join(tempDir(t), 'busy.bin');
  writeFileSync(file, Buffer.alloc(pageSize));
  const m = map(file, { access: 'write' });
  const pending = m.flushAsync();
  throwsCode(() => m.resize(2 * pageSize), 'ERR_MMAP_BUSY', 'MmapkitError');
  await pending;
  assert.equal(statSync(file).size, pageSize, 'nothing changed');
  m.resize(2 * pageSize);

  const mutex = Mutex.create(m, 0, { kind: 'pthread' });
  mutex.lock();
  throwsCode(() => m.resize(3 * pageSize), 'ERR_MMAP_BUSY', 'MmapkitError');
  assert.equal(m.length, 2 * pageSize);
  mutex.unlock();
  m.resize(3 * pageSize);
  m.unmap();
});

test("synchronization objects and views over a resized mapping say it was resized (not protect()); attached again, they work", async () => {
  const m = mapAnonymous(2 * pageSize, { shared: true });
  const ev = Event.create(m, 0);
  const mx = Mutex.create(m, 64);
  const view = m.view(0, 64);
  const i32 = new Int32Array(m.buffer.buffer, m.buffer.byteOffset + 128, 1);
  m.resize(pageSize); // shared anonymous memory can shrink, not grow
  const resized = (fn) =>
    assert.throws(fn, (err) => err.code === 'ERR_MMAP_NOT_ACCESSIBLE' && /resized \(resize\(\)\)/.test(err.message) && !/protect/.test(err.message));
  resized(() => ev.set());
  resized(() => mx.lock());
  resized(() => wait(i32, 0, 0, 0));
  resized(() => notify(i32, 0));
  await assert.rejects(ev.waitAsync(10), (err) => err.code === 'ERR_MMAP_NOT_ACCESSIBLE' && /resized/.test(err.message));
  resized(() => msync(view, 64, constants.MS_ASYNC));
  // protect() still names protect()
  const p = mapAnonymous(pageSize, { shared: true });
  const pe = Event.create(p, 0);
  p.protect('read');
  assert.throws(() => pe.set(), (err) => err.code === 'ERR_MMAP_NOT_ACCESSIBLE' && /protect\(\)/.test(err.message) && !/resized/.test(err.message));
  p.unmap();
  // attached again over the new memory, the objects work
  const ev2 = Event.attach(m, 0);
  ev2.set();
  assert.equal(ev2.wait(0), true);
  assert.equal(Mutex.attach(m, 64).lock(1000), 'acquired');
  m.unmap();
});

test('a resize the kernel refuses (EFAULT: lock() of a range split the mapping) changes nothing: views stay attached, a retry after the split is gone works', () => {
  const m = mapAnonymous(4 * pageSize);
  const view = m.buffer;
  view.fill(7);
  m.lock({ offset: 0, length: pageSize }); // one VMA becomes two: mremap of the whole range is EFAULT
  assert.throws(() => m.resize(8 * pageSize), (err) => err.code === 'EFAULT' && err.syscall === 'mremap');
  assert.equal(view.length, 4 * pageSize, 'the view is still attached');
  assert.equal(view[4 * pageSize - 1], 7);
  assert.equal(m.length, 4 * pageSize);
  m.unlock({ offset: 0, length: pageSize }); // the kernel merges the two again
  m.resize(8 * pageSize);
  assert.equal(view.length, 0, 'detached by the resize that happened');
  assert.equal(m.buffer[4 * pageSize - 1], 7);
  m.unmap();
});

test('bad input and closed mappings', () => {
  const m = mapAnonymous(pageSize);
  for (const [value, code, name] of [
    [0, 'ERR_OUT_OF_RANGE', 'RangeError'],
    [-1, 'ERR_OUT_OF_RANGE', 'RangeError'],
    [1.5, 'ERR_OUT_OF_RANGE', 'RangeError'],
    [Number.NaN, 'ERR_OUT_OF_RANGE', 'RangeError'],
    [2 ** 53, 'ERR_OUT_OF_RANGE', 'RangeError'],
    [2n ** 63n, 'ERR_OUT_OF_RANGE', 'RangeError'],
    ['4096', 'ERR_INVALID_ARG_TYPE', 'TypeError'],
    [undefined, 'ERR_INVALID_ARG_TYPE', 'TypeError'],
  ]) {
    throwsCode(() => m.resize(value), code, name);
  }
  throwsCode(() => m.resize(8192, { shrinkfile: true }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  throwsCode(() => m.resize(8192, null), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  throwsCode(() => m.resize(8192, { shrinkFile: 'yes' }), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  throwsCode(() => m.resize(100, { shrinkFile: true }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  throwsCode(() => m.resize(8192, { fd: 0 }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  throwsCode(() => m.resize(8192, { fd: -1 }), 'ERR_OUT_OF_RANGE', 'RangeError');
  // Past the address space: the kernel refuses, and the mapping is as it was.
  assert.throws(() => m.resize(2 ** 52), { syscall: 'mremap' });
  assert.equal(m.length, pageSize);
  m.buffer[0] = 1;
  // An option getter that unmaps: the state is checked after the arguments were read.
  throwsCode(() => m.resize(8192, { get shrinkFile() { m.unmap(); return false; } }), 'ERR_MMAP_CLOSED', 'MmapkitError');
  throwsCode(() => m.resize(8192), 'ERR_MMAP_CLOSED', 'MmapkitError');

  const shared = mapAnonymous(2 * pageSize, { shared: true });
  throwsCode(() => shared.resize(3 * pageSize), 'ERR_OUT_OF_RANGE', 'RangeError');
  shared.buffer[10] = 6;
  shared.resize(pageSize);
  assert.equal(shared.buffer[10], 6);
  shared.unmap();
});

test('a move keeps the old addresses reserved (PROT_NONE) while an old view lives', (t) => {
  const file = join(tempDir(t), 'move.bin');
  writeFileSync(file, Buffer.alloc(pageSize, 1));
  const m = map(file, { access: 'write' });
  // (the placeholder may have merged with a neighbouring one: look for the line that holds the address)
  const lineOf = (start) =>
    readFileSync('/proc/self/maps', 'latin1')
      .split('\n')
      .find((l) => {
        const [from, to] = l.split(' ')[0].split('-').map((h) => BigInt(`0x${h}`));
        return from <= BigInt(`0x${start}`) && BigInt(`0x${start}`) < to;
      });
  const startOf = () => readFileSync('/proc/self/maps', 'latin1').split('\n').find((l) => l.endsWith(` ${file}`))?.split('-')[0];
  const before = startOf();
  const old = m.buffer; // a live view of the old addresses
  m.resize(256 * 1024 * 1024); // sparse: costs no memory; the addresses after the mapping are rarely free
  const after = startOf();
  assert.equal(old.length, 0);
  assert.equal(m.buffer[0], 1);
  if (after === before) {
    t.diagnostic('grown in place: nothing to reserve');
  } else {
    assert.match(lineOf(before) ?? 'none', / ---p /, 'the old range is an inaccessible placeholder, not free');
  }
  m.unmap();
});
