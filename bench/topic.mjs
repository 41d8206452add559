/**
 * Benchmark of topics (issue 12: broadcast over shared memory, one ring that every subscriber reads
 * with its own cursor): 64-byte messages from one publisher process to N = 1, 2 and 4 subscriber
 * processes, messages/s received per subscriber, against the same stream sent through a Unix socket
 * to each subscriber and through zeromq.js PUB/SUB over ipc://. The section opens with the issue's
 * target (with 4 subscribers, each receives at least 10× what it would over its own socket),
 * measured in this run (`summary`).
 *
 * Each run starts N subscriber processes and one publisher process (bench/topic/peer.mjs; this
 * process only orchestrates and never blocks): the subscribers get ready (subscribed, listening or
 * connected: each says so on stdout), then the parent tells the publisher to go, so that no
 * subscriber misses the start and no start-up is timed. The topic is made here with
 * `Topic.create(SharedMemory.anonymous(...), { publishers: 1 })` and handed to every child with
 * `childOptions()`; the children open it from `SharedMemory.inherited()`; publisher and subscribers
 * use the same wait strategy (`'block'` by default: 5 processes share 2 cores here, so nothing spins
 * unless a row says so). Rows:
 *
 *  - topic / topicHybrid: `publish()` per message → `receive()` (a Buffer per message), `'block'`,
 *    and `'hybrid'` (spin 50 µs, then sleep).
 *  - into / drain: `publishMany()` of 64 messages → `receiveInto()` (a 64 KiB target, up to 1024
 *    per call) or `drain(handler, 1024)`.
 *  - socket / socketBatch: a Unix socket per subscriber (each listens, the publisher connects to all);
 *    the publisher writes every message, length-prefixed, to each socket (one `write()` per message
 *    and socket, or 64 messages coalesced per `write()`), waiting for 'drain' where `write()` says
 *    so; each subscriber splits its stream at the length prefixes and checks every message.
 *  - zeromq: zeromq.js PUB bound at ipc://, SUBs connected and subscribed to everything; PUB never
 *    waits, it drops what a subscriber's queue (high-water mark, 1000 by default) cannot take. The
 *    publisher sends hellos until every subscriber has received one (connected, subscription known),
 *    then the stream, then end markers. Each subscriber counts what it received per second; what it
 *    lost is in the notes.
 *
 * Every message is checked by every subscriber (bench/channel/format.mjs: its sequence number and the
 * checksum of its 16 words): for topic and socket rows message k must be the k-th received, and each
 * subscriber must have received as many as the publisher published (nothing lost, nothing repeated,
 * in order), else the run counts errors and the result has `checksumsMatch: false`. zeromq rows: the
 * numbers must only grow (gaps are losses, counted; repeats or a bad checksum are errors).
 *
 * Timing, in each subscriber: from the first message numbered past the first tenth of the stream
 * (the warm-up) to the last; messages/s = messages timed ÷ that time. A run's figure is its
 * **slowest** subscriber's rate (each subscriber must receive it: "each receives"); the tables give
 * the median over interleaved runs (run 1 of every variant and N, then run 2, ...; fresh processes
 * each time) with min–max, and the median subscriber and the total delivered besides.
 *
 * No hang: every receive and publish has a timeout, the socket subscribers have a watchdog, the
 * publisher stops at a time budget (the run is then marked truncated), every run has a hard limit,
 * and every child is killed when a run ends without its clean exit.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SharedMemory, Topic } from '../dist/index.js';
import { checkSmall, fillSmallI32, SMALL } from './channel/format.mjs';
import { childDied, finishChild, killChild } from './ipc-latency.mjs';
import { fmt, fmtRatio, markdownTable, round, runInterleaved, stats } from './lib.mjs';
import { loadZmq, peerPool } from './peers.mjs';

const PEER = fileURLToPath(new URL('./topic/peer.mjs', import.meta.url));

/** A receive or publish without progress for this long fails the run (ms). */
const TIMEOUT_MS = 5000;
/** Time for the children to start and get ready, and for the first message (ms). */
const START_TIMEOUT_MS = 20_000;
/** Messages per `publishMany` call and per coalesced socket write. */
const BATCH = 64;
/** At most this many messages per batch receive (`receiveInto`, `drain`). */
const RECEIVE_MAX = 1024;
/** The subscriber counts of the benchmark. */
const SUBSCRIBERS = [1, 2, 4];
/** Topic geometry: the default capacity (1 MiB), messages of 64 bytes at most. */
const GEOMETRY = { capacity: 1024 * 1024, maxMessageSize: SMALL };

/**
 * Variants, in table order. `rate`: a guess of the slowest subscriber's messages/s per N (zeromq:
 * of the publisher, which never waits), which sets the messages per run (about `seconds` of
 * publishing).
 */
const VARIANTS = [
  { key: 'topic', group: 'message', transport: 'topic', wait: 'block', method: 'publish', recv: 'receive', rate: { 1: 1e6, 2: 6e5, 4: 3e5 }, label: "Topic, `'block'`: `publish` → `receive`" },
  { key: 'topicHybrid', group: 'message', transport: 'topic', wait: 'hybrid', method: 'publish', recv: 'receive', rate: { 1: 1e6, 2: 6e5, 4: 3e5 }, label: "Topic, `'hybrid'`: `publish` → `receive`" },
  { key: 'into', group: 'batch', transport: 'topic', wait: 'block', method: 'publishMany', recv: 'into', rate: { 1: 3e6, 2: 2e6, 4: 1e6 }, label: `Topic, \`'block'\`: \`publishMany\` (${BATCH}) → \`receiveInto\`` },
  { key: 'drain', group: 'batch', transport: 'topic', wait: 'block', method: 'publishMany', recv: 'drain', rate: { 1: 3e6, 2: 2e6, 4: 1e6 }, label: `Topic, \`'block'\`: \`publishMany\` (${BATCH}) → \`drain\`` },
  { key: 'socket', group: 'other', transport: 'socket', batch: 1, rate: { 1: 2e5, 2: 8e4, 4: 2.5e4 }, label: 'Unix socket per subscriber (`net`), one `write()` per message and subscriber' },
  { key: 'socketBatch', group: 'other', transport: 'socket', batch: BATCH, rate: { 1: 1.5e6, 2: 1e6, 4: 4e5 }, label: `Unix socket per subscriber, ${BATCH} messages coalesced per \`write()\`` },
  { key: 'zeromq', group: 'other', transport: 'zeromq', rate: { 1: 1.2e5, 2: 1.2e5, 4: 1.2e5 }, label: 'zeromq.js PUB/SUB over `ipc://`, `await send()` → `for await`' },
];

const median = (xs) => stats(xs).median;

/** The peers of this module's runs (bench/peers.mjs). */
const peers = peerPool(PEER);
const spawnPeer = peers.spawn;
const withLimit = peers.withLimit;

/** Node flags for the children from now on (a profile run adds --cpu-prof). */
export function setChildExecArgv(argv) {
  peers.setExecArgv(argv);
}

/** Resolves once the child printed its ready line; rejects if it exits first or takes too long. */
function whenReady(child, what) {
  return new Promise((resolve, reject) => {
    const look = () => child.stdout().includes('"ready":true');
    if (look()) return resolve();
    const timer = setTimeout(() => reject(new Error(`${what}: not ready within ${START_TIMEOUT_MS / 1000} s`)), START_TIMEOUT_MS);
    const onData = () => {
      if (!look()) return;
      child.proc.stdout.off('data', onData);
      clearTimeout(timer);
      resolve();
    };
    child.proc.stdout.on('data', onData);
    childDied(child).then((err) => {
      clearTimeout(timer);
      reject(new Error(`${what}: ${err.message}`));
    });
  });
}

/** Wait for a child's clean exit and report; a failure names the child. */
async function finished(child, what) {
  try {
    return await finishChild(child);
  } catch (err) {
    throw new Error(`${what}: ${err.message}`);
  }
}

/** One run of variant `v` with `n` subscribers: the figures of every subscriber and of the publisher. */
async function runOnce(v, n, cfg) {
  const total = cfg.counts[v.key][n];
  const warmup = Math.floor(total / 10);
  const base = { transport: v.transport, total, warmup, timeoutMs: TIMEOUT_MS, startTimeoutMs: START_TIMEOUT_MS };
  let mem;
  let topic;
  let dir;
  const subs = [];
  let pub;
  try {
    let subOptions = () => ({ stdio: ['ignore', 'pipe', 'pipe'] });
    let pubOptions = { stdio: ['pipe', 'pipe', 'pipe'] };
    const extra = {};
    if (v.transport === 'topic') {
      mem = SharedMemory.anonymous(Topic.byteLength(GEOMETRY));
      topic = Topic.create(mem, { ...GEOMETRY, publishers: 1 });
      subOptions = () => mem.childOptions({ stdio: ['ignore', 'pipe', 'pipe'] }, 'topic');
      pubOptions = mem.childOptions(pubOptions, 'topic');
      Object.assign(extra, { wait: v.wait });
    } else {
      dir = mkdtempSync(join(tmpdir(), 'mmapkit-topic-'));
      if (v.transport === 'socket') extra.paths = Array.from({ length: n }, (_, i) => join(dir, `sub-${i}.sock`));
      else extra.endpoint = `ipc://${join(dir, 'pub.sock')}`;
    }
    for (let i = 0; i < n; i++) {
      subs.push(spawnPeer({ ...base, ...extra, role: 'sub', index: i, recv: v.recv, path: extra.paths?.[i] }, subOptions()));
    }
    pub = spawnPeer({ ...base, ...extra, role: 'pub', method: v.method, batch: v.batch ?? BATCH, budgetMs: cfg.budgetMs }, pubOptions);
    pub.proc.stdin.on('error', () => {});
    const pubDied = childDied(pub).then((err) => Promise.reject(new Error(`publisher: ${err.message}`)));
    pubDied.catch(() => {});
    await Promise.race([Promise.all(subs.map((c, i) => whenReady(c, `subscriber ${i}`))), pubDied]);
    pub.proc.stdin.write('go\n');
    const reports = await Promise.all(subs.map((c, i) => finished(c, `subscriber ${i}`)));
    pub.proc.stdin.end(); // zeromq: stop the end markers
    const pubRep = await finished(pub, 'publisher');
    return summarizeRun(v, reports, pubRep, total);
  } finally {
    for (const c of [...subs, pub]) killChild(c);
    topic?.close();
    mem?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

/** A run's figures: per subscriber, the slowest, the median, the total; errors; losses (zeromq). */
function summarizeRun(v, reports, pubRep, total) {
  const cpu = (r) => r.cpuUs.user + r.cpuUs.system;
  const published = pubRep.published;
  let errors = 0;
  const subs = reports.map((r) => {
    // topic and socket: every subscriber has every message published, in order (each was checked
    // against the number expected next; here: none missing at the end)
    if (v.transport !== 'zeromq' && r.received !== published) errors++;
    errors += r.errors;
    return {
      msgsPerSec: r.msgsPerSec,
      messages: r.messages,
      received: r.received,
      cpuUsPerMsg: cpu(r) / r.messages,
      ctxPerMsg: r.ctxSwitches.voluntary / r.messages,
      errors: r.errors,
    };
  });
  const rates = subs.map((s) => s.msgsPerSec);
  return {
    slowest: Math.min(...rates),
    median: median(rates),
    total: rates.reduce((a, x) => a + x, 0),
    subs,
    published,
    truncated: pubRep.truncated,
    publisherCpuUsPerMsg: cpu(pubRep) / Math.max(1, published),
    publisherCtxPerMsg: pubRep.ctxSwitches.voluntary / Math.max(1, published),
    subscriberCpuUsPerMsg: median(subs.map((s) => s.cpuUsPerMsg)),
    subscriberCtxPerMsg: median(subs.map((s) => s.ctxPerMsg)),
    // zeromq: the share of the published messages the median subscriber received
    receivedShare: median(subs.map((s) => s.received)) / Math.max(1, published),
    errors,
    expected: total,
  };
}

/** ns per message of the subscribers' check alone, in this process (for the notes). */
function checkCostNs() {
  const n = 4096;
  const msgs = [];
  for (let k = 0; k < n; k++) {
    const b = Buffer.allocUnsafe(SMALL);
    fillSmallI32(new Int32Array(b.buffer, b.byteOffset, 16), k);
    msgs.push(b);
  }
  let bad = 0;
  const per = [];
  for (let r = 0; r < 7; r++) {
    const t0 = performance.now();
    for (let i = 0; i < 20; i++) for (let k = 0; k < n; k++) bad += checkSmall(msgs[k], 0, SMALL, k);
    per.push(((performance.now() - t0) * 1e6) / (20 * n));
  }
  if (bad !== 0) throw new Error('checkCostNs: the checker rejects good messages');
  return round(median(per), 1);
}

async function run(ctx) {
  const cfg = ctx.quick ? { seconds: 0.05, runs: 1, budgetMs: 1_000 } : { seconds: 0.2, runs: 5, budgetMs: 1_000 };
  const zmq = await loadZmq();
  const skipped = {};
  if (zmq === null) {
    skipped.zeromq = '`zeromq` is not installed (a devDependency: `npm install` in the repository)';
    ctx.log(`  skipped: ${skipped.zeromq}`);
  }
  const variants = VARIANTS.filter((v) => !(v.transport === 'zeromq' && zmq === null));
  cfg.counts = Object.fromEntries(
    variants.map((v) => [v.key, Object.fromEntries(SUBSCRIBERS.map((n) => [n, Math.max(2_000, Math.round((v.rate[n] * cfg.seconds) / 1000) * 1000)]))]),
  );
  // every (variant, N) is one entry of the interleaved runs
  const combos = SUBSCRIBERS.flatMap((n) => variants.map((v) => ({ key: `${v.key}@${n}`, v, n })));
  const hard = cfg.budgetMs + START_TIMEOUT_MS + 3 * TIMEOUT_MS;
  const { samples, failures } = await runInterleaved(
    ctx,
    combos,
    cfg.runs,
    (c) => withLimit(hard, c.key, () => runOnce(c.v, c.n, cfg)),
    (s) =>
      `slowest ${fmt(s.slowest / 1e6)} M msgs/s per subscriber (median ${fmt(s.median / 1e6)})` +
      `${s.receivedShare < 1 ? `, ${fmt(100 * s.receivedShare)}% received` : ''}${s.truncated ? ` (TRUNCATED: ${s.published} published)` : ''}${s.errors ? `, ${s.errors} BAD` : ''}`,
  );
  const results = {};
  for (const c of combos) {
    const s = samples[c.key];
    results[c.v.key] ??= {};
    if (s.length === 0) {
      results[c.v.key][c.n] = null;
      continue;
    }
    const med = (f) => round(median(s.map(f)), 4);
    results[c.v.key][c.n] = {
      slowest: stats(s.map((x) => x.slowest)),
      median: stats(s.map((x) => x.median)),
      total: stats(s.map((x) => x.total)),
      publisherCpuUsPerMsg: med((x) => x.publisherCpuUsPerMsg),
      subscriberCpuUsPerMsg: med((x) => x.subscriberCpuUsPerMsg),
      publisherCtxPerMsg: med((x) => x.publisherCtxPerMsg),
      subscriberCtxPerMsg: med((x) => x.subscriberCtxPerMsg),
      receivedShare: med((x) => x.receivedShare),
      published: s.map((x) => x.published),
      truncatedRuns: s.filter((x) => x.truncated).length,
      errors: s.reduce((a, x) => a + x.errors, 0),
    };
  }
  const all = Object.values(results).flatMap((byN) => Object.values(byN));
  const errors = all.reduce((a, r) => a + (r?.errors ?? 0), 0);
  return {
    id: 'topicFanout',
    config: { ...cfg, messageBytes: SMALL, subscribers: SUBSCRIBERS, geometry: GEOMETRY, timeoutMs: TIMEOUT_MS, batch: BATCH, receiveMax: RECEIVE_MAX },
    checkNsPerMsg: checkCostNs(),
    results,
    failures,
    skipped,
    errors,
    checksumsMatch: errors === 0,
    failed: all.some((r) => r === null),
  };
}

/** The slowest subscriber's median rate of a row, or undefined. */
function rateOf(results, key, n) {
  return results?.[key]?.[n]?.slowest.median;
}

/** Ratio columns: the competitors, same N. */
const RATIO_COLUMNS = [
  { key: 'socket', head: '× socket' },
  { key: 'socketBatch', head: `× socket, ${BATCH} per write` },
  { key: 'zeromq', head: '× zeromq' },
];

function render(res) {
  const { results: r, config: c } = res;
  const rows = [];
  for (const n of c.subscribers) {
    for (const v of VARIANTS) {
      if (!(v.key in r)) continue;
      const s = r[v.key][n];
      if (s === null || s === undefined) {
        rows.push([String(n), v.label, 'failed', '–', '–', ...RATIO_COLUMNS.map(() => '–'), '–', '–']);
        continue;
      }
      const m = s.slowest;
      rows.push([
        String(n),
        `${v.label}${s.truncatedRuns ? ' (truncated)' : ''}`,
        fmt(m.median / 1e6),
        `${fmt(m.min / 1e6)}–${fmt(m.max / 1e6)}`,
        fmt(s.median.median / 1e6),
        ...RATIO_COLUMNS.map((col) => {
          const ref = rateOf(r, col.key, n);
          return ref ? fmtRatio(m.median / ref) : '–';
        }),
        fmt(s.total.median / 1e6),
        `${fmt(s.publisherCpuUsPerMsg)} + ${fmt(s.subscriberCpuUsPerMsg)}`,
      ]);
    }
  }
  const table = markdownTable(
    ['Subscribers', 'Transport', 'M msgs/s per subscriber (slowest)', 'min–max', 'median subscriber', ...RATIO_COLUMNS.map((col) => col.head), 'M msgs/s delivered (all)', 'CPU µs/msg: publisher + subscriber'],
    rows,
    ['r', 'l', 'r', 'r', 'r', ...RATIO_COLUMNS.map(() => 'r'), 'r', 'r'],
  );
  const runs = c.runs === 1 ? 'one run' : `${c.runs} interleaved runs (fresh processes each), median`;
  const counts = Object.entries(c.counts)
    .map(([k, byN]) => `${k} ${Object.values(byN).map((x) => x.toLocaleString('en-US')).join(' / ')}`)
    .join(', ');
  const notes = [
    `One publisher process, N subscriber processes, 64-byte messages; ${runs}. "Per subscriber (slowest)": the rate of the run's slowest subscriber (what each one gets at least); "median subscriber" and "delivered (all)" (the sum over subscribers) are of the same runs. ` +
      `Ratio columns divide the row's slowest-subscriber median by the competitor's, same N. Messages published per run, for N = ${c.subscribers.join(' / ')}: ${counts}; the first tenth is warm-up, not timed. ` +
      `A publisher that would go on longer than ${c.budgetMs / 1000} s stops there (marked truncated).`,
    `Every subscriber checks every message: its sequence number and the XOR checksum of its 16 words (≈ ${fmt(res.checkNsPerMsg)} ns per message here, included in every row); topic and socket subscribers must receive message k as their k-th and all the messages published.`,
    `Topic: \`Topic.create(SharedMemory.anonymous(…), { capacity: ${c.geometry.capacity / 1024} KiB, maxMessageSize: ${c.geometry.maxMessageSize}, publishers: 1 })\`, policy \`'block'\` (the publisher waits for the slowest subscriber: nothing is lost), publisher and subscribers with the row's wait strategy; every call passes a ${c.timeoutMs / 1000} s timeout. ` +
      `Batches: \`publishMany\` of ${c.batch} messages per call; the subscribers take up to ${c.receiveMax} per call (\`receiveInto\` into a ${(c.receiveMax * 64) / 1024} KiB target).`,
    `Sockets: one per subscriber; the publisher formats each message (or batch of ${c.batch}) once, a 4-byte length before each message, and writes the same Buffer to every socket, waiting for \`'drain'\` where \`write()\` returns false; each subscriber splits its stream at the length prefixes and checks every message in place.`,
    `CPU column: process CPU time (user + system, \`process.cpuUsage()\`) per message: the publisher over its whole publishing loop (per message published, whatever N), one subscriber (the median) over its timed part.`,
  ];
  if ('zeromq' in r) {
    const shares = c.subscribers.map((n) => (r.zeromq[n] ? `${fmt(100 * r.zeromq[n].receivedShare)}% with ${n} subscriber${n === 1 ? '' : 's'}` : null)).filter(Boolean);
    notes.push(
      `zeromq.js: PUB bound at \`ipc://\`, each SUB connected and subscribed to everything, default high-water marks (1000 messages); the publisher sends hellos until every subscriber has one (connected, its subscription known), then the stream, then end markers. ` +
        `PUB never waits: it drops what a subscriber's queue cannot take, so its row is what each subscriber actually received per second. Of the messages published, the median subscriber received ${shares.join(', ')} (sequence numbers must only grow; a gap is a loss).`,
    );
  }
  const truncated = VARIANTS.flatMap((v) => c.subscribers.filter((n) => r[v.key]?.[n]?.truncatedRuns).map((n) => `${v.key} with ${n} in ${r[v.key][n].truncatedRuns} run(s)`));
  if (truncated.length) notes.push(`Stopped by the ${c.budgetMs / 1000} s budget (figures from the messages timed): ${truncated.join('; ')}.`);
  notes.push(`Messages checked: ${res.errors === 0 ? 'no bad, missing or repeated message in any topic or socket run' : `**${res.errors} BAD OR MISSING MESSAGES**`}.`);
  for (const [k, f] of Object.entries(res.failures ?? {})) notes.push(`**${k} failed** in ${f.length} run(s): ${f[0]}`);
  for (const [k, why] of Object.entries(res.skipped ?? {})) notes.push(`${k} skipped: ${why}.`);
  return { title: 'Broadcast of 64-byte messages to 1, 2 and 4 subscriber processes', table, notes };
}

export const fanout = { id: 'topicFanout', run, render };

// ==== the issue's target ===========================================================================

const NAMES = {
  topic: "`publish` → `receive`, 'block'",
  topicHybrid: "`publish` → `receive`, 'hybrid'",
  into: "`publishMany` → `receiveInto`, 'block'",
  drain: "`publishMany` → `drain`, 'block'",
};

const TARGETS = [
  {
    short: 'Per message',
    text: '4 subscribers: each receives ≥ 10× what it would over its own Unix socket (per message: `publish` → `receive` against one `write()` per message)',
    rows: ['topic', 'topicHybrid'],
    ref: 'socket',
    n: 4,
    limit: 10,
  },
  {
    short: 'Batches',
    text: `4 subscribers, batches: \`publishMany\` (${BATCH}) → \`receiveInto\` or \`drain\` against its own socket with ${BATCH} messages per \`write()\` (a comparison, not a target of the issue)`,
    rows: ['into', 'drain'],
    ref: 'socketBatch',
    n: 4,
    limit: null,
  },
];

function fmtX(v) {
  return v === null || v === undefined || !Number.isFinite(v) ? '–' : fmtRatio(v);
}

/** The best row of a target at `n` subscribers: { key, name, ratio } or null. */
function best(res, t, n) {
  const ref = rateOf(res, t.ref, n);
  let b = null;
  for (const key of t.rows) {
    const v = rateOf(res, key, n);
    if (v === undefined || !ref) continue;
    const ratio = v / ref;
    if (b === null || ratio > b.ratio) b = { key, name: NAMES[key], ratio };
  }
  return b;
}

/** The targets table of the topic section (null when the benchmark did not run). */
export function summary(results, meta) {
  const res = results?.topicFanout?.results;
  if (!res) return null;
  const ns = results.topicFanout.config.subscribers;
  const rows = TARGETS.map((t) => {
    const b = best(res, t, t.n);
    const met = b === null ? 'not measured' : t.limit === null ? '–' : b.ratio >= t.limit ? 'met' : `**NOT met** (${fmtX(t.limit / b.ratio)} short)`;
    return [t.text, b ? b.name : '–', b ? fmtX(b.ratio) : '–', met, ...ns.filter((n) => n !== t.n).map((n) => fmtX(best(res, t, n)?.ratio))];
  });
  const table = markdownTable(
    ['Target', 'Best row measuring it', 'Measured ratio', 'Met?', ...ns.filter((n) => n !== 4).map((n) => `Same ratio, ${n} subscriber${n === 1 ? '' : 's'}`)],
    rows,
    ['l', 'l', 'r', 'l', ...ns.filter((n) => n !== 4).map(() => 'r')],
  );
  const notes = [
    "Each ratio divides two medians of the same interleaved runs (table below): the slowest subscriber's messages/s with the Topic row over the same with the socket row, same number of subscribers. \"Short\" is the factor still missing. The first row is the issue's target as stated (the socket: one write per message, to each subscriber); the second compares the batch APIs with the coalesced socket (both amortize their costs over 64 messages; what is left is mostly the subscribers' own copy and check of each message, and 5 processes sharing 2 cores).",
  ];
  for (const t of TARGETS) {
    const every = t.rows.map((key) => ({ key, ratio: rateOf(res, key, t.n) / rateOf(res, t.ref, t.n) })).filter((x) => Number.isFinite(x.ratio));
    if (every.length > 1) notes.push(`${t.short}, every row measuring it: ${every.map((x) => `${NAMES[x.key]} ${fmtX(x.ratio)}`).join(', ')}.`);
  }
  const z = rateOf(res, 'zeromq', 4);
  if (z) {
    const rowsZ = ['topic', 'topicHybrid', 'into', 'drain'].filter((k) => rateOf(res, k, 4) !== undefined);
    notes.push(`Against zeromq.js PUB/SUB with 4 subscribers (what each received per second, drops and all): ${rowsZ.map((k) => `${NAMES[k]} ${fmtX(rateOf(res, k, 4) / z)}`).join(', ')}.`);
  }
  const m = meta?.machine;
  const load = m ? Math.max(m.loadAverage?.[0] ?? 0, m.loadAverageEnd?.[0] ?? 0) : 0;
  // The benchmark's own processes (up to 5 at a time, mostly asleep) bring the load average to 3 or
  // so on an idle 2-core machine: warn only well above that.
  if (m && load > 2 * m.cores) {
    notes.unshift(
      `**A noisy run**: the load average reached ${load.toFixed(1)} on ${m.cores} cores during it, more than the benchmark's own processes account for (other work shared the machine); the ratios still compare rows of the same interleaved runs.`,
    );
  }
  return { title: 'Target', table, notes };
}

/** For a profile: run one variant once. */
export const internals = { VARIANTS, runOnce };
