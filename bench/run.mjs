#!/usr/bin/env node
/**
 * The benchmark runner: `npm run bench` (compiles src/ first) or `node bench/run.mjs [options]`.
 *
 *   --quick           small and fast (64 MiB file, fewer iterations): a smoke test, not a measurement
 *   --only=a,b        run only these sections or benchmarks (sections: core, ipc, channel, topic, cli;
 *                     benchmarks: randomReads, mapUnmap, overhead, ipcLatency, channelLatency,
 *                     channelThroughputSmall, channelThroughputLarge, topicFanout, cp, sendRecv)
 *   --docs / --no-docs  update docs/benchmarks.md or not (default: only after a full run)
 *   --out=DIR         leave docs/ and bench/out/ alone: write DIR/results.json, DIR/benchmarks.md (the
 *                     tables of every section in DIR/results.json) and the SVG charts into DIR;
 *                     data files in DIR/data and compiled C programs in DIR/bin unless --data-dir
 *                     (this is what `mmapkit bench` does)
 *   --json            print the results of this run as JSON on stdout (tables and progress: stderr)
 *   --data-dir=DIR    where the data files live (default bench/out/data; reused between runs)
 *   --render-only     measure nothing: rewrite docs/benchmarks.md (and print the tables) from the
 *                     numbers in bench/out/results.json, e.g. after changing a benchmark's render()
 *                     (with --out=DIR: DIR/benchmarks.md and charts from DIR/results.json)
 *
 * Prints a markdown table per benchmark, writes every number to bench/out/results.json (merged by
 * section, so a partial run keeps the other sections) and rewrites each section of docs/benchmarks.md
 * between its markers `<!-- <section>:begin -->` and `<!-- <section>:end -->`.
 *
 * A section is one issue's set of benchmarks: add yours to SECTIONS, one module per benchmark
 * exporting `id`, `run(ctx)` (returns a JSON-able result) and `render(result)` (returns
 * `{ title, table, notes }`). A section may have `summary`: a function `(results, meta)` returning
 * `{ title, table, notes }` or null, rendered before the benchmarks' tables (the channel section's
 * targets: ratios across its benchmarks; the topic section's: its target with 4 subscribers). A
 * section may also have `chart`: a function `(results, meta)`, or an array of them, each returning
 * `{ path, svg }` (path under docs/) or null: the file is written whenever the section's part of
 * docs/benchmarks.md is (into DIR, same file name, with --out=DIR).
 * A result with `checksumsMatch: false` (variants saw different data) or `failed: true` (a variant
 * could not run) makes the run exit with status 1.
 *
 * Nothing here may need the TypeScript sources or devDependencies: bench/ ships with the package and
 * `mmapkit bench` runs this file; benchmarks import the compiled library from ../dist/ (the
 * channel and topic sections' zeromq.js rows, a devDependency, are skipped when it cannot be loaded).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as channel from './channel.mjs';
import * as cp from './cp.mjs';
import * as ipcLatency from './ipc-latency.mjs';
import * as mapUnmap from './map-unmap.mjs';
import * as overhead from './overhead.mjs';
import * as randomReads from './random-reads.mjs';
import * as sendRecv from './send-recv.mjs';
import * as topic from './topic.mjs';
import { machineInfo, OUT_DIR, packageVersion, REPO_DIR, round, setBinDir } from './lib.mjs';

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
    summary: channel.summary,
    chart: channel.chart,
  },
  {
    id: 'topic',
    title: 'Topics: broadcast to several processes',
    benchmarks: [topic.fanout],
    summary: topic.summary,
  },
  {
    id: 'cli',
    title: 'Command-line tool',
    benchmarks: [
      cp,
      sendRecv,
    ],
    chart: [
      cp.chart,
    ],
  },
];

const DOCS = join(REPO_DIR, 'docs', 'benchmarks.md');

/** A path for messages: relative to the working directory when inside it. */
function shown(path) {
  const rel = relative(process.cwd(), path);
  return rel === '' || rel.startsWith('..') ? path : rel;
}

/**
 * Set by `mmapkit bench` (src/cli/bench.ts) to `mmapkit bench`: usage errors are then worded like
 * the CLI's (`mmapkit: ...`, `Run 'mmapkit bench --help' for usage.`) and the tables say that command.
 */
const CLI_NAME = process.env.MMAPKIT_BENCH_PROGRAM || null;

/** A mistake on the command line: exit status 2. */
function usageError(message) {
  if (CLI_NAME) console.error(`${CLI_NAME.split(' ')[0]}: ${message}\nRun '${CLI_NAME} --help' for usage.`);
  else console.error(`bench/run.mjs: ${message} (see --help)`);
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { quick: false, only: null, docs: null, renderOnly: false, json: false, outDir: null, dataDir: null };
  for (const a of argv) {
    if (a === '--quick') opts.quick = true;
    else if (a === '--docs') opts.docs = true;
    else if (a === '--no-docs') opts.docs = false;
    else if (a === '--render-only') opts.renderOnly = true;
    else if (a === '--json') opts.json = true;
    else if (a.startsWith('--only=')) opts.only = a.slice(7).split(',').filter(Boolean);
    else if (a.startsWith('--data-dir=')) opts.dataDir = a.slice(11);
    else if (a.startsWith('--out=')) opts.outDir = a.slice(6);
    else if (a === '--help' || a === '-h') {
      console.log(readFileSync(new URL(import.meta.url), 'utf8').split('*/')[0].replace(/^#!.*\n\/\*\*\n/, '').replace(/^ \* ?/gm, ''));
      process.exit(0);
    } else {
      usageError(`unknown option '${a}'`);
    }
  }
  if (opts.outDir === '') usageError('--out needs a directory');
  if (opts.dataDir === '') usageError('--data-dir needs a directory');
  if (opts.only !== null && opts.only.length === 0) usageError('--only needs a list of sections or benchmarks');
  if (opts.outDir !== null) {
    if (opts.docs === true) usageError('--out and --docs exclude each other: --out writes its own benchmarks.md');
    opts.outDir = resolve(opts.outDir);
    opts.docs = false;
  }
  if (opts.docs === null && !opts.renderOnly) opts.docs = !opts.quick;
  opts.dataDir = resolve(opts.dataDir ?? join(opts.outDir ?? OUT_DIR, 'data'));
  opts.results = join(opts.outDir ?? OUT_DIR, 'results.json');
  opts.command = CLI_NAME ? `${CLI_NAME}${opts.quick ? ' --quick' : ''}` : `npm run bench${opts.quick ? ' -- --quick' : ''}`;
  const known = SECTIONS.flatMap((sec) => [sec.id, ...sec.benchmarks.map((b) => b.id)]);
  const unknown = (opts.only ?? []).filter((x) => !known.includes(x));
  if (unknown.length > 0) {
    usageError(
      `--only: unknown ${unknown.map((x) => `'${x}'`).join(', ')} (sections: ${SECTIONS.map((sec) => sec.id).join(', ')}; ` +
        `benchmarks: ${SECTIONS.flatMap((sec) => sec.benchmarks.map((b) => b.id)).join(', ')})`,
    );
  }
  return opts;
}

/** Markdown of one section: the environment line, then each benchmark's table and notes. */
function renderSection(section, results, meta) {
  const m = meta.machine;
  const code = m.code
    ? `Code: commit ${m.code.commit}${m.code.uncommitted.length ? ` with uncommitted changes to ${m.code.uncommitted.join(', ')}` : ''}. `
    : m.version
      ? `Code: mmapkit ${m.version}. `
      : '';
  const lines = [
    `_${meta.quick ? 'Quick (smoke-test) run' : 'Full run'} of ${meta.date}, \`${meta.command ?? `npm run bench${meta.quick ? ' -- --quick' : ''}`}\`: ` +
      `${m.cpu}, ${m.cores} cores, ${m.memGiB} GiB RAM, ${m.kernel}, Node ${m.node} (V8 ${m.v8}), ${m.cc ?? 'no C compiler'}. ` +
      `Load average at start ${m.loadAverage.join(' / ')}${m.loadAverageEnd ? `, at end ${m.loadAverageEnd.join(' / ')}` : ''}. ` +
      code +
      `Section took ${meta.seconds.toFixed(0)} s._`,
    '',
  ];
  const summary = section.summary?.(results, meta);
  if (summary) {
    lines.push(`### ${summary.title}`, '', summary.table, '');
    for (const note of summary.notes) lines.push(`- ${note}`);
    lines.push('');
  }
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

/**
 * Write a section's charts (SVG files), when it has any and there is something to draw: at the path
 * each chart names (under docs/), or into `outDir` under the same file name. Returns the paths.
 */
function writeCharts(section, results, meta, outDir = null) {
  const written = [];
  for (const draw of [section.chart ?? []].flat()) {
    const c = draw(results, meta);
    if (c === null) continue;
    const path = outDir === null ? c.path : join(outDir, basename(c.path));
    writeFileSync(path, c.svg);
    console.error(`${shown(path)}: chart of section "${section.id}" written`);
    written.push(path);
  }
  return written;
}

/**
 * --out=DIR: DIR/benchmarks.md, a whole file of its own, from every section stored in DIR/results.json
 * (in SECTIONS order), with each section's charts written next to it and shown under its heading.
 */
function writeOutDir(outDir, stored) {
  const lines = [
    '# mmapkit benchmarks',
    '',
    `Written by \`${CLI_NAME ?? 'node bench/run.mjs'}\` (mmapkit ${packageVersion()}) from the figures in \`results.json\` next to this file; ` +
      'each section says when, on which machine and under which load it ran. What each benchmark measures, and how to read the tables: ' +
      `\`docs/benchmarks.md\` of the package (${join(REPO_DIR, 'docs', 'benchmarks.md')}).`,
  ];
  for (const section of SECTIONS) {
    const s = stored.sections?.[section.id];
    if (s === undefined) continue;
    let body;
    try {
      body = renderSection(section, s.results, s);
    } catch (error) {
      console.error(`${outDir}: stored results of section "${section.id}" left out (cannot render them: ${error.message})`);
      continue;
    }
    lines.push('', `## ${section.title}`, '');
    for (const path of writeCharts(section, s.results, s, outDir)) lines.push(`![${section.title}](${basename(path)})`, '');
    lines.push(body);
  }
  const file = join(outDir, 'benchmarks.md');
  writeFileSync(file, `${lines.join('\n')}\n`);
  console.error(`${shown(file)}: written`);
}

/** The stored results (merged by section), or an empty set when there are none or they do not parse. */
function readResults(path) {
  if (!existsSync(path)) return {};
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    return {};
  }
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

/** --render-only: the tables and docs (or DIR/benchmarks.md) again, from the stored results. */
function renderOnly(opts) {
  const RESULTS = opts.results;
  if (!existsSync(RESULTS)) {
    console.error(`${RESULTS} does not exist: run the benchmarks first`);
    process.exit(1);
  }
  const stored = JSON.parse(readFileSync(RESULTS, 'utf8'));
  if (opts.outDir !== null) {
    writeOutDir(opts.outDir, stored);
    return;
  }
  for (const section of SECTIONS) {
    const s = stored.sections?.[section.id];
    if (s === undefined) continue;
    const body = renderSection(section, s.results, s);
    console.log(`\n## ${section.title}\n\n${body}\n`);
    if (s.mode !== 'full' && opts.docs !== true) {
      console.error(`docs/benchmarks.md: section "${section.id}" left alone (stored results are from a ${s.mode} run; --docs to force)`);
    } else if (opts.docs !== false) {
      updateDocs(section.id, section.title, body);
      writeCharts(section, s.results, s);
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
  const RESULTS = opts.results;
  mkdirSync(dirname(RESULTS), { recursive: true });
  mkdirSync(opts.dataDir, { recursive: true });
  if (opts.outDir !== null) setBinDir(join(opts.outDir, 'bin'));
  const machine = machineInfo();
  const started = Date.now();
  const log = (s) => console.error(s);
  // With --json, stdout carries the JSON alone: the tables go to stderr with the progress.
  const print = opts.json ? log : (s) => console.log(s);
  log(`mmapkit benchmarks (${opts.quick ? 'quick' : 'full'} run) — ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}`);
  if (typeof globalThis.gc !== 'function') log('warning: no --expose-gc: batches are not separated by garbage collections');

  const previous = readResults(RESULTS);
  const out = { generated: new Date().toISOString(), sections: { ...(previous.sections ?? {}) } };
  const thisRun = {};
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
      if (results[b.id].checksumsMatch === false || results[b.id].failed === true) failed = true;
    }
    const meta = {
      quick: opts.quick,
      date: new Date().toISOString().slice(0, 16).replace('T', ' ') + ' UTC',
      // the load of this section's run (other sessions may share the machine), not of the whole run
      machine: { ...machine, loadAverage: loadAtStart, loadAverageEnd: os.loadavg().map((v) => round(v, 2)) },
      seconds: (Date.now() - t0) / 1000,
      command: opts.command,
    };
    const body = renderSection(section, results, meta);
    print(`\n## ${section.title}\n\n${body}\n`);
    out.sections[section.id] = { title: section.title, mode: opts.quick ? 'quick' : 'full', ...meta, results };
    thisRun[section.id] = out.sections[section.id];
    if (opts.docs) {
      if (opts.only !== null && wanted.length !== section.benchmarks.length) {
        log(`docs/benchmarks.md not updated: --only ran part of section "${section.id}"`);
      } else {
        updateDocs(section.id, section.title, body);
        writeCharts(section, results, meta);
        log(`docs/benchmarks.md: section "${section.id}" updated`);
      }
    }
  }
  writeFileSync(RESULTS, `${JSON.stringify(out, null, 2)}\n`);
  if (opts.outDir !== null) {
    writeOutDir(opts.outDir, out);
    log(`results: ${shown(RESULTS)}; data files (reused by the next run) in ${shown(opts.dataDir)}`);
  } else {
    log(`results: ${RESULTS}${opts.docs ? '' : ` (docs/benchmarks.md left alone${opts.quick ? ': quick run; pass --docs to update it' : ''})`}`);
  }
  if (opts.json) {
    console.log(JSON.stringify({ generated: out.generated, command: opts.command, outDir: opts.outDir, results: RESULTS, sections: thisRun }, null, 2));
  }
  log(`total ${((Date.now() - started) / 1000).toFixed(0)} s`);
  if (failed) {
    console.error('FAILED: variants read different data (checksum mismatch), or a variant failed; see the notes and results.json');
    process.exitCode = 1;
  }
}

await main();
