/**
 * Benchmark "file copy": `mmapkit cp` against the other ways to copy a file from a shell or from
 * Node. A 1 GiB file of random bytes (64 MiB with --quick; the random-reads benchmark's file, shared)
 * is copied, with a warm page cache, to a new file next to it by:
 *
 *  - GNU `cp SRC DST` (the reference: the kernel copies page-cache pages with copy_file_range);
 *  - `mmapkit cp SRC DST`: the CLI of this package (`node dist/cli/main.js cp`);
 *  - `fs.copyFileSync(SRC, DST)` in `node -e`;
 *  - `stream.pipeline(fs.createReadStream(SRC), fs.createWriteStream(DST))` in `node -e`;
 *  - bench/c/mmap_copy.c (`cc -O2`): the textbook copy through two whole-file mappings (mmap SRC,
 *    ftruncate + mmap DST, memcpy), skipped when there is no `cc`;
 *  - and, for reference, `node -e 0`: what starting Node costs, with no copy.
 *
 * Every row is a whole process, started with spawnSync and timed from spawn to exit, so that the Node
 * rows pay Node's startup as `mmapkit cp` does (a shell user pays it too); the `node -e 0` row shows
 * how much of each Node row that is. CPU time is the child's user + system time (the cutime and
 * cstime of /proc/self/stat, in clock ticks).
 *
 * Before every timed copy, untimed: the destination is removed, `sync` writes back whatever earlier
 * copies left dirty, and the source is read through (warm page cache; the fraction of its pages
 * resident is recorded). After it, untimed: the copy is compared byte for byte with the source (sizes
 * first), then removed. Methods are interleaved: run r goes through every method once, starting at
 * method r (rotating the order, so that no method always follows the same one). Medians of the runs,
 * min–max, ratios of medians to `cp` and to `fs.copyFileSync`.
 *
 * Targets (issue 5): `mmapkit cp` faster than both Node ways, and within 1.3× of `cp`.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, fstatSync, openSync, readSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { map } from '../dist/index.js';
import { runLine, svgDocument } from './chart.mjs';
import { childCpuSeconds, clockTicks, compileC, ensureDataFile, fmt, fmtRatio, GiB, markdownTable, MiB, nowNs, REPO_DIR, round, stats, warmPageCache } from './lib.mjs';

export const id = 'cp';

export const TARGETS = { withinCp: 1.3 };

const CLI = join(REPO_DIR, 'dist', 'cli', 'main.js');
/** A copy that takes longer than this fails (ms): 1 GiB takes about a second here. */
const COPY_TIMEOUT_MS = 120_000;

const COPY_FILE_JS = "require('fs').copyFileSync(process.argv[1], process.argv[2])";
const STREAM_JS =
  "const fs = require('fs'); require('stream').pipeline(fs.createReadStream(process.argv[1]), fs.createWriteStream(process.argv[2]), " +
  '(e) => { if (e) { console.error(e.message); process.exit(1); } })';

/** The methods, in table order. `argv(src, dst, exe)`; `copies: false` for the reference row. */
const METHODS = [
  { key: 'cp', label: 'GNU `cp SRC DST`', short: 'GNU cp', argv: (s, d) => ['cp', s, d] },
  { key: 'mmapkit', label: '`mmapkit cp SRC DST`', short: 'mmapkit cp', argv: (s, d) => [process.execPath, CLI, 'cp', s, d] },
  { key: 'copyFile', label: '`fs.copyFileSync(SRC, DST)` (`node -e`)', short: 'fs.copyFileSync', argv: (s, d) => [process.execPath, '-e', COPY_FILE_JS, s, d] },
  {
    key: 'stream',
    label: '`stream.pipeline(createReadStream, createWriteStream)` (`node -e`)',
    short: 'stream.pipeline',
    argv: (s, d) => [process.execPath, '-e', STREAM_JS, s, d],
  },
  { key: 'cMmap', label: 'C: two whole-file mappings + `memcpy` (`cc -O2`)', short: 'C: mmap + memcpy', argv: (s, d, exe) => [exe, s, d], needsC: true },
  { key: 'nodeStartup', label: '_reference: `node -e 0` (Node startup alone, no copy)_', short: 'node -e 0 (startup only)', argv: () => [process.execPath, '-e', '0'], copies: false },
];

/** First line of a command's output, or null when it cannot run. */
function firstLine(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.split('\n')[0].trim() : null;
}

/** The file system type of the directory holding `path` (ext4, tmpfs, btrfs, ...). */
function fsType(dir) {
  return firstLine('findmnt', ['-n', '-o', 'FSTYPE', '--target', dir]) ?? firstLine('stat', ['-f', '-c', '%T', dir]) ?? 'unknown';
}

/**
 * Whether `b` holds exactly the bytes of `a`: sizes, then every byte, 8 MiB at a time. Returns null
 * when they are equal, else what differs.
 */
function compareFiles(a, b) {
  const fa = openSync(a, 'r');
  const fb = openSync(b, 'r');
  try {
    const size = fstatSync(fa).size;
    const sizeB = fstatSync(fb).size;
    if (size !== sizeB) return `size ${sizeB}, expected ${size}`;
    const ba = Buffer.allocUnsafe(8 * MiB);
    const bb = Buffer.allocUnsafe(8 * MiB);
    for (let off = 0; off < size; ) {
      const n = readSync(fa, ba, 0, ba.length, off);
      let m = 0;
      while (m < n) {
        const k = readSync(fb, bb, m, n - m, off + m);
        if (k === 0) return `short read at ${off + m}`;
        m += k;
      }
      if (!ba.subarray(0, n).equals(bb.subarray(0, n))) {
        const at = ba.subarray(0, n).findIndex((v, i) => v !== bb[i]);
        return `differs at byte ${off + at}`;
      }
      off += n;
    }
    return null;
  } finally {
    closeSync(fa);
    closeSync(fb);
  }
}

/** Fraction of the pages of `path` in the page cache (mincore through a mapping). */
function residentFraction(path) {
  const m = map(path);
  try {
    const pages = m.residency();
    let n = 0;
    for (const p of pages) n += p & 1;
    return pages.length === 0 ? 1 : n / pages.length;
  } finally {
    m.unmap();
  }
}

/**
 * @param {{ quick: boolean, dataDir: string, log: (s: string) => void }} ctx
 */
export async function run(ctx) {
  const cfg = ctx.quick ? { fileSize: 64 * MiB, runs: 3 } : { fileSize: GiB, runs: 5 };
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: compile the package first (npx tsc -p .)`);
  // The random-reads benchmark's file (same name, same size in the same mode): created once, reused.
  const src = join(ctx.dataDir, `random-${cfg.fileSize / MiB}m.bin`);
  const made = ensureDataFile(src, cfg.fileSize);
  if (made.created) ctx.log(`  created ${src} (${made.seconds.toFixed(1)} s)`);
  const dst = join(ctx.dataDir, 'cp-destination.bin');
  rmSync(dst, { force: true });

  const compiled = compileC('mmap_copy');
  if (compiled.skipped) ctx.log(`  C row skipped: ${compiled.skipped}`);
  const methods = METHODS.filter((m) => !(m.needsC && compiled.skipped));
  const ticks = clockTicks();
  const seconds = Object.fromEntries(methods.map((m) => [m.key, []]));
  const cpu = Object.fromEntries(methods.map((m) => [m.key, []]));
  const failures = {};
  const mismatches = [];
  const resident = [];
  let copiesChecked = 0;

  for (let r = 0; r < cfg.runs; r++) {
    const order = [...methods.slice(r % methods.length), ...methods.slice(0, r % methods.length)];
    for (const m of order) {
      if (failures[m.key]) continue;
      // Untimed preparation: no destination, nothing dirty waiting for writeback, a warm source.
      rmSync(dst, { force: true });
      spawnSync('sync');
      warmPageCache(src);
      resident.push(residentFraction(src));

      const argv = m.argv(src, dst, compiled.exe);
      const cpu0 = childCpuSeconds(ticks);
      const t0 = nowNs();
      const res = spawnSync(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', timeout: COPY_TIMEOUT_MS });
      const elapsed = (nowNs() - t0) / 1e9;
      const cpuUsed = childCpuSeconds(ticks) - cpu0;
      if (res.error || res.status !== 0) {
        const why = res.error?.message ?? (res.status === null ? `killed by ${res.signal}` : `exit status ${res.status}`);
        failures[m.key] = `${why}${res.stderr ? `: ${res.stderr.trim().split('\n')[0]}` : ''}`;
        ctx.log(`  ${m.short} FAILED: ${failures[m.key]}`);
        continue;
      }
      seconds[m.key].push(elapsed);
      cpu[m.key].push(cpuUsed);
      if (m.copies !== false) {
        const diff = compareFiles(src, dst);
        copiesChecked++;
        if (diff !== null) {
          mismatches.push({ method: m.key, run: r, diff });
          ctx.log(`  ${m.short}: the copy is wrong (${diff})`);
        }
      }
    }
    rmSync(dst, { force: true });
    ctx.log(`  run ${r + 1}/${cfg.runs}: ${methods.map((m) => `${m.short} ${seconds[m.key].at(-1)?.toFixed(3) ?? '–'} s`).join(', ')}`);
  }

  const results = {};
  for (const m of methods) {
    if (seconds[m.key].length === 0) continue;
    const s = stats(seconds[m.key]);
    results[m.key] = {
      seconds: s,
      cpuSeconds: stats(cpu[m.key]),
      gibPerSecond: m.copies === false ? null : round(cfg.fileSize / GiB / s.median, 3),
    };
  }
  const med = (key) => results[key]?.seconds.median;
  const ratios = Object.fromEntries(
    Object.keys(results)
      .filter((key) => key !== 'nodeStartup')
      .map((key) => [key, { overCp: ratio(med(key), med('cp')), overCopyFile: ratio(med(key), med('copyFile')) }]),
  );
  // met: null when a row the target needs is missing (failed).
  const judged = (keys, ok) => (keys.every((key) => med(key) !== undefined) ? ok() : null);
  const targets = {
    fasterThanNode: {
      met: judged(['mmapkit', 'copyFile', 'stream'], () => med('mmapkit') < med('copyFile') && med('mmapkit') < med('stream')),
      overCopyFile: ratio(med('mmapkit'), med('copyFile')),
      overStream: ratio(med('mmapkit'), med('stream')),
    },
    withinCp: {
      limit: TARGETS.withinCp,
      met: judged(['mmapkit', 'cp'], () => med('mmapkit') / med('cp') <= TARGETS.withinCp),
      overCp: ratio(med('mmapkit'), med('cp')),
    },
  };
  return {
    id,
    config: {
      ...cfg,
      src,
      dst,
      fsType: fsType(ctx.dataDir),
      cp: firstLine('cp', ['--version']),
      cc: compiled.cc ?? null,
      clockTicksPerSecond: ticks,
    },
    results,
    ratios,
    targets,
    failures,
    verification: { copiesChecked, mismatches },
    residentFractionMin: round(Math.min(...resident), 4),
    checksumsMatch: mismatches.length === 0,
    failed: Object.keys(failures).length > 0,
    cSkipped: compiled.skipped ?? null,
  };
}

function ratio(a, b) {
  return a > 0 && b > 0 ? round(a / b, 3) : null;
}

function sizeText(bytes) {
  return bytes >= GiB ? `${bytes / GiB} GiB` : `${bytes / MiB} MiB`;
}

export function render(res) {
  const { results: r, config: cfg, targets: t } = res;
  const rows = [];
  for (const m of METHODS) {
    const x = r[m.key];
    if (x === undefined) {
      if (res.failures[m.key]) rows.push([m.label, 'failed', '–', '–', '–', '–', '–']);
      continue;
    }
    const s = x.seconds;
    const q = res.ratios[m.key];
    const bold = m.key === 'mmapkit' ? (v) => `**${v}**` : (v) => v;
    rows.push([
      bold(m.label),
      bold(fmt(s.median)),
      `${fmt(s.min)}–${fmt(s.max)}`,
      x.gibPerSecond === null ? '–' : fmt(x.gibPerSecond),
      fmt(x.cpuSeconds.median),
      q ? fmtRatio(q.overCp) : '–',
      q ? fmtRatio(q.overCopyFile) : '–',
    ]);
  }
  const table = markdownTable(['Method (a whole process each)', 's (median)', 'min–max', 'GiB/s', 'CPU s (median)', '÷ cp', '÷ fs.copyFile'], rows);
  const startup = r.nodeStartup?.seconds.median;
  const mk = r.mmapkit?.seconds.median;
  const cpMed = r.cp?.seconds.median;
  const met = (ok) => (ok === null ? 'not judged (a row it needs failed)' : ok ? 'met' : 'NOT met');
  const notes = [
    `${sizeText(cfg.fileSize)} file of random bytes on ${cfg.fsType === 'unknown' ? 'a file system of unknown type' : cfg.fsType}, copied to a new file in the same directory; ${cfg.runs} interleaved runs (each run goes through every method once, the starting method rotating), median and min–max of the wall time from spawn to exit. ` +
      'Before each copy, untimed: the destination is removed, `sync`, and the source is read through so that its pages are in the page cache ' +
      `(at least ${(res.residentFractionMin * 100).toFixed(1)}% resident when a copy started). CPU = the process's user + system time (clock ticks of 1/${cfg.clockTicksPerSecond} s).`,
    'Every row is a whole process, as a shell user runs it: the Node rows (`mmapkit cp`, `fs.copyFileSync` and the stream in `node -e`) include starting Node, which the `node -e 0` row measures alone. ' +
      'No row flushes the copy to the disk (no fsync, no msync): each leaves dirty pages in the page cache, as `cp` does.',
    `Every copy checked after its run, untimed: size, then every byte compared with the source (${res.verification.copiesChecked} copies): ` +
      (res.verification.mismatches.length === 0
        ? 'all identical.'
        : `**${res.verification.mismatches.length} wrong**: ${res.verification.mismatches.map((x) => `${x.method} run ${x.run + 1}: ${x.diff}`).join('; ')}.`),
    `How each copies: ${cfg.cp ?? '`cp`'} uses \`copy_file_range\` (the kernel copies page-cache pages to page-cache pages); \`mmapkit cp\` maps the source 128 MiB at a time and \`write()\`s each window to the destination (docs/cli.md); ` +
      '`fs.copyFileSync` is libuv\'s `uv_fs_copyfile`, where the kernel copies too (`copy_file_range`, else `sendfile`); the stream reads and writes 64 KiB chunks through JavaScript; the C program maps both files whole and `memcpy`s (every destination page is a page fault).',
  ];
  notes.push(
    `**Target (mmapkit cp faster than both Node ways): ${met(t.fasterThanNode.met)}**` +
      (t.fasterThanNode.met === null
        ? '.'
        : ` — ${fmtRatio(t.fasterThanNode.overCopyFile)} the time of \`fs.copyFileSync\`, ${fmtRatio(t.fasterThanNode.overStream)} the time of the stream (medians, whole processes).`),
    `**Target (mmapkit cp within ${t.withinCp.limit}× of cp): ${met(t.withinCp.met)}**` +
      (t.withinCp.met === null
        ? '.'
        : ` — ${fmt(mk)} s vs ${fmt(cpMed)} s = ${fmtRatio(t.withinCp.overCp)}.` +
          (startup !== undefined ? ` Without Node's startup (median of \`node -e 0\` subtracted): ${fmt(mk - startup)} s = ${fmtRatio((mk - startup) / cpMed)}.` : '')),
  );
  for (const [key, why] of Object.entries(res.failures ?? {})) notes.push(`${METHODS.find((m) => m.key === key)?.short ?? key} failed: ${why}.`);
  if (res.cSkipped) notes.push(`C row skipped: ${res.cSkipped}.`);
  return { title: `File copy, ${sizeText(cfg.fileSize)}, warm page cache`, table, notes };
}

/** Bar colours: mmapkit blue, GNU cp (the reference) dark grey, the others grey, Node's startup light. */
const COLORS = { mmapkit: '#2b6cb0', cp: '#4a5568', nodeStartup: '#e2e8f0' };

/**
 * The chart of the copy: docs/cp-benchmark.svg (or DIR/cp-benchmark.svg with `--out=DIR`), seconds
 * per method with min–max whiskers and the 1.3× cp target. Returns { path, svg } or null.
 */
export function chart(results, meta) {
  const res = results[id];
  if (res === undefined) return null;
  const r = res.results;
  const cpMed = r.cp?.seconds.median;
  const rows = METHODS.filter((m) => r[m.key] !== undefined || res.failures[m.key]).map((m) => ({
    key: m.key,
    value: r[m.key]?.seconds.median ?? 0,
    min: r[m.key]?.seconds.min,
    max: r[m.key]?.seconds.max,
  }));
  const svg = svgDocument(
    [
      {
        title: `Copying a ${sizeText(res.config.fileSize)} file, warm page cache (shorter is better)`,
        subtitle: `seconds per copy, a whole process each: median of ${res.config.runs} interleaved runs, whiskers min–max; dashed: the target, ${TARGETS.withinCp}× cp`,
        unit: 's',
        scale: 'linear',
        rows,
        label: (key) => METHODS.find((m) => m.key === key)?.short ?? key,
        color: (key) => COLORS[key] ?? '#a0aec0',
        refs: cpMed ? [{ value: TARGETS.withinCp * cpMed, label: `${TARGETS.withinCp}× cp`, dashed: true }] : [],
      },
    ],
    ['mmapkit file-copy benchmark (bench/cp.mjs, see docs/benchmarks.md). Blue: mmapkit cp; dark grey: GNU cp; light: Node startup alone.', runLine(meta)],
  );
  return { path: join(REPO_DIR, 'docs', 'cp-benchmark.svg'), svg };
}
