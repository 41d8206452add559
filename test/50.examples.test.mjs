// The teaching examples (examples/*.mjs) and the `mmapkit` CLI, run as real child processes: what
// each process printed, what ended up in the files, exit codes. Needs `npx tsc -p .` (dist/cli/).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { tempDir } from './helpers.mjs';

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
// The mmapkit CLI

test('cli: demo runs every example, narrates and checks, and leaves no temporary files', (t) => {
  const tmp = tempDir(t);
  const r = cli(['demo'], { env: { TMPDIR: tmp } });
  exits(r, 0);
  for (const expected of [
    /^Step 1\/3: a parent and its child share one mapped file$/m,
    /^ {2}\$ node examples\/01-parent-child\.mjs$/m,
    /^ {2}\| \[child\] wrote its greeting: "Hello parent/m,
    /^ {2}\| \[parent\] read from its mapping: "Hello parent/m,
    /^ {2}ok: the parent read the child's greeting through its own mapping: "Hello parent, this is your child \(pid \d+\)!"$/m,
    /^Step 2\/3: /m,
    /^ {2}\| \[writer\] wrote \d+ bytes: "Hello from mmapkit demo, token [0-9a-f]+"$/m,
    /^ {2}\| \[reader\] read \d+ bytes: "Hello from mmapkit demo, token [0-9a-f]+"$/m,
    /^ {2}ok: the reader found the writer's message/m,
    /^Step 3\/3: /m,
    /^ {2}\| \[copy\] copied \d+ bytes/m,
    /^ {2}ok: byte-for-byte check passed: the copy is identical to the source \(\d+ bytes\), mode 0640 kept$/m,
    /^All 3 steps passed\.$/m,
  ]) {
    assert.match(r.stdout, expected);
  }
  // The token the writer wrote is the one the reader read.
  const written = /\[writer\] wrote \d+ bytes: "(.*)"/.exec(r.stdout)?.[1];
  const read = /\[reader\] read \d+ bytes: "(.*)"/.exec(r.stdout)?.[1];
  assert.equal(read, written);
  assert.equal(r.stderr, '');
  assert.deepEqual(readdirSync(tmp), [], 'demo and its examples cleaned up their temporary files');
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
  // A bad window size makes examples/03-copy.mjs fail, so step 3 fails.
  const env = { TMPDIR: tmp, MMAPKIT_COPY_WINDOW: 'bad' };
  let r = cli(['demo'], { env });
  exits(r, 1);
  assert.match(r.stdout, /^ {2}FAILED: 03-copy\.mjs failed \(exit code 1\)$/m);
  assert.doesNotMatch(r.stdout, /All 3 steps passed/);
  assert.equal(r.stderr, 'mmapkit demo: step 3/3 failed: 03-copy.mjs failed (exit code 1)\n');
  assert.deepEqual(readdirSync(tmp), []);

  r = cli(['demo', '--debug'], { env });
  exits(r, 1);
  assert.match(r.stderr, /^mmapkit demo: step 3\/3 failed/);
  assert.match(r.stderr, /^\s+at /m, 'a stack trace with --debug');
  r = cli(['--debug', 'demo'], { env });
  exits(r, 1);
  assert.match(r.stderr, /^\s+at /m, 'a stack trace with --debug before the command');
});

test('cli: demo notices a wrong message, a wrong copy and a wrong mode', (t) => {
  const cases = [
    // The writer writes something else than it was asked to.
    ['02-unrelated-writer.mjs', "process.argv[3] = 'tampered';", /step 2\/3 failed: the reader printed "tampered", not the writer's message "Hello from mmapkit demo/],
    // One byte of the copy flipped after the copy is done.
    [
      '03-copy.mjs',
      "process.on('exit', () => { const fd = fs.openSync(process.argv[3], 'r+'); const b = Buffer.alloc(1); " +
        'fs.readSync(fd, b, 0, 1, 100000); b[0] ^= 1; fs.writeSync(fd, b, 0, 1, 100000); fs.closeSync(fd); });',
      /step 3\/3 failed: the copy differs from the source at byte 100000/,
    ],
    // The copy's mode changed after the copy is done.
    ['03-copy.mjs', "process.on('exit', () => fs.chmodSync(process.argv[3], 0o600));", /step 3\/3 failed: the copy has mode 0600, the source 0640/],
  ];
  for (const [script, body, pattern] of cases) {
    const tmp = tempDir(t);
    const r = cli(['demo'], { env: { ...tamper(t, script, body), TMPDIR: tmp } });
    exits(r, 1);
    cleanError(r, pattern);
    assert.match(r.stdout, /^ {2}FAILED: /m);
    assert.deepEqual(readdirSync(tmp), []);
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
  assert.match(r.stdout, /All 3 steps passed/);
});
