import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync, readSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { randomBytes } from 'node:crypto';
import { map, mapAnonymous, pageSize, Mapping } from '../dist/index.js';
import { cannotEmulate, tempDir } from './helpers.mjs';

test('read access sees the file, and other writers, without a copy', (t) => {
  const file = join(tempDir(t), 'a.bin');
  const data = randomBytes(3 * pageSize + 123);
  writeFileSync(file, data);
  const m = map(file);
  assert.equal(m.access, 'read');
  assert.equal(m.length, data.length);
  assert.equal(m.offset, 0);
  assert.equal(m.path, file);
  assert.equal(m.shared, false);
  assert.ok(m.buffer.equals(data));
  assert.equal(m.buffer, m.buffer, 'buffer is one object');
  // A write to the file by someone else shows through pages we have not written.
  const fd = openSync(file, 'r+');
  writeSync(fd, Buffer.from('XYZ'), 0, 3, pageSize + 1);
  closeSync(fd);
  assert.equal(m.buffer.toString('latin1', pageSize + 1, pageSize + 4), 'XYZ');
});

test('read access: a stray write stays private and never reaches the file', (t) => {
  const file = join(tempDir(t), 'a.bin');
  writeFileSync(file, Buffer.alloc(pageSize, 7));
  const m = map(file, { access: 'read' });
  m.buffer[10] = 99;
  assert.equal(m.buffer[10], 99);
  assert.equal(readFileSync(file)[10], 7);
});

test('write access reaches the file and a second mapping of it', (t) => {
  const file = join(tempDir(t), 'w.bin');
  writeFileSync(file, Buffer.alloc(2 * pageSize));
  const a = map(file, { access: 'write' });
  const b = map(file, { access: 'read' });
  assert.equal(a.shared, true);
  a.buffer.write('shared!', pageSize - 3);
  assert.equal(b.buffer.toString('latin1', pageSize - 3, pageSize + 4), 'shared!');
  a.flush();
  assert.equal(readFileSync(file).toString('latin1', pageSize - 3, pageSize + 4), 'shared!');
});

test('copy access is copy-on-write', (t) => {
  const file = join(tempDir(t), 'c.bin');
  writeFileSync(file, 'original');
  const m = map(file, { access: 'copy' });
  m.buffer.write('modified');
  m.flush(); // a no-op for private mappings
  assert.equal(m.buffer.toString(), 'modified');
  assert.equal(readFileSync(file, 'utf8'), 'original');
});

test('any byte offset works: the view starts exactly there', (t) => {
  const file = join(tempDir(t), 'o.bin');
  const data = randomBytes(5 * pageSize);
  writeFileSync(file, data);
  for (const offset of [1, 7, pageSize - 1, pageSize, pageSize + 1, 3 * pageSize + 17, 5 * pageSize - 1]) {
    for (const length of [1, 2, pageSize, undefined]) {
      if (length !== undefined && offset + length > data.length) continue;
      const m = map(file, { offset, ...(length === undefined ? {} : { length }) });
      assert.equal(m.offset, offset);
      assert.ok(m.buffer.equals(data.subarray(offset, length === undefined ? undefined : offset + length)), `offset ${offset} length ${length}`);
    }
  }
  const big = map(file, { offset: 5n, length: 10n });
  assert.ok(big.buffer.equals(data.subarray(5, 15)), 'bigint offset and length');
});

test('write at an unaligned offset lands at that file offset', (t) => {
  const file = join(tempDir(t), 'u.bin');
  writeFileSync(file, Buffer.alloc(3 * pageSize));
  const m = map(file, { access: 'write', offset: pageSize + 5, length: 4 });
  m.buffer.write('abcd');
  m.flush({ offset: 1, length: 2 });
  assert.equal(readFileSync(file).toString('latin1', pageSize + 5, pageSize + 9), 'abcd');
});

test('size creates a missing file with mode 0o600, grows a small one, never shrinks', (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'new.bin');
  const m = map(file, { access: 'write', size: 10_000 });
  assert.equal(statSync(file).size, 10_000);
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.equal(m.length, 10_000);
  assert.ok(m.buffer.equals(Buffer.alloc(10_000)));

  const modeFile = join(dir, 'mode.bin');
  map(modeFile, { access: 'write', size: 1, mode: 0o640 }).unmap();
  assert.equal(statSync(modeFile).mode & 0o777, 0o640);

  const small = join(dir, 'small.bin');
  writeFileSync(small, 'abc');
  const g = map(small, { access: 'write', size: 8192 });
  assert.equal(statSync(small).size, 8192);
  assert.equal(g.buffer.toString('latin1', 0, 3), 'abc');

  const large = join(dir, 'large.bin');
  writeFileSync(large, Buffer.alloc(20_000, 1));
  const l = map(large, { access: 'write', size: 100 });
  assert.equal(statSync(large).size, 20_000, 'never shrinks');
  assert.equal(l.length, 20_000);
});

test('a file descriptor can be mapped, and closing it right after keeps the mapping valid', (t) => {
  const file = join(tempDir(t), 'fd.bin');
  writeFileSync(file, Buffer.alloc(pageSize, 1));
  const fd = openSync(file, 'r+');
  const m = map(fd, { access: 'write' });
  closeSync(fd);
  m.buffer.fill(2);
  m.flush();
  assert.ok(readFileSync(file).equals(Buffer.alloc(pageSize, 2)));
  assert.equal(m.path, undefined);
  m.unmap();
});

test('URL and Buffer paths are accepted', (t) => {
  const file = join(tempDir(t), 'p q.bin');
  writeFileSync(file, 'url');
  const a = map(pathToFileURL(file));
  const b = map(Buffer.from(file));
  assert.equal(a.buffer.toString(), 'url');
  assert.equal(b.buffer.toString(), 'url');
});

test('populate maps every page in at once', (t) => {
  if (cannotEmulate(t, 'page residency as mincore reports it after MAP_POPULATE')) return;
  const file = join(tempDir(t), 'pop.bin');
  writeFileSync(file, randomBytes(64 * pageSize));
  for (const access of ['read', 'write', 'copy']) {
    const m = map(file, { access, populate: true });
    assert.ok(m.residency().every((r) => r === 1), access);
  }
  const a = mapAnonymous(16 * pageSize, { populate: true });
  assert.ok(a.residency().every((r) => r === 1));
});

test('a populated read mapping still shares pages with the file (no private copy)', (t) => {
  const file = join(tempDir(t), 'share.bin');
  writeFileSync(file, Buffer.alloc(pageSize, 1));
  const m = map(file, { populate: true });
  const fd = openSync(file, 'r+');
  writeSync(fd, Buffer.from([42]), 0, 1, 0);
  closeSync(fd);
  assert.equal(m.buffer[0], 42);
});

test('mapAnonymous gives zeroed memory, private or shared', () => {
  const a = mapAnonymous(3 * pageSize + 1);
  assert.equal(a.length, 3 * pageSize + 1);
  assert.ok(a.buffer.equals(Buffer.alloc(3 * pageSize + 1)));
  assert.equal(a.shared, false);
  const s = mapAnonymous(pageSize, { shared: true });
  assert.equal(s.shared, true);
  s.buffer.writeUInt32LE(0xdeadbeef, 0);
  assert.equal(s.buffer.readUInt32LE(0), 0xdeadbeef);
});

test('view() gives windows that share memory with buffer', () => {
  const a = mapAnonymous(4 * pageSize);
  const w = a.view(pageSize, 10);
  assert.equal(w.length, 10);
  w.write('window');
  assert.equal(a.buffer.toString('latin1', pageSize, pageSize + 6), 'window');
  assert.equal(a.view(4 * pageSize).length, 0);
  assert.equal(a.view().length, 4 * pageSize);
  assert.equal(a.view(5n, 3n).length, 3);
});

test('Atomics work on an Int32Array over a mapping', () => {
  const a = mapAnonymous(pageSize, { shared: true });
  const i32 = new Int32Array(a.buffer.buffer, a.buffer.byteOffset, 4);
  assert.equal(Atomics.add(i32, 0, 5), 0);
  assert.equal(Atomics.compareExchange(i32, 0, 5, 9), 5);
  assert.equal(Atomics.load(i32, 0), 9);
});

test('residency, advise, discard, lock and unlock on a real mapping', (t) => {
  const a = mapAnonymous(8 * pageSize);
  assert.equal(a.residency().length, 8);
  assert.equal(a.residency().reduce((x, y) => x + y, 0), 0, 'untouched anonymous pages are not resident');
  a.buffer.fill(1, 0, 3 * pageSize);
  assert.deepEqual([...a.residency()], [1, 1, 1, 0, 0, 0, 0, 0]);
  assert.deepEqual([...a.residency({ offset: pageSize * 2 + 5, length: pageSize })], [1, 0]);
  for (const hint of ['normal', 'random', 'sequential', 'willneed', 'dontdump', 'dodump']) a.advise(hint);
  a.advise('sequential', { offset: 1, length: 10 });
  a.discard({ offset: pageSize, length: pageSize });
  assert.equal(a.buffer[pageSize], 0, 'discarded anonymous page reads as zero');
  assert.equal(a.buffer[0], 1, 'bytes outside the range survive');
  assert.equal(a.buffer[2 * pageSize], 1, 'bytes outside the range survive');
  a.lock();
  assert.ok(a.residency().every((r) => r === 1), 'lock faults every page in');
  a.unlock();
  a.lock({ offset: 0, length: 1 });
  a.unlock({ offset: 0, length: 1 });

  const file = join(tempDir(t), 'd.bin');
  writeFileSync(file, Buffer.alloc(2 * pageSize, 5));
  const c = map(file, { access: 'copy' });
  c.buffer.fill(9);
  c.discard();
  assert.equal(c.buffer[0], 5, 'a discarded private page reads the file again');
});

test('lock on a read mapping does not copy its pages', (t) => {
  if (cannotEmulate(t, 'mlock2(MLOCK_ONFAULT) (EINVAL)')) return;
  const file = join(tempDir(t), 'l.bin');
  writeFileSync(file, Buffer.alloc(pageSize, 1));
  const m = map(file);
  m.lock();
  assert.ok(m.residency().every((r) => r === 1), 'locked pages are resident');
  const fd = openSync(file, 'r+');
  writeSync(fd, Buffer.from([77]), 0, 1, 0);
  closeSync(fd);
  assert.equal(m.buffer[0], 77, 'still shared with the page cache after mlock');
  assert.equal(m.protection, 3);
  m.buffer[1] = 1; // still writable (privately)
});

test('protect detaches views, refuses views while not writable, and restores them', () => {
  const a = mapAnonymous(2 * pageSize);
  const b = a.buffer;
  const sub = b.subarray(10);
  const v = a.view(5, 5);
  b[0] = 42;
  a.protect('read');
  assert.equal(b.length, 0);
  assert.equal(sub.length, 0);
  assert.equal(v.length, 0);
  assert.equal(b[0], undefined);
  assert.throws(() => a.buffer, { code: 'ERR_MMAP_NOT_ACCESSIBLE' });
  assert.throws(() => a.view(0, 1), { code: 'ERR_MMAP_NOT_ACCESSIBLE' });
  assert.equal(a.residency().length, 2, 'other methods still work');
  a.protect('none');
  assert.throws(() => a.buffer, { code: 'ERR_MMAP_NOT_ACCESSIBLE' });
  a.protect('write');
  assert.equal(a.buffer[0], 42, 'contents kept');
  assert.equal(a.view(0, 0).length, 0, 'an empty view needs no memory');
});

test('protect write on a shared mapping of a read-only descriptor is EACCES', (t) => {
  const file = join(tempDir(t), 'ro.bin');
  writeFileSync(file, Buffer.alloc(pageSize));
  const fd = openSync(file, 'r');
  t.after(() => closeSync(fd));
  // Low-level: a shared, read-only mapping of a read-only descriptor, then ask for write.
  assert.throws(() => map(fd, { access: 'write' }), { code: 'EACCES', syscall: 'mmap', errno: -13 });
});

test('Mapping cannot be constructed directly', () => {
  assert.throws(() => new Mapping(Symbol('x'), {}), TypeError);
});

test('use a file read through fs at the same time (a view is just memory)', (t) => {
  const file = join(tempDir(t), 'fs.bin');
  writeFileSync(file, Buffer.alloc(pageSize));
  const m = map(file, { access: 'write' });
  m.buffer.write('through-mapping');
  const fd = openSync(file, 'r');
  const out = Buffer.alloc(15);
  readSync(fd, out, 0, 15, 0);
  closeSync(fd);
  assert.equal(out.toString(), 'through-mapping', 'the page cache is shared: read() sees it before msync');
});
