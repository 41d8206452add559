// `mmapkit send NAME` and `mmapkit recv NAME`, run as real processes (node dist/cli/main.js): the bytes
// that come out (sha256 of hundreds of MiB of seeded pseudo-random data, binary data, an empty input),
// either end starting first, the end of the stream, a closed stdout, killed parties, names left behind
// by crashed runs, timeouts, usage errors. Needs `npx tsc -p .` (dist/cli/). Every wait has a deadline.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { once } from 'node:events';
import { closeSync, existsSync, openSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Channel } from '../dist/index.js';
import { distUrl, runNode, runTimed, startNode, tempDir, timedTests, until, shmName } from './helpers.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(ROOT, 'dist', 'cli', 'main.js');
const MiB = 1024 * 1024;
/** How long one process may run before it is killed (the test then fails). */
const PROCESS_TIMEOUT = 60_000;

const test = timedTests(120_000);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A fresh shared memory name for this test, removed from /dev/shm when it ends. */
const channelName = (t, tag) => shmName(t, `sr-${tag}`);

/**
 * Start `node dist/cli/main.js args...` with the tests' child harness (startProc): stdin/stdout as for
 * spawn ('pipe', 'ignore', a descriptor; stdout is read as a stream by the test), stderr collected,
 * killed (SIGKILL) after `timeout` ms and when the test ends.
 */
const start = (t, args, { stdin = 'pipe', stdout = 'pipe', timeout = PROCESS_TIMEOUT } = {}) =>
  startNode([CLI, ...args], `mmapkit ${args.join(' ')}`, { t, timeout, stdin, stdout });

/** Run the CLI to its end (for commands that do not wait for another process). */
function cli(args, { input, timeout = 30_000 } = {}) {
  const r = spawnSync(process.execPath, [CLI, ...args], { input, encoding: 'utf8', timeout, killSignal: 'SIGKILL' });
  if (r.error) throw r.error;
  return r;
}

/** Assert how a started process ended, showing its stderr when it is not as expected. */
function ended(result, code, what) {
  assert.equal(result.timedOut, false, `${what} was killed after ${PROCESS_TIMEOUT} ms\nstderr:\n${result.stderr}`);
  assert.equal(result.status, code, `${what}: exit ${result.status} (signal ${result.signal}), expected ${code}\nstderr:\n${result.stderr}`);
}

/**
 * What Channel.inspect() finds at the name now (a read-only look: it attaches to nothing), or
 * undefined while there is no sized object there (shm_open, then ftruncate).
 */
function inspectName(name) {
  if ((statSync(`/dev/shm/${name}`, { throwIfNoEntry: false })?.size ?? 0) === 0) return undefined;
  try {
    return Channel.inspect(`/dev/shm/${name}`);
  } catch (error) {
    if (error.code === 'ENOENT' || error.code === 'ERR_MMAP_EMPTY_FILE') return undefined; // removed, or not sized yet
    throw error;
  }
}

/** Seeded pseudo-random bytes: the AES-128-CTR key stream of a key made from `seed`, 1 MiB at a time. */
function* seededChunks(seed, total, chunk = MiB) {
  const key = createHash('sha256').update(`send-recv-${seed}`).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  const zeros = Buffer.alloc(chunk);
  for (let done = 0; done < total; ) {
    const n = Math.min(chunk, total - done);
    yield cipher.update(zeros.subarray(0, n));
    done += n;
  }
}

/** Write seeded bytes into a writable stream (with backpressure) and end it; resolves their sha256. */
async function feed(writable, seed, total) {
  const hash = createHash('sha256');
  for (const chunk of seededChunks(seed, total)) {
    hash.update(chunk);
    if (!writable.write(chunk)) await once(writable, 'drain');
  }
  writable.end();
  return hash.digest('hex');
}

/** Write seeded bytes into a file; returns their sha256. */
function seededFile(path, seed, total) {
  const hash = createHash('sha256');
  const fd = openSync(path, 'w');
  try {
    for (const chunk of seededChunks(seed, total)) {
      hash.update(chunk);
      for (let off = 0; off < chunk.length; ) off += writeSync(fd, chunk, off);
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

/** Hash a readable stream as it flows; resolves { sha256, bytes } at its end. */
function digest(readable) {
  const hash = createHash('sha256');
  let bytes = 0;
  readable.on('data', (chunk) => {
    hash.update(chunk);
    bytes += chunk.length;
  });
  return once(readable, 'end').then(() => ({ sha256: hash.digest('hex'), bytes }));
}

/** Everything a readable stream gives, as one Buffer (for small outputs). */
function collect(readable) {
  const chunks = [];
  readable.on('data', (chunk) => chunks.push(chunk));
  return once(readable, 'end').then(() => Buffer.concat(chunks));
}

// ---------------------------------------------------------------------------------------------
// The bytes

test('256 MiB of seeded random bytes, receiver started first: identical at the other end (sha256), name removed', async (t) => {
  const name = channelName(t, 'big1');
  const size = 256 * MiB;
  const recv = start(t, ['recv', name], { stdin: 'ignore' });
  const out = digest(recv.child.stdout);
  // The receiver has created the channel and waits for a sender.
  await until(() => existsSync(`/dev/shm/${name}`), [], 'the receiver to create the channel', 10_000);
  await sleep(100);
  const send = start(t, ['send', name]);
  const inSha = await feed(send.child.stdin, 1, size);
  const [s, r, got] = await Promise.all([send.done, recv.done, out]);
  ended(s, 0, 'send');
  ended(r, 0, 'recv');
  assert.equal(s.stderr, '');
  assert.equal(r.stderr, '');
  assert.equal(got.bytes, size);
  assert.equal(got.sha256, inSha, 'the bytes differ');
  assert.equal(existsSync(`/dev/shm/${name}`), false, 'the name is removed');
});

test('256 MiB from a file, sender started first (fills the channel and waits): identical at the other end', async (t) => {
  const dir = tempDir(t);
  const name = channelName(t, 'big2');
  const size = 256 * MiB + 12_345; // not a multiple of the message size
  const file = join(dir, 'input.bin');
  const inSha = seededFile(file, 2, size);
  const fd = openSync(file, 'r');
  t.after(() => closeSync(fd));
  const send = start(t, ['send', name], { stdin: fd });
  await until(() => existsSync(`/dev/shm/${name}`), [], 'the sender to create the channel', 10_000);
  // Let it fill the channel (64 messages of 64 KiB) and wait for room: nothing may be lost meanwhile.
  await sleep(300);
  assert.equal(send.child.exitCode, null, 'the sender waits for a receiver');
  const recv = start(t, ['recv', name], { stdin: 'ignore' });
  const [s, r, got] = await Promise.all([send.done, recv.done, digest(recv.child.stdout)]);
  ended(s, 0, 'send');
  ended(r, 0, 'recv');
  assert.equal(got.bytes, size);
  assert.equal(got.sha256, inSha, 'the bytes differ');
  assert.equal(existsSync(`/dev/shm/${name}`), false, 'the name is removed');
});

test('binary bytes (all 256 values, runs of zeros) written in pieces with pauses, odd message size, tiny channel', async (t) => {
  const name = channelName(t, 'bin');
  const data = Buffer.concat([
    Buffer.alloc(5000), // zeros first
    Buffer.from(Array.from({ length: 256 * 40 }, (_, i) => i % 256)),
    Buffer.from([0, 0, 0, 0xff, 0, 0x0a, 0x0d, 0x1a, 0x04, 0x00]),
    Buffer.alloc(70_000),
    ...seededChunks(3, 100_003),
    Buffer.alloc(1), // a zero last
  ]);
  // A channel for at least 2 messages of 1000 bytes (not a multiple of 8): many messages, a full
  // channel at once.
  const recv = start(t, ['recv', '--capacity', '2', '--message-size', '1000', name], { stdin: 'ignore' });
  const out = collect(recv.child.stdout);
  // Created, sized (shm_open, then ftruncate), then initialized: wait for the channel.
  await until(() => inspectName(name)?.state === 'channel', [], 'the receiver to create the channel', 10_000);
  // The channel has the limits these options give: each lane holds at least 2 messages of 1000 bytes
  // (a lane of 4096 bytes, the smallest, holds 3).
  const { limits } = inspectName(name);
  assert.equal(limits.maxMessageSize, 1000);
  assert.equal(limits.laneSize, 4096);
  assert.equal(limits.capacity, 3);
  const send = start(t, ['send', name]);
  // Pieces of odd sizes, with pauses: the sender sends what each read returns.
  for (let at = 0, i = 0; at < data.length; i++) {
    const n = [1, 999, 1000, 1001, 4096, 77_777][i % 6];
    send.child.stdin.write(data.subarray(at, at + n));
    at += n;
    if (i % 7 === 0) await sleep(5);
  }
  send.child.stdin.end();
  const [s, r, got] = await Promise.all([send.done, recv.done, out]);
  ended(s, 0, 'send');
  ended(r, 0, 'recv');
  assert.equal(got.length, data.length);
  assert.ok(got.equals(data), `the bytes differ at ${got.findIndex((b, i) => b !== data[i])}`);
});

test('an empty input: the receiver writes nothing and exits 0, whichever end starts first', async (t) => {
  for (const receiverFirst of [true, false]) {
    const name = channelName(t, `empty-${receiverFirst}`);
    let recv;
    let send;
    if (receiverFirst) {
      recv = start(t, ['recv', name], { stdin: 'ignore' });
      await until(() => existsSync(`/dev/shm/${name}`), [], 'the receiver to create the channel', 10_000);
      send = start(t, ['send', name], { stdin: 'ignore' }); // /dev/null
    } else {
      send = start(t, ['send', name], { stdin: 'ignore' });
      await until(() => existsSync(`/dev/shm/${name}`), [], 'the sender to create the channel', 10_000);
      await sleep(100);
      // The input has ended, but the sender waits for a receiver to have the stream.
      assert.equal(send.child.exitCode, null, 'the sender waits for its receiver');
      recv = start(t, ['recv', name], { stdin: 'ignore' });
    }
    const [s, r, got] = await Promise.all([send.done, recv.done, collect(recv.child.stdout)]);
    ended(s, 0, `send (receiver first: ${receiverFirst})`);
    ended(r, 0, `recv (receiver first: ${receiverFirst})`);
    assert.equal(got.length, 0);
    assert.equal(existsSync(`/dev/shm/${name}`), false);
  }
});

test('both ends started at the same moment, ten times: one creates, the other opens, every byte arrives', async (t) => {
  const data = Buffer.concat([...seededChunks(4, 3 * MiB + 5)]);
  for (let i = 0; i < 10; i++) {
    const name = channelName(t, `race${i}`);
    const first = i % 2 === 0 ? 'recv' : 'send';
    const a = first === 'recv' ? start(t, ['recv', name], { stdin: 'ignore' }) : start(t, ['send', name]);
    const b = first === 'recv' ? start(t, ['send', name]) : start(t, ['recv', name], { stdin: 'ignore' });
    const [send, recv] = first === 'recv' ? [b, a] : [a, b];
    send.child.stdin.end(data);
    const [s, r, got] = await Promise.all([send.done, recv.done, collect(recv.child.stdout)]);
    ended(s, 0, `send, round ${i}`);
    ended(r, 0, `recv, round ${i}`);
    assert.ok(got.equals(data), `round ${i}: ${got.length} bytes, not the ${data.length} sent`);
  }
});

test('a second sender waits its turn: two senders, then two receivers, each receiver gets one whole input', async (t) => {
  const name = channelName(t, 'turns');
  const a = Buffer.concat([Buffer.from('first input\n'), ...seededChunks(5, 6 * MiB)]);
  const b = Buffer.concat([Buffer.from('second input\n'), ...seededChunks(6, 6 * MiB)]);
  const sendA = start(t, ['send', name]);
  sendA.child.stdin.end(a);
  await until(() => existsSync(`/dev/shm/${name}`), [], 'the first sender to create the channel', 10_000);
  const sendB = start(t, ['send', name]);
  sendB.child.stdin.end(b);
  await sleep(300);
  assert.equal(sendB.child.exitCode, null, 'the second sender waits');
  const recv1 = start(t, ['recv', name], { stdin: 'ignore' });
  const [r1, got1, sA] = await Promise.all([recv1.done, collect(recv1.child.stdout), sendA.done]);
  ended(r1, 0, 'first recv');
  ended(sA, 0, 'first send');
  const recv2 = start(t, ['recv', name], { stdin: 'ignore' });
  const [r2, got2, sB] = await Promise.all([recv2.done, collect(recv2.child.stdout), sendB.done]);
  ended(r2, 0, 'second recv');
  ended(sB, 0, 'second send');
  assert.ok(got1.equals(a), `the first receiver got ${got1.subarray(0, 13).toString('latin1')}... (${got1.length} bytes)`);
  assert.ok(got2.equals(b), `the second receiver got ${got2.subarray(0, 13).toString('latin1')}... (${got2.length} bytes)`);
  assert.equal(existsSync(`/dev/shm/${name}`), false);
});

test('two or three senders and as many receivers started at the same moment: whole streams, one to each receiver', async (t) => {
  // Ends of one role attach at the same instant (one steps back), and an end may judge a channel
  // that a whole pair has met and finished on by the time it attaches (it steps back too).
  for (let round = 0; round < 8; round++) {
    const pairs = round < 4 ? 2 : 3;
    const name = channelName(t, `many${round}`);
    const inputs = Array.from({ length: pairs }, (_, i) => Buffer.concat([Buffer.from(`input ${i}\n`), ...seededChunks(10 + round * 3 + i, (round < 4 ? 2 * MiB : 200_000) + i)]));
    const receivers = [];
    const senders = [];
    for (let i = 0; i < pairs; i++) {
      receivers.push(start(t, ['recv', name], { stdin: 'ignore' }));
      senders.push(start(t, ['send', name]));
    }
    const outputs = receivers.map((r) => collect(r.child.stdout));
    senders.forEach((s, i) => s.child.stdin.end(inputs[i]));
    const results = await Promise.all([...receivers, ...senders].map((e) => e.done));
    results.forEach((r, i) => ended(r, 0, `${i < pairs ? 'recv' : 'send'} ${i % pairs}, round ${round}`));
    const got = await Promise.all(outputs);
    const which = got.map((g) => inputs.findIndex((input) => g.equals(input)));
    assert.ok(!which.includes(-1), `round ${round}: a receiver got ${got.map((g) => `${g.length} bytes`).join(', ')}, not one whole input each`);
    assert.equal(new Set(which).size, pairs, `round ${round}: receivers got inputs ${which.join(', ')}`);
    assert.equal(existsSync(`/dev/shm/${name}`), false);
  }
});

// ---------------------------------------------------------------------------------------------
// Ends that stop early

test('a closed stdout (recv | head) ends the receiver quietly with 141; the sender then fails', async (t) => {
  const name = channelName(t, 'epipe');
  const zero = openSync('/dev/zero', 'r'); // an endless input
  t.after(() => closeSync(zero));
  const send = start(t, ['send', name], { stdin: zero, stdout: 'ignore' });
  const script = '"$0" "$1" recv "$2" | head -c 100000 > /dev/null; exit "${PIPESTATUS[0]}"';
  const r = spawnSync('bash', ['-c', script, process.execPath, CLI, name], { encoding: 'utf8', timeout: 30_000, killSignal: 'SIGKILL' });
  assert.equal(r.status, 141, `recv exit ${r.status} (signal ${r.signal})\n${r.stderr}`);
  assert.equal(r.stderr, '', 'quietly');
  const s = await send.done;
  ended(s, 1, 'send');
  assert.match(s.stderr, new RegExp(`^mmapkit send: the receiver of '${name}' has gone before the end of the input\\n$`));
  assert.equal(existsSync(`/dev/shm/${name}`), false);
});

test('a sender killed in the middle: the receiver fails (exit 1) after writing what it got, and the name is gone', async (t) => {
  const name = channelName(t, 'killsend');
  const zero = openSync('/dev/zero', 'r');
  t.after(() => closeSync(zero));
  const send = start(t, ['send', name], { stdin: zero, stdout: 'ignore' });
  const recv = start(t, ['recv', name], { stdin: 'ignore' });
  let bytes = 0;
  recv.child.stdout.on('data', (chunk) => (bytes += chunk.length));
  await until(() => bytes > 8 * MiB, [], 'some data to arrive', 20_000);
  send.child.kill('SIGKILL');
  const r = await recv.done;
  ended(r, 1, 'recv');
  assert.match(r.stderr, new RegExp(`^mmapkit recv: the sender of '${name}' stopped before the end of its input \\(\\d+ bytes received\\)\\n$`));
  assert.equal(existsSync(`/dev/shm/${name}`), false);
});

test('a receiver that attached and died before reading: the sender fails and removes the name; the next pair works', async (t) => {
  const name = channelName(t, 'deadrecv');
  const zero = openSync('/dev/zero', 'r');
  t.after(() => closeSync(zero));
  const send = start(t, ['send', name], { stdin: zero, stdout: 'ignore' });
  await until(() => (statSync(`/dev/shm/${name}`, { throwIfNoEntry: false })?.size ?? 0) > 0, [], 'the sender to create the channel', 10_000);
  await sleep(100); // and to fill it
  // A consumer that attaches and exits without closing: its entry keeps the pid of a dead process.
  const code = `import { Channel } from ${JSON.stringify(distUrl)};
    const c = Channel.open({ name: ${JSON.stringify(name)} });
    c.attach('consumer');
    process.exit(0);`;
  const r = runNode(code, { timeout: 20_000 });
  assert.equal(r.status, 0, r.stderr);
  const s = await send.done;
  ended(s, 1, 'send');
  assert.match(s.stderr, new RegExp(`^mmapkit send: the receiver of '${name}' has gone before the end of the input\\n$`));
  assert.equal(existsSync(`/dev/shm/${name}`), false);
  await pairWorks(t, name, { receiverFirst: true });
});

test('a consumer that attaches but never takes the first message is no receiver: the sender keeps to --timeout', async (t) => {
  const name = channelName(t, 'idle');
  const send = start(t, ['send', '--timeout', '1500', name]);
  send.child.stdin.end('for a real receiver\n');
  await until(() => inspectName(name)?.producers?.length === 1, [], 'the sender to attach', 10_000);
  // A process that attaches as a consumer and then does nothing (as an end that is about to step
  // back looks): the sender must not exit 0 as if its input had been received.
  const code = `import { Channel } from ${JSON.stringify(distUrl)};
    const c = Channel.open({ name: ${JSON.stringify(name)} });
    c.attach('consumer');
    process.stdout.write('attached\\n');
    setTimeout(() => {}, 30_000);`;
  const idle = startNode(['--input-type=module', '-e', code], 'an idle consumer', { t });
  const s = await send.done;
  ended(s, 1, 'send');
  assert.equal(s.stderr, `mmapkit send: no receiver for '${name}' within 1500 ms\n`);
  idle.kill();
  assert.equal((await idle.done).stdout, 'attached\n', 'the consumer had attached');
  assert.equal(existsSync(`/dev/shm/${name}`), false);
});

test('--timeout: a receiver with no sender and a sender with no receiver give up (exit 1) and remove the name', async (t) => {
  const name = channelName(t, 'timeout');
  const t0 = Date.now();
  let r = await start(t, ['recv', '--timeout', '300', name], { stdin: 'ignore' }).done;
  ended(r, 1, 'recv');
  assert.equal(r.stderr, `mmapkit recv: no sender for '${name}' within 300 ms\n`);
  assert.equal(existsSync(`/dev/shm/${name}`), false);
  const s = start(t, ['send', '-t', '300', name]);
  s.child.stdin.end('hello\n');
  r = await s.done;
  ended(r, 1, 'send');
  assert.equal(r.stderr, `mmapkit send: no receiver for '${name}' within 300 ms\n`);
  assert.equal(existsSync(`/dev/shm/${name}`), false);
  assert.ok(Date.now() - t0 < 20_000);
  // --timeout 0 with the other end already there: no wait needed, it works.
  const recv = start(t, ['recv', name], { stdin: 'ignore' });
  await until(() => existsSync(`/dev/shm/${name}`), [], 'the receiver to create the channel', 10_000);
  const send = start(t, ['send', '--timeout=0', name]);
  send.child.stdin.end('quick\n');
  const [sr, rr, got] = await Promise.all([send.done, recv.done, collect(recv.child.stdout)]);
  ended(sr, 0, 'send --timeout=0');
  ended(rr, 0, 'recv');
  assert.equal(got.toString(), 'quick\n');
});

// ---------------------------------------------------------------------------------------------
// Names left behind

/** Run a pair on `name` with a small input (receiver first or second); assert it works. */
async function pairWorks(t, name, { receiverFirst = true, input = 'fresh data\n' } = {}) {
  let recv;
  let send;
  if (receiverFirst) {
    recv = start(t, ['recv', '--timeout', '20000', name], { stdin: 'ignore' });
    await sleep(200);
    send = start(t, ['send', '--timeout', '20000', name]);
  } else {
    send = start(t, ['send', '--timeout', '20000', name]);
    await sleep(200);
    recv = start(t, ['recv', '--timeout', '20000', name], { stdin: 'ignore' });
  }
  send.child.stdin.end(input);
  const [s, r, got] = await Promise.all([send.done, recv.done, collect(recv.child.stdout)]);
  ended(s, 0, 'send');
  ended(r, 0, 'recv');
  assert.equal(got.toString('latin1'), input);
  assert.equal(existsSync(`/dev/shm/${name}`), false);
}

test('names left by killed runs are taken over: a receiver killed waiting, a sender killed with data queued', async (t) => {
  // A receiver killed while it waits for a sender.
  const name1 = channelName(t, 'stale-recv');
  const recv = start(t, ['recv', name1], { stdin: 'ignore' });
  await until(() => existsSync(`/dev/shm/${name1}`), [], 'the receiver to create the channel', 10_000);
  recv.child.kill('SIGKILL');
  await recv.done;
  assert.equal(existsSync(`/dev/shm/${name1}`), true, 'left behind');
  await pairWorks(t, name1, { receiverFirst: false });

  // A sender killed with a full channel and no receiver: the next receiver must not get its data.
  const name2 = channelName(t, 'stale-send');
  const zero = openSync('/dev/zero', 'r');
  t.after(() => closeSync(zero));
  const send = start(t, ['send', name2], { stdin: zero, stdout: 'ignore' });
  await until(() => existsSync(`/dev/shm/${name2}`), [], 'the sender to create the channel', 10_000);
  await sleep(200);
  send.child.kill('SIGKILL');
  await send.done;
  assert.equal(existsSync(`/dev/shm/${name2}`), true, 'left behind');
  await pairWorks(t, name2, { receiverFirst: true });
});

test('a name removed while an end waits: a receiver meets its sender under the name again; a sender fails at once', async (t) => {
  // The receiver's channel loses its name (rm, or a take-over that raced with another end) before
  // any sender came: no sender can find it, so the receiver starts again and meets the next sender.
  const name = channelName(t, 'lost-recv');
  const recv = start(t, ['recv', '--timeout', '20000', name], { stdin: 'ignore' });
  await until(() => inspectName(name)?.consumers?.length === 1, [], 'the receiver to attach', 10_000);
  const first = statSync(`/dev/shm/${name}`).ino;
  rmSync(`/dev/shm/${name}`);
  await until(() => (statSync(`/dev/shm/${name}`, { throwIfNoEntry: false })?.ino ?? first) !== first, [], 'the receiver to make a new channel', 10_000);
  const send = start(t, ['send', '--timeout', '20000', name]);
  send.child.stdin.end('found again\n');
  const [s, r, got] = await Promise.all([send.done, recv.done, collect(recv.child.stdout)]);
  ended(s, 0, 'send');
  ended(r, 0, 'recv');
  assert.equal(got.toString(), 'found again\n');
  assert.equal(existsSync(`/dev/shm/${name}`), false);

  // A sender has its input in the channel already: it cannot start again, it says why.
  const name2 = channelName(t, 'lost-send');
  const lone = start(t, ['send', name2]);
  lone.child.stdin.end('for nobody\n');
  await until(() => inspectName(name2)?.producers?.length === 1, [], 'the sender to attach', 10_000);
  rmSync(`/dev/shm/${name2}`);
  const l = await lone.done;
  ended(l, 1, 'send');
  assert.equal(l.stderr, `mmapkit send: '${name2}' was removed or replaced before a receiver came (by rm, or by another send or recv): no receiver can find this sender's channel\n`);
});

test('a corrupt channel, or one whose creator died before finishing it, is replaced; a foreign object is refused', async (t) => {
  // The channel magic and this layout version, with a header that makes no sense (a lane of 3 bytes).
  const corrupt = channelName(t, 'corrupt');
  const header = Buffer.alloc(8192);
  header.writeUInt32LE(0x48434b4d, 0);
  header.writeUInt16LE(3, 4);
  header.writeUInt16LE(128, 6);
  header.writeUInt32LE(8192, 8);
  header.writeUInt32LE(3, 16);
  writeFileSync(`/dev/shm/${corrupt}`, header, { mode: 0o600 }); // ours alone: send/recv refuse any other mode (73)
  assert.equal(Channel.inspect(`/dev/shm/${corrupt}`).state, 'corrupt');
  await pairWorks(t, corrupt, { receiverFirst: true });

  // The header of this layout version without the magic, old: a creator that died writing it.
  const partial = channelName(t, 'partial');
  const half = Buffer.from(header);
  half.writeUInt32LE(0, 0);
  writeFileSync(`/dev/shm/${partial}`, half, { mode: 0o600 });
  const long = new Date(Date.now() - 60_000);
  utimesSync(`/dev/shm/${partial}`, long, long);
  await pairWorks(t, partial, { receiverFirst: true });

  // All zeros, last changed a minute ago: a creator that died before writing the header.
  const abandoned = channelName(t, 'abandoned');
  writeFileSync(`/dev/shm/${abandoned}`, Buffer.alloc(8192), { mode: 0o600 });
  const past = new Date(Date.now() - 60_000);
  utimesSync(`/dev/shm/${abandoned}`, past, past);
  await pairWorks(t, abandoned, { receiverFirst: false });

  // Something else under the name: refused, left alone.
  const foreign = channelName(t, 'foreign');
  const bytes = Buffer.concat([Buffer.from('not a channel at all'), Buffer.alloc(5000, 7)]);
  writeFileSync(`/dev/shm/${foreign}`, bytes, { mode: 0o600 });
  for (const command of ['send', 'recv']) {
    const r = cli([command, '--timeout', '5000', foreign], { input: 'x' });
    assert.equal(r.status, 1, r.stderr);
    assert.equal(
      r.stderr,
      `mmapkit ${command}: cannot use '${foreign}': /dev/shm/${foreign} exists and is not a channel of mmapkit send/recv (remove it, or choose another NAME)\n`,
    );
  }
  assert.ok(readFileSync(`/dev/shm/${foreign}`).equals(bytes), 'left as it was');

  // A channel of another layout version (2: mmapkit before lanes): refused too, and left alone.
  const other = channelName(t, 'version');
  const v2 = Buffer.from(header);
  v2.writeUInt16LE(2, 4);
  v2.writeUInt16LE(64, 6);
  writeFileSync(`/dev/shm/${other}`, v2, { mode: 0o600 });
  for (const command of ['send', 'recv']) {
    const r = cli([command, '--timeout', '5000', other], { input: 'x' });
    assert.equal(r.status, 1, r.stderr);
    assert.equal(r.stderr, `mmapkit ${command}: cannot use channel '${other}': it was made by another version of mmapkit (channel layout version 2)\n`);
  }
  assert.ok(readFileSync(`/dev/shm/${other}`).equals(v2), 'left as it was');
});

test('a name whose creator seems to be still making it: --timeout holds, without spinning; a time set in the future is not waited for', async (t) => {
  // Empty (shm_open done, ftruncate not yet), or sized without the magic (the header not written
  // yet), and just changed: an end waits for its creator, then gives up at its deadline (plus a
  // short grace for a creator caught half-way). Its processor time shows that it slept meanwhile.
  for (const [tag, bytes] of [['empty', Buffer.alloc(0)], ['zeros', Buffer.alloc(8192)]]) {
    const name = channelName(t, `young-${tag}`);
    const path = `/dev/shm/${name}`;
    writeFileSync(path, bytes, { mode: 0o600 });
    // Keep it young for as long as the end waits: a creator that is slow, not dead.
    const fresh = setInterval(() => {
      const now = new Date();
      if (existsSync(path)) utimesSync(path, now, now);
    }, 200);
    t.after(() => clearInterval(fresh));
    for (const command of ['send', 'recv']) {
      // Started, not run: the timer above must go on meanwhile (spawnSync would block it).
      const r = await runTimed([process.execPath, CLI, command, '--timeout', '1500', name], `${command} (${tag})`, { t, timeout: 30_000, stdout: 'ignore' });
      assert.equal(r.status, 1, `${command} (${tag}): exit ${r.status} (signal ${r.signal})\n${r.stderr}`);
      assert.equal(r.stderr, `mmapkit ${command}: '${name}' is still being made by another send or recv (waited 1500 ms)`);
      assert.ok(r.wallMs >= 1500 && r.wallMs < 15_000, `${command} (${tag}) gave up after ${r.wallMs} ms`);
      assert.ok(r.cpuS < 1.2, `${command} (${tag}) used ${r.cpuS} s of processor time in ${r.wallMs} ms: it did not sleep between looks`);
      assert.ok(existsSync(path), 'not ours to remove: its creator may still finish it');
    }
    clearInterval(fresh);
  }

  // The same, with its time of last change set an hour ahead: no creation is under way, the name is
  // taken for abandoned and replaced (before, this made an end wait for ever, deadline or not).
  for (const [tag, bytes] of [['empty', Buffer.alloc(0)], ['zeros', Buffer.alloc(8192)]]) {
    const name = channelName(t, `future-${tag}`);
    writeFileSync(`/dev/shm/${name}`, bytes, { mode: 0o600 });
    const ahead = new Date(Date.now() + 3_600_000);
    utimesSync(`/dev/shm/${name}`, ahead, ahead);
    const t0 = Date.now();
    const r = cli(['recv', '--timeout', '300', name]);
    assert.equal(r.status, 1, r.stderr);
    assert.equal(r.stderr, `mmapkit recv: no sender for '${name}' within 300 ms\n`);
    assert.ok(Date.now() - t0 < 15_000);
    assert.equal(existsSync(`/dev/shm/${name}`), false, 'replaced, then removed by the receiver that gave up');
    await pairWorks(t, name, { receiverFirst: tag === 'empty' });
  }
});

// ---------------------------------------------------------------------------------------------
// Usage

test('usage errors exit 2 with one clear line and a pointer to the help', () => {
  const long = 'x'.repeat(256);
  const cases = [
    [['send'], "'send' takes 1 argument(s), got 0"],
    [['recv'], "'recv' takes 1 argument(s), got 0"],
    [['send', 'a', 'b'], "'send' takes 1 argument(s), got 2: unexpected 'b'"],
    [['send', 'a/b'], "NAME must not contain a slash (other than a leading one), got 'a/b'"],
    [['recv', ''], "NAME must not be empty, got ''"],
    [['recv', '/'], "NAME must not be empty, got '/'"],
    [['send', '..'], "NAME must not be '.' or '..', got '..'"],
    [['recv', long], `NAME must be at most 255 bytes long, got '${long}'`],
    [['send', '--capacity', '1', 'n'], "--capacity must be from 2 to 4194304, got '1'"],
    [['send', '--capacity', '0x400001', 'n'], "--capacity must be from 2 to 4194304, got '0x400001'"],
    [['send', '--capacity', 'lots', 'n'], "--capacity must be a number of messages, decimal or hexadecimal with 0x, got 'lots'"],
    [['recv', '--capacity=-4', 'n'], "--capacity must not be negative, got '-4'"],
    [['recv', '-c', '-4', 'n'], "the value of '-c' starts with '-': write --capacity=-4 if '-4' is meant as its value"],
    [['send', '--message-size', '63', 'n'], "--message-size must be from 64 to 134217728, got '63'"],
    [['recv', '--message-size', '134217729', 'n'], "--message-size must be from 64 to 134217728, got '134217729'"],
    [['send', '--message-size', '1.5', 'n'], "--message-size must be a number of bytes, decimal or hexadecimal with 0x, got '1.5'"],
    [['send', '--capacity', '65536', '--message-size', '0x100000', 'n'], '--capacity 65536 x --message-size 1048576 needs a buffer of more than 512 MiB; choose smaller values'],
    // Each at its largest, with the other more than the smallest.
    [['recv', '--capacity', '4194304', '--message-size', '128', 'n'], '--capacity 4194304 x --message-size 128 needs a buffer of more than 512 MiB; choose smaller values'],
    [['recv', '--capacity', '3', '-m', '134217728', 'n'], '--capacity 3 x --message-size 134217728 needs a buffer of more than 512 MiB; choose smaller values'],
    [['recv', '--timeout', 'soon', 'n'], "--timeout must be a whole number of milliseconds, got 'soon'"],
    [['recv', '--timeout', '2.5', 'n'], "--timeout must be a whole number of milliseconds, got '2.5'"],
    [['send', '--timeout=-1', 'n'], "--timeout must not be negative, got '-1'"],
    [['send', '--timeout'], "Option '-t, --timeout <value>' argument missing"],
    [['send', '--block', 'n'], "unknown option '--block'"],
    [['recv', '-x', 'n'], "unknown option '-x'"],
    [['send', '--shared-with-group=yes', 'n'], "Option '--shared-with-group' does not take an argument"],
  ];
  for (const [args, message] of cases) {
    const r = cli(args, { input: '' });
    assert.equal(r.status, 2, `${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
    assert.equal(r.stderr, `mmapkit: ${message}\nRun 'mmapkit ${args[0]} --help' for usage.\n`, args.join(' '));
    assert.equal(r.stdout, '');
  }
});

test('--capacity and --message-size at their limits make a channel: each lane holds at least --capacity such messages', async (t) => {
  for (const [capacity, size] of [[4194304, 64], [2, 134217728], [64, 65536], [1000, 100]]) {
    const name = channelName(t, `limits${capacity}`);
    const recv = start(t, ['recv', '--timeout', '20000', '-c', String(capacity), '-m', String(size), name], { stdin: 'ignore' });
    await until(() => inspectName(name)?.state === 'channel', [], 'the receiver to create the channel', 10_000);
    const { limits } = inspectName(name);
    assert.equal(limits.maxMessageSize, size);
    assert.ok(limits.capacity >= capacity, `${capacity} x ${size}: a lane holds ${limits.capacity}`);
    assert.ok(limits.laneSize <= 512 * MiB);
    recv.child.kill('SIGKILL');
    await recv.done;
  }
});

test('--help: usage, options and exit codes of send and recv; both in the command list', () => {
  for (const command of ['send', 'recv']) {
    for (const args of [[command, '--help'], [command, '-h'], ['help', command]]) {
      const r = cli(args);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stderr, '');
      assert.match(r.stdout, new RegExp(`^Usage: mmapkit ${command} \\[--timeout MS\\] \\[--capacity N\\] \\[--message-size BYTES\\] \\[--shared-with-group\\] NAME\\n`));
      for (const option of ['-c, --capacity N', '-m, --message-size BYTES', '-t, --timeout MS', '--shared-with-group', '-h, --help', '--debug']) {
        assert.ok(r.stdout.includes(option), `${args.join(' ')}: ${option}`);
      }
      assert.match(r.stdout, /Exit codes: 0 /);
      assert.match(r.stdout, /--capacity N +Messages of --message-size bytes the channel holds at least \(more of smaller ones\), 2 to 4194304 /);
      assert.match(r.stdout, /--message-size BYTES +Largest message: .*, 64 to 134217728 /);
    }
  }
  const r = cli(['--help']);
  assert.match(r.stdout, /^ {2}send {2,}Send standard input to/m);
  assert.match(r.stdout, /^ {2}recv {2,}Write to standard output/m);
});
