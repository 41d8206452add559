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
import { type RunResult, type RunningProcess, startProcess } from './process.js';

/** Deadline of each example process (the examples give their own waits and children 10 s). */
const STEP_TIMEOUT_MS = 30_000;
/**
 * `--delay` of the writer when the reader starts first: the writer creates the shared memory, then
 * takes this long to write the message, so that the reader, already there, sleeps on the event.
 */
const WRITER_DELAY_MS = 500;
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
  2. examples/01-parent-child-wait.mjs: the same, but the two wait for each other with events in the
     mapping: the parent reads the greeting while the child waits, then replies; the child reads it.
  3. examples/02-unrelated-writer.mjs then examples/02-unrelated-reader.mjs: two unrelated processes,
     one after the other, pass a message through a mapped file.
  4. examples/02-unrelated-wait-reader.mjs, then examples/02-unrelated-wait-writer.mjs: two unrelated
     processes running at the same time share named shared memory; the reader, started first, waits
     for the name to exist, sleeps on an event until the message is written, and acknowledges it.
  5. The same pair the other way round: the writer first, then the reader.
  6. examples/03-copy.mjs: a file of random data is copied through two mappings, then compared byte
     for byte with the original.
  7. examples/04-anonymous-shm.mjs: anonymous shared memory (no file, no name) handed to a child; the
     parent sleeps on a word of it until the child has written its message.

Temporary files go to a new folder under the system's temporary directory, removed at the end; the
shared memory names of steps 4 and 5 start with mmapkit-demo- and are removed too.
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
      stepParentChildWait,
      stepUnrelated,
      (c) => stepUnrelatedWait(c, 'reader-first'),
      (c) => stepUnrelatedWait(c, 'writer-first'),
      stepCopy,
      stepAnonymous,
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

const EXAMPLES = [
  '01-parent-child.mjs',
  '01-parent-child-wait.mjs',
  '02-unrelated-writer.mjs',
  '02-unrelated-reader.mjs',
  '02-unrelated-wait-writer.mjs',
  '02-unrelated-wait-reader.mjs',
  '03-copy.mjs',
  '04-anonymous-shm.mjs',
] as const;
type Example = (typeof EXAMPLES)[number];

/**
 * Start one example with node and echo what it prints as it prints it. `background`: shown with a
 * trailing `&`, like a shell command that runs while the next one starts.
 */
function startExample(ctx: CommandContext, example: Example, args: readonly string[], background = false): RunningProcess {
  const script = join(examplesDir, example);
  ctx.out(`  $ node ${[script, ...args].map(shown).join(' ')}${background ? ' &' : ''}\n`);
  return startProcess(process.execPath, [script, ...args], {
    timeoutMs: STEP_TIMEOUT_MS,
    onLine: (line) => {
      if (line !== '') ctx.out(`  | ${line}\n`);
    },
  });
}

/** Wait for a started example to end and return its stdout; throw if it failed. */
async function finishExample(example: Example, running: RunningProcess): Promise<string> {
  const result: RunResult = await running.done;
  if (result.timedOut) throw new StepFailure(`${example} did not finish within ${STEP_TIMEOUT_MS / 1000} s`);
  if (result.code !== 0) {
    const how = result.signal === null ? `exit code ${String(result.code)}` : `signal ${result.signal}`;
    throw new StepFailure(`${example} failed (${how})`);
  }
  return result.stdout;
}

/** Run one example with node, echo what it printed, and return its stdout; throw if it failed. */
async function runExample(ctx: CommandContext, example: Example, args: readonly string[]): Promise<string> {
  return finishExample(example, startExample(ctx, example, args));
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

async function stepParentChildWait(ctx: CommandContext): Promise<string> {
  ctx.out('a parent and its child wait for each other with events in one mapped file\n');
  const output = await runExample(ctx, '01-parent-child-wait.mjs', []);
  const greeting = quoted(output, '[child] wrote its greeting:');
  const read = quoted(output, "[parent] read the child's greeting:");
  const reply = quoted(output, '[parent] wrote its reply:');
  const answer = quoted(output, "[child] read the parent's reply:");
  if (greeting === undefined) throw new StepFailure('the child did not report its greeting');
  if (read !== greeting) {
    throw new StepFailure(`the parent read ${JSON.stringify(read ?? null)}, not the child's greeting ${JSON.stringify(greeting)}`);
  }
  if (!/^\[parent\] woke up: GREETING_WRITTEN is set and the child \(pid \d+\) is still running/m.test(output)) {
    throw new StepFailure('the parent did not read the greeting while the child was still running');
  }
  if (reply === undefined) throw new StepFailure('the parent did not report its reply');
  if (answer !== reply) {
    throw new StepFailure(`the child read ${JSON.stringify(answer ?? null)}, not the parent's reply ${JSON.stringify(reply)}`);
  }
  return `the parent read the greeting while the child waited, and the child read the reply: "${answer}"`;
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

/**
 * The waiting writer and reader at the same time, on a fresh shared memory name: the one started
 * first says it is waiting before the other starts, so the order is the one announced.
 */
async function stepUnrelatedWait(ctx: CommandContext, order: 'reader-first' | 'writer-first'): Promise<string> {
  const { SharedMemory } = await import('../index.js');
  const name = `/mmapkit-demo-${process.pid}-${randomBytes(4).toString('hex')}`;
  const message = `Hello from mmapkit demo, token ${randomBytes(6).toString('hex')}`;
  const readerFirst = order === 'reader-first';
  ctx.out(
    readerFirst
      ? 'two unrelated processes share named memory: the reader starts first and waits for the writer\n'
      : 'the same two processes the other way round: the writer starts first and waits for the reader\n',
  );
  const started: RunningProcess[] = [];
  try {
    let reader: RunningProcess;
    let writer: RunningProcess;
    if (readerFirst) {
      reader = startExample(ctx, '02-unrelated-wait-reader.mjs', [name], true);
      started.push(reader);
      if (!(await reader.waitForLine(/does not exist yet: waiting for the writer/, STEP_TIMEOUT_MS))) {
        throw new StepFailure('the reader did not say that it waits for the writer');
      }
      ctx.out('  (the reader is waiting for the name; now the writer, which takes a while to write)\n');
      writer = startExample(ctx, '02-unrelated-wait-writer.mjs', ['--delay', String(WRITER_DELAY_MS), name, message]);
      started.push(writer);
    } else {
      writer = startExample(ctx, '02-unrelated-wait-writer.mjs', [name, message], true);
      started.push(writer);
      if (!(await writer.waitForLine(/waiting for the reader to set READ/, STEP_TIMEOUT_MS))) {
        throw new StepFailure('the writer did not say that it waits for the reader');
      }
      ctx.out('  (the writer is waiting for the acknowledgement; now the reader)\n');
      reader = startExample(ctx, '02-unrelated-wait-reader.mjs', [name]);
      started.push(reader);
    }
    const [readerOut, writerOut] = await Promise.all([
      finishExample('02-unrelated-wait-reader.mjs', reader),
      finishExample('02-unrelated-wait-writer.mjs', writer),
    ]);

    const read = quoted(readerOut, '[reader] read');
    if (read !== message) {
      throw new StepFailure(`the reader printed ${JSON.stringify(read ?? null)}, not the writer's message ${JSON.stringify(message)}`);
    }
    if (!writerOut.includes(`the reader (pid ${String(reader.pid)}) set READ`)) {
      throw new StepFailure(`the writer did not report the acknowledgement of the reader (pid ${String(reader.pid)})`);
    }
    if (readerFirst && !readerOut.includes('woke up: WRITTEN is set')) {
      throw new StepFailure('the reader did not sleep on WRITTEN until the writer set it');
    }
    if (!readerFirst && !readerOut.includes('WRITTEN is already set')) {
      throw new StepFailure('the reader, started second, did not find the message already written');
    }
    try {
      SharedMemory.open(name).close();
      throw new StepFailure(`the writer did not remove ${name}`);
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'ENOENT') throw err;
    }
    return readerFirst
      ? `the reader waited for ${name}, slept until the message was there and read it: "${read}"; the writer got the acknowledgement and removed the name`
      : `the reader found the message the waiting writer had left: "${read}"; the writer got the acknowledgement and removed the name`;
  } finally {
    for (const running of started) running.kill();
    await Promise.allSettled(started.map(async (running) => running.done));
    try {
      SharedMemory.unlink(name); // only when a step failed: the writer removes it otherwise
    } catch {
      // ENOENT: already removed
    }
  }
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

async function stepAnonymous(ctx: CommandContext): Promise<string> {
  ctx.out('a parent hands anonymous shared memory to its child and sleeps until the child writes\n');
  const output = await runExample(ctx, '04-anonymous-shm.mjs', []);
  const note = quoted(output, '[parent] wrote a note:');
  const seenNote = quoted(output, "[child] saw the parent's note:");
  const written = quoted(output, '[child] wrote its message:');
  const read = quoted(output, '[parent] read from the shared memory:');
  if (note === undefined || seenNote !== note) {
    throw new StepFailure(`the child saw ${JSON.stringify(seenNote ?? null)}, not the parent's note ${JSON.stringify(note ?? null)}`);
  }
  if (written === undefined) throw new StepFailure('the child did not report its message');
  if (read !== written) {
    throw new StepFailure(`the parent read ${JSON.stringify(read ?? null)}, not the child's message ${JSON.stringify(written)}`);
  }
  return `the parent read the child's message from memory that has no name: "${read}"`;
}
