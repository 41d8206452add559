/**
 * Shared helpers of the benchmarks: the seeded position generator (mirrored in bench/c/*.c), data
 * files, page-cache warming, timing, statistics, compiling the C floors, formatting.
 */
import { spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readFileSync, readSync, realpathSync, renameSync, statSync, writeSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
export const REPO_DIR = join(BENCH_DIR, '..');
export const OUT_DIR = join(BENCH_DIR, 'out');

/** Where {@link compileC} puts executables: bench/out/bin, or DIR/bin under `run.mjs --out=DIR`. */
let binDir = join(OUT_DIR, 'bin');

/** Make {@link compileC} write its executables into `dir` (bench/run.mjs does, for --out). */
export function setBinDir(dir) {
  binDir = dir;
}

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;
export const PAGE = 4096;

/**
 * mulberry32: a small 32-bit PRNG that is easy to reproduce exactly in C (bench/c/random_reads.c).
 * Returns a function giving uint32 values.
 */
export function mulberry32(seed) {
  let a = seed | 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t = (t + Math.imul(t ^ (t >>> 7), t | 61)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** `count` page-aligned byte offsets into a file of `fileSize` bytes: (rng() % pages) * 4096. */
export function makePositions(seed, count, fileSize) {
  const pages = Math.floor(fileSize / PAGE);
  if (pages * PAGE > 2 ** 32) throw new RangeError('positions are stored as uint32: file must be <= 4 GiB');
  const rng = mulberry32(seed);
  const out = new Uint32Array(count);
  for (let i = 0; i < count; i++) out[i] = (rng() % pages) * PAGE;
  return out;
}

/**
 * Make sure `path` is a file of exactly `size` bytes with random content; reuse it when it already
 * is. Written through fs in 8 MiB chunks (to a temporary name, renamed when complete).
 */
export function ensureDataFile(path, size) {
  if (existsSync(path) && statSync(path).size === size) return { path, size, created: false, seconds: 0 };
  mkdirSync(dirname(path), { recursive: true });
  const t0 = process.hrtime.bigint();
  const tmp = `${path}.partial`;
  const chunk = Buffer.allocUnsafe(Math.min(8 * MiB, size));
  const fd = openSync(tmp, 'w');
  try {
    for (let done = 0; done < size; ) {
      const n = Math.min(chunk.length, size - done);
      randomFillSync(chunk, 0, n);
      for (let off = 0; off < n; ) off += writeSync(fd, chunk, off, n - off, done + off);
      done += n;
    }
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  return { path, size, created: true, seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
}

/** Read the whole file once so that its pages are in the page cache. Returns seconds and GB/s. */
export function warmPageCache(path) {
  const t0 = process.hrtime.bigint();
  const fd = openSync(path, 'r');
  const size = fstatSync(fd).size;
  const chunk = Buffer.allocUnsafe(8 * MiB);
  let done = 0;
  try {
    while (done < size) {
      const n = readSync(fd, chunk, 0, chunk.length, done);
      if (n === 0) break;
      done += n;
    }
  } finally {
    closeSync(fd);
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return { seconds, gbPerSecond: size / seconds / 1e9 };
}

/** Nanoseconds since an arbitrary origin, as a number. */
export function nowNs() {
  return Number(process.hrtime.bigint());
}

/** min, median, max, mean of an array of numbers. */
export function stats(values) {
  const s = [...values].sort((a, b) => a - b);
  const n = s.length;
  const median = n % 2 === 1 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
  return { median, min: s[0], max: s[n - 1], runs: n, values: values.map((v) => round(v, 4)) };
}

export function round(v, digits = 3) {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

/**
 * Time `fn(iterations)` `runs` times after `warmup` untimed calls; `fn` does `iterations` operations.
 * Returns per-operation stats in `unit` ('ns' or 'us').
 */
export function timePerOp(fn, { iterations, runs, warmup = 1, unit = 'us' }) {
  const div = unit === 'ns' ? 1 : 1e3;
  for (let i = 0; i < warmup; i++) fn(Math.max(1, Math.ceil(iterations / 10)));
  const per = [];
  for (let r = 0; r < runs; r++) {
    const t0 = nowNs();
    fn(iterations);
    per.push((nowNs() - t0) / div / iterations);
  }
  return stats(per);
}

/**
 * A full garbage collection, then two turns of the event loop so that FinalizationRegistry callbacks
 * (mmapkit releases dropped mappings from one) have run. Needs `--expose-gc` (bench/run.mjs restarts
 * itself with it); a no-op without it.
 */
export async function collectGarbage() {
  if (typeof globalThis.gc !== 'function') return false;
  globalThis.gc();
  await tick();
  await tick();
  return true;
}

/**
 * Time several cases in interleaved runs: each run times every case once (one batch of its
 * `iterations`), yielding to the event loop between batches, so that slow drift of the machine and
 * garbage left by one case spread evenly. `cases` maps a key to `fn(iterations)` or to
 * `{ fn, iterations }`; `afterRun(r)`, when given, runs after each run (e.g. a C floor, so that it is
 * interleaved too). With `gc: true`, a full garbage collection precedes every timed batch, so that
 * no batch pays for the garbage of another. Returns per-operation stats for each key.
 */
export async function interleaved(cases, { iterations, runs, unit = 'us', warmup = true, afterRun, gc = false }) {
  const div = unit === 'ns' ? 1 : 1e3;
  const list = Object.entries(cases).map(([key, c]) =>
    typeof c === 'function' ? { key, fn: c, iterations } : { key, fn: c.fn, iterations: c.iterations ?? iterations },
  );
  if (warmup) for (const c of list) c.fn(Math.max(1, Math.ceil(c.iterations / 10)));
  const per = Object.fromEntries(list.map((c) => [c.key, []]));
  for (let r = 0; r < runs; r++) {
    for (const c of list) {
      if (gc) await collectGarbage();
      else await tick();
      const t0 = nowNs();
      c.fn(c.iterations);
      per[c.key].push((nowNs() - t0) / div / c.iterations);
    }
    if (afterRun) await afterRun(r);
  }
  return Object.fromEntries(Object.entries(per).map(([k, v]) => [k, stats(v)]));
}

/** Whether a C compiler is available as `cc`. */
export function haveCc() {
  const r = spawnSync('cc', ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.split('\n')[0] : null;
}

/**
 * Compile bench/c/<name>.c with `cc -O2` into bench/out/bin/<name> (or the directory given to
 * {@link setBinDir}). Returns the executable path, or `{ skipped: reason }` when cc is missing or the
 * compilation fails.
 */
export function compileC(name) {
  const cc = haveCc();
  if (cc === null) return { skipped: '`cc` not found' };
  const src = join(BENCH_DIR, 'c', `${name}.c`);
  const exe = join(binDir, name);
  mkdirSync(dirname(exe), { recursive: true });
  const r = spawnSync('cc', ['-O2', '-std=gnu11', '-Wall', '-o', exe, src], { encoding: 'utf8' });
  if (r.status !== 0) return { skipped: `cc -O2 ${name}.c failed: ${(r.stderr || '').trim().split('\n')[0]}` };
  return { exe, cc };
}

/** Run a compiled C floor and parse its one-line JSON output. */
export function runC(exe, args) {
  const r = spawnSync(exe, args.map(String), { encoding: 'utf8', maxBuffer: 16 * MiB });
  if (r.status !== 0) throw new Error(`${exe} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** The `version` of the package's package.json. */
export function packageVersion() {
  return JSON.parse(readFileSync(join(REPO_DIR, 'package.json'), 'utf8')).version;
}

/**
 * The commit measured, and the library files (src/, native/) that differ from it; null when the
 * package is not a git checkout of its own (an installed package: node_modules/mmapkit inside some
 * other project's repository must not report that project's commit).
 */
export function codeVersion() {
  const git = (...args) => spawnSync('git', args, { cwd: REPO_DIR, encoding: 'utf8' });
  const top = git('rev-parse', '--show-toplevel');
  if (top.status !== 0 || realpathSync(top.stdout.trim()) !== realpathSync(REPO_DIR)) return null;
  const head = git('rev-parse', '--short', 'HEAD');
  if (head.status !== 0) return null;
  const status = git('status', '--porcelain', '--', 'src', 'native', 'binding.gyp');
  const changed = status.stdout.split('\n').filter(Boolean).map((l) => l.slice(3));
  return { commit: head.stdout.trim(), uncommitted: changed };
}

/** Describe this machine for the results. */
export function machineInfo() {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    memGiB: round(os.totalmem() / GiB, 1),
    kernel: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    v8: process.versions.v8,
    cc: haveCc(),
    loadAverage: os.loadavg().map((v) => round(v, 2)),
    version: packageVersion(),
    code: codeVersion(),
  };
}

/** Format a number with a sensible number of significant digits. */
export function fmt(v) {
  if (v === undefined || v === null || Number.isNaN(v)) return '–';
  const a = Math.abs(v);
  if (a >= 1000) return Math.round(v).toLocaleString('en-US');
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  return v.toFixed(3);
}

/** A ratio as `12.3×`. */
export function fmtRatio(v) {
  if (v === undefined || v === null || !Number.isFinite(v)) return '–';
  return `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)}×`;
}

/** A markdown table from a header row and rows of cells. */
export function markdownTable(header, rows, align) {
  const al = align ?? header.map((_, i) => (i === 0 ? 'l' : 'r'));
  const sep = al.map((a) => (a === 'r' ? '---:' : a === 'c' ? ':---:' : '---'));
  const line = (cells) => `| ${cells.join(' | ')} |`;
  return [line(header), line(sep), ...rows.map(line)].join('\n');
}

/** Let the event loop turn (FinalizationRegistry callbacks, WeakRef targets kept during the job). */
export function tick() {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Children's CPU time (user + system) so far, in seconds: cutime + cstime of /proc/self/stat. */
export function childCpuSeconds(ticksPerSecond) {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  // Fields after "pid (comm) ": state is field 3, cutime field 16, cstime field 17.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[13]) + Number(fields[14])) / ticksPerSecond;
}

/** Clock ticks per second (`getconf CLK_TCK`; 100 when it cannot tell). */
export function clockTicks() {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(r.stdout?.trim());
  return r.status === 0 && n > 0 ? n : 100;
}

/**
 * Interleaved runs: `runs` times, every variant once (so that drifting machine load spreads over all
 * of them), each after an event-loop turn. `runOne(v)` resolves a sample; `describe(sample)` is the
 * progress text after "run r/N key:". A failing run is logged and counted, not fatal. Resolves
 * `{ samples: { key: [sample, ...] }, failures: { key: [message, ...] } }` (only keys that failed).
 */
export async function runInterleaved(ctx, variants, runs, runOne, describe) {
  const samples = Object.fromEntries(variants.map((v) => [v.key, []]));
  const failures = {};
  for (let r = 0; r < runs; r++) {
    for (const v of variants) {
      await tick();
      const t0 = performance.now();
      try {
        const s = await runOne(v);
        samples[v.key].push(s);
        ctx.log(`  run ${r + 1}/${runs} ${v.key}: ${describe(s)} [${((performance.now() - t0) / 1000).toFixed(1)} s]`);
      } catch (err) {
        (failures[v.key] ??= []).push(String(err.message ?? err));
        ctx.log(`  run ${r + 1}/${runs} ${v.key}: FAILED: ${err.message ?? err}`);
      }
    }
  }
  return { samples, failures };
}
