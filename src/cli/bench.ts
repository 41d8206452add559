/**
 * `mmapkit bench`: run the package's benchmarks (bench/run.mjs, shipped with the package) and write
 * their tables (markdown), SVG charts and raw figures (JSON) into a directory, ./mmapkit-bench by
 * default: never into the package's own docs/.
 *
 * The benchmarks run in a child process, `node --expose-gc bench/run.mjs --out=DIR ...` (they force
 * garbage collections between timed batches), whose output is passed through line by line. The child
 * is told through `MMAPKIT_BENCH_PROGRAM` that it runs as `mmapkit bench`, so that its usage errors
 * (an unknown name in `--only`, which only bench/run.mjs knows) are worded like the CLI's and exit 2.
 * @module
 */
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { type Command, type CommandContext, UsageError } from './command.js';
import { Failure, quote } from './messages.js';
import { packageRoot } from './package-info.js';
import { runProcess } from './process.js';

/** Where the results go without `--out`, relative to the working directory. */
export const DEFAULT_BENCH_DIR = 'mmapkit-bench';
/** Deadline of a whole run: a full run takes about ten minutes on two cores. */
const BENCH_TIMEOUT_MS = 2 * 60 * 60 * 1000;

/** The `bench` command. */
export const benchCommand: Command = {
  name: 'bench',
  summary: 'Run the benchmarks; write the tables (markdown), SVG charts and figures (JSON) into a folder',
  synopsis: 'bench [--quick] [--only LIST] [--out DIR] [--data-dir DIR] [--json]',
  description: `
Runs mmapkit's benchmarks on this machine (bench/run.mjs of the package, in a child Node process)
and writes into DIR (default ./${DEFAULT_BENCH_DIR}, created if needed):

  DIR/benchmarks.md    the tables and notes of every section measured into DIR so far
  DIR/*.svg            the charts (channel-benchmark.svg, cp-benchmark.svg)
  DIR/results.json     every figure, merged by section: a later run with --only replaces the
                       sections it runs and keeps the others
  DIR/data/            the data files (a 1 GiB file of random bytes; 64 MiB with --quick), kept and
                       reused by the next run; delete the folder to free the space
  DIR/bin/             the C programs the benchmarks compare with, compiled with cc -O2 (skipped,
                       and the tables say so, without a C compiler)

Progress and the tables are printed as the run goes. The package's docs/benchmarks.md explains what
each benchmark measures and holds the figures of the machine the package was developed on.

Sections: core (mapping), ipc (waiting across processes), channel (message channels), topic
(broadcast to several processes), cli (this command-line tool: cp, send | recv). --only takes sections or single benchmarks (cp, sendRecv, mapUnmap, ...;
an unknown name is answered with the list). A full run takes about ten minutes and needs 1 GiB of
disk and of free memory (the file is read from the page cache); --quick takes about a minute and
measures too little to be more than a smoke test.

Exit codes: 0 done, 1 a benchmark failed (for example, two ways of reading gave different data),
2 usage error.`,
  options: {
    quick: { type: 'boolean', short: 'q', description: 'Small and fast: a 64 MiB file and fewer runs (a smoke test)' },
    only: { type: 'string', valueName: 'LIST', description: 'Only these sections or benchmarks, comma-separated (cli,mapUnmap)' },
    out: { type: 'string', short: 'o', valueName: 'DIR', description: `Write the results into DIR (default ./${DEFAULT_BENCH_DIR})` },
    'data-dir': { type: 'string', valueName: 'DIR', description: 'Keep the data files in DIR (default DIR/data of --out)' },
    json: { type: 'boolean', description: 'Print the figures of this run as JSON on stdout; progress and tables go to stderr' },
  },
  positionals: { min: 0, max: 0 },
  run: runBench,
};

/** A directory option: not empty, and not an existing file that is not a directory. */
function directoryOption(value: string | boolean | undefined, option: string): string | undefined {
  if (value === undefined || typeof value === 'boolean') return undefined;
  if (value === '') throw new UsageError(`${option} needs a directory, got ''`, 'bench');
  const dir = resolve(value);
  if (existsSync(dir) && !statSync(dir).isDirectory()) throw new Failure(`cannot write into ${quote(value)}: Not a directory`);
  return dir;
}

async function runBench(ctx: CommandContext): Promise<number> {
  const { values } = ctx;
  const out = directoryOption(values['out'], '--out') ?? resolve(DEFAULT_BENCH_DIR);
  const dataDir = directoryOption(values['data-dir'], '--data-dir');
  const onlyText = values['only'];
  let only: string[] | undefined;
  if (typeof onlyText === 'string') {
    only = onlyText.split(',').map((s) => s.trim()).filter((s) => s !== '');
    if (only.length === 0) throw new UsageError(`--only needs a comma-separated list of sections or benchmarks, got '${onlyText}'`, 'bench');
  }
  const script = join(packageRoot, 'bench', 'run.mjs');
  if (!existsSync(script)) throw new Failure(`the benchmarks are missing: ${quote(script)} does not exist`);
  // Load the library here first: a missing native addon is one clear error, not a stack trace.
  await import('../index.js');

  const args = [
    '--expose-gc',
    script,
    `--out=${out}`,
    ...(values['quick'] === true ? ['--quick'] : []),
    ...(only === undefined ? [] : [`--only=${only.join(',')}`]),
    ...(dataDir === undefined ? [] : [`--data-dir=${dataDir}`]),
    ...(values['json'] === true ? ['--json'] : []),
  ];
  const result = await runProcess(process.execPath, args, {
    timeoutMs: BENCH_TIMEOUT_MS,
    env: { ...process.env, MMAPKIT_BENCH_PROGRAM: 'mmapkit bench' },
    onLine: (line, stream) => {
      if (stream === 'stdout') ctx.out(`${line}\n`);
      else ctx.err(`${line}\n`);
    },
  });
  if (result.code === 0) return 0;
  // 2: a usage error that bench/run.mjs has already printed in the CLI's words.
  if (result.code === 2) return 2;
  if (result.timedOut) throw new Failure(`the benchmarks did not finish within ${BENCH_TIMEOUT_MS / 3_600_000} hours and were stopped`);
  const how = result.signal === null ? `exit status ${String(result.code)}` : `signal ${result.signal}`;
  throw new Failure(`the benchmarks failed (${how}): see the messages above`);
}
