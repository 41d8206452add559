// Channel header checks (docs/channel-layout.md, layout version 3): open() refuses a bad magic, version
// (layouts 1 and 2 with a message saying what to do), any size or offset field that does not fit,
// files and memory smaller than the header says, and a MAX_MESSAGE whose record size overflows 32 bits;
// randomly damaged headers give ERR_MMAP_BAD_HEADER or a channel that works within its memory.
// (Garbage written into a live channel: test/83.)
import assert from 'node:assert/strict';
import { existsSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Channel, CHANNEL, SharedMemory } from '../dist/index.js';
import { shmName, tempDir, throwsCode } from './helpers.mjs';
import { xorshift } from './fixtures/channel-child.mjs';
import { test, uniq } from './channel-helpers.mjs';

test('the header is checked on open: magic, version, every size and offset field, sizes of files and memory', async (t) => {
  const opts = { capacity: 8, maxMessageSize: 100, maxProducers: 4, maxConsumers: 4 };
  const len = Channel.byteLength(opts);
  const shm = SharedMemory.anonymous(len);
  t.after(() => shm.close());
  const b = shm.buffer;
  const BAD = ['ERR_MMAP_BAD_HEADER', 'MmapkitError'];
  throwsCode(() => Channel.open(shm), ...BAD); // all zeros: no magic
  // The version 3 header (docs/channel-layout.md): lanes of 4096 bytes here; 4 lanes, 4 consumer
  // entries; lanes at 256, consumers at 1280, rings at 1408 (1344 rounded up to 128).
  Channel.create(shm, opts).close();
  assert.deepEqual(
    ['LANE_SIZE', 'MAX_MESSAGE', 'MAX_PRODUCERS', 'MAX_CONSUMERS', 'LANES_OFFSET', 'CONSUMERS_OFFSET', 'RINGS_OFFSET', 'TOTAL_SIZE'].map((f) => b.readUInt32LE(CHANNEL[f])),
    [4096, 100, 4, 4, 256, 1280, 1408, 1408 + 4 * 4096],
  );
  assert.equal(len, 1408 + 4 * 4096);
  const fields = [
    ['MAGIC', 4, [0, 0x48434b4e, 0xffffffff]],
    ['VERSION', 2, [0, 1, 2, 4, 0xffff]],
    ['HEADER_SIZE', 2, [0, 64, 127, 129, 256, 0xffff]],
    ['TOTAL_SIZE', 4, [0, len - 1, len + 1, len * 2, 0xffffffff]],
    ['LANE_SIZE', 4, [0, 2048, 4095, 4097, 6144, 8192, 2 ** 31, 0xffffffff]],
    ['MAX_MESSAGE', 4, [0, 2041, 4096, 2 ** 30]], // (and 2^31 - 15 and more: the next test)
    ['MAX_PRODUCERS', 4, [0, 3, 5, 4097, 0xffffffff]],
    ['MAX_CONSUMERS', 4, [0, 9, 4097, 0xffffffff]], // (3 to 8 entries end before 1408: a consistent header)
    ['LANES_OFFSET', 4, [0, 128, 384, 0xffffffff]],
    ['CONSUMERS_OFFSET', 4, [0, 1264, 1296, 0xffffffff]],
    ['RINGS_OFFSET', 4, [0, 1344, 1536, len, 0xffffffff]],
  ];
  let checked = 0;
  for (const [field, width, values] of fields) {
    for (const v of values) {
      // Start from memory without a magic: create() never resets a channel of layout 1 or 2, which
      // the VERSION cases below leave behind.
      b.writeUInt32LE(0, CHANNEL.MAGIC);
      Channel.create(shm, opts).close();
      const at = CHANNEL[field];
      const before = width === 2 ? b.readUInt16LE(at) : b.readUInt32LE(at);
      if (v === before) continue;
      if (width === 2) b.writeUInt16LE(v, at);
      else b.writeUInt32LE(v, at);
      assert.throws(() => Channel.open(shm), (err) => err.code === 'ERR_MMAP_BAD_HEADER' && err.name === 'MmapkitError', `${field} ${before} -> ${v}`);
      checked++;
    }
  }
  // A channel of layout version 1 or 2 (slots, before lanes) is refused with a clear message.
  for (const version of [1, 2]) {
    b.writeUInt32LE(0, CHANNEL.MAGIC);
    Channel.create(shm, opts).close();
    b.writeUInt16LE(version, CHANNEL.VERSION);
    assert.throws(() => Channel.open(shm), (err) => {
      assert.equal(err.code, 'ERR_MMAP_BAD_HEADER');
      assert.match(err.message, new RegExp(`version ${version}\\b.*version 3 only.*before lanes: once no process uses it, remove it, create it anew`));
      return true;
    });
  }
  assert.ok(checked >= 50);
  b.writeUInt32LE(0, CHANNEL.MAGIC);
  Channel.create(shm, opts).close();
  const untouched = Channel.open(shm);
  assert.deepEqual([untouched.laneSize, untouched.maxMessageSize], [4096, 100], 'the untouched header opens');
  untouched.close();

  // Files: too small for the size the header claims, truncated, too short for a header, garbage.
  const dir = tempDir(t);
  const path = join(dir, 'h.bin');
  Channel.create(path, opts).close();
  for (const size of [len - 1, len - 64, 1000, CHANNEL.CONTROL_END, CHANNEL.CONTROL_END - 1, 64, 1]) {
    truncateSync(path, size);
    throwsCode(() => Channel.open(path), ...BAD);
  }
  truncateSync(path, 0);
  throwsCode(() => Channel.open(path), 'ERR_MMAP_EMPTY_FILE', 'MmapkitError'); // map() refuses an empty file before a header is read
  writeFileSync(path, Buffer.alloc(len, 0x5a));
  throwsCode(() => Channel.open(path), ...BAD);
  // Named memory that is too small, and empty.
  const name = shmName(t, 'hdr');
  const s = SharedMemory.create(name, 200);
  s.buffer.writeUInt32LE(0x48434b4d, 0);
  throwsCode(() => Channel.open({ name }), ...BAD);
  s.close();
  assert.ok(!existsSync(`/dev/shm/${uniq('x')}`));

  // Random damage to the header: always a clear error, or a channel that works within its memory.
  const g = xorshift(2024);
  let opened = 0;
  for (let i = 0; i < 3000; i++) {
    // A damaged CREATOR word can name a live process (pid 1, 2, 4, ...): create() then rightly
    // refuses the memory, so each round starts from zeros.
    b.fill(0, 0, CHANNEL.CONTROL_END);
    Channel.create(shm, opts).close();
    for (let k = 1 + (g.next().value % 3); k > 0; k--) {
      const at = g.next().value % 64;
      b[at] ^= 1 << (g.next().value % 8);
    }
    let ch;
    try {
      ch = Channel.open(shm);
    } catch (err) {
      assert.equal(err.code, 'ERR_MMAP_BAD_HEADER', err.stack);
      continue;
    }
    opened++;
    ch.trySend('ok');
    ch.tryReceive();
    ch.close();
  }
  t.diagnostic(`${opened} of 3000 damaged headers still opened (flags, reserved bytes, or sizes within the same alignment)`);
});

test('the header is checked on open: a MAX_MESSAGE so large that record(MAX_MESSAGE) overflows 32 bits is refused (computed in 64 bits, as the layout doc says)', (t) => {
  // A regression test: readGeometry() computed minLane(MAX_MESSAGE) with 32-bit arithmetic, so from
  // 2^31 - 15 up the record size wrapped to a small or negative number and the header validated. A
  // peer could then write a record length of 0x7ffffff1 that passed the per-record check too:
  // receive() allocated 2 GiB and delivered the bytes of other lanes.
  const opts = { capacity: 8, maxMessageSize: 100, maxProducers: 2, maxConsumers: 2 };
  const shm = SharedMemory.anonymous(Channel.byteLength(opts));
  t.after(() => shm.close());
  const opened = [];
  const inspected = [];
  const values = [2 ** 31 - 16, 2 ** 31 - 15, 2 ** 31, 0xfffffff0, 0xffffffff];
  for (const v of values) {
    Channel.create(shm, opts).close();
    shm.buffer.writeUInt32LE(v, CHANNEL.MAX_MESSAGE);
    try {
      const ch = Channel.open(shm);
      opened.push(`${v} (maxMessageSize ${ch.maxMessageSize}, capacity ${ch.capacity})`);
      ch.close();
    } catch (err) {
      assert.equal(err.code, 'ERR_MMAP_BAD_HEADER', err.stack);
    }
    inspected.push(Channel.inspect(shm).state);
  }
  assert.deepEqual(opened, [], 'headers with these MAX_MESSAGE values opened');
  assert.deepEqual(inspected, values.map(() => 'corrupt'));
});
