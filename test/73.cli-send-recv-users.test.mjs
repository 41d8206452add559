// `mmapkit send` / `recv` and names of other users (issue 11): a channel that another user created first
// in /dev/shm (mode 0666) must not be joined, neither by send (the victim's data would go to that user)
// nor by recv (that user could inject data); nor one of our own that others can read or write. A
// refused name is left as it is, and the message says whose it is. --shared-with-group shares a channel
// with a group, and nothing more. The cases with other users start children under uid 65534 and
// OTHER_UID (root only; skipped with a message otherwise), running a readable copy of the package.
// Every process has a timeout and is killed when its test ends.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, rmSync, statSync, utimesSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Channel } from '../dist/index.js';
import { asUser, isRoot, LONE_GID, NOBODY, OTHER_UID, publicPackage, runTimed, SHARED_GID, startProc, timedTests, userName, shmName } from './helpers.mjs';

const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'cli', 'main.js');
/** How long one process may run before it is killed (the test then fails). */
const PROCESS_TIMEOUT = 30_000;
const ME = process.geteuid();
const twoUsers = isRoot ? false : 'needs root to run children under other uids (the suite runs as root in CI)';

const test = timedTests(90_000);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A fresh shared memory name for this test, removed from /dev/shm when it ends. */
const channelName = (t, tag) => shmName(t, `users-${tag}`);

/** The CLI as `ids` ({ uid, gid, groups }), or as this process when ids is undefined: { cmd, options }. */
function cliAs(ids, args) {
  if (ids === undefined) return { cmd: [process.execPath, CLI, ...args], options: {} };
  return asUser(ids, [process.execPath, publicPackage(ids.uid).cli, ...args]);
}

/** Start the CLI (killed after PROCESS_TIMEOUT and when the test ends). */
function start(t, ids, args, label) {
  const { cmd, options } = cliAs(ids, args);
  return startProc(cmd, label, { t, timeout: PROCESS_TIMEOUT, stdin: 'pipe', spawnOptions: options });
}

/** Run the CLI to its end with `input` on standard input: { status, signal, stdout, stderr }. */
function run(ids, args, input = '') {
  const { cmd, options } = cliAs(ids, args);
  const r = spawnSync(cmd[0], cmd.slice(1), { ...options, input, encoding: 'utf8', timeout: PROCESS_TIMEOUT, killSignal: 'SIGKILL' });
  if (r.error) throw r.error;
  return r;
}

/** Wait (at most 10 s) until the name exists, sized: its creator has made the channel. */
async function nameMade(name) {
  const deadline = Date.now() + 10_000;
  while ((statSync(`/dev/shm/${name}`, { throwIfNoEntry: false })?.size ?? 0) === 0) {
    if (Date.now() > deadline) assert.fail(`no channel ${name} within 10 s`);
    await sleep(10);
  }
  return statSync(`/dev/shm/${name}`);
}

/** Wait (at most 10 s) until the name leads to a new channel (another inode than `old`, sized). */
async function nameReplaced(name, old) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const st = statSync(`/dev/shm/${name}`, { throwIfNoEntry: false });
    if (st !== undefined && st.ino !== old.ino && st.size > 0) return st;
    if (Date.now() > deadline) assert.fail(`${name} was not replaced within 10 s`);
    await sleep(10);
  }
}

/** Wait (at most 10 s) until a consumer has attached to the channel at the name. */
async function consumerAttached(name) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    // root maps the file read-only: inspect() never attaches or writes.
    const found = Channel.inspect(`/dev/shm/${name}`);
    if (found.state === 'channel' && found.consumers.length > 0) return;
    if (Date.now() > deadline) assert.fail(`no consumer attached to ${name} within 10 s`);
    await sleep(10);
  }
}

/** `chmod` run as `uid`: the owner of a name sets its mode, as an attacker would. */
function chmodAs(uid, mode, name) {
  const r = spawnSync('chmod', [mode.toString(8), `/dev/shm/${name}`], { uid, gid: uid, cwd: '/', timeout: 10_000 });
  assert.equal(r.status, 0, String(r.stderr));
}

const who = (uid) => `uid ${uid}${userName(uid) === undefined ? '' : ` \\(${userName(uid)}\\)`}`;
const esc = (s) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/**
 * Assert the refusal of `name` by `command`: exit 1, one line saying whose it is (`you`: the refusing
 * process is its owner), nothing written out.
 */
function refused(r, command, name, ownerUid, mode, why, { you = ownerUid === ME } = {}) {
  assert.equal(r.status, 1, `${command}: exit ${r.status} (signal ${r.signal})\n${r.stderr}`);
  assert.equal(r.stdout, '', 'nothing received');
  const head = `mmapkit ${command}: refusing '${name}': '/dev/shm/${name}' belongs to ${who(ownerUid)}${you ? ' \\(you\\)' : ''}, group gid \\d+( \\([^)]*\\))?, mode 0${mode.toString(8)}: `;
  assert.match(r.stderr, new RegExp(`^${head}${why}\\. Nothing was changed\\. .+\\n$`));
}

test('our own name that others may read or write (0666, 0640) is refused by send and recv, and left alone', {}, async (t) => {
  for (const [mode, whom] of [[0o666, 'every user'], [0o640, 'its group']]) {
    const name = channelName(t, `own${mode.toString(8)}`);
    const recv = start(t, undefined, ['recv', '--timeout', '20000', name], 'recv (the owner)');
    const before = await nameMade(name);
    chmodSync(`/dev/shm/${name}`, mode);
    const r = run(undefined, ['send', name], 'data for the receiver');
    refused(r, 'send', name, ME, mode, `its mode lets ${whom} read or write it, so they could read what goes through it or send data of their own`);
    assert.match(r.stderr, new RegExp(`If you did not make it so, remove it \\(rm '/dev/shm/${esc(name)}'\\) and run again; to share a channel with your group, run both ends with --shared-with-group\\.\\n$`));
    const rr = run(undefined, ['recv', '--timeout', '2000', name]);
    refused(rr, 'recv', name, ME, mode, `its mode lets ${whom} read or write it, so they could read what goes through it or send data of their own`);
    const after = statSync(`/dev/shm/${name}`);
    assert.deepEqual([after.ino, after.mode], [before.ino, (before.mode & ~0o777) | mode], 'the name is neither removed nor changed');
    recv.kill();
    await recv.done;
    assert.equal(recv.result.stdout, '', 'the first receiver got nothing');
  }
});

test('send refuses a channel that another user (nobody) made first with mode 0666: the secret stays with us', { skip: twoUsers }, async (t) => {
  const name = channelName(t, 'steal');
  // The attacker: waits with recv, and opens its name to everyone.
  const thief = start(t, { uid: NOBODY, gid: NOBODY }, ['recv', '--timeout', '20000', name], 'recv as nobody');
  const before = await nameMade(name);
  chmodAs(NOBODY, 0o666, name);
  const r = run(undefined, ['send', '--timeout', '5000', name], 'victim secret\n');
  refused(r, 'send', name, NOBODY, 0o666, 'it is not yours \\(and its mode lets every user read or write it\\), and its owner could read what goes through it or send data of its own');
  assert.match(r.stderr, /Choose another NAME, or ask its owner to remove it; to share a channel with your group, run both ends with --shared-with-group\.\n$/);
  const after = statSync(`/dev/shm/${name}`);
  assert.deepEqual([after.ino, after.uid, after.mode & 0o777], [before.ino, NOBODY, 0o666], 'not removed, not taken over');
  thief.kill();
  const got = await thief.done;
  assert.equal(got.stdout.includes('victim secret'), false, 'the other user received nothing');
  assert.equal(got.stdout, '');
});

test('recv refuses a channel that another user made first with data waiting: nothing injected reaches our output', { skip: twoUsers }, async (t) => {
  const name = channelName(t, 'inject');
  const injector = start(t, { uid: NOBODY, gid: NOBODY }, ['send', '--timeout', '20000', name], 'send as nobody');
  injector.child.stdin.end('rm -rf ~  # injected\n');
  const before = await nameMade(name);
  chmodAs(NOBODY, 0o666, name);
  const r = run(undefined, ['recv', '--timeout', '5000', name]);
  refused(r, 'recv', name, NOBODY, 0o666, 'it is not yours \\(and its mode lets every user read or write it\\), and its owner could read what goes through it or send data of its own');
  assert.equal(statSync(`/dev/shm/${name}`).ino, before.ino);
  injector.kill();
  await injector.done;
});

test('two unprivileged users: OTHER_UID\'s send and recv refuse nobody\'s 0666 channels', { skip: twoUsers }, async (t) => {
  const other = { uid: OTHER_UID, gid: OTHER_UID };
  const name = channelName(t, 'two');
  const thief = start(t, { uid: NOBODY, gid: NOBODY }, ['recv', '--timeout', '20000', name], 'recv as nobody');
  await nameMade(name);
  chmodAs(NOBODY, 0o666, name);
  refused(run(other, ['send', '--timeout', '5000', name], 'secret of OTHER_UID'), 'send', name, NOBODY, 0o666, 'it is not yours .*');
  refused(run(other, ['recv', '--timeout', '5000', name]), 'recv', name, NOBODY, 0o666, 'it is not yours .*');
  thief.kill();
  assert.equal((await thief.done).stdout, '');
  // A name nobody keeps private (0600) cannot even be opened by OTHER_UID: the kernel says no, we say whose.
  const priv = channelName(t, 'private');
  const recv = start(t, { uid: NOBODY, gid: NOBODY }, ['recv', '--timeout', '20000', priv], 'recv as nobody');
  await nameMade(priv);
  const r = run(other, ['send', '--timeout', '5000', priv], 'x');
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`^mmapkit send: cannot open channel '${priv}': Permission denied \\('/dev/shm/${priv}' belongs to ${who(NOBODY)}, group gid ${NOBODY}( \\([^)]*\\))?, mode 0600\\)\\n$`));
  recv.kill();
  await recv.done;
});

test('--shared-with-group: two users of one group share a channel (mode 0660); no one else is let in', { skip: twoUsers }, async (t) => {
  const name = channelName(t, 'group');
  const owner = { uid: NOBODY, gid: SHARED_GID };
  const member = { uid: OTHER_UID, gid: SHARED_GID };
  const recv = start(t, owner, ['recv', '--shared-with-group', '--timeout', '25000', name], 'recv as nobody, group SHARED_GID');
  const st = await nameMade(name);
  assert.deepEqual([st.uid, st.gid, st.mode & 0o777], [NOBODY, SHARED_GID, 0o660], 'created 0660 whatever the umask');
  // Without the flag the member refuses it (another owner); so does a user outside the group (the
  // kernel), and root, which could open it, but is not in the group.
  refused(run(member, ['send', '--timeout', '5000', name], 'x'), 'send', name, NOBODY, 0o660, 'it is not yours, and its owner could read what goes through it or send data of its own');
  const outsider = run({ uid: OTHER_UID, gid: LONE_GID }, ['send', '--shared-with-group', '--timeout', '5000', name], 'x');
  assert.equal(outsider.status, 1, outsider.stderr);
  assert.match(outsider.stderr, new RegExp(`cannot open channel '${name}': Permission denied \\('/dev/shm/${name}' belongs to ${who(NOBODY)}, group gid ${SHARED_GID}, mode 0660\\)\\n$`));
  refused(run(undefined, ['send', '--shared-with-group', '--timeout', '5000', name], 'x'), 'send', name, NOBODY, 0o660, 'its group is not one of yours');
  // The member, with the flag: every byte arrives.
  const data = randomBytes(3 * 1024 * 1024).toString('base64'); // text: startProc collects stdout as utf8
  // Started, not run: this process must read the receiver's output meanwhile (a spawnSync would block it).
  const send = start(t, member, ['send', '--shared-with-group', '--timeout', '20000', name], 'send as OTHER_UID, group SHARED_GID');
  send.child.stdin.end(data);
  const [sent, got] = await Promise.all([send.done, recv.done]);
  assert.equal(sent.status, 0, sent.stderr);
  assert.equal(got.status, 0, got.stderr);
  assert.equal(createHash('sha256').update(got.stdout, 'latin1').digest('hex'), createHash('sha256').update(data).digest('hex'));
  assert.equal(existsSync(`/dev/shm/${name}`), false, 'the receiver removed its name');
});

test('--shared-with-group refuses a name open to everyone, and one not shared with its group', { skip: twoUsers }, async (t) => {
  const owner = { uid: NOBODY, gid: SHARED_GID };
  const member = { uid: OTHER_UID, gid: SHARED_GID };
  for (const [mode, by, why] of [
    [0o666, member, 'its mode lets every user read or write it \\(--shared-with-group accepts a name shared with one of your groups, and with no one else\\)'],
    // A member could not even open it (the kernel refuses): its owner, with the flag, is told.
    [0o640, owner, 'it is not shared with its group for reading and writing \\(both ends need --shared-with-group, or neither\\)'],
    [0o600, owner, 'it is not shared with its group for reading and writing \\(both ends need --shared-with-group, or neither\\)'],
  ]) {
    const name = channelName(t, `g${mode.toString(8)}`);
    const recv = start(t, owner, ['recv', '--shared-with-group', '--timeout', '20000', name], 'recv as nobody');
    await nameMade(name);
    chmodAs(NOBODY, mode, name);
    const r = run(by, ['send', '--shared-with-group', '--timeout', '5000', name], 'x');
    refused(r, 'send', name, NOBODY, mode, why, { you: by === owner });
    assert.equal(existsSync(`/dev/shm/${name}`), true);
    recv.kill();
    await recv.done;
  }
});

test('--shared-with-group: a name a group member left behind, which we may not remove, is an error at once (no busy loop)', { skip: twoUsers }, async (t) => {
  const name = channelName(t, 'stale');
  const recv = start(t, { uid: NOBODY, gid: SHARED_GID }, ['recv', '--shared-with-group', name], 'recv as nobody');
  const left = await nameMade(name);
  await consumerAttached(name);
  recv.kill(); // a receiver that died: its entry stays, the channel is abandoned
  await recv.done;
  const t0 = Date.now();
  const r = run({ uid: OTHER_UID, gid: SHARED_GID }, ['send', '--shared-with-group', '--timeout', '20000', name], 'x');
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`^mmapkit send: cannot take over '${name}', left behind by an earlier send or recv: Permission denied \\('/dev/shm/${name}' belongs to ${who(NOBODY)}, group gid ${SHARED_GID}, mode 0660\\)\\. Choose another NAME, or ask its owner to remove it\\.\\n$`));
  assert.ok(Date.now() - t0 < 15_000, `took ${Date.now() - t0} ms`);
  assert.equal(existsSync(`/dev/shm/${name}`), true, 'still there: not ours to remove');
  // Its owner takes it over as before.
  const owner = { uid: NOBODY, gid: SHARED_GID };
  const again = start(t, owner, ['recv', '--shared-with-group', '--timeout', '20000', name], 'recv as nobody, again');
  await nameReplaced(name, left);
  const s = run({ uid: OTHER_UID, gid: SHARED_GID }, ['send', '--shared-with-group', '--timeout', '20000', name], 'after the take-over\n'); // a few bytes: no backpressure
  assert.equal(s.status, 0, s.stderr);
  const got = await again.done;
  assert.equal(got.status, 0, got.stderr);
  assert.equal(got.stdout, 'after the take-over\n');
});

test('--shared-with-group, sender first: the receiver (another user) cannot remove the name, so the sender does', { skip: twoUsers }, async (t) => {
  for (const size of [5, 2 * 1024 * 1024]) {
    const name = channelName(t, `sfirst${size}`);
    const data = randomBytes(Math.ceil(size / 2)).toString('hex').slice(0, size);
    const send = start(t, { uid: OTHER_UID, gid: SHARED_GID }, ['send', '--shared-with-group', '--timeout', '20000', name], 'send as OTHER_UID');
    send.child.stdin.end(data);
    const st = await nameMade(name);
    assert.deepEqual([st.uid, st.gid, st.mode & 0o777], [OTHER_UID, SHARED_GID, 0o660]);
    const recv = start(t, { uid: NOBODY, gid: SHARED_GID }, ['recv', '--shared-with-group', '--timeout', '20000', name], 'recv as nobody');
    const [sent, got] = await Promise.all([send.done, recv.done]);
    assert.equal(sent.status, 0, sent.stderr);
    assert.equal(got.status, 0, got.stderr);
    assert.equal(got.stdout.length, data.length);
    assert.equal(got.stdout === data, true, 'every byte, in order');
    assert.equal(existsSync(`/dev/shm/${name}`), false, `${size} bytes: the name is removed (by the sender)`);
  }
});

test('--shared-with-group: a name another member is still making is waited for until --timeout (sleeping), one dated ahead is not', { skip: twoUsers }, async (t) => {
  // Issue 17: an end that could not take over another user's abandoned name spun at 100% CPU for
  // ever. Another member's empty name (its creator has not sized it): while it is young, an end
  // waits for its creator, sleeping between looks, until its deadline.
  const member = { uid: OTHER_UID, gid: SHARED_GID };
  const name = channelName(t, 'making');
  const path = `/dev/shm/${name}`;
  const made = spawnSync('sh', ['-c', 'umask 007; : > "$0"', path], { uid: NOBODY, gid: SHARED_GID, cwd: '/', timeout: 10_000 });
  assert.equal(made.status, 0, String(made.stderr));
  assert.deepEqual([statSync(path).uid, statSync(path).size, statSync(path).mode & 0o777], [NOBODY, 0, 0o660]);
  // Keep it young for as long as the end waits: a creator that is slow, not dead (root may set its times).
  const fresh = setInterval(() => {
    const now = new Date();
    if (existsSync(path)) utimesSync(path, now, now);
  }, 200);
  t.after(() => clearInterval(fresh));
  const { cmd, options } = cliAs(member, ['recv', '--shared-with-group', '--timeout', '1500', name]);
  // Started, not run: the timer above must go on meanwhile (spawnSync would block it).
  const r = await runTimed(cmd, 'recv as OTHER_UID', { t, timeout: PROCESS_TIMEOUT, spawnOptions: options });
  clearInterval(fresh);
  assert.equal(r.status, 1, `exit ${r.status} (signal ${r.signal})\n${r.stderr}`);
  assert.equal(r.stderr, `mmapkit recv: '${name}' is still being made by another send or recv (waited 1500 ms)`);
  assert.ok(r.wallMs >= 1500 && r.wallMs < 15_000, `gave up after ${r.wallMs} ms`);
  assert.ok(r.cpuS < 1.2, `used ${r.cpuS} s of processor time in ${r.wallMs} ms: it did not sleep between looks`);
  assert.equal(statSync(path).uid, NOBODY, 'left alone');

  // Dated an hour ahead: no creation is under way; it is abandoned, and not ours to remove: an error
  // at once (before, an end waited for it for ever, whatever its --timeout).
  const ahead = new Date(Date.now() + 3_600_000);
  utimesSync(path, ahead, ahead);
  for (const command of ['send', 'recv']) {
    const t1 = Date.now();
    const s = run(member, [command, '--shared-with-group', '--timeout', '20000', name], 'x');
    assert.equal(s.status, 1, s.stderr);
    assert.match(s.stderr, new RegExp(`^mmapkit ${command}: cannot take over '${name}', left behind by an earlier send or recv: Permission denied \\('/dev/shm/${name}' belongs to ${who(NOBODY)}, group gid ${SHARED_GID}, mode 0660\\)\\. Choose another NAME, or ask its owner to remove it\\.\\n$`));
    assert.ok(Date.now() - t1 < 15_000, `took ${Date.now() - t1} ms`);
  }
  assert.equal(existsSync(path), true, 'still there: not ours to remove');
});
