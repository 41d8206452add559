/**
 * The chart of the channel benchmarks: docs/channel-benchmark.svg, hand-written SVG (no dependency).
 * Three panels of horizontal bars on log scales: 64-byte throughput (messages/s), 64 KiB throughput
 * (bytes/s), and 64-byte round trip (p50, µs); mmapkit channel rows in blue, the floors (plain rings
 * in JavaScript and C, bare spinning and waiting on one word) in green, the other transports in grey,
 * the Unix socket (the reference of most targets) darker, with a dashed line at each target that the
 * panel's rows are held to. Called by bench/run.mjs when it updates docs/benchmarks.md; the drawing
 * is bench/chart.mjs's.
 */
import { join } from 'node:path';
import { runLine, svgDocument } from '../chart.mjs';
import { REPO_DIR } from '../lib.mjs';

const SHORT = {
  block: "channel · 'block', send → receive",
  spin: "channel · 'spin', send → receive",
  spinZeroCopy: "channel · 'spin', reserve → receiveInPlace",
  hybrid: "channel · 'hybrid', send → receive",
  async: "channel · 'async', sendAsync → receiveAsync",
  asyncHybrid: "channel · 'hybrid', sendAsync → receiveAsync",
  many: "channel · 'block', sendMany → receiveMany",
  into: "channel · 'block', sendMany → receiveInto",
  intoSpin: "channel · 'spin', sendMany → receiveInto",
  drain: "channel · 'block', sendMany → drain",
  drainSpin: "channel · 'spin', sendMany → drain",
  asyncIter: "channel · 'async', sendAsync → for await",
  asyncIterHybrid: "channel · 'hybrid', sendAsync → for await",
  asyncDrain: "channel · 'async', sendManyAsync → drainAsync",
  zeroCopy: 'channel · reserve/commit → receiveInPlace',
  zeroCopyDrain: 'channel · reserve/commit → drain',
  jsRing: 'floor: JavaScript ring, publish per message',
  jsRingBatch: 'floor: JavaScript ring, publish per 64',
  cRing: 'floor: C ring, publish per message',
  cRingBatch: 'floor: C ring, publish per 64',
  jsSpin: 'bare JavaScript spinning on one word',
  jsAsync: 'bare waitAsync/notify on one word',
  cSpin: 'C spinning on one word',
  socket: 'Unix domain socket (reference)',
  socketBatch: 'Unix socket, 64 messages per write()',
  fifo: 'pipe (FIFO)',
  ipc: 'child_process IPC',
  worker: 'worker_threads postMessage (one process)',
  zeromq: 'zeromq.js PUSH/PULL, ipc://',
};

/** Labels that differ for 64 KiB messages (sent one by one, received in batches). */
const SHORT_LARGE = {
  into: "channel · 'block', send → receiveInto",
  drain: "channel · 'block', send → drain",
};

/** Rows that are not a transport: the floors and the bare references. */
const FLOORS = new Set(['jsRing', 'jsRingBatch', 'cRing', 'cRingBatch', 'jsSpin', 'jsAsync', 'cSpin']);

/** Bar colour: channel rows blue, floors green, the Unix socket dark grey, other transports grey. */
function color(key) {
  if (key === 'socket') return '#4a5568';
  if (FLOORS.has(key)) return '#38a169';
  return SHORT[key]?.startsWith('channel') ? '#2b6cb0' : '#a0aec0';
}

const label = (key) => SHORT[key] ?? key;
const labelLarge = (key) => SHORT_LARGE[key] ?? label(key);

/**
 * The SVG from the section's results ({ channelLatency, channelThroughputSmall,
 * channelThroughputLarge }, any may be missing). Returns { path, svg } or null when there is nothing.
 */
export function chart(results, meta) {
  const panels = [];
  const small = results.channelThroughputSmall;
  const large = results.channelThroughputLarge;
  const lat = results.channelLatency;
  const rowsOf = (r, f) => Object.keys(r).map((key) => ({ key, value: r[key] ? f(r[key]) : 0, min: r[key] ? f(r[key], 'min') : 0, max: r[key] ? f(r[key], 'max') : 0 }));
  if (small) {
    const r = small.results;
    const sock = r.socket?.msgsPerSec.median;
    panels.push({
      title: '64-byte messages, one way (longer is better)',
      subtitle: 'million messages/s, median of runs (whiskers: min–max); dashed: the targets, 20× (batches) and 10× (per message) the Unix socket',
      unit: 'million messages/s',
      rows: rowsOf(r, (x, s = 'median') => x.msgsPerSec[s] / 1e6),
      refs: sock ? [{ value: (10 * sock) / 1e6, label: '10×', dashed: true }, { value: (20 * sock) / 1e6, label: '20×', dashed: true }] : [],
    });
  }
  if (large) {
    const r = large.results;
    const sock = r.socket?.bytesPerSec.median;
    panels.push({
      title: '64 KiB messages, one way (longer is better)',
      subtitle: 'GiB/s, median of runs (whiskers: min–max); dashed: the zero-copy target, 6× the Unix socket',
      unit: 'GiB/s',
      rows: rowsOf(r, (x, s = 'median') => x.bytesPerSec[s] / 2 ** 30),
      label: labelLarge,
      refs: sock ? [{ value: (6 * sock) / 2 ** 30, label: 'target 6×', dashed: true }] : [],
    });
  }
  if (lat) {
    const u = lat.us;
    const sock = u.socket?.p50.median;
    const bare = u.jsSpin?.p50.median;
    panels.push({
      title: 'Round trip of a 64-byte message (shorter is better)',
      subtitle: 'p50 in µs, median of runs (whiskers: min–max of the runs’ p50); dashed: 2× bare JavaScript spinning; solid grey: the Unix socket',
      unit: 'µs',
      rows: rowsOf(u, (x, s = 'median') => x.p50[s]),
      refs: [...(bare ? [{ value: 2 * bare, label: '2× bare spin', dashed: true }] : []), ...(sock ? [{ value: sock, label: 'socket', color: '#4a5568' }] : [])],
    });
  }
  if (panels.length === 0) return null;
  const foot = [
    'mmapkit channel benchmark (bench/channel.mjs; docs/benchmarks.md). Blue: channels; green: floors (plain rings, bare words); grey: others; dark: the socket.',
    runLine(meta),
  ];
  const svg = svgDocument(panels.map((p) => ({ label, ...p, color })), foot);
  return { path: join(REPO_DIR, 'docs', 'channel-benchmark.svg'), svg };
}
