// Whose shared memory SharedMemory.open(), Channel.open({ name }) and create({ exclusive: false }) accept
// (issue 11): by default only this user's object whose mode gives no one else read or write bits;
// options.owner and options.sharedWith accept more on purpose. The same-user cases run everywhere; the
// two-user cases (objects pre-created by uid 65534 and OTHER_UID, a name shared with a group) need root
// to start children under other uids and are skipped with a message otherwise. Every child has a timeout.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, fchownSync, readFileSync, rmSync, statSync } from 'node:fs';
import { Channel, SharedMemory, map } from '../dist/index.js';
import { LONE_GID, NOBODY, OTHER_UID, SHARED_GID, asUser, isRoot, publicPackage, tempDir, throwsCode, userName, uniqueName } from './helpers.mjs';

const uniq = (tag) => uniqueName(`own-${tag}`);
const ME = process.geteuid();
const GEOMETRY = { capacity: 8, maxMessageSize: 256, maxProducers: 4, maxConsumers: 4 };
/** Every child runs at most this long. */
const CHILD_TIMEOUT = 20_000;

/** A fresh name, removed from /dev/shm when the test ends (whoever made it). */
function shmName(t, tag) {
  const name = uniq(tag);
  t.after(() => rmSync(`/dev/shm/${name}`, { force: true }));
  return name;
}

/** An object of ours with exactly this mode (chmod after create: the umask never widens it). */
function ownObject(t, tag, mode) {
  const name = shmName(t, tag);
  SharedMemory.create(name, 4096).close();
  chmodSync(`/dev/shm/${name}`, mode);
  return name;
}

const REFUSED = (code) => [code, 'MmapkitError'];

test('this user\'s object with mode 0600 opens; group or other read/write bits are refused unless sharedWith accepts them', (t) => {
  const name = ownObject(t, 'modes', 0o600);
  SharedMemory.open(name).close();
  SharedMemory.open(name, { access: 'read' }).close();
  const path = `/dev/shm/${name}`;
  const cases = [
    // mode, what the default refuses, what 'group' does, what 'anyone' does
    [0o666, true, false, true],
    [0o606, true, false, true],
    [0o604, true, false, true],
    [0o660, true, true, true],
    [0o640, true, true, true],
    [0o620, true, true, true],
    [0o711, false, true, true], // execute bits are not read or write access
  ];
  for (const [mode, refusedByDefault, groupOpens, anyoneOpens] of cases) {
    chmodSync(path, mode);
    const what = `mode 0${mode.toString(8)}`;
    if (refusedByDefault) {
      throwsCode(() => SharedMemory.open(name), ...REFUSED('ERR_MMAP_UNSAFE_PERMISSIONS'), { path: `/${name}`, uid: ME, gid: process.getegid(), mode });
      throwsCode(() => SharedMemory.open(name, { access: 'read' }), ...REFUSED('ERR_MMAP_UNSAFE_PERMISSIONS'));
      throwsCode(() => SharedMemory.open(name, { sharedWith: 'nobody' }), ...REFUSED('ERR_MMAP_UNSAFE_PERMISSIONS'));
    } else {
      SharedMemory.open(name).close();
    }
    if (groupOpens) SharedMemory.open(name, { sharedWith: 'group' }).close();
    else throwsCode(() => SharedMemory.open(name, { sharedWith: 'group' }), ...REFUSED('ERR_MMAP_UNSAFE_PERMISSIONS'), { mode });
    assert.equal(anyoneOpens, true, what);
    SharedMemory.open(name, { sharedWith: 'anyone' }).close();
    assert.equal(statSync(path).mode & 0o777, mode, `${what}: a refusal changes nothing`);
  }
});

test('the refusal says what is wrong and which option accepts it', (t) => {
  const name = ownObject(t, 'text', 0o666);
  assert.throws(() => SharedMemory.open(name), (err) => {
    assert.match(err.message, new RegExp(`^Shared memory '/${name}' has mode 0666 \\(owner uid ${ME}\\b`));
    assert.match(err.message, /every user of this machine may read and write it; pass \{ sharedWith: 'anyone' \} to accept that\.$/);
    assert.equal(String(err).startsWith('MmapkitError [ERR_MMAP_UNSAFE_PERMISSIONS]: '), true);
    return true;
  });
  chmodSync(`/dev/shm/${name}`, 0o640);
  assert.throws(() => SharedMemory.open(name), /the members of group gid \d+.* may read it; pass \{ sharedWith: 'group' \}/);
  assert.throws(() => SharedMemory.open(name, { owner: ME + 1 }), (err) => {
    assert.equal(err.code, 'ERR_MMAP_NOT_OWNER');
    assert.match(err.message, new RegExp(`belongs to uid ${ME}\\b.*, mode 0640, not to uid ${ME + 1}\\b.*pass \\{ owner: ${ME} \\} \\(or \\{ owner: 'any' \\}\\)`));
    return true;
  });
});

test('owner: this uid and \'self\' accept our object, another uid refuses it, \'any\' accepts it', (t) => {
  const name = ownObject(t, 'owner', 0o600);
  for (const owner of ['self', 'any', ME]) SharedMemory.open(name, { owner }).close();
  throwsCode(() => SharedMemory.open(name, { owner: ME === 0 ? 1 : 0 }), ...REFUSED('ERR_MMAP_NOT_OWNER'), { uid: ME, mode: 0o600 });
  // The owner is checked first: a wrong owner and a wide mode give the owner's code.
  chmodSync(`/dev/shm/${name}`, 0o666);
  throwsCode(() => SharedMemory.open(name, { owner: ME === 0 ? 1 : 0 }), ...REFUSED('ERR_MMAP_NOT_OWNER'));
  throwsCode(() => SharedMemory.open(name, { owner: 'any' }), ...REFUSED('ERR_MMAP_UNSAFE_PERMISSIONS'));
  SharedMemory.open(name, { owner: 'any', sharedWith: 'anyone' }).close();
});

test('bad owner and sharedWith options: Node-style errors before anything is opened', (t) => {
  const name = ownObject(t, 'bad', 0o600);
  const TYPE = ['ERR_INVALID_ARG_TYPE', 'TypeError'];
  const VALUE = ['ERR_INVALID_ARG_VALUE', 'TypeError'];
  const RANGE = ['ERR_OUT_OF_RANGE', 'RangeError'];
  const bad = [
    [{ owner: null }, TYPE], [{ owner: true }, TYPE], [{ owner: {} }, TYPE], [{ owner: 1n }, TYPE], [{ owner: [0] }, TYPE],
    [{ owner: 'me' }, VALUE], [{ owner: '' }, VALUE], [{ owner: 'ANY' }, VALUE], [{ owner: '0' }, VALUE],
    [{ owner: -1 }, RANGE], [{ owner: 1.5 }, RANGE], [{ owner: 2 ** 32 }, RANGE], [{ owner: 2 ** 32 - 1 }, RANGE], [{ owner: NaN }, RANGE], [{ owner: Infinity }, RANGE],
    [{ sharedWith: null }, TYPE], [{ sharedWith: 1 }, TYPE], [{ sharedWith: true }, TYPE],
    [{ sharedWith: 'world' }, VALUE], [{ sharedWith: 'Group' }, VALUE], [{ sharedWith: '' }, VALUE],
    [{ onwer: 'any' }, VALUE], [{ sharedwith: 'group' }, VALUE], [{ shared: 'group' }, VALUE],
  ];
  for (const [options, [code, cls]] of bad) {
    throwsCode(() => SharedMemory.open(name, options), code, cls);
    throwsCode(() => SharedMemory.open('', options), ...VALUE); // the name is checked first
    throwsCode(() => Channel.open({ name }, options), code, cls);
  }
  assert.throws(() => SharedMemory.open(name, { onwer: 'any' }), /'options\.onwer' is not a known option \(did you mean 'owner'\?\)/);
  assert.throws(() => SharedMemory.open(name, { owner: -1 }), /"options\.owner" is out of range/);
  // fromFd() and inherited() take a descriptor from a trusted hand: no owner option there.
  const shm = SharedMemory.open(name);
  throwsCode(() => SharedMemory.fromFd(shm.fd, { owner: 'any' }), ...VALUE);
  throwsCode(() => SharedMemory.inherited('default', { sharedWith: 'group' }), ...VALUE);
  shm.close();
});

test('Channel.open({ name }) checks owner and mode; the options apply to a { name } target only', (t) => {
  const name = shmName(t, 'chan');
  const made = Channel.create({ name }, GEOMETRY);
  made.send('for a trusted reader');
  const path = `/dev/shm/${name}`;
  assert.equal(statSync(path).mode & 0o777, 0o600, 'create is exclusive with 0600');
  Channel.open({ name }).close();
  chmodSync(path, 0o666);
  throwsCode(() => Channel.open({ name }), ...REFUSED('ERR_MMAP_UNSAFE_PERMISSIONS'), { path: `/${name}`, mode: 0o666 });
  throwsCode(() => Channel.open({ name: `/${name}` }, { wait: 'spin', owner: 'self' }), ...REFUSED('ERR_MMAP_UNSAFE_PERMISSIONS'));
  const accepted = Channel.open({ name }, { sharedWith: 'anyone' });
  assert.equal(accepted.receive(1000)?.toString(), 'for a trusted reader');
  accepted.close();
  made.close();

  // owner and sharedWith mean nothing for a path, a SharedMemory or a Mapping: an error, not ignored.
  const dir = tempDir(t);
  Channel.create(`${dir}/c.chan`, GEOMETRY).close();
  const shm = SharedMemory.open(name, { sharedWith: 'anyone' });
  const m = map(`${dir}/c.chan`, { access: 'write' });
  for (const target of [`${dir}/c.chan`, shm, m]) {
    throwsCode(() => Channel.open(target, { owner: 'any' }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
    throwsCode(() => Channel.open(target, { sharedWith: 'anyone' }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
    Channel.open(target).close();
  }
  assert.throws(() => Channel.open(shm, { owner: 'any' }), /'options\.owner' applies only to a \{ name \} target/);
  m.unmap();
  shm.close();
  // An option put into the target by mistake is refused too, with a pointer to the second argument.
  throwsCode(() => Channel.open({ name, owner: 'any' }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
  assert.throws(() => Channel.open({ name, sharedWith: 'anyone' }), /options go in the second argument: Channel\.open\(\{ name \}, \{ sharedWith \}\)/);
  throwsCode(() => Channel.create({ name: uniq('x'), capacity: 8 }), 'ERR_INVALID_ARG_VALUE', 'TypeError');
});

test('create({ exclusive: false }) reuses only our object that lets in no one its mode would not', (t) => {
  const name = ownObject(t, 'reuse', 0o666);
  throwsCode(() => SharedMemory.create(name, 8192, { exclusive: false }), ...REFUSED('ERR_MMAP_UNSAFE_PERMISSIONS'));
  throwsCode(() => SharedMemory.create(name, 8192, { exclusive: false, mode: 0o660 }), ...REFUSED('ERR_MMAP_UNSAFE_PERMISSIONS'));
  assert.equal(statSync(`/dev/shm/${name}`).size, 4096, 'a refused object is not grown');
  const reused = SharedMemory.create(name, 8192, { exclusive: false, mode: 0o666 });
  assert.equal(reused.size, 8192);
  reused.close();
  // A name that does not exist yet is created with the mode (minus the umask) and passes its own check.
  const fresh = shmName(t, 'fresh');
  SharedMemory.create(fresh, 4096, { exclusive: false, mode: 0o640 }).close();
  assert.equal(statSync(`/dev/shm/${fresh}`).mode & 0o777, 0o640 & ~process.umask());
});

// ------------------------------------------------------------------------------------------------
// Two real users (root starts the children under other uids)

const twoUsers = isRoot ? false : 'needs root to run children under other uids (the suite runs as root in CI)';

/** A child program run as another user, with a copy of the package it can read. */
function childCode(distUrl, body) {
  return `import { Channel, SharedMemory } from ${JSON.stringify(distUrl)};
import { fchmodSync } from 'node:fs';
const [name, arg] = process.argv.slice(1);
const G = ${JSON.stringify(GEOMETRY)};
try {
${body}
} catch (err) { console.log(JSON.stringify({ code: err.code, message: err.message })); process.exit(0); }`;
}

/** Plant a valid channel holding one message under `name`, as `ids`, with exactly `mode`. */
const PLANT = `const shm = SharedMemory.create(name, Channel.byteLength(G));
fchmodSync(shm.fd, Number(arg));
const ch = Channel.create(shm, G);
ch.send('planted by uid ' + process.getuid());
ch.close(); shm.close();
console.log(JSON.stringify({ ok: true }));`;

/** Open `name` with the options in arg (JSON), as a library user would, and report what happened. */
const OPEN = `const o = JSON.parse(arg);
const ch = Channel.open({ name }, o);
const m = ch.receive(5000);
ch.close();
console.log(JSON.stringify({ ok: true, message: m === null ? null : m.toString() }));`;

function runAs(ids, code, name, arg, t) {
  const pkg = publicPackage(ids.uid);
  const how = asUser(ids, [process.execPath, '--input-type=module', '-e', childCode(pkg.distUrl, code), name, String(arg)]);
  if (how === undefined) return t.skip('setpriv (util-linux) is missing: no supplementary groups for a child');
  const r = spawnSync(how.cmd[0], how.cmd.slice(1), { ...how.options, encoding: 'utf8', timeout: CHILD_TIMEOUT, killSignal: 'SIGKILL' });
  assert.equal(r.error, undefined, String(r.error));
  assert.equal(r.status, 0, `child as uid ${ids.uid}: status ${r.status} signal ${r.signal}\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

const ownerText = (uid) => `uid ${uid}${userName(uid) === undefined ? '' : ` \\(${userName(uid)}\\)`}`;

test('a name pre-created by another user (0666) is refused by SharedMemory.open and Channel.open, and left alone', { skip: twoUsers }, (t) => {
  const name = shmName(t, 'planted');
  assert.deepEqual(runAs({ uid: NOBODY, gid: NOBODY }, PLANT, name, 0o666, t), { ok: true });
  const path = `/dev/shm/${name}`;
  const before = statSync(path);
  assert.equal(before.uid, NOBODY);
  assert.equal(before.mode & 0o777, 0o666);
  const content = readFileSync(path);
  for (const open of [() => SharedMemory.open(name), () => SharedMemory.open(name, { access: 'read' }), () => Channel.open({ name })]) {
    assert.throws(open, (err) => {
      assert.equal(err.code, 'ERR_MMAP_NOT_OWNER');
      assert.deepEqual({ path: err.path, uid: err.uid, gid: err.gid, mode: err.mode }, { path: `/${name}`, uid: NOBODY, gid: NOBODY, mode: 0o666 });
      assert.match(err.message, new RegExp(`^Shared memory '/${name}' belongs to ${ownerText(NOBODY)}, mode 0666, not to this process's user, uid 0`));
      assert.match(err.message, new RegExp(`pass \\{ owner: ${NOBODY} \\} \\(or \\{ owner: 'any' \\}\\)\\.$`));
      return true;
    });
  }
  throwsCode(() => SharedMemory.create(name, 8192, { exclusive: false, mode: 0o666 }), ...REFUSED('ERR_MMAP_NOT_OWNER'));
  const after = statSync(path);
  assert.deepEqual([after.ino, after.size, after.mode, after.uid], [before.ino, before.size, before.mode, before.uid], 'not removed, grown or changed');
  assert.deepEqual(readFileSync(path), content, 'not written');
  // Accepting that owner still leaves the mode to accept; both together open it.
  throwsCode(() => Channel.open({ name }, { owner: NOBODY }), ...REFUSED('ERR_MMAP_UNSAFE_PERMISSIONS'));
  throwsCode(() => Channel.open({ name }, { owner: OTHER_UID, sharedWith: 'anyone' }), ...REFUSED('ERR_MMAP_NOT_OWNER'));
  const ch = Channel.open({ name }, { owner: NOBODY, sharedWith: 'anyone' });
  assert.equal(ch.receive(1000)?.toString(), `planted by uid ${NOBODY}`);
  ch.close();
  SharedMemory.open(name, { owner: 'any', sharedWith: 'anyone' }).close();
});

test('two unprivileged users: OTHER_UID\'s Channel.open of a 0666 name planted by nobody is refused', { skip: twoUsers }, (t) => {
  const name = shmName(t, 'two');
  runAs({ uid: NOBODY, gid: NOBODY }, PLANT, name, 0o666, t);
  const refused = runAs({ uid: OTHER_UID, gid: OTHER_UID }, OPEN, name, '{}', t);
  assert.equal(refused.code, 'ERR_MMAP_NOT_OWNER', refused.message);
  assert.match(refused.message, new RegExp(`belongs to ${ownerText(NOBODY)}, mode 0666, not to this process's user, uid ${OTHER_UID}\\b`));
  const viaShm = runAs({ uid: OTHER_UID, gid: OTHER_UID }, 'SharedMemory.open(name); console.log("{}");', name, '', t);
  assert.equal(viaShm.code, 'ERR_MMAP_NOT_OWNER');
  // Accepted on purpose, the planted message is there: exactly what the default protects against.
  const accepted = runAs({ uid: OTHER_UID, gid: OTHER_UID }, OPEN, name, JSON.stringify({ owner: NOBODY, sharedWith: 'anyone' }), t);
  assert.deepEqual(accepted, { ok: true, message: `planted by uid ${NOBODY}` });
});

test('a channel shared with a group: a member opens it with { owner, sharedWith: \'group\' }; others cannot', { skip: twoUsers }, (t) => {
  const name = shmName(t, 'group');
  runAs({ uid: NOBODY, gid: SHARED_GID }, PLANT, name, 0o660, t);
  const st = statSync(`/dev/shm/${name}`);
  assert.deepEqual([st.uid, st.gid, st.mode & 0o777], [NOBODY, SHARED_GID, 0o660]);
  const member = { uid: OTHER_UID, gid: SHARED_GID };
  const plain = runAs(member, OPEN, name, '{}', t);
  assert.equal(plain.code, 'ERR_MMAP_NOT_OWNER', plain.message);
  const groupOnly = runAs(member, OPEN, name, JSON.stringify({ owner: NOBODY }), t);
  assert.equal(groupOnly.code, 'ERR_MMAP_UNSAFE_PERMISSIONS', groupOnly.message);
  assert.match(groupOnly.message, new RegExp(`the members of group gid ${SHARED_GID} may read and write it; pass \\{ sharedWith: 'group' \\}`));
  assert.deepEqual(runAs(member, OPEN, name, JSON.stringify({ owner: NOBODY, sharedWith: 'group' }), t), { ok: true, message: `planted by uid ${NOBODY}` });
});

test('a group-shared name: a supplementary group counts; a group that is not ours is refused', { skip: twoUsers }, (t) => {
  const name = shmName(t, 'suppl');
  runAs({ uid: NOBODY, gid: SHARED_GID }, PLANT, name, 0o660, t);
  // OTHER_UID with LONE_GID as its group and SHARED_GID as a supplementary one (setpriv --groups).
  const viaSupplementary = runAs({ uid: OTHER_UID, gid: LONE_GID, groups: [LONE_GID, SHARED_GID] }, OPEN, name, JSON.stringify({ owner: 'any', sharedWith: 'group' }), t);
  if (viaSupplementary === undefined) return;
  assert.deepEqual(viaSupplementary, { ok: true, message: `planted by uid ${NOBODY}` });
  // Root may open anything, so only our check stands between it and a group it is not in.
  assert.equal(process.getgroups().includes(SHARED_GID), false);
  assert.throws(() => SharedMemory.open(name, { owner: 'any', sharedWith: 'group' }), (err) => {
    assert.equal(err.code, 'ERR_MMAP_UNSAFE_PERMISSIONS');
    assert.match(err.message, new RegExp(`it is shared with group gid ${SHARED_GID}, which is not one of this process's groups; pass \\{ sharedWith: 'anyone' \\}`));
    return true;
  });
  // Same check for an object of our own moved to a group we are not in.
  const own = ownObject(t, 'own-group', 0o660);
  const shm = SharedMemory.open(own, { sharedWith: 'group' });
  fchownSync(shm.fd, -1, SHARED_GID);
  shm.close();
  throwsCode(() => SharedMemory.open(own, { sharedWith: 'group' }), ...REFUSED('ERR_MMAP_UNSAFE_PERMISSIONS'), { gid: SHARED_GID });
});
