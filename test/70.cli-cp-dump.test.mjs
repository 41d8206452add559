// `mmapkit cp` and `mmapkit dump`, run as real processes (node dist/cli/main.js): the bytes, sizes and
// modes that end up in the files, what is printed, and exit codes. Needs `npx tsc -p .` (dist/cli/).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  existsSync,
  fstatSync,
  ftruncateSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { NOBODY, isRoot, publicPackage, tempDir } from './helpers.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(ROOT, 'dist', 'cli', 'main.js');
const TIMEOUT = 120_000;
const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/**
 * Run `node dist/cli/main.js args...` with a deadline (a timeout fails the test). `umask`: run it
 * under this umask (through sh); `user`: as the unprivileged user when we are root, from a copy of the
 * package that user can read (the checkout may be private).
 */
function cli(args, { env, cwd, umask, user = false, timeout = TIMEOUT } = {}) {
  const asOther = user && isRoot;
  const cliPath = asOther ? publicPackage(NOBODY).cli : CLI;
  const command = umask === undefined ? [process.execPath, cliPath, ...args] : ['/bin/sh', '-c', `umask ${umask} && exec "$0" "$@"`, process.execPath, cliPath, ...args];
  const ids = asOther ? { uid: NOBODY, gid: NOBODY } : {};
  const r = spawnSync(command[0], command.slice(1), {
    encoding: 'utf8',
    timeout,
    killSignal: 'SIGKILL',
    env: { ...process.env, ...env },
    cwd,
    ...ids,
  });
  if (r.error) throw r.error;
  return r;
}

/**
 * For a test that runs the CLI as another user: whether it can (true), or skip it saying why. As root
 * the other user runs a readable copy of the package; a user that still cannot load it is a skip with
 * the reason, never a failure that depends on where the repository was cloned.
 */
function otherUserCan(t) {
  if (!isRoot) return true; // we are unprivileged ourselves: permissions already apply to us
  try {
    publicPackage(NOBODY);
    return true;
  } catch (err) {
    t.skip(err.message);
    return false;
  }
}

/** Assert exit code `code`, showing the output when it is not. */
function exits(r, code) {
  assert.equal(r.status, code, `exit ${r.status} (signal ${r.signal}), expected ${code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
}

/** Assert a failure: exit code, exactly this stderr (one line, no stack trace), nothing on stdout. */
function fails(r, code, stderr) {
  exits(r, code);
  if (stderr instanceof RegExp) assert.match(r.stderr, stderr);
  else assert.equal(r.stderr, stderr);
  assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
  assert.equal(r.stdout, '');
}

/** Assert that file `b` has exactly the bytes of file `a` (both small enough to read whole). */
function sameBytes(a, b) {
  const x = readFileSync(a);
  const y = readFileSync(b);
  assert.equal(y.length, x.length, `${b} has ${y.length} bytes, ${a} has ${x.length}`);
  const at = x.findIndex((v, i) => v !== y[i]);
  assert.ok(x.equals(y), `${b} differs from ${a} at byte ${at}`);
}

/** Compare two (large, maybe sparse) files chunk by chunk without loading them whole. */
function sameFileContent(a, b, chunk = 16 * MiB) {
  const fa = openSync(a, 'r');
  const fb = openSync(b, 'r');
  try {
    const size = fstatSync(fa).size;
    assert.equal(fstatSync(fb).size, size, 'sizes differ');
    const x = Buffer.allocUnsafe(chunk);
    const y = Buffer.allocUnsafe(chunk);
    for (let pos = 0; pos < size; pos += chunk) {
      const n = Math.min(chunk, size - pos);
      assert.equal(readSync(fa, x, 0, n, pos), n);
      assert.equal(readSync(fb, y, 0, n, pos), n);
      if (!x.subarray(0, n).equals(y.subarray(0, n))) {
        const at = x.subarray(0, n).findIndex((v, i) => v !== y[i]);
        assert.fail(`${b} differs from ${a} at byte ${pos + at}`);
      }
    }
  } finally {
    closeSync(fa);
    closeSync(fb);
  }
}

const modeOf = (path) => statSync(path).mode & 0o7777;
const octal = (mode) => `0${mode.toString(8)}`;

/** Random bytes with all-zero stretches at these [offset, length] places. */
function withZeros(size, zeros) {
  const data = randomBytes(size);
  for (const [at, n] of zeros) data.fill(0, at, at + n);
  return data;
}

// ---------------------------------------------------------------------------------------------
// cp: content

test('cp: random files of odd sizes copy byte for byte, with and without small windows', (t) => {
  const dir = tempDir(t);
  const sizes = [1, 4095, 4096, 4097, 3 * MiB + 12_345, 40 * MiB + 3];
  for (const size of sizes) {
    const src = join(dir, `src-${size}`);
    writeFileSync(src, randomBytes(size));
    // The default window (128 MiB), a window of 3 pages, and one that is not a page multiple (the
    // windows then start at unaligned offsets).
    // (Small windows only for the small files: 40 MiB in 10 kB windows is 4000 mappings.)
    for (const window of size > 4 * MiB ? [undefined] : [undefined, String(3 * 4096), '10007']) {
      const dst = join(dir, `dst-${size}-${window ?? 'default'}`);
      const r = cli(['cp', src, dst], { env: window === undefined ? {} : { MMAPKIT_CP_WINDOW: window } });
      exits(r, 0);
      assert.equal(r.stdout, '');
      assert.equal(r.stderr, '', 'no progress bar when stderr is not a terminal');
      sameBytes(src, dst);
    }
  }
});

test('cp: an empty file gives an empty file (nothing is mapped); an empty source empties an existing destination', (t) => {
  const dir = tempDir(t);
  const src = join(dir, 'empty');
  writeFileSync(src, '');
  const dst = join(dir, 'copy');
  exits(cli(['cp', src, dst]), 0);
  assert.equal(statSync(dst).size, 0);
  const existing = join(dir, 'existing');
  writeFileSync(existing, randomBytes(10_000));
  exits(cli(['cp', src, existing]), 0);
  assert.equal(statSync(existing).size, 0);
});

test('cp: zero stretches in data copy exactly, and a new copy keeps aligned ones as holes', (t) => {
  const dir = tempDir(t);
  const size = 8 * MiB + 777;
  // Zeros: two aligned 64 KiB pieces and more, an unaligned stretch, the last bytes.
  const data = withZeros(size, [
    [0, 64 * KiB],
    [1 * MiB, 3 * MiB],
    [5 * MiB + 100, 200 * KiB],
    [size - 500, 500],
  ]);
  const src = join(dir, 'src');
  writeFileSync(src, data);
  for (const window of [undefined, '65536', '12345']) {
    const dst = join(dir, `dst-${window ?? 'default'}`);
    exits(cli(['cp', src, dst], { env: window === undefined ? {} : { MMAPKIT_CP_WINDOW: window } }), 0);
    sameBytes(src, dst);
    // 3 MiB + 64 KiB of aligned zeros were not written: at most size - 3 MiB allocated.
    const allocated = statSync(dst).blocks * 512;
    assert.ok(allocated <= size - 3 * MiB, `${allocated} bytes allocated for ${size}: the zeros were written`);
  }
});

test('cp: an existing destination, longer or shorter, ends up exactly the source (zeros included)', (t) => {
  const dir = tempDir(t);
  // The source has aligned zero stretches where the old destination has data: they must be written.
  const size = 3 * MiB + 4321;
  const src = join(dir, 'src');
  writeFileSync(src, withZeros(size, [[0, 128 * KiB], [MiB, MiB], [size - 70_000, 70_000]]));
  for (const [name, oldSize] of [['longer', 10 * MiB], ['shorter', MiB + 5], ['same', size]]) {
    for (const window of [undefined, '65536']) {
      const dst = join(dir, `${name}-${window ?? 'default'}`);
      writeFileSync(dst, randomBytes(oldSize));
      chmodSync(dst, 0o600);
      const ino = statSync(dst).ino;
      exits(cli(['cp', src, dst], { env: window === undefined ? {} : { MMAPKIT_CP_WINDOW: window } }), 0);
      sameBytes(src, dst);
      assert.equal(statSync(dst).ino, ino, 'the same file, written over (not replaced)');
      assert.equal(modeOf(dst), 0o600, 'an existing destination keeps its mode');
    }
  }
  // A destination that is sparse already where the source is zero: still exact, and stays sparse.
  const sparseSrc = join(dir, 'sparse-src');
  const sparseDst = join(dir, 'sparse-dst');
  let fd = openSync(sparseSrc, 'w');
  ftruncateSync(fd, 64 * MiB);
  writeSync(fd, Buffer.from('head'), 0, 4, 0);
  writeSync(fd, Buffer.from('tail'), 0, 4, 64 * MiB - 4);
  closeSync(fd);
  fd = openSync(sparseDst, 'w');
  ftruncateSync(fd, 100 * MiB);
  writeSync(fd, randomBytes(MiB), 0, MiB, 10 * MiB); // data where the source has a hole
  closeSync(fd);
  exits(cli(['cp', sparseSrc, sparseDst]), 0);
  sameBytes(sparseSrc, sparseDst);
  assert.ok(statSync(sparseDst).blocks * 512 <= 2 * MiB, 'the holes of the destination stayed holes');
});

test('cp: a destination that can be written but not read is still written exactly (zeros included)', (t) => {
  if (!otherUserCan(t)) return;
  const dir = tempDir(t);
  chmodSync(dir, 0o777);
  const src = join(dir, 'src');
  writeFileSync(src, withZeros(MiB, [[0, 256 * KiB]]));
  chmodSync(src, 0o644);
  const dst = join(dir, 'write-only');
  writeFileSync(dst, randomBytes(2 * MiB));
  chmodSync(dst, 0o200);
  if (isRoot) spawnSync('chown', [`${NOBODY}:${NOBODY}`, dst]);
  exits(cli(['cp', src, dst], { user: true }), 0);
  chmodSync(dst, 0o600);
  sameBytes(src, dst);
});

test('cp: windows that are all hole are skipped (SEEK_DATA), windows with data are copied, old destination data is overwritten', (t) => {
  const dir = tempDir(t);
  const src = join(dir, 'src');
  const size = 40 * MiB + 123;
  const fd = openSync(src, 'w');
  ftruncateSync(fd, size);
  // Data at the start, inside the 5th MiB, straddling a window boundary at 20 MiB, and in the last bytes.
  const pieces = [[0, 5000], [4 * MiB + 100, 70_000], [20 * MiB - 300, 600], [size - 50, 50]];
  for (const [at, n] of pieces) writeSync(fd, randomBytes(n), 0, n, at);
  closeSync(fd);
  for (const [name, old] of [['new', 0], ['shorter', 6 * MiB], ['longer', 48 * MiB]]) {
    for (const window of ['65536', String(4 * MiB), undefined]) {
      const dst = join(dir, `dst-${name}-${window ?? 'default'}`);
      if (old > 0) writeFileSync(dst, randomBytes(old)); // data where the source has holes
      exits(cli(['cp', src, dst], { env: window === undefined ? {} : { MMAPKIT_CP_WINDOW: window } }), 0);
      sameBytes(src, dst);
      if (old === 0) assert.ok(statSync(dst).blocks * 512 <= 4 * MiB, `${name}/${window}: the holes stayed holes`);
      rmSync(dst);
    }
  }
});

test('cp: a 5 GiB sparse file with data past 4 GiB copies exactly and stays sparse; dump reads past 4 GiB', (t) => {
  const dir = tempDir(t);
  const size = 5 * GiB + 12_345;
  const src = join(dir, 'sparse');
  const blocks = [
    [0, Buffer.from('first bytes of the file')],
    [MiB + 3, randomBytes(5000)],
    [4 * GiB - 10, Buffer.from('across the 4 GiB line')],
    [4 * GiB + 0x1234, Buffer.from('past 4 GiB: hello')],
    [size - 7, Buffer.from('the end')],
  ];
  const fd = openSync(src, 'w');
  ftruncateSync(fd, size);
  for (const [at, data] of blocks) writeSync(fd, data, 0, data.length, at);
  closeSync(fd);
  const dst = join(dir, 'copy');
  const r = cli(['cp', '--flush', src, dst]);
  exits(r, 0);
  assert.equal(r.stderr, '');
  assert.equal(statSync(dst).size, size);
  sameFileContent(src, dst);
  const allocated = statSync(dst).blocks * 512;
  assert.ok(allocated < 16 * MiB, `${allocated} bytes allocated: the holes were written`);

  // The dump shows the real offset, in more than 8 hex digits.
  const at = 4 * GiB + 0x1234 - 3;
  const d = cli(['dump', '--offset', `0x${at.toString(16)}`, '--length', '24', dst]);
  exits(d, 0);
  assert.equal(
    d.stdout,
    '100001231  00 00 00 70 61 73 74 20  34 20 47 69 42 3a 20 68  |...past 4 GiB: h|\n' +
      '100001241  65 6c 6c 6f 00 00 00 00                           |ello....|\n' +
      '100001249\n',
  );
});

// ---------------------------------------------------------------------------------------------
// cp: names and modes

test('cp: a new copy gets the source mode minus the umask, without setuid/setgid/sticky; an existing one keeps its mode', (t) => {
  const dir = tempDir(t);
  const cases = [
    [0o640, '022', 0o640],
    [0o777, '022', 0o755],
    [0o777, '077', 0o700],
    [0o444, '022', 0o444],
    [0o4755, '022', 0o755],
    [0o2775, '002', 0o775],
    [0o1777, '000', 0o777],
  ];
  for (const [i, [mode, umask, expected]] of cases.entries()) {
    const src = join(dir, `src-${i}`);
    writeFileSync(src, randomBytes(5000));
    chmodSync(src, mode);
    const dst = join(dir, `dst-${i}`);
    exits(cli(['cp', src, dst], { umask }), 0);
    assert.equal(octal(modeOf(dst)), octal(expected), `source ${octal(mode)}, umask ${umask}`);
    sameBytes(src, dst);
  }
  const src = join(dir, 'exec');
  writeFileSync(src, 'x'.repeat(100));
  chmodSync(src, 0o755);
  const dst = join(dir, 'existing');
  writeFileSync(dst, 'old content, longer than the new one........................................................');
  chmodSync(dst, 0o604);
  exits(cli(['cp', src, dst]), 0);
  assert.equal(octal(modeOf(dst)), '0604');
  sameBytes(src, dst);
});

test('cp: DST a directory copies into it as DST/NAME', (t) => {
  const dir = tempDir(t);
  mkdirSync(join(dir, 'from'));
  mkdirSync(join(dir, 'into'));
  const src = join(dir, 'from', 'file.bin');
  writeFileSync(src, randomBytes(70_000));
  exits(cli(['cp', src, join(dir, 'into')]), 0);
  sameBytes(src, join(dir, 'into', 'file.bin'));
  // With a trailing slash, and relative names from another working directory.
  mkdirSync(join(dir, 'into2'));
  exits(cli(['cp', 'from/file.bin', 'into2/'], { cwd: dir }), 0);
  sameBytes(src, join(dir, 'into2', 'file.bin'));
  // DST/NAME is a directory: refused as cp does.
  mkdirSync(join(dir, 'into3', 'file.bin'), { recursive: true });
  fails(cli(['cp', 'from/file.bin', 'into3'], { cwd: dir }), 1, "mmapkit cp: cannot overwrite directory 'into3/file.bin' with non-directory\n");
});

test('cp: the same file under another name, a hard link or a symbolic link is refused and left alone', (t) => {
  const dir = tempDir(t);
  const content = randomBytes(10_000);
  writeFileSync(join(dir, 'a'), content);
  linkSync(join(dir, 'a'), join(dir, 'hard'));
  symlinkSync('a', join(dir, 'soft'));
  mkdirSync(join(dir, 'd'));
  const cases = [
    [['a', 'a'], "'a' and 'a' are the same file"],
    [['a', './a'], "'a' and './a' are the same file"],
    [['a', 'hard'], "'a' and 'hard' are the same file"],
    [['hard', 'a'], "'hard' and 'a' are the same file"],
    [['a', 'soft'], "'a' and 'soft' are the same file"],
    [['soft', 'a'], "'soft' and 'a' are the same file"],
    [['a', '.'], "'a' and './a' are the same file"],
    [[join(dir, 'a'), dir], `'${join(dir, 'a')}' and '${dir}/a' are the same file`],
  ];
  for (const [args, message] of cases) {
    fails(cli(['cp', ...args], { cwd: dir }), 1, `mmapkit cp: ${message}\n`);
    assert.ok(readFileSync(join(dir, 'a')).equals(content), `the file is intact after cp ${args.join(' ')}`);
  }
});

// ---------------------------------------------------------------------------------------------
// cp: errors

test('cp: errors are worded like cp, exit 1, one line on stderr', (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'file'), 'data');
  mkdirSync(join(dir, 'dir'));
  symlinkSync('nowhere', join(dir, 'dangling'));
  const cases = [
    [['missing', 'x'], "mmapkit cp: cannot stat 'missing': No such file or directory\n"],
    [['no dir/missing', 'x'], "mmapkit cp: cannot stat 'no dir/missing': No such file or directory\n"],
    [['file/', 'x'], "mmapkit cp: cannot stat 'file/': Not a directory\n"],
    [['dir', 'x'], "mmapkit cp: -r not specified; omitting directory 'dir'\n"],
    [['dir/', 'x'], "mmapkit cp: -r not specified; omitting directory 'dir/'\n"],
    [['file', 'nodir/'], "mmapkit cp: cannot create regular file 'nodir/': Not a directory\n"],
    [['file', 'missing/x'], "mmapkit cp: cannot create regular file 'missing/x': No such file or directory\n"],
    [['file', 'dangling'], "mmapkit cp: not writing through dangling symlink 'dangling'\n"],
    [['/dev/null', 'x'], /^mmapkit cp: cannot copy '\/dev\/null': not a regular file/],
    [['/proc/self/status', 'x'], /^mmapkit cp: cannot copy '\/proc\/self\/status': its size is 0 but it has content/],
    [['file', '/dev/full'], "mmapkit cp: error writing '/dev/full': No space left on device\n"],
  ];
  for (const [args, expected] of cases) {
    fails(cli(['cp', ...args], { cwd: dir }), 1, expected);
  }
  assert.ok(!existsSync(join(dir, 'x')), 'no destination made by a failed copy');
  assert.ok(!existsSync(join(dir, 'nowhere')), 'nothing written through the dangling link');
  // Names are quoted as coreutils quotes them.
  fails(cli(['cp', "it's missing", 'x'], { cwd: dir }), 1, `mmapkit cp: cannot stat "it's missing": No such file or directory\n`);
  fails(cli(['cp', 'a\nb', 'x'], { cwd: dir }), 1, "mmapkit cp: cannot stat 'a'$'\\n''b': No such file or directory\n");
});

test('cp: no permission: unreadable source, unwritable destination or directory', (t) => {
  if (!otherUserCan(t)) return;
  const dir = tempDir(t);
  chmodSync(dir, 0o777);
  const own = (path) => {
    if (isRoot) spawnSync('chown', ['-h', `${NOBODY}:${NOBODY}`, path]);
  };
  writeFileSync(join(dir, 'secret'), 'secret');
  chmodSync(join(dir, 'secret'), 0o600);
  if (!isRoot) chmodSync(join(dir, 'secret'), 0o000); // our own file: no permission at all
  writeFileSync(join(dir, 'public'), 'public');
  chmodSync(join(dir, 'public'), 0o644);
  writeFileSync(join(dir, 'readonly'), 'old');
  chmodSync(join(dir, 'readonly'), 0o444);
  own(join(dir, 'readonly'));
  mkdirSync(join(dir, 'rodir'));
  chmodSync(join(dir, 'rodir'), 0o555);
  own(join(dir, 'rodir'));
  const cases = [
    [['secret', 'x'], "mmapkit cp: cannot open 'secret' for reading: Permission denied\n"],
    [['public', 'readonly'], "mmapkit cp: cannot create regular file 'readonly': Permission denied\n"],
    [['public', 'rodir'], "mmapkit cp: cannot create regular file 'rodir/public': Permission denied\n"],
    [['public', 'rodir/z'], "mmapkit cp: cannot create regular file 'rodir/z': Permission denied\n"],
  ];
  for (const [args, expected] of cases) fails(cli(['cp', ...args], { cwd: dir, user: true }), 1, expected);
  assert.equal(readFileSync(join(dir, 'readonly'), 'utf8'), 'old');
  assert.deepEqual(readdirSync(join(dir, 'rodir')), []);
  assert.ok(!existsSync(join(dir, 'x')));
  chmodSync(join(dir, 'secret'), 0o600);
});

test('cp: a source that shrinks during the copy is an error, not a wrong copy, and the new copy is removed', (t) => {
  const dir = tempDir(t);
  const src = join(dir, 'src');
  // Preloaded into the CLI: cut the source short at the Nth call of a function the copy makes.
  const shrinkAt = (name, target, call, size) => {
    const preload = join(dir, `shrink-${name}.mjs`);
    writeFileSync(
      preload,
      `import fs from 'node:fs';\nimport { syncBuiltinESMExports } from 'node:module';\n` +
        `const original = ${target}; let calls = 0;\n` +
        `${target} = function (...args) { if (++calls === ${call}) fs.truncateSync(process.env.SHRINK, ${size}); return original.apply(this, args); };\n` +
        `syncBuiltinESMExports();\n`,
    );
    return { SHRINK: src, NODE_OPTIONS: `--import=${pathToFileURL(preload).href}` };
  };
  const cases = [
    // The second write() finds the source cut to 1.5 MiB while the window [1 MiB, 2 MiB) is mapped:
    // the kernel's copy from the mapping fails past the new end (EFAULT).
    { MMAPKIT_CP_WINDOW: String(MiB), ...shrinkAt('write', 'fs.writeSync', 2, 1.5 * MiB) },
    // The window after the first finds the file too short to map.
    { MMAPKIT_CP_WINDOW: String(MiB), ...shrinkAt('map', 'fs.writeSync', 1, 1.5 * MiB) },
    // Cut while the copy is looking for zeros in its one window: the pages past the new end fault
    // (SIGBUS, repaired with zeros by the guard) and look like a hole; only the mapping's faulted
    // flag tells the copy is wrong.
    shrinkAt('compare', 'Buffer.prototype.compare', 3, MiB + 64 * KiB),
  ];
  for (const env of cases) {
    writeFileSync(src, randomBytes(4 * MiB));
    const dst = join(dir, 'dst');
    fails(cli(['cp', src, dst], { env }), 1, `mmapkit cp: error reading '${src}': the file shrank while it was being copied\n`);
    assert.ok(!existsSync(dst), 'the incomplete new copy was removed');
  }
});

test('cp: usage errors exit 2; help lists cp and dump', () => {
  for (const [args, pattern] of [
    [['cp'], /^mmapkit: 'cp' takes 2 argument\(s\), got 0\nRun 'mmapkit cp --help' for usage\.\n$/],
    [['cp', 'a'], /^mmapkit: 'cp' takes 2 argument\(s\), got 1\n/],
    [['cp', 'a', 'b', 'c'], /^mmapkit: 'cp' takes 2 argument\(s\), got 3: unexpected 'c'\n/],
    [['cp', '-r', 'a', 'b'], /^mmapkit: unknown option '-r'\nRun 'mmapkit cp --help' for usage\.\n$/],
  ]) {
    fails(cli(args), 2, pattern);
  }
  let r = cli(['--help']);
  exits(r, 0);
  assert.match(r.stdout, /^ {2}cp +Copy a file through memory mappings/m);
  assert.match(r.stdout, /^ {2}dump +Show bytes of a file in hex/m);
  r = cli(['cp', '--help']);
  exits(r, 0);
  assert.match(r.stdout, /^Usage: mmapkit cp \[--flush\] SRC DST$/m);
  assert.match(r.stdout, /^ {6}--flush +Flush the copy to the disk/m);
  r = cli(['help', 'dump']);
  exits(r, 0);
  assert.match(r.stdout, /^Usage: mmapkit dump \[--offset N\] \[--length N\] \[--no-squeeze\] FILE$/m);
  assert.match(r.stdout, /^ {2}-s, --offset N +Start at byte N/m);
});

// ---------------------------------------------------------------------------------------------
// cp: progress bar

/** `script` runs a command on a pseudo-terminal: the only way to give the CLI a terminal here. */
const script = ['/usr/bin/script', '/bin/script'].find((p) => existsSync(p));

test('cp: a progress bar on a terminal once the copy takes longer than the delay, and none otherwise', { skip: script === undefined ? 'no script(1)' : false }, (t) => {
  const dir = tempDir(t);
  const src = join(dir, 'src');
  writeFileSync(src, randomBytes(8 * MiB));
  const quoteArg = (s) => `'${s.replaceAll("'", "'\\''")}'`;
  const onTerminal = (delay, dst) => {
    const command = [process.execPath, CLI, 'cp', src, dst].map(quoteArg).join(' ');
    const r = spawnSync(script, ['-qec', command, '/dev/null'], {
      encoding: 'utf8',
      timeout: TIMEOUT,
      killSignal: 'SIGKILL',
      env: { ...process.env, MMAPKIT_PROGRESS_DELAY_MS: delay, MMAPKIT_CP_WINDOW: String(MiB), COLUMNS: '100' },
    });
    if (r.error) throw r.error;
    exits(r, 0);
    sameBytes(src, dst);
    return r.stdout; // the terminal's output: stdout and stderr together
  };
  // No delay: the bar is drawn, then erased at the end.
  const shown = onTerminal('0', join(dir, 'a'));
  assert.match(shown, /\rcopying +\d+% \[[=> ]+\] [\d.]+ (?:B|KiB|MiB) \/ 8\.00 MiB +[\d.]+ (?:B|KiB|MiB|GiB)\/s/);
  assert.match(shown, /\r\x1b\[K$/, 'the bar is erased at the end');
  // The default delay (1 s): a quick copy shows nothing.
  assert.equal(onTerminal('', join(dir, 'b')), '');
  // Not a terminal: nothing, whatever the delay.
  const r = cli(['cp', src, join(dir, 'c')], { env: { MMAPKIT_PROGRESS_DELAY_MS: '0' } });
  exits(r, 0);
  assert.equal(r.stderr, '');
});

// ---------------------------------------------------------------------------------------------
// dump

/** 0x00..0xff twice, then text: a file whose every byte is known. */
function knownData() {
  const bytes = Buffer.alloc(512 + 40);
  for (let i = 0; i < 512; i++) bytes[i] = i & 0xff;
  bytes.write('Hello, mapped world! 0123456789abcdefghi', 512, 'latin1');
  return bytes;
}

test('dump: known data at aligned and unaligned offsets, in the format of hexdump -C', (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'known.bin');
  writeFileSync(file, knownData());
  // Unaligned offset (not a multiple of 16 nor of the page size), lines start there.
  let r = cli(['dump', '--offset', '29', '--length', '35', file]);
  exits(r, 0);
  assert.equal(r.stderr, '');
  assert.equal(
    r.stdout,
    '0000001d  1d 1e 1f 20 21 22 23 24  25 26 27 28 29 2a 2b 2c  |... !"#$%&\'()*+,|\n' +
      '0000002d  2d 2e 2f 30 31 32 33 34  35 36 37 38 39 3a 3b 3c  |-./0123456789:;<|\n' +
      '0000003d  3d 3e 3f                                          |=>?|\n' +
      '00000040\n',
  );
  // Hex numbers, the ASCII column for bytes >= 0x7f, the end of the file cutting the length short.
  r = cli(['dump', '-s', '0x1f8', '-n', '0x1000', file]);
  exits(r, 0);
  assert.equal(
    r.stdout,
    '000001f8  f8 f9 fa fb fc fd fe ff  48 65 6c 6c 6f 2c 20 6d  |........Hello, m|\n' +
      '00000208  61 70 70 65 64 20 77 6f  72 6c 64 21 20 30 31 32  |apped world! 012|\n' +
      '00000218  33 34 35 36 37 38 39 61  62 63 64 65 66 67 68 69  |3456789abcdefghi|\n' +
      '00000228\n',
  );
  // Default: 256 bytes from offset 0.
  r = cli(['dump', file]);
  exits(r, 0);
  const lines = r.stdout.split('\n');
  assert.equal(lines.length, 18); // 16 lines, the end offset, the empty string after the last newline
  assert.equal(lines[0], '00000000  00 01 02 03 04 05 06 07  08 09 0a 0b 0c 0d 0e 0f  |................|');
  assert.equal(lines[4], '00000040  40 41 42 43 44 45 46 47  48 49 4a 4b 4c 4d 4e 4f  |@ABCDEFGHIJKLMNO|');
  assert.equal(lines[16], '00000100');
});

test('dump and demo into a reader that closes early (| head) stop quietly with 141, as for SIGPIPE', (t) => {
  const file = join(tempDir(t), 'big.bin');
  writeFileSync(file, randomBytes(8 * MiB));
  // dump shows 256 bytes by default, which can all be written before head exits: ask for 8 MiB
  // (35 MB of text), so that the pipe is closed long before the end. demo writes for seconds.
  for (const args of [['dump', '--length', String(8 * MiB), file], ['demo']]) {
    const r = spawnSync('bash', ['-c', 'set -o pipefail; "$0" "$@" | head -2 > /dev/null; echo "${PIPESTATUS[0]}"', process.execPath, CLI, ...args], { encoding: 'utf8', timeout: TIMEOUT, killSignal: 'SIGKILL' });
    assert.equal(r.stdout.trim(), '141', `${args[0]}: exit code of mmapkit in the pipeline\n${r.stderr}`);
    assert.equal(r.stderr, '', `${args[0]}: nothing on stderr`);
  }
});

test('dump: across a page boundary, and the same bytes as hexdump -C prints', (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'random.bin');
  const data = randomBytes(3 * 4096 + 100);
  data.fill(0, 5000, 5200); // repeated lines, squeezed to '*'
  writeFileSync(file, data);
  // A line that starts 3 bytes before the page boundary.
  const r = cli(['dump', '-s', '4093', '-n', '16', file]);
  exits(r, 0);
  const hex = [...data.subarray(4093, 4109)].map((b) => b.toString(16).padStart(2, '0'));
  const ascii = [...data.subarray(4093, 4109)].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
  assert.equal(r.stdout, `00000ffd  ${hex.slice(0, 8).join(' ')}  ${hex.slice(8).join(' ')}  |${ascii}|\n0000100d\n`);

  const hexdump = ['/usr/bin/hexdump', '/bin/hexdump'].find((p) => existsSync(p));
  if (hexdump === undefined) return t.diagnostic('no hexdump here to compare with');
  for (const [offset, length] of [[0, 256], [4093, 300], [4990, 400], [5, 1], [12_000, 1000], [0, 13_000], [12_388, 0]]) {
    const mine = cli(['dump', '--offset', String(offset), '--length', String(length), file]);
    exits(mine, 0);
    const theirs = spawnSync(hexdump, ['-C', '-s', String(offset), '-n', String(length), file], { encoding: 'utf8', timeout: TIMEOUT });
    assert.equal(mine.stdout, theirs.stdout, `offset ${offset}, length ${length}`);
  }
});

test('dump: repeated lines are squeezed to one "*" unless --no-squeeze', (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'zeros.bin');
  writeFileSync(file, Buffer.concat([Buffer.from('ABCDEFGHIJKLMNOP'), Buffer.alloc(64), Buffer.from('end')]));
  let r = cli(['dump', file]);
  exits(r, 0);
  const zero = '00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00  |................|';
  assert.equal(
    r.stdout,
    '00000000  41 42 43 44 45 46 47 48  49 4a 4b 4c 4d 4e 4f 50  |ABCDEFGHIJKLMNOP|\n' +
      `00000010  ${zero}\n*\n` +
      '00000050  65 6e 64                                          |end|\n' +
      '00000053\n',
  );
  r = cli(['dump', '--no-squeeze', '--length', '48', file]);
  exits(r, 0);
  assert.equal(r.stdout.split('\n').filter((l) => l.endsWith(zero)).length, 2);
  assert.doesNotMatch(r.stdout, /^\*$/m);
});

test('dump: empty output, errors and usage errors', (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'f');
  writeFileSync(file, knownData().subarray(0, 100));
  writeFileSync(join(dir, 'empty'), '');
  mkdirSync(join(dir, 'd'));
  // Nothing to show: exit 0, no output.
  for (const args of [['empty'], ['--offset', '0', 'empty'], ['--offset', '100', 'f'], ['--length', '0', 'f']]) {
    const r = cli(['dump', ...args], { cwd: dir });
    exits(r, 0);
    assert.equal(r.stdout, '', args.join(' '));
    assert.equal(r.stderr, '');
  }
  // Failures: exit 1.
  fails(cli(['dump', '--offset', '101', 'f'], { cwd: dir }), 1, "mmapkit dump: offset 101 is past the end of 'f' (100 bytes)\n");
  fails(cli(['dump', '--offset', '1', 'empty'], { cwd: dir }), 1, "mmapkit dump: offset 1 is past the end of 'empty' (0 bytes)\n");
  fails(cli(['dump', 'missing'], { cwd: dir }), 1, "mmapkit dump: cannot open 'missing': No such file or directory\n");
  fails(cli(['dump', 'd'], { cwd: dir }), 1, "mmapkit dump: cannot dump 'd': Is a directory\n");
  fails(cli(['dump', '/dev/null']), 1, /^mmapkit dump: cannot dump '\/dev\/null': not a regular file/);
  // Usage errors: exit 2.
  const usage = [
    [['--offset=-1', 'f'], "mmapkit: --offset must not be negative, got '-1'\n"],
    [['-s', '-1', 'f'], "mmapkit: the value of '-s' starts with '-': write --offset=-1 if '-1' is meant as its value\n"],
    [['--length=-0x10', 'f'], "mmapkit: --length must not be negative, got '-0x10'\n"],
    [['--offset', '12abc', 'f'], "mmapkit: --offset must be a number of bytes, decimal or hexadecimal with 0x, got '12abc'\n"],
    [['--offset', '0x', 'f'], "mmapkit: --offset must be a number of bytes, decimal or hexadecimal with 0x, got '0x'\n"],
    [['--length', '1.5', 'f'], "mmapkit: --length must be a number of bytes, decimal or hexadecimal with 0x, got '1.5'\n"],
    [['--length', '', 'f'], "mmapkit: --length must be a number of bytes, decimal or hexadecimal with 0x, got ''\n"],
    [['--offset', '99999999999999999999', 'f'], /^mmapkit: --offset is too large, got '99999999999999999999'/],
    [['--offset'], /^mmapkit: Option '-s, --offset <value>' argument missing\n/],
    [[], /^mmapkit: 'dump' takes 1 argument\(s\), got 0\n/],
    [['f', 'g'], /^mmapkit: 'dump' takes 1 argument\(s\), got 2: unexpected 'g'\n/],
  ];
  for (const [args, expected] of usage) {
    const r = cli(['dump', ...args], { cwd: dir });
    const full = typeof expected === 'string' ? `${expected}Run 'mmapkit dump --help' for usage.\n` : expected;
    fails(r, 2, full);
  }
});
