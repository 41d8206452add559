#!/usr/bin/env node
/**
 * The benchmark runner: `npm run bench` (compiles src/ first) or `node bench/run.mjs [options]`.
 *
 *   --quick           small and fast (64 MiB file, fewer iterations): a smoke test, not a measurement
 *   --only=a,b        run only these sections or benchmarks (sections: core, ipc, channel; benchmarks:
 *                     randomReads, mapUnmap, overhead, ipcLatency, channelLatency,
 *                     channelThroughputSmall, channelThroughputLarge)
 *   --docs / --no-docs  update docs/benchmarks.md or not (default: only after a full run)
 *   --data-dir=DIR    where the data files live (default bench/out/data; reused between runs)
 *   --render-only     measure nothing: rewrite docs/benchmarks.md (and print the tables) from the
 *                     numbers in bench/out/results.json, e.g. after changing a benchmark's render()
 *
 * Prints a markdown table per benchmark, writes every number to bench/out/results.json (merged by
 * section, so a partial run keeps the other sections) and rewrites each section of docs/benchmarks.md
 * between its markers `<!-- <section>:begin -->` and `<!-- <section>:end -->`.
 *
 * A section is one issue's set of benchmarks: add yours to SECTIONS, one module per benchmark
 * exporting `id`, `run(ctx)` (returns a JSON-able result) and `render(result)` (returns
 * `{ title, table, notes }`). A section may also have `chart(results, meta)` returning
 * `{ path, svg }`: the file is written whenever the section's part of docs/benchmarks.md is.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as channel from './channel.mjs';
import * as ipcLatency from './ipc-latency.mjs';
import * as mapUnmap from './map-unmap.mjs';
import * as overhead from './overhead.mjs';
import * as randomReads from './random-reads.mjs';
import { machineInfo, OUT_DIR, REPO_DIR, round } from './lib.mjs';

const SECTIONS = [
  {
    id: 'core',
    title: 'Core mapping',
    benchmarks: [randomReads, mapUnmap, overhead],
  },
  {
    id: 'ipc',
    title: 'Shared memory and waiting across processes',
    benchmarks: [ipcLatency],
  },
  {
    id: 'channel',
    title: 'Message channels',
    benchmarks: [channel.latency, channel.throughputSmall, channel.throughputLarge],
    chart: channel.chart,
  },
];

const DOCS = join(REPO_DIR, 'docs', 'benchmarks.md');
const RESULTS = join(OUT_DIR, 'results.json');

function parseArgs(argv) {
  const opts = { quick: false, only: null, docs: null, renderOnly: false, dataDir: join(OUT_DIR, 'data') };
  for (const a of argv) {
    if (a === '--quick') opts.quick = true;
    else if (a === '--docs') opts.docs = true;
    else if (a === '--no-docs') opts.docs = false;
    else if (a === '--render-only') opts.renderOnly = true;
    else if (a.startsWith('--only=')) opts.only = a.slice(7).split(',').filter(Boolean);
    else if (a.startsWith('--data-dir=')) opts.dataDir = a.slice(11);
    else if (a === '--help' || a === '-h') {
      console.log(readFileSync(new URL(import.meta.url), 'utf8').split('*/')[0].replace(/^#!.*\n\/\*\*\n/, '').replace(/^ \* ?/gm, ''));
      process.exit(0);
    } else {
      console.error(`unknown option ${a} (see --help)`);
      process.exit(2);
    }
  }
  if (opts.docs === null && !opts.renderOnly) opts.docs = !opts.quick;
  const known = SECTIONS.flatMap((sec) => [sec.id, ...sec.benchmarks.map((b) => b.id)]);
  const unknown = (opts.only ?? []).filter((x) => !known.includes(x));
  if (unknown.length > 0) {
    console.error(`--only: unknown ${unknown.join(', ')} (known: ${known.join(', ')})`);
    process.exit(2);
  }
  return opts;
}

/** Markdown of one section: the environment line, then each benchmark's table and notes. */
function renderSection(section, results, meta) {
  const m = meta.machine;
  const lines = [
    `_${meta.quick ? 'Quick (smoke-test) run' : 'Full run'} of ${meta.date}, \`npm run bench${meta.quick ? ' -- --quick' : ''}\`: ` +
      `${m.cpu}, ${m.cores} cores, ${m.memGiB} GiB RAM, ${m.kernel}, Node ${m.node} (V8 ${m.v8}), ${m.cc ?? 'no C compiler'}. ` +
      `Load average at start ${m.loadAverage.join(' / ')}${m.loadAverageEnd ? `, at end ${m.loadAverageEnd.join(' / ')}` : ''}. ` +
      (m.code ? `Code: commit ${m.code.commit}${m.code.uncommitted.length ? ` with uncommitted changes to ${m.code.uncommitted.join(', ')}` : ''}. ` : '') +
      `Section took ${meta.seconds.toFixed(0)} s._`,
    '',
  ];
  let n = 0;
  for (const b of section.benchmarks) {
    const r = results[b.id];
    if (r === undefined) continue;
    const { title, table, notes } = b.render(r);
    n++;
    lines.push(`### ${n}. ${title}`, '', table, '');
    for (const note of notes) lines.push(`- ${note}`);
    lines.push('');
  }
  return lines.join('\n').trimEnd();
}

const DOCS_TEMPLATE = `# Benchmarks

Run them with \`npm run bench\` (compiles \`src/\`, then runs \`bench/run.mjs\`); \`npm run bench -- --quick\`
is a fast smoke test. Each section below is rewritten by the script between its markers.
`;

/** Replace (or append) the block between `<!-- id:begin -->` and `<!-- id:end -->`. */
function updateDocs(sectionId, title, body) {
  const begin = `<!-- ${sectionId}:begin -->`;
  const end = `<!-- ${sectionId}:end -->`;
  let text = existsSync(DOCS) ? readFileSync(DOCS, 'utf8') : DOCS_TEMPLATE;
  const block = `${begin}\n${body}\n${end}`;
  const i = text.indexOf(begin);
  const j = text.indexOf(end);
  if (i !== -1 && j > i) {
    text = text.slice(0, i) + block + text.slice(j + end.length);
  } else {
    text = `${text.trimEnd()}\n\n## ${title}\n\n${block}\n`;
  }
  mkdirSync(join(REPO_DIR, 'docs'), { recursive: true });
  writeFileSync(DOCS, text);
}

/** Write a section's chart (an SVG file), when it has one and there is something to draw. */
function writeChart(section, results, meta) {
  if (typeof section.chart !== 'function') return;
  const c = section.chart(results, meta);
  if (c === null) return;
  writeFileSync(c.path, c.svg);
  console.error(`${c.path.slice(REPO_DIR.length + 1)}: chart of section "${section.id}" written`);
}

/**
 * The benchmarks force garbage collections between timed batches (see collectGarbage in lib.mjs):
 * restart with --expose-gc when started without it, so that `npm run bench` stays the entry point.
 */
function reexecWithGc() {
  if (typeof globalThis.gc === 'function' || process.env.MMAPKIT_BENCH_CHILD === '1') return;
  const r = spawnSync(process.execPath, [...process.execArgv, '--expose-gc', fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    stdio: 'inherit',
    env: { ...process.env, MMAPKIT_BENCH_CHILD: '1' },
  });
  process.exit(r.status ?? 1);
}

/** --render-only: the tables and docs again, from the stored results. */
function renderOnly(opts) {
  if (!existsSync(RESULTS)) {
    console.error(`${RESULTS} does not exist: run the benchmarks first`);
    process.exit(1);
  }
  const stored = JSON.parse(readFileSync(RESULTS, 'utf8'));
  for (const section of SECTIONS) {
    const s = stored.sections?.[section.id];
    if (s === undefined) continue;
    const body = renderSection(section, s.results, s);
    console.log(`\n## ${section.title}\n\n${body}\n`);
    if (s.mode !== 'full' && opts.docs !== true) {
      console.error(`docs/benchmarks.md: section "${section.id}" left alone (stored results are from a ${s.mode} run; --docs to force)`);
    } else if (opts.docs !== false) {
      updateDocs(section.id, section.title, body);
      writeChart(section, s.results, s);
      console.error(`docs/benchmarks.md: section "${section.id}" re-rendered from ${RESULTS}`);
    }
  }
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.renderOnly) return renderOnly(opts);
  reexecWithGc();
  if (!existsSync(join(REPO_DIR, 'dist', 'index.js'))) {
    console.error('dist/ is missing: run `npm run bench` (it compiles src/ first) or `npx tsc -p .`');
    process.exit(1);
  }
  mkdirSync(opts.dataDir, { recursive: true });
  const machine = machineInfo();
  const started = Date.now();
  const log = (s) => console.error(s);
  log(`mmapkit benchmarks (${opts.quick ? 'quick' : 'full'} run) — ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}`);
  if (typeof globalThis.gc !== 'function') log('warning: no --expose-gc: batches are not separated by garbage collections');

  let previous = {};
  if (existsSync(RESULTS)) {
    try {
      previous = JSON.parse(readFileSync(RESULTS, 'utf8'));
    } catch {
      previous = {};
    }
  }
  const out = { generated: new Date().toISOString(), sections: { ...(previous.sections ?? {}) } };
  let failed = false;

  for (const section of SECTIONS) {
    const wanted = section.benchmarks.filter(
      (b) => opts.only === null || opts.only.includes(section.id) || opts.only.includes(b.id),
    );
    if (wanted.length === 0) continue;
    const t0 = Date.now();
    const loadAtStart = os.loadavg().map((v) => round(v, 2));
    const results = {};
    for (const b of wanted) {
      log(`[${section.id}] ${b.id} ...`);
      const tb = Date.now();
      results[b.id] = await b.run({ quick: opts.quick, dataDir: opts.dataDir, log });
      log(`[${section.id}] ${b.id} done in ${((Date.now() - tb) / 1000).toFixed(1)} s`);
      if (results[b.id].checksumsMatch === false) failed = true;
    }
    const meta = {
      quick: opts.quick,
      date: new Date().toISOString().slice(0, 16).replace('T', ' ') + ' UTC',
      // the load of this section's run (other sessions may share the machine), not of the whole run
      machine: { ...machine, loadAverage: loadAtStart, loadAverageEnd: os.loadavg().map((v) => round(v, 2)) },
      seconds: (Date.now() - t0) / 1000,
    };
    const body = renderSection(section, results, meta);
    console.log(`\n## ${section.title}\n\n${body}\n`);
    out.sections[section.id] = { title: section.title, mode: opts.quick ? 'quick' : 'full', ...meta, results };
    if (opts.docs) {
      if (opts.only !== null && wanted.length !== section.benchmarks.length) {
        log(`docs/benchmarks.md not updated: --only ran part of section "${section.id}"`);
      } else {
        updateDocs(section.id, section.title, body);
        writeChart(section, results, meta);
        log(`docs/benchmarks.md: section "${section.id}" updated`);
      }
    }
  }
  mkdirSync(OUT_DIR, { recursive: true });
  writeFileSync(RESULTS, `${JSON.stringify(out, null, 2)}\n`);
  log(`results: ${RESULTS}${opts.docs ? '' : ` (docs/benchmarks.md left alone${opts.quick ? ': quick run; pass --docs to update it' : ''})`}`);
  log(`total ${((Date.now() - started) / 1000).toFixed(0)} s`);
  if (failed) {
    console.error('FAILED: variants read different data (checksum mismatch); see results.json');
    process.exitCode = 1;
  }
}

await main();
