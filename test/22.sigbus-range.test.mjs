// The SIGBUS guard repairs the whole lost range of a truncated file at once (issue 17): each repair is
// a kernel mapping (VMA) of its own, and one per page ran a strided reader into vm.max_map_count
// (65,530) after about 32k pages, where the next repair failed and the process died of SIGBUS.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, ftruncateSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { pageSize } from '../dist/index.js';
import { distUrl, runNode, shmName, tempDir } from './helpers.mjs';

const MiB = 2 ** 20;
/** Where the file is cut: its first page and 100 bytes of the second stay. */
const CUT = pageSize + 100;

/**
 * A child maps a sparse file (or shared memory object), another process truncates it to CUT bytes,
 * then the child reads one byte of every page: odd pages first, then even pages, upwards ('up') or
 * downwards ('down'), so that no fault lands next to the page faulted before it (a repair next to
 * the last one would merge with it and hide the bug).
 */
const READER = `
  import { map, SharedMemory, pageSize } from ${JSON.stringify(distUrl)};
  import { spawnSync } from 'node:child_process';
  import { readFileSync } from 'node:fs';
  const [kind, target, access, order, cut] = process.argv.slice(1);
  const path = kind === 'shm' ? '/dev/shm/' + target : target;
  const shm = kind === 'shm' ? SharedMemory.open(target) : undefined;
  const m = shm ? shm.mapping : map(target, { access });
  const b = m.buffer;
  const pages = b.length / pageSize;
  if (access === 'copy') b.write('mine', 8); // a private copy of page 0: it must survive the repairs
  // The kernel mappings (lines of /proc/self/maps) over the addresses of ours: one now, the file's
  // (the zero pages of a repair may merge with an anonymous neighbour, past the end of ours)
  const maps = () => readFileSync('/proc/self/maps', 'latin1').split('\\n').filter(Boolean)
    .map((l) => l.split(/[- ]/).slice(0, 2).map((x) => BigInt('0x' + x)).concat(l.endsWith(' ' + path)));
  const [start, end] = maps().find((l) => l[2]);
  const mappings = () => maps().filter(([s, e]) => s < end && e > start).length;
  if (mappings() !== 1) throw new Error('expected one kernel mapping of ' + path);
  const r = spawnSync(process.execPath, ['-e', 'require("fs").truncateSync(process.argv[1], +process.argv[2])', path, cut], { timeout: 20000 });
  if (r.status !== 0) throw new Error('truncate failed: ' + r.stderr);
  const out = { tail: b.toString('latin1', pageSize, pageSize + 5), pastEnd: b[pageSize + 200] };
  out.faultedByTail = m.faulted; // the rest of the last page reads zeros without a bus error
  let sum = 0;
  const visit = (p) => { if (p >= 2) sum += b[p * pageSize + (p % 7)]; };
  for (const first of [1, 0]) {
    if (order === 'up') for (let p = first; p < pages; p += 2) visit(p);
    else for (let p = pages - 2 + first; p >= 0; p -= 2) visit(p);
  }
  if (access === 'write') { b[pages * pageSize - 1] = 9; out.wroteLost = b[pages * pageSize - 1]; }
  out.sum = sum;
  out.faulted = m.faulted;
  out.mappings = mappings();
  out.head = b.toString('latin1', 0, 12);
  out.tailAfter = b.toString('latin1', pageSize, pageSize + 5);
  console.log(JSON.stringify(out));
`;

/** A sparse file (or /dev/shm object) of `size` bytes with data in its first page and a half. */
function sparse(path, size) {
  const fd = openSync(path, 'w+', 0o600);
  try {
    ftruncateSync(fd, size);
    writeSync(fd, Buffer.from('HEAD-OF-FILE'), 0, 12, 0);
    writeSync(fd, Buffer.from('tail!'), 0, 5, pageSize);
  } finally {
    closeSync(fd);
  }
}

const cases = [
  { kind: 'file', access: 'read', order: 'up', size: 512 * MiB },
  { kind: 'file', access: 'copy', order: 'up', size: 64 * MiB },
  { kind: 'file', access: 'write', order: 'down', size: 64 * MiB },
  { kind: 'shm', access: 'write', order: 'up', size: 64 * MiB },
];

for (const { kind, access, order, size } of cases) {
  test(`${kind} of ${size / MiB} MiB (${access}) truncated to ${CUT} bytes, every page read ${order}: zeros, faulted, a few mappings`, (t) => {
    let target;
    if (kind === 'shm') {
      target = shmName(t, 'range');
      sparse(`/dev/shm/${target}`, size);
    } else {
      target = join(tempDir(t), 'big.bin');
      sparse(target, size);
    }
    const r = runNode(READER, { args: [kind, target, access, order, String(CUT)], timeout: 120_000 });
    assert.equal(r.signal, null, `the reader was killed by ${r.signal}: ${r.stderr.slice(-2000)}`);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    t.diagnostic(`kernel mappings over the file's addresses: ${out.mappings}`);
    // Pages before the new end keep their contents, a private copy included.
    assert.equal(out.head, access === 'copy' ? 'HEAD-OF-mine' : 'HEAD-OF-FILE');
    assert.equal(out.tail, 'tail!');
    assert.equal(out.tailAfter, 'tail!');
    // Past the end inside the last page: zeros from the kernel, no bus error, so not faulted.
    assert.equal(out.pastEnd, 0);
    assert.equal(out.faultedByTail, false);
    assert.equal(out.sum, 0, 'lost pages read as zeros');
    assert.equal(out.faulted, true);
    if (access === 'write') assert.equal(out.wroteLost, 9, 'a write to a lost page lands in the zero page');
    // One repair per page made two kernel mappings per fault here (tens of thousands); the whole lost
    // range in one repair makes two: the file's pages and the zero pages.
    assert.ok(out.mappings <= 3, `${out.mappings} kernel mappings cover the file (one per repaired page?)`);
  });
}

/** Whether this machine lets us mount a small tmpfs in a user and mount namespace of our own. */
const canUnshare = spawnSync('unshare', ['-Urm', 'true'], { timeout: 10_000 }).status === 0;

test('a bus error inside the file (a full tmpfs) repairs that page only: data after it stays', { skip: !canUnshare && 'unshare -Urm is not allowed here' }, (t) => {
  // A read of a hole in a sparse tmpfs file allocates a page; when the tmpfs is full that fails with a
  // bus error, though the file goes on. Repairing to the end of the mapping would hide page 200.
  const dir = join(tempDir(t), 'small');
  mkdirSync(dir);
  const program = `
    import { map, pageSize } from ${JSON.stringify(distUrl)};
    import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';
    const dir = process.argv[1];
    const fd = openSync(dir + '/sparse', 'w+');
    ftruncateSync(fd, 256 * pageSize);
    writeSync(fd, Buffer.alloc(pageSize, 0x58), 0, pageSize, 200 * pageSize);
    closeSync(fd);
    const fill = openSync(dir + '/fill', 'w');
    try { for (;;) writeSync(fill, Buffer.alloc(pageSize, 1)); } catch (e) { if (e.code !== 'ENOSPC') throw e; }
    const m = map(dir + '/sparse', { access: 'write' });
    const b = m.buffer;
    const out = { hole: b[5 * pageSize] };
    out.faulted = m.faulted;
    out.data = b[200 * pageSize + 1];
    out.lastHole = b[255 * pageSize];
    console.log(JSON.stringify(out));
  `;
  const r = spawnSync(
    'unshare',
    ['-Urm', 'sh', '-c', 'mount -t tmpfs -o size="$4" mmapkit "$1" && exec "$2" --input-type=module -e "$3" "$1"', 'sh', dir, process.execPath, program, String(16 * pageSize)],
    { encoding: 'utf8', timeout: 30_000 },
  );
  assert.equal(r.signal, null, `killed by ${r.signal}: ${r.stderr}`);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { hole: 0, faulted: true, data: 0x58, lastHole: 0 });
});
