// Mappings larger than one ArrayBuffer (4 GiB) and offsets past 4 GiB: 64-bit end to end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, openSync, readSync, statSync, writeFileSync, writeSync, ftruncateSync } from 'node:fs';
import { join } from 'node:path';
import { map, mapAnonymous, mappingCount, MAX_VIEW_LENGTH, pageSize } from '../dist/index.js';
import { tempDir, throwsCode } from './helpers.mjs';

const GiB = 2 ** 30;

function sparse(t, size) {
  const file = join(tempDir(t), 'sparse.bin');
  const fd = openSync(file, 'w+');
  ftruncateSync(fd, size);
  return { file, fd };
}

function readAt(fd, position, length) {
  const b = Buffer.alloc(length);
  readSync(fd, b, 0, length, position);
  return b;
}

/**
 * A mapping larger than 4 GiB: where one Buffer holds at most 4 GiB (Node 20: buffer.constants.MAX_LENGTH
 * is 2^32), the whole-mapping views are refused with a clear error; where Buffers may be larger (Node 22
 * and later: 2^53 - 1), they work and span the whole mapping.
 */
function tooLargeForOneView(m) {
  if (m.length > MAX_VIEW_LENGTH) {
    throwsCode(() => m.buffer, 'ERR_MMAP_VIEW_TOO_LARGE', 'MmapkitError');
    throwsCode(() => m.view(), 'ERR_MMAP_VIEW_TOO_LARGE', 'MmapkitError');
    throwsCode(() => m.view(0, MAX_VIEW_LENGTH + 1), 'ERR_OUT_OF_RANGE', 'RangeError');
  } else {
    assert.equal(m.buffer.length, m.length, 'one Buffer over the whole mapping');
    assert.equal(m.view().length, m.length);
    throwsCode(() => m.view(0, m.length + 1), 'ERR_OUT_OF_RANGE', 'RangeError');
  }
}

test('a 5 GiB file mapping is reached through windows, at the right places', (t) => {
  const size = 5 * GiB + 123;
  const { file, fd } = sparse(t, size);
  t.after(() => closeSync(fd));
  const m = map(file, { access: 'write' });
  assert.equal(m.length, size);
  tooLargeForOneView(m);
  const positions = [0, 2 ** 32 - 3, 2 ** 32 + 16, 4 * GiB + 12345, size - 8]; // 2^32-3 straddles the 4 GiB line
  for (const p of positions) {
    const w = m.view(p, 8);
    w.writeBigUInt64LE(BigInt(p) * 7n + 1n);
  }
  // Window across the 4 GiB line, as a bigint offset.
  const across = m.view(BigInt(2 ** 32 - 3), 8n);
  assert.equal(across.readBigUInt64LE(0), BigInt(2 ** 32 - 3) * 7n + 1n);
  const last = m.view(size - 8);
  assert.equal(last.length, 8);
  m.flush({ offset: 4 * GiB, length: GiB + 123 });
  for (const p of positions) {
    assert.equal(readAt(fd, p, 8).readBigUInt64LE(0), BigInt(p) * 7n + 1n, `file offset ${p}`);
  }
  assert.equal(m.residency({ offset: 4 * GiB, length: pageSize }).length, 1);
  m.unmap();
});

test('offsets past 4 GiB map the right bytes (no 32-bit truncation)', (t) => {
  const size = 6 * GiB;
  const { file, fd } = sparse(t, size);
  t.after(() => closeSync(fd));
  const at = 5 * GiB + 4097; // unaligned, and its low 32 bits point elsewhere
  writeSync(fd, Buffer.from('past-four-gib'), 0, 13, at);
  writeSync(fd, Buffer.from('WRONG-PLACE!!'), 0, 13, at % 2 ** 32);
  const m = map(file, { offset: at, length: 13 });
  assert.equal(m.offset, at);
  assert.equal(m.buffer.toString(), 'past-four-gib');
  const b = map(file, { offset: BigInt(at), length: 13n, access: 'write' });
  b.buffer.write('PAST-FOUR-GIB');
  b.flush();
  assert.equal(readAt(fd, at, 13).toString(), 'PAST-FOUR-GIB');
  m.unmap();
  b.unmap();
});

test('anonymous memory larger than 4 GiB', () => {
  const m = mapAnonymous(4 * GiB + pageSize);
  tooLargeForOneView(m);
  const w = m.view(4 * GiB, pageSize);
  w.fill(3);
  assert.equal(m.view(4 * GiB + pageSize - 1, 1)[0], 3);
  assert.equal(m.view(4 * GiB - 1, 1)[0], 0);
  m.unmap();
  assert.equal(w.length, 0);
});

// The window recipe of docs/large-files.md, as printed there: scan a file of any size in windows of
// at most 1 GiB (Buffer#indexOf is wrong past 2 GiB on Node 20-24), overlapping by needle length - 1.
function* findAll(path, needle, window = GiB) {
  const bytes = Buffer.from(needle);
  const size = statSync(path).size;
  for (let start = 0; start < size; start += window) {
    const m = map(path, { offset: start, length: Math.min(window + bytes.length - 1, size - start) });
    try {
      const b = m.buffer;
      // A match that starts in the overlap belongs to the next window.
      for (let i = b.indexOf(bytes); i !== -1 && i < window; i = b.indexOf(bytes, i + 1)) yield start + i;
    } finally {
      m.unmap(); // also when the caller stops early: the generator's return() runs this
    }
  }
}

test('the windowed scan of docs/large-files.md finds every match once, on and across window boundaries', (t) => {
  const file = join(tempDir(t), 'windows.bin');
  const window = 64 * 1024 + 3; // small windows, not page multiples: every boundary case in 1 MiB
  const size = 16 * window + 1000;
  const data = Buffer.alloc(size, 0x2e);
  const needle = 'NEEDLE';
  const expected = [0, size - needle.length]; // first and last bytes
  for (let k = 1; k <= 16; k++) {
    // At the k-th boundary, in turn: ending just before it, straddling it (two splits), starting at it.
    expected.push(k * window + [-needle.length, -3, -1, 0][k % 4]);
  }
  for (const at of expected) data.write(needle, at, 'latin1');
  writeFileSync(file, data);
  // What a plain scan of the whole (small) file finds is the truth.
  const truth = [];
  for (let i = data.indexOf(needle); i !== -1; i = data.indexOf(needle, i + 1)) truth.push(i);
  assert.deepEqual(truth, expected.sort((a, b) => a - b));
  assert.equal(truth.filter((i) => i % window > window - needle.length).length, 8, 'matches straddle boundaries');
  assert.equal(truth.filter((i) => i > 0 && i % window === 0).length, 4, 'matches start windows');
  const before = mappingCount();
  assert.deepEqual([...findAll(file, needle, window)], truth);
  assert.deepEqual([...findAll(file, needle)], truth, 'one window of 1 GiB');
  assert.deepEqual([...findAll(file, '.', window)].length, data.reduce((n, c) => n + (c === 0x2e ? 1 : 0), 0));
  // Stopping early unmaps the window in use.
  const it = findAll(file, needle, window);
  it.next();
  it.return();
  assert.equal(mappingCount(), before, 'every window was unmapped');
});
