#!/usr/bin/env node
/**
 * Where the time of a topic benchmark run goes: runs one variant of bench/topic.mjs once with the
 * publisher and every subscriber under the V8 CPU profiler (`node --cpu-prof`), then prints each
 * process's top functions by self time and the inclusive time of the topic's functions.
 *
 *   node bench/topic/profile.mjs topic@4 [--messages=N] [--interval=US] [--top=N] [--keep]
 *
 * Scenario = variant@subscribers: a key of bench/topic.mjs (topic, topicHybrid, into, drain, socket,
 * socketBatch, zeromq) and N. The profiles (.cpuprofile, loadable in Chrome DevTools) are written
 * to a temporary directory, summarized, and deleted unless --keep. The profiler (sampling every
 * `interval` µs, default 1000) slows every process down: read the shares, not the absolute rates.
 * Time spent inside a native call (a futex system call, a write) is counted in the JavaScript
 * function that made it.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';

function parseArgs(argv) {
  const o = { scenario: null, messages: null, interval: 1000, keep: false, top: 18 };
  for (const a of argv) {
    if (a.startsWith('--messages=')) o.messages = Number(a.slice(11));
    else if (a.startsWith('--interval=')) o.interval = Number(a.slice(11));
    else if (a.startsWith('--top=')) o.top = Number(a.slice(6));
    else if (a === '--keep') o.keep = true;
    else if (!a.startsWith('--') && o.scenario === null) o.scenario = a;
    else {
      console.error(`unknown argument ${a}`);
      process.exit(2);
    }
  }
  if (!o.scenario || !/^\w+@\d+$/.test(o.scenario)) {
    console.error('usage: node bench/topic/profile.mjs <variant>@<subscribers> [--messages=N] [--interval=US] [--top=N] [--keep]');
    process.exit(2);
  }
  return o;
}

/** Self and inclusive time per function of one .cpuprofile; the role from the peer's functions. */
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
  const names = p.nodes.map((n) => n.callFrame.functionName);
  const role = names.some((x) => /^pub[A-Z]/.test(x)) ? 'publisher' : names.some((x) => /^sub[A-Z]/.test(x)) ? 'subscriber' : 'other';
  const self = new Map();
  const incl = new Map();
  let total = 0;
  let idle = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const dt = (p.timeDeltas[i + 1] ?? p.timeDeltas[i] ?? 0) / 1000;
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
  const lines = [`${role} (${basename(file)}): ${total.toFixed(0)} ms sampled (+ ${idle.toFixed(0)} ms idle in the event loop)`];
  lines.push('  self time:');
  for (const [n, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) lines.push(`    ${v.toFixed(1).padStart(8)} ms ${pct(v).padStart(6)}  ${n}`);
  lines.push('  inclusive time (topic, wait layer, benchmark loops):');
  const wanted = /topic\.js|subscription\.js|reader\.js|publisher\.js|memory\.js|lock\.js|parties\.js|waiting\.js|wait\.js|copy\.js|peer\.mjs|format\.mjs/;
  for (const [n, v] of [...incl].sort((a, b) => b[1] - a[1]).filter(([n]) => wanted.test(n)).slice(0, top)) lines.push(`    ${v.toFixed(1).padStart(8)} ms ${pct(v).padStart(6)}  ${n}`);
  return { role, text: lines.join('\n') };
}

const o = parseArgs(process.argv.slice(2));
const topic = await import('../topic.mjs');
const dir = mkdtempSync(join(tmpdir(), 'mmapkit-topic-prof-'));
topic.setChildExecArgv(['--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-interval=${o.interval}`]);
const [key, nText] = o.scenario.split('@');
const n = Number(nText);
const v = topic.internals.VARIANTS.find((x) => x.key === key);
if (!v) {
  console.error(`no variant ${key} (${topic.internals.VARIANTS.map((x) => x.key).join(', ')})`);
  process.exit(2);
}
const messages = o.messages ?? Math.round(v.rate[n] ?? 1e5);
try {
  const r = await topic.internals.runOnce(v, n, { counts: { [key]: { [n]: messages } }, budgetMs: 30_000 });
  console.log(
    `${o.scenario}: slowest subscriber ${(r.slowest / 1e6).toFixed(3)} M msgs/s (median ${(r.median / 1e6).toFixed(3)}) over ${messages} messages (profiled); ` +
      `CPU µs/msg publisher ${r.publisherCpuUsPerMsg.toFixed(2)}, subscriber ${r.subscriberCpuUsPerMsg.toFixed(2)}; ` +
      `voluntary context switches/msg publisher ${r.publisherCtxPerMsg.toFixed(4)}, subscriber ${r.subscriberCtxPerMsg.toFixed(4)}; errors ${r.errors}`,
  );
} catch (err) {
  console.error(`profiled run failed: ${err.message}`);
  process.exitCode = 1;
}
const out = readdirSync(dir)
  .filter((x) => x.endsWith('.cpuprofile'))
  .map((f) => summarize(join(dir, f), o.top))
  .sort((a, b) => (a.role === b.role ? 0 : a.role === 'publisher' ? -1 : 1));
for (const s of out) console.log(`\n${s.text}`);
if (o.keep) console.log(`\nprofiles kept in ${dir}`);
else rmSync(dir, { recursive: true, force: true });
