// Interop with real peers: a C program (test/fixtures/peer.c, compiled here with cc) and a Python
// program (test/fixtures/peer.py, standard library mmap) share file mappings with mmapkit, in both
// directions, at an unaligned offset, and live (the peer writes while Node holds its mapping open).
//
// Record format, shared with both peers (little-endian u32 words) at file offset O:
//   O+0 magic "MMK1" | O+4 payload length N | O+8 seed | O+12 flag (0 writing, 1 ready, 2 ack)
//   O+16: N bytes of xorshift32(seed) words, little-endian, the last one truncated.
// The writer stores the flag last, so a reader that sees flag != 0 sees the whole record.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { map, pageSize } from '../dist/index.js';
import { assertOk, compileC, have, startProc, until, xorshift32 } from './helpers.mjs';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');
const PEER_C = join(FIXTURES, 'peer.c');
const PEER_PY = join(FIXTURES, 'peer.py');

const MAGIC = 0x314b4d4d; // "MMK1" read as a little-endian u32
const HEADER = 16;
const FLAG = 12; // byte offset of the flag word in a record
const FLAG_READY = 1;
const FLAG_ACK = 2;
const LIVE_DEADLINE_MS = 10_000;
const PEER_TIMEOUT_MS = 30_000;

/** Not page multiples: a small file of 3 pages + 123 bytes and a 3 MiB + 1001 bytes one. */
const SMALL_FILE = 3 * pageSize + 123;
const LARGE_FILE = 3 * 1024 * 1024 + 1001;
const UNALIGNED_OFFSET = 12345;

const HAVE_CC = have('cc');
const HAVE_PYTHON = have('python3');

// ---------------------------------------------------------------------------------------------
// The pattern, the record and a checksum: the same algorithms as peer.c and peer.py.


/** Fill `buf` with xorshift32(seed) words, little-endian, the last one truncated. */
function fillPattern(buf, seed) {
  let x = seed >>> 0;
  const full = buf.length & ~3;
  for (let i = 0; i < full; i += 4) {
    x = xorshift32(x);
    buf.writeUInt32LE(x, i);
  }
  if (full < buf.length) {
    const last = Buffer.alloc(4);
    last.writeUInt32LE(xorshift32(x));
    last.copy(buf, full, 0, buf.length - full);
  }
  return buf;
}

const pattern = (n, seed) => fillPattern(Buffer.alloc(n), seed);

const CRC_TABLE = Int32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c;
});
function crc32(buf) {
  let c = -1;
  for (let i = 0; i < buf.length; i++) c = CRC_TABLE[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}
const hex = (v, width = 8) => v.toString(16).padStart(width, '0');

/** The flag word as an Int32Array element, when its address is 4-byte aligned; else undefined. */
function flagWord(mapping, pos) {
  // The kernel mapping starts on a page boundary, so a view byte's address is congruent to its file
  // offset modulo the page size. JavaScript only checks alignment within the ArrayBuffer (whose byte
  // 0 is file offset mapping.offset), so check the real alignment here.
  if ((mapping.offset + pos + FLAG) % 4 !== 0) return undefined;
  const buf = mapping.buffer;
  return { i32: new Int32Array(buf.buffer, buf.byteOffset, buf.length >>> 2), index: (pos + FLAG) >>> 2 };
}

/** Write a record at view offset `pos` of a mapping: payload and header first, the flag last. */
function writeRecord(mapping, pos, seed, n) {
  const buf = mapping.buffer;
  const flag = flagWord(mapping, pos);
  buf.writeUInt32LE(0, pos + FLAG);
  fillPattern(buf.subarray(pos + HEADER, pos + HEADER + n), seed);
  buf.writeUInt32LE(MAGIC, pos);
  buf.writeUInt32LE(n, pos + 4);
  buf.writeUInt32LE(seed, pos + 8);
  if (flag) Atomics.store(flag.i32, flag.index, FLAG_READY); // seq_cst: a full barrier on x86-64
  else buf.writeUInt32LE(FLAG_READY, pos + FLAG);
}

/**
 * Check the record at offset `pos` of `buf` (file offset `fileOff`) byte for byte; fail with the file
 * offset of the first wrong byte. Returns the CRC-32 of the payload.
 */
function verifyRecord(buf, pos, fileOff, seed, n) {
  const header = [['magic', MAGIC], ['length', n], ['seed', seed]];
  header.forEach(([name, want], i) => {
    const got = buf.readUInt32LE(pos + 4 * i);
    if (got !== want) {
      assert.fail(`mismatch at file offset ${fileOff + 4 * i} (header ${name}): expected 0x${hex(want)} got 0x${hex(got)}`);
    }
  });
  const actual = buf.subarray(pos + HEADER, pos + HEADER + n);
  const expected = pattern(n, seed);
  assert.equal(actual.length, n, `the view holds only ${actual.length} of ${n} payload bytes`);
  if (!actual.equals(expected)) {
    let i = 0;
    while (actual[i] === expected[i]) i++;
    assert.fail(
      `mismatch at file offset ${fileOff + HEADER + i} (payload byte ${i}): ` +
        `expected 0x${hex(expected[i], 2)} got 0x${hex(actual[i], 2)}`,
    );
  }
  return crc32(actual);
}

/** Offset of the record the other side answers with in the live test: roundup16(16 + n). */
const ackOffset = (n) => (HEADER + n + 15) & ~15;

// ---------------------------------------------------------------------------------------------
// Child processes: every spawn has a timeout (and is killed with SIGKILL when it runs out).

const startPeer = (cmd, args) => startProc([...cmd, ...args], `${cmd.join(' ')} ${args.join(' ')}`, { timeout: PEER_TIMEOUT_MS });

const runPeer = (cmd, args) => startPeer(cmd, args).done;

function assertPeerOk(res, n, crc) {
  assertOk(res, new RegExp(`^ok length=${n} crc32=${hex(crc)}$`));
}

/** Poll a flag word with Atomics.load until it holds `value`; fail on timeout or if the peer exits first. */
const waitForFlag = (flag, value, peer, what) => until(() => Atomics.load(flag.i32, flag.index) === value, [peer], `${what}: flag ${value}`, LIVE_DEADLINE_MS);

// ---------------------------------------------------------------------------------------------

test('the JS verifier catches a flipped byte and names its file offset', () => {
  const n = SMALL_FILE - HEADER;
  const buf = Buffer.alloc(SMALL_FILE);
  const fake = { buffer: buf, offset: 0 };
  writeRecord(fake, 0, 0xdeadbeef, n);
  assert.equal(verifyRecord(buf, 0, 0, 0xdeadbeef, n), crc32(pattern(n, 0xdeadbeef)));
  buf[HEADER + 2 * pageSize + 7] ^= 0x40;
  assert.throws(() => verifyRecord(buf, 0, 0, 0xdeadbeef, n), {
    message: new RegExp(`^mismatch at file offset ${HEADER + 2 * pageSize + 7} \\(payload byte ${2 * pageSize + 7}\\)`),
  });
  assert.throws(() => verifyRecord(buf, 0, 100, 0xdeadbeee, n), { message: /^mismatch at file offset 108 \(header seed\)/ });
  // The pattern is the one peer.c and peer.py compute: first words of xorshift32(1).
  assert.deepEqual([...pattern(8, 1)], [0x21, 0x20, 0x04, 0x00, 0x01, 0x06, 0x08, 0x04]);
});

const peers = [
  { name: 'C', skip: HAVE_CC ? false : 'cc not found', cmd: undefined },
  { name: 'Python', skip: HAVE_PYTHON ? false : 'python3 not found', cmd: ['python3', PEER_PY] },
];

for (const peer of peers) {
  describe(`interop with a ${peer.name} peer`, { skip: peer.skip }, () => {
    let dir;
    let fileNo = 0;
    const file = (name) => join(dir, `${++fileNo}-${name}.bin`);

    before(() => {
      dir = mkdtempSync(join(tmpdir(), `mmapkit-interop-${peer.name.toLowerCase()}-`));
      if (peer.name === 'C') {
        peer.cmd = [compileC(PEER_C, join(dir, 'peer'))];
      }
    });
    after(() => {
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    for (const [label, size, seed] of [
      ['3 pages + 123 bytes', SMALL_FILE, 0x9e3779b9],
      ['3 MiB + 1001 bytes', LARGE_FILE, 0x01234567],
    ]) {
      test(`Node writes ${label} through map({access:'write', size}), the peer reads and verifies`, async () => {
        const path = file('node-writes');
        const n = size - HEADER;
        const m = map(path, { access: 'write', size });
        try {
          assert.equal(m.length, size);
          writeRecord(m, 0, seed, n);
          m.flush();
        } finally {
          m.unmap();
        }
        assertPeerOk(await runPeer(peer.cmd, ['read', path, seed, 0, n]), n, crc32(pattern(n, seed)));
      });

      test(`the peer writes ${label}, Node maps it with access 'read' and verifies byte for byte`, async () => {
        const path = file('peer-writes');
        const n = size - HEADER;
        writeFileSync(path, Buffer.alloc(size));
        const res = await runPeer(peer.cmd, ['write', path, seed, 0, n]);
        assert.equal(res.status, 0, `${res.label} exited with ${res.status} (signal ${res.signal}); stderr: ${res.stderr}`);
        const m = map(path, { access: 'read' });
        try {
          assert.equal(m.length, size);
          verifyRecord(m.buffer, 0, 0, seed, n);
          assert.equal(m.buffer.readUInt32LE(FLAG), FLAG_READY);
        } finally {
          m.unmap();
        }
      });
    }

    test(`Node maps {offset: ${UNALIGNED_OFFSET}} and writes there, the peer finds it at file offset ${UNALIGNED_OFFSET}`, async () => {
      const path = file('node-writes-offset');
      const n = 2 * pageSize + 55; // the record straddles page boundaries
      const size = UNALIGNED_OFFSET + HEADER + n + 77;
      writeFileSync(path, Buffer.alloc(size, 0xee));
      const m = map(path, { access: 'write', offset: UNALIGNED_OFFSET, length: HEADER + n });
      try {
        assert.equal(m.offset, UNALIGNED_OFFSET);
        assert.equal(m.length, HEADER + n);
        writeRecord(m, 0, 0xc0ffee, n);
        m.flush();
      } finally {
        m.unmap();
      }
      assertPeerOk(await runPeer(peer.cmd, ['read', path, 0xc0ffee, UNALIGNED_OFFSET, n]), n, crc32(pattern(n, 0xc0ffee)));
      // Nothing outside [offset, offset + length) changed, in particular not the page below offset.
      const all = readFileSync(path);
      const outside = Buffer.concat([all.subarray(0, UNALIGNED_OFFSET), all.subarray(UNALIGNED_OFFSET + HEADER + n)]);
      assert.ok(outside.every((b) => b === 0xee), 'bytes outside the mapped range were changed');
    });

    test(`the peer writes at file offset ${UNALIGNED_OFFSET}, Node reads it at byte 0 of map({offset: ${UNALIGNED_OFFSET}})`, async () => {
      const path = file('peer-writes-offset');
      const n = 2 * pageSize + 55;
      const size = UNALIGNED_OFFSET + HEADER + n + 77;
      writeFileSync(path, Buffer.alloc(size, 0xee));
      const res = await runPeer(peer.cmd, ['write', path, 0xc0ffee, UNALIGNED_OFFSET, n]);
      assert.equal(res.status, 0, `${res.label} exited with ${res.status} (signal ${res.signal}); stderr: ${res.stderr}`);
      const m = map(path, { offset: UNALIGNED_OFFSET });
      try {
        assert.equal(m.length, size - UNALIGNED_OFFSET);
        verifyRecord(m.buffer, 0, UNALIGNED_OFFSET, 0xc0ffee, n);
        assert.ok(m.buffer.subarray(HEADER + n).every((b) => b === 0xee), 'the bytes after the record changed');
      } finally {
        m.unmap();
      }
    });

    test('live: the peer writes while Node holds a shared mapping; both see each other without remapping', async () => {
      const path = file('live');
      const n = SMALL_FILE - HEADER;
      const seed = 0x5eed1234;
      const ackSeed = 0xacc0acc0;
      const ackOff = ackOffset(n);
      const m = map(path, { access: 'write', size: ackOff + HEADER + n });
      let running;
      try {
        const buf = m.buffer;
        const flag = flagWord(m, 0);
        assert.ok(flag, 'the flag word is 4-byte aligned');
        assert.equal(Atomics.load(flag.i32, flag.index), 0);
        assert.ok(buf.subarray(0, ackOff).every((b) => b === 0), 'the file starts zeroed');

        running = startPeer(peer.cmd, ['live', path, seed, n, ackSeed]);
        await waitForFlag(flag, FLAG_READY, running, `${peer.name} peer publishing its record`);
        // Seen through the mapping made before the peer started: same Buffer, no remap, no msync.
        assert.equal(m.buffer, buf);
        verifyRecord(buf, 0, 0, seed, n);

        // Answer: a record of our own, then the ack flag, which the peer is polling for right now.
        writeRecord(m, ackOff, ackSeed, n);
        Atomics.store(flag.i32, flag.index, FLAG_ACK);
        assertPeerOk(await running.done, n, crc32(pattern(n, ackSeed)));
      } finally {
        running?.kill();
        m.unmap();
      }
    });

    test("live: a mapping with access 'read' sees the peer's later writes (pages it never wrote follow the file)", async () => {
      const path = file('live-read');
      const n = SMALL_FILE - HEADER;
      const seed = 0x0badf00d;
      writeFileSync(path, Buffer.alloc(SMALL_FILE));
      const m = map(path, { access: 'read' });
      let running;
      try {
        const buf = m.buffer;
        const flag = flagWord(m, 0);
        assert.equal(Atomics.load(flag.i32, flag.index), 0);
        assert.ok(buf.every((b) => b === 0), 'the file starts zeroed');
        running = startPeer(peer.cmd, ['write', path, seed, 0, n]);
        await waitForFlag(flag, FLAG_READY, running, `${peer.name} peer writing the file`);
        verifyRecord(buf, 0, 0, seed, n);
        const res = await running.done;
        assert.equal(res.status, 0, `${res.label} exited with ${res.status} (signal ${res.signal}); stderr: ${res.stderr}`);
      } finally {
        running?.kill();
        m.unmap();
      }
    });

    test("the peer's verifier rejects a flipped byte and reports its file offset", async () => {
      const path = file('corrupt');
      const n = SMALL_FILE - HEADER;
      const bad = 2 * pageSize + 5; // payload byte index, on the third page
      const m = map(path, { access: 'write', size: SMALL_FILE });
      try {
        writeRecord(m, 0, 0x13579bdf, n);
        m.buffer[HEADER + bad] ^= 0x01;
        m.flush();
      } finally {
        m.unmap();
      }
      const res = await runPeer(peer.cmd, ['read', path, 0x13579bdf, 0, n]);
      assert.equal(res.signal, null, `${res.label} was killed by ${res.signal}`);
      assert.equal(res.status, 1, `${res.label} should fail; stdout: ${res.stdout} stderr: ${res.stderr}`);
      assert.match(res.stderr, new RegExp(`mismatch at file offset ${HEADER + bad} \\(payload byte ${bad}\\)`));
      assert.equal(res.stdout, '');
    });
  });
}
