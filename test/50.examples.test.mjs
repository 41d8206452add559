// The teaching examples (examples/*.mjs) and the `mmapkit` CLI, run as real child processes: what
// each process printed, what ended up in the files, exit codes. Needs `npx tsc -p .` (dist/cli/).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { SharedMemory, Event, map } from '../dist/index.js';
import { distUrl, shmName as sharedName, startNode, tempDir, until } from './helpers.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const EXAMPLES = join(ROOT, 'examples');
const CLI = join(ROOT, 'dist', 'cli', 'main.js');
const TIMEOUT = 60_000;

/** Run `node file args...` with a deadline; a timeout or spawn failure fails the test. */
function node(file, args = [], { env, cwd } = {}) {
  const r = spawnSync(process.execPath, [file, ...args], {
    encoding: 'utf8',
    timeout: TIMEOUT,
    killSignal: 'SIGKILL',
    env: { ...process.env, ...env },
    cwd: cwd ?? ROOT,
  });
  if (r.error) throw r.error;
  return r;
}
const example = (name, args, options) => node(join(EXAMPLES, name), args, options);

/**
 * Start `node examples/NAME args...` without waiting (the tests' child harness, startProc): for two
 * processes that run at the same time. Killed after TIMEOUT (and when the test ends). `waitFor(pattern)`
 * resolves when stdout matches, and fails the test if the process ends first; `exited` resolves to a
 * spawnSync-like result with the process's pid.
 */
function startExample(t, name, args = [], { env } = {}) {
  const p = startNode([join(EXAMPLES, name), ...args], name, { t, timeout: TIMEOUT, spawnOptions: { env: { ...process.env, ...env }, cwd: ROOT } });
  p.waitFor = (pattern) => until(() => pattern.test(p.stdout()), [p], `${name} prints ${pattern}`, TIMEOUT);
  p.exited = p.done.then((r) => ({ ...r, pid: p.child.pid }));
  return p;
}

/** A fresh shared memory name (helpers' shmName), also unlinked under its POSIX name ('/NAME'): removed when the test ends. */
const shmName = (t, tag) => sharedName(t, `ex-${tag}`);
const shmExists = (name) => existsSync(`/dev/shm/${name.replace(/^\//, '')}`);

/** Whether process `pid` is gone (or a zombie nobody reaped), waiting up to 2 s for it to go. */
function gone(pid) {
  const until = Date.now() + 2000;
  for (;;) {
    let state;
    try {
      state = /\) (\S)/.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.[1];
    } catch {
      return true; // no /proc entry: gone
    }
    if (state === 'Z' || state === 'X') return true;
    if (Date.now() > until) return false;
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
  }
}

/** Index of the first stdout line starting with `prefix`; fails the test when there is none. */
function lineIndex(stdout, prefix) {
  const i = stdout.split('\n').findIndex((l) => l.startsWith(prefix));
  assert.ok(i !== -1, `no line starting with ${prefix} in:\n${stdout}`);
  return i;
}

/** Assert that the lines starting with these prefixes come in this order. */
function inOrder(stdout, ...prefixes) {
  const at = prefixes.map((p) => lineIndex(stdout, p));
  for (let i = 1; i < at.length; i++) {
    assert.ok(at[i - 1] < at[i], `"${prefixes[i - 1]}" should come before "${prefixes[i]}" in:\n${stdout}`);
  }
}

/** A preload body that makes Event.set() do nothing, in the process where the tamper applies. */
const EVENT_SET_DOES_NOTHING = `const { Event } = await import(${JSON.stringify(distUrl)}); Event.prototype.set = function () {};`;
const cli = (args, options) => node(CLI, args, options);

/**
 * Fault injection: a module preloaded (NODE_OPTIONS=--import) into every process of a run, including
 * the children the examples start, that misbehaves in the process whose script ends with `script`
 * (and, when given, whose arguments include `arg`). `body` is the code to run there.
 */
function tamper(t, script, body, arg) {
  const file = join(tempDir(t), 'tamper.mjs');
  const argTest = arg === undefined ? '' : ` && process.argv.includes(${JSON.stringify(arg)})`;
  writeFileSync(
    file,
    `import * as fs from 'node:fs';\n` +
      `if (process.argv[1]?.endsWith(${JSON.stringify(script)})${argTest}) {\n${body}\n}\n`,
  );
  return { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${pathToFileURL(file).href}`.trim() };
}

/** Assert exit code `code`, showing the output when it is not. */
function exits(r, code) {
  assert.equal(r.status, code, `exit ${r.status} (signal ${r.signal}), expected ${code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
}

/** Assert a one-line style error: the message matches, no stack trace. */
function cleanError(r, pattern) {
  assert.match(r.stderr, pattern, `stderr does not match ${pattern}:\n${r.stderr}\nstdout:\n${r.stdout}`);
  assert.doesNotMatch(r.stderr, /^\s+at /m, `stack trace on stderr:\n${r.stderr}`);
}

/** The quoted text at the end of the first stdout line starting with `prefix`. */
function quoted(stdout, prefix) {
  const line = stdout.split('\n').find((l) => l.startsWith(prefix));
  assert.ok(line !== undefined, `no line starting with ${prefix} in:\n${stdout}`);
  const m = /"(.*)"$/.exec(line);
  assert.ok(m, `no quoted text in: ${line}`);
  return m[1];
}

// ---------------------------------------------------------------------------------------------
// 01-parent-child.mjs

test('01: the parent reads the greeting its child wrote (default temp file, removed)', (t) => {
  const tmp = tempDir(t);
  const r = example('01-parent-child.mjs', [], { env: { TMPDIR: tmp } });
  exits(r, 0);
  const greeting = quoted(r.stdout, '[child] wrote its greeting:');
  assert.match(greeting, /^Hello parent, this is your child \(pid \d+\)!$/);
  assert.equal(quoted(r.stdout, '[parent] read from its mapping:'), greeting);
  // The child saw the note the parent wrote before starting it.
  assert.equal(quoted(r.stdout, '[child] saw the parent\'s note:'), quoted(r.stdout, '[parent] wrote a note:'));
  // Two different processes.
  const parentPid = /^\[parent\] pid (\d+)/m.exec(r.stdout)?.[1];
  const childPid = /^\[child\] pid (\d+)/m.exec(r.stdout)?.[1];
  assert.ok(parentPid && childPid && parentPid !== childPid, r.stdout);
  // The parent printed after the child exited: the reading comes last.
  const lines = r.stdout.trim().split('\n');
  assert.match(lines.at(-1), /^\[parent\] read from its mapping:/);
  assert.equal(r.stderr, '');
  // The temporary file went to TMPDIR and is gone.
  assert.match(r.stdout, new RegExp(`mapped ${tmp.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/mmapkit-01-\\w+/shared\\.bin`));
  assert.deepEqual(readdirSync(tmp), []);
});

test('01: with a FILE argument the greeting is in the file afterwards', (t) => {
  const file = join(tempDir(t), 'shared.bin');
  const r = example('01-parent-child.mjs', [file]);
  exits(r, 0);
  const greeting = quoted(r.stdout, '[parent] read from its mapping:');
  const data = readFileSync(file);
  assert.equal(data.length, 4096);
  assert.equal(data.toString('utf8', 0, data.indexOf(0)), greeting);
});

test('01: errors exit 1 with a clear message; bad usage exits 2', (t) => {
  const dir = tempDir(t);
  let r = example('01-parent-child.mjs', [join(dir, 'no', 'such', 'dir', 'f.bin')]);
  exits(r, 1);
  cleanError(r, /^\[parent\] error: ENOENT: no such file or directory/m);
  mkdirSync(join(dir, 'sub'));
  r = example('01-parent-child.mjs', [join(dir, 'sub')]);
  exits(r, 1);
  cleanError(r, /^\[parent\] error: EISDIR/m);
  r = example('01-parent-child.mjs', ['a', 'b']);
  exits(r, 2);
  assert.match(r.stderr, /usage:/);
  // The child alone, on a missing file.
  r = example('01-parent-child.mjs', ['--child', join(dir, 'missing.bin')]);
  exits(r, 1);
  cleanError(r, /^\[child\] error: ENOENT/m);
});

test('01: the parent notices a child that wrote nothing', (t) => {
  const env = tamper(t, '01-parent-child.mjs', 'process.exit(0);', '--child');
  const r = example('01-parent-child.mjs', [], { env: { ...env, TMPDIR: tempDir(t) } });
  exits(r, 1);
  cleanError(r, /^\[parent\] error: the mapping still holds the parent's note/m);
});

test('01: the parent gives up on a child that hangs, after 10 s', (t) => {
  // The child never gets to run its code: the preload waits forever (a timer keeps it alive).
  const env = tamper(t, '01-parent-child.mjs', 'setInterval(() => {}, 1000); await new Promise(() => {});', '--child');
  const tmp = tempDir(t);
  const started = Date.now();
  const r = example('01-parent-child.mjs', [], { env: { ...env, TMPDIR: tmp } });
  const elapsed = Date.now() - started;
  exits(r, 1);
  cleanError(r, /^\[parent\] error: the child \(pid \d+\) did not finish within 10 s; killed it$/m);
  assert.ok(elapsed >= 9_500 && elapsed < 30_000, `gave up after ${elapsed} ms`);
  assert.deepEqual(readdirSync(tmp), [], 'the temporary file is removed on failure too');
});

// ---------------------------------------------------------------------------------------------
// 01-parent-child-wait.mjs

test('01-wait: the parent reads the greeting while the child waits; the child reads the reply', (t) => {
  const tmp = tempDir(t);
  const r = example('01-parent-child-wait.mjs', [], { env: { TMPDIR: tmp } });
  exits(r, 0);
  const greeting = quoted(r.stdout, '[child] wrote its greeting:');
  assert.match(greeting, /^Hello parent, this is your child \(pid \d+\)!$/);
  assert.equal(quoted(r.stdout, "[parent] read the child's greeting:"), greeting);
  const reply = quoted(r.stdout, '[parent] wrote its reply:');
  assert.match(reply, /^Hello child, parent \d+ here/);
  assert.equal(quoted(r.stdout, "[child] read the parent's reply:"), reply);
  const childPid = /^\[child\] pid (\d+)/m.exec(r.stdout)?.[1];
  assert.ok(childPid, r.stdout);
  assert.match(r.stdout, new RegExp(`^\\[parent\\] woke up: GREETING_WRITTEN is set and the child \\(pid ${childPid}\\) is still running`, 'm'));
  // The handshake, in causal order (one pipe: each side prints before it sets its event).
  inOrder(
    r.stdout,
    '[child] wrote its greeting:',
    '[child] setting GREETING_WRITTEN',
    '[parent] woke up:',
    "[parent] read the child's greeting:",
    '[parent] setting REPLY_WRITTEN',
    '[child] woke up: REPLY_WRITTEN is set',
    "[child] read the parent's reply:",
    `[parent] child ${childPid} exited with code 0`,
  );
  assert.match(r.stdout.trim().split('\n').at(-1), /^\[parent\] child \d+ exited with code 0$/);
  assert.equal(r.stderr, '');
  assert.deepEqual(readdirSync(tmp), [], 'the temporary file is removed');
});

test('01-wait: with a FILE argument, the greeting, the reply and both events are in the file afterwards', (t) => {
  const file = join(tempDir(t), 'shared.bin');
  writeFileSync(file, Buffer.alloc(4096, 0x41)); // leftovers of an earlier run: cleared by the parent
  const r = example('01-parent-child-wait.mjs', [file]);
  exits(r, 0);
  const data = readFileSync(file);
  const cstring = (offset) => data.toString('utf8', offset, data.indexOf(0, offset));
  assert.equal(cstring(1024), quoted(r.stdout, '[child] wrote its greeting:'));
  assert.equal(cstring(2048), quoted(r.stdout, '[parent] wrote its reply:'));
  const m = map(file, { access: 'write' });
  try {
    assert.equal(Event.attach(m, 0).isSet, true, 'GREETING_WRITTEN');
    assert.equal(Event.attach(m, 32).isSet, true, 'REPLY_WRITTEN');
  } finally {
    m.unmap();
  }
});

test('01-wait: a child that exits without its greeting is noticed at once, not after the timeout', (t) => {
  const env = tamper(t, '01-parent-child-wait.mjs', 'process.exit(0);', '--child');
  const tmp = tempDir(t);
  const started = Date.now();
  const r = example('01-parent-child-wait.mjs', [], { env: { ...env, TMPDIR: tmp } }); // default 10 s timeout
  const elapsed = Date.now() - started;
  exits(r, 1);
  cleanError(r, /^\[parent\] error: the child \(pid \d+\) exited with code 0 before setting GREETING_WRITTEN$/m);
  assert.ok(elapsed < 5000, `took ${elapsed} ms: the parent slept until its timeout`);
  assert.deepEqual(readdirSync(tmp), []);
});

test('01-wait: a child that hangs is killed after MMAPKIT_WAIT_TIMEOUT', (t) => {
  const env = tamper(t, '01-parent-child-wait.mjs', 'setInterval(() => {}, 1000); await new Promise(() => {});', '--child');
  const tmp = tempDir(t);
  const started = Date.now();
  const r = example('01-parent-child-wait.mjs', [], { env: { ...env, TMPDIR: tmp, MMAPKIT_WAIT_TIMEOUT: '1000' } });
  const elapsed = Date.now() - started;
  exits(r, 1);
  cleanError(r, /^\[parent\] error: the child \(pid \d+\) did not set GREETING_WRITTEN within 1 s; killed it$/m);
  assert.ok(elapsed >= 900 && elapsed < 10_000, `gave up after ${elapsed} ms`);
  const pid = Number(/\(pid (\d+)\)/.exec(r.stderr)[1]);
  assert.ok(gone(pid), `the child ${pid} is still running`);
  assert.deepEqual(readdirSync(tmp), []);
});

test('01-wait: a parent that never replies: the child times out, and the parent reports its failure', (t) => {
  const env = tamper(t, '01-parent-child-wait.mjs', `if (!process.argv.includes('--child')) { ${EVENT_SET_DOES_NOTHING} }`);
  // 5 s, not 1: the child must start and write its greeting within the parent's timeout, and starting
  // Node takes over a second on a loaded machine (then the parent kills it and the test sees that).
  const r = example('01-parent-child-wait.mjs', [], { env: { ...env, TMPDIR: tempDir(t), MMAPKIT_WAIT_TIMEOUT: '5000' } });
  exits(r, 1);
  cleanError(r, /^\[child\] error: the parent did not set REPLY_WRITTEN within 5 s$/m);
  cleanError(r, /^\[parent\] error: the child \(pid \d+\) failed: it exited with code 1$/m);
  assert.doesNotMatch(r.stdout, /\[child\] read the parent's reply/);
});

test('01-wait: errors exit 1 with a clear message; bad usage exits 2', (t) => {
  const dir = tempDir(t);
  let r = example('01-parent-child-wait.mjs', ['a', 'b']);
  exits(r, 2);
  assert.match(r.stderr, /usage:/);
  r = example('01-parent-child-wait.mjs', ['--child']);
  exits(r, 1);
  cleanError(r, /^\[child\] error: --child needs the path/m);
  // The child alone, on a file without events: attach checks the header.
  writeFileSync(join(dir, 'blank.bin'), Buffer.alloc(4096));
  r = example('01-parent-child-wait.mjs', ['--child', join(dir, 'blank.bin')]);
  exits(r, 1);
  cleanError(r, /^\[child\] error: No Event here: magic is 0x0/m);
  r = example('01-parent-child-wait.mjs', [join(dir, 'no', 'dir', 'f.bin')]);
  exits(r, 1);
  cleanError(r, /^\[parent\] error: ENOENT/m);
  r = example('01-parent-child-wait.mjs', [], { env: { MMAPKIT_WAIT_TIMEOUT: 'soon', TMPDIR: dir } });
  exits(r, 1);
  cleanError(r, /^\[parent\] error: MMAPKIT_WAIT_TIMEOUT must be a positive integer \(milliseconds\), not "soon"$/m);
});

// ---------------------------------------------------------------------------------------------
// 02-unrelated-writer.mjs / 02-unrelated-reader.mjs

test('02: the reader prints the message the writer left, in the agreed layout', (t) => {
  const file = join(tempDir(t), 'message.bin');
  const message = `héllo wörld ✓ ${randomBytes(4).toString('hex')}`;
  const w = example('02-unrelated-writer.mjs', [file, message]);
  exits(w, 0);
  assert.equal(quoted(w.stdout, '[writer] wrote'), message);
  assert.match(w.stdout, /^\[writer\] flushed/m);
  // The layout, read with plain fs: u32 LE length, then the UTF-8 bytes.
  const data = readFileSync(file);
  const bytes = Buffer.from(message);
  assert.equal(data.length, 4096);
  assert.equal(data.readUInt32LE(0), bytes.length);
  assert.deepEqual(data.subarray(4, 4 + bytes.length), bytes);

  const r = example('02-unrelated-reader.mjs', [file]);
  exits(r, 0);
  assert.equal(quoted(r.stdout, '[reader] read'), message);
  assert.match(r.stdout, new RegExp(`^\\[reader\\] read ${bytes.length} bytes:`, 'm'));
  assert.equal(r.stderr, '');
});

test('02: the default message, a message larger than a page, and a shorter message over a longer one', (t) => {
  const file = join(tempDir(t), 'message.bin');
  exits(example('02-unrelated-writer.mjs', [file]), 0);
  let r = example('02-unrelated-reader.mjs', [file]);
  exits(r, 0);
  assert.match(quoted(r.stdout, '[reader] read'), /^Hello from the writer \(pid \d+\) at \d{4}-/);

  const big = 'x'.repeat(10_000) + 'END';
  exits(example('02-unrelated-writer.mjs', [file, big]), 0);
  assert.equal(statSync(file).size, 4 + big.length, 'the file grew to fit the message');
  r = example('02-unrelated-reader.mjs', [file]);
  exits(r, 0);
  assert.equal(quoted(r.stdout, '[reader] read'), big);

  exits(example('02-unrelated-writer.mjs', [file, 'short']), 0);
  r = example('02-unrelated-reader.mjs', [file]);
  exits(r, 0);
  assert.equal(quoted(r.stdout, '[reader] read'), 'short');
});

test('02: the reader fails clearly on a missing, empty, blank or corrupt file; usage errors exit 2', (t) => {
  const dir = tempDir(t);
  let r = example('02-unrelated-reader.mjs', [join(dir, 'missing.bin')]);
  exits(r, 1);
  cleanError(r, /^\[reader\] error: ENOENT/m);

  writeFileSync(join(dir, 'empty.bin'), '');
  r = example('02-unrelated-reader.mjs', [join(dir, 'empty.bin')]);
  exits(r, 1);
  cleanError(r, /^\[reader\] error: .*empty\.bin is empty: run the writer first/m);

  writeFileSync(join(dir, 'zero.bin'), Buffer.alloc(4096));
  r = example('02-unrelated-reader.mjs', [join(dir, 'zero.bin')]);
  exits(r, 1);
  cleanError(r, /holds no message yet/);

  const corrupt = Buffer.alloc(64);
  corrupt.writeUInt32LE(1000, 0);
  writeFileSync(join(dir, 'corrupt.bin'), corrupt);
  r = example('02-unrelated-reader.mjs', [join(dir, 'corrupt.bin')]);
  exits(r, 1);
  cleanError(r, /length field says 1000 bytes but only 60 follow/);

  writeFileSync(join(dir, 'tiny.bin'), 'ab');
  r = example('02-unrelated-reader.mjs', [join(dir, 'tiny.bin')]);
  exits(r, 1);
  cleanError(r, /too small/);

  r = example('02-unrelated-writer.mjs', [join(dir, 'no', 'dir', 'f.bin'), 'x']);
  exits(r, 1);
  cleanError(r, /^\[writer\] error: ENOENT/m);

  exits(example('02-unrelated-writer.mjs', []), 2);
  exits(example('02-unrelated-reader.mjs', []), 2);
  exits(example('02-unrelated-reader.mjs', ['a', 'b']), 2);
});

// ---------------------------------------------------------------------------------------------
// 02-unrelated-wait-writer.mjs / 02-unrelated-wait-reader.mjs

for (const order of ['writer first', 'reader first']) {
  test(`02-wait: ${order}: the message arrives, the reader acknowledges, the writer removes the name`, async (t) => {
    const name = shmName(t, 'order');
    const message = `héllo ✓ ${order} ${randomBytes(4).toString('hex')}`;
    let reader;
    let writer;
    if (order === 'writer first') {
      writer = startExample(t, '02-unrelated-wait-writer.mjs', [name, message]);
      await writer.waitFor(/^\[writer\] set WRITTEN; waiting for the reader to set READ \(at most 10 s\)$/m);
      assert.ok(shmExists(name), 'the writer created the name');
      reader = startExample(t, '02-unrelated-wait-reader.mjs', [name]);
    } else {
      reader = startExample(t, '02-unrelated-wait-reader.mjs', [name]);
      await reader.waitFor(/^\[reader\] \S+ does not exist yet: waiting for the writer/m);
      // --delay: the reader opens the memory before the message is there, and sleeps on WRITTEN.
      writer = startExample(t, '02-unrelated-wait-writer.mjs', ['--delay', '1000', name, message]);
    }
    const [r, w] = await Promise.all([reader.exited, writer.exited]);
    exits(r, 0);
    exits(w, 0);
    assert.equal(quoted(w.stdout, '[writer] wrote'), message);
    assert.equal(quoted(r.stdout, '[reader] read'), message);
    assert.match(r.stdout, new RegExp(`^\\[reader\\] pid ${r.pid} opened /${name} \\(4096 bytes\\), created by writer pid ${w.pid}$`, 'm'));
    assert.match(w.stdout, new RegExp(`^\\[writer\\] the reader \\(pid ${r.pid}\\) set READ: message delivered$`, 'm'));
    inOrder(w.stdout, '[writer] wrote', '[writer] set WRITTEN', '[writer] the reader', `[writer] removed the name /${name}`);
    if (order === 'writer first') {
      assert.doesNotMatch(r.stdout, /does not exist yet/);
      inOrder(r.stdout, '[reader] pid', '[reader] WRITTEN is already set', '[reader] read', '[reader] setting READ');
    } else {
      inOrder(
        r.stdout,
        '[reader] ',
        '[reader] pid',
        '[reader] waiting for the writer to set WRITTEN',
        '[reader] woke up: WRITTEN is set',
        '[reader] read',
        '[reader] setting READ',
      );
      assert.match(r.stdout.split('\n')[0], /does not exist yet/);
    }
    assert.equal(r.stderr, '');
    assert.equal(w.stderr, '');
    assert.equal(shmExists(name), false, 'the writer removed the name');
  });
}

test('02-wait: a message larger than a page, and names with and without the leading slash', async (t) => {
  const name = shmName(t, 'big');
  const big = 'y'.repeat(10_000) + 'END';
  const writer = startExample(t, '02-unrelated-wait-writer.mjs', [`/${name}`, big]);
  await writer.waitFor(/waiting for the reader/);
  const r = example('02-unrelated-wait-reader.mjs', [name]);
  exits(r, 0);
  const w = await writer.exited;
  exits(w, 0);
  assert.match(w.stdout, new RegExp(`created /${name} \\(${76 + big.length} bytes\\)`));
  assert.equal(quoted(r.stdout, '[reader] read'), big);
  assert.equal(shmExists(name), false);
});

test('02-wait: the reader alone gives up after MMAPKIT_WAIT_TIMEOUT with a clear message', (t) => {
  const name = shmName(t, 'alone');
  const started = Date.now();
  const r = example('02-unrelated-wait-reader.mjs', [name], { env: { MMAPKIT_WAIT_TIMEOUT: '500' } });
  const elapsed = Date.now() - started;
  exits(r, 1);
  assert.match(r.stdout, new RegExp(`^\\[reader\\] ${name} does not exist yet: waiting for the writer \\(retrying every 20 ms, at most 0.5 s\\)$`, 'm'));
  cleanError(r, new RegExp(`^\\[reader\\] error: no writer set up ${name} within 0.5 s: start 02-unrelated-wait-writer\\.mjs with the same NAME$`, 'm'));
  assert.ok(elapsed >= 450 && elapsed < 10_000, `gave up after ${elapsed} ms`);
  assert.equal(shmExists(name), false, 'the reader never creates the name');
});

test('02-wait: the reader retries on memory that exists but is not set up, then gives up', (t) => {
  const name = shmName(t, 'blank');
  const shm = SharedMemory.create(name, 4096); // zeros: no events there
  t.after(() => shm.close());
  const r = example('02-unrelated-wait-reader.mjs', [name], { env: { MMAPKIT_WAIT_TIMEOUT: '500' } });
  exits(r, 1);
  assert.match(r.stdout, /^\[reader\] \S+ is not set up yet: waiting for the writer/m);
  cleanError(r, /^\[reader\] error: no writer set up \S+ within 0\.5 s/m);
});

test('02-wait: the writer alone gives up after MMAPKIT_WAIT_TIMEOUT and still removes the name', (t) => {
  const name = shmName(t, 'nobody');
  const r = example('02-unrelated-wait-writer.mjs', [name, 'anyone?'], { env: { MMAPKIT_WAIT_TIMEOUT: '500' } });
  exits(r, 1);
  cleanError(r, /^\[writer\] error: no reader acknowledged the message within 0\.5 s$/m);
  assert.match(r.stdout, new RegExp(`^\\[writer\\] removed the name /${name}$`, 'm'));
  assert.equal(shmExists(name), false);
});

test('02-wait: the writer refuses an existing name and leaves it alone', (t) => {
  const name = shmName(t, 'taken');
  const shm = SharedMemory.create(name, 4096);
  t.after(() => shm.close());
  shm.buffer.write('not yours');
  const r = example('02-unrelated-wait-writer.mjs', [name, 'x']);
  exits(r, 1);
  cleanError(r, new RegExp(`^\\[writer\\] error: /${name} already exists: another writer is using it, or one was killed before removing it \\(rm /dev/shm/${name}\\)$`, 'm'));
  assert.ok(shmExists(name), 'the name is still there');
  assert.equal(shm.buffer.toString('utf8', 0, 9), 'not yours');
});

test('02-wait: a name left by a killed writer is reported at once, not after the timeout', async (t) => {
  const name = shmName(t, 'stale');
  const writer = startExample(t, '02-unrelated-wait-writer.mjs', ['--delay', '30000', name, 'never']);
  await writer.waitFor(/taking 30000 ms to prepare the message/);
  writer.kill();
  const w = await writer.exited;
  assert.equal(w.signal, 'SIGKILL');
  assert.ok(shmExists(name), 'a killed writer cannot remove its name');
  const started = Date.now();
  const r = example('02-unrelated-wait-reader.mjs', [name]); // default 10 s timeout
  exits(r, 1);
  cleanError(r, new RegExp(`^\\[reader\\] error: /${name} was left behind by writer pid ${w.pid}, which is no longer running: remove it \\(rm /dev/shm/${name}\\)`, 'm'));
  assert.ok(Date.now() - started < 5000, 'the reader did not wait for its timeout');
});

test('02-wait: bad names, timeouts and usage', (t) => {
  let r = example('02-unrelated-wait-reader.mjs', ['a/b']);
  exits(r, 1);
  cleanError(r, /^\[reader\] error: The argument 'name' must not contain a slash/m);
  r = example('02-unrelated-wait-writer.mjs', ['a/b']);
  exits(r, 1);
  cleanError(r, /^\[writer\] error: The argument 'name' must not contain a slash/m);
  const name = shmName(t, 'env');
  r = example('02-unrelated-wait-writer.mjs', [name], { env: { MMAPKIT_WAIT_TIMEOUT: '0' } });
  exits(r, 1);
  cleanError(r, /MMAPKIT_WAIT_TIMEOUT must be a positive integer/);
  assert.equal(shmExists(name), false, 'nothing created on a bad setting');
  r = example('02-unrelated-wait-reader.mjs', [name], { env: { MMAPKIT_WAIT_TIMEOUT: '-5' } });
  exits(r, 1);
  cleanError(r, /MMAPKIT_WAIT_TIMEOUT must be a positive integer/);

  for (const args of [[], ['--delay'], ['--delay', 'x', name], ['--delay', '-1', name], [name, 'msg', 'extra'], ['-n']]) {
    r = example('02-unrelated-wait-writer.mjs', args);
    exits(r, 2);
    assert.match(r.stderr, /^usage: node examples\/02-unrelated-wait-writer\.mjs \[--delay MS\] NAME \[MESSAGE\]$/m, args.join(' '));
  }
  for (const args of [[], ['a', 'b'], ['-x']]) {
    r = example('02-unrelated-wait-reader.mjs', args);
    exits(r, 2);
    assert.match(r.stderr, /^usage: node examples\/02-unrelated-wait-reader\.mjs NAME$/m);
  }
  assert.equal(shmExists(name), false);
});

// ---------------------------------------------------------------------------------------------
// 03-copy.mjs

const SIZES = [0, 1, 4095, 4096, 4097, 3 * 1024 * 1024 + 7];
const MODES = [0o600, 0o640, 0o604, 0o755, 0o444, 0o700];

test('03: copies are byte-identical and keep the mode bits, for sizes 0, 1, 4095, 4096, 4097 and 3 MiB', (t) => {
  const dir = tempDir(t);
  for (const [i, size] of SIZES.entries()) {
    const src = join(dir, `src-${size}`);
    const dst = join(dir, `dst-${size}`);
    const data = randomBytes(size);
    writeFileSync(src, data);
    const mode = MODES[i % MODES.length];
    chmodSync(src, mode);
    const r = example('03-copy.mjs', [src, dst]);
    exits(r, 0);
    assert.ok(readFileSync(dst).equals(data), `copy of ${size} bytes differs`);
    assert.equal(statSync(dst).mode & 0o7777, mode, `mode of the ${size}-byte copy`);
    if (size === 0) {
      assert.match(r.stdout, /is empty: created an empty .* without mapping/);
    } else {
      assert.match(r.stdout, new RegExp(`^\\[copy\\] copied ${size} bytes in 1 window\\(s\\)`, 'm'));
      assert.match(r.stdout, /^\[copy\] flushed/m);
    }
    assert.equal(r.stderr, '');
  }
});

test('03: the window loop (MMAPKIT_COPY_WINDOW) copies exactly, with an uneven last window', (t) => {
  const dir = tempDir(t);
  const size = 1024 * 1024 + 333;
  const data = randomBytes(size);
  writeFileSync(join(dir, 'src'), data);
  const r = example('03-copy.mjs', [join(dir, 'src'), join(dir, 'dst')], { env: { MMAPKIT_COPY_WINDOW: '10007' } });
  exits(r, 0);
  assert.match(r.stdout, new RegExp(`copied ${size} bytes in ${Math.ceil(size / 10007)} window\\(s\\) of at most 10007 bytes`));
  assert.ok(readFileSync(join(dir, 'dst')).equals(data));

  const bad = example('03-copy.mjs', [join(dir, 'src'), join(dir, 'dst2')], { env: { MMAPKIT_COPY_WINDOW: '0' } });
  exits(bad, 1);
  cleanError(bad, /MMAPKIT_COPY_WINDOW must be a positive integer/);
  assert.equal(existsSync(join(dir, 'dst2')), false);
});

test('03: an existing, larger destination is replaced, not left with a tail of old bytes', (t) => {
  const dir = tempDir(t);
  const data = randomBytes(5000);
  writeFileSync(join(dir, 'src'), data);
  writeFileSync(join(dir, 'dst'), Buffer.alloc(20_000, 0xee));
  exits(example('03-copy.mjs', [join(dir, 'src'), join(dir, 'dst')]), 0);
  assert.ok(readFileSync(join(dir, 'dst')).equals(data));
  // And an existing destination with other mode bits gets the source's.
  chmodSync(join(dir, 'src'), 0o640);
  chmodSync(join(dir, 'dst'), 0o777);
  exits(example('03-copy.mjs', [join(dir, 'src'), join(dir, 'dst')]), 0);
  assert.equal(statSync(join(dir, 'dst')).mode & 0o7777, 0o640);
});

test('03: errors exit 1 with a clear message and leave the source alone; bad usage exits 2', (t) => {
  const dir = tempDir(t);
  const src = join(dir, 'src');
  const data = randomBytes(3000);
  writeFileSync(src, data);

  let r = example('03-copy.mjs', [src, src]);
  exits(r, 1);
  cleanError(r, /are the same file/);
  assert.ok(readFileSync(src).equals(data), 'the source survived copying onto itself');

  r = example('03-copy.mjs', [join(dir, 'missing'), join(dir, 'dst')]);
  exits(r, 1);
  cleanError(r, /^\[copy\] error: ENOENT/m);
  assert.equal(existsSync(join(dir, 'dst')), false);

  r = example('03-copy.mjs', [dir, join(dir, 'dst')]);
  exits(r, 1);
  cleanError(r, /is a directory/);

  r = example('03-copy.mjs', ['/dev/null', join(dir, 'dst')]);
  exits(r, 1);
  cleanError(r, /not a regular file/);

  r = example('03-copy.mjs', [src, join(dir, 'no', 'dir', 'dst')]);
  exits(r, 1);
  cleanError(r, /^\[copy\] error: ENOENT/m);

  // A regular file that cannot be mapped (sysfs): the destination, already created, is removed.
  const sysfs = '/sys/kernel/mm/transparent_hugepage/enabled';
  if (existsSync(sysfs)) {
    r = example('03-copy.mjs', [sysfs, join(dir, 'dst')]);
    exits(r, 1);
    cleanError(r, /^\[copy\] error: ENODEV/m);
    assert.equal(existsSync(join(dir, 'dst')), false, 'no half-made copy left behind');
  } else {
    t.diagnostic(`${sysfs} missing: the cleanup of a failed copy is not tested`);
  }

  exits(example('03-copy.mjs', []), 2);
  exits(example('03-copy.mjs', [src]), 2);
  exits(example('03-copy.mjs', [src, 'a', 'b']), 2);
});

// ---------------------------------------------------------------------------------------------
// 04-anonymous-shm.mjs

test('04: the child writes into anonymous shared memory it inherited; the parent, asleep on a word, reads it', () => {
  const r = example('04-anonymous-shm.mjs');
  exits(r, 0);
  assert.match(r.stdout, /^\[parent\] pid \d+ created 4096 bytes of anonymous shared memory \(fd \d+: \/memfd:mmapkit \(deleted\); no name in \/dev\/shm\)$/m);
  assert.match(r.stdout, /^\[child\] pid \d+ attached the memory its parent handed over \(\/memfd:mmapkit \(deleted\), 4096 bytes\)$/m);
  // The child saw the parent's note: it is the same memory.
  assert.equal(quoted(r.stdout, "[child] saw the parent's note:"), quoted(r.stdout, '[parent] wrote a note:'));
  const message = quoted(r.stdout, '[child] wrote its message:');
  assert.match(message, /^Hello parent, this is your child \(pid \d+\)/);
  assert.equal(quoted(r.stdout, '[parent] read from the shared memory:'), message);
  const parentPid = /^\[parent\] pid (\d+)/m.exec(r.stdout)?.[1];
  const childPid = /^\[child\] pid (\d+)/m.exec(r.stdout)?.[1];
  assert.ok(parentPid && childPid && parentPid !== childPid, r.stdout);
  inOrder(
    r.stdout,
    '[parent] starting the child',
    '[child] wrote its message:',
    '[child] storing WRITTEN',
    '[parent] woke up: the state word is WRITTEN',
    '[parent] read from the shared memory:',
    `[parent] child ${childPid} exited with code 0`,
  );
  assert.equal(r.stderr, '');
});

test('04: a child that exits without writing is noticed at once, not after the timeout', (t) => {
  const env = tamper(t, '04-anonymous-shm.mjs', 'process.exit(0);', '--child');
  const started = Date.now();
  const r = example('04-anonymous-shm.mjs', [], { env }); // default 10 s timeout
  const elapsed = Date.now() - started;
  exits(r, 1);
  cleanError(r, /^\[parent\] error: the child \(pid \d+\) exited with code 0 before writing its message$/m);
  assert.ok(elapsed < 5000, `took ${elapsed} ms: the parent slept until its timeout`);
});

test('04: a child that hangs before writing, or after, is killed after MMAPKIT_WAIT_TIMEOUT', (t) => {
  const cases = [
    // Never runs its code.
    ['setInterval(() => {}, 1000); await new Promise(() => {});', 1, /^\[parent\] error: the child \(pid (\d+)\) did not write its message within 1 s; killed it$/m],
    // Writes and notifies, then stays alive: the parent reads, then gives up waiting for the exit. It
    // must start and write within the timeout: 5 s, as starting Node takes over a second under load.
    ['setInterval(() => {}, 1000);', 5, /^\[parent\] error: the child \(pid (\d+)\) did not exit within 5 s; killed it$/m],
  ];
  for (const [body, seconds, pattern] of cases) {
    const started = Date.now();
    const r = example('04-anonymous-shm.mjs', [], { env: { ...tamper(t, '04-anonymous-shm.mjs', body, '--child'), MMAPKIT_WAIT_TIMEOUT: String(seconds * 1000) } });
    const elapsed = Date.now() - started;
    exits(r, 1);
    cleanError(r, pattern);
    assert.ok(elapsed >= seconds * 900 && elapsed < seconds * 1000 + 20_000, `gave up after ${elapsed} ms`);
    const pid = Number(pattern.exec(r.stderr)[1]);
    assert.ok(gone(pid), `the child ${pid} is still running`);
  }
});

test('04: the child alone has no memory to attach; bad usage exits 2', () => {
  let r = example('04-anonymous-shm.mjs', ['--child']);
  exits(r, 1);
  cleanError(r, /^\[child\] error: no shared memory was handed to this process: run the parent \(without --child\)$/m);
  for (const args of [['x'], ['--child', 'x']]) {
    r = example('04-anonymous-shm.mjs', args);
    exits(r, 2);
    assert.match(r.stderr, /^usage: node examples\/04-anonymous-shm\.mjs$/m);
  }
  r = example('04-anonymous-shm.mjs', [], { env: { MMAPKIT_WAIT_TIMEOUT: '1.5' } });
  exits(r, 1);
  cleanError(r, /^\[parent\] error: MMAPKIT_WAIT_TIMEOUT must be a positive integer/m);
});

// ---------------------------------------------------------------------------------------------
// 05-channel.mjs

/** Run worker `n` of 05-channel.mjs only: a tamper body that runs `body` in that worker. */
const inWorker = (n, body) => `if (process.argv[2] === '--child' && process.argv[3] === '${n}') {\n${body}\n}`;

test('05: two workers take the jobs from a channel; every job is done exactly once, with the right answer', () => {
  for (const count of [undefined, 1, 9, 300]) {
    const r = example('05-channel.mjs', count === undefined ? [] : [String(count)]);
    exits(r, 0);
    const n = count ?? 40;
    // What each worker says it processed: together, every job once.
    const processed = new Map();
    for (const [, w, k, list] of r.stdout.matchAll(/^\[worker (\d)\] end of the stream: processed (\d+) jobs: ?(.*)$/gm)) {
      const ids = list === '' ? [] : list.split(' ').map(Number);
      assert.equal(ids.length, Number(k), `worker ${w}'s count`);
      processed.set(w, ids);
    }
    assert.deepEqual([...processed.keys()].sort(), ['1', '2'], r.stdout);
    const all = [...processed.values()].flat().sort((a, b) => a - b);
    assert.deepEqual(all, Array.from({ length: n }, (_, i) => i), `${n} jobs, each exactly once:\n${r.stdout}`);
    // The parent's summary agrees with the workers.
    const summary = new RegExp(`^\\[parent\\] all ${n} jobs were done exactly once, with the right answers: worker 1 did (\\d+), worker 2 did (\\d+)$`, 'm').exec(r.stdout);
    assert.ok(summary, r.stdout);
    assert.deepEqual([Number(summary[1]), Number(summary[2])], [processed.get('1').length, processed.get('2').length]);
    // Three processes.
    const pids = [/^\[parent\] pid (\d+)/m, /^\[worker 1\] pid (\d+)/m, /^\[worker 2\] pid (\d+)/m].map((re) => re.exec(r.stdout)?.[1]);
    assert.equal(new Set(pids.filter(Boolean)).size, 3, r.stdout);
    // Batches only past the first 8 jobs.
    if (n > 8) assert.match(r.stdout, new RegExp(`^\\[parent\\] sent jobs 8(-${n - 1})? in ${Math.ceil((n - 8) / 8)} batch\\(es\\) \\(sendManyAsync\\)$`, 'm'));
    else assert.doesNotMatch(r.stdout, /sendManyAsync/);
    // Causal order: both ready before any job; the workers end only after JOBS is closed; RESULTS
    // ends only after both workers are done; the summary comes last.
    inOrder(r.stdout, '[worker 1] pid', '[parent] both workers are ready');
    inOrder(r.stdout, '[worker 2] pid', '[parent] both workers are ready');
    inOrder(r.stdout, '[parent] closing JOBS', '[worker 1] end of the stream', '[parent] RESULTS ended');
    inOrder(r.stdout, '[parent] closing JOBS', '[worker 2] end of the stream', '[parent] RESULTS ended');
    assert.match(r.stdout.trim().split('\n').at(-1), /^\[parent\] all \d+ jobs were done exactly once/);
    assert.equal(r.stderr, '');
  }
});

test('05: a worker that exits before the end of the jobs is noticed at once, not after the timeout', (t) => {
  const env = tamper(t, '05-channel.mjs', inWorker(1, 'process.exit(0);'));
  const started = Date.now();
  const r = example('05-channel.mjs', [], { env }); // default 10 s timeout
  const elapsed = Date.now() - started;
  exits(r, 1);
  cleanError(r, /^\[parent\] error: worker 1 \(pid \d+\) exited with code 0 before the end of the jobs$/m);
  assert.ok(elapsed < 5000, `took ${elapsed} ms: the parent slept until its timeout`);
  assert.doesNotMatch(r.stdout, /all \d+ jobs were done/);
});

test('05: a worker killed after the end of JOBS: RESULTS still ends (a dead producer counts as closed) and the parent reports it', (t) => {
  // Worker 1 dies (SIGKILL: no close()) as soon as it sees the end of JOBS, holding no job.
  const body = inWorker(
    1,
    `const { Channel } = await import(${JSON.stringify(distUrl)});
     const receive = Channel.prototype.receive;
     Channel.prototype.receive = function (...args) {
       const message = receive.apply(this, args);
       if (message === null) process.kill(process.pid, 'SIGKILL');
       return message;
     };`,
  );
  const started = Date.now();
  const r = example('05-channel.mjs', [], { env: tamper(t, '05-channel.mjs', body) });
  const elapsed = Date.now() - started;
  exits(r, 1);
  cleanError(r, /^\[parent\] error: worker 1 \(pid \d+\) was killed by SIGKILL$/m);
  // No job was lost: the worker died between jobs. The parent did not wait for a timeout.
  assert.doesNotMatch(r.stderr, /never done/);
  assert.match(r.stdout, /^\[parent\] RESULTS ended: every worker has closed it \(or died\)$/m);
  assert.match(r.stdout, /^\[worker 2\] end of the stream: processed \d+ jobs/m);
  assert.doesNotMatch(r.stdout, /^\[worker 1\] end of the stream/m);
  assert.ok(elapsed < 5000, `took ${elapsed} ms: the parent slept until its timeout`);
});

test('05: workers that never get ready are killed after MMAPKIT_WAIT_TIMEOUT', (t) => {
  const dir = tempDir(t);
  // Every worker records its pid, then never runs its code.
  const body = `if (process.argv[2] === '--child') {
    fs.writeFileSync(${JSON.stringify(dir)} + '/' + process.pid, '');
    setInterval(() => {}, 1000);
    await new Promise(() => {});
  }`;
  const started = Date.now();
  // 5 s: both workers must start (and record their pids) before the parent gives up on them; starting
  // two Node processes takes over a second on a loaded machine.
  const r = example('05-channel.mjs', [], { env: { ...tamper(t, '05-channel.mjs', body), MMAPKIT_WAIT_TIMEOUT: '5000' } });
  const elapsed = Date.now() - started;
  exits(r, 1);
  cleanError(r, /^\[parent\] error: only 0 of 2 workers got ready within 5 s$/m);
  assert.ok(elapsed >= 4500 && elapsed < 30_000, `gave up after ${elapsed} ms`);
  const pids = readdirSync(dir).map(Number);
  assert.equal(pids.length, 2, 'both workers started');
  for (const pid of pids) assert.ok(gone(pid), `the worker ${pid} is still running`);
});

test('05: a worker alone has no channels to attach; bad usage exits 2', () => {
  let r = example('05-channel.mjs', ['--child', '1']);
  exits(r, 1);
  cleanError(r, /^\[worker 1\] error: no channels were handed to this process: run the parent \(without --child\)$/m);
  for (const args of [['0'], ['x'], ['1.5'], ['100001'], ['1', '2'], ['--child'], ['--child', '3'], ['--child', '1', 'x']]) {
    r = example('05-channel.mjs', args);
    exits(r, 2);
    assert.match(r.stderr, /^usage: node examples\/05-channel\.mjs \[JOBS\]$/m, args.join(' '));
  }
  r = example('05-channel.mjs', [], { env: { MMAPKIT_WAIT_TIMEOUT: '0' } });
  exits(r, 1);
  cleanError(r, /^\[parent\] error: MMAPKIT_WAIT_TIMEOUT must be a positive integer/m);
});

// ---------------------------------------------------------------------------------------------
// 06-channel-server.mjs

test('06: an HTTP server keeps answering while 300,000 messages stream in through a channel; every message in order', () => {
  const r = example('06-channel-server.mjs');
  exits(r, 0);
  assert.equal(r.stderr, '');
  assert.match(r.stdout, /^\[parent\] serving http:\/\/127\.0\.0\.1:\d+\/progress; receiving 300000 messages of 64 bytes$/m);
  assert.match(r.stdout, /^\[producer\] sent 300000 messages$/m);
  assert.match(r.stdout, /^\[parent\] received all 300000 messages in order in \d+ ms/m);
  const answered = /^\[parent\] while they flowed the client was answered (\d+) times: median ([\d.]+) ms, slowest ([\d.]+) ms$/m.exec(r.stdout);
  assert.ok(answered, r.stdout);
  // Answered during the stream (before the fix: never), and each answer in a fraction of a second
  // even on a loaded machine (a starved event loop answers only once the whole stream is in).
  assert.ok(Number(answered[1]) >= 1, r.stdout);
  assert.ok(Number(answered[3]) < 1000, r.stdout);
  inOrder(r.stdout, '[parent] serving', '[parent] received all', '[parent] while they flowed');
});

test('06: a producer or client alone fails clearly; bad usage exits 2', () => {
  let r = example('06-channel-server.mjs', ['--producer', '5000']);
  exits(r, 1);
  cleanError(r, /^\[producer\] error: no channel was handed to this process: run the parent \(without --producer\)$/m);
  for (const args of [['999'], ['x'], ['1000.5'], ['10000001'], ['1000', '2'], ['--producer'], ['--producer', 'x'], ['--client'], ['--client', 'not a url'], ['--client', 'http://127.0.0.1:1/', 'x']]) {
    r = example('06-channel-server.mjs', args);
    exits(r, 2);
    assert.match(r.stderr, /^usage: node examples\/06-channel-server\.mjs \[MESSAGES\]$/m, args.join(' '));
  }
  r = example('06-channel-server.mjs', ['1000'], { env: { MMAPKIT_WAIT_TIMEOUT: '0' } });
  exits(r, 1);
  cleanError(r, /^\[parent\] error: MMAPKIT_WAIT_TIMEOUT must be a positive integer/m);
});

// ---------------------------------------------------------------------------------------------
// The mmapkit CLI

/** Shared memory names the demo run `r` made and left behind (it must leave none); they carry its pid. */
const demoNames = (r) => readdirSync('/dev/shm').filter((n) => n.startsWith(`mmapkit-demo-${r.pid}-`));

/** The part of the demo's output that belongs to step `n`. */
function stepText(stdout, n) {
  const start = stdout.indexOf(`\nStep ${n}/`);
  assert.ok(start !== -1, `no step ${n} in:\n${stdout}`);
  const end = stdout.indexOf('\nStep ', start + 1);
  return stdout.slice(start + 1, end === -1 ? undefined : end);
}

test('cli: demo runs every example, narrates and checks, and leaves no temporary files', (t) => {
  const tmp = tempDir(t);
  const r = cli(['demo'], { env: { TMPDIR: tmp } });
  exits(r, 0);
  for (const expected of [
    /^Step 1\/7: a parent and its child share one mapped file$/m,
    /^ {2}\$ node examples\/01-parent-child\.mjs$/m,
    /^ {2}\| \[child\] wrote its greeting: "Hello parent/m,
    /^ {2}\| \[parent\] read from its mapping: "Hello parent/m,
    /^ {2}ok: the parent read the child's greeting through its own mapping: "Hello parent, this is your child \(pid \d+\)!"$/m,
    /^Step 2\/7: a parent and its child wait for each other with events in one mapped file$/m,
    /^ {2}\$ node examples\/01-parent-child-wait\.mjs$/m,
    /^ {2}\| \[parent\] woke up: GREETING_WRITTEN is set and the child \(pid \d+\) is still running/m,
    /^ {2}\| \[child\] read the parent's reply: "Hello child/m,
    /^ {2}ok: the parent read the greeting while the child waited, and the child read the reply: "Hello child, parent \d+ here/m,
    /^Step 3\/7: /m,
    /^ {2}\| \[writer\] wrote \d+ bytes: "Hello from mmapkit demo, token [0-9a-f]+"$/m,
    /^ {2}\| \[reader\] read \d+ bytes: "Hello from mmapkit demo, token [0-9a-f]+"$/m,
    /^ {2}ok: the reader found the writer's message/m,
    /^Step 4\/7: two unrelated processes share named memory: the reader starts first and waits for the writer$/m,
    /^ {2}\$ node examples\/02-unrelated-wait-reader\.mjs \/mmapkit-demo-\d+-[0-9a-f]+ &$/m,
    /^ {2}\$ node examples\/02-unrelated-wait-writer\.mjs --delay 500 \/mmapkit-demo-\d+-[0-9a-f]+ 'Hello from mmapkit demo, token [0-9a-f]+'$/m,
    /^ {2}ok: the reader waited for \/mmapkit-demo-\d+-[0-9a-f]+, slept until the message was there and read it: "Hello from mmapkit demo, token [0-9a-f]+"; the writer got the acknowledgement and removed the name$/m,
    /^Step 5\/7: the same two processes the other way round: the writer starts first and waits for the reader$/m,
    /^ {2}\$ node examples\/02-unrelated-wait-writer\.mjs \/mmapkit-demo-\d+-[0-9a-f]+ 'Hello from mmapkit demo, token [0-9a-f]+' &$/m,
    /^ {2}ok: the reader found the message the waiting writer had left: "Hello from mmapkit demo, token [0-9a-f]+"; the writer got the acknowledgement and removed the name$/m,
    /^Step 6\/7: /m,
    /^ {2}\| \[copy\] copied \d+ bytes/m,
    /^ {2}ok: byte-for-byte check passed: the copy is identical to the source \(\d+ bytes\), mode 0640 kept$/m,
    /^Step 7\/7: a parent hands anonymous shared memory to its child and sleeps until the child writes$/m,
    /^ {2}\$ node examples\/04-anonymous-shm\.mjs$/m,
    /^ {2}\| \[parent\] woke up: the state word is WRITTEN$/m,
    /^ {2}ok: the parent read the child's message from memory that has no name: "Hello parent, this is your child \(pid \d+\)/m,
    /^All 7 steps passed\.$/m,
  ]) {
    assert.match(r.stdout, expected);
  }
  // In each step with a writer and a reader, the token the writer wrote is the one the reader read.
  for (const n of [3, 4, 5]) {
    const text = stepText(r.stdout, n);
    const written = /\[writer\] wrote \d+ bytes: "(.*)"/.exec(text)?.[1];
    const read = /\[reader\] read \d+ bytes: "(.*)"/.exec(text)?.[1];
    assert.ok(written !== undefined, text);
    assert.equal(read, written, `step ${n}`);
  }
  // Step 4: the reader really started first and slept on the event; step 5: the other way round.
  const step4 = stepText(r.stdout, 4);
  inOrder(
    step4.split('\n').map((l) => l.replace(/^ {2}\| /, '')).join('\n'),
    '[reader] /mmapkit-demo-',
    '[writer] pid',
    '[reader] waiting for the writer to set WRITTEN',
    '[reader] woke up: WRITTEN is set',
  );
  assert.match(stepText(r.stdout, 5), /\[reader\] WRITTEN is already set/);
  assert.doesNotMatch(stepText(r.stdout, 5), /does not exist yet/);
  assert.equal(r.stderr, '');
  assert.deepEqual(readdirSync(tmp), [], 'demo and its examples cleaned up their temporary files');
  assert.ok(r.pid > 0);
  assert.deepEqual(demoNames(r), [], 'no shared memory name left behind');
});

test('cli: demo --keep keeps the files it checked', (t) => {
  const tmp = tempDir(t);
  const r = cli(['demo', '--keep'], { env: { TMPDIR: tmp } });
  exits(r, 0);
  const kept = /^Temporary files kept in (.+)$/m.exec(r.stdout)?.[1];
  assert.ok(kept !== undefined && kept.startsWith(tmp), r.stdout);
  assert.deepEqual(readdirSync(kept).sort(), ['message.bin', 'random-copy.bin', 'random.bin']);
  assert.ok(readFileSync(join(kept, 'random.bin')).equals(readFileSync(join(kept, 'random-copy.bin'))));
  rmSync(kept, { recursive: true, force: true });
});

test('cli: a failing step exits 1 with one line on stderr, and a stack trace only with --debug', (t) => {
  const tmp = tempDir(t);
  // A bad window size makes examples/03-copy.mjs fail, so step 6 fails.
  const env = { TMPDIR: tmp, MMAPKIT_COPY_WINDOW: 'bad' };
  let r = cli(['demo'], { env });
  exits(r, 1);
  assert.match(r.stdout, /^ {2}FAILED: 03-copy\.mjs failed \(exit code 1\)$/m);
  assert.doesNotMatch(r.stdout, /All 7 steps passed/);
  assert.doesNotMatch(r.stdout, /^Step 7\/7/m, 'the demo stops at the failed step');
  assert.equal(r.stderr, 'mmapkit demo: step 6/7 failed: 03-copy.mjs failed (exit code 1)\n');
  assert.deepEqual(readdirSync(tmp), []);

  r = cli(['demo', '--debug'], { env });
  exits(r, 1);
  assert.match(r.stderr, /^mmapkit demo: step 6\/7 failed/);
  assert.match(r.stderr, /^\s+at /m, 'a stack trace with --debug');
  r = cli(['--debug', 'demo'], { env });
  exits(r, 1);
  assert.match(r.stderr, /^\s+at /m, 'a stack trace with --debug before the command');
});

test('cli: demo notices a wrong message, a wrong copy and a wrong mode, and failures of the waiting examples', (t) => {
  const cases = [
    // The writer writes something else than it was asked to.
    ['02-unrelated-writer.mjs', "process.argv[3] = 'tampered';", /step 3\/7 failed: the reader printed "tampered", not the writer's message "Hello from mmapkit demo/],
    // The same with the waiting writer (its message is its last argument).
    [
      '02-unrelated-wait-writer.mjs',
      "process.argv[process.argv.length - 1] = 'tampered';",
      /step 4\/7 failed: the reader printed "tampered", not the writer's message "Hello from mmapkit demo/,
    ],
    // The waiting writer dies at once: the reader, already waiting, is stopped and the step fails.
    ['02-unrelated-wait-writer.mjs', 'process.exit(3);', /step 4\/7 failed: 02-unrelated-wait-writer\.mjs failed \(exit code 3\)/],
    // The parent of 01-wait never sets REPLY_WRITTEN (the child gives up after MMAPKIT_WAIT_TIMEOUT).
    [
      '01-parent-child-wait.mjs',
      `if (!process.argv.includes('--child')) { ${EVENT_SET_DOES_NOTHING} }`,
      /step 2\/7 failed: 01-parent-child-wait\.mjs failed \(exit code 1\)/,
      { MMAPKIT_WAIT_TIMEOUT: '2000' },
    ],
    // The child of 04 exits without writing.
    ['04-anonymous-shm.mjs', "if (process.argv.includes('--child')) process.exit(0);", /step 7\/7 failed: 04-anonymous-shm\.mjs failed \(exit code 1\)/],
    // One byte of the copy flipped after the copy is done.
    [
      '03-copy.mjs',
      "process.on('exit', () => { const fd = fs.openSync(process.argv[3], 'r+'); const b = Buffer.alloc(1); " +
        'fs.readSync(fd, b, 0, 1, 100000); b[0] ^= 1; fs.writeSync(fd, b, 0, 1, 100000); fs.closeSync(fd); });',
      /step 6\/7 failed: the copy differs from the source at byte 100000/,
    ],
    // The copy's mode changed after the copy is done.
    ['03-copy.mjs', "process.on('exit', () => fs.chmodSync(process.argv[3], 0o600));", /step 6\/7 failed: the copy has mode 0600, the source 0640/],
  ];
  for (const [script, body, pattern, env] of cases) {
    const tmp = tempDir(t);
    const r = cli(['demo'], { env: { ...tamper(t, script, body), TMPDIR: tmp, ...env } });
    exits(r, 1);
    cleanError(r, pattern);
    assert.match(r.stdout, /^ {2}FAILED: /m);
    assert.deepEqual(readdirSync(tmp), []);
    assert.deepEqual(demoNames(r), [], `no shared memory name left behind (${script})`);
  }
});

test('cli: --help, COMMAND --help, help COMMAND and --version', () => {
  let r = cli(['--help']);
  exits(r, 0);
  assert.match(r.stdout, /^Usage: mmapkit \[--debug\] COMMAND \[options\]$/m);
  assert.match(r.stdout, /^ {2}demo +Run the memory-mapping examples/m);
  assert.match(r.stdout, /--version/);
  assert.equal(r.stderr, '');
  exits(cli(['-h']), 0);

  for (const args of [['demo', '--help'], ['demo', '-h'], ['help', 'demo']]) {
    r = cli(args);
    exits(r, 0);
    assert.match(r.stdout, /^Usage: mmapkit demo \[--keep\]$/m, args.join(' '));
    assert.match(r.stdout, /^ {2}-k, --keep +Keep the temporary folder/m);
    assert.doesNotMatch(r.stdout, /Step 1/, 'help does not run the demo');
  }

  const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  for (const flag of ['--version', '-V']) {
    r = cli([flag]);
    exits(r, 0);
    assert.equal(r.stdout, `${version}\n`);
  }
});

test('cli: usage errors exit 2 with a hint and no stack trace', () => {
  const cases = [
    [['frobnicate'], /^mmapkit: unknown command 'frobnicate'\nRun 'mmapkit --help' for usage\.\n$/],
    [['demo', '--bogus'], /^mmapkit: unknown option '--bogus'\nRun 'mmapkit demo --help' for usage\.\n$/],
    [['demo', '-z'], /^mmapkit: unknown option '-z'/],
    [['demo', 'extra'], /^mmapkit: 'demo' takes 0 argument\(s\), got 1: unexpected 'extra'/],
    [['--bogus'], /^mmapkit: unknown option '--bogus'/],
    [['help', 'frobnicate'], /^mmapkit: unknown command 'frobnicate'/],
    [[], /mmapkit: missing command\n/],
  ];
  for (const [args, pattern] of cases) {
    const r = cli(args);
    exits(r, 2);
    assert.match(r.stderr, pattern, args.join(' '));
    assert.doesNotMatch(r.stderr, /^\s+at /m, args.join(' '));
    assert.doesNotMatch(r.stdout, /Step 1/, 'nothing ran');
  }
  const r = cli(['--debug', 'frobnicate']);
  exits(r, 2);
  assert.match(r.stderr, /^\s+at /m, 'a stack trace with --debug');
});

test('cli: runs from another working directory', (t) => {
  const r = cli(['demo'], { cwd: tempDir(t) });
  exits(r, 0);
  assert.match(r.stdout, /All 7 steps passed/);
});

// ---------------------------------------------------------------------------------------------
// 07-topic.mjs

test('07: three subscriber processes each see every tick of a topic, in order, with the same totals', () => {
  for (const count of [undefined, 1, 5000]) {
    const r = example('07-topic.mjs', count === undefined ? [] : [String(count)]);
    exits(r, 0);
    const n = count ?? 1000;
    const ends = [...r.stdout.matchAll(/^\[sub (\d)\] end of the stream \(closed\): (\d+) ticks, total ([\d.]+), missed (\d+)$/gm)];
    assert.deepEqual(ends.map((m) => m[1]).sort(), ['1', '2', '3'], r.stdout);
    for (const m of ends) assert.deepEqual([Number(m[2]), Number(m[4])], [n, 0], r.stdout);
    assert.equal(new Set(ends.map((m) => m[3])).size, 1, 'the same total everywhere');
    assert.match(r.stdout, new RegExp(`^\\[parent\\] all 3 subscribers saw every tick: ${n} ticks, total ${ends[0][3].replace('.', '\\.')}, missed 0$`, 'm'));
    const pids = [...r.stdout.matchAll(/pid (\d+)/g)].map((m) => m[1]);
    assert.equal(new Set(pids).size, 4, 'four processes');
    // Causal order within each process (lines of different processes reach the parent's stdout through
    // pipes, in no order: a subscriber is counted through shared memory before its line arrives).
    inOrder(r.stdout, '[parent] pid', '[parent] 3 subscribers; publishing', '[parent] all 3 subscribers');
    for (const n of [1, 2, 3]) inOrder(r.stdout, `[sub ${n}] pid`, `[sub ${n}] end of the stream`);
  }
});

test('07: a subscriber that checks the order fails loudly when it does not get tick 0 first', (t) => {
  // Tampered: the parent publishes a tick before its subscribers are counted... simulated by a worker that
  // expects tick 1 first. The parent then reports that subscriber as wrong and exits 1.
  const env = tamper(t, '07-topic.mjs', "if (process.argv[2] === '--child' && process.argv[3] === '2') { const orig = JSON.parse; JSON.parse = (s) => { const v = orig(s); if (v.i === 0) v.i = 1; return v; }; }");
  const r = example('07-topic.mjs', ['50'], { env });
  exits(r, 1);
  assert.match(r.stdout, /^\[parent\] error: subscriber\(s\) 2 did not see 50 ticks, total [\d.]+, missed 0$/m);
});
