// Every public function, given bad input: a Node-style error with a stable code, never a crash.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, existsSync, mkdirSync, openSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  constants, map, mapAnonymous, mincore, madvise, mlock, mmap, mprotect, msync, munlock, munmap, pageSize,
} from '../dist/index.js';
import { emulator, tempDir, throwsCode } from './helpers.mjs';

const TYPE = ['ERR_INVALID_ARG_TYPE', 'TypeError'];
const RANGE = ['ERR_OUT_OF_RANGE', 'RangeError'];
const VALUE = ['ERR_INVALID_ARG_VALUE', 'TypeError'];

function fixture(t) {
  const dir = tempDir(t);
  const file = join(dir, 'f.bin');
  writeFileSync(file, Buffer.alloc(2 * pageSize, 1));
  return { dir, file };
}

test('map: bad target and options', (t) => {
  const { dir, file } = fixture(t);
  for (const target of [undefined, null, {}, [], true, 1.5, -1, 2 ** 31, Symbol('x'), 10n]) {
    assert.throws(() => map(target), (e) => ['ERR_INVALID_ARG_TYPE', 'ERR_OUT_OF_RANGE'].includes(e.code), String(target?.toString?.()));
  }
  throwsCode(() => map(''), ...VALUE);
  throwsCode(() => map('a\0b'), ...VALUE);
  throwsCode(() => map(file, null), ...TYPE);
  throwsCode(() => map(file, 'read'), ...TYPE);
  throwsCode(() => map(file, { acces: 'read' }), ...VALUE);
  assert.throws(() => map(file, { acces: 'read' }), /did you mean 'access'/);
  throwsCode(() => map(file, { access: 'rw' }), ...VALUE);
  throwsCode(() => map(file, { access: 1 }), ...VALUE);
  throwsCode(() => map(file, { offset: -1 }), ...RANGE);
  throwsCode(() => map(file, { offset: 1.5 }), ...RANGE);
  throwsCode(() => map(file, { offset: '0' }), ...TYPE);
  throwsCode(() => map(file, { offset: 2 ** 63 }), ...RANGE);
  throwsCode(() => map(file, { offset: 1n << 63n }), ...RANGE);
  throwsCode(() => map(file, { length: 0 }), ...RANGE);
  throwsCode(() => map(file, { length: 0n }), ...RANGE);
  throwsCode(() => map(file, { length: NaN }), ...RANGE);
  throwsCode(() => map(file, { length: Infinity }), ...RANGE);
  throwsCode(() => map(file, { offset: 2 * pageSize }), ...RANGE); // at the end of the file
  throwsCode(() => map(file, { length: 2 * pageSize + 1 }), ...RANGE); // past the end of the file
  throwsCode(() => map(file, { offset: 1, length: 2 * pageSize }), ...RANGE);
  throwsCode(() => map(file, { size: 10 }), ...VALUE); // size needs access 'write'
  throwsCode(() => map(file, { access: 'write', size: 0 }), ...RANGE);
  throwsCode(() => map(file, { access: 'write', size: -5 }), ...RANGE);
  throwsCode(() => map(file, { access: 'write', mode: 0o600 }), ...VALUE); // mode without size
  throwsCode(() => map(join(dir, 'm'), { access: 'write', size: 1, mode: -1 }), ...RANGE);
  throwsCode(() => map(join(dir, 'm'), { access: 'write', size: 1, mode: '600' }), ...TYPE);
  throwsCode(() => map(file, { populate: 'yes' }), ...TYPE);
});

test('map: a failed call changes nothing on disk', (t) => {
  const { dir, file } = fixture(t);
  const fresh = join(dir, 'fresh.bin');
  throwsCode(() => map(fresh, { access: 'write', size: 10, offset: 100 }), 'ERR_OUT_OF_RANGE', 'RangeError');
  assert.equal(existsSync(fresh), false, 'the file it would have created is not left behind');
  throwsCode(() => map(file, { access: 'write', size: 3 * pageSize, offset: 3 * pageSize }), 'ERR_OUT_OF_RANGE', 'RangeError');
  assert.equal(statSync(file).size, 2 * pageSize, 'an existing file is not grown by a failing call');
  throwsCode(() => map('/dev/zero', { access: 'write', size: 100, length: 4096 }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  const fd = openSync(file, 'r+');
  throwsCode(() => map(fd, { access: 'write', size: 10, mode: 0o644 }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  closeSync(fd);
});

test('map: system errors are shaped like fs errors', (t) => {
  const { dir } = fixture(t);
  const missing = join(dir, 'missing.bin');
  throwsCode(() => map(missing), 'ENOENT', 'Error', { errno: -2, syscall: 'open', path: missing });
  assert.throws(() => map(missing), { message: `ENOENT: no such file or directory, open '${missing}'` });
  // A new file without a size is not created (it could not be mapped: it would be empty).
  throwsCode(() => map(missing, { access: 'write' }), 'ENOENT', 'Error');
  const sub = join(dir, 'sub');
  mkdirSync(sub);
  throwsCode(() => map(sub), 'EISDIR', 'Error', { errno: -21, syscall: 'mmap', path: sub });
  throwsCode(() => map(123456), 'EBADF', 'Error', { syscall: 'fstat' });
});

test('map: an empty file is a clear error, never SIGBUS', (t) => {
  const { dir } = fixture(t);
  const empty = join(dir, 'empty.bin');
  writeFileSync(empty, '');
  for (const access of ['read', 'write', 'copy']) {
    throwsCode(() => map(empty, { access }), 'ERR_MMAP_EMPTY_FILE', 'MmapkitError');
  }
  throwsCode(() => map(empty, { length: 4096 }), 'ERR_MMAP_EMPTY_FILE', 'MmapkitError');
  assert.equal(map(empty, { access: 'write', size: 4096 }).buffer.length, 4096, 'size grows it');
});

test('map: a device needs a length', () => {
  throwsCode(() => map('/dev/zero'), ...VALUE);
  const m = map('/dev/zero', { length: pageSize, access: 'copy' });
  assert.equal(m.buffer[0], 0);
  m.unmap();
});

test('mapAnonymous: bad input', () => {
  for (const len of [undefined, null, '1', {}]) throwsCode(() => mapAnonymous(len), ...TYPE);
  for (const len of [0, -1, 1.5, NaN, 0n, 2 ** 53]) throwsCode(() => mapAnonymous(len), ...RANGE);
  throwsCode(() => mapAnonymous(1, { shared: 1 }), ...TYPE);
  throwsCode(() => mapAnonymous(1, { share: true }), ...VALUE);
  throwsCode(() => mapAnonymous(1, 5), ...TYPE);
  throwsCode(() => mapAnonymous(2 ** 52), 'ENOMEM', 'Error', { syscall: 'mmap' });
});

test('Mapping methods: bad input', () => {
  const m = mapAnonymous(4 * pageSize);
  throwsCode(() => m.view(-1), ...RANGE);
  throwsCode(() => m.view(4 * pageSize + 1), ...RANGE);
  throwsCode(() => m.view(0, 4 * pageSize + 1), ...RANGE);
  throwsCode(() => m.view(10, 4 * pageSize - 9), ...RANGE);
  throwsCode(() => m.view('0'), ...TYPE);
  for (const method of ['flush', 'residency', 'lock', 'unlock', 'discard']) {
    throwsCode(() => m[method](5), ...TYPE);
    throwsCode(() => m[method]({ offset: -1 }), ...RANGE);
    throwsCode(() => m[method]({ offset: 4 * pageSize + 1 }), ...RANGE);
    throwsCode(() => m[method]({ offset: 1, length: 4 * pageSize }), ...RANGE);
    throwsCode(() => m[method]({ ofset: 1 }), ...VALUE);
  }
  assert.rejects(m.flushAsync({ length: -1 }), { code: 'ERR_OUT_OF_RANGE' });
  throwsCode(() => m.protect('rw'), ...VALUE);
  throwsCode(() => m.protect(undefined), ...VALUE);
  throwsCode(() => m.advise('dontneed'), ...VALUE); // discards data: that is discard(), not a hint
  throwsCode(() => m.advise('fast'), ...VALUE);
  throwsCode(() => m.advise('normal', { length: 4 * pageSize + 1 }), ...RANGE);
  throwsCode(() => m.discard({ offset: 1, length: pageSize }), ...VALUE); // not page-aligned: would lose bytes
  throwsCode(() => m.discard({ offset: 0, length: pageSize + 1 }), ...VALUE);
  m.unmap();
});

test('low-level functions: bad input', (t) => {
  const { file } = fixture(t);
  const { PROT_READ, PROT_WRITE, MAP_SHARED, MAP_PRIVATE, MAP_ANONYMOUS, MAP_FIXED, MS_SYNC, MADV_NORMAL } = constants;
  const RW = PROT_READ | PROT_WRITE;
  throwsCode(() => mmap('1', RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), ...TYPE);
  throwsCode(() => mmap(-1, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), ...RANGE);
  throwsCode(() => mmap(4096, '3', MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), ...TYPE);
  throwsCode(() => mmap(4096, RW, 1.5, -1, 0), ...RANGE);
  throwsCode(() => mmap(4096, RW, MAP_PRIVATE | MAP_ANONYMOUS, -2, 0), ...RANGE);
  throwsCode(() => mmap(4096, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, -4096), ...RANGE);
  throwsCode(() => mmap(4096, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0), ...VALUE);
  // The kernel's own rules, as in C:
  throwsCode(() => mmap(0, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), 'EINVAL', 'Error', { syscall: 'mmap', errno: -22 });
  throwsCode(() => mmap(4096, RW, MAP_ANONYMOUS, -1, 0), 'EINVAL', 'Error'); // neither shared nor private
  throwsCode(() => mmap(4096, RW, MAP_SHARED, 999999, 0), 'EBADF', 'Error');
  const fd = openSync(file, 'r');
  t.after(() => closeSync(fd));
  throwsCode(() => mmap(4096, PROT_READ, MAP_SHARED, fd, 100), 'EINVAL', 'Error'); // offset not a page multiple
  throwsCode(() => mmap(4096, RW, MAP_SHARED, fd, 0), 'EACCES', 'Error'); // write access, read-only fd

  const m = mmap(2 * pageSize, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  for (const addr of [undefined, null, 5, {}, Buffer.alloc(10).buffer]) {
    throwsCode(() => msync(addr, 4096, MS_SYNC), ...TYPE);
  }
  throwsCode(() => msync(Buffer.alloc(10), 4096, MS_SYNC), ...VALUE); // not a view of a mapping
  throwsCode(() => msync(m, 3 * pageSize, MS_SYNC), ...RANGE); // past the mapping
  throwsCode(() => msync(m.buffer.subarray(pageSize), 2 * pageSize, MS_SYNC), ...RANGE);
  throwsCode(() => msync(m, -1, MS_SYNC), ...RANGE);
  throwsCode(() => msync(m, 4096, 'sync'), ...TYPE);
  throwsCode(() => msync(m.buffer.subarray(1), 10, MS_SYNC), 'EINVAL', 'Error'); // unaligned address
  throwsCode(() => msync(m, 4096, 0xffff), 'EINVAL', 'Error');
  throwsCode(() => mprotect(m, 3 * pageSize, PROT_READ), ...RANGE);
  throwsCode(() => mprotect(m, 4096, 1.5), ...RANGE);
  throwsCode(() => madvise(m, 4096, 'normal'), ...TYPE);
  throwsCode(() => madvise(m, 3 * pageSize, MADV_NORMAL), ...RANGE);
  // qemu-user ignores madvise and accepts any advice: the kernel's EINVAL is only seen on real machines.
  if (emulator === '') throwsCode(() => madvise(m, 4096, 9999), 'EINVAL', 'Error');
  throwsCode(() => mincore(m, 3 * pageSize), ...RANGE);
  throwsCode(() => mincore(m.buffer.subarray(3), 10), 'EINVAL', 'Error');
  throwsCode(() => mlock(m, 3 * pageSize), ...RANGE);
  throwsCode(() => munlock(m, 3 * pageSize), ...RANGE);
  throwsCode(() => munmap({}), ...TYPE);
  throwsCode(() => munmap(m.buffer), ...TYPE);
  munmap(m);
});

test('no public class can be constructed with new: a TypeError says which factory to use (issue 13: one idiom, one token)', async () => {
  const lib = await import('../dist/index.js');
  const classes = { Mapping: /map\(\)/, SharedMemory: /SharedMemory\.create\(\)/, Mutex: /Mutex\.create\(\)/, Semaphore: /Semaphore\.create\(\)/, Event: /Event\.create\(\)/, Channel: /Channel\.create\(\)/, Topic: /Topic\.create\(\)/, Subscription: /topic\.subscribe\(\)/ };
  for (const [name, hint] of Object.entries(classes)) {
    assert.throws(() => new lib[name](), (err) => err instanceof TypeError && /^Illegal constructor: /.test(err.message) && hint.test(err.message), name);
    assert.throws(() => new lib[name](Symbol('mmapkit.construct'), {}), TypeError, `${name} with a look-alike token`);
  }
});
