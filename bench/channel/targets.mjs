/**
 * The targets of the channel issue (issue 10), each a ratio of two rows measured in the same run of
 * the channel section (bench/channel.mjs): `summary(results)` is the table that opens the section
 * (bench/run.mjs renders it before the benchmarks' own tables), one line per target: the target, the
 * row that measures it, the ratio measured, whether it is met (and by how much it is missed), and the
 * same ratio for the floors (a plain ring in JavaScript and in C), which says how far the machine
 * itself lets anything go.
 *
 * A target may be measured by several rows (the issue says "`receiveInto` or `drain`", and leaves
 * the wait strategy open): the best of them is shown, named, and the notes give every one.
 */

/** Short names of the rows, for the table and the notes. */
const NAMES = {
  channelThroughputSmall: {
    block: "`send` → `receive`, 'block'",
    spin: "`send` → `receive`, 'spin'",
    hybrid: "`send` → `receive`, 'hybrid'",
    into: "`sendMany` → `receiveInto`, 'block'",
    intoSpin: "`sendMany` → `receiveInto`, 'spin'",
    drain: "`sendMany` → `drain`, 'block'",
    drainSpin: "`sendMany` → `drain`, 'spin'",
    asyncIter: "`sendAsync` → `for await`, 'async'",
    asyncIterHybrid: "`sendAsync` → `for await`, 'hybrid'",
    jsRing: 'JavaScript ring, publish per message',
    jsRingBatch: 'JavaScript ring, publish per 64',
    cRing: 'C ring, publish per message',
    cRingBatch: 'C ring, publish per 64',
  },
  channelThroughputLarge: {
    zeroCopy: '`reserve`/`commit` → `receiveInPlace`',
    zeroCopyDrain: '`reserve`/`commit` → `drain`',
    jsRing: 'JavaScript ring',
    cRing: 'C ring',
  },
  channelLatency: {
    spin: "`send`/`receive`, 'spin'",
    async: "`sendAsync`/`receiveAsync`, 'async'",
    asyncHybrid: "`sendAsync`/`receiveAsync`, 'hybrid'",
    jsAsync: 'bare `waitAsync`/`notify`',
    cSpin: 'C spinning',
  },
};

/**
 * The targets. `text`: the line of the table, `short`: its name in the notes; `bench`: the benchmark
 * whose rows are compared; `rows`: the rows that may meet it;
 * `ref`: the competitor; `limit` and `better`: 'higher' (throughput: row ÷ ref ≥ limit) or 'lower'
 * (round trip: row ÷ ref ≤ limit, or < limit with `strict`); `floors`: the floor rows [JavaScript, C]
 * whose ratio to the same competitor is shown beside.
 */
export const TARGETS = [
  {
    id: 'batchVsSocket',
    short: '64 B batches against the per-message socket',
    text: '64 B `sendMany` → `receiveInto` or `drain` ≥ 20× the Unix socket (one write per message)',
    bench: 'channelThroughputSmall',
    rows: ['into', 'drain', 'intoSpin', 'drainSpin'],
    ref: 'socket',
    limit: 20,
    better: 'higher',
    floors: ['jsRingBatch', 'cRingBatch'],
  },
  {
    id: 'batchVsSocketBatch',
    short: '64 B batches against the coalesced socket',
    text: '64 B `sendMany` → `receiveInto` or `drain` ≥ 3× the Unix socket with 64 messages per write',
    bench: 'channelThroughputSmall',
    rows: ['into', 'drain', 'intoSpin', 'drainSpin'],
    ref: 'socketBatch',
    limit: 3,
    better: 'higher',
    floors: ['jsRingBatch', 'cRingBatch'],
  },
  {
    id: 'perMessageVsSocket',
    short: '64 B per message against the socket',
    text: '64 B per message, `send` → `receive`, ≥ 10× the Unix socket (one write per message)',
    bench: 'channelThroughputSmall',
    rows: ['block', 'spin', 'hybrid'],
    ref: 'socket',
    limit: 10,
    better: 'higher',
    floors: ['jsRing', 'cRing'],
  },
  {
    id: 'asyncVsZmq',
    short: '64 B async against zeromq.js',
    text: '64 B async, `sendAsync` → `for await`, ≥ 5× zeromq.js PUSH/PULL',
    bench: 'channelThroughputSmall',
    rows: ['asyncIter', 'asyncIterHybrid'],
    ref: 'zeromq',
    limit: 5,
    better: 'higher',
    floors: ['jsRing', 'cRing'],
  },
  {
    id: 'spinRoundTrip',
    short: 'Spin round trip',
    text: "Round trip, `wait: 'spin'`, within 2× of bare JavaScript spinning on one shared word",
    bench: 'channelLatency',
    rows: ['spin'],
    ref: 'jsSpin',
    limit: 2,
    better: 'lower',
    floors: [null, 'cSpin'],
  },
  {
    id: 'asyncRoundTrip',
    short: 'Async round trip against the socket',
    text: 'Async round trip (`sendAsync`/`receiveAsync`) below the Unix socket’s',
    bench: 'channelLatency',
    rows: ['async', 'asyncHybrid'],
    ref: 'socket',
    limit: 1,
    strict: true,
    better: 'lower',
    floors: ['jsAsync', null],
  },
  {
    id: 'largeZeroCopy',
    short: '64 KiB zero copy against the socket',
    text: '64 KiB zero copy, `reserve`/`commit` → `receiveInPlace`, ≥ 6× the Unix socket',
    bench: 'channelThroughputLarge',
    rows: ['zeroCopy'],
    ref: 'socket',
    limit: 6,
    better: 'higher',
    floors: ['jsRing', 'cRing'],
  },
];

/** Ratios within this of 1 are a tie: medians of interleaved runs still move by a few percent. */
const TIE = 0.05;

/** The median figure of a row: messages/s (throughput) or p50 µs (round trip); undefined if not measured. */
function valueOf(results, bench, key) {
  const b = results?.[bench];
  if (!b) return undefined;
  if (bench === 'channelLatency') return b.us?.[key]?.p50.median;
  return b.results?.[key]?.msgsPerSec.median;
}

const nameOf = (bench, key) => NAMES[bench]?.[key] ?? key;

/** Every target evaluated on `results` (the section's results by benchmark id). */
export function evaluate(results) {
  return TARGETS.map((t) => {
    const ref = valueOf(results, t.bench, t.ref);
    const ratio = (key) => {
      const v = valueOf(results, t.bench, key);
      return v !== undefined && ref !== undefined && ref > 0 ? v / ref : null;
    };
    const candidates = t.rows.map((key) => ({ key, name: nameOf(t.bench, key), ratio: ratio(key) })).filter((c) => c.ratio !== null);
    const better = (a, b) => (t.better === 'higher' ? a.ratio > b.ratio : a.ratio < b.ratio);
    const best = candidates.reduce((a, c) => (a === null || better(c, a) ? c : a), null);
    let met = null;
    if (best !== null) {
      met = t.better === 'higher' ? best.ratio >= t.limit : t.strict ? best.ratio < t.limit : best.ratio <= t.limit;
    }
    const floors = t.floors.map((key) => (key === null ? null : { key, name: nameOf(t.bench, key), ratio: ratio(key) }));
    return { ...t, refMeasured: ref !== undefined, best, candidates, met, floors };
  });
}

function fmtX(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  return `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)}×`;
}

function metCell(e) {
  if (e.met === null) return 'not measured';
  const r = e.best.ratio;
  if (e.strict && Math.abs(r - e.limit) <= TIE * e.limit) return e.met ? `met, within ${TIE * 100}% (a tie)` : `**NOT met**, within ${TIE * 100}% (a tie)`;
  if (e.met) return 'met';
  // by how much: the factor the row still lacks
  const short = e.better === 'higher' ? e.limit / r : r / e.limit;
  return `**NOT met** (${fmtX(short)} short)`;
}

/**
 * The targets table of the channel section, or null when none of its benchmarks ran. `meta`: the
 * section's run (machine, load average), for a warning when the machine was busy.
 */
export function summary(results, meta) {
  if (!results || !TARGETS.some((t) => results[t.bench])) return null;
  const ev = evaluate(results);
  const rows = ev.map((e) => [
    e.text,
    e.best ? e.best.name : '–',
    e.best ? fmtX(e.best.ratio) : '–',
    metCell(e),
    e.floors[0]?.ratio != null ? fmtX(e.floors[0].ratio) : '–',
    e.floors[1]?.ratio != null ? fmtX(e.floors[1].ratio) : '–',
  ]);
  const table = [
    '| Target | Best row measuring it | Measured ratio | Met? | JavaScript floor, same ratio | C floor, same ratio |',
    '| --- | --- | ---: | --- | ---: | ---: |',
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
  const notes = [
    'Each ratio divides two medians of the same interleaved runs (tables below): messages/s for throughput (row ÷ competitor: higher is better), p50 round trip for latency (row ÷ reference: lower is better). ' +
      '"Short" is the factor still missing. The floor columns give the same ratio for a plain single-producer ring in JavaScript and in C over shared memory (the JavaScript floor of async targets: bare `waitAsync`/`notify`; of the spin target, the C row spinning on one word): a target that the floors miss too is out of reach on this machine.',
  ];
  const m = meta?.machine;
  const load = m ? Math.max(m.loadAverage?.[0] ?? 0, m.loadAverageEnd?.[0] ?? 0) : 0;
  if (m && load > 0.75 * m.cores) {
    notes.unshift(
      `**A noisy run**: the load average reached ${load.toFixed(1)} on ${m.cores} cores during it (other work on the machine). ` +
        'Each ratio still compares rows of the same interleaved runs, but the rows that spin (`\'spin\'`, and for 50 µs per wait `\'hybrid\'` and the floors; bare spinning) need a core per process and suffer most when they must share one.',
    );
  }
  for (const e of ev) {
    if (e.candidates.length > 1) {
      notes.push(`${e.short}, every row measuring it: ${e.candidates.map((c) => `${c.name} ${fmtX(c.ratio)}`).join(', ')}.`);
    }
    if (!e.refMeasured) notes.push(`${e.short}: the reference row (${e.ref}) was not measured in this run.`);
    else if (e.best === null) notes.push(`${e.short}: no row measuring it completed in this run (${e.rows.join(', ')}: see the failures under its table).`);
  }
  return { title: 'Targets', table, notes };
}
