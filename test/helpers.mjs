// Shared test helpers: temp dirs, child processes with timeouts, assertions on error shape; for the
// interop tests, building a C peer with cc and watching peer processes (exits, futex sleeps).
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { spawn, spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import assert from 'node:assert/strict';
import { test as nodeTest } from 'node:test';

/** A fresh temp dir, removed when the test ends. */
export function tempDir(t) {
  const dir = mkdtempSync(join(tmpdir(), 'mmapkit-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * node:test's test() with a time limit on every test (async waits such as awaiting a child or
 * `for await` have none of their own): `const test = timedTests(120_000)`, then `test(name, fn)` or
 * `test(name, options, fn)`; options may set another `timeout`.
 */
export function timedTests(ms) {
  return (name, options, fn) => (typeof options === 'function' ? nodeTest(name, { timeout: ms }, options) : nodeTest(name, { timeout: ms, ...options }, fn));
}

/** Run `node --input-type=module -e code` as a real child process, with a timeout. */
export function runNode(code, { args = [], nodeArgs = [], timeout = 30_000, env } = {}) {
  const r = spawnSync(process.execPath, [...nodeArgs, '--input-type=module', '-e', code, ...args], {
    encoding: 'utf8',
    timeout,
    env: env ?? process.env,
  });
  if (r.error) throw r.error;
  return r;
}

/** The dist entry point, as an absolute URL for child programs. */
export const distUrl = new URL('../dist/index.js', import.meta.url).href;

/** Assert that fn throws an error with exactly these code and name (and optional more props). */
export function throwsCode(fn, code, name, more = {}) {
  assert.throws(fn, (err) => {
    assert.equal(err.code, code, `expected code ${code}, got ${err.code}: ${err.message}`);
    if (name !== undefined) assert.equal(err.name, name, `expected ${name} for ${code}: ${err.message}`);
    for (const [k, v] of Object.entries(more)) assert.deepEqual(err[k], v, `property ${k}`);
    return true;
  });
}

/** Lines of /proc/self/maps that name this path. */
export function mapsOf(path, mapsText) {
  return mapsText.split('\n').filter((l) => l.endsWith(` ${path}`) || l.endsWith(` ${path} (deleted)`));
}

/**
 * One step of xorshift32 (uint32 in, uint32 out), as the C peers' xorshift32. Self-contained, so that a
 * child program can embed its source (String(xorshift32)).
 */
export function xorshift32(x) {
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  return x >>> 0;
}

/** xorshift32: the same seeded sequence in a parent and its children (int32 values). */
export function* xorshift(seed) {
  let x = seed >>> 0 || 1;
  for (;;) {
    x = xorshift32(x);
    yield x | 0;
  }
}

// ---------------------------------------------------------------------------------------------
// Peers: C programs and other processes that the interop tests (61, 62) run against mmapkit.

/** Whether `cmd --version` runs and exits 0, e.g. have('cc'). */
export function have(cmd) {
  const r = spawnSync(cmd, ['--version'], { stdio: 'ignore', timeout: 10_000 });
  return r.error === undefined && r.status === 0;
}

/**
 * Compile the C program src into out: `cc -O2 -Wall -Wextra <cflags> -o out src <libs>` (within 120 s);
 * fail with cc's stderr if it does not compile. Returns out.
 */
export function compileC(src, out, { cflags = [], libs = [] } = {}) {
  const args = ['-O2', '-Wall', '-Wextra', ...cflags, '-o', out, src, ...libs];
  const r = spawnSync('cc', args, { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.error, undefined, `cc: ${r.error}`);
  assert.equal(r.status, 0, `cc ${args.join(' ')} failed:\n${r.stderr}`);
  return out;
}

/**
 * Compile the C peer `src` (compileC's options) into a temp dir of its own, removed when this process
 * exits; returns the program's path. For a test file's before() hook.
 */
export function buildPeer(src, name, options) {
  const dir = mkdtempSync(join(tmpdir(), `mmapkit-${name}-`));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return compileC(src, join(dir, name), options);
}

/**
 * The one child-process harness of the tests. Start cmd[0] with the rest of cmd (as strings) for
 * arguments; `label` names it in failure messages. Options:
 * - `timeout` (ms): SIGKILLed after it (result.timedOut then says so); `t`: also killed when test `t`
 *   ends (its timer cleared);
 * - `stdin`: 'ignore' (default), 'pipe' (write with tell(line)) or a descriptor; `stdout`: 'collect'
 *   (default: kept as text for stdout(), line() and the result), or anything spawn takes ('pipe' to
 *   read child.stdout as a stream yourself, 'ignore', a descriptor); stderr is always collected;
 * - `spawnOptions` go to spawn as they are (uid, gid, cwd, env: see asUser), and a stdio array there
 *   (from SharedMemory's childOptions) keeps its descriptors past the first three;
 * - `group`: a Set shared by several children: when one exits other than with status 0, the others
 *   are killed at once (a failure ends a many-process test quickly instead of at its timeouts);
 * - `detached`: the child leads a process group, and kill() kills the group (children it starts too).
 * Returns { child, label, stdout(), stderr(), output(), done, result, kill(), line(re, ms), tell(line),
 * report() }: done resolves to result = { status, signal, stdout, stderr, label, timedOut } once it has
 * exited and its streams closed (result is undefined until then); line(re) waits (polling, failing
 * after ms or if it exits first) for a line of stdout matching re; report() asserts a clean exit
 * and parses the last stdout line as JSON.
 */
export function startProc(cmd, label, { t, timeout = 60_000, stdin = 'ignore', stdout: stdoutMode = 'collect', spawnOptions = {}, group, detached = false } = {}) {
  const given = Array.isArray(spawnOptions.stdio) ? spawnOptions.stdio.slice(3) : [];
  const collect = stdoutMode === 'collect';
  const child = spawn(cmd[0], cmd.slice(1).map(String), {
    ...spawnOptions,
    detached,
    stdio: [stdin, collect ? 'pipe' : stdoutMode, 'pipe', ...given],
  });
  const p = { child, label, result: undefined };
  let stdout = '';
  let stderr = '';
  let timedOut = false;
  if (collect) child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  child.stdin?.on('error', () => {}); // a child that exits before reading all we wrote
  p.stdout = () => stdout;
  p.stderr = () => stderr;
  p.output = () => stdout + stderr;
  p.kill = () => {
    try {
      // A group outlives its leader (the processes it started): kill it even after the leader exited.
      if (detached) process.kill(-child.pid, 'SIGKILL');
      else if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    } catch {
      // already gone
    }
  };
  const timer = setTimeout(() => {
    timedOut = true;
    p.kill();
  }, timeout);
  group?.add(p);
  p.done = new Promise((resolve, reject) => {
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      group?.delete(p);
      if (group !== undefined && status !== 0) for (const other of group) other.kill();
      resolve((p.result = { status, signal, stdout, stderr, label, timedOut }));
    });
  });
  p.done.catch(() => {});
  t?.after(() => {
    clearTimeout(timer);
    p.kill();
  });
  p.line = async (re, ms = 30_000) => {
    const find = () => stdout.split('\n').find((l) => re.test(l));
    await until(() => find() !== undefined, [p], `${label} prints ${re}`, ms);
    return find();
  };
  p.tell = (line) => child.stdin.write(`${line}\n`);
  p.report = async () => {
    const res = await p.done;
    assertOk(res, /^[[{].*[\]}]$/, { lastLine: true });
    return JSON.parse(res.stdout.trim().split('\n').at(-1));
  };
  return p;
}

/**
 * Run cmd to its end under bash, with standard input from /dev/null, and measure the processor time it
 * used: bash's `times` (user + system of its children). startProc's label and options; resolves to
 * its result with `times`' lines taken out of stderr, plus cpuS (seconds) and wallMs. (Meaningless
 * when result.timedOut: bash was killed before `times`.)
 */
export async function runTimed(cmd, label, options) {
  const t0 = Date.now();
  const r = await startProc(['bash', '-c', '"$@" </dev/null; s=$?; times >&2; exit $s', 'bash', ...cmd], label, options).done;
  const wallMs = Date.now() - t0;
  const lines = r.stderr.split('\n'); // ..., the shell's times, its children's times, ''
  const cpuS = (lines.at(-2) ?? '')
    .split(/\s+/)
    .map((x) => /^(\d+)m([\d.]+)s$/.exec(x))
    .reduce((sum, m) => (m === null ? sum : sum + Number(m[1]) * 60 + Number(m[2])), 0);
  return { ...r, stderr: lines.slice(0, -3).join('\n'), cpuS, wallMs };
}

/** Start `node args...` with {@link startProc} (same options). */
export const startNode = (args, label, options) => startProc([process.execPath, ...args], label, options);

/**
 * Assert that a startProc result exited with status 0 and that its trimmed stdout (with lastLine, only
 * its last line) matches pattern; returns the match.
 */
export function assertOk(res, pattern, { lastLine = false } = {}) {
  assert.ok(!res.timedOut, `${res.label} was killed at its timeout; stdout: ${res.stdout.slice(-500)} stderr: ${res.stderr}`);
  assert.equal(res.signal, null, `${res.label} was killed by ${res.signal}; stderr: ${res.stderr}`);
  assert.equal(res.status, 0, `${res.label} exited with ${res.status}; stderr: ${res.stderr}`);
  const out = res.stdout.trim();
  const m = (lastLine ? out.split('\n').at(-1) : out).match(pattern);
  assert.ok(m, `${res.label} printed ${JSON.stringify(res.stdout.slice(-500))}, expected ${pattern}`);
  return m;
}

/** Assert that a startProc result was killed by SIGKILL. */
export function assertKilled(res) {
  assert.equal(res.signal, 'SIGKILL', `${res.label} should have been killed; status ${res.status}, stderr: ${res.stderr}`);
}

/** SIGKILL a startProc process and assert that it died of it (it had not exited on its own). */
export async function killed(p) {
  p.kill();
  assertKilled(await p.done);
}

/** Fail if one of the startProc processes has exited, saying what we were waiting for. */
export function exitedFirst(peers, what) {
  for (const p of peers) {
    if (p.result !== undefined) {
      assert.fail(`${what}: ${p.label} exited first (status ${p.result.status}, signal ${p.result.signal}); stdout: ${p.result.stdout.slice(-500)} stderr: ${p.result.stderr}`);
    }
  }
}

/** Poll until check() holds, without blocking the event loop; fail when one of peers exits first or after ms. */
export async function until(check, peers, what, ms) {
  const deadline = Date.now() + ms;
  while (!check()) {
    exitedFirst(peers, what);
    if (Date.now() > deadline) assert.fail(`${what}: still not the case after ${ms} ms`);
    await sleep(1);
  }
}

/** The contents of a /proc/.../wchan file ('' if it cannot be read). */
function wchan(path) {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

let wchanWorked;
/** Whether /proc/PID/wchan names kernel functions here: some idle thread of ours must be asleep in one. */
function wchanWorks() {
  wchanWorked ??= (() => {
    try {
      return readdirSync('/proc/self/task').some((tid) => /^[a-z_]\w*$/.test(wchan(`/proc/self/task/${tid}/wchan`)));
    } catch {
      return false;
    }
  })();
  return wchanWorked;
}

/**
 * Wait until each startProc process is asleep in a futex wait, going by /proc/PID/wchan, and return true
 * (fail after ms). Where wchan tells nothing, wait fallbackMs and return false, so that callers only
 * assert what they could observe. `pattern`: what the wchan must name (default /futex/; a PI futex
 * lock sleeps in rt_mutex_*).
 */
export async function asleepInFutex(peers, what, { ms, fallbackMs, pattern = /futex/ }) {
  if (!wchanWorks()) {
    await sleep(fallbackMs);
    return false;
  }
  await until(() => peers.every((p) => pattern.test(wchan(`/proc/${p.child.pid}/wchan`))), peers, what, ms);
  return true;
}

// ---------------------------------------------------------------------------------------------
// Running children as another user. The checkout may sit in a private folder (mode 0700, owned by
// root), which an unprivileged user cannot even traverse: such a child gets its own readable copy of
// the built package (package.json, dist/, the addon) under the system temp dir.

/** Unprivileged ids for tests that run children as another user (root ignores permissions). */
export const NOBODY = 65534;
/** Whether this process may run children under other uids (it is root). */
export const isRoot = process.getuid?.() === 0;

let publicCopy;
/**
 * A copy of the built package that any user can read: { root, cli, distUrl }. Made once per test
 * file and removed at exit. Throws if the copy cannot be made or the user `uid` still cannot load it
 * (the caller skips with that message).
 */
export function publicPackage(uid = NOBODY) {
  if (publicCopy === undefined) {
    const src = fileURLToPath(new URL('..', import.meta.url));
    const root = mkdtempSync(join(tmpdir(), 'mmapkit-public-'));
    process.on('exit', () => rmSync(root, { recursive: true, force: true }));
    cpSync(join(src, 'package.json'), join(root, 'package.json'));
    cpSync(join(src, 'dist'), join(root, 'dist'), { recursive: true });
    mkdirSync(join(root, 'build', 'Release'), { recursive: true });
    cpSync(join(src, 'build', 'Release', 'mmapkit.node'), join(root, 'build', 'Release', 'mmapkit.node'));
    // mkdtemp makes the folder 0700; everything inside must be readable (and folders searchable).
    for (const p of [root, ...walk(root)]) chmodSync(p, statSync(p).isDirectory() ? 0o755 : 0o644);
    publicCopy = { root, cli: join(root, 'dist', 'cli', 'main.js'), distUrl: pathToFileURL(join(root, 'dist', 'index.js')).href };
  }
  const probe = spawnSync(process.execPath, ['--input-type=module', '-e', `await import(${JSON.stringify(publicCopy.distUrl)})`], {
    uid,
    gid: uid,
    cwd: '/',
    encoding: 'utf8',
    timeout: 30_000,
  });
  if (probe.status !== 0) {
    throw new Error(`user ${uid} cannot load the package copied to ${publicCopy.root} (is the temp dir ${tmpdir()} searchable by others?): ${probe.error?.message ?? probe.stderr.trim().split('\n').pop()}`);
  }
  return publicCopy;
}

function* walk(dir) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    yield p;
    if (e.isDirectory()) yield* walk(p);
  }
}

// ---------------------------------------------------------------------------------------------
// Emulators. scripts/platforms.mjs runs the core tests of the arm64 build under qemu-user with
// MMAPKIT_EMULATOR=qemu-user; what the emulator does not implement is skipped there, saying what.

/** The emulator the tests run under ('' on real hardware). */
export const emulator = process.env.MMAPKIT_EMULATOR ?? '';

/** Under an emulator that lacks `what`, skip test `t` saying so and return true. */
export function cannotEmulate(t, what) {
  if (emulator === '') return false;
  t.skip(`${emulator} does not emulate ${what}`);
  return true;
}

/** A second unprivileged uid for tests with two users: root can run a child under any uid, account or not. */
export const OTHER_UID = 4242;
/** A group that both test users share, and one that only OTHER_UID has (as a supplementary group). */
export const SHARED_GID = 4243;
export const LONE_GID = 4244;

/**
 * How to run `cmd` (an array) as uid:gid, in / (the checkout may be a private folder): { cmd, options }
 * for spawn or startProc's spawnOptions. Node's uid/gid options leave the child with gid as its only
 * group; supplementary `groups` need setpriv from util-linux: undefined when it is missing.
 */
export function asUser({ uid, gid, groups }, cmd) {
  if (groups === undefined) return { cmd, options: { uid, gid, cwd: '/' } };
  if (!have('setpriv')) return undefined;
  return { cmd: ['setpriv', `--reuid=${uid}`, `--regid=${gid}`, `--groups=${groups.join(',')}`, ...cmd], options: { cwd: '/' } };
}

/** The name of a uid in /etc/passwd, or undefined (for the expected text of messages). */
export function userName(uid) {
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.split(':')[2] === String(uid));
  return line?.split(':')[0];
}

/** A fresh name for named shared memory, `mmapkit-test-TAG-PID-RANDOM` (a test that removes it itself). */
export const uniqueName = (tag) => `mmapkit-test-${tag}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;

/**
 * A fresh name for named shared memory ({@link uniqueName}), removed when test `t` ends (on Linux,
 * shm_unlink(name) removes /dev/shm/name: no need to load the library here).
 */
export function shmName(t, tag) {
  const name = uniqueName(tag);
  t.after(() => rmSync(`/dev/shm/${name}`, { force: true }));
  return name;
}
