/**
 * Huge pages: random 8-byte reads over a large anonymous mapping (1 GiB by default) with
 *   - 4 KiB pages (`advise('nohugepage')`, so that a system with THP "always" does not turn it into
 *     the next row);
 *   - transparent huge pages (`advise('hugepage')` before the memory is touched; how much of the
 *     mapping got them is read from /proc/self/smaps, AnonHugePages);
 *   - hugetlb pages (`mapAnonymous(size, { hugePages: true })`), where the pool has enough pages.
 * All three hold the same bytes and are read at the same seeded random 8-byte-aligned positions, two
 * Uint32 loads per read, once independent (the CPU overlaps them) and once chained (each position
 * depends on the value read before: the full latency, page walk included); every pass sums what it
 * read and the sums must agree. The variants are interleaved (every round runs each once, in a
 * rotating order), so drift of a loaded machine hits them alike; figures are medians of ns per read,
 * with the ratio to 4 KiB pages, and the time to map and first fill each mapping.
 *
 *   node bench/huge-pages.mjs [--size=MiB] [--reads=N] [--rounds=N] [--reserve]
 *
 * --reserve (root): when the pool of the default huge page size has too few free pages for the size,
 * raise vm.nr_hugepages for the run and put it back at the end. Without it, a pool too small for the
 * size leaves the hugetlb row out (the size is not shrunk: all rows must read the same span).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { constants, mapAnonymous } from '../dist/index.js';
import { MiB, fmt, fmtRatio, markdownTable, mulberry32, nowNs, round, stats } from './lib.mjs';

const args = Object.fromEntries(process.argv.slice(2).map((a) => { const [k, v] = a.replace(/^--/, '').split('='); return [k, v ?? 'true']; }));
const SIZE = Number(args.size ?? 1024) * MiB;
const READS = Number(args.reads ?? 1 << 21);
const ROUNDS = Number(args.rounds ?? 11);

const HUGE = Number(/^Hugepagesize:\s+(\d+) kB$/m.exec(readFileSync('/proc/meminfo', 'latin1'))?.[1] ?? 0) * 1024;
const POOL = `/sys/kernel/mm/hugepages/hugepages-${HUGE / 1024}kB`;
const readPool = (f) => Number(readFileSync(`${POOL}/${f}`, 'latin1'));
const available = () => readPool('free_hugepages') - readPool('resv_hugepages');

/** The smaps entry (header "start-end ...") that appeared between two readings, with its fields. */
function smapsEntries() {
  return readFileSync('/proc/self/smaps', 'latin1').split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/);
}
function field(entry, name) {
  return Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(entry)?.[1] ?? NaN);
}
function newEntry(before) {
  const seen = new Set(before.map((e) => e.split(' ', 1)[0]));
  return smapsEntries().find((e) => !seen.has(e.split(' ', 1)[0]) && field(e, 'Size') * 1024 === SIZE)?.split(' ', 1)[0];
}
function entryOf(range) {
  return smapsEntries().find((e) => e.startsWith(`${range} `));
}

/** One pass: READS random 8-byte reads (two Uint32 loads), summed so that none can be dropped. */
function pass(u32, pos) {
  let lo = 0;
  let hi = 0;
  for (let i = 0; i < pos.length; i++) {
    const w = pos[i];
    lo += u32[w];
    hi += u32[w + 1];
  }
  return lo * 4294967296 + hi;
}

/**
 * The same reads one after the other: each position depends on the value read before (a bit of it
 * moves the next read by 8 bytes), so the CPU cannot overlap them and each pays the whole latency,
 * TLB miss and page walk included.
 */
function chain(u32, pos) {
  let lo = 0;
  let hi = 0;
  let v = 0;
  for (let i = 0; i < pos.length; i++) {
    const w = pos[i] ^ (v & 2);
    v = u32[w];
    lo += v;
    hi += u32[w + 1];
  }
  return lo * 4294967296 + hi;
}

// ---- Set up --------------------------------------------------------------------------------------
let restorePool;
if (HUGE > 0 && args.reserve !== undefined && available() < SIZE / HUGE) {
  const before = readPool('nr_hugepages');
  try {
    writeFileSync(`${POOL}/nr_hugepages`, String(before + SIZE / HUGE - available()));
    restorePool = () => writeFileSync(`${POOL}/nr_hugepages`, String(before));
    process.on('exit', restorePool);
  } catch (err) {
    console.error(`--reserve: cannot raise ${POOL}/nr_hugepages (${err.code})`);
  }
}

const pattern = Buffer.alloc(64 * 1024);
{
  const rng = mulberry32(1);
  for (let i = 0; i < pattern.length; i += 4) pattern.writeUInt32LE(rng(), i);
}
const rng = mulberry32(42);
const words = SIZE / 4;
const positions = new Uint32Array(READS);
for (let i = 0; i < READS; i++) positions[i] = (rng() % (words / 2)) * 2; // 8-byte aligned word index

const variants = [];
function add(key, label, make) {
  const before = smapsEntries();
  const t0 = nowNs();
  let m;
  try {
    m = make();
  } catch (err) {
    console.error(`${label}: skipped (${err.code}: ${err.message.split('. ')[0]})`);
    return;
  }
  m.buffer.fill(pattern); // touch every page: faults (and THP collapse) happen here, not in the timed passes
  const setupMs = (nowNs() - t0) / 1e6;
  const range = newEntry(before);
  const u32 = new Uint32Array(m.buffer.buffer, m.buffer.byteOffset, words);
  variants.push({ key, label, m, u32, range, setupMs, ns: [] });
}
add('4k', '4 KiB pages (`advise(\'nohugepage\')`)', () => {
  const m = mapAnonymous(SIZE);
  if (constants.MADV_NOHUGEPAGE !== undefined) m.advise('nohugepage');
  return m;
});
add('thp', 'transparent huge pages (`advise(\'hugepage\')`)', () => {
  const m = mapAnonymous(SIZE);
  m.advise('hugepage');
  return m;
});
add('hugetlb', `hugetlb pages (\`hugePages: true\`, ${HUGE / MiB} MiB)`, () => mapAnonymous(SIZE, { hugePages: true }));

// ---- Run: interleaved rounds after one untimed warm-up pass each ---------------------------------
const KINDS = [
  { key: 'ns', fn: pass, title: 'independent reads (the CPU overlaps them)' },
  { key: 'chainNs', fn: chain, title: 'dependent reads (each waits for the one before)' },
];
const checksums = {};
for (const k of KINDS) {
  for (const v of variants) {
    v[k.key] = [];
    const sum = k.fn(v.u32, positions);
    checksums[k.key] ??= sum;
    if (sum !== checksums[k.key]) throw new Error(`${v.key}: checksum ${sum} != ${checksums[k.key]}`);
  }
}
for (let r = 0; r < ROUNDS; r++) {
  for (const k of KINDS) {
    for (let i = 0; i < variants.length; i++) {
      const v = variants[(i + r) % variants.length];
      const t0 = nowNs();
      const sum = k.fn(v.u32, positions);
      const ns = nowNs() - t0;
      if (sum !== checksums[k.key]) throw new Error(`${v.key}: checksum ${sum} != ${checksums[k.key]}`);
      v[k.key].push(ns / READS);
    }
  }
}

// ---- Report --------------------------------------------------------------------------------------
console.log(`Random 8-byte reads over ${SIZE / MiB} MiB of anonymous memory: ${READS} reads per pass, ${ROUNDS} interleaved rounds (median ns per read).`);
console.log(`THP: ${readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'latin1').trim()}; hugetlb pool: ${HUGE > 0 ? `${readPool('nr_hugepages')} pages of ${HUGE / MiB} MiB` : 'none'}.`);
for (const k of KINDS) {
  const base = stats(variants[0][k.key]).median;
  const rows = variants.map((v) => {
    const s = stats(v[k.key]);
    const e = v.range === undefined ? undefined : entryOf(v.range);
    const thp = e === undefined ? NaN : field(e, 'AnonHugePages') / (SIZE / 1024);
    const page = e === undefined ? NaN : field(e, 'KernelPageSize');
    const backing = v.key === 'hugetlb' ? `${page} KiB pages` : `${round(100 * (Number.isNaN(thp) ? 0 : thp), 1)}% in THP`;
    return [v.label, fmt(s.median), `${fmt(s.min)}–${fmt(s.max)}`, fmtRatio(base / s.median), backing, fmt(v.setupMs)];
  });
  console.log(`\n${k.title}:\n`);
  console.log(markdownTable(['pages', 'ns/read (median)', 'min–max', 'speed vs 4 KiB', 'backing', 'map + fill (ms)'], rows));
}
if (!variants.some((v) => v.key === 'hugetlb')) console.log('\n(no hugetlb row: the pool has too few pages; run as root with --reserve)');
for (const v of variants) v.m.unmap();
restorePool?.();
