// Issue 14: flush({ async: true }) (MS_ASYNC), SharedMemory.create() without a name, handles that
// another process opens, and util.inspect of Mapping, SharedMemory, Channel, Topic, Subscription.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { Worker } from 'node:worker_threads';
import { Channel, SharedMemory, Topic, map, mapAnonymous, pageSize } from '../dist/index.js';
import { distUrl, have, runNode, shmName, startNode, tempDir, throwsCode, timedTests } from './helpers.mjs';

const test = timedTests(60_000);
const TYPE = ['ERR_INVALID_ARG_TYPE', 'TypeError'];
const VALUE = ['ERR_INVALID_ARG_VALUE', 'TypeError'];
const RANGE = ['ERR_OUT_OF_RANGE', 'RangeError'];
const GENERATED = /^\/mmapkit-[0-9a-f]{16}$/;

/** Unlink a name when the test ends (a generated name is only known once create() returned). */
function unlinkAfter(t, name) {
  t.after(() => {
    try {
      SharedMemory.unlink(name);
    } catch {
      // already gone
    }
  });
}

/** Descriptors open in this process now. */
const openFds = () => readdirSync('/proc/self/fd').length;

// ------------------------------------------------------------------------------------ flush

// strace shows the flags each flush passes to msync: the only way to tell MS_ASYNC from MS_SYNC
// from outside, since on Linux both leave the file's content the same for every reader.
const straceWorks = have('strace') && spawnSync('strace', ['-f', '-e', 'trace=msync', '-o', '/dev/null', 'true'], { timeout: 20_000 }).status === 0;

test('flush({ async: true }) passes MS_ASYNC; flush() and async: false keep MS_SYNC', { skip: straceWorks ? false : 'strace is missing or cannot trace here' }, (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'flush.bin');
  const trace = join(dir, 'trace.txt');
  // Distinct lengths tell the calls apart in the trace: 5 pages, 3 bytes (the range from the start of
  // its page: the kernel rounds the length up), 5 pages, 2 pages.
  const program = `
    import { map, pageSize } from ${JSON.stringify(distUrl)};
    const m = map(process.argv[1], { access: 'write', size: 5 * pageSize });
    m.buffer.fill(1);
    m.flush({ async: true });
    m.flush({ offset: 1, length: 2, async: true });
    m.flush();
    m.flush({ offset: pageSize, length: 2 * pageSize, async: false });
    m.unmap();
  `;
  const r = spawnSync('strace', ['-f', '-e', 'trace=msync', '-o', trace, process.execPath, '--input-type=module', '-e', program, file], {
    encoding: 'utf8',
    timeout: 40_000,
  });
  assert.equal(r.status, 0, r.stderr);
  const calls = readFileSync(trace, 'utf8')
    .split('\n')
    .map((l) => /msync\(0x[0-9a-f]+, (\d+), (MS_[A-Z|]+)\) = 0/.exec(l))
    .filter((m) => m !== null)
    .map((m) => `${m[1]} ${m[2]}`);
  assert.deepEqual(calls, [`${5 * pageSize} MS_ASYNC`, '3 MS_ASYNC', `${5 * pageSize} MS_SYNC`, `${2 * pageSize} MS_SYNC`]);
  assert.equal(readFileSync(file)[3 * pageSize], 1);
});

test('flush({ async: true }): every range form, private and anonymous mappings, bad input, closed', async (t) => {
  const file = join(tempDir(t), 'f.bin');
  const m = map(file, { access: 'write', size: 3 * pageSize });
  m.buffer.write('async', 100);
  m.flush({ async: true });
  m.flush({ async: true, offset: 100, length: 5 });
  m.flush({ async: true, length: 0 });
  m.flush({ async: false });
  m.flush({ offset: 0, length: 1 }); // old calls unchanged
  m.flush(undefined);
  assert.equal(readFileSync(file, 'latin1').slice(100, 105), 'async'); // readers see writes either way
  for (const bad of [1, 'yes', null, {}]) throwsCode(() => m.flush({ async: bad }), ...TYPE);
  assert.throws(() => m.flush({ asinc: true }), (err) => err.code === 'ERR_INVALID_ARG_VALUE' && /did you mean 'async'/.test(err.message));
  throwsCode(() => m.flush(true), ...TYPE);
  throwsCode(() => m.flush({ async: true, offset: -1 }), ...RANGE);
  throwsCode(() => m.flush({ async: true, offset: 1, length: 3 * pageSize }), ...RANGE);
  // flushAsync already runs off the event loop's thread: it takes no async option.
  await assert.rejects(m.flushAsync({ async: true }), { code: 'ERR_INVALID_ARG_VALUE' });
  // Read once; a getter that unmaps makes the call ERR_MMAP_CLOSED, never an msync.
  let reads = 0;
  m.flush({ get async() { reads++; return true; } });
  assert.equal(reads, 1);
  throwsCode(() => m.flush({ get async() { m.unmap(); return true; } }), 'ERR_MMAP_CLOSED', 'MmapkitError');
  assert.equal(m.closed, true);
  throwsCode(() => m.flush({ async: true }), 'ERR_MMAP_CLOSED', 'MmapkitError');
  for (const other of [map(file), map(file, { access: 'copy' }), mapAnonymous(pageSize), mapAnonymous(pageSize, { shared: true })]) {
    other.flush({ async: true }); // nothing of a file to write back: a checked no-op
    other.unmap();
  }
});

// ------------------------------------------------------------------------------------ names

test('create({ size }): a unique generated name, exclusive, 0600', (t) => {
  const a = SharedMemory.create({ size: 4096 });
  unlinkAfter(t, a.name);
  const b = SharedMemory.create({ size: 5000 });
  unlinkAfter(t, b.name);
  const c = SharedMemory.create({ size: 100, mode: 0o640 });
  unlinkAfter(t, c.name);
  for (const s of [a, b, c]) assert.match(s.name, GENERATED);
  assert.equal(new Set([a.name, b.name, c.name]).size, 3);
  assert.deepEqual([a.size, b.size, c.size], [4096, 5000, 100]);
  assert.equal(statSync(`/dev/shm${a.name}`).mode & 0o777, 0o600);
  assert.equal(statSync(`/dev/shm${c.name}`).mode & 0o777, 0o640 & ~process.umask());
  // A name in the options object is an ordinary name.
  const given = shmName(t, 'named');
  const d = SharedMemory.create({ name: given, size: 10 });
  assert.equal(d.name, `/${given}`);
  throwsCode(() => SharedMemory.create({ name: given, size: 10 }), 'EEXIST', 'Error', { syscall: 'shm_open' });
  for (const s of [a, b, c, d]) s.close();
});

test('create without a name draws again when the generated name is taken', (t) => {
  // Someone made the name first (a collision, or a planted object): it must be left alone.
  const suffix = '00112233445566ff';
  const taken = SharedMemory.create(`/mmapkit-${suffix}`, 4096);
  unlinkAfter(t, taken.name);
  taken.buffer.write('theirs');
  const real = crypto.randomBytes;
  let draws = 0;
  crypto.randomBytes = (n, ...rest) => (++draws <= 2 ? Buffer.from(suffix, 'hex') : real(n, ...rest));
  syncBuiltinESMExports();
  let s;
  try {
    s = SharedMemory.create({ size: 4096 });
  } finally {
    crypto.randomBytes = real;
    syncBuiltinESMExports();
  }
  unlinkAfter(t, s.name);
  assert.equal(draws, 3, 'drew the taken name twice, then a new one');
  assert.match(s.name, GENERATED);
  assert.notEqual(s.name, taken.name);
  assert.equal(taken.buffer.toString('latin1', 0, 6), 'theirs');
  const again = SharedMemory.open(taken.name);
  assert.equal(again.buffer.toString('latin1', 0, 6), 'theirs');
  again.close();
  s.close();
  taken.close();
});

test('create without a name: bad input, refused before a name is drawn', () => {
  // Every refusal comes from checking the arguments, before any name is drawn (so nothing is created).
  const real = crypto.randomBytes;
  let draws = 0;
  crypto.randomBytes = (...args) => (draws++, real(...args));
  syncBuiltinESMExports();
  try {
    throwsCode(() => SharedMemory.create({}), ...TYPE); // no size
    throwsCode(() => SharedMemory.create({ size: '10' }), ...TYPE);
    throwsCode(() => SharedMemory.create({ size: 0 }), ...RANGE);
    // An undefined name is more often a missing value than a wish for a random one: still refused.
    throwsCode(() => SharedMemory.create(undefined, 10), ...TYPE);
    throwsCode(() => SharedMemory.create(undefined), ...TYPE);
    throwsCode(() => SharedMemory.create(), ...TYPE);
    throwsCode(() => SharedMemory.create({ sise: 10 }), ...VALUE);
    // An options object is the only argument, or it is taken as a (bad) name.
    throwsCode(() => SharedMemory.create({ size: 10 }, 10), ...TYPE);
    throwsCode(() => SharedMemory.create({ size: 10 }, undefined, { mode: 0o600 }), ...TYPE);
    throwsCode(() => SharedMemory.create({ size: 10, exclusive: false }), ...VALUE); // a new name is always new
    throwsCode(() => SharedMemory.create({ name: 'a/b', size: 10 }), ...VALUE);
    throwsCode(() => SharedMemory.create({ name: 5, size: 10 }), ...TYPE);
    for (const bad of [null, 5, [], true, Buffer.from('x')]) throwsCode(() => SharedMemory.create(bad), ...TYPE);
    throwsCode(() => SharedMemory.create({ size: 10, mode: 0o1000 }), ...RANGE);
  } finally {
    crypto.randomBytes = real;
    syncBuiltinESMExports();
  }
  assert.equal(draws, 0);
});

// ------------------------------------------------------------------------------------ handles

test('handle(): a plain object that survives JSON and postMessage, opened by a real child process', async (t) => {
  const shm = SharedMemory.create({ size: 3 * pageSize + 20 });
  unlinkAfter(t, shm.name);
  const h = shm.handle();
  assert.deepEqual(h, { kind: 'mmapkit.shm', name: shm.name, size: 3 * pageSize + 20 });
  assert.equal(Object.getPrototypeOf(h), Object.prototype);
  assert.deepEqual(JSON.parse(JSON.stringify(h)), h);
  assert.deepEqual(structuredClone(h), h);
  shm.buffer.write('from the parent', 3 * pageSize);
  // Another process: the handle as JSON on its command line.
  const child = startNode(
    [
      '--input-type=module',
      '-e',
      `import { SharedMemory } from ${JSON.stringify(distUrl)};
       const shm = SharedMemory.open(JSON.parse(process.argv[1]));
       const seen = shm.buffer.toString('latin1', ${3 * pageSize}, ${3 * pageSize + 15});
       shm.buffer.write('from the child', 0);
       console.log(JSON.stringify({ seen, size: shm.size, name: shm.name }));
       shm.close();`,
      JSON.stringify(h),
    ],
    'child opening a handle',
    { t, timeout: 30_000 },
  );
  const out = await child.report();
  assert.deepEqual(out, { seen: 'from the parent', size: 3 * pageSize + 20, name: shm.name });
  assert.equal(shm.buffer.toString('latin1', 0, 14), 'from the child');
  // A worker thread: the handle through postMessage (structured clone).
  const worker = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
     import(workerData.url).then(({ SharedMemory }) => parentPort.once('message', (h) => {
       const shm = SharedMemory.open(h, { access: 'read' });
       parentPort.postMessage(shm.buffer.toString('latin1', 0, 14));
       shm.close();
     }));`,
    { eval: true, workerData: { url: distUrl } },
  );
  t.after(() => worker.terminate());
  const reply = new Promise((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  worker.postMessage(h);
  assert.equal(await reply, 'from the child');
  shm.close();
});

test('open(handle) checks the size it says: a grown object opens, a shrunk one is refused without a leak', (t) => {
  const shm = SharedMemory.create({ size: 2 * pageSize });
  unlinkAfter(t, shm.name);
  const h = shm.handle();
  shm.resize(4 * pageSize);
  const grown = SharedMemory.open(h);
  assert.equal(grown.size, 4 * pageSize);
  grown.close();
  shm.resize(pageSize);
  const fds = openFds();
  assert.throws(
    () => SharedMemory.open(h),
    (err) => err.code === 'ERR_INVALID_ARG_VALUE' && err.message.includes(`has ${pageSize}`) && err.message.includes(h.name),
  );
  assert.equal(openFds(), fds, 'the descriptor of a refused object is closed');
  // The same checks as open(name): access, ownership options, a missing name.
  const ro = SharedMemory.open(shm.handle(), { access: 'read', owner: 'self' });
  assert.equal(ro.access, 'read');
  ro.close();
  shm.unlink();
  throwsCode(() => SharedMemory.open(h), 'ENOENT', 'Error', { syscall: 'shm_open', path: h.name });
  shm.close();
});

test('handles of the wrong shape, anonymous memory, closed memory', (t) => {
  const shm = SharedMemory.create({ size: 4096 });
  unlinkAfter(t, shm.name);
  const name = shm.name;
  const kind = 'mmapkit.shm';
  // Without a kind it is no handle at all.
  for (const bad of [null, 42, [], true, undefined, () => {}, {}, { name, size: 4096 }, Buffer.from('x')]) throwsCode(() => SharedMemory.open(bad), ...TYPE);
  throwsCode(() => SharedMemory.open({ kind: 'mmapkit.channel', name, size: 4096 }), ...VALUE);
  throwsCode(() => SharedMemory.open({ kind, name, size: 4096, fd: 3 }), ...VALUE); // unknown field
  throwsCode(() => SharedMemory.open({ kind, size: 4096 }), ...VALUE); // no name: anonymous memory has no handle
  throwsCode(() => SharedMemory.open({ kind, name: 'a/b', size: 4096 }), ...VALUE);
  throwsCode(() => SharedMemory.open({ kind, name: '', size: 4096 }), ...VALUE);
  throwsCode(() => SharedMemory.open({ kind, name: 7, size: 4096 }), ...TYPE);
  throwsCode(() => SharedMemory.open({ kind, name }), ...TYPE); // no size
  throwsCode(() => SharedMemory.open({ kind, name, size: '4096' }), ...TYPE);
  for (const size of [0, -1, 1.5, 2 ** 53]) throwsCode(() => SharedMemory.open({ kind, name, size }), ...RANGE);
  throwsCode(() => SharedMemory.open({ kind, name, size: 4096 }, { acces: 'read' }), ...VALUE);
  // Each field is read once.
  let reads = 0;
  const once = SharedMemory.open({ kind, get name() { reads++; return name; }, size: 4096 });
  assert.equal(reads, 1);
  once.close();
  // Anonymous memory has no name to open: handle() says how to share it instead.
  const anon = SharedMemory.anonymous(4096);
  assert.throws(() => anon.handle(), (err) => err.code === 'ERR_INVALID_STATE' && /childOptions\(\)/.test(err.message));
  anon.close();
  shm.close();
  throwsCode(() => shm.handle(), 'ERR_MMAP_CLOSED', 'MmapkitError');
});

// ------------------------------------------------------------------------------------ inspect

const NO_ADDRESS = /0x[0-9a-f]{6,}|\d{9,}n?|addr/i;

test('util.inspect(mapping): access, length, offset, path, state; never the address', (t) => {
  const file = join(tempDir(t), 'i.bin');
  writeFileSync(file, Buffer.alloc(3 * pageSize, 1));
  const m = map(file, { access: 'write', offset: pageSize + 10, length: 100 });
  const s = inspect(m);
  for (const part of ["Mapping {", "access: 'write'", 'shared: true', 'length: 100', `offset: ${pageSize + 10}`, `path: '${file}'`, "state: 'mapped'"]) {
    assert.ok(s.includes(part), `${s} has ${part}`);
  }
  assert.doesNotMatch(s, NO_ADDRESS);
  m.protect('read');
  assert.match(inspect(m), /protection: 'read'/);
  m.unmap();
  assert.match(inspect(m), /state: 'unmapped'/);
  const anon = mapAnonymous(pageSize);
  assert.match(inspect(anon, { breakLength: Infinity }), /^Mapping \{ anonymous: true, shared: false, length: 4096, offset: 0, state: 'mapped' \}$/);
  assert.equal(inspect([anon], { depth: 0 }), '[ [Mapping] ]');
  assert.match(inspect(anon, { colors: true }), /\x1b\[/); // the caller's options are honoured
  anon.unmap();
  // Never throws, even called on the prototype (no private fields there).
  assert.match(Object.getPrototypeOf(m)[inspect.custom](2, { stylize: (x) => x }, inspect), /^Mapping \{ .*state: 'unknown'/);
});

test('util.inspect of a faulted mapping (file truncated under it) says faulted', (t) => {
  const file = join(tempDir(t), 'trunc.bin');
  writeFileSync(file, Buffer.alloc(4 * pageSize, 7));
  const r = runNode(
    `import { map, pageSize } from ${JSON.stringify(distUrl)};
     import { inspect } from 'node:util';
     import { truncateSync } from 'node:fs';
     const m = map(process.argv[1]);
     truncateSync(process.argv[1], pageSize);
     m.buffer[2 * pageSize]; // a bus error, repaired by the guard
     console.log(inspect(m, { breakLength: Infinity }));`,
    { args: [file] },
  );
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^Mapping \{ access: 'read', shared: false, length: 16384, offset: 0, path: '.*trunc\.bin', state: 'faulted' \}$/m);
});

test('util.inspect(shm): name or anonymous, size, access, closed', (t) => {
  const shm = SharedMemory.create({ size: 5000 });
  unlinkAfter(t, shm.name);
  const s = inspect(shm, { breakLength: Infinity });
  assert.match(s, /^SharedMemory \{ name: '\/mmapkit-[0-9a-f]{16}', size: 5000, access: 'write', fd: \d+, closed: false \}$/);
  const ro = SharedMemory.open(shm.handle(), { access: 'read' });
  assert.match(inspect(ro), /access: 'read'/);
  ro.close();
  shm.close();
  assert.equal(inspect(shm), `SharedMemory { name: '${shm.name}', access: 'write', closed: true }`);
  const anon = SharedMemory.anonymous(100);
  assert.match(inspect(anon), /^SharedMemory \{ anonymous: true, size: 100, access: 'write', fd: \d+, closed: false \}$/);
  anon.close();
  assert.match(Object.getPrototypeOf(anon)[inspect.custom](2, { stylize: (x) => x }, inspect), /^SharedMemory \{/);
});

test('util.inspect(channel), topic and subscription: their fields, cheap, never throwing on closed or lost memory', (t) => {
  const shm = SharedMemory.create({ size: Channel.byteLength({ maxProducers: 2 }) });
  unlinkAfter(t, shm.name);
  const ch = Channel.create(shm, { maxProducers: 2, maxMessageSize: 100, wait: 'spin' });
  const fresh = inspect(ch, { breakLength: Infinity });
  for (const part of ["Channel {", "role: 'unattached'", 'lanes: 2', `capacity: ${ch.capacity}`, 'maxMessageSize: 100', "wait: 'spin'", 'closed: false', 'ended: false']) {
    assert.ok(fresh.includes(part), `${fresh} has ${part}`);
  }
  assert.doesNotMatch(fresh, NO_ADDRESS);
  ch.send('x');
  assert.match(inspect(ch), /role: 'producer',\s+lane: 0,/);
  ch.receive();
  assert.match(inspect(ch), /role: 'producer\+consumer'/);
  // The memory under the handle unmapped, then the handle closed: inspect still answers.
  shm.close();
  assert.match(inspect(ch), /closed: false/);
  ch.close();
  assert.match(inspect(ch), /closed: true/);
  assert.match(Object.getPrototypeOf(ch)[inspect.custom](2, { stylize: (x) => x }, inspect), /^Channel \{ state: 'unknown' \}$/);

  const topicName = shmName(t, 'topic');
  const topic = Topic.create({ name: topicName }, { capacity: 8192, maxMessageSize: 64, policy: 'overwrite' });
  const sub = topic.subscribe();
  topic.publish('a');
  const ts = inspect(topic, { breakLength: Infinity });
  assert.equal(ts, "Topic { capacity: 8192, maxMessageSize: 64, policy: 'overwrite', wait: 'block', publisher: true, subscriptions: 1, closed: false }");
  assert.equal(inspect(sub, { breakLength: Infinity }), "Subscription { sequence: 0, missed: 0, wait: 'block', closed: false, ended: false }");
  sub.receive();
  assert.match(inspect(sub), /sequence: 1/);
  topic.close();
  assert.match(inspect(topic), /closed: true/);
  assert.match(inspect(sub), /closed: true/);
});
