/**
 * mapping.indexOf / lastIndexOf against Buffer#indexOf / lastIndexOf over the same 1 GiB of mapped
 * memory (where Buffer's is right: it is wrong past 2 GiB on Node 20 to 24), for needles that are
 * not there, so that every call scans the whole GiB:
 *   - a byte (10, '\n': memchr / memrchr),
 *   - 16 bytes and 1 KiB of letters (Node's Boyer-Moore-Horspool search).
 * The memory holds "text": a 1 MiB pattern of seeded random lowercase letters and spaces, repeated.
 * Variants run interleaved (Buffer first in even rounds, mapping first in odd ones), after one untimed
 * warm-up call each; the table gives the median GB/s of the rounds and the ratio of medians (target:
 * mapping >= 0.95 x Buffer), by wall time and by CPU time (user + system of this process, which the
 * other processes of a loaded machine disturb much less).
 *
 *   node bench/index-of.mjs [--rounds=N] [--json]
 */
import { mapAnonymous } from '../dist/index.js';
import { GiB, MiB, fmt, fmtRatio, machineInfo, markdownTable, mulberry32, nowNs, stats } from './lib.mjs';

const args = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=')).map(([k, v]) => [k, v ?? 'true']));
const ROUNDS = Number(args.get('rounds') ?? 9);
const SIZE = GiB;

const rng = mulberry32(0x1d0f);
const letters = (n) => Buffer.from(Array.from({ length: n }, () => 97 + (rng() % 26)));

// One page more than the GiB searched, so that mapping.indexOf(v, 0, SIZE) takes its general path
// (a view of the range, as for every range that does not run to the end of the mapping) rather than
// its shortcut (one call on mapping.buffer itself, which is Buffer#indexOf by construction).
const m = mapAnonymous(SIZE + 4096, { populate: true });
const buf = m.view(0, SIZE);
const pattern = letters(MiB);
for (let i = 0; i < pattern.length; i += 1 + (rng() % 12)) pattern[i] = 32; // words
buf.fill(pattern);

const needles = [
  { name: 'byte (10)', value: 10 },
  { name: '16 bytes', value: letters(16) },
  { name: '1 KiB', value: letters(1024) },
];

const variants = [
  { name: 'Buffer#indexOf', run: (v) => buf.indexOf(v) },
  { name: 'mapping.indexOf', run: (v) => m.indexOf(v, 0, SIZE) },
  { name: 'Buffer#lastIndexOf', run: (v) => buf.lastIndexOf(v) },
  // start 1, not 0: a backward search from byte 0 takes the shortcut (one byte less to scan).
  { name: 'mapping.lastIndexOf', run: (v) => m.lastIndexOf(v, 1, SIZE) },
];

/**
 * One call, which must find nothing: GB/s (10^9 bytes per second) of wall time and of CPU time
 * (user + system, getrusage: what other processes on a loaded machine take does not count).
 */
function timeOne(variant, needle, reps = 1) {
  const c0 = process.cpuUsage();
  const t0 = nowNs();
  for (let k = 0; k < reps; k++) {
    const r = variant.run(needle.value);
    if (r !== -1) throw new Error(`${variant.name}(${needle.name}) found ${r}: the needle must not be there`);
  }
  const ns = nowNs() - t0;
  const c = process.cpuUsage(c0);
  return { wall: (reps * SIZE) / ns, cpu: (reps * SIZE) / ((c.user + c.system) * 1e3) };
}

const results = new Map(); // `${needle}|${variant}` -> GB/s per round
// Warm-up; and enough calls per sample for about 300 ms, well above the granularity of CPU time.
for (const needle of needles) {
  let slowest = Infinity;
  for (const variant of variants) slowest = Math.min(slowest, timeOne(variant, needle).wall);
  needle.reps = Math.max(1, Math.round((0.3 * slowest * 1e9) / SIZE));
}
for (let round = 0; round < ROUNDS; round++) {
  for (const needle of needles) {
    // Buffer then mapping in even rounds, mapping then Buffer in odd ones, for each direction.
    for (const pair of [variants.slice(0, 2), variants.slice(2, 4)]) {
      for (const variant of round % 2 === 0 ? pair : [...pair].reverse()) {
        const key = `${needle.name}|${variant.name}`;
        if (!results.has(key)) results.set(key, { wall: [], cpu: [] });
        const r = timeOne(variant, needle, needle.reps);
        results.get(key).wall.push(r.wall);
        results.get(key).cpu.push(r.cpu);
      }
    }
  }
}
m.unmap();

// Short searches: the newlines of 16 MiB of 64-byte lines, one call per line (262,144 calls), as
// `for (let i = x.indexOf(10); i !== -1; i = x.indexOf(10, i + 1))`: the cost of a call, not of a scan.
const lines = mapAnonymous(16 * MiB);
const text = lines.buffer;
text.fill(Buffer.from(`${'x'.repeat(63)}\n`));
const countVia = {
  'Buffer#indexOf': () => {
    let n = 0;
    for (let i = text.indexOf(10); i !== -1; i = text.indexOf(10, i + 1)) n++;
    return n;
  },
  'mapping.indexOf': () => {
    let n = 0;
    for (let i = lines.indexOf(10); i !== -1; i = lines.indexOf(10, i + 1)) n++;
    return n;
  },
};
const perCall = { 'Buffer#indexOf': [], 'mapping.indexOf': [] };
for (let round = -1; round < ROUNDS; round++) {
  for (const name of round % 2 === 0 ? Object.keys(countVia) : Object.keys(countVia).reverse()) {
    const c0 = process.cpuUsage();
    const n = countVia[name]();
    const c = process.cpuUsage(c0);
    if (n !== text.length / 64) throw new Error(`${name} counted ${n} lines`);
    if (round >= 0) perCall[name].push(((c.user + c.system) * 1e3) / n); // round -1: warm-up
  }
}
lines.unmap();

const rows = [];
const json = [];
for (const needle of needles) {
  for (const [buffer, mapping] of [variants.slice(0, 2), variants.slice(2, 4)]) {
    const rb = results.get(`${needle.name}|${buffer.name}`);
    const rk = results.get(`${needle.name}|${mapping.name}`);
    const [b, k, bc, kc] = [stats(rb.wall), stats(rk.wall), stats(rb.cpu), stats(rk.cpu)];
    const ratio = k.median / b.median;
    const cpuRatio = kc.median / bc.median;
    rows.push([needle.name, buffer.name.replace('Buffer#', ''), fmt(b.median), fmt(k.median), fmtRatio(ratio), fmt(bc.median), fmt(kc.median), fmtRatio(cpuRatio)]);
    json.push({ needle: needle.name, method: buffer.name.replace('Buffer#', ''), wall: { buffer: b, mapping: k, ratio }, cpu: { buffer: bc, mapping: kc, ratio: cpuRatio } });
  }
}
const shortStats = { buffer: stats(perCall['Buffer#indexOf']), mapping: stats(perCall['mapping.indexOf']) };
if (args.has('json')) {
  console.log(JSON.stringify({ machine: machineInfo(), rounds: ROUNDS, size: SIZE, results: json, shortSearchNsPerCall: shortStats }, null, 2));
} else {
  console.log(`Searching 1 GiB of mapped memory for a needle that is not there: GB/s (wall) and GB per CPU second, medians of ${ROUNDS} interleaved rounds (Node ${process.version}, load ${machineInfo().loadAverage[0]})\n`);
  console.log(markdownTable(['needle', 'method', 'Buffer GB/s', 'mapping GB/s', 'ratio', 'Buffer GB/CPU-s', 'mapping GB/CPU-s', 'ratio (CPU)'], rows));
  console.log(
    `\nShort searches (a newline every 64 bytes, one call per line), CPU ns per call, median: ` +
      `Buffer#indexOf ${fmt(shortStats.buffer.median)}, mapping.indexOf ${fmt(shortStats.mapping.median)}`,
  );
}
