/**
 * Benchmark "pipe between two processes": `mmapkit send NAME` / `mmapkit recv NAME` (a named
 * shared-memory channel, src/cli/send.ts and recv.ts) against the same bytes through a named FIFO and
 * through a Unix domain socket. A 1 GiB file of random bytes (64 MiB with --quick; the random-reads
 * benchmark's file, shared) goes from a writer process to a reader process, two ways of wiring each:
 *
 *  - file:  `WRITER < FILE` and `READER > /dev/null` (the writer reads the file itself);
 *  - pipes: `cat FILE | WRITER` and `READER | wc -c` (a producer and a consumer in pipelines, the way
 *           `producer | mmapkit send jobs` and `mmapkit recv jobs | consumer` are used).
 *
 * The ways (WRITER / READER):
 *
 *  - mmapkit: `node dist/cli/main.js send NAME` / `node dist/cli/main.js recv NAME`;
 *  - FIFO:    `cat > FIFO` / `cat FIFO` (mkfifo; GNU cat, 128 KiB reads and writes);
 *  - socket:  `node bench/send-recv/socket-peer.mjs connect PATH` / `... listen PATH` (Node streams).
 *
 * Every run spawns the two processes of a way at the same moment (each as `bash -c '...'`) and is
 * timed from the spawn to the exit of both: Node's startup is in the mmapkit and socket rows, as a
 * shell user pays it; two `node -e 0` started together are timed as a reference. CPU = user +
 * system time of every process of the run (cutime and cstime of /proc/self/stat). Runs are
 * interleaved: run r goes through every way and wiring once, starting at a rotating position. Before
 * each run, untimed: the file is read through (warm page cache). In the pipes wiring, `wc -c` must
 * count the file's size (checked every run); once per way, untimed, the reader's output goes through
 * `sha256sum` and must match the file's.
 *
 * Target (issue 5): send | recv faster than both the FIFO and the socket.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { childCpuSeconds, clockTicks, ensureDataFile, fmt, fmtRatio, GiB, markdownTable, MiB, nowNs, REPO_DIR, round, stats, warmPageCache } from './lib.mjs';

export const id = 'sendRecv';

/** Ratios within this of 1 are a tie, not a win (run-to-run spread of the medians). */
const TIE = 0.05;

const CLI = join(REPO_DIR, 'dist', 'cli', 'main.js');
const SOCKET_PEER = join(REPO_DIR, 'bench', 'send-recv', 'socket-peer.mjs');
/** A run (both processes) that takes longer than this is killed and counts as failed (ms). */
const RUN_TIMEOUT_MS = 120_000;

/** Quote for bash. */
const q = (s) => `'${String(s).replaceAll("'", "'\\''")}'`;

/** The ways, in table order: the writer's and the reader's command (bash), given a run's names. */
const WAYS = [
  {
    key: 'mmapkit',
    label: '`mmapkit send NAME` → `mmapkit recv NAME`',
    short: 'send | recv',
    writer: (n) => `exec ${q(process.execPath)} ${q(CLI)} send ${q(n.shm)}`,
    reader: (n) => `exec ${q(process.execPath)} ${q(CLI)} recv ${q(n.shm)}`,
  },
  {
    key: 'fifo',
    label: 'named FIFO: `cat > FIFO` → `cat FIFO`',
    short: 'FIFO (cat)',
    writer: (n) => `exec cat > ${q(n.fifo)}`,
    reader: (n) => `exec cat ${q(n.fifo)}`,
  },
  {
    key: 'socket',
    label: 'Unix socket: Node `stream.pipeline` both ends',
    short: 'Unix socket (Node)',
    writer: (n) => `exec ${q(process.execPath)} ${q(SOCKET_PEER)} connect ${q(n.socket)}`,
    reader: (n) => `exec ${q(process.execPath)} ${q(SOCKET_PEER)} listen ${q(n.socket)}`,
  },
];

/** How the two processes are wired: WRITER's input and READER's output. */
const WIRINGS = [
  {
    key: 'file',
    label: '`WRITER < FILE`, `READER > /dev/null`',
    writer: (cmd, file) => `${cmd} < ${q(file)}`,
    reader: (cmd) => `${cmd} > /dev/null`,
  },
  {
    key: 'pipes',
    label: '`cat FILE | WRITER`, `READER | wc -c`',
    // `exec` of a pipeline's last part is not possible: wrap it instead.
    writer: (cmd, file) => `cat ${q(file)} | (${cmd})`,
    reader: (cmd) => `(${cmd}) | wc -c`,
    counts: true,
  },
];


/**
 * Run `bash -c script` in a process group of its own (so that killing it kills its pipeline too);
 * resolves { code, signal, stdout, stderr } at its exit. `kill()` kills the group.
 */
function bash(script, deadline) {
  const child = spawn('bash', ['-c', script], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  let exited = false;
  const kill = () => {
    try {
      if (!exited) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  const timer = setTimeout(kill, Math.max(0, deadline - Date.now()));
  return {
    kill,
    done: new Promise((resolve) => {
      child.once('error', (err) => {
        clearTimeout(timer);
        resolve({ code: null, signal: null, stdout, stderr: String(err) });
      });
      child.once('exit', () => {
        exited = true;
      });
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal, stdout, stderr });
      });
    }),
  };
}

/**
 * One transfer: the reader and the writer spawned together; resolves when both have exited, with the
 * wall time, or a failure. When one fails, the other is killed after a moment (it may wait forever
 * for a partner that is gone: `mmapkit recv` without a sender does).
 */
async function transfer(readerScript, writerScript) {
  const deadline = Date.now() + RUN_TIMEOUT_MS;
  const t0 = nowNs();
  const reader = bash(readerScript, deadline);
  const writer = bash(writerScript, deadline);
  const killOtherOnFailure = (other) => (x) => {
    if (x.code !== 0) setTimeout(other.kill, 2000).unref();
    return x;
  };
  const [r, w] = await Promise.all([reader.done.then(killOtherOnFailure(writer)), writer.done.then(killOtherOnFailure(reader))]);
  const seconds = (nowNs() - t0) / 1e9;
  const failed = [['reader', r], ['writer', w]]
    .filter(([, x]) => x.code !== 0)
    .map(([who, x]) => `${who} ${x.code === null ? `killed (${x.signal ?? 'error'})` : `exit ${x.code}`}${x.stderr ? `: ${x.stderr.trim().split('\n')[0]}` : ''}`);
  return { seconds, failed: failed.length > 0 ? failed.join('; ') : null, stdout: r.stdout };
}

/** sha256 of a file, read in 8 MiB pieces. */
function fileSha256(path) {
  const hash = createHash('sha256');
  const fd = openSync(path, 'r');
  const buf = Buffer.allocUnsafe(8 * MiB);
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      hash.update(buf.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

/**
 * @param {{ quick: boolean, dataDir: string, log: (s: string) => void }} ctx
 */
export async function run(ctx) {
  const cfg = ctx.quick ? { fileSize: 64 * MiB, runs: 3 } : { fileSize: GiB, runs: 5 };
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: compile the package first (npx tsc -p .)`);
  const file = join(ctx.dataDir, `random-${cfg.fileSize / MiB}m.bin`);
  const made = ensureDataFile(file, cfg.fileSize);
  if (made.created) ctx.log(`  created ${file} (${made.seconds.toFixed(1)} s)`);
  const work = mkdtempSync(join(tmpdir(), 'mmapkit-bench-sr-'));
  const fifo = join(work, 'fifo');
  const mk = spawnSync('mkfifo', [fifo], { encoding: 'utf8' });
  if (mk.status !== 0) throw new Error(`mkfifo failed: ${mk.stderr}`);
  let serial = 0;
  const names = () => ({ shm: `mmapkit-bench-sr-${process.pid}-${serial++}`, fifo, socket: join(work, `sock-${serial}`) });
  const cleanShm = (n) => rmSync(`/dev/shm/${n.shm}`, { force: true });

  const ticks = clockTicks();
  const failures = {};
  const verification = { sha256: {}, expected: null, countsChecked: 0, countMismatches: [] };
  try {
    // Untimed: every way delivers the file's exact bytes once (reader | sha256sum).
    verification.expected = fileSha256(file);
    for (const way of WAYS) {
      const n = names();
      const res = await transfer(`(${way.reader(n)}) | sha256sum`, WIRINGS[0].writer(way.writer(n), file));
      cleanShm(n);
      const got = res.stdout.split(' ')[0];
      verification.sha256[way.key] = res.failed ?? (got === verification.expected ? 'identical' : `differs: ${got}`);
      if (res.failed || got !== verification.expected) {
        failures[way.key] = `check run: ${res.failed ?? 'the bytes differ'}`;
        ctx.log(`  ${way.short}: ${failures[way.key]}`);
      }
    }

    const cases = WIRINGS.flatMap((wiring) => WAYS.map((way) => ({ way, wiring, key: `${wiring.key}.${way.key}` })));
    const seconds = Object.fromEntries(cases.map((c) => [c.key, []]));
    const cpu = Object.fromEntries(cases.map((c) => [c.key, []]));
    const startup = [];
    for (let r = 0; r < cfg.runs; r++) {
      const order = [...cases.slice(r % cases.length), ...cases.slice(0, r % cases.length)];
      for (const c of order) {
        if (failures[c.way.key] || failures[c.key]) continue;
        warmPageCache(file);
        const n = names();
        const cpu0 = childCpuSeconds(ticks);
        const res = await transfer(c.wiring.reader(c.way.reader(n)), c.wiring.writer(c.way.writer(n), file));
        const cpuUsed = childCpuSeconds(ticks) - cpu0;
        cleanShm(n);
        if (res.failed) {
          failures[c.key] = res.failed;
          ctx.log(`  ${c.way.short} (${c.wiring.key}) FAILED: ${res.failed}`);
          continue;
        }
        if (c.wiring.counts) {
          verification.countsChecked++;
          const count = Number(res.stdout.trim());
          if (count !== cfg.fileSize) verification.countMismatches.push({ case: c.key, run: r, count });
        }
        seconds[c.key].push(res.seconds);
        cpu[c.key].push(cpuUsed);
      }
      // The reference: starting two Node processes at the same moment, as every Node row does.
      const t0 = nowNs();
      await Promise.all([0, 1].map(() => new Promise((resolve) => spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' }).once('close', resolve))));
      startup.push((nowNs() - t0) / 1e9);
      ctx.log(
        `  run ${r + 1}/${cfg.runs}: ${cases.map((c) => `${c.way.short} (${c.wiring.key}) ${seconds[c.key].at(-1)?.toFixed(3) ?? '–'} s`).join(', ')}`,
      );
    }

    const startupStats = stats(startup);
    const results = {};
    for (const wiring of WIRINGS) {
      results[wiring.key] = {};
      for (const way of WAYS) {
        const key = `${wiring.key}.${way.key}`;
        if (seconds[key].length === 0) continue;
        const s = stats(seconds[key]);
        // The two Node processes of a row start at the same moment: the reference pair comes off.
        const withoutStartup = way.key === 'fifo' ? s.median : s.median - startupStats.median;
        results[wiring.key][way.key] = {
          seconds: s,
          cpuSeconds: stats(cpu[key]),
          mibPerSecond: round(cfg.fileSize / MiB / s.median, 1),
          mibPerSecondWithoutStartup: withoutStartup > 0 ? round(cfg.fileSize / MiB / withoutStartup, 1) : null,
        };
      }
    }
    const ratios = {};
    const targets = {};
    for (const wiring of WIRINGS) {
      const x = results[wiring.key];
      const med = (k) => x[k]?.seconds.median;
      // Speed ratio: how many times faster send | recv is (the other's time / ours).
      ratios[wiring.key] = {
        overFifo: med('mmapkit') && med('fifo') ? round(med('fifo') / med('mmapkit'), 3) : null,
        overSocket: med('mmapkit') && med('socket') ? round(med('socket') / med('mmapkit'), 3) : null,
      };
      targets[wiring.key] = {
        fasterThanBoth: med('mmapkit') !== undefined && med('mmapkit') < (med('fifo') ?? Infinity) && med('mmapkit') < (med('socket') ?? Infinity),
        ...ratios[wiring.key],
      };
    }
    return {
      id,
      config: { ...cfg, file, cat: firstLine('cat', ['--version']), clockTicksPerSecond: ticks },
      results,
      nodeStartup: startupStats,
      ratios,
      targets,
      failures,
      verification,
    };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** First line of a command's output, or null when it cannot run. */
function firstLine(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.split('\n')[0].trim() : null;
}

function sizeText(bytes) {
  return bytes >= GiB ? `${bytes / GiB} GiB` : `${bytes / MiB} MiB`;
}

export function render(res) {
  const { config: cfg } = res;
  const rows = [];
  for (const wiring of WIRINGS) {
    for (const way of WAYS) {
      const x = res.results[wiring.key]?.[way.key];
      const key = `${wiring.key}.${way.key}`;
      // A '|' in a table cell must be escaped, also inside a code span (GitHub markdown).
      const label = `${way.label}, ${wiring.label}`.replaceAll('|', '\\|');
      if (x === undefined) {
        if (res.failures[key] || res.failures[way.key]) rows.push([label, 'failed', '–', '–', '–', '–', '–', '–']);
        continue;
      }
      const ours = res.results[wiring.key].mmapkit?.seconds.median;
      const bold = way.key === 'mmapkit' ? (v) => `**${v}**` : (v) => v;
      rows.push([
        bold(label),
        bold(fmt(x.seconds.median)),
        `${fmt(x.seconds.min)}–${fmt(x.seconds.max)}`,
        bold(fmt(x.mibPerSecond)),
        way.key === 'fifo' ? '–' : fmt(x.mibPerSecondWithoutStartup),
        fmt(x.cpuSeconds.median),
        ours ? fmtRatio(x.seconds.median / ours) : '–',
      ]);
    }
  }
  const table = markdownTable(
    ['Way, wiring (two processes each)', 's (median)', 'min–max', 'MiB/s', 'MiB/s without Node startup', 'CPU s (median)', 'time ÷ send \\| recv'],
    rows,
  );
  const met = (ok) => (ok ? 'met' : 'NOT met');
  const v = res.verification;
  const notes = [
    `${sizeText(cfg.fileSize)} of random bytes (${cfg.file.split('/').pop()}, warm page cache) from a writer process to a reader process; ${cfg.runs} interleaved runs, median and min–max of the wall time from spawning both to the exit of both. ` +
      `MiB/s = size ÷ median time. "Without Node startup": the median time of two \`node -e 0\` started at the same moment (${fmt(res.nodeStartup.median)} s here) taken off the row's time. CPU = user + system time of every process of the run.`,
    'send | recv: the sender reads its standard input straight into a slot of the channel (64 slots of 64 KiB by default), the receiver writes each message to its standard output straight from the slot; ' +
      `the FIFO is GNU \`cat\` at both ends (${cfg.cat ?? 'cat'}); the socket is Node's \`stream.pipeline\` at both ends (bench/send-recv/socket-peer.mjs, 256 KiB reads of stdin).`,
    `Checks: once per way, untimed, the reader's output through \`sha256sum\` against the file's: ${Object.entries(v.sha256).map(([k, s]) => `${WAYS.find((w) => w.key === k)?.short ?? k} ${s}`).join(', ')}. ` +
      `In the pipes wiring, \`wc -c\` counted the file's size in ${v.countsChecked - v.countMismatches.length} of ${v.countsChecked} runs` +
      (v.countMismatches.length ? ` (**wrong**: ${v.countMismatches.map((m) => `${m.case} run ${m.run + 1}: ${m.count}`).join('; ')}).` : '.'),
  ];
  for (const wiring of WIRINGS) {
    const t = res.targets[wiring.key];
    if (t === undefined) continue;
    // Faster needs a margin: medians still move by several percent from run to run, so within 5% is a tie.
    const faster = t.overFifo !== null && t.overSocket !== null && t.overFifo > 1 + TIE && t.overSocket > 1 + TIE;
    const tie = !faster && [t.overFifo, t.overSocket].some((r) => r !== null && Math.abs(r - 1) <= TIE);
    notes.push(
      `**Target (send | recv faster than the FIFO and the socket), ${wiring.key} wiring: ${met(faster)}${tie ? ` (a tie: within ${TIE * 100}%)` : ''}** — ` +
        `${t.overFifo === null ? '–' : fmtRatio(t.overFifo)} the speed of the FIFO, ${t.overSocket === null ? '–' : fmtRatio(t.overSocket)} the speed of the socket (medians, whole processes).`,
    );
  }
  for (const [key, why] of Object.entries(res.failures ?? {})) notes.push(`${key} failed: ${why}.`);
  return { title: `Pipe between two processes, ${sizeText(cfg.fileSize)}: send | recv, FIFO, Unix socket`, table, notes };
}
