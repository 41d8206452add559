/**
 * The chart of the channel benchmarks: docs/channel-benchmark.svg, hand-written SVG (no dependency).
 * Three panels of horizontal bars on log scales: 64-byte throughput (messages/s), 64 KiB throughput
 * (bytes/s), and 64-byte round trip (p50, µs); mmapkit channel rows in blue, the other transports in
 * grey, the Unix socket (the reference of the targets) darker, with a dashed line at each target.
 * Called by bench/run.mjs when it updates docs/benchmarks.md; the drawing is bench/chart.mjs's.
 */
import { join } from 'node:path';
import { runLine, svgDocument } from '../chart.mjs';
import { REPO_DIR } from '../lib.mjs';

const SHORT = {
  block: "channel · 'block', send → receive",
  spin: "channel · 'spin', send → receive",
  hybrid: "channel · 'hybrid', send → receive",
  async: "channel · 'async', sendAsync → receiveAsync",
  asyncIter: "channel · 'async', sendAsync → for await",
  asyncHybrid: "channel · 'hybrid', sendAsync → receiveAsync",
  inPlace: "channel · 'block', send → receiveInPlace",
  zeroCopy: 'channel · reserve/commit → receiveInPlace',
  socket: 'Unix domain socket (reference)',
  socketBatch: 'Unix socket, 64 messages per write()',
  fifo: 'pipe (FIFO)',
  ipc: 'child_process IPC',
  worker: 'worker_threads postMessage (one process)',
};

/** Bar colour: mmapkit channel rows in blue, the Unix socket darker grey, other transports grey. */
function color(key) {
  const channel = key in SHORT && SHORT[key].startsWith('channel');
  return key === 'socket' ? '#4a5568' : channel ? '#2b6cb0' : '#a0aec0';
}

const label = (key) => SHORT[key] ?? key;

/**
 * The SVG from the section's results ({ channelLatency, channelThroughputSmall,
 * channelThroughputLarge }, any may be missing). Returns { path, svg } or null when there is nothing.
 */
export function chart(results, meta) {
  const panels = [];
  const small = results.channelThroughputSmall;
  const large = results.channelThroughputLarge;
  const lat = results.channelLatency;
  if (small) {
    const r = small.results;
    const sock = r.socket?.msgsPerSec.median;
    panels.push({
      title: '64-byte messages, one way (longer is better)',
      subtitle: 'million messages per second, median of runs; dashed: the target, 10× the Unix socket',
      unit: 'million messages/s',
      rows: Object.keys(r).map((key) => ({ key, value: (r[key]?.msgsPerSec.median ?? 0) / 1e6 })),
      refs: sock ? [{ value: (10 * sock) / 1e6, label: 'target 10×', dashed: true }] : [],
    });
  }
  if (large) {
    const r = large.results;
    const sock = r.socket?.bytesPerSec.median;
    panels.push({
      title: '64 KiB messages, one way (longer is better)',
      subtitle: 'GiB per second, median of runs; dashed: the target, 3× the Unix socket',
      unit: 'GiB/s',
      rows: Object.keys(r).map((key) => ({ key, value: (r[key]?.bytesPerSec.median ?? 0) / 2 ** 30 })),
      refs: sock ? [{ value: (3 * sock) / 2 ** 30, label: 'target 3×', dashed: true }] : [],
    });
  }
  if (lat) {
    const u = lat.us;
    const sock = u.socket?.p50.median;
    panels.push({
      title: 'Round trip of a 64-byte message (shorter is better)',
      subtitle: 'p50 in µs, median of runs; dashed: spin target 1 µs; solid grey: the Unix socket (async target: below it)',
      unit: 'µs',
      rows: Object.keys(u).map((key) => ({ key, value: u[key]?.p50.median ?? 0 })),
      refs: [{ value: 1, label: '1 µs', dashed: true }, ...(sock ? [{ value: sock, label: 'socket', color: '#4a5568' }] : [])],
    });
  }
  if (panels.length === 0) return null;
  const foot = [
    'mmapkit channel benchmark (bench/channel.mjs, see docs/benchmarks.md). Blue: mmapkit channels; grey: other transports; dark grey: the Unix socket.',
    runLine(meta),
  ];
  const svg = svgDocument(panels.map((p) => ({ ...p, label, color })), foot);
  return { path: join(REPO_DIR, 'docs', 'channel-benchmark.svg'), svg };
}
