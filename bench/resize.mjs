/**
 * Growing an append-only file: `mapping.resize()` (mremap, the file grown with ftruncate) against
 * `unmap()` + `map(path, { access: 'write', size })` at every step. Each round starts from an empty
 * file and appends STEPS records of RECORD bytes, growing the mapping by one record before each write
 * and writing through `mapping.buffer`. The variants alternate round by round (interleaved), so drift
 * of the machine hits them alike; the medians of the rounds and their ratio are printed.
 *
 *   node bench/resize.mjs [steps] [rounds] [recordBytes]
 *
 * Also a second pair: private anonymous memory grown by STEPS pages, `resize()` against a new
 * `mapAnonymous()` plus a copy of the old content (what growing memory costs without mremap).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { map, mapAnonymous, pageSize } from '../dist/index.js';

const STEPS = Number(process.argv[2] ?? 1000);
const ROUNDS = Number(process.argv[3] ?? 15);
const RECORD = Number(process.argv[4] ?? 256);

const dir = mkdtempSync(join(tmpdir(), 'mmapkit-bench-resize-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

const record = Buffer.alloc(RECORD, 0x61);
let round = 0;

function fileResize() {
  const path = join(dir, `r${round++}.log`);
  const m = map(path, { access: 'write', size: RECORD });
  m.buffer.set(record, 0);
  for (let i = 1; i < STEPS; i++) {
    m.resize((i + 1) * RECORD);
    m.buffer.set(record, i * RECORD);
  }
  m.unmap();
  rmSync(path);
}

function fileRemap() {
  const path = join(dir, `u${round++}.log`);
  let m = map(path, { access: 'write', size: RECORD });
  m.buffer.set(record, 0);
  for (let i = 1; i < STEPS; i++) {
    m.unmap();
    m = map(path, { access: 'write', size: (i + 1) * RECORD });
    m.buffer.set(record, i * RECORD);
  }
  m.unmap();
  rmSync(path);
}

function anonResize() {
  const m = mapAnonymous(pageSize);
  m.buffer[0] = 1;
  for (let i = 1; i < STEPS; i++) {
    m.resize((i + 1) * pageSize);
    m.buffer[i * pageSize] = 1;
  }
  m.unmap();
}

function anonCopy() {
  let m = mapAnonymous(pageSize);
  m.buffer[0] = 1;
  for (let i = 1; i < STEPS; i++) {
    const next = mapAnonymous((i + 1) * pageSize);
    next.buffer.set(m.buffer, 0);
    m.unmap();
    m = next;
    m.buffer[i * pageSize] = 1;
  }
  m.unmap();
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Run the variants interleaved (order alternating per round); µs per step, one median per variant. */
async function compare(variants) {
  const times = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
  const names = Object.keys(variants);
  for (const name of names) variants[name](); // warm-up
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? names : [...names].reverse();
    for (const name of order) {
      const t0 = process.hrtime.bigint();
      variants[name]();
      times[name].push(Number(process.hrtime.bigint() - t0) / 1000 / STEPS);
    }
    // a turn of the event loop, so finalizers of dropped views and placeholders can run
    await new Promise((resolve) => setImmediate(resolve));
  }
  return Object.fromEntries(names.map((n) => [n, median(times[n])]));
}

console.log(`growing by ${STEPS} steps, ${ROUNDS} rounds, interleaved; median µs per step`);
const f = await compare({ 'resize()': fileResize, 'unmap() + map(size)': fileRemap });
console.log(`file, ${RECORD}-byte records: resize() ${f['resize()'].toFixed(2)} µs, unmap()+map() ${f['unmap() + map(size)'].toFixed(2)} µs, ratio ${(f['unmap() + map(size)'] / f['resize()']).toFixed(2)}x`);
const a = await compare({ 'resize()': anonResize, 'mapAnonymous + copy': anonCopy });
console.log(`anonymous, one page per step: resize() ${a['resize()'].toFixed(2)} µs, mapAnonymous()+copy+unmap() ${a['mapAnonymous + copy'].toFixed(2)} µs, ratio ${(a['mapAnonymous + copy'] / a['resize()']).toFixed(2)}x`);
