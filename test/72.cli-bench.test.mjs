// `mmapkit bench`, run as a real process (node dist/cli/main.js bench): help, usage errors, and real
// quick runs of the file-copy benchmark into a folder (markdown, SVG chart, results.json, --json).
// Needs `npx tsc -p .` (dist/cli/) and a C compiler for the C row (the row is skipped without one).
// The benchmark runner is a grandchild: each run is its own process group, killed whole on timeout.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startNode, tempDir } from './helpers.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(ROOT, 'dist', 'cli', 'main.js');
/** A usage error or --help answers at once; a quick run of the copy benchmark takes about 5 s here. */
const QUICK_MS = 20_000;
const RUN_MS = 60_000;

/**
 * Run `node dist/cli/main.js args...` in `cwd` (the tests' child harness, startProc, in a process group
 * of its own); resolves { status, signal, stdout, stderr, timedOut }. After `timeout` ms the whole
 * group (the CLI and the benchmark runner it started) is killed and the promise rejects.
 */
async function cli(args, { cwd, timeout = QUICK_MS } = {}) {
  const r = await startNode([CLI, ...args], `mmapkit ${args.join(' ')}`, { timeout, detached: true, spawnOptions: { cwd } }).done;
  if (r.timedOut) throw new Error(`${r.label} did not finish within ${timeout} ms\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  return r;
}

function exits(r, code) {
  assert.equal(r.status, code, `exit ${r.status} (signal ${r.signal}), expected ${code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
}

/** Modification time of a file of the package, or null when it does not exist. */
function mtimeOf(path) {
  return existsSync(path) ? statSync(path).mtimeMs : null;
}

test('bench --help: usage, options and where the output goes; listed by mmapkit --help', async () => {
  for (const args of [['bench', '--help'], ['bench', '-h'], ['help', 'bench']]) {
    const r = await cli(args);
    exits(r, 0);
    assert.match(r.stdout, /^Usage: mmapkit bench \[--quick\] \[--only LIST\] \[--out DIR\] \[--data-dir DIR\] \[--json\]$/m);
    for (const option of [/^ {2}-q, --quick +/m, /^ {6}--only LIST +/m, /^ {2}-o, --out DIR +Write the results into DIR \(default \.\/mmapkit-bench\)/m, /^ {6}--data-dir DIR +/m, /^ {6}--json +/m]) {
      assert.match(r.stdout, option);
    }
    assert.match(r.stdout, /DIR\/benchmarks\.md/);
    assert.equal(r.stderr, '');
  }
  const r = await cli(['--help']);
  exits(r, 0);
  assert.match(r.stdout, /^ {2}bench +Run the benchmarks/m);
});

test('bench: usage errors exit 2 with one message and create nothing', async (t) => {
  const cwd = tempDir(t);
  const file = join(cwd, 'a-file');
  writeFileSync(file, 'not a directory');
  const hint = "Run 'mmapkit bench --help' for usage.\n";
  for (const [args, message] of [
    [['bench', '--bogus'], "mmapkit: unknown option '--bogus'\n"],
    [['bench', '-x'], "mmapkit: unknown option '-x'\n"],
    [['bench', 'extra'], "mmapkit: 'bench' takes 0 argument(s), got 1: unexpected 'extra'\n"],
    [['bench', '--only='], "mmapkit: --only needs a comma-separated list of sections or benchmarks, got ''\n"],
    [['bench', '--only', ' , '], "mmapkit: --only needs a comma-separated list of sections or benchmarks, got ' , '\n"],
    [['bench', '--out='], "mmapkit: --out needs a directory, got ''\n"],
    [['bench', '--data-dir='], "mmapkit: --data-dir needs a directory, got ''\n"],
    // Known only to bench/run.mjs (the child), which words it like the CLI and lists the names.
    [['bench', '--quick', '--only=cp,nosuchbench'], /^mmapkit: --only: unknown 'nosuchbench' \(sections: core, ipc, channel, topic, cli; benchmarks: .*\bcp\b.*\)\n/],
  ]) {
    const r = await cli(args, { cwd });
    exits(r, 2);
    if (typeof message === 'string') assert.equal(r.stderr, message + hint);
    else {
      assert.match(r.stderr, message);
      assert.ok(r.stderr.endsWith(`)\n${hint}`), r.stderr);
      assert.equal(r.stderr.split('\n').length, 3, 'two lines');
    }
    assert.equal(r.stdout, '');
  }
  // --out naming a file that is not a directory: a failure (1), not a usage error.
  const r = await cli(['bench', '--out', file], { cwd });
  exits(r, 1);
  assert.equal(r.stderr, `mmapkit bench: cannot write into '${file}': Not a directory\n`);
  assert.deepEqual(readdirSync(cwd), ['a-file'], 'nothing was created (no ./mmapkit-bench)');
});

test('bench --quick --only=cp --out DIR --json: markdown, SVG, results.json; JSON alone on stdout', async (t) => {
  const cwd = tempDir(t);
  const out = join(cwd, 'results here');
  const docsChart = join(ROOT, 'docs', 'cp-benchmark.svg');
  const docsChartBefore = mtimeOf(docsChart);

  const r = await cli(['bench', '--quick', '--only=cp', '--out', out, '--json'], { cwd, timeout: RUN_MS });
  exits(r, 0);
  // stdout: the JSON of this run and nothing else; progress and tables on stderr.
  const json = JSON.parse(r.stdout);
  assert.equal(json.outDir, out);
  assert.deepEqual(Object.keys(json.sections), ['cli']);
  const cp = json.sections.cli.results.cp;
  assert.equal(json.sections.cli.mode, 'quick');
  assert.equal(cp.config.fileSize, 64 * 1024 * 1024);
  assert.equal(cp.checksumsMatch, true);
  assert.deepEqual(cp.verification.mismatches, []);
  assert.deepEqual(cp.failures, {});
  for (const key of ['cp', 'mmapkit', 'copyFile', 'stream', 'nodeStartup']) {
    assert.ok(cp.results[key].seconds.median > 0, `${key} has a median`);
    assert.equal(cp.results[key].seconds.runs, cp.config.runs);
  }
  assert.equal(typeof cp.targets.withinCp.met, 'boolean');
  assert.equal(typeof cp.targets.fasterThanNode.met, 'boolean');
  assert.match(r.stderr, /^\[cli\] cp \.\.\.$/m);
  assert.match(r.stderr, /^### 1\. File copy, 64 MiB, warm page cache$/m);

  const md = readFileSync(join(out, 'benchmarks.md'), 'utf8');
  assert.match(md, /^# mmapkit benchmarks$/m);
  assert.match(md, /^## Command-line tool$/m);
  assert.match(md, /^!\[Command-line tool\]\(cp-benchmark\.svg\)$/m);
  assert.match(md, /`mmapkit bench --quick`/);
  assert.match(md, /^\| \*\*`mmapkit cp SRC DST`\*\* \| \*\*[\d.]+\*\* \|/m);
  assert.match(md, /\*\*Target \(mmapkit cp within 1\.3× of cp\): (met|NOT met)\*\*/);
  const svg = readFileSync(join(out, 'cp-benchmark.svg'), 'utf8');
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" /);
  assert.match(svg, />mmapkit cp</);
  assert.match(svg, /<\/svg>\n$/);
  const stored = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
  assert.deepEqual(stored.sections.cli.results.cp.results, cp.results);
  assert.ok(statSync(join(out, 'data', 'random-64m.bin')).size === 64 * 1024 * 1024, 'the data file is kept in DIR/data');
  assert.ok(!existsSync(join(out, 'data', 'cp-destination.bin')), 'the last copy was removed');
  assert.equal(mtimeOf(docsChart), docsChartBefore, "the package's docs/ are left alone");

  // Without --out: ./mmapkit-bench of the working directory (the data file of the first run reused).
  const cwd2 = tempDir(t);
  const r2 = await cli(['bench', '-q', '--only', 'cli', '--data-dir', join(out, 'data')], { cwd: cwd2, timeout: RUN_MS });
  exits(r2, 0);
  assert.match(r2.stdout, /^### 1\. File copy, 64 MiB, warm page cache$/m, 'without --json the tables go to stdout');
  const written = readdirSync(join(cwd2, 'mmapkit-bench')).filter((name) => name !== 'bin'); // bin/: the C program, when cc exists
  assert.deepEqual(written.sort(), ['benchmarks.md', 'cp-benchmark.svg', 'results.json']);
});
