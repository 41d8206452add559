// A mapped file truncated by another process: touching the lost pages must not kill us.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { distUrl, runNode, tempDir } from './helpers.mjs';

const PROGRAM = `
  import { map, guardInstalled, pageSize } from ${JSON.stringify(distUrl)};
  import { spawnSync } from 'node:child_process';
  import { openSync, writeSync, closeSync } from 'node:fs';
  const [file, access] = process.argv.slice(1);
  const out = { guard: guardInstalled() };
  const m = map(file, { access });
  const b = m.buffer;
  out.before = b[2 * pageSize + 5];
  // Another process truncates the file to one page while we hold the mapping.
  const r = spawnSync(process.execPath, ['-e', 'require("fs").truncateSync(process.argv[1], 4096)', file], { timeout: 10000 });
  if (r.status !== 0) throw new Error('truncate failed');
  out.firstPage = b[5];                       // still backed by the file
  out.lostPage = b[2 * pageSize + 5];         // SIGBUS, repaired with a zero page
  if (access === 'write') { b[3 * pageSize] = 1; out.wroteLost = b[3 * pageSize]; }
  let sum = 0;                                // a hot loop the JIT compiles, over every lost page
  for (let round = 0; round < 20; round++) for (let i = pageSize; i < b.length; i++) sum += b[i];
  out.sum = sum;
  const copy = Buffer.alloc(b.length);
  b.copy(copy);                               // a native memcpy across the lost pages
  out.copied = copy[pageSize * 3 + 1];
  out.faulted = m.faulted;
  try { m.flush(); out.flush = 'no error'; } catch (e) { out.flush = e.code; }
  try { m.view(0, 1); out.view = 'no error'; } catch (e) { out.view = e.code; }
  m.unmap();                                  // a faulted mapping can still be unmapped
  out.after = m.closed;
  // The file grows again: a new mapping sees the file, not zero pages.
  const fd = openSync(file, 'r+');
  writeSync(fd, Buffer.alloc(pageSize, 8), 0, pageSize, 2 * pageSize);
  closeSync(fd);
  const again = map(file);
  out.remapped = again.buffer[2 * pageSize + 5];
  out.remappedFaulted = again.faulted;
  console.log(JSON.stringify(out));
`;

for (const access of ['read', 'write', 'copy']) {
  test(`truncation under a ${access} mapping: zeros and a faulted mapping, not SIGBUS`, (t) => {
    const file = join(tempDir(t), 'trunc.bin');
    writeFileSync(file, Buffer.alloc(4 * 4096, 7));
    const r = runNode(PROGRAM, { args: [file, access] });
    assert.equal(r.signal, null, `the process was killed by ${r.signal}: ${r.stderr}`);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.guard, true);
    assert.equal(out.before, 7);
    assert.equal(out.firstPage, 7);
    assert.equal(out.lostPage, 0);
    if (access === 'write') assert.equal(out.wroteLost, 1);
    assert.ok(out.sum <= 20, `lost pages read as zeros (sum ${out.sum})`);
    assert.equal(out.copied, 0);
    assert.equal(out.faulted, true);
    assert.equal(out.flush, 'ERR_MMAP_FAULTED');
    assert.equal(out.view, 'ERR_MMAP_FAULTED');
    assert.equal(out.after, true);
    assert.equal(out.remapped, 8);
    assert.equal(out.remappedFaulted, false);
  });
}

test('a SIGBUS that is not about our mappings keeps its default action', () => {
  const r = runNode(`
    import { mapAnonymous } from ${JSON.stringify(distUrl)};
    mapAnonymous(4096);
    process.kill(process.pid, 'SIGBUS');
    setTimeout(() => console.log('survived'), 2000);
  `);
  assert.equal(r.signal, 'SIGBUS');
  assert.equal(r.stdout, '');
});

test('without the guard the same truncation kills the process (the test really faults)', (t) => {
  const file = join(tempDir(t), 'raw.bin');
  writeFileSync(file, Buffer.alloc(4 * 4096, 7));
  const r = runNode(PROGRAM, { args: [file, 'read'], env: { ...process.env, MMAPKIT_SIGBUS_GUARD: '0' } });
  assert.equal(r.signal, 'SIGBUS');
  assert.equal(r.stdout, '');
});

test("a process.on('SIGBUS') listener draws a warning (it would replace the guard)", () => {
  const r = runNode(`
    import ${JSON.stringify(distUrl)};
    process.on('warning', (w) => { console.log(w.code); process.exit(0); });
    process.on('SIGBUS', () => {});
    setTimeout(() => process.exit(5), 5000);
  `);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'MMAPKIT_SIGBUS_LISTENER');
});

test('after the last SIGBUS listener is removed, the guard is back', (t) => {
  const file = join(tempDir(t), 'back.bin');
  writeFileSync(file, Buffer.alloc(4 * 4096, 7));
  const r = runNode(`
    import { map, guardInstalled } from ${JSON.stringify(distUrl)};
    import { truncateSync } from 'node:fs';
    process.on('warning', () => {});
    const before = guardInstalled();
    const listener = () => {};
    process.on('SIGBUS', listener);
    const during = guardInstalled();
    process.off('SIGBUS', listener);
    const after = guardInstalled();
    const m = map(process.argv[1]);
    truncateSync(process.argv[1], 4096);
    console.log(JSON.stringify({ before, during, after, lost: m.buffer[3 * 4096], faulted: m.faulted }));
  `, { args: [file] });
  assert.equal(r.signal, null, 'killed by ' + r.signal);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { before: true, during: false, after: true, lost: 0, faulted: true });
});
