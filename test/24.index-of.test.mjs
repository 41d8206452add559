// mapping.indexOf / lastIndexOf: right at every position of a multi-GiB mapping (where Node's
// Buffer#indexOf is not), against a naive search on small ones, and their argument and state errors.
import assert from 'node:assert/strict';
import { closeSync, ftruncateSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { map, mapAnonymous, MAX_VIEW_LENGTH, pageSize } from '../dist/index.js';
import { setSearchChunk } from '../dist/mapping.js';
import { distUrl, runNode, tempDir, throwsCode, timedTests, xorshift } from './helpers.mjs';

const test = timedTests(120_000);
const GiB = 2 ** 30;

/** Python's find/rfind, one position at a time: the reference. */
function naive(hay, needle, start, end, forward) {
  const len = hay.length;
  const bound = (v, fallback) => (v === undefined ? fallback : Number(v) < 0 ? len + Number(v) : Number(v) + 0);
  const s = bound(start, 0);
  const e = bound(end, len);
  const bytes = typeof needle === 'number' ? Buffer.from([needle]) : Buffer.from(needle);
  const n = bytes.length;
  if (n === 0) return s <= e ? (forward ? s : e) : -1;
  const matches = (p) => {
    for (let k = 0; k < n; k++) if (hay[p + k] !== bytes[k]) return false;
    return true;
  };
  if (forward) {
    for (let p = s; p + n <= e; p++) if (matches(p)) return p;
  } else {
    for (let p = e - n; p >= s; p--) if (matches(p)) return p;
  }
  return -1;
}

test('small mappings: the same answers as a naive search, with chunks of 1 byte to 1 GiB', (t) => {
  t.after(() => setSearchChunk());
  const next = xorshift(0x24_1d_0f);
  const rand = (n) => (next.next().value >>> 0) % n;
  // Few distinct bytes, so that needles match often (and partly), 0xc3 0xa9 being 'é' in UTF-8.
  const alphabet = [0x61, 0x62, 0xc3, 0xa9];
  let checked = 0;
  let found = 0;
  for (const chunk of [1, 2, 3, 7, 64, 4096, undefined]) {
    setSearchChunk(chunk);
    for (let round = 0; round < 12; round++) {
      const size = 1 + rand(round < 6 ? 40 : 3000);
      const m = mapAnonymous(size);
      const hay = m.buffer;
      for (let i = 0; i < size; i++) hay[i] = alphabet[rand(4)];
      for (let q = 0; q < 150; q++) {
        let needle;
        const kind = rand(6);
        if (kind === 0) needle = alphabet[rand(4)];
        else if (kind === 1) needle = ['a', 'ab', 'é', 'bé', 'aé', 'ba', ''][rand(7)];
        else if (kind === 2) needle = Buffer.from(alphabet.slice(0, rand(4)).map((b) => alphabet[(b + rand(4)) % 4]));
        else {
          // A piece of the mapping itself (found at least there unless start/end exclude it), as a
          // Uint8Array or a Buffer.
          const from = rand(size);
          const piece = hay.subarray(from, from + rand(Math.min(12, size - from) + 1));
          needle = kind === 3 ? new Uint8Array(piece) : Buffer.from(piece);
        }
        const bound = () => {
          const r = rand(8);
          if (r === 0) return undefined;
          if (r === 1) return -rand(size + 1); // from the end
          if (r === 2) return BigInt(rand(size + 1));
          return rand(size + 1);
        };
        const start = bound();
        const end = rand(3) === 0 ? undefined : bound();
        const args = end === undefined ? (start === undefined ? [] : [start]) : [start, end];
        for (const forward of [true, false]) {
          const got = forward ? m.indexOf(needle, ...args) : m.lastIndexOf(needle, ...args);
          const want = naive(hay, needle, start, end, forward);
          assert.equal(got, want, `chunk ${chunk}, size ${size}, ${forward ? 'indexOf' : 'lastIndexOf'}(${typeof needle === 'object' ? `<${Buffer.from(needle).toString('hex')}>` : JSON.stringify(needle)}, ${args})`);
          checked++;
          if (want >= 0) found++;
        }
      }
      m.unmap();
    }
  }
  t.diagnostic(`${checked} searches, ${found} found something`);
  assert.ok(found > checked / 3 && found < checked, 'the searches both find and miss');
});

test('an empty needle is found at start (indexOf) or end (lastIndexOf), as Python finds it', () => {
  const m = mapAnonymous(100);
  for (const empty of ['', Buffer.alloc(0), new Uint8Array(0)]) {
    assert.equal(m.indexOf(empty), 0);
    assert.equal(m.lastIndexOf(empty), 100);
    assert.equal(m.indexOf(empty, 7), 7);
    assert.equal(m.indexOf(empty, 100), 100);
    assert.equal(m.indexOf(empty, -3), 97);
    assert.equal(m.lastIndexOf(empty, 7, 9), 9);
    assert.equal(m.lastIndexOf(empty, 0, -10), 90);
    assert.equal(m.indexOf(empty, 9, 7), -1, 'start after end finds nothing');
    assert.equal(m.lastIndexOf(empty, 9, 7), -1);
    assert.ok(Object.is(m.indexOf(empty, -0), 0), '-0 is 0');
  }
  m.buffer.write('abc', 10);
  assert.equal(m.indexOf('abc', 11, 5), -1);
  assert.equal(m.indexOf('abc', 10, 13), 10);
  assert.equal(m.indexOf('abc', 10, 12), -1, 'the match must end by end');
  assert.equal(m.lastIndexOf('abc', 11), -1, 'and start at start or later');
  assert.equal(m.indexOf(0x61, 10n, 11n), 10);
  assert.equal(m.indexOf(0), 0);
  assert.equal(m.lastIndexOf(0), 99);
  m.unmap();
});

test('bad arguments: ERR_INVALID_ARG_TYPE, ERR_OUT_OF_RANGE; read before the state is checked', () => {
  const m = mapAnonymous(pageSize);
  for (const method of ['indexOf', 'lastIndexOf']) {
    const call = (...args) => () => m[method](...args);
    for (const value of [undefined, null, true, 1n, {}, [1], Symbol('x'), new Uint16Array(2), new Int8Array(2), new Uint8ClampedArray(2), new DataView(new ArrayBuffer(2)), new ArrayBuffer(2), () => 1]) {
      throwsCode(call(value), 'ERR_INVALID_ARG_TYPE', 'TypeError');
    }
    // A lookalike is not a Uint8Array (its tag is read from the typed array itself).
    throwsCode(call({ [Symbol.toStringTag]: 'Uint8Array', length: 1, 0: 0 }), 'ERR_INVALID_ARG_TYPE', 'TypeError');
    for (const value of [-1, 256, 1.5, NaN, Infinity, -0.5]) throwsCode(call(value), 'ERR_OUT_OF_RANGE', 'RangeError');
    for (const bad of ['1', null, {}, true, [0]]) {
      throwsCode(call(0, bad), 'ERR_INVALID_ARG_TYPE', 'TypeError');
      throwsCode(call(0, 0, bad), 'ERR_INVALID_ARG_TYPE', 'TypeError');
    }
    for (const bad of [1.5, NaN, Infinity, -Infinity, pageSize + 1, -pageSize - 1, 2 ** 53, BigInt(pageSize) + 1n, -(1n << 70n)]) {
      throwsCode(call(0, bad), 'ERR_OUT_OF_RANGE', 'RangeError');
      throwsCode(call(0, 0, bad), 'ERR_OUT_OF_RANGE', 'RangeError');
    }
    // The bounds themselves are fine.
    assert.equal(m[method](0, pageSize, pageSize), -1);
    assert.equal(m[method](0, -pageSize, -pageSize + 1), 0);
  }
  m.unmap();
  throwsCode(() => m.indexOf(0), 'ERR_MMAP_CLOSED', 'MmapkitError');
  throwsCode(() => m.lastIndexOf('x', 0, 10), 'ERR_MMAP_CLOSED', 'MmapkitError');
  throwsCode(() => m.indexOf(''), 'ERR_MMAP_CLOSED', 'MmapkitError');
  throwsCode(() => m.indexOf(-1), 'ERR_OUT_OF_RANGE', 'RangeError'); // arguments first
});

test('pages that are not readable and writable: ERR_MMAP_NOT_ACCESSIBLE, and fine again after protect(\'write\')', () => {
  const m = mapAnonymous(2 * pageSize);
  m.buffer[pageSize + 1] = 5;
  m.protect('read');
  throwsCode(() => m.indexOf(5), 'ERR_MMAP_NOT_ACCESSIBLE', 'MmapkitError');
  throwsCode(() => m.lastIndexOf(5), 'ERR_MMAP_NOT_ACCESSIBLE', 'MmapkitError');
  m.protect('write');
  assert.equal(m.indexOf(5), pageSize + 1);
  assert.equal(m.lastIndexOf(5), pageSize + 1);
  m.unmap();
});

test('a file truncated under the mapping during the search: ERR_MMAP_FAULTED, not a wrong -1', (t) => {
  // In a child: the SIGBUS guard repairs the lost pages with zeros, so the scan itself ends normally.
  const file = join(tempDir(t), 'trunc.bin');
  const data = Buffer.alloc(4 * pageSize, 7);
  data[3 * pageSize + 9] = 0x7a;
  writeFileSync(file, data);
  const r = runNode(
    `
    import { map, pageSize } from ${JSON.stringify(distUrl)};
    import { truncateSync } from 'node:fs';
    const m = map(process.argv[1]);
    const out = { before: m.indexOf(0x7a), faultedBefore: m.faulted };
    truncateSync(process.argv[1], pageSize); // as another process would
    out.firstPage = m.indexOf(7, 0, pageSize);
    try { out.during = m.indexOf(0x7a); } catch (e) { out.during = e.code; }
    out.faulted = m.faulted;
    try { out.after = m.lastIndexOf(7, 0, pageSize); } catch (e) { out.after = e.code; }
    console.log(JSON.stringify(out));
  `,
    { args: [file] },
  );
  assert.equal(r.signal, null, r.stderr);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), {
    before: 3 * pageSize + 9,
    faultedBefore: false,
    firstPage: 0,
    during: 'ERR_MMAP_FAULTED',
    faulted: true,
    after: 'ERR_MMAP_FAULTED',
  });
});

test('a sparse 5 GiB file: matches near 2^31, 2^32, 1 GiB chunk borders and the end, at the right positions', (t) => {
  const size = 5 * GiB + 123;
  const file = join(tempDir(t), 'sparse.bin');
  const fd = openSync(file, 'w+');
  t.after(() => closeSync(fd));
  ftruncateSync(fd, size);
  const put = (text, at) => {
    writeSync(fd, Buffer.from(text, 'latin1'), 0, text.length, at);
    return at;
  };
  const z = put('z', 2 ** 31 + 5); // the byte of Node's bug
  const n31 = put('needle-31', 2 ** 31 - 4); // across the 2^31 line
  const n32 = put('needle-32', 2 ** 32 - 3); // across 4 GiB: the end of a Node 20 view, and of the first chunk from 3 GiB
  const atBorder = put('at-border', 2 ** 32 + 64); // the first position of the second chunk from 3 GiB + 64
  const back = put('back-border', 3 * GiB + 100); // just before the second chunk of a backward search
  const last = put('needle-5G', size - 9);
  const m = map(file); // access: 'read'
  t.after(() => m.unmap());
  t.diagnostic(`mapping ${m.length} bytes; MAX_VIEW_LENGTH ${MAX_VIEW_LENGTH} (${m.length > MAX_VIEW_LENGTH ? 'windows' : 'one Buffer'})`);

  // Node's own Buffer#indexOf on a view that holds the byte past 2^31 (it only reads from 2^31 - 2 on).
  const big = m.view(0, 2 ** 31 + pageSize);
  const nodeSays = big.indexOf(0x7a, 2 ** 31 - 2);
  if (nodeSays === z) {
    t.diagnostic(`Buffer#indexOf is right past 2^31 on ${process.version}: the bug is fixed here`);
  } else {
    assert.equal(nodeSays, -2147483643, `Buffer#indexOf past 2^31 on ${process.version}`);
  }
  assert.equal(m.indexOf(0x7a, 2 ** 31 - 2), z);
  assert.equal(m.indexOf('z', 2 ** 31 - 2), z);
  assert.equal(m.lastIndexOf(0x7a, 2 ** 31 - 4096, 2 ** 31 + 4096), z);
  assert.equal(m.lastIndexOf(0x7a, -(size - 2 ** 31), -(size - 2 ** 31 - 6)), z, 'negative bounds');
  assert.equal(m.lastIndexOf(0x7a, 2 ** 31 - 4096, z), -1, 'end excludes it');
  assert.equal(m.indexOf(0x7a, z + 1, z + 4096), -1, 'start excludes it');

  // Across 2^31, with start and end tight around it.
  assert.equal(m.indexOf('needle-31', n31 - pageSize), n31);
  assert.equal(m.indexOf(Buffer.from('needle-31'), n31, n31 + 9), n31);
  assert.equal(m.indexOf('needle-31', n31 + 1, n31 + pageSize), -1);
  assert.equal(m.indexOf('needle-31', n31 - pageSize, n31 + 8), -1, 'ends one byte past end');
  assert.equal(m.lastIndexOf(new Uint8Array(Buffer.from('needle-31')), n31, n31 + 9), n31);

  // Across 4 GiB and the end of the first 1 GiB chunk of a search from 3 GiB: scans 1 GiB of the
  // file (the only long scan here; the rest stays in these pages or a few pages elsewhere).
  assert.equal(m.indexOf('needle-32', 3 * GiB), n32);
  assert.equal(m.indexOf('at-border', 3 * GiB + 64), atBorder, 'first position of the second chunk');
  assert.equal(m.indexOf('needle-32', BigInt(n32 - pageSize), BigInt(n32 + 9)), n32);
  assert.equal(m.lastIndexOf('needle-32', n32 - pageSize, n32 + 9), n32);
  assert.equal(m.lastIndexOf('needle-32', n32 - pageSize, n32 + 8), -1);
  // Backward: the first chunk covers positions down to end - 9 - 2^30 + 1 = back + 2, so the match at
  // `back` is in the second chunk, its bytes across the border.
  assert.equal(m.lastIndexOf('back-border', 0, back + 11 + GiB + 1), back);
  assert.equal(m.lastIndexOf('needle-32', back, n32 + 9 + 100), n32);

  // The last bytes, past 4 GiB: positive and negative start, and the full default range backwards.
  assert.equal(m.indexOf('needle-5G', size - pageSize), last);
  assert.equal(m.indexOf('needle-5G', -pageSize), last);
  assert.equal(m.lastIndexOf('needle-5G'), last);
  assert.equal(m.lastIndexOf('needle-5G', -9), last);
  assert.equal(m.lastIndexOf('needle-5G', -8), -1);
  // And back near 2^31 (another window on Node 20), then an empty needle out there.
  assert.equal(m.lastIndexOf('needle-31', n31 - 1, n31 + pageSize), n31);
  assert.equal(m.indexOf('', 2 ** 32 + 1), 2 ** 32 + 1);
  assert.equal(m.lastIndexOf('', 0, -1), size - 1);
});
