// The CLI against hostile neighbours (issue 17): `mmapkit cp` with a source that another process cuts
// short (or cuts and grows back) while the copy runs, and `mmapkit send` / `recv` with `--timeout` on a
// channel that another user left behind, or keeps rewriting: each must end with a clear error, exit 1,
// in time and without spinning. Real processes throughout (node dist/cli/main.js; the other users run
// a readable copy of the package, as root only); every wait has a deadline and every child a timeout.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, ftruncateSync, openSync, readFileSync, rmSync, statSync, truncateSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Channel } from '../dist/index.js';
import { asUser, isRoot, NOBODY, OTHER_UID, publicPackage, runTimed, SHARED_GID, shmName, startProc, tempDir, timedTests, userName } from './helpers.mjs';

const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'cli', 'main.js');
const MiB = 1024 * 1024;
/** How long one process may run before it is killed (the test then fails). */
const PROCESS_TIMEOUT = 60_000;

const test = timedTests(180_000);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------
// cp: the source shrinks during the copy

/** The source: SIZE bytes, data (a numbered pattern, no zeros) in [0, DATA) and in the last MiB, a hole between. */
const SIZE = 384 * MiB;
const DATA = 128 * MiB;
/** Small windows: the data part takes about a second to copy, so that the test can stop the copy inside it. */
const WINDOW = 16 * 1024;
/** Margin between what the copy has written when it is stopped and where the source is cut. */
const MARGIN = 4 * MiB;

function makeSource(path) {
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, SIZE);
    const chunk = Buffer.alloc(MiB, 0xa5);
    for (let at = 0; at < DATA; at += MiB) {
      chunk.writeUInt32LE(at / MiB, 0);
      writeSync(fd, chunk, 0, MiB, at);
    }
    chunk.writeUInt32LE(0xffffffff, 0);
    writeSync(fd, chunk, 0, MiB, SIZE - MiB);
  } finally {
    closeSync(fd);
  }
}

/** The state letter of a process (/proc/PID/stat: R, S, T for stopped, ...), '' once it is gone. */
function procState(pid) {
  try {
    return /^\d+ \(.*\) (\S)/s.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.[1] ?? '';
  } catch {
    return '';
  }
}

/**
 * Copy src to dst with `mmapkit cp` (small windows) and, while the copy is inside the data part of the
 * source, cut the source to a size ahead of the copy with `cut(at)` (this process truncates it: another
 * process than the copy). To land inside the copy every time, even on a loaded machine, the copy is
 * stopped (SIGSTOP) once the destination has data, the cut is made where the copy has not come yet,
 * and the copy goes on (SIGCONT). Returns the copy's result, or undefined when the copy was already
 * past the data part when it could be stopped (the run proves nothing; the caller tries again).
 */
async function copyWhileCut(t, src, dst, cut) {
  const p = startProc([process.execPath, CLI, 'cp', src, dst], 'mmapkit cp', {
    t,
    timeout: PROCESS_TIMEOUT,
    spawnOptions: { env: { ...process.env, MMAPKIT_CP_WINDOW: String(WINDOW) } },
  });
  const pid = p.child.pid;
  const deadline = Date.now() + 30_000;
  // The destination has the source's size (set after the copy's first look at the source) and data
  // (setting the size allocates nothing): the copy is under way.
  const started = () => {
    const st = statSync(dst, { throwIfNoEntry: false });
    return st !== undefined && st.size === SIZE && st.blocks > 0;
  };
  while (!started() && p.result === undefined) {
    if (Date.now() > deadline) assert.fail('mmapkit cp wrote nothing into the destination within 30 s');
    await sleep(1);
  }
  if (p.result !== undefined) return undefined;
  process.kill(pid, 'SIGSTOP');
  while (procState(pid) !== 'T' && p.result === undefined) {
    if (Date.now() > deadline) assert.fail('mmapkit cp did not stop within 30 s');
    await sleep(1);
  }
  // The data part is copied in order: the copy (stopped) has come no further than what the destination
  // holds (for an existing one, its old data too).
  const written = statSync(dst).blocks * 512;
  const at = Math.ceil((written + MARGIN) / MiB) * MiB;
  // (The source was last written before the copy started, a Node startup ago: the cut gives it
  // another modification time, even on the clock of file times, which advances a few ms a tick.)
  if (p.result === undefined && at < DATA) cut(at);
  process.kill(pid, 'SIGCONT');
  const r = await p.done;
  t.diagnostic(at < DATA ? `stopped the copy with ${written} bytes written, cut the source to ${at} bytes` : `the copy had ${written} bytes written when stopped: too late, try again`);
  return at < DATA ? r : undefined;
}

/** copyWhileCut, tried until the cut lands inside the copy (at most 5 times). */
async function cutDuringCopy(t, src, dst, cut, prepare = () => {}) {
  for (let attempt = 1; attempt <= 5; attempt++) {
    makeSource(src);
    prepare();
    const r = await copyWhileCut(t, src, dst, cut);
    if (r !== undefined) return r;
    rmSync(dst, { force: true });
  }
  assert.fail('in 5 tries the copy was always past the data part of the source before it could be stopped');
}

/** Assert a failed cp: exit 1, exactly this one line on stderr, nothing on stdout. */
function cpFails(r, stderr) {
  assert.ok(!r.timedOut, `mmapkit cp was killed at its timeout; stderr: ${r.stderr}`);
  assert.equal(r.status, 1, `exit ${r.status} (signal ${r.signal}), expected 1: a copy of a source that was cut short must fail\nstderr: ${r.stderr}`);
  assert.equal(r.stderr, stderr);
  assert.equal(r.stdout, '');
}

test('cp: a sparse source that another process cuts short during the copy is an error (exit 1), and the new copy is removed', async (t) => {
  const dir = tempDir(t);
  const src = join(dir, 'src');
  const dst = join(dir, 'dst');
  // The copy then finds no data past the new end (lseek SEEK_DATA: ENXIO), which is no hole.
  const r = await cutDuringCopy(t, src, dst, (at) => truncateSync(src, at));
  cpFails(r, `mmapkit cp: error reading '${src}': the file shrank while it was being copied\n`);
  assert.equal(existsSync(dst), false, 'the incomplete copy was removed');
});

test('cp: a source cut short and grown back to its size during the copy is an error too (its modification time changed)', async (t) => {
  const dir = tempDir(t);
  const src = join(dir, 'src');
  const dst = join(dir, 'dst');
  // The same size at the end, but the data past the cut is gone: the copy must not look complete.
  const r = await cutDuringCopy(t, src, dst, (at) => {
    truncateSync(src, at);
    truncateSync(src, SIZE);
  });
  cpFails(r, `mmapkit cp: error reading '${src}': the file changed while it was being copied\n`);
  assert.equal(existsSync(dst), false, 'the incomplete copy was removed');
});

test('cp: over an existing destination, a source cut short during the copy leaves the destination empty, and says so', async (t) => {
  const dir = tempDir(t);
  const src = join(dir, 'src');
  const dst = join(dir, 'dst');
  const old = Buffer.alloc(MiB, 0x5a);
  const r = await cutDuringCopy(t, src, dst, (at) => truncateSync(src, at), () => writeFileSync(dst, old, { mode: 0o640 }));
  cpFails(
    r,
    `mmapkit cp: error reading '${src}': the file shrank while it was being copied; '${dst}' was only partly written, and is now empty (truncated to 0 bytes)\n`,
  );
  const st = statSync(dst);
  assert.equal(st.size, 0, 'an incomplete destination never keeps the size of the source');
  assert.equal(st.mode & 0o777, 0o640, 'still the same file, with its mode');
});

// ---------------------------------------------------------------------------------------------
// send / recv --timeout: a channel that another user left behind

const notRoot = isRoot ? false : 'needs root to make a channel as another user and run the CLI as a third (the suite runs as root in CI)';
/** The member of SHARED_GID that runs send and recv with --shared-with-group, and the maker of the channels. */
const MEMBER = { uid: OTHER_UID, gid: SHARED_GID };
const MAKER = { uid: NOBODY, gid: SHARED_GID };
/** The --timeout of every end here, and how long one may take before it is killed (the test fails). */
const WAIT_MS = 1500;
const RUN_LIMIT = 30_000;
/** Processor time an end may use: Node's start and a look every few ms, far below a spin through WAIT_MS. */
const CPU_LIMIT_S = 1.2;

/** A fresh name, removed from /dev/shm when the test ends (whoever made it). */
const channelName = (t, tag) => shmName(t, `hostile-${tag}`);

/** Skip (saying why) when the other users cannot load a readable copy of the package: else its dist URL and CLI. */
function publicCopy(t) {
  try {
    publicPackage(MAKER.uid);
    return publicPackage(MEMBER.uid);
  } catch (error) {
    t.skip(error.message);
    return undefined;
  }
}

/**
 * Leave a channel at `name` as MAKER would: made with the library (the CLI's sizes, mode 0660, group
 * SHARED_GID) by a process that then exits without closing anything and without removing the name.
 * `state`: 'made' (nobody attached), 'producer' (a sender attached and sent the HELLO),
 * 'consumer' (a receiver attached), 'ended' (a sender sent the HELLO and the end mark, and closed).
 */
function leaveChannel(copy, name, state) {
  const code = `
    import { fchmodSync } from 'node:fs';
    const { Channel, SharedMemory } = await import(${JSON.stringify(copy.distUrl)});
    const geometry = { capacity: 64, maxMessageSize: 65536, maxProducers: 4, maxConsumers: 4 };
    const shm = SharedMemory.create(${JSON.stringify(name)}, Channel.byteLength(geometry), { mode: 0o660 });
    fchmodSync(shm.fd, 0o660); // whatever the umask
    const channel = Channel.create(shm, geometry);
    const state = ${JSON.stringify(state)};
    if (state === 'consumer') channel.attach('consumer');
    if (state === 'producer' || state === 'ended') channel.send('mmapkit-pipe/1');
    if (state === 'ended') {
      channel.send('');
      channel.close();
      shm.close();
    }
    process.exit(0); // nothing else closed, nothing unlinked
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { ...MAKER, cwd: '/', encoding: 'utf8', timeout: RUN_LIMIT, killSignal: 'SIGKILL' });
  assert.equal(r.status, 0, `making the channel as uid ${MAKER.uid}: ${r.error?.message ?? r.stderr}`);
  const st = statSync(`/dev/shm/${name}`);
  assert.deepEqual([st.uid, st.gid, st.mode & 0o777], [MAKER.uid, MAKER.gid, 0o660]);
  const found = Channel.inspect(`/dev/shm/${name}`); // read-only: attaches to nothing
  assert.equal(found.state, 'channel');
  return st;
}

/**
 * Run `mmapkit args...` (as `ids`, from the readable copy; or as this process) under bash, whose
 * `times` then prints the processor time of the CLI: { status, signal, stderr (without the times),
 * wallMs, cpuS }. Started, not run: a timer of the test may have to go on meanwhile.
 */
async function timedEnd(t, copy, ids, args) {
  const { cmd, options } = ids === undefined ? { cmd: [process.execPath, CLI, ...args], options: {} } : asUser(ids, [process.execPath, copy.cli, ...args]);
  // detached: a timeout kills bash's process group, the CLI with it.
  const r = await runTimed(cmd, `mmapkit ${args.join(' ')}`, { t, timeout: RUN_LIMIT, spawnOptions: options, detached: true });
  assert.ok(!r.timedOut, `${r.label} still ran after ${RUN_LIMIT} ms (killed): it did not honor --timeout ${WAIT_MS}; stderr: ${r.stderr.slice(-500)}`);
  return r;
}

/** Assert an end that gave up: exit 1, this one line of error, ended in time, and slept rather than spun. */
function gaveUp(r, pattern) {
  assert.equal(r.status, 1, `${r.label}: exit ${r.status} (signal ${r.signal})\n${r.stderr}`);
  assert.match(r.stderr, pattern, r.label);
  assert.ok(r.wallMs < RUN_LIMIT, `${r.label} took ${r.wallMs} ms`);
  assert.ok(r.cpuS < CPU_LIMIT_S, `${r.label} used ${r.cpuS} s of processor time in ${r.wallMs} ms: it did not sleep between looks`);
}

const who = (uid) => `uid ${uid}${userName(uid) === undefined ? '' : ` \\(${userName(uid)}\\)`}`;
const esc = (s) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

test('send/recv --timeout on a channel another user abandoned (creator exited attached, or the stream ended): an error in time, no spin, as root and as a group member', { skip: notRoot }, async (t) => {
  const copy = publicCopy(t);
  if (copy === undefined) return;
  for (const state of ['producer', 'consumer', 'ended']) {
    const name = channelName(t, state);
    const before = leaveChannel(copy, name, state);
    const path = `/dev/shm/${name}`;
    // The four ends at once (none of them attaches or changes anything: they only look).
    await Promise.all(
      ['send', 'recv'].flatMap((command) => [
        (async () => {
          // Root: not its own name, refused at once (root may remove any name, so it is never stuck on one).
          const r = await timedEnd(t, copy, undefined, [command, '--timeout', String(WAIT_MS), name]);
          gaveUp(r, new RegExp(`^mmapkit ${command}: refusing '${esc(name)}': '${esc(path)}' belongs to ${who(NOBODY)}, group gid ${SHARED_GID}( \\([^)]*\\))?, mode 0660: it is not yours, .* Nothing was changed\\. `));
          t.diagnostic(`${state}, ${command} as root: exit 1 after ${r.wallMs} ms, ${r.cpuS.toFixed(2)} s of processor time`);
        })(),
        (async () => {
          // A member of the group joins such a name, finds it abandoned, and may not remove it (/dev/shm
          // is sticky): the unlink fails with EACCES, which must end the run, not start the meeting again.
          const m = await timedEnd(t, copy, MEMBER, [command, '--shared-with-group', '--timeout', String(WAIT_MS), name]);
          gaveUp(m, new RegExp(`^mmapkit ${command}: cannot take over '${esc(name)}', left behind by an earlier send or recv: Permission denied \\('${esc(path)}' belongs to ${who(NOBODY)}, group gid ${SHARED_GID}( \\([^)]*\\))?, mode 0660\\)\\. Choose another NAME, or ask its owner to remove it\\.$`));
          t.diagnostic(`${state}, ${command} as a group member: exit 1 after ${m.wallMs} ms, ${m.cpuS.toFixed(2)} s of processor time`);
        })(),
      ]),
    );
    const after = statSync(path);
    assert.deepEqual([after.ino, after.uid, after.mode & 0o777], [before.ino, NOBODY, 0o660], 'left alone: not ours to remove');
  }
});

test('send/recv --timeout on a channel another user made and left at once (still young): they wait, sleeping, and give up at --timeout', { skip: notRoot }, async (t) => {
  const copy = publicCopy(t);
  if (copy === undefined) return;
  const name = channelName(t, 'made');
  const path = `/dev/shm/${name}`;
  const before = leaveChannel(copy, name, 'made');
  // A channel younger than 2 s that nobody attached to is taken for one whose creator is about to
  // attach: keep it young while the ends wait (root may set its times), so that they join it.
  const fresh = setInterval(() => {
    const now = new Date();
    if (existsSync(path)) utimesSync(path, now, now);
  }, 200);
  t.after(() => clearInterval(fresh));
  for (const [command, missing] of [['recv', 'sender'], ['send', 'receiver']]) {
    const m = await timedEnd(t, copy, MEMBER, [command, '--shared-with-group', '--timeout', String(WAIT_MS), name]);
    // It joined, waited for the other side until --timeout, then could not remove another user's
    // name (EACCES, passed over: its owner's to remove).
    gaveUp(m, new RegExp(`^mmapkit ${command}: no ${missing} for '${esc(name)}' within ${WAIT_MS} ms$`));
    assert.ok(m.wallMs >= WAIT_MS, `${m.label} gave up after ${m.wallMs} ms, before its --timeout`);
    t.diagnostic(`${command} as a group member: exit 1 after ${m.wallMs} ms, ${m.cpuS.toFixed(2)} s of processor time`);
  }
  clearInterval(fresh);
  const after = statSync(path);
  assert.deepEqual([after.ino, after.uid], [before.ino, NOBODY], 'left alone: not ours to remove');
});

test('send/recv --timeout on a channel that a hostile group member keeps rewriting so that every end joins it and steps back: an error at --timeout', { skip: notRoot }, async (t) => {
  const copy = publicCopy(t);
  if (copy === undefined) return;
  const name = channelName(t, 'forged');
  const path = `/dev/shm/${name}`;
  // MAKER (a member of the group, so it may write the channel) makes a channel that a stream went
  // through (bytes taken from lane 0), then keeps clearing the header's "a producer has attached"
  // flag and keeps the object young. Every end then judges it a fresh channel to join, attaches,
  // finds another pair's stream in it and steps back, round after round (before the fix, for ever
  // whatever --timeout said: about 10% of a core, and no end).
  const code = `
    import { fchmodSync, utimesSync } from 'node:fs';
    const { Channel, CHANNEL, SharedMemory } = await import(${JSON.stringify(copy.distUrl)});
    const geometry = { capacity: 64, maxMessageSize: 65536, maxProducers: 4, maxConsumers: 4 };
    const shm = SharedMemory.create(${JSON.stringify(name)}, Channel.byteLength(geometry), { mode: 0o660 });
    fchmodSync(shm.fd, 0o660);
    const channel = Channel.create(shm, geometry);
    channel.send('mmapkit-pipe/1');
    const reader = Channel.open(shm);
    reader.receive();
    reader.close();
    channel.close();
    const i32 = new Int32Array(shm.buffer.buffer, shm.buffer.byteOffset, 64);
    const forge = () => Atomics.and(i32, CHANNEL.FLAGS >>> 2, ~3);
    forge();
    setInterval(forge, 1);
    setInterval(() => { const now = new Date(); utimesSync(${JSON.stringify(path)}, now, now); }, 200);
    console.log('ready');
  `;
  const maker = startProc([process.execPath, '--input-type=module', '-e', code], 'the hostile maker', { t, timeout: 120_000, spawnOptions: { ...MAKER, cwd: '/' } });
  await maker.line(/^ready$/, 30_000);
  const before = statSync(path);
  for (const [command, other] of [['recv', 'receiver'], ['send', 'sender']]) {
    const m = await timedEnd(t, copy, MEMBER, [command, '--shared-with-group', '--timeout', String(WAIT_MS), name]);
    // A sender's own attach sets the flag again: when it looks before the maker has cleared it, it
    // finds an abandoned channel that is not its to remove, which is an error at once.
    const inUse = `'${esc(name)}' is still in use by another ${other} or an earlier send/recv pair \\(waited ${WAIT_MS} ms\\)`;
    const notOurs = `cannot take over '${esc(name)}', left behind by an earlier send or recv: Permission denied .*`;
    gaveUp(m, new RegExp(`^mmapkit ${command}: (${inUse}|${command === 'send' ? notOurs : inUse})$`));
    if (/still in use/.test(m.stderr)) assert.ok(m.wallMs >= WAIT_MS, `${m.label} gave up after ${m.wallMs} ms, before its --timeout`);
    t.diagnostic(`${command} as a group member: exit 1 after ${m.wallMs} ms, ${m.cpuS.toFixed(2)} s of processor time`);
  }
  assert.equal(maker.result, undefined, 'the hostile maker kept going throughout');
  assert.equal(statSync(path).ino, before.ino, 'left alone');
});
