// create() over a channel in use (issue 16): refused with ERR_MMAP_CHANNEL_IN_USE, nothing reset or
// lost, while a live process has a handle attached (a file, SharedMemory, a Mapping) or holds the handle
// its create() returned; 4 processes creating one file at the same moment (exactly one succeeds); a
// channel whose parties closed or died, and memory that holds no channel, may be created anew.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Channel, SharedMemory, map } from '../dist/index.js';
import { shmName, tempDir, throwsCode } from './helpers.mjs';
import { startChild as start } from './fixtures/channel-child.mjs';
import { anon, sleep, test } from './channel-helpers.mjs';

test('create() over a channel that a live process uses is refused with ERR_MMAP_CHANNEL_IN_USE, for a file, SharedMemory and a Mapping; nothing is lost', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'live.channel');
  // The case: a consumer in another process; create(path) here used to reset the channel under it.
  const consumer = start(t, ['hold', `file:${path}`, 'create', 'consumer']);
  await consumer.line(/^ready$/);
  const before = Buffer.from(map(path).buffer);
  for (const opts of [undefined, { capacity: 64, maxMessageSize: 4096 }]) {
    throwsCode(() => Channel.create(path, opts), 'ERR_MMAP_CHANNEL_IN_USE', 'MmapkitError');
  }
  assert.ok(map(path).buffer.equals(before), 'the file is as it was: not reset, not grown');
  const m = map(path, { access: 'write' });
  throwsCode(() => Channel.create(m, { capacity: 8, maxMessageSize: 64 }), 'ERR_MMAP_CHANNEL_IN_USE', 'MmapkitError');
  m.unmap();
  // Join it instead: the consumer gets this message, not a stale one.
  const tx = Channel.open(path);
  tx.send('fresh');
  consumer.tell('receive');
  assert.deepEqual(JSON.parse(await consumer.line(/^\{/)), { got: 'fresh' });
  tx.close();
  // Its process dies: the channel is abandoned, and may be created anew.
  consumer.child.kill('SIGKILL');
  await consumer.exited;
  const fresh = Channel.create(path, { capacity: 4, maxMessageSize: 16 });
  assert.equal(fresh.maxMessageSize, 16, 'the new channel, not the old one (maxMessageSize 64)');
  assert.ok(fresh.capacity >= 4);
  fresh.close();

  // SharedMemory: a child producer is attached (and alive) after the creator's handle closed.
  const opts = { capacity: 8, maxMessageSize: 64 };
  const shm = anon(t, opts);
  Channel.create(shm, opts).close();
  const producer = start(t, ['hold', 'inherit:ch', 'open', 'producer'], shm.childOptions({ stdio: ['pipe', 'pipe', 'pipe'] }, 'ch'));
  await producer.line(/^ready$/);
  throwsCode(() => Channel.create(shm, opts), 'ERR_MMAP_CHANNEL_IN_USE', 'MmapkitError');
  assert.throws(() => Channel.create(shm, opts), new RegExp(`in use by process ${producer.child.pid} \\(a producer\\)`));
  const rx = Channel.open(shm);
  assert.deepEqual(rx.receive(1000), Buffer.from('held'), 'the message the producer sent is still there');
  producer.tell('close');
  await producer.line(/^closed$/);
  assert.equal(rx.receive(1000), null);
  rx.close();
  Channel.create(shm, opts).close(); // every party closed: may be created anew
});

test('create() of one file by 4 processes at the same moment: exactly one succeeds, the others are refused', async (t) => {
  for (let round = 0; round < 5; round++) {
    const path = join(tempDir(t), `race-${round}.channel`);
    const go = SharedMemory.anonymous(4096);
    t.after(() => go.close());
    const word = new Int32Array(go.buffer.buffer, go.buffer.byteOffset, 1);
    const kids = [0, 1, 2, 3].map(() => start(t, ['race-create', path], go.childOptions({ stdio: ['pipe', 'pipe', 'pipe'] }, 'go')));
    await sleep(300); // all of them started and spinning (a late one only finds the winner's channel)
    Atomics.store(word, 0, 1);
    const results = await Promise.all(kids.map(async (k) => JSON.parse(await k.line(/^\{/))));
    const ok = results.filter((r) => r.ok);
    assert.equal(ok.length, 1, JSON.stringify(results));
    // Map's O_EXCL create of a missing file can refuse a racer too (EEXIST); nothing else.
    for (const r of results) if (!r.ok) assert.ok(['ERR_MMAP_CHANNEL_IN_USE', 'EEXIST'].includes(r.code), JSON.stringify(results));
    for (const k of kids) k.child.stdin.end();
    for (const k of kids) assert.deepEqual(await k.exited, { code: 0, signal: null });
    Channel.create(path).close(); // all closed: free again
  }
});

test("create() is refused while the handle that create() returned is open, even before it sends or receives (in this or another process)", async (t) => {
  const path = join(tempDir(t), 'creator.channel');
  const creator = start(t, ['hold', `file:${path}`, 'create', 'none']);
  await creator.line(/^ready$/);
  throwsCode(() => Channel.create(path), 'ERR_MMAP_CHANNEL_IN_USE', 'MmapkitError');
  assert.throws(() => Channel.create(path), new RegExp(`in use by process ${creator.child.pid} \\(the handle create\\(\\) returned\\)`));
  creator.tell('close');
  await creator.line(/^closed$/);
  await creator.exited;
  Channel.create(path).close();
  // In this process: the same.
  const opts = { capacity: 4, maxMessageSize: 16 };
  const shm = anon(t, opts);
  const first = Channel.create(shm, opts);
  throwsCode(() => Channel.create(shm, opts), 'ERR_MMAP_CHANNEL_IN_USE', 'MmapkitError');
  const user = Channel.open(shm);
  user.attach('consumer');
  first.close();
  throwsCode(() => Channel.create(shm, opts), 'ERR_MMAP_CHANNEL_IN_USE', 'MmapkitError'); // a consumer is still attached
  user.close();
  Channel.create(shm, opts).close();
  // Memory that holds no channel (zeros, other data, a corrupt header) is never "in use".
  const other = anon(t, opts);
  other.buffer.fill(0x5a);
  Channel.create(other, opts).close();
  // {name}: exclusive as before.
  const name = shmName(t, 'live');
  const named = Channel.create({ name }, opts);
  throwsCode(() => Channel.create({ name }, opts), 'EEXIST', 'Error', { syscall: 'shm_open' });
  named.close();
});
