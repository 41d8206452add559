// Huge pages (issue 14): the `hugePages` option of mapAnonymous() and SharedMemory.anonymous()
// (MAP_HUGETLB, MFD_HUGETLB), its constants, its refusals, and ERR_MMAP_NO_HUGE_PAGES when the
// kernel's pool (vm.nr_hugepages) has too few pages. Real huge page mappings need a reserved pool: as
// root with a writable /sys/kernel/mm/hugepages, these tests reserve 8 more pages of the default size
// for themselves (16 MiB on x86-64) and give them back afterwards; elsewhere those tests are skipped.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SharedMemory, constants, map, mapAnonymous } from '../dist/index.js';
import { compileC, distUrl, have, isRoot, tempDir, throwsCode, timedTests, uniqueName } from './helpers.mjs';

const test = timedTests(60_000);

/** The default huge page size in bytes (Hugepagesize), or undefined on a system without huge pages. */
const HUGE = (() => {
  const m = /^Hugepagesize:\s+(\d+) kB$/m.exec(readFileSync('/proc/meminfo', 'latin1'));
  return m === null ? undefined : Number(m[1]) * 1024;
})();
const POOL = HUGE === undefined ? undefined : `/sys/kernel/mm/hugepages/hugepages-${HUGE / 1024}kB`;
const offers1GB = existsSync('/sys/kernel/mm/hugepages/hugepages-1048576kB');

/** The default size's pool now: total (nr_hugepages), free, reserved (promised), overcommit, surplus. */
function pool() {
  const read = (f) => Number(readFileSync(`${POOL}/${f}`, 'latin1'));
  return {
    total: read('nr_hugepages'),
    free: read('free_hugepages'),
    reserved: read('resv_hugepages'),
    overcommit: read('nr_overcommit_hugepages'),
    surplus: read('surplus_hugepages'),
  };
}
/** Pages a new mapping can still take from the pool. */
const available = (p = pool()) => Math.max(0, p.free - p.reserved) + Math.max(0, p.overcommit - p.surplus);

/** The mappings of this process backed by pages larger than 4 KiB (hugetlb), from /proc/self/smaps. */
function hugeMappings() {
  return readFileSync('/proc/self/smaps', 'latin1')
    .split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/)
    .map((e) => ({
      name: e.split('\n', 1)[0].split(/\s+/).slice(5).join(' '),
      sizeKb: Number(/^Size:\s+(\d+) kB/m.exec(e)?.[1]),
      kernelPageKb: Number(/^KernelPageSize:\s+(\d+) kB/m.exec(e)?.[1]),
    }))
    .filter((m) => m.kernelPageKb > 4);
}

/**
 * Reserve `n` more huge pages of the default size for this test (root only), given back in t.after.
 * Returns how many the kernel gave (it may give fewer when memory is fragmented), or a reason to skip.
 */
function reserve(t, n) {
  if (HUGE === undefined) return 'this system has no huge pages (no Hugepagesize in /proc/meminfo)';
  if (!isRoot) return 'nr_hugepages cannot be raised by this user (not root)';
  const file = `${POOL}/nr_hugepages`;
  const before = pool().total;
  try {
    writeFileSync(file, String(before + n));
  } catch (err) {
    return `${file} is not writable (${err.code})`;
  }
  t.after(() => writeFileSync(file, String(before)));
  const got = pool().total - before;
  return got >= n / 2 ? got : `the kernel gave ${got} of ${n} huge pages (memory too fragmented)`;
}

/** Skip message for tests that need a pool, when none is reserved and none can be. */
function noPool(reason) {
  return `no huge pages of the default size can be had here: vm.nr_hugepages is ${HUGE === undefined ? 'absent' : pool().total}, and ${reason}`;
}

test('constants: MAP_HUGE_SHIFT, MAP_HUGE_2MB/1GB, MFD_HUGETLB, MFD_HUGE_2MB/1GB have the kernel headers\' values', (t) => {
  // HUGETLB_FLAG_ENCODE_SHIFT is 26 on every architecture; the size is log2(bytes) << 26.
  assert.equal(constants.MAP_HUGE_SHIFT, 26);
  assert.equal(constants.MAP_HUGE_2MB, 21 << 26);
  assert.equal(constants.MAP_HUGE_1GB, 30 << 26);
  assert.equal(constants.MFD_HUGETLB, 4);
  assert.equal(constants.MFD_HUGE_2MB, 21 << 26);
  assert.equal(constants.MFD_HUGE_1GB, 30 << 26);
  assert.equal(typeof constants.MAP_HUGETLB, 'number');
  assert.ok(Object.isFrozen(constants));
  if (!have('cc')) return t.skip('no C compiler to read the kernel headers with');
  // The same names from the kernel's own headers (linux/mman.h, linux/memfd.h).
  const dir = tempDir(t);
  const src = join(dir, 'huge.c');
  writeFileSync(
    src,
    `#include <stdio.h>
#include <linux/mman.h>
#include <linux/memfd.h>
int main(void) {
  printf("{\\"MAP_HUGETLB\\":%d,\\"MAP_HUGE_SHIFT\\":%d,\\"MAP_HUGE_2MB\\":%d,\\"MAP_HUGE_1GB\\":%d,", MAP_HUGETLB, MAP_HUGE_SHIFT, MAP_HUGE_2MB, MAP_HUGE_1GB);
  printf("\\"MFD_HUGETLB\\":%u,\\"MFD_HUGE_2MB\\":%u,\\"MFD_HUGE_1GB\\":%u}\\n", MFD_HUGETLB, MFD_HUGE_2MB, MFD_HUGE_1GB);
  return 0;
}
`,
  );
  const exe = compileC(src, join(dir, 'huge'));
  const r = spawnSync(exe, { encoding: 'utf8', timeout: 10_000 });
  assert.equal(r.status, 0, r.stderr);
  const c = JSON.parse(r.stdout);
  for (const [name, value] of Object.entries(c)) assert.equal(constants[name], value, name);
});

test('hugePages: wrong types and values are refused before anything is mapped', () => {
  for (const [make, label] of [
    [(o) => mapAnonymous(4 << 20, o), 'mapAnonymous'],
    [(o) => SharedMemory.anonymous(4 << 20, o), 'SharedMemory.anonymous'],
  ]) {
    for (const bad of [1, 2097152, 0, null, {}, [], 2n, () => true]) {
      throwsCode(() => make({ hugePages: bad }), 'ERR_INVALID_ARG_TYPE', 'TypeError');
    }
    for (const bad of ['', 'yes', 'true', '2mb', '2M', '2 MiB', '1G', '4MB', 'toString', '__proto__']) {
      throwsCode(() => make({ hugePages: bad }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
    }
    throwsCode(() => make({ hugepages: true }), 'ERR_INVALID_ARG_VALUE', 'TypeError'); // misspelled option: "did you mean"
    assert.throws(() => make({ hugepages: true }), /did you mean 'hugePages'/, label);
    throwsCode(() => make(5), 'ERR_INVALID_ARG_TYPE', 'TypeError');
    // false (and undefined) is normal pages
    const plain = make({ hugePages: false });
    assert.equal(plain.size ?? plain.length, 4 << 20);
    (plain.close ?? plain.unmap).call(plain);
  }
});

test('hugePages is refused for file mappings and named shared memory: their page size is their file system\'s', (t) => {
  const file = join(tempDir(t), 'f.bin');
  writeFileSync(file, Buffer.alloc(4 << 20));
  throwsCode(() => map(file, { hugePages: true }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  throwsCode(() => map(file, { access: 'write', hugePages: '2MB' }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  const name = uniqueName('huge');
  t.after(() => {
    try {
      SharedMemory.unlink(name);
    } catch {}
  });
  throwsCode(() => SharedMemory.create(name, 4 << 20, { hugePages: true }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  assert.equal(existsSync(`/dev/shm/${name}`), false, 'nothing was created');
  const shm = SharedMemory.anonymous(4096);
  t.after(() => shm.close());
  throwsCode(() => SharedMemory.fromFd(shm.fd, { hugePages: true }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
});

test('a length that is not a whole number of huge pages is ERR_OUT_OF_RANGE, never rounded up', (t) => {
  if (HUGE === undefined) return t.skip('this system has no huge pages');
  for (const len of [1, 4096, HUGE - 1, HUGE + 4096, 3 * HUGE + 1]) {
    throwsCode(() => mapAnonymous(len, { hugePages: true }), 'ERR_OUT_OF_RANGE', 'RangeError');
    throwsCode(() => mapAnonymous(BigInt(len), { hugePages: true, shared: true }), 'ERR_OUT_OF_RANGE', 'RangeError');
    throwsCode(() => SharedMemory.anonymous(len, { hugePages: true }), 'ERR_OUT_OF_RANGE', 'RangeError');
  }
  // The message names the size and the next multiple.
  assert.throws(() => mapAnonymous(HUGE + 1, { hugePages: true }), (err) => err.message.includes(`multiple of the huge page size, ${HUGE}`) && err.message.includes(String(2 * HUGE)));
  if (HUGE === 2 << 20) throwsCode(() => mapAnonymous(HUGE + 4096, { hugePages: '2MB' }), 'ERR_OUT_OF_RANGE', 'RangeError');
});

test('a huge page size the system does not offer is ERR_MMAP_NO_HUGE_PAGES', (t) => {
  if (offers1GB) return t.skip('this system offers 1 GiB pages');
  for (const make of [() => mapAnonymous(1 << 30, { hugePages: '1GB' }), () => SharedMemory.anonymous(1 << 30, { hugePages: '1GB' })]) {
    assert.throws(make, (err) => {
      assert.equal(err.code, 'ERR_MMAP_NO_HUGE_PAGES');
      assert.equal(err.name, 'MmapkitError');
      assert.match(err.message, /does not offer that size/);
      return true;
    });
  }
});

test('with too few huge pages in the pool, mapping is ERR_MMAP_NO_HUGE_PAGES (the ENOMEM as its cause) and leaves nothing', (t) => {
  if (HUGE === undefined) {
    throwsCode(() => mapAnonymous(2 << 20, { hugePages: true }), 'ERR_MMAP_NO_HUGE_PAGES', 'MmapkitError');
    return;
  }
  const p = pool();
  if (available(p) > 1 << 20) return t.skip(`the pool can give ${available(p)} huge pages (nr_overcommit_hugepages ${p.overcommit})`);
  const ask = (available(p) + 1) * HUGE; // one page more than the pool can give: refused when mapping
  const before = hugeMappings().length;
  for (const make of [
    () => mapAnonymous(ask, { hugePages: true }),
    () => mapAnonymous(ask, { hugePages: true, shared: true, populate: true }),
    () => SharedMemory.anonymous(ask, { hugePages: true }),
  ]) {
    assert.throws(make, (err) => {
      assert.equal(err.code, 'ERR_MMAP_NO_HUGE_PAGES', err.message);
      assert.equal(err.name, 'MmapkitError');
      assert.equal(err.cause?.code, 'ENOMEM');
      assert.equal(err.cause?.syscall, 'mmap');
      if (p.total === 0 && p.overcommit === 0) {
        assert.match(err.message, new RegExp(`no huge pages of ${HUGE / (1 << 20)} MiB are reserved \\(vm\\.nr_hugepages is 0`));
      } else {
        assert.match(err.message, /available/);
      }
      assert.match(err.message, /advise\('hugepage'\)/);
      return true;
    });
  }
  assert.equal(hugeMappings().length, before);
  if (p.total === 0) t.diagnostic('vm.nr_hugepages is 0: this is the error users see by default');
});

test('real huge pages: mapAnonymous private, shared and populated use pages of Hugepagesize and give them back on unmap', (t) => {
  const got = reserve(t, 8);
  if (typeof got === 'string') return t.skip(noPool(got));
  const start = available();
  assert.ok(start >= 4, `pool: ${JSON.stringify(pool())}`);
  for (const options of [{ hugePages: true }, { hugePages: true, shared: true }, { hugePages: true, populate: true }, { hugePages: HUGE === 2 << 20 ? '2MB' : true }]) {
    const before = hugeMappings().length;
    const m = mapAnonymous(2 * HUGE, options);
    assert.equal(m.length, 2 * HUGE);
    // Taken from the pool when mapping (reserved), not when touched.
    assert.equal(available(), start - 2, JSON.stringify(options));
    const mine = hugeMappings().slice(before);
    assert.equal(mine.length, 1, JSON.stringify(hugeMappings()));
    assert.equal(mine[0].kernelPageKb, HUGE / 1024);
    assert.equal(mine[0].sizeKb, (2 * HUGE) / 1024);
    // Zero-filled, readable and writable across the page boundary.
    assert.equal(m.buffer.readBigUInt64LE(HUGE - 8), 0n);
    m.buffer.fill(0xa5, HUGE - 100, HUGE + 100);
    assert.equal(m.buffer[HUGE - 1], 0xa5);
    assert.equal(m.buffer[HUGE + 99], 0xa5);
    assert.equal(m.buffer[HUGE + 100], 0);
    assert.equal(m.shared, options.shared === true);
    m.unmap();
    // The whole range went back (Python's mmap leaks it when the length is not a page multiple).
    assert.equal(hugeMappings().length, before);
    assert.equal(available(), start);
  }
  // The pool runs out: one page more than is left is refused, and the error says how many are left.
  const all = mapAnonymous(start * HUGE, { hugePages: true });
  t.after(() => all.unmap());
  assert.throws(() => mapAnonymous(HUGE, { hugePages: true }), (err) => {
    assert.equal(err.code, 'ERR_MMAP_NO_HUGE_PAGES');
    assert.match(err.message, /that takes 1 huge page of .* and 0 are available/);
    return true;
  });
  all.unmap();
  const again = mapAnonymous(HUGE, { hugePages: true });
  again.unmap();
});

test('real huge pages: SharedMemory.anonymous is a hugetlb memfd that a child maps too', (t) => {
  const got = reserve(t, 8);
  if (typeof got === 'string') return t.skip(noPool(got));
  const start = available();
  const shm = SharedMemory.anonymous(2 * HUGE, { hugePages: true });
  t.after(() => shm.close());
  assert.equal(shm.size, 2 * HUGE);
  assert.equal(available(), start - 2);
  const mine = hugeMappings().filter((m) => m.name.startsWith('/memfd:mmapkit'));
  assert.equal(mine.length, 1);
  assert.equal(mine[0].kernelPageKb, HUGE / 1024);
  shm.buffer.write('parent', HUGE - 3, 'latin1');
  const code = `
    import { SharedMemory } from ${JSON.stringify(distUrl)};
    import { readFileSync } from 'node:fs';
    const shm = SharedMemory.inherited();
    const smaps = readFileSync('/proc/self/smaps', 'latin1').split(/\\n(?=[0-9a-f]+-[0-9a-f]+ )/).filter((e) => e.includes('/memfd:mmapkit'));
    const page = /KernelPageSize:\\s+(\\d+) kB/.exec(smaps[0] ?? '')?.[1];
    console.log(JSON.stringify({ size: shm.size, seen: shm.buffer.toString('latin1', ${HUGE - 3}, ${HUGE + 3}), page }));
    shm.buffer.write('child!', ${2 * HUGE - 6}, 'latin1');
    shm.close();
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { ...shm.childOptions({ stdio: 'pipe' }), encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { size: 2 * HUGE, seen: 'parent', page: String(HUGE / 1024) });
  assert.equal(shm.buffer.toString('latin1', 2 * HUGE - 6), 'child!');
  // The child's shared mapping took no pages of its own: the memfd's pages are reserved once.
  assert.equal(available(), start - 2);
  shm.close();
  assert.equal(available(), start);
});

test('real huge pages: resize() shrinks by whole huge pages; growing, part of a page, or shrinking under live views is refused, and every page comes back on unmap', (t) => {
  const got = reserve(t, 8);
  if (typeof got === 'string') return t.skip(noPool(got));
  const start = available();
  const makers = {
    mapAnonymous: () => mapAnonymous(3 * HUGE, { hugePages: true }),
    'mapAnonymous shared': () => mapAnonymous(3 * HUGE, { hugePages: true, shared: true }),
    // map(fd) of a hugetlb memfd: its huge page size is found from the descriptor (statfs)
    'SharedMemory.anonymous().mapping': () => SharedMemory.anonymous(3 * HUGE, { hugePages: true }),
  };
  for (const [what, make] of Object.entries(makers)) {
    const made = make();
    const m = made.mapping ?? made;
    throwsCode(() => m.resize(4 * HUGE), 'ERR_OUT_OF_RANGE', 'RangeError');
    throwsCode(() => m.resize(2 * HUGE + 4096), 'ERR_OUT_OF_RANGE', 'RangeError');
    const view = m.buffer;
    view[0] = 42;
    throwsCode(() => m.resize(2 * HUGE), 'ERR_MMAP_BUSY', 'MmapkitError');
    assert.equal(view.length, 3 * HUGE, `${what}: the refused resize left the view attached`);
    assert.equal(m.length, 3 * HUGE);
    m.resize(3 * HUGE); // the same length: nothing to do, allowed with views alive
    (made.close ?? made.unmap).call(made);
    assert.equal(available(), start, `${what}: every huge page given back`);
  }
  // A shrink with no view alive: whole pages, and unmap() then gives them all back (it failed with
  // EINVAL, leaking the mapping, when the kernel had rounded a partial page up).
  const m = mapAnonymous(3 * HUGE, { hugePages: true });
  m.resize(HUGE);
  assert.equal(m.length, HUGE);
  assert.equal(hugeMappings().filter((x) => x.sizeKb === HUGE / 1024).length >= 1, true);
  m.buffer[HUGE - 1] = 1;
  m.unmap();
  assert.equal(available(), start, 'every huge page given back');
});

test("advise('hugepage') (transparent huge pages) works on anonymous memory without any reserved pool", (t) => {
  if (constants.MADV_HUGEPAGE === undefined) return t.skip('no MADV_HUGEPAGE');
  const m = mapAnonymous(8 << 20);
  t.after(() => m.unmap());
  m.advise('hugepage');
  m.buffer.fill(1);
  m.advise('nohugepage');
  assert.equal(m.buffer[(8 << 20) - 1], 1);
});
