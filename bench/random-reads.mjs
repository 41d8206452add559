/**
 * Benchmark 1: random 8-byte reads at 4 KiB-aligned positions of a large file, warm page cache.
 *
 * The same precomputed positions (seeded mulberry32, bench/lib.mjs) are read
 *   - through a mmapkit mapping (`map(path)`, access 'read'), in several JavaScript ways;
 *   - with `fs.readSync(fd, buf8, 0, 8, pos)`;
 *   - from C through mmap (the floor) and through pread (the system-call floor of fs.readSync).
 * Every pass sums the uint64 (little-endian) values it reads modulo 2^64, and every variant must give
 * the same checksum: all read the same bytes, and no read can be optimized away (the sum is used).
 *
 * Numbers: ns per read, median of several passes, after an untimed warm-up pass (JIT and page-table
 * faults). The first pass over a fresh mapping, faults included, is reported separately, and so are
 * the main variants once an ArrayBuffer has been detached in the process (see run()).
 */
import { spawnSync } from 'node:child_process';
import { closeSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { map } from '../dist/index.js';
import { collectGarbage, compileC, ensureDataFile, fmt, fmtRatio, makePositions, markdownTable, nowNs, round, runC, stats, warmPageCache } from './lib.mjs';

const TWO32 = 4294967296;

// ---- The pass functions. One function per variant so each stays monomorphic for the JIT. ----------
// Number-returning variants sum the low and high 32-bit halves separately in doubles (exact while
// count < 2^21) and combine them into the uint64 sum at the end (see toChecksum).

/** Uint32Array over the mapping's memory: two element loads per read. Needs 4-byte-aligned positions. */
function passTyped(u32, pos) {
  let lo = 0;
  let hi = 0;
  for (let i = 0; i < pos.length; i++) {
    const w = pos[i] >>> 2;
    lo += u32[w];
    hi += u32[w + 1];
  }
  return [lo, hi];
}

/**
 * passTyped's twin for the in-cache rows (its own function, so that each keeps its own JIT feedback),
 * going over the positions IN_CACHE_REPS times: an L1-resident pass is short, and a short pass is at
 * the mercy of one preemption.
 */
const IN_CACHE_REPS = 8;
function passTypedInCache(u32, pos) {
  let lo = 0;
  let hi = 0;
  for (let rep = 0; rep < IN_CACHE_REPS; rep++) {
    for (let i = 0; i < pos.length; i++) {
      const w = pos[i] >>> 2;
      lo += u32[w];
      hi += u32[w + 1];
    }
  }
  return [lo, hi];
}

/** Buffer#readUInt32LE twice. */
function passReadUInt32LE(buf, pos) {
  let lo = 0;
  let hi = 0;
  for (let i = 0; i < pos.length; i++) {
    const p = pos[i];
    lo += buf.readUInt32LE(p);
    hi += buf.readUInt32LE(p + 4);
  }
  return [lo, hi];
}

/** DataView#getUint32 twice (little-endian). */
function passDataView(dv, pos) {
  let lo = 0;
  let hi = 0;
  for (let i = 0; i < pos.length; i++) {
    const p = pos[i];
    lo += dv.getUint32(p, true);
    hi += dv.getUint32(p + 4, true);
  }
  return [lo, hi];
}

/** Buffer#readBigUInt64LE: the one-call way, one BigInt per read. */
function passReadBigUInt64LE(buf, pos) {
  let sum = 0n;
  for (let i = 0; i < pos.length; i++) sum = BigInt.asUintN(64, sum + buf.readBigUInt64LE(pos[i]));
  return sum;
}

/** `mapping.buffer` read on every access instead of once (what naive code does). */
function passGetterEachRead(m, pos) {
  let lo = 0;
  let hi = 0;
  for (let i = 0; i < pos.length; i++) {
    const p = pos[i];
    const b = m.buffer;
    lo += b.readUInt32LE(p);
    hi += b.readUInt32LE(p + 4);
  }
  return [lo, hi];
}

/** fs.readSync of 8 bytes at each position into one small Buffer. */
function passReadSync(fd, pos) {
  const small = Buffer.alloc(8);
  let lo = 0;
  let hi = 0;
  for (let i = 0; i < pos.length; i++) {
    if (readSync(fd, small, 0, 8, pos[i]) !== 8) throw new Error('short read');
    lo += small.readUInt32LE(0);
    hi += small.readUInt32LE(4);
  }
  return [lo, hi];
}

function toChecksum(result) {
  if (typeof result === 'bigint') return result.toString();
  const [lo, hi] = result;
  return BigInt.asUintN(64, BigInt(lo) + BigInt(hi) * BigInt(TWO32)).toString();
}

/** Time one pass: ns per read and the checksum. */
function timed(fn, target, pos) {
  const reads = pos.length * (fn === passTypedInCache ? IN_CACHE_REPS : 1);
  const t0 = nowNs();
  const r = fn(target, pos);
  const ns = (nowNs() - t0) / reads;
  return { ns, checksum: toChecksum(r) };
}

export const id = 'randomReads';

/** Variants in table order; `key` indexes the result's `ns`. */
const ROWS = [
  { key: 'typed', label: 'mapped: `Uint32Array` over `mapping.buffer`, 2 loads' },
  { key: 'dataView', label: 'mapped: `DataView#getUint32(pos, true)` ×2' },
  { key: 'readUInt32LE', label: 'mapped: `buf.readUInt32LE(pos)` ×2' },
  { key: 'readBigUInt64LE', label: 'mapped: `buf.readBigUInt64LE(pos)`' },
  { key: 'getterEachRead', label: 'mapped: `mapping.buffer.readUInt32LE(pos)` ×2 (getter on every read)' },
  { key: 'firstPass', label: 'mapped, first pass over a fresh mapping (`Uint32Array`; page faults included)' },
  { key: 'typedInCache', label: 'mapped: `Uint32Array`, positions folded into the first 16 KiB (L1 cache hits: the cost of the JavaScript alone)' },
  { key: 'typedAfterDetach', label: 'mapped: `Uint32Array`, after an ArrayBuffer was detached in the process (any `unmap()` of a mapping with a view)' },
  { key: 'dataViewAfterDetach', label: 'mapped: `DataView`, after an ArrayBuffer was detached' },
  { key: 'readUInt32LEAfterDetach', label: 'mapped: `buf.readUInt32LE(pos)` ×2, after an ArrayBuffer was detached' },
  { key: 'typedInCacheAfterDetach', label: 'mapped: `Uint32Array` in L1 cache (first 16 KiB), after an ArrayBuffer was detached' },
  { key: 'readSync', label: '`fs.readSync(fd, buf8, 0, 8, pos)`' },
  { key: 'cMmap', label: 'C: load through mmap (floor)' },
  { key: 'cFirstPass', label: 'C: first pass over a fresh mapping (page faults included)' },
  { key: 'cPread', label: 'C: `pread(fd, b, 8, pos)` (system-call floor of fs.readSync)' },
];

/** The JavaScript variant the issue's target is checked with: the fastest steady-state mapped one. */
const MAPPED_KEYS = ['typed', 'dataView', 'readUInt32LE', 'readBigUInt64LE'];
export const TARGET_RATIO = 15;

/**
 * Runs the measurement in a fresh Node process (this file, as a script). A fresh V8 matters: the first
 * time any ArrayBuffer is detached in a process (mmapkit's unmap() detaches the views of a mapping),
 * V8 drops an optimization for good and every typed-array and DataView access of the process gets
 * slower. The child measures first with no ArrayBuffer ever detached, then after one was.
 *
 * @param {{ quick: boolean, dataDir: string, log: (s: string) => void }} ctx
 */
export async function run(ctx) {
  const cfg = ctx.quick
    ? { fileSize: 64 * 1024 * 1024, count: 200_000, rounds: 5, fsRuns: 3, detachRounds: 3, seed: 0x5eed }
    : { fileSize: 1024 * 1024 * 1024, count: 1_000_000, rounds: 15, fsRuns: 7, detachRounds: 9, seed: 0x5eed };
  if (cfg.count >= 2 ** 21) throw new RangeError('count must stay below 2^21 for exact double sums');
  const file = join(ctx.dataDir, `random-${cfg.fileSize / (1024 * 1024)}m.bin`);
  const made = ensureDataFile(file, cfg.fileSize);
  ctx.log(`  data file ${file}: ${made.created ? `created in ${made.seconds.toFixed(1)} s` : 'reused'}`);
  const compiled = compileC('random_reads');
  if (compiled.skipped) ctx.log(`  C floor skipped: ${compiled.skipped}`);

  const child = spawnSync(
    process.execPath,
    ['--expose-gc', fileURLToPath(import.meta.url), JSON.stringify({ ...cfg, file, exe: compiled.exe ?? null })],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 * 1024 * 1024 },
  );
  if (child.status !== 0) throw new Error(`random-reads child failed with status ${child.status}`);
  const measured = JSON.parse(child.stdout);

  const ns = measured.ns;
  const best = MAPPED_KEYS.reduce((x, y) => (ns[y].median < ns[x].median ? y : x));
  const ratio = (k) => round(ns.readSync.median / ns[k].median, 2);
  return {
    id,
    config: { ...cfg, file, createdFile: made.created, ...measured.config },
    checksum: measured.checksum,
    checksumsMatch: measured.mismatches.length === 0,
    mismatches: measured.mismatches,
    ns,
    bestMapped: best,
    ratioReadSyncOverMapped: Object.fromEntries([...MAPPED_KEYS, 'typedAfterDetach', 'dataViewAfterDetach', 'readUInt32LEAfterDetach'].map((k) => [k, ratio(k)])),
    target: {
      ratio: TARGET_RATIO,
      achieved: ratio(best),
      met: ratio(best) >= TARGET_RATIO,
      variant: best,
      achievedBestPasses: round(ns.readSync.min / ns[best].min, 2),
      achievedAfterDetach: ratio('typedAfterDetach'),
      metAfterDetach: ratio('typedAfterDetach') >= TARGET_RATIO,
    },
    cSkipped: compiled.skipped ?? null,
    compiler: compiled.cc ?? null,
  };
}

/** The measurement proper, in the child process. Returns samples (ns per read) and checksums. */
async function measure(cfg) {
  const { file } = cfg;
  const warm = warmPageCache(file);
  process.stderr.write(`  page cache warmed: ${warm.seconds.toFixed(2)} s (${warm.gbPerSecond.toFixed(2)} GB/s)\n`);
  const pos = makePositions(cfg.seed, cfg.count, cfg.fileSize);
  // The same random sequence folded into the first 16 KiB of the file, one 64-byte line per page
  // index (not page-aligned: 4 KiB-aligned addresses would all compete for one L1 set): every read
  // hits the L1 cache, so the pass measures what JavaScript costs per read, memory aside.
  // A quarter of the positions, IN_CACHE_REPS times over: 2 million reads a pass at most, as many as
  // the double sums stay exact for.
  const posInCache = pos.subarray(0, Math.floor(cfg.count / 4)).map((p) => ((p >>> 12) * 64) & 0x3fc0);

  // The long-lived mapping that the steady-state variants read.
  const m = map(file);
  const resident = m.residency();
  let residentPages = 0;
  for (const b of resident) residentPages += b;
  const buf = m.buffer;
  const u32 = new Uint32Array(buf.buffer, buf.byteOffset, buf.length >>> 2);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.length);
  const fd = openSync(file, 'r');
  const variants = [
    { key: 'typed', fn: passTyped, target: u32 },
    { key: 'dataView', fn: passDataView, target: dv },
    { key: 'readUInt32LE', fn: passReadUInt32LE, target: buf },
    { key: 'readBigUInt64LE', fn: passReadBigUInt64LE, target: buf },
    { key: 'getterEachRead', fn: passGetterEachRead, target: m },
  ];
  const samples = Object.fromEntries(ROWS.map((r) => [r.key, []]));
  const mismatches = [];
  const check = (key, checksum, reference) => {
    if (checksum !== reference && !mismatches.includes(key)) mismatches.push(key);
  };

  // Untimed warm-up: the page tables of the long-lived mapping, and the JIT. Each pass function is
  // called a few times, so that it is compiled as a whole: a function optimized only on-stack (in the
  // middle of its first long loop) may start its next call unoptimized.
  const warmJit = (fn, target, p) => {
    for (let i = 0; i < 4; i++) fn(target, p.subarray(0, 50_000));
  };
  const reference = timed(passTyped, u32, pos).checksum;
  warmJit(passTyped, u32, pos);
  warmJit(passTypedInCache, u32, posInCache);
  const referenceInCache = timed(passTypedInCache, u32, posInCache).checksum;
  for (const v of variants) {
    warmJit(v.fn, v.target, pos);
    check(v.key, timed(v.fn, v.target, pos).checksum, reference);
  }
  warmJit(passReadSync, fd, pos);
  check('readSync', timed(passReadSync, fd, pos.subarray(0, 20_000)).checksum, timed(passTyped, u32, pos.subarray(0, 20_000)).checksum);

  // Phase 1, no ArrayBuffer detached yet. Rounds interleave every variant, the C floor included, so
  // slow drift of the machine (this is a VM) hits them all alike. The fresh mappings of the
  // first-pass rows stay mapped until the phase ends: unmapping them would detach their views.
  const fresh = [];
  for (let r = 0; r < cfg.rounds; r++) {
    await collectGarbage(); // the BigInt variant's garbage is not collected during someone else's pass
    // fs.readSync in fsRuns of the rounds, spread evenly over the run; first in its round.
    const withFs = Math.floor(((r + 1) * cfg.fsRuns) / cfg.rounds) > Math.floor((r * cfg.fsRuns) / cfg.rounds);
    if (withFs) {
      const t = timed(passReadSync, fd, pos);
      check('readSync', t.checksum, reference);
      samples.readSync.push(t.ns);
    }
    {
      const f = map(file);
      fresh.push(f);
      const fb = f.buffer;
      const t = timed(passTyped, new Uint32Array(fb.buffer, fb.byteOffset, fb.length >>> 2), pos);
      check('firstPass', t.checksum, reference);
      samples.firstPass.push(t.ns);
    }
    for (const v of variants) {
      const t = timed(v.fn, v.target, pos);
      check(v.key, t.checksum, reference);
      samples[v.key].push(t.ns);
    }
    {
      const t = timed(passTypedInCache, u32, posInCache);
      check('typedInCache', t.checksum, referenceInCache);
      samples.typedInCache.push(t.ns);
    }
    if (cfg.exe) {
      const c = runC(cfg.exe, [file, cfg.seed, cfg.count, 1, withFs ? 1 : 0]);
      check('C', c.checksum, reference);
      if (!c.consistent) check('C (passes disagree)', 'x', reference);
      samples.cMmap.push(...c.mmapNs);
      samples.cFirstPass.push(c.firstPassNs);
      samples.cPread.push(...c.preadNs);
    }
  }

  // Phase 2: unmap the fresh mappings, which detaches their views, as any unmap() does. From now on
  // the process runs without V8's "no ArrayBuffer was ever detached" assumption.
  for (const f of fresh) f.unmap();
  const after = [
    { key: 'typedAfterDetach', fn: passTyped, target: u32 },
    { key: 'dataViewAfterDetach', fn: passDataView, target: dv },
    { key: 'readUInt32LEAfterDetach', fn: passReadUInt32LE, target: buf },
  ];
  // Warm up again: the detach deoptimized code that relied on the assumption.
  for (const v of after) {
    warmJit(v.fn, v.target, pos);
    check(v.key, timed(v.fn, v.target, pos).checksum, reference);
  }
  warmJit(passTypedInCache, u32, posInCache);
  check('typedInCacheAfterDetach', timed(passTypedInCache, u32, posInCache).checksum, referenceInCache);
  for (let r = 0; r < cfg.detachRounds; r++) {
    await collectGarbage();
    for (const v of after) {
      const t = timed(v.fn, v.target, pos);
      check(v.key, t.checksum, reference);
      samples[v.key].push(t.ns);
    }
    const t = timed(passTypedInCache, u32, posInCache);
    check('typedInCacheAfterDetach', t.checksum, referenceInCache);
    samples.typedInCacheAfterDetach.push(t.ns);
  }
  closeSync(fd);
  m.unmap();

  const ns = {};
  for (const [k, v] of Object.entries(samples)) ns[k] = v.length ? stats(v) : null;
  return {
    config: {
      pageCacheWarm: { seconds: round(warm.seconds), gbPerSecond: round(warm.gbPerSecond) },
      residentFractionBeforeTiming: residentPages / resident.length,
    },
    checksum: reference,
    mismatches,
    ns,
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const result = await measure(JSON.parse(process.argv[2]));
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

/** Markdown for this benchmark: a heading line, the table, notes. */
export function render(res) {
  const { ns, config: c } = res;
  const fsNs = ns.readSync.median;
  const floor = ns.cMmap?.median;
  const rows = ROWS.filter((r) => ns[r.key]).map((r) => {
    const s = ns[r.key];
    const runs = s.runs;
    return [
      r.key === res.bestMapped ? `**${r.label}**` : r.label,
      fmt(s.median),
      `${fmt(s.min)}–${fmt(s.max)}`,
      String(runs),
      fmtRatio(fsNs / s.median),
      floor ? fmtRatio(s.median / floor) : '–',
    ];
  });
  const table = markdownTable(
    ['Method', 'ns/read (median)', 'min–max', 'passes', 'fs.readSync ÷ this', 'this ÷ C mmap'],
    rows,
  );
  const t = res.target;
  const size = c.fileSize >= 1024 ** 3 ? `${c.fileSize / 1024 ** 3} GiB` : `${c.fileSize / 1024 ** 2} MiB`;
  const notes = [
    `${c.count.toLocaleString('en-US')} random 4 KiB-aligned positions (mulberry32, seed ${c.seed}) in a ${size} file, ` +
      `${(c.residentFractionBeforeTiming * 100).toFixed(1)}% of its pages in the page cache before timing. ` +
      `One pass reads all positions; ns/read = pass time ÷ ${c.count.toLocaleString('en-US')}.`,
    `Checksum (uint64 sum of the values read) ${res.checksum}: ${res.checksumsMatch ? 'identical for every variant, C included (the in-cache rows agree with each other)' : `**MISMATCH** in ${res.mismatches.join(', ')}`}.`,
    `**Target (mapping ≥ ${t.ratio}× faster than fs.readSync): ${t.met ? 'met' : 'NOT met'}** — ` +
      `fs.readSync ÷ fastest mapped JS (\`${t.variant}\`) = ${fmtRatio(t.achieved)} (medians; ${fmtRatio(t.achievedBestPasses)} between the best passes of each); ` +
      `with \`readUInt32LE\` ${fmtRatio(res.ratioReadSyncOverMapped.readUInt32LE)}, with \`readBigUInt64LE\` ${fmtRatio(res.ratioReadSyncOverMapped.readBigUInt64LE)}. ` +
      `Once an ArrayBuffer has been detached in the process (after the first \`unmap()\` of a mapping whose Buffer was used): ` +
      `${fmtRatio(t.achievedAfterDetach)} with \`Uint32Array\` (${t.metAfterDetach ? 'met' : 'not met'}).`,
    'The "after … detached" rows: V8 assumes that no ArrayBuffer was ever detached until one is; from then on, for the rest of the process, ' +
      'optimized code checks for detachment on typed-array and DataView accesses. mmapkit\'s `unmap()` detaches the views of the mapping (so that no view outlives the memory), ' +
      'so a process that has unmapped a mapping whose Buffer it used reads at the "after" speed. The other mapped rows are measured before that, in a fresh process.',
  ];
  if (res.cSkipped) notes.push(`C floor skipped: ${res.cSkipped}.`);
  return { title: `Random 8-byte reads, ${size} file, warm page cache`, table, notes };
}
