#!/usr/bin/env node
/**
 * Where the time of a channel benchmark goes: runs one variant of bench/channel.mjs once with both
 * processes under the V8 CPU profiler (`node --cpu-prof`), then prints each process's top functions
 * by self time and the inclusive time of the channel's methods.
 *
 *   node bench/channel/profile.mjs small:block [--messages=N] [--interval=US] [--keep]
 *   node bench/channel/profile.mjs large:block
 *   node bench/channel/profile.mjs latency:spin [--rounds=N]
 *
 * Scenario = benchmark:variant, benchmark one of small (64-byte throughput), large (64 KiB
 * throughput), latency (64-byte round trip); variant a key of bench/channel.mjs (block, spin, hybrid,
 * many, into, drain, asyncIter, asyncDrain, zeroCopy, jsRing, socket, zeromq, ...). The profiles (.cpuprofile, loadable in Chrome
 * DevTools) are written to a temporary directory, printed as a summary, and deleted unless --keep.
 * In throughput runs the parent receives and the child sends; in latency runs both do both.
 * The profiler (sampling every `interval` µs, default 1000) slows both sides down: read the shares,
 * not the absolute rates.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SELF = fileURLToPath(import.meta.url);

function parseArgs(argv) {
  const o = { scenario: null, messages: null, rounds: null, interval: 1000, keep: false, dir: null, top: 18 };
  for (const a of argv) {
    if (a.startsWith('--messages=')) o.messages = Number(a.slice(11));
    else if (a.startsWith('--rounds=')) o.rounds = Number(a.slice(9));
    else if (a.startsWith('--interval=')) o.interval = Number(a.slice(11));
    else if (a.startsWith('--top=')) o.top = Number(a.slice(6));
    else if (a.startsWith('--dir=')) o.dir = a.slice(6);
    else if (a === '--keep') o.keep = true;
    else if (!a.startsWith('--') && o.scenario === null) o.scenario = a;
    else {
      console.error(`unknown argument ${a}`);
      process.exit(2);
    }
  }
  if (!o.scenario || !/^(small|large|latency):\w+$/.test(o.scenario)) {
    console.error('usage: node bench/channel/profile.mjs small|large|latency:<variant> [--messages=N] [--rounds=N] [--interval=US] [--keep]');
    process.exit(2);
  }
  return o;
}

/** Inner run (under --cpu-prof): run the variant once, children profiled too. */
async function inner(o) {
  const ch = await import('../channel.mjs');
  const { SMALL, LARGE } = await import('./format.mjs');
  ch.setChildExecArgv(['--cpu-prof', `--cpu-prof-dir=${o.dir}`, `--cpu-prof-interval=${o.interval}`, '--cpu-prof-name=child.cpuprofile']);
  const [bench, key] = o.scenario.split(':');
  if (bench === 'latency') {
    const v = ch.internals.LATENCY_VARIANTS.find((x) => x.key === key);
    if (!v) throw new Error(`no latency variant ${key}`);
    const rounds = o.rounds ?? 100_000;
    const r = await ch.internals.runLatencyVariant(v, { rounds, warmup: Math.floor(rounds / 10), budgetMs: 30_000 });
    console.log(`latency ${key}: p50 ${r.p50.toFixed(2)} µs, p99 ${r.p99.toFixed(2)} µs, mean ${r.mean.toFixed(2)} µs over ${r.rounds} round trips (profiled), errors ${r.errors}`);
  } else {
    const size = bench === 'small' ? SMALL : LARGE;
    const v = ch.internals.THROUGHPUT_VARIANTS.find((x) => x.key === key);
    if (!v) throw new Error(`no throughput variant ${key}`);
    const n = o.messages ?? Math.round(v.rate[size] * 1.5);
    const r = await ch.internals.runThroughputVariant(v, size, { counts: { [key]: n }, budgetMs: 30_000 });
    console.log(
      `${bench} ${key}: ${(r.msgsPerSec / 1e6).toFixed(3)} M msgs/s, ${(r.bytesPerSec / 2 ** 20).toFixed(1)} MiB/s over ${r.messages} messages (profiled); ` +
        `CPU µs/msg sender ${r.senderCpuUsPerMsg?.toFixed(2)} receiver ${r.receiverCpuUsPerMsg?.toFixed(2)}; errors ${r.errors}`,
    );
  }
}

/** Self and inclusive time per function of one .cpuprofile. */
function summarize(file, top) {
  const p = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const name = (n) => {
    const f = n.callFrame;
    const url = f.url ? basename(f.url) : '';
    return `${f.functionName || '(anonymous)'}${url ? ` ${url}:${f.lineNumber + 1}` : ''}`;
  };
  const self = new Map();
  const incl = new Map();
  let total = 0;
  let idle = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const dt = (p.timeDeltas[i + 1] ?? p.timeDeltas[i] ?? 0) / 1000; // ms until the next sample
    const leaf = byId.get(p.samples[i]);
    const ln = name(leaf);
    if (ln.startsWith('(idle)')) {
      idle += dt;
      continue;
    }
    total += dt;
    self.set(ln, (self.get(ln) ?? 0) + dt);
    const seen = new Set();
    for (let id = leaf.id; id !== undefined; id = parent.get(id)) {
      const nn = name(byId.get(id));
      if (seen.has(nn)) continue;
      seen.add(nn);
      incl.set(nn, (incl.get(nn) ?? 0) + dt);
    }
  }
  const pct = (v) => `${((100 * v) / total).toFixed(1)}%`;
  const lines = [`${basename(file)}: ${total.toFixed(0)} ms sampled (wall time of the main thread, including time blocked in system calls; + ${idle.toFixed(0)} ms idle in the event loop)`];
  lines.push('  self time:');
  for (const [n, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) lines.push(`    ${v.toFixed(1).padStart(8)} ms ${pct(v).padStart(6)}  ${n}`);
  lines.push('  inclusive time (functions of the channel and the wait layer, and the benchmark loops):');
  const wanted = /channel\.js|wait\.js|mapping\.js|peer\.mjs|channel\.mjs|format\.mjs|binding|^(kill|hrtime|bigint)/;
  for (const [n, v] of [...incl].sort((a, b) => b[1] - a[1]).filter(([n]) => wanted.test(n)).slice(0, top)) lines.push(`    ${v.toFixed(1).padStart(8)} ms ${pct(v).padStart(6)}  ${n}`);
  return lines.join('\n');
}

const o = parseArgs(process.argv.slice(2));
if (process.env.MMAPKIT_PROFILE_INNER === '1') {
  await inner(o);
} else {
  const dir = mkdtempSync(join(tmpdir(), 'mmapkit-prof-'));
  const args = ['--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-interval=${o.interval}`, '--cpu-prof-name=parent.cpuprofile', SELF, ...process.argv.slice(2), `--dir=${dir}`];
  const r = spawnSync(process.execPath, args, { stdio: 'inherit', env: { ...process.env, MMAPKIT_PROFILE_INNER: '1' }, timeout: 300_000, killSignal: 'SIGKILL' });
  if (r.status !== 0) {
    console.error(`profiled run failed (${r.status ?? r.signal})`);
    process.exitCode = 1;
  }
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.cpuprofile')).sort()) {
    const role = f.startsWith('parent') ? (o.scenario.startsWith('latency') ? 'parent' : 'parent = receiver') : o.scenario.startsWith('latency') ? 'child' : 'child = sender';
    console.log(`\n== ${role} ==`);
    console.log(summarize(join(dir, f), o.top));
  }
  if (o.keep) console.log(`\nprofiles kept in ${dir}`);
  else rmSync(dir, { recursive: true, force: true });
}
