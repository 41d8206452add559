// The low-level API: kernel rules as in C, addresses given as a Mapping or a view over one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, ftruncateSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { constants, lseek, madvise, mincore, mlock, mmap, mprotect, msync, munlock, munmap, pageSize } from '../dist/index.js';
import { cannotEmulate, tempDir, throwsCode } from './helpers.mjs';

const { PROT_NONE, PROT_READ, PROT_WRITE, PROT_EXEC, MAP_SHARED, MAP_PRIVATE, MAP_ANONYMOUS, MS_SYNC, MS_ASYNC, MADV_DONTNEED, MADV_WILLNEED } = constants;
const RW = PROT_READ | PROT_WRITE;

test('constants carry their C names and Linux x86-64 values', () => {
  assert.equal(pageSize, 4096);
  assert.deepEqual(
    { PROT_NONE, PROT_READ, PROT_WRITE, PROT_EXEC, MAP_SHARED, MAP_PRIVATE, MAP_ANONYMOUS, MS_ASYNC, MS_SYNC, MADV_DONTNEED },
    { PROT_NONE: 0, PROT_READ: 1, PROT_WRITE: 2, PROT_EXEC: 4, MAP_SHARED: 1, MAP_PRIVATE: 2, MAP_ANONYMOUS: 0x20, MS_ASYNC: 1, MS_SYNC: 4, MADV_DONTNEED: 4 },
  );
  assert.equal(constants.MAP_POPULATE, 0x8000);
  assert.equal(constants.MAP_HUGETLB, 0x40000);
  assert.equal(constants.MADV_NOT_A_THING, undefined, 'absent, not wrong');
  assert.ok(Object.isFrozen(constants));
});

test('mmap a file MAP_SHARED, write, msync, munmap: as in C', (t) => {
  const file = join(tempDir(t), 'f.bin');
  writeFileSync(file, Buffer.alloc(3 * pageSize));
  const fd = openSync(file, 'r+');
  const m = mmap(2 * pageSize, RW, MAP_SHARED, fd, pageSize);
  closeSync(fd); // the mapping outlives the descriptor
  assert.equal(m.offset, pageSize);
  m.buffer.write('low-level', 10);
  msync(m, 2 * pageSize, MS_SYNC);
  msync(m.buffer.subarray(pageSize), pageSize, MS_ASYNC);
  assert.equal(readFileSync(file).toString('latin1', pageSize + 10, pageSize + 19), 'low-level');
  munmap(m);
  assert.equal(m.closed, true);
});

test('mprotect on part of a mapping: views go while any page is not read-write', () => {
  const m = mmap(3 * pageSize, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  const b = m.buffer;
  b[0] = 1;
  mprotect(m.buffer.subarray(pageSize), pageSize, PROT_READ);
  assert.equal(b.length, 0, 'detached before the page became read-only');
  assert.equal(m.protection, -1, 'mixed');
  assert.throws(() => m.buffer, { code: 'ERR_MMAP_NOT_ACCESSIBLE' });
  mprotect(m, 3 * pageSize, RW);
  assert.equal(m.protection, RW);
  assert.equal(m.buffer[0], 1);
  mprotect(m, 3 * pageSize, RW | PROT_EXEC);
  assert.equal(m.buffer[0], 1, 'exec does not take views away');
  mprotect(m, pageSize, PROT_NONE);
  assert.throws(() => m.buffer, { code: 'ERR_MMAP_NOT_ACCESSIBLE' });
  munmap(m);
});

test('a mapping without write access gives no Buffer (a write would kill the process)', (t) => {
  const file = join(tempDir(t), 'ro.bin');
  writeFileSync(file, 'read only');
  const fd = openSync(file, 'r');
  t.after(() => closeSync(fd));
  const m = mmap(9, PROT_READ, MAP_SHARED, fd, 0);
  assert.throws(() => m.buffer, { code: 'ERR_MMAP_NOT_ACCESSIBLE' });
  assert.deepEqual([...mincore(m, 9)].map((v) => v & 1).length, 1);
  throwsCode(() => mprotect(m, 9, RW), 'EACCES', 'Error', { syscall: 'mprotect' });
  const p = mmap(9, RW, MAP_PRIVATE, fd, 0); // the C way to read a read-only file with a writable view
  assert.equal(p.buffer.toString(), 'read only');
  munmap(m);
  munmap(p);
});

test('madvise, mincore, mlock, munlock', () => {
  const m = mmap(4 * pageSize, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert.deepEqual([...mincore(m, 4 * pageSize)].map((v) => v & 1), [0, 0, 0, 0]);
  m.buffer.fill(9, 0, pageSize + 1);
  assert.deepEqual([...mincore(m, 4 * pageSize)].map((v) => v & 1), [1, 1, 0, 0]);
  madvise(m, 4 * pageSize, MADV_WILLNEED);
  madvise(m.buffer.subarray(pageSize), pageSize, MADV_DONTNEED); // low-level: data-discarding advice is allowed
  assert.equal(m.buffer[pageSize], 0);
  assert.equal(m.buffer[0], 9);
  mlock(m, 4 * pageSize);
  assert.deepEqual([...mincore(m, 4 * pageSize)].map((v) => v & 1), [1, 1, 1, 1]);
  munlock(m, 4 * pageSize);
  munmap(m);
});

test('a length that is not a page multiple covers the last partial page, never more', () => {
  const m = mmap(pageSize + 1, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert.equal(m.buffer.length, pageSize + 1);
  msync(m, 2 * pageSize, MS_SYNC); // the kernel's mapping is two pages
  throwsCode(() => msync(m, 2 * pageSize + 1, MS_SYNC), 'ERR_OUT_OF_RANGE', 'RangeError');
  munmap(m);
});

test('protection bookkeeping: zero-length changes nothing, mixed parts read -1, unreadable pages wait for async waiters', async (t) => {
  if (cannotEmulate(t, 'mprotect of part of a mapping the way Linux does (ENOMEM)')) return;
  const { SharedMemory, waitAsync } = await import('../dist/index.js');
  const m = mmap(2 * pageSize, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  const b = m.buffer;
  mprotect(m, 0, PROT_READ);
  assert.equal(b.length, 2 * pageSize, 'a zero-length mprotect detaches nothing');
  assert.equal(m.protection, RW);
  mprotect(m, pageSize, RW | PROT_EXEC);
  assert.equal(m.protection, -1, 'parts differ');
  assert.equal(m.buffer.length, 2 * pageSize, 'but every page is still read-write');
  munmap(m);
  const shm = SharedMemory.anonymous(pageSize);
  const w = new Int32Array(shm.buffer.buffer, 0, 1);
  const p = waitAsync(w, 0, 0, 10_000);
  throwsCode(() => shm.mapping.protect('none'), 'ERR_MMAP_BUSY', 'MmapkitError');
  shm.mapping.protect('read'); // readable: the waiter thread may keep reading
  shm.mapping.protect('write');
  shm.close();
  await assert.rejects(p, { code: 'ERR_MMAP_CLOSED' });
});

test('lseek: SEEK_DATA and SEEK_HOLE find the data and holes of a sparse file; bad input is refused', (t) => {
  const { SEEK_SET, SEEK_CUR, SEEK_END, SEEK_DATA, SEEK_HOLE } = constants;
  assert.deepEqual([SEEK_SET, SEEK_CUR, SEEK_END, SEEK_DATA, SEEK_HOLE], [0, 1, 2, 3, 4]);
  const path = join(tempDir(t), 'sparse.bin');
  const MiB = 1 << 20;
  const fd = openSync(path, 'w+');
  t.after(() => closeSync(fd));
  ftruncateSync(fd, 64 * MiB);
  writeSync(fd, Buffer.alloc(pageSize, 1), 0, pageSize, 32 * MiB);
  // ext4, tmpfs, xfs and btrfs track holes at page (or block) granularity; a file system that does
  // not reports the whole file as data, which leaves nothing about holes to check (said, not hidden).
  if (lseek(fd, 0, SEEK_DATA) === 0) t.diagnostic(`${path}: this file system does not report holes; hole checks skipped`);
  else {
    assert.equal(lseek(fd, 0, SEEK_DATA), 32 * MiB, 'the first data');
    assert.equal(lseek(fd, 32 * MiB + 10, SEEK_DATA), 32 * MiB + 10, 'inside data: where we are');
    assert.equal(lseek(fd, 0, SEEK_HOLE), 0, 'a hole at the start');
    assert.equal(lseek(fd, 32 * MiB, SEEK_HOLE), 32 * MiB + pageSize, 'the hole after the data');
    assert.equal(lseek(fd, 40 * MiB, SEEK_HOLE), 40 * MiB);
    assert.throws(() => lseek(fd, 33 * MiB, SEEK_DATA), { code: 'ENXIO', syscall: 'lseek' }, 'no data after 33 MiB');
  }
  assert.throws(() => lseek(fd, 64 * MiB, SEEK_HOLE), { code: 'ENXIO' }, 'at the end');
  assert.equal(lseek(fd, 5, SEEK_SET), 5);
  assert.equal(lseek(fd, 3, SEEK_CUR), 8);
  assert.equal(lseek(fd, 0, SEEK_END), 64 * MiB);
  assert.equal(lseek(fd, 2n ** 40n, SEEK_SET), 2 ** 40, 'bigint offsets, past 4 GiB');
  // Bad input.
  for (const bad of [-1, 1.5, '3', null, undefined]) assert.throws(() => lseek(bad, 0, SEEK_SET), { code: /^ERR_(OUT_OF_RANGE|INVALID_ARG_TYPE)$/ });
  for (const bad of [-1, 0.5, 2 ** 53, 2n ** 53n, '0', null]) assert.throws(() => lseek(fd, bad, SEEK_SET), { code: /^ERR_(OUT_OF_RANGE|INVALID_ARG_TYPE)$/ });
  for (const bad of [5, -1, 99, 2.5]) throwsCode(() => lseek(fd, 0, bad), 'ERR_INVALID_ARG_VALUE');
  for (const bad of ['0', undefined, null]) throwsCode(() => lseek(fd, 0, bad), 'ERR_INVALID_ARG_TYPE');
  assert.throws(() => lseek(2 ** 30, 0, SEEK_SET), { code: 'EBADF', syscall: 'lseek' });
});
