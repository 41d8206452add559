/**
 * Hand-written SVG bar charts for the benchmark sections (no dependency): panels of horizontal bars,
 * one row per variant, on a log or a linear scale, with optional min–max whiskers and reference
 * lines (targets), stacked into one SVG document with a footnote. Used by bench/channel/chart.mjs
 * (docs/channel-benchmark.svg) and bench/cp.mjs (docs/cli-benchmark.svg).
 */

export const W = 960;
const LABEL_W = 330;
const PLOT_X = LABEL_W + 10;
const PLOT_W = W - PLOT_X - 90;
const BAR_H = 16;
const ROW_H = 22;
export const FONT = 'font-family="Helvetica, Arial, sans-serif"';

export function esc(s) {
  return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** A figure for a chart: about three significant digits. */
export function sig(v) {
  const a = Math.abs(v);
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  return v.toPrecision(2);
}

/** Scale of a panel: `x(v)` and the grid lines `[{ v, major }]`, log (whole decades) or linear from 0. */
function scaleOf(kind, values) {
  if (kind === 'linear') {
    const max = Math.max(...values) * 1.1;
    // a step of 1, 2 or 5 × 10^k giving 4 to 10 grid lines
    const decade = 10 ** Math.floor(Math.log10(max / 4));
    const step = [1, 2, 5, 10].map((m) => m * decade).find((s) => max / s <= 10);
    const hi = Math.ceil(max / step) * step;
    const grid = [];
    for (let i = 0; i * step <= hi * 1.0001; i++) grid.push({ v: i * step, major: true, label: true });
    return { x: (v) => PLOT_X + (PLOT_W * v) / hi, grid, note: '' };
  }
  // whole decades, with room on both sides (a value on a decade is not drawn on the edge)
  const lo = 10 ** Math.floor(Math.log10(Math.min(...values) * 0.99));
  const hi = 10 ** Math.ceil(Math.log10(Math.max(...values) * 1.25));
  const grid = [];
  for (let d = lo; d <= hi * 1.0001; d *= 10) {
    for (const m of [1, 2, 5]) {
      const v = d * m;
      if (v > hi * 1.0001) break;
      grid.push({ v, major: m === 1, label: m === 1 || hi / lo <= 1000 });
    }
  }
  return { x: (v) => PLOT_X + (PLOT_W * (Math.log10(v) - Math.log10(lo))) / (Math.log10(hi) - Math.log10(lo)), grid, note: ' (log scale)' };
}

/**
 * One panel at vertical offset y. rows: [{ key, value, min?, max? }] (display units; min and max
 * draw a whisker); label(key) and color(key) give each row's label and bar colour; refs:
 * [{ value, label, dashed, color }] are vertical lines across the panel; scale: 'log' or 'linear'.
 * Returns { svg, height }.
 */
export function panel({ y, title, subtitle, rows, unit, refs = [], scale = 'log', label = (k) => k, color = () => '#2b6cb0' }) {
  const parts = [];
  const values = [...rows.flatMap((r) => [r.value, r.max ?? 0]), ...refs.map((r) => r.value)].filter((v) => v > 0);
  const { x, grid, note } = scaleOf(scale, values);
  parts.push(`<text x="10" y="${y + 18}" ${FONT} font-size="15" font-weight="bold">${esc(title)}</text>`);
  parts.push(`<text x="10" y="${y + 36}" ${FONT} font-size="12" fill="#555">${esc(subtitle)}</text>`);
  const top = y + 64;
  const plotH = rows.length * ROW_H;
  for (const g of grid) {
    const gx = x(g.v).toFixed(1);
    parts.push(`<line x1="${gx}" y1="${top - 4}" x2="${gx}" y2="${top + plotH}" stroke="${g.major ? '#ccc' : '#eee'}" stroke-width="1"/>`);
    if (g.label) {
      parts.push(`<text x="${gx}" y="${top + plotH + 14}" ${FONT} font-size="11" fill="#555" text-anchor="middle">${esc(sig(g.v))}</text>`);
    }
  }
  parts.push(`<text x="${PLOT_X + PLOT_W / 2}" y="${top + plotH + 30}" ${FONT} font-size="11" fill="#555" text-anchor="middle">${esc(unit)}${note}</text>`);
  rows.forEach((r, i) => {
    const by = top + i * ROW_H;
    parts.push(`<text x="${LABEL_W}" y="${by + BAR_H - 3}" ${FONT} font-size="12" text-anchor="end">${esc(label(r.key))}</text>`);
    if (!(r.value > 0)) {
      parts.push(`<text x="${PLOT_X + 4}" y="${by + BAR_H - 3}" ${FONT} font-size="12" fill="#c00">failed</text>`);
      return;
    }
    const bw = Math.max(1, x(r.value) - PLOT_X);
    parts.push(`<rect x="${PLOT_X}" y="${by}" width="${bw.toFixed(1)}" height="${BAR_H}" fill="${color(r.key)}"/>`);
    let end = PLOT_X + bw;
    if (r.min > 0 && r.max > 0) {
      const [x1, x2, cy] = [x(r.min).toFixed(1), x(r.max).toFixed(1), by + BAR_H / 2];
      parts.push(`<path d="M${x1} ${cy}H${x2}M${x1} ${cy - 4}V${cy + 4}M${x2} ${cy - 4}V${cy + 4}" stroke="#1a202c" stroke-width="1" fill="none"/>`);
      end = Math.max(end, x(r.max));
    }
    parts.push(`<text x="${(end + 4).toFixed(1)}" y="${by + BAR_H - 3}" ${FONT} font-size="11" stroke="#fff" stroke-width="3" paint-order="stroke">${esc(sig(r.value))}</text>`);
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

/** The line of a chart's footnote that says which run drew it: `Full run of DATE: CPU, ...`. */
export function runLine(meta) {
  const m = meta?.machine;
  if (!m) return '';
  return (
    `${meta.quick ? 'Quick run' : 'Full run'} of ${meta.date}: ${m.cpu}, ${m.cores} cores, Node ${m.node}; ` +
    `load average at start ${m.loadAverage.join(' / ')}${m.loadAverageEnd ? `, at end ${m.loadAverageEnd.join(' / ')}` : ''}.`
  );
}

/** A whole SVG document: `panels` (the arguments of {@link panel}, without y) stacked, then the footnote lines. */
export function svgDocument(panels, foot) {
  let y = 10;
  const body = [];
  for (const p of panels) {
    const { svg, height } = panel({ ...p, y });
    body.push(svg);
    y += height + 16;
  }
  const lines = foot.filter(Boolean);
  lines.forEach((line, i) => body.push(`<text x="10" y="${y + 4 + 15 * i}" ${FONT} font-size="11" fill="#555">${esc(line)}</text>`));
  const height = y + 15 * lines.length + 6;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${height}" viewBox="0 0 ${W} ${height}">`,
    `<rect width="${W}" height="${height}" fill="#fff"/>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}
