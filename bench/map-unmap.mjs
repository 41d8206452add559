/**
 * Benchmark 2: what a mapping costs to make and to drop. Each case does map + unmap N times (µs per
 * pair), next to fs.openSync + fs.closeSync of the same file (the cheapest thing a file API can do)
 * and to the same system calls from C (bench/c/map_unmap.c, the floor).
 *
 * Cases are interleaved: every run goes through all of them once, the C floor included, so drift of
 * the machine hits them alike.
 */
import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { map, mapAnonymous } from '../dist/index.js';
import { compileC, ensureDataFile, fmt, fmtRatio, interleaved, markdownTable, round, runC, stats, warmPageCache } from './lib.mjs';

export const id = 'mapUnmap';

/** Table rows: key, label, and which C case is its floor. */
const ROWS = [
  { key: 'openClose', label: '`fs.openSync` + `fs.closeSync` (4 KiB file) — reference', c: 'open_close' },
  { key: 'pathSmall', label: '`map(path)` + `unmap()`, 4 KiB file', c: 'path_small' },
  { key: 'pathSmallBuffer', label: '`map(path)` + `.buffer` + `unmap()`, 4 KiB file (memory not touched)', c: 'path_small' },
  { key: 'pathSmallRead', label: '`map(path)` + read 1 byte through `.buffer` + `unmap()`, 4 KiB file', c: 'path_small_touch' },
  { key: 'pathBig', label: '`map(path)` + `unmap()`, 1 GiB file (no populate)', c: 'path_big' },
  { key: 'fdSmall', label: '`map(fd)` + `unmap()`, 4 KiB file (fd opened once)', c: 'fd_small' },
  { key: 'fdBig', label: '`map(fd)` + `unmap()`, 1 GiB file (fd opened once)', c: 'fd_big' },
  { key: 'anon1m', label: '`mapAnonymous(1 MiB)` + `unmap()`', c: 'anon_1m' },
  { key: 'pathBigPopulate', label: '`map(path, { populate: true })` + `unmap()`, 1 GiB file', c: 'populate_big' },
];

const C_LABELS = {
  open_close: 'C: open + close',
  path_small: 'C: open + fstat + mmap + close + munmap, 4 KiB',
  path_small_touch: 'C: the same + read 1 byte before munmap, 4 KiB',
  path_big: 'C: open + fstat + mmap + close + munmap, 1 GiB',
  fd_small: 'C: mmap + munmap on an open fd, 4 KiB',
  fd_big: 'C: mmap + munmap on an open fd, 1 GiB',
  anon_1m: 'C: mmap(1 MiB, MAP_ANONYMOUS) + munmap',
  populate_big: 'C: open + fstat + mmap(PROT_READ, MAP_POPULATE) + mprotect(RW) + close + munmap, 1 GiB',
};

/**
 * @param {{ quick: boolean, dataDir: string, log: (s: string) => void, bigFile?: string }} ctx
 */
export async function run(ctx) {
  const cfg = ctx.quick
    ? { iterations: 500, populateIterations: 2, runs: 3, bigSize: 64 * 1024 * 1024 }
    : { iterations: 2_000, populateIterations: 10, runs: 7, bigSize: 1024 * 1024 * 1024 };
  // The C floor runs its populate case iterations/200 times: keep the JavaScript count the same.
  cfg.populateIterations = Math.max(1, Math.floor(cfg.iterations / 200));
  const small = join(ctx.dataDir, 'small-4k.bin');
  ensureDataFile(small, 4096);
  // The big file is the one of the random-reads benchmark (same size in the same mode): reuse it.
  const big = join(ctx.dataDir, `random-${cfg.bigSize / (1024 * 1024)}m.bin`);
  ensureDataFile(big, cfg.bigSize);
  // populate: true reads every page of it: keep that a page-cache operation, not disk I/O.
  warmPageCache(big);
  const fdSmall = openSync(small, 'r');
  const fdBig = openSync(big, 'r');

  const cases = {
    openClose: (n) => {
      for (let i = 0; i < n; i++) closeSync(openSync(small, 'r'));
    },
    pathSmall: (n) => {
      for (let i = 0; i < n; i++) map(small).unmap();
    },
    pathSmallBuffer: (n) => {
      let sum = 0;
      for (let i = 0; i < n; i++) {
        const m = map(small);
        sum += m.buffer.length;
        m.unmap();
      }
      return sum;
    },
    pathSmallRead: (n) => {
      let sum = 0;
      for (let i = 0; i < n; i++) {
        const m = map(small);
        sum += m.buffer[0];
        m.unmap();
      }
      return sum;
    },
    pathBig: (n) => {
      for (let i = 0; i < n; i++) map(big).unmap();
    },
    fdSmall: (n) => {
      for (let i = 0; i < n; i++) map(fdSmall).unmap();
    },
    fdBig: (n) => {
      for (let i = 0; i < n; i++) map(fdBig).unmap();
    },
    anon1m: (n) => {
      for (let i = 0; i < n; i++) mapAnonymous(1024 * 1024).unmap();
    },
    pathBigPopulate: (n) => {
      for (let i = 0; i < n; i++) map(big, { populate: true }).unmap();
    },
  };
  // Interleaved runs (every run goes through all cases), with a full garbage collection before each
  // batch so that no case pays for mappings that another one dropped: since unmap() keeps the
  // addresses reserved until the garbage collector releases them, the cost of a pair depends on how
  // many dropped mappings are still waiting (see the batch-size rows of benchmark 3).
  // The C floor runs once per run too (one run of each of its cases per process).
  const compiled = compileC('map_unmap');
  if (compiled.skipped) ctx.log(`  C floor skipped: ${compiled.skipped}`);
  const cRaw = {};
  const us = await interleaved(
    { ...cases, pathBigPopulate: { fn: cases.pathBigPopulate, iterations: cfg.populateIterations } },
    {
      iterations: cfg.iterations,
      runs: cfg.runs,
      unit: 'us',
      gc: true,
      afterRun: () => {
        if (compiled.skipped) return;
        for (const [k, v] of Object.entries(runC(compiled.exe, [small, big, cfg.iterations, 1]))) (cRaw[k] ??= []).push(...v);
      },
    },
  );
  closeSync(fdSmall);
  closeSync(fdBig);
  const c = compiled.skipped ? null : Object.fromEntries(Object.entries(cRaw).map(([k, v]) => [k, stats(v)]));

  return {
    id,
    config: { ...cfg, small, big },
    us,
    c,
    ratios: Object.fromEntries(
      ROWS.map((row) => [
        row.key,
        {
          overOpenClose: round(us[row.key].median / us.openClose.median, 2),
          overC: c && row.c ? round(us[row.key].median / c[row.c].median, 2) : null,
        },
      ]),
    ),
    cSkipped: compiled.skipped ?? null,
  };
}

export function render(res) {
  const { us, c, config: cfg } = res;
  const ref = us.openClose.median;
  const rows = ROWS.map((row) => {
    const s = us[row.key];
    const floor = c && row.c ? c[row.c].median : undefined;
    const label = cfg.bigSize === 1024 ** 3 ? row.label : row.label.replace('1 GiB', `${cfg.bigSize / 1024 ** 2} MiB`);
    return [label, fmt(s.median), `${fmt(s.min)}–${fmt(s.max)}`, fmtRatio(s.median / ref), floor ? fmtRatio(s.median / floor) : '–'];
  });
  if (c) {
    for (const [key, label] of Object.entries(C_LABELS)) {
      const s = c[key];
      const l = cfg.bigSize === 1024 ** 3 ? label : label.replace('1 GiB', `${cfg.bigSize / 1024 ** 2} MiB`);
      rows.push([l, fmt(s.median), `${fmt(s.min)}–${fmt(s.max)}`, fmtRatio(s.median / ref), '1×']);
    }
  }
  const table = markdownTable(['Operation', 'µs/pair (median)', 'min–max', '÷ openSync+closeSync', '÷ C floor'], rows);
  const notes = [
    `${cfg.iterations.toLocaleString('en-US')} pairs per run (${cfg.populateIterations} for populate) in one synchronous batch, after a full garbage collection; ${cfg.runs} interleaved runs, median. ` +
      'The C floor makes the same system calls with the same flags (MAP_PRIVATE, PROT_READ|PROT_WRITE); "÷ C floor" compares a row with the C row of its kind ' +
      '(path rows with open+fstat+mmap+close+munmap, the read-1-byte row with its C twin that reads 1 byte, fd rows with mmap+munmap on an open fd, mapAnonymous with anonymous mmap+munmap, populate with its C twin). ' +
      'Where `unmap()` leaves the munmap to the garbage collector (a PROT_NONE placeholder holds the addresses until then), that munmap happens in the collection before the next batch and is not in the figures; the C rows include theirs.',
  ];
  if (res.cSkipped) notes.push(`C floor skipped: ${res.cSkipped}.`);
  return { title: 'map + unmap', table, notes };
}
