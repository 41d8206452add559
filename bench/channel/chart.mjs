/**
 * The chart of the channel benchmarks: docs/channel-benchmark.svg, hand-written SVG (no dependency).
 * Three panels of horizontal bars on log scales: 64-byte throughput (messages/s), 64 KiB throughput
 * (bytes/s), and 64-byte round trip (p50, µs); mmapkit channel rows in blue, the other transports in
 * grey, the Unix socket (the reference of the targets) darker, with a dashed line at each target.
 * Called by bench/run.mjs when it updates docs/benchmarks.md.
 */
import { join } from 'node:path';
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

const W = 960;
const LABEL_W = 330;
const PLOT_X = LABEL_W + 10;
const PLOT_W = W - PLOT_X - 90;
const BAR_H = 16;
const ROW_H = 22;
const FONT = 'font-family="Helvetica, Arial, sans-serif"';

function esc(s) {
  return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function sig(v) {
  const a = Math.abs(v);
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  return v.toPrecision(2);
}

/**
 * One panel at vertical offset y: rows [{ key, value }] (value in display units), log scale.
 * refs: [{ value, label, dashed, color }]. Returns { svg, height }.
 */
function panel({ y, title, subtitle, rows, unit, refs = [] }) {
  const parts = [];
  const values = [...rows.map((r) => r.value), ...refs.map((r) => r.value)].filter((v) => v > 0);
  // whole decades, with room on both sides (a value on a decade is not drawn on the edge)
  const lo = 10 ** Math.floor(Math.log10(Math.min(...values) * 0.99));
  const hi = 10 ** Math.ceil(Math.log10(Math.max(...values) * 1.25));
  const x = (v) => PLOT_X + (PLOT_W * (Math.log10(v) - Math.log10(lo))) / (Math.log10(hi) - Math.log10(lo));
  parts.push(`<text x="10" y="${y + 18}" ${FONT} font-size="15" font-weight="bold">${esc(title)}</text>`);
  parts.push(`<text x="10" y="${y + 36}" ${FONT} font-size="12" fill="#555">${esc(subtitle)}</text>`);
  const top = y + 64;
  const plotH = rows.length * ROW_H;
  // grid: decades, with 2 and 5 in between
  for (let d = lo; d <= hi * 1.0001; d *= 10) {
    for (const m of [1, 2, 5]) {
      const v = d * m;
      if (v > hi * 1.0001) break;
      const gx = x(v).toFixed(1);
      parts.push(`<line x1="${gx}" y1="${top - 4}" x2="${gx}" y2="${top + plotH}" stroke="${m === 1 ? '#ccc' : '#eee'}" stroke-width="1"/>`);
      if (m === 1 || (hi / lo <= 1000)) {
        parts.push(`<text x="${gx}" y="${top + plotH + 14}" ${FONT} font-size="11" fill="#555" text-anchor="middle">${esc(sig(v))}</text>`);
      }
    }
  }
  parts.push(`<text x="${PLOT_X + PLOT_W / 2}" y="${top + plotH + 30}" ${FONT} font-size="11" fill="#555" text-anchor="middle">${esc(unit)} (log scale)</text>`);
  rows.forEach((r, i) => {
    const by = top + i * ROW_H;
    const channel = r.key in SHORT && SHORT[r.key].startsWith('channel');
    const color = r.key === 'socket' ? '#4a5568' : channel ? '#2b6cb0' : '#a0aec0';
    parts.push(`<text x="${LABEL_W}" y="${by + BAR_H - 3}" ${FONT} font-size="12" text-anchor="end">${esc(SHORT[r.key] ?? r.key)}</text>`);
    if (!(r.value > 0)) {
      parts.push(`<text x="${PLOT_X + 4}" y="${by + BAR_H - 3}" ${FONT} font-size="12" fill="#c00">failed</text>`);
      return;
    }
    const bw = Math.max(1, x(r.value) - PLOT_X);
    parts.push(`<rect x="${PLOT_X}" y="${by}" width="${bw.toFixed(1)}" height="${BAR_H}" fill="${color}"/>`);
    parts.push(`<text x="${(PLOT_X + bw + 4).toFixed(1)}" y="${by + BAR_H - 3}" ${FONT} font-size="11" stroke="#fff" stroke-width="3" paint-order="stroke">${esc(sig(r.value))}</text>`);
  });
  for (const ref of refs) {
    if (!(ref.value > 0)) continue;
    const rx = x(ref.value).toFixed(1);
    parts.push(
      `<line x1="${rx}" y1="${top - 8}" x2="${rx}" y2="${top + plotH}" stroke="${ref.color ?? '#c53030'}" stroke-width="1.5"${ref.dashed ? ' stroke-dasharray="5,3"' : ''}/>`,
    );
    parts.push(`<text x="${rx}" y="${top - 11}" ${FONT} font-size="11" fill="${ref.color ?? '#c53030'}" text-anchor="middle">${esc(ref.label)}</text>`);
  }
  return { svg: parts.join('\n'), height: 64 + plotH + 44 };
}

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
  let y = 10;
  const body = [];
  for (const p of panels) {
    const { svg, height } = panel({ ...p, y });
    body.push(svg);
    y += height + 16;
  }
  const m = meta?.machine;
  const foot = [
    'mmapkit channel benchmark (bench/channel.mjs, see docs/benchmarks.md). Blue: mmapkit channels; grey: other transports; dark grey: the Unix socket.',
    m ? `${meta.quick ? 'Quick run' : 'Full run'} of ${meta.date}: ${m.cpu}, ${m.cores} cores, Node ${m.node}; load average at start ${m.loadAverage.join(' / ')}${m.loadAverageEnd ? `, at end ${m.loadAverageEnd.join(' / ')}` : ''}.` : '',
  ].filter(Boolean);
  foot.forEach((line, i) => body.push(`<text x="10" y="${y + 4 + 15 * i}" ${FONT} font-size="11" fill="#555">${esc(line)}</text>`));
  const height = y + 15 * foot.length + 6;
  const svg = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${height}" viewBox="0 0 ${W} ${height}">`,
    `<rect width="${W}" height="${height}" fill="#fff"/>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
  return { path: join(REPO_DIR, 'docs', 'channel-benchmark.svg'), svg };
}
