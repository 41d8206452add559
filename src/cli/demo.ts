/**
 * `mmapkit demo`: run the classic memory-mapping programs of examples/ as real processes and narrate
 * what each process saw, checking that it saw the right thing.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join, relative } from 'node:path';
import type { Command, CommandContext } from './command.js';
import { examplesDir } from './package-info.js';
import { runProcess } from './process.js';

/** Deadline of each example process (01 gives its own child 10 s). */
const STEP_TIMEOUT_MS = 30_000;
/** Size of the random file that step 3 copies: a few MiB, not a whole number of pages. */
const COPY_SIZE = 3 * 1024 * 1024 + 12_345;
/** Mode of that file, so that the check can see it carried over. */
const COPY_MODE = 0o640;

/** A demo step failed: what went wrong (exit code 1). */
class StepFailure extends Error {}

/** The `demo` command. */
export const demoCommand: Command = {
  name: 'demo',
  summary: 'Run the memory-mapping examples as real processes and narrate what each one saw',
  synopsis: 'demo [--keep]',
  description: `
Runs the programs of the examples/ folder as separate Node.js processes, prints what each process
printed (lines starting with [parent], [child], [writer], [reader], [copy]) and checks the result:

  1. examples/01-parent-child.mjs: a parent maps a file, its child maps the same file and writes a
     greeting; the parent reads the greeting through its own mapping.
  2. examples/02-unrelated-writer.mjs then examples/02-unrelated-reader.mjs: two unrelated processes,
     one after the other, pass a message through a mapped file.
  3. examples/03-copy.mjs: a file of random data is copied through two mappings, then compared byte
     for byte with the original.

Temporary files go to a new folder under the system's temporary directory, removed at the end.
Exits 0 when every step saw what it should, 1 otherwise.`,
  options: {
    keep: { type: 'boolean', short: 'k', description: 'Keep the temporary folder and print its path' },
  },
  positionals: { min: 0, max: 0 },
  run: runDemo,
};

async function runDemo(ctx: CommandContext): Promise<number> {
  const { out } = ctx;
  const keep = ctx.values['keep'] === true;

  // Load the library here first: a missing native addon is one clear error, not three failed steps.
  const { pageSize, guardInstalled } = await import('../index.js');
  for (const name of EXAMPLES) {
    if (!existsSync(join(examplesDir, name))) throw new Error(`the example ${join(examplesDir, name)} is missing`);
  }

  const dir = mkdtempSync(join(tmpdir(), 'mmapkit-demo-'));
  try {
    out(
      `mmapkit demo: memory-mapped files shared between processes (page size ${pageSize} bytes, ` +
        `SIGBUS guard ${guardInstalled() ? 'installed' : 'not installed'}).\n` +
        `Each step runs example programs as real processes; the lines after "|" are what they printed.\n`,
    );
    const steps: readonly ((ctx: CommandContext, dir: string) => Promise<string>)[] = [
      stepParentChild,
      stepUnrelated,
      stepCopy,
    ];
    for (const [i, step] of steps.entries()) {
      out(`\nStep ${i + 1}/${steps.length}: `);
      let conclusion: string;
      try {
        conclusion = await step(ctx, dir);
      } catch (err) {
        if (err instanceof StepFailure) {
          out(`  FAILED: ${err.message}\n`);
          throw new Error(`step ${i + 1}/${steps.length} failed: ${err.message}`);
        }
        throw err;
      }
      out(`  ok: ${conclusion}\n`);
    }
    out(`\nAll ${steps.length} steps passed.\n`);
    return 0;
  } finally {
    if (keep) out(`Temporary files kept in ${dir}\n`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

const EXAMPLES = ['01-parent-child.mjs', '02-unrelated-writer.mjs', '02-unrelated-reader.mjs', '03-copy.mjs'] as const;
type Example = (typeof EXAMPLES)[number];

/** Run one example with node, echo what it printed, and return its stdout; throw if it failed. */
async function runExample(ctx: CommandContext, example: Example, args: readonly string[]): Promise<string> {
  const script = join(examplesDir, example);
  ctx.out(`  $ node ${[script, ...args].map(shown).join(' ')}\n`);
  const result = await runProcess(process.execPath, [script, ...args], { timeoutMs: STEP_TIMEOUT_MS });
  for (const line of (result.stdout + result.stderr).split('\n')) {
    if (line !== '') ctx.out(`  | ${line}\n`);
  }
  if (result.timedOut) throw new StepFailure(`${example} did not finish within ${STEP_TIMEOUT_MS / 1000} s`);
  if (result.code !== 0) {
    const how = result.signal === null ? `exit code ${String(result.code)}` : `signal ${result.signal}`;
    throw new StepFailure(`${example} failed (${how})`);
  }
  return result.stdout;
}

/** A path as the narration shows it: relative to the working directory when inside it, quoted if needed. */
function shown(path: string): string {
  const rel = isAbsolute(path) ? relative(process.cwd(), path) : path;
  const text = rel !== '' && !rel.startsWith('..') && !isAbsolute(rel) ? rel : path;
  return /^[\w./@%+=:,-]+$/.test(text) ? text : `'${text.replaceAll("'", "'\\''")}'`;
}

/** The quoted text of the first line of `output` that starts with `prefix` and ends with `"..."`. */
function quoted(output: string, prefix: string): string | undefined {
  for (const line of output.split('\n')) {
    if (line.startsWith(prefix)) {
      const match = /"(.*)"$/.exec(line);
      if (match?.[1] !== undefined) return match[1];
    }
  }
  return undefined;
}

async function stepParentChild(ctx: CommandContext): Promise<string> {
  ctx.out('a parent and its child share one mapped file\n');
  const output = await runExample(ctx, '01-parent-child.mjs', []);
  const written = quoted(output, '[child] wrote its greeting:');
  const read = quoted(output, '[parent] read from its mapping:');
  if (written === undefined) throw new StepFailure('the child did not report its greeting');
  if (read !== written) {
    throw new StepFailure(`the parent read ${JSON.stringify(read ?? null)}, not the child's greeting ${JSON.stringify(written)}`);
  }
  return `the parent read the child's greeting through its own mapping: "${read}"`;
}

async function stepUnrelated(ctx: CommandContext, dir: string): Promise<string> {
  ctx.out('two unrelated processes, started one after the other, pass a message through a file\n');
  const file = join(dir, 'message.bin');
  const message = `Hello from mmapkit demo, token ${randomBytes(6).toString('hex')}`;
  await runExample(ctx, '02-unrelated-writer.mjs', [file, message]);
  const output = await runExample(ctx, '02-unrelated-reader.mjs', [file]);
  const read = quoted(output, '[reader] read');
  if (read !== message) {
    throw new StepFailure(`the reader printed ${JSON.stringify(read ?? null)}, not the writer's message ${JSON.stringify(message)}`);
  }
  return `the reader found the writer's message after the writer had exited: "${read}"`;
}

async function stepCopy(ctx: CommandContext, dir: string): Promise<string> {
  ctx.out('copying a file through two mappings\n');
  const src = join(dir, 'random.bin');
  const dst = join(dir, 'random-copy.bin');
  const data = randomBytes(COPY_SIZE);
  writeFileSync(src, data);
  chmodSync(src, COPY_MODE);
  ctx.out(`  (made ${shown(src)}: ${COPY_SIZE} random bytes, mode 0${COPY_MODE.toString(8)})\n`);
  await runExample(ctx, '03-copy.mjs', [src, dst]);
  const copy = readFileSync(dst);
  if (copy.length !== data.length) throw new StepFailure(`the copy has ${copy.length} bytes, the source ${data.length}`);
  if (!copy.equals(data)) {
    const at = copy.findIndex((byte, i) => byte !== data[i]);
    throw new StepFailure(`the copy differs from the source at byte ${at}`);
  }
  const mode = statSync(dst).mode & 0o7777;
  if (mode !== COPY_MODE) {
    throw new StepFailure(`the copy has mode 0${mode.toString(8)}, the source 0${COPY_MODE.toString(8)}`);
  }
  return `byte-for-byte check passed: the copy is identical to the source (${COPY_SIZE} bytes), mode 0${mode.toString(8)} kept`;
}
