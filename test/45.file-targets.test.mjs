// File targets in shared directories (issue 17). Creating a channel or topic in a path, and map() with
// `size` (which may create or grow the file), must not reuse another user's file, a file others may
// write, or follow a symbolic link at the last component of the path: ERR_MMAP_NOT_OWNER,
// ERR_MMAP_UNSAFE_PERMISSIONS, ELOOP, unless map()'s `owner` / `sharedWith` accept it on purpose.
// Opening an existing file (Channel.open, map without size) keeps trusting the path. The other-user
// cases plant files owned by uid 65534 with chown, so they need root and are skipped with a message
// otherwise; the symlink and mode cases run as any user. No child processes, nothing waits.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, closeSync, existsSync, lchownSync, lstatSync, mkdirSync, openSync, readFileSync, statSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Channel, Topic, map } from '../dist/index.js';
import { NOBODY, isRoot, tempDir, throwsCode } from './helpers.mjs';

const GEOMETRY = { capacity: 4, maxMessageSize: 64, maxProducers: 2, maxConsumers: 2 };
const TOPIC = { capacity: 8192, maxMessageSize: 64, maxPublishers: 2, maxSubscribers: 2 };
const SIZE = Channel.byteLength(GEOMETRY);
const ME = process.geteuid();
const NOT_ROOT = isRoot ? false : 'needs root to plant files of another user (chown); CI runs as root';

/** The three calls that create or grow a file at a path. */
const CREATORS = [
  ['Channel.create', (p) => Channel.create(p, GEOMETRY).close()],
  ['Topic.create', (p) => Topic.create(p, TOPIC).close()],
  ["map(path, { access: 'write', size })", (p) => map(p, { access: 'write', size: SIZE }).unmap()],
];

/** A temp dir like /tmp: world-writable and sticky (anyone may create a name, only its owner remove it). */
function stickyDir(t) {
  const dir = tempDir(t);
  chmodSync(dir, 0o1777);
  return dir;
}

/** What a file is, to show that a refused call left it as it was. */
function fingerprint(path) {
  const st = lstatSync(path);
  return { uid: st.uid, gid: st.gid, mode: st.mode & 0o7777, size: st.size, symlink: st.isSymbolicLink(), bytes: st.isFile() ? readFileSync(path).toString('hex') : '' };
}

/** A file at `path` with these bytes, owner and mode (as another user would leave it). */
function plant(path, bytes, uid, mode) {
  writeFileSync(path, bytes);
  chownSync(path, uid, uid);
  chmodSync(path, mode);
}

test('a file another user planted in a sticky shared directory is refused by every creating call, and left as it was', { skip: NOT_ROOT }, (t) => {
  const dir = stickyDir(t);
  // Empty (touch; chmod 666), smaller than the structure, and large enough to hold it: each one refused.
  for (const [tag, bytes] of [['empty', ''], ['small', 'planted'], ['large', Buffer.alloc(2 * SIZE + 4096)]]) {
    for (const mode of [0o666, 0o600, 0o644]) {
      for (const [what, create] of CREATORS) {
        const path = join(dir, `${tag}-${mode.toString(8)}.chan`);
        plant(path, bytes, NOBODY, mode);
        const before = fingerprint(path);
        // The owner is checked first: even a 0600 file of another user is refused (its owner reads it).
        throwsCode(() => create(path), 'ERR_MMAP_NOT_OWNER', 'MmapkitError', { path, uid: NOBODY, gid: NOBODY, mode });
        assert.deepEqual(fingerprint(path), before, `${what} left the ${tag} ${mode.toString(8)} file as it was`);
      }
    }
  }
  // The message says what was found and how to accept it.
  const path = join(dir, 'x.chan');
  plant(path, '', NOBODY, 0o666);
  assert.throws(() => map(path, { access: 'write', size: SIZE }), (err) => {
    assert.match(err.message, /^File '.*x\.chan' belongs to uid 65534\b.*mode 0666/);
    assert.match(err.message, /owner: 65534/);
    return true;
  });
  assert.throws(() => Channel.create(path, GEOMETRY), (err) => {
    assert.match(err.message, /belongs to uid 65534/);
    assert.match(err.message, /map\(path, \{ access: 'write', size: .*owner: 65534/, 'says how to create in it all the same');
    return true;
  });
});

test("opting in: map()'s owner and sharedWith accept another user's file on purpose, and a channel is created in that mapping", { skip: NOT_ROOT }, (t) => {
  const dir = stickyDir(t);
  const path = join(dir, 'shared.chan');
  plant(path, '', NOBODY, 0o666);
  // The owner accepted, the mode not yet: 0666 lets every user write.
  throwsCode(() => map(path, { access: 'write', size: SIZE, owner: NOBODY }), 'ERR_MMAP_UNSAFE_PERMISSIONS', 'MmapkitError', { uid: NOBODY, mode: 0o666 });
  throwsCode(() => map(path, { access: 'write', size: SIZE, owner: 'any' }), 'ERR_MMAP_UNSAFE_PERMISSIONS', 'MmapkitError');
  throwsCode(() => map(path, { access: 'write', size: SIZE, sharedWith: 'anyone' }), 'ERR_MMAP_NOT_OWNER', 'MmapkitError');
  throwsCode(() => map(path, { access: 'write', size: SIZE, owner: NOBODY + 1, sharedWith: 'anyone' }), 'ERR_MMAP_NOT_OWNER', 'MmapkitError');
  assert.equal(statSync(path).size, 0, 'nothing grew the file while it was refused');
  for (const accept of [{ owner: NOBODY, sharedWith: 'anyone' }, { owner: 'any', sharedWith: 'anyone' }]) {
    const m = map(path, { access: 'write', size: SIZE, ...accept });
    const ch = Channel.create(m, GEOMETRY);
    ch.send('accepted on purpose');
    ch.close();
    m.unmap();
  }
  assert.equal(statSync(path).size, SIZE);
  assert.equal(statSync(path).uid, NOBODY, 'the file keeps its owner');
  // A 0600 file of that user needs the owner only.
  chmodSync(path, 0o600);
  map(path, { access: 'write', size: SIZE, owner: NOBODY }).unmap();
});

test("opening an existing file of another user (Channel.open, map without size) still works: opening is a choice to trust", { skip: NOT_ROOT }, (t) => {
  const dir = stickyDir(t);
  const path = join(dir, 'theirs.chan');
  Channel.create(path, GEOMETRY).close();
  chownSync(path, NOBODY, NOBODY);
  chmodSync(path, 0o666);
  const ch = Channel.open(path);
  ch.send('to their channel');
  assert.equal(ch.receive(0)?.toString(), 'to their channel');
  ch.close();
  Channel.inspect(path);
  map(path).unmap();
  map(path, { access: 'write' }).unmap();
  map(path, { access: 'copy' }).unmap();
});

test('a symbolic link at the last component is refused with ELOOP by every creating call; its target is untouched and nothing is created', (t) => {
  const dir = stickyDir(t);
  const home = tempDir(t); // where the victim's files are
  const victim = join(home, 'victim.db');
  writeFileSync(victim, 'precious data, not a channel');
  chmodSync(victim, 0o600);
  const big = join(home, 'big.db'); // large enough that a channel would fit without growing it
  writeFileSync(big, Buffer.alloc(2 * SIZE, 7));
  chmodSync(big, 0o600);
  const missing = join(home, 'not-yet'); // a dangling link: following it would create this file
  const targets = [victim, big, missing];
  for (const target of targets) {
    for (const [what, create] of CREATORS) {
      const link = join(dir, `link-${targets.indexOf(target)}.chan`);
      if (!existsSync(link) && !lstatSync(link, { throwIfNoEntry: false })) {
        symlinkSync(target, link);
        if (isRoot) lchownSync(link, NOBODY, NOBODY); // planted by another user
      }
      const before = existsSync(target) ? fingerprint(target) : undefined;
      throwsCode(() => create(link), 'ELOOP', 'Error', { syscall: 'open', path: link });
      assert.deepEqual(existsSync(target) ? fingerprint(target) : undefined, before, `${what} left ${target} as it was`);
      assert.ok(lstatSync(link).isSymbolicLink(), 'the link is left as it was');
    }
  }
  assert.equal(existsSync(missing), false, 'nothing was created through the dangling link');
  // A link of our own is refused alike: the check is on the last component, not on who made it.
  const own = join(home, 'own-link.chan');
  symlinkSync(join(home, 'real.chan'), own);
  throwsCode(() => Channel.create(own, GEOMETRY), 'ELOOP', 'Error', { syscall: 'open', path: own });
  assert.equal(existsSync(join(home, 'real.chan')), false);
  // Opening (no size) still follows links: the path was chosen.
  Channel.create(join(home, 'real.chan'), GEOMETRY).close();
  Channel.open(own).close();
  map(own).unmap();
  map(own, { access: 'write' }).unmap();
  // A link in a directory component is followed (documented: O_NOFOLLOW covers the last component).
  const realDir = join(home, 'real-dir');
  mkdirSync(realDir);
  symlinkSync(realDir, join(home, 'dir-link'));
  Channel.create(join(home, 'dir-link', 'c.chan'), GEOMETRY).close();
  assert.ok(statSync(join(realDir, 'c.chan')).isFile());
});

test('a file of our own that others may write is refused unless accepted; read bits of our own files are ours to set', (t) => {
  const dir = stickyDir(t);
  let n = 0;
  const own = (mode) => {
    const path = join(dir, `own-${n++}.chan`);
    writeFileSync(path, '');
    chmodSync(path, mode);
    return path;
  };
  // Group or other read bits only: accepted (umask 022 gives every file 0644).
  for (const mode of [0o600, 0o644, 0o640, 0o604, 0o400 | 0o200]) {
    for (const [what, create] of CREATORS) {
      const path = own(mode);
      assert.doesNotThrow(() => create(path), `${what} of our own ${mode.toString(8)} file`);
      assert.equal(statSync(path).mode & 0o777, mode, 'the mode is left as it was');
    }
  }
  // Other write bits: every user of the machine could forge what goes through it.
  for (const mode of [0o666, 0o602, 0o646, 0o622]) {
    for (const [what, create] of CREATORS) {
      const path = own(mode);
      throwsCode(() => create(path), 'ERR_MMAP_UNSAFE_PERMISSIONS', 'MmapkitError', { path, uid: ME, mode });
      assert.equal(statSync(path).size, 0, `${what} did not grow the refused ${mode.toString(8)} file`);
    }
    const path = own(mode);
    throwsCode(() => map(path, { access: 'write', size: SIZE, sharedWith: 'group' }), 'ERR_MMAP_UNSAFE_PERMISSIONS', 'MmapkitError');
    map(path, { access: 'write', size: SIZE, sharedWith: 'anyone' }).unmap();
    map(own(mode), { access: 'write', size: SIZE, mode: 0o666 }).unmap(); // a mode that lets them in accepts them
  }
  assert.throws(() => map(own(0o666), { access: 'write', size: SIZE }), /every user of this machine may read and write it.*sharedWith: 'anyone'/);
  // Group write bits: refused by default, accepted with sharedWith: 'group' when the group is ours.
  for (const mode of [0o660, 0o620]) {
    for (const [, create] of CREATORS) throwsCode(() => create(own(mode)), 'ERR_MMAP_UNSAFE_PERMISSIONS', 'MmapkitError', { mode });
    const path = own(mode);
    map(path, { access: 'write', size: SIZE, sharedWith: 'group' }).unmap();
    map(own(mode), { access: 'write', size: SIZE, mode: 0o660 }).unmap();
    Channel.create(map(path, { access: 'write', size: SIZE, sharedWith: 'group' }), GEOMETRY).close();
    if (isRoot && !process.getgroups().includes(NOBODY) && process.getegid() !== NOBODY) {
      const theirs = own(mode);
      chownSync(theirs, ME, NOBODY); // a group this process is not in
      throwsCode(() => map(theirs, { access: 'write', size: SIZE, sharedWith: 'group' }), 'ERR_MMAP_UNSAFE_PERMISSIONS', 'MmapkitError', { gid: NOBODY });
      map(theirs, { access: 'write', size: SIZE, sharedWith: 'anyone' }).unmap();
    }
  }
});

test('our own files keep working: new files are 0600, a structure is created again in its file, a file is grown', (t) => {
  const dir = stickyDir(t);
  const chan = join(dir, 'c.chan');
  Channel.create(chan, GEOMETRY).close();
  assert.equal(statSync(chan).mode & 0o777, 0o600);
  const again = Channel.create(chan, GEOMETRY);
  again.send('x');
  again.close();
  const topic = join(dir, 't.topic');
  Topic.create(topic, TOPIC).close();
  Topic.create(topic, TOPIC).close();
  const data = join(dir, 'data.bin');
  writeFileSync(data, 'abc'); // umask mode (0644 here)
  const m = map(data, { access: 'write', size: 8192 });
  assert.equal(m.buffer.toString('latin1', 0, 3), 'abc');
  m.unmap();
  truncateSync(data, 100);
  map(data, { access: 'write', size: 8192, owner: 'self', sharedWith: 'nobody' }).unmap();
  map(data, { access: 'write', size: 8192, owner: ME }).unmap();
  assert.equal(statSync(data).size, 8192);
});

test('bad input of owner and sharedWith in map()', (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'bad.bin');
  const TYPE = ['ERR_INVALID_ARG_TYPE', 'TypeError'];
  const VALUE = ['ERR_INVALID_ARG_VALUE', 'TypeError'];
  const RANGE = ['ERR_OUT_OF_RANGE', 'RangeError'];
  for (const [extra, [code, name]] of [
    [{ owner: 'me' }, VALUE], [{ owner: '' }, VALUE], [{ owner: -1 }, RANGE], [{ owner: 1.5 }, RANGE], [{ owner: 2 ** 32 }, RANGE],
    [{ owner: NaN }, RANGE], [{ owner: {} }, TYPE], [{ owner: null }, TYPE], [{ owner: 0n }, TYPE], [{ owner: true }, TYPE],
    [{ sharedWith: 'all' }, VALUE], [{ sharedWith: 'Nobody' }, VALUE], [{ sharedWith: 1 }, TYPE], [{ sharedWith: null }, TYPE],
  ]) {
    throwsCode(() => map(path, { access: 'write', size: 4096, ...extra }), code, name);
  }
  assert.equal(existsSync(path), false, 'bad options create no file');
  writeFileSync(path, 'x');
  // Only where a file may be created or grown from a path: with size, and not with a descriptor.
  for (const options of [{ owner: 'any' }, { access: 'write', owner: 'self' }, { access: 'read', sharedWith: 'anyone' }, { access: 'copy', owner: 0 }]) {
    throwsCode(() => map(path, options), ...VALUE);
  }
  assert.throws(() => map(path, { access: 'write', owner: 'any' }), /'options\.owner'.*only applies .*size/);
  const fd = openSync(path, 'r+');
  t.after(() => closeSync(fd));
  throwsCode(() => map(fd, { access: 'write', size: 4096, owner: 'any' }), ...VALUE);
  throwsCode(() => map(fd, { access: 'write', size: 4096, sharedWith: 'anyone' }), ...VALUE);
  // Channel.create() and Topic.create() take no such option: map the file yourself and pass the Mapping.
  const chan = join(dir, 'c.chan');
  throwsCode(() => Channel.create(chan, { ...GEOMETRY, owner: 'any' }), ...VALUE);
  throwsCode(() => Topic.create(chan, { ...TOPIC, sharedWith: 'anyone' }), ...VALUE);
  assert.equal(existsSync(chan), false);
});
