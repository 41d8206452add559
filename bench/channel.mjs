/**
 * Benchmarks of the message channel (issue 10, layout version 3: one single-producer byte ring, a
 * "lane", per producer): between two Node processes, a parent (this process) and a child it spawns
 * (bench/channel/peer.mjs), with the channel in SharedMemory.anonymous handed over with
 * childOptions() and opened in the child from SharedMemory.inherited(). Competitors run in the same
 * interleaved runs, and the section opens with the issue's targets, each a ratio measured in this run
 * (bench/channel/targets.mjs).
 *
 *  - latency: round trip of a 64-byte message over two channels (one per direction), per wait
 *    strategy, sync and async; against bare JavaScript spinning on one shared word and bare
 *    waitAsync/notify (the runners of bench/ipc-latency.mjs), a Unix domain socket, a FIFO pair,
 *    child_process IPC, worker_threads, and C spinning on a shared word (bench/c/futex_pingpong.c).
 *  - throughputSmall / throughputLarge: one-way throughput of 64-byte and 64 KiB messages, child →
 *    parent: the channel per strategy and per API (per message `send` → `receive`; batches
 *    `sendMany` → `receiveMany`, `receiveInto`, `drain`; async `sendAsync` → `for await` and
 *    `sendManyAsync` → `drainAsync`; zero copy `reserve`/`commit` → `receiveInPlace`), the floors (a
 *    plain SPSC ring in JavaScript, bench/channel/jsring.mjs, and in C, bench/c/channel_ring.c, same
 *    record format, same work per message), and a Unix socket (one write per message, and 64
 *    coalesced), a FIFO, IPC, a worker and zeromq.js PUSH/PULL over ipc://. The parent receives and
 *    checks every message (bench/channel/format.mjs: sequence number and checksum, or every byte of
 *    64 KiB); stream receivers split the byte stream at its 4-byte length prefixes and check each
 *    message as the channel's receivers do.
 *
 * Timing: round trips as bench/ipc-latency.mjs (one performance.now() per round, median over runs of
 * each run's p50/p99/mean). Throughput: the receiver takes the time once the first tenth of the
 * messages (the warm-up, after the child's start-up) has arrived and after the last:
 * messages/s = messages timed ÷ that time; the sender's and the receiver's CPU time per message come
 * from process.cpuUsage() (getrusage for C). Variants run in interleaved runs (run 1 of every
 * variant, then run 2, ...), a fresh child each time; tables give medians over runs with min–max.
 *
 * No hang: every receive and send has a timeout, event-driven receivers have a watchdog, a run that
 * exceeds its time budget stops early (and says so), every run has a hard limit, and the child is
 * killed whenever a run ends without its clean exit. `chart(results)` draws
 * docs/channel-benchmark.svg; `summary(results)` is the targets table.
 */
import { spawnSync } from 'node:child_process';
import { constants as fsConstants, mkdtempSync, openSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { Channel, SharedMemory } from '../dist/index.js';
import { checkerFor, checkSmall, fillSmallAt, fillSmallI32, LARGE, largeChecker, SMALL, streamReceiver, WINDOW } from './channel/format.mjs';
import { jsRingBytes, RingConsumer } from './channel/jsring.mjs';
import { childDied, finishChild, killChild, runCFloor, runIpc, runShm, runStream, runWorker, summarize, timerOverheadNs } from './ipc-latency.mjs';
import { compileC, fmt, fmtRatio, markdownTable, round, runInterleaved, stats } from './lib.mjs';
import { loadZmq, peerPool } from './peers.mjs';

const PEER = fileURLToPath(new URL('./channel/peer.mjs', import.meta.url));

/** A receive or send without progress for this long fails the run (ms). */
const TIMEOUT_MS = 5000;
/** Time for a child to start and send its first message (ms). */
const START_TIMEOUT_MS = 20_000;
/** The worker's receiver gives credit back every ACK_EVERY messages (its window: WINDOW). */
const ACK_EVERY = 256;
/** Messages per `sendMany` / `sendManyAsync` call, and per publish of the batched floors. */
const SEND_MANY = 64;
/** At most this many messages per batch receive (`receiveMany`, `receiveInto`, `drain`, the JS ring's poll). */
const RECEIVE_MAX = 1024;
/** Spin of the hybrid strategy (µs): the channel's default. */
const HYBRID_SPIN_US = 50;

/**
 * Channel geometry of each benchmark: bytes per lane (one lane: one producer) and the largest
 * message. The floors (JavaScript and C rings) get rings of the same size.
 */
const GEOMETRY = {
  latency: { laneSize: 256 * 1024, maxMessageSize: SMALL },
  [SMALL]: { laneSize: 256 * 1024, maxMessageSize: SMALL },
  [LARGE]: { laneSize: 1024 * 1024, maxMessageSize: LARGE },
};

const median = (xs) => stats(xs).median;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Node options of the children (bench/channel/profile.mjs sets --cpu-prof here). */
const peers = peerPool(PEER);
const spawnPeer = peers.spawn;
const withLimit = peers.withLimit;

/** Node flags for the children from now on (a profile run adds --cpu-prof). */
export function setChildExecArgv(argv) {
  peers.setExecArgv(argv);
}

function makeChannelMemory(geometry, wait) {
  const mem = SharedMemory.anonymous(Channel.byteLength(geometry));
  const ch = Channel.create(mem, { ...geometry, wait });
  return { mem, ch };
}

// ==== round trips ==================================================================================

const LATENCY_VARIANTS = [
  { key: 'block', transport: 'channel', wait: 'block', label: "channel, `wait: 'block'`, `send`/`receive`" },
  { key: 'spin', transport: 'channel', wait: 'spin', label: "channel, `wait: 'spin'`, `send`/`receive`" },
  { key: 'spinZeroCopy', transport: 'channel', wait: 'spin', zeroCopy: true, label: "channel, `wait: 'spin'`, `reserve`+`commit` / `receiveInPlace`+`release`" },
  { key: 'hybrid', transport: 'channel', wait: 'hybrid', label: `channel, \`wait: 'hybrid'\` (spin ${HYBRID_SPIN_US} µs, then sleep), \`send\`/\`receive\`` },
  { key: 'async', transport: 'channel', wait: 'async', async: true, label: "channel, `wait: 'async'`, `sendAsync`/`receiveAsync`" },
  { key: 'asyncHybrid', transport: 'channel', wait: 'hybrid', async: true, label: "channel, `wait: 'hybrid'`, `sendAsync`/`receiveAsync`" },
  { key: 'jsSpin', transport: 'shm', parent: 'spin', child: 'spin', label: '_bare JavaScript: spinning on `Atomics.load` of one shared word_' },
  { key: 'jsAsync', transport: 'shm', parent: 'async', child: 'async', options: {}, label: '_bare JavaScript: mmapkit `waitAsync`/`notify` on one shared word_' },
  { key: 'cSpin', transport: 'c', mode: 'spin', label: '_C: spinning on one shared word (the floor)_' },
  { key: 'socket', transport: 'socket', label: 'Unix domain socket (`net`)' },
  { key: 'fifo', transport: 'fifo', label: 'pipe: two FIFOs (`mkfifo`) through `net.Socket`' },
  { key: 'ipc', transport: 'ipc', label: 'child_process IPC (`process.send`, JSON, 64-char string)' },
  { key: 'worker', transport: 'worker', label: '`worker_threads` `postMessage` (a thread, not a process)' },
];

/** The parent's ping-pong over two channels, sync: returns { done, errors } (rounds done). */
function pingPongSync(tx, rx, ts, warmup, total, budgetEnd, zeroCopy) {
  const ping = new Uint8Array(SMALL);
  const pingI32 = new Int32Array(ping.buffer);
  let errors = 0;
  for (let k = 0; ; k++) {
    const t = performance.now();
    if (k >= warmup) ts[k - warmup] = t;
    if (k === total || t > budgetEnd) return { done: k, errors };
    if (zeroCopy) {
      const r = tx.reserve(TIMEOUT_MS);
      fillSmallAt(r.buffer, 0, k);
      r.commit(SMALL);
      const m = rx.receiveInPlace(k === 0 ? START_TIMEOUT_MS : TIMEOUT_MS);
      if (m === null) throw new Error(`the pong channel ended at round ${k}`);
      errors += checkSmall(m.data, 0, m.data.length, k);
      m.release();
      continue;
    }
    fillSmallI32(pingI32, k);
    tx.send(ping, TIMEOUT_MS);
    const m = rx.receive(k === 0 ? START_TIMEOUT_MS : TIMEOUT_MS);
    if (m === null) throw new Error(`the pong channel ended at round ${k}`);
    errors += checkSmall(m, 0, m.length, k);
  }
}

async function pingPongAsync(tx, rx, ts, warmup, total, budgetEnd) {
  const ping = new Uint8Array(SMALL);
  const pingI32 = new Int32Array(ping.buffer);
  let errors = 0;
  for (let k = 0; ; k++) {
    const t = performance.now();
    if (k >= warmup) ts[k - warmup] = t;
    if (k === total || t > budgetEnd) return { done: k, errors };
    fillSmallI32(pingI32, k);
    await tx.sendAsync(ping, TIMEOUT_MS);
    const m = await rx.receiveAsync(k === 0 ? START_TIMEOUT_MS : TIMEOUT_MS);
    if (m === null) throw new Error(`the pong channel ended at round ${k}`);
    errors += checkSmall(m, 0, m.length, k);
  }
}

async function runChannelLatency(v, cfg) {
  const ping = makeChannelMemory(GEOMETRY.latency, v.wait);
  const pong = makeChannelMemory(GEOMETRY.latency, v.wait);
  const total = cfg.warmup + cfg.rounds;
  const config = { mode: 'echo', wait: v.wait, async: v.async === true, zeroCopy: v.zeroCopy === true, total, timeoutMs: TIMEOUT_MS, startTimeoutMs: START_TIMEOUT_MS };
  let child;
  try {
    ping.ch.attach('producer');
    pong.ch.attach('consumer');
    const options = pong.mem.childOptions(ping.mem.childOptions({ stdio: ['ignore', 'pipe', 'pipe'] }, 'ping'), 'pong');
    child = spawnPeer(config, options);
    const ts = new Float64Array(cfg.rounds + 1);
    const budgetEnd = performance.now() + cfg.budgetMs;
    const ru0 = process.resourceUsage();
    const r = v.async
      ? await pingPongAsync(ping.ch, pong.ch, ts, cfg.warmup, total, budgetEnd)
      : pingPongSync(ping.ch, pong.ch, ts, cfg.warmup, total, budgetEnd, v.zeroCopy === true);
    const ru1 = process.resourceUsage();
    let report = null;
    if (r.done === total) report = await finishChild(child);
    return summarize(ts, r.done, cfg.warmup, {
      errors: r.errors + (report?.errors ?? 0),
      truncated: r.done < total,
      ctx: {
        parent: { voluntary: (ru1.voluntaryContextSwitches - ru0.voluntaryContextSwitches) / r.done },
        child: report ? { voluntary: report.ctxSwitches.voluntary / total } : null,
      },
    });
  } catch (err) {
    if (child?.exited) {
      const why = await childDied(child);
      throw new Error(`${err.message}; ${why.message}`);
    }
    throw err;
  } finally {
    killChild(child);
    ping.ch.close();
    pong.ch.close();
    ping.mem.close();
    pong.mem.close();
  }
}

function runLatencyVariant(v, cfg) {
  const hard = cfg.budgetMs + START_TIMEOUT_MS + 3 * TIMEOUT_MS;
  switch (v.transport) {
    case 'channel':
      return withLimit(hard, v.key, () => runChannelLatency(v, cfg));
    case 'shm':
      return withLimit(hard, v.key, () => runShm(v, cfg));
    case 'c':
      return runCFloor(v, cfg, cfg.cExe);
    case 'socket':
    case 'fifo':
      return withLimit(hard, v.key, () => runStream(v, cfg));
    case 'ipc':
      return withLimit(hard, v.key, () => runIpc(v, cfg));
    case 'worker':
      return withLimit(hard, v.key, () => runWorker(v, cfg));
    default:
      throw new Error(`unknown transport ${v.transport}`);
  }
}

async function runLatency(ctx) {
  const cfg = ctx.quick ? { rounds: 3_000, warmup: 300, runs: 1, budgetMs: 2_000 } : { rounds: 15_000, warmup: 2_000, runs: 5, budgetMs: 3_000 };
  const compiled = compileC('futex_pingpong');
  const cSkipped = compiled.skipped ?? null;
  if (cSkipped) ctx.log(`  ${cSkipped}`);
  cfg.cExe = compiled.exe;
  const variants = LATENCY_VARIANTS.filter((v) => v.transport !== 'c' || !cSkipped);
  const timerNs = timerOverheadNs();
  const { samples, failures } = await runInterleaved(ctx, variants, cfg.runs, (v) => runLatencyVariant(v, cfg), (s) =>
    `p50 ${fmt(s.p50)} µs, p99 ${fmt(s.p99)} µs, mean ${fmt(s.mean)} µs${s.truncated ? ` (TRUNCATED: ${s.rounds} rounds)` : ''}${s.errors ? `, ${s.errors} BAD MESSAGES` : ''}`,
  );
  delete cfg.cExe;
  const us = {};
  for (const v of variants) {
    const s = samples[v.key];
    if (s.length === 0) {
      us[v.key] = null;
      continue;
    }
    const vol = (side) => {
      const xs = s.map((x) => x.ctx?.[side]?.voluntary).filter((x) => typeof x === 'number');
      return xs.length ? round(median(xs), 3) : null;
    };
    us[v.key] = {
      p50: stats(s.map((x) => x.p50)),
      p99: stats(s.map((x) => x.p99)),
      mean: stats(s.map((x) => x.mean)),
      rounds: s.map((x) => x.rounds),
      truncatedRuns: s.filter((x) => x.truncated).length,
      errors: s.reduce((a, x) => a + x.errors, 0),
      ctxSwitches: { parentVoluntary: vol('parent'), childVoluntary: vol('child') },
    };
  }
  const errors = variants.reduce((a, v) => a + (us[v.key]?.errors ?? 0), 0);
  return {
    id: 'channelLatency',
    config: { ...cfg, messageBytes: SMALL, geometry: GEOMETRY.latency, timeoutMs: TIMEOUT_MS, hybridSpinUs: HYBRID_SPIN_US },
    timerOverheadNs: round(timerNs, 1),
    us,
    failures,
    errors,
    cSkipped,
    checksumsMatch: errors === 0,
    // a variant that failed in every run could not be measured at all: the run exits with status 1
    failed: variants.some((v) => us[v.key] === null),
  };
}

function renderLatency(res) {
  const { us, config: c } = res;
  const sock = us.socket?.p50.median;
  const bare = us.jsSpin?.p50.median;
  const rows = LATENCY_VARIANTS.filter((v) => v.key in us).map((v) => {
    const s = us[v.key];
    if (s === null) return [v.label, 'failed', '–', '–', '–', '–', '–', '–'];
    const cs = s.ctxSwitches;
    const csw = cs.parentVoluntary === null ? '–' : `${fmt(cs.parentVoluntary)}${cs.childVoluntary !== null ? ` + ${fmt(cs.childVoluntary)}` : ''}`;
    return [
      `${v.label}${s.truncatedRuns ? ' (truncated)' : ''}`,
      fmt(s.p50.median),
      fmt(s.p99.median),
      fmt(s.mean.median),
      `${fmt(s.p50.min)}–${fmt(s.p50.max)}`,
      bare ? fmtRatio(s.p50.median / bare) : '–',
      sock ? fmtRatio(s.p50.median / sock) : '–',
      csw,
    ];
  });
  const table = markdownTable(
    ['Transport', 'p50 µs', 'p99 µs', 'mean µs', 'p50 min–max', '÷ bare JS spin (p50)', '÷ Unix socket (p50)', 'vol. ctx switches / round trip (parent + child)'],
    rows,
  );
  const runs = c.runs === 1 ? 'one run' : `${c.runs} interleaved runs (a fresh child each), median of the runs' figures`;
  const notes = [
    `${c.rounds.toLocaleString('en-US')} round trips per run after ${c.warmup.toLocaleString('en-US')} warm-up round trips, ${runs}. ` +
      `Round trip k: the parent sends 64-byte message k, the child receives it, checks it (sequence number and checksum) and sends message k back; the parent receives and checks it. ` +
      `Channel rows: two channels (one per direction) of one ${c.geometry.laneSize / 1024} KiB lane per producer, \`maxMessageSize\` ${c.geometry.maxMessageSize}, in \`SharedMemory.anonymous()\`, both ends with the same wait strategy; every send and receive passes a ${c.timeoutMs / 1000} s timeout. ` +
      `One \`performance.now()\` per round (≈ ${fmt(res.timerOverheadNs)} ns, included in every figure).`,
    `Reference rows (italics) are the shared-memory runners of the IPC latency benchmark (\`bench/ipc-latency.mjs\`): one turn word and the 64-byte message in a shared page, every word checked on both sides; ` +
      `"bare JavaScript spinning" re-reads the word with \`Atomics.load\` (no futex), "bare \`waitAsync\`" sleeps in mmapkit's \`waitAsync\` and wakes the other side with \`notify\`; the C row spins with the pause hint (\`bench/c/futex_pingpong.c spin\`). The socket, FIFO, IPC and worker rows are that benchmark's runners too, run again here, interleaved with the channel rows.`,
    `Messages checked on both sides, every round: ${res.errors === 0 ? 'no bad message in any variant' : `**${res.errors} BAD MESSAGES**`}.`,
    `This machine has 2 cores: the spinning rows need a core for each process and only mean something when nothing else runs; with other load, a spinner that loses its core waits for a scheduler tick, which shows in p99 and the mean.`,
  ];
  const truncated = LATENCY_VARIANTS.filter((v) => us[v.key]?.truncatedRuns);
  if (truncated.length) notes.push(`Truncated (hit the ${c.budgetMs / 1000} s budget): ${truncated.map((v) => `${v.key} (${us[v.key].rounds.join(', ')} round trips)`).join(', ')}.`);
  for (const [k, f] of Object.entries(res.failures ?? {})) notes.push(`**${k} failed** in ${f.length} run(s): ${f[0]}`);
  if (res.cSkipped) notes.push(`C floor skipped: ${res.cSkipped}.`);
  return { title: 'Round trip of a 64-byte message between two processes', table, notes };
}

export const latency = { id: 'channelLatency', run: runLatency, render: renderLatency };

// ==== one-way throughput ===========================================================================

/**
 * Throughput variants, in table order. `rate`: a guess of messages/s per size, which sets the number
 * of messages per run (about `seconds` of sending); `sizes`: the sizes the variant runs at. Channel
 * rows: `wait` (both ends), `method` (the child's: send, sendMany, sendAsync, sendManyAsync,
 * reserve; or per size) and `recv` (the parent's). `group` sorts the rows of the table.
 */
const THROUGHPUT_VARIANTS = [
  // ---- per message
  { key: 'block', group: 'message', transport: 'channel', wait: 'block', method: 'send', recv: 'receive', rate: { [SMALL]: 1.5e6, [LARGE]: 3e4 }, label: "channel, `'block'`: `send` → `receive`" },
  { key: 'spin', group: 'message', transport: 'channel', wait: 'spin', method: 'send', recv: 'receive', rate: { [SMALL]: 2e6, [LARGE]: 3e4 }, label: "channel, `'spin'`: `send` → `receive`" },
  { key: 'hybrid', group: 'message', transport: 'channel', wait: 'hybrid', method: 'send', recv: 'receive', sizes: [SMALL], rate: { [SMALL]: 2e6 }, label: "channel, `'hybrid'`: `send` → `receive`" },
  // ---- batches (64 KiB: one message per send, the receiver batches)
  { key: 'many', group: 'batch', transport: 'channel', wait: 'block', method: 'sendMany', recv: 'many', sizes: [SMALL], rate: { [SMALL]: 3e6 }, label: `channel, \`'block'\`: \`sendMany\` (${SEND_MANY}) → \`receiveMany\`` },
  { key: 'into', group: 'batch', transport: 'channel', wait: 'block', method: { [SMALL]: 'sendMany', [LARGE]: 'send' }, recv: 'into', rate: { [SMALL]: 6e6, [LARGE]: 4e4 }, label: { [SMALL]: `channel, \`'block'\`: \`sendMany\` (${SEND_MANY}) → \`receiveInto\``, [LARGE]: "channel, `'block'`: `send` → `receiveInto`" } },
  { key: 'intoSpin', group: 'batch', transport: 'channel', wait: 'spin', method: 'sendMany', recv: 'into', sizes: [SMALL], rate: { [SMALL]: 6e6 }, label: `channel, \`'spin'\`: \`sendMany\` (${SEND_MANY}) → \`receiveInto\`` },
  { key: 'drain', group: 'batch', transport: 'channel', wait: 'block', method: { [SMALL]: 'sendMany', [LARGE]: 'send' }, recv: 'drain', rate: { [SMALL]: 6e6, [LARGE]: 6e4 }, label: { [SMALL]: `channel, \`'block'\`: \`sendMany\` (${SEND_MANY}) → \`drain\``, [LARGE]: "channel, `'block'`: `send` → `drain`" } },
  { key: 'drainSpin', group: 'batch', transport: 'channel', wait: 'spin', method: 'sendMany', recv: 'drain', sizes: [SMALL], rate: { [SMALL]: 6e6 }, label: `channel, \`'spin'\`: \`sendMany\` (${SEND_MANY}) → \`drain\`` },
  // ---- async
  { key: 'asyncIter', group: 'async', transport: 'channel', wait: 'async', method: 'sendAsync', recv: 'iterator', rate: { [SMALL]: 1e6, [LARGE]: 3e4 }, label: "channel, `'async'`: `sendAsync` → `for await`" },
  { key: 'asyncIterHybrid', group: 'async', transport: 'channel', wait: 'hybrid', method: 'sendAsync', recv: 'iterator', sizes: [SMALL], rate: { [SMALL]: 1e6 }, label: "channel, `'hybrid'`: `sendAsync` → `for await`" },
  { key: 'asyncDrain', group: 'async', transport: 'channel', wait: 'async', method: 'sendManyAsync', recv: 'drainAsync', sizes: [SMALL], rate: { [SMALL]: 5e6 }, label: `channel, \`'async'\`: \`sendManyAsync\` (${SEND_MANY}) → \`drainAsync\`` },
  // ---- zero copy
  { key: 'zeroCopy', group: 'zeroCopy', transport: 'channel', wait: 'block', method: 'reserve', recv: 'inPlace', rate: { [SMALL]: 1e6, [LARGE]: 8e4 }, label: "channel, `'block'`: `reserve`+`commit` → `receiveInPlace`+`release` (zero copy)" },
  { key: 'zeroCopyDrain', group: 'zeroCopy', transport: 'channel', wait: 'block', method: 'reserve', recv: 'drain', sizes: [LARGE], rate: { [LARGE]: 8e4 }, label: "channel, `'block'`: `reserve`+`commit` → `drain` (zero copy)" },
  // ---- floors
  { key: 'jsRing', group: 'floor', transport: 'jsring', batch: 1, rate: { [SMALL]: 5e6, [LARGE]: 8e4 }, label: '_JavaScript floor: SPSC ring, publish per message_' },
  { key: 'jsRingBatch', group: 'floor', transport: 'jsring', batch: SEND_MANY, sizes: [SMALL], rate: { [SMALL]: 8e6 }, label: `_JavaScript floor: SPSC ring, publish per ${SEND_MANY}_` },
  { key: 'cRing', group: 'floor', transport: 'cring', batch: 1, rate: { [SMALL]: 8e6, [LARGE]: 3e5 }, label: '_C floor: SPSC ring, publish per message_' },
  { key: 'cRingBatch', group: 'floor', transport: 'cring', batch: SEND_MANY, sizes: [SMALL], rate: { [SMALL]: 1.5e7 }, label: `_C floor: SPSC ring, publish per ${SEND_MANY}_` },
  // ---- competitors
  { key: 'socket', group: 'other', transport: 'socket', rate: { [SMALL]: 4e5, [LARGE]: 1.5e4 }, label: 'Unix domain socket (`net`), one `write()` per message' },
  { key: 'socketBatch', group: 'other', transport: 'socketBatch', batch: SEND_MANY, sizes: [SMALL], rate: { [SMALL]: 2e6 }, label: `Unix domain socket, ${SEND_MANY} messages coalesced per \`write()\`` },
  { key: 'fifo', group: 'other', transport: 'fifo', rate: { [SMALL]: 4e5, [LARGE]: 1e4 }, label: 'pipe (`mkfifo`) through `net.Socket`, one `write()` per message' },
  { key: 'ipc', group: 'other', transport: 'ipc', rate: { [SMALL]: 6e4, [LARGE]: 6e3 }, label: "child_process IPC, `serialization: 'advanced'`, a Buffer per message" },
  { key: 'worker', group: 'other', transport: 'worker', rate: { [SMALL]: 2.5e5, [LARGE]: 2.5e4 }, label: '`worker_threads` `postMessage` of a `Uint8Array` (cloned; a thread, not a process)' },
  { key: 'zeromq', group: 'other', transport: 'zeromq', rate: { [SMALL]: 2e5, [LARGE]: 1.5e4 }, label: 'zeromq.js PUSH/PULL over `ipc://`, `await send()` → `for await`' },
];

/** A field of a variant that may depend on the message size. */
const bySize = (x, size) => (x !== null && typeof x === 'object' ? x[size] : x);
const labelOf = (v, size) => bySize(v.label, size);

/**
 * Counts messages arriving in an event-driven receiver: resolves `done` once `total` arrived or the
 * budget is spent. `t0`/`cpu0` are taken after the `warmup`-th message, `t1`/`cpu` after the last.
 */
function tracker(total, warmup, budgetMs) {
  const st = { k: 0, errors: 0, t0: 0, t1: 0, cpu0: null, cpu: null, truncated: false };
  let budgetEnd = Infinity;
  let resolveDone;
  st.done = new Promise((resolve) => (resolveDone = resolve));
  st.on = (ok) => {
    if (st.k === total || st.cpu !== null) return;
    if (!ok) st.errors++;
    const k = ++st.k;
    if (k === warmup) {
      st.ru0 = process.resourceUsage();
      st.t0 = performance.now();
      st.cpu0 = process.cpuUsage();
      budgetEnd = st.t0 + budgetMs;
    } else if (k === total || ((k & 1023) === 0 && performance.now() > budgetEnd)) {
      st.t1 = performance.now();
      st.cpu = process.cpuUsage(st.cpu0);
      st.ru1 = process.resourceUsage();
      st.truncated = k < total;
      resolveDone();
    }
  };
  return st;
}

/** Reject when the tracker makes no progress for TIMEOUT_MS (START_TIMEOUT_MS before the first message). */
function watchdog(st, what) {
  let timer;
  const p = new Promise((_, reject) => {
    let seen = -1;
    let since = performance.now();
    timer = setInterval(() => {
      if (st.k !== seen) {
        seen = st.k;
        since = performance.now();
        return;
      }
      const limit = st.k === 0 ? START_TIMEOUT_MS : TIMEOUT_MS;
      if (performance.now() - since > limit) reject(new Error(`${what}: no message ${st.k} within ${limit} ms`));
    }, 100);
  });
  p.catch(() => {}); // raced, or dropped once the run is over
  return { p, stop: () => clearInterval(timer) };
}

/**
 * The clock of a receive loop that takes messages one call at a time (one or a batch): `at(k)` is
 * called before each call with the messages received so far; it starts timing at the first call
 * once `warmup` messages are in (a batch may step past the warm-up: `k0` is where timing began) and
 * says whether the budget is spent.
 */
function loopClock(warmup, budgetMs) {
  const st = { errors: 0, t0: 0, t1: 0, k0: 0, cpu0: null, cpu: null, k: 0, truncated: false, ru0: null, ru1: null };
  let budgetEnd = Infinity;
  st.at = (k) => {
    if (st.cpu0 === null) {
      if (k >= warmup) {
        st.ru0 = process.resourceUsage();
        st.t0 = performance.now();
        st.cpu0 = process.cpuUsage();
        st.k0 = k;
        budgetEnd = st.t0 + budgetMs;
      }
      return false;
    }
    return performance.now() > budgetEnd;
  };
  st.stop = (k, total) => {
    st.t1 = performance.now();
    st.cpu = process.cpuUsage(st.cpu0);
    st.ru1 = process.resourceUsage();
    st.k = k;
    st.truncated = k < total;
    return st;
  };
  return st;
}

/** The parent's sync receive loops on the channel (one function per API, each monomorphic). */
function receivePerMessage(ch, recv, size, total, warmup, budgetMs) {
  const check = checkerFor(size);
  const st = loopClock(warmup, budgetMs);
  let k = 0;
  for (; k < total; k++) {
    if ((k & 255) === 0 && st.at(k)) break;
    const timeout = k === 0 ? START_TIMEOUT_MS : TIMEOUT_MS;
    if (recv === 'inPlace') {
      const m = ch.receiveInPlace(timeout);
      if (m === null) throw new Error(`the channel ended after ${k} messages`);
      st.errors += check(m.data, 0, m.data.length, k);
      m.release();
    } else {
      const m = ch.receive(timeout);
      if (m === null) throw new Error(`the channel ended after ${k} messages`);
      st.errors += check(m, 0, m.length, k);
    }
  }
  return st.stop(k, total);
}

function receiveManyLoop(ch, size, total, warmup, budgetMs) {
  const check = checkerFor(size);
  const st = loopClock(warmup, budgetMs);
  let k = 0;
  while (k < total) {
    if (st.at(k)) break;
    const batch = ch.receiveMany(RECEIVE_MAX, k === 0 ? START_TIMEOUT_MS : TIMEOUT_MS);
    if (batch === null) throw new Error(`the channel ended after ${k} messages`);
    for (let i = 0; i < batch.length; i++) st.errors += check(batch[i], 0, batch[i].length, k++);
  }
  return st.stop(k, total);
}

function receiveIntoLoop(ch, size, total, warmup, budgetMs) {
  const check = checkerFor(size);
  const st = loopClock(warmup, budgetMs);
  // Room for RECEIVE_MAX 64-byte messages, or four of 64 KiB.
  const target = Buffer.allocUnsafe(size === SMALL ? RECEIVE_MAX * SMALL : 4 * LARGE);
  const lengths = new Uint32Array(RECEIVE_MAX);
  let k = 0;
  while (k < total) {
    if (st.at(k)) break;
    const n = ch.receiveInto(target, lengths, k === 0 ? START_TIMEOUT_MS : TIMEOUT_MS);
    if (n === null) throw new Error(`the channel ended after ${k} messages`);
    for (let i = 0, off = 0; i < n; i++) {
      const len = lengths[i];
      st.errors += check(target, off, len, k++);
      off += len;
    }
  }
  return st.stop(k, total);
}

function drainLoop(ch, size, total, warmup, budgetMs) {
  const check = checkerFor(size);
  const st = loopClock(warmup, budgetMs);
  let k = 0;
  let errors = 0;
  const handler = (buf, off, len) => {
    errors += check(buf, off, len, k++);
  };
  while (k < total) {
    if (st.at(k)) break;
    const n = ch.drain(handler, RECEIVE_MAX, k === 0 ? START_TIMEOUT_MS : TIMEOUT_MS);
    if (n === null) throw new Error(`the channel ended after ${k} messages`);
  }
  st.errors = errors;
  return st.stop(k, total);
}

async function drainAsyncLoop(ch, size, total, warmup, budgetMs) {
  const check = checkerFor(size);
  const st = loopClock(warmup, budgetMs);
  let k = 0;
  let errors = 0;
  const handler = (buf, off, len) => {
    errors += check(buf, off, len, k++);
  };
  while (k < total) {
    if (st.at(k)) break;
    const n = await ch.drainAsync(handler, RECEIVE_MAX, k === 0 ? START_TIMEOUT_MS : TIMEOUT_MS);
    if (n === null) throw new Error(`the channel ended after ${k} messages`);
  }
  st.errors = errors;
  return st.stop(k, total);
}

/** for await over the channel: no timeout there, so a watchdog kills the child when it stalls. */
async function receiveIter(ch, size, total, warmup, budgetMs, child) {
  const check = checkerFor(size);
  const st = tracker(total, warmup, budgetMs);
  const dog = watchdog(st, 'for await');
  let stalled = null;
  dog.p.catch((err) => {
    stalled = err;
    killChild(child); // the channel then sees its producer dead: the iteration ends
  });
  try {
    for await (const m of ch) {
      st.on(check(m, 0, m.length, st.k) === 0);
      if (st.cpu !== null) break;
    }
  } finally {
    dog.stop();
  }
  if (stalled) throw stalled;
  if (st.cpu === null) throw new Error(`the channel ended after ${st.k} messages`);
  st.k0 = warmup;
  return st;
}

function childReport(rep) {
  if (!rep) return null;
  return { cpuUsPerMsg: (rep.cpuUs.user + rep.cpuUs.system) / rep.messages, ctxPerMsg: rep.ctxSwitches.voluntary / rep.messages, errors: rep.errors };
}

/** A run's figures from the receiver's state `st` (k0: where timing began) and the child's report. */
function result(st, size, k0, rep, { processWide = false } = {}) {
  const n = st.k - k0;
  if (n < 1) throw new Error(`only ${st.k} messages received: not past the ${k0}-message warm-up`);
  const seconds = (st.t1 - st.t0) / 1000;
  const c = childReport(rep);
  return {
    messages: n,
    msgsPerSec: n / seconds,
    bytesPerSec: (n * size) / seconds,
    receiverCpuUsPerMsg: processWide ? null : (st.cpu.user + st.cpu.system) / n,
    senderCpuUsPerMsg: processWide ? null : (c?.cpuUsPerMsg ?? null),
    processCpuUsPerMsg: processWide ? (st.cpu.user + st.cpu.system) / n : null,
    receiverCtxPerMsg: processWide ? null : (st.ru1.voluntaryContextSwitches - st.ru0.voluntaryContextSwitches) / n,
    senderCtxPerMsg: processWide ? null : (c?.ctxPerMsg ?? null),
    errors: st.errors + (c?.errors ?? 0),
    truncated: st.truncated,
  };
}

async function runChannelThroughput(v, size, cfg) {
  const total = cfg.counts[v.key];
  const warmup = Math.floor(total / 10);
  const { mem, ch } = makeChannelMemory(GEOMETRY[size], v.wait);
  const method = bySize(v.method, size);
  const config = { mode: 'send', transport: 'channel', wait: v.wait, method, batch: SEND_MANY, size, total, timeoutMs: TIMEOUT_MS, startTimeoutMs: START_TIMEOUT_MS };
  let child;
  try {
    ch.attach('consumer');
    child = spawnPeer(config, mem.childOptions({ stdio: ['ignore', 'pipe', 'pipe'] }, 'data'));
    let st;
    switch (v.recv) {
      case 'iterator':
        st = await receiveIter(ch, size, total, warmup, cfg.budgetMs, child);
        break;
      case 'drainAsync':
        st = await drainAsyncLoop(ch, size, total, warmup, cfg.budgetMs);
        break;
      case 'many':
        st = receiveManyLoop(ch, size, total, warmup, cfg.budgetMs);
        break;
      case 'into':
        st = receiveIntoLoop(ch, size, total, warmup, cfg.budgetMs);
        break;
      case 'drain':
        st = drainLoop(ch, size, total, warmup, cfg.budgetMs);
        break;
      default:
        st = receivePerMessage(ch, v.recv, size, total, warmup, cfg.budgetMs);
    }
    const rep = st.truncated ? null : await finishChild(child);
    return result(st, size, st.k0, rep);
  } catch (err) {
    if (child?.exited) throw new Error(`${err.message}; ${(await childDied(child)).message}`);
    throw err;
  } finally {
    killChild(child);
    ch.close();
    mem.close();
  }
}

/** The JavaScript floor: the parent polls the ring (bench/channel/jsring.mjs) and checks each message in place. */
async function runJsRingThroughput(v, size, cfg) {
  const total = cfg.counts[v.key];
  const warmup = Math.floor(total / 10);
  const ringSize = GEOMETRY[size].laneSize;
  const mem = SharedMemory.anonymous(jsRingBytes(ringSize));
  const config = { mode: 'send', transport: 'jsring', ringSize, batch: v.batch, size, total, timeoutMs: TIMEOUT_MS, startTimeoutMs: START_TIMEOUT_MS };
  let child;
  try {
    const ring = new RingConsumer(mem.buffer, ringSize, TIMEOUT_MS);
    child = spawnPeer(config, mem.childOptions({ stdio: ['ignore', 'pipe', 'pipe'] }, 'data'));
    const check = checkerFor(size);
    const st = loopClock(warmup, cfg.budgetMs);
    let k = 0;
    let errors = 0;
    const handler = (buf, off, len) => {
      errors += check(buf, off, len, k++);
    };
    while (k < total) {
      if (st.at(k)) break;
      const n = ring.poll(handler, RECEIVE_MAX, k === 0 ? START_TIMEOUT_MS : TIMEOUT_MS);
      if (n === null) throw new Error(`the ring ended after ${k} messages`);
    }
    st.errors = errors;
    st.stop(k, total);
    const rep = st.truncated ? null : await finishChild(child);
    return result(st, size, st.k0, rep);
  } catch (err) {
    if (child?.exited) throw new Error(`${err.message}; ${(await childDied(child)).message}`);
    throw err;
  } finally {
    killChild(child);
    mem.close();
  }
}

/** The C floor (bench/c/channel_ring.c): both sides in one C program (it forks). */
function runCRingThroughput(v, size, cfg) {
  if (cfg.cRing.skipped) throw new Error(cfg.cRing.skipped);
  const total = cfg.counts[v.key];
  const warmup = Math.floor(total / 10);
  const args = [size, total, warmup, v.batch, GEOMETRY[size].laneSize, TIMEOUT_MS, cfg.budgetMs];
  const r = spawnSync(cfg.cRing.exe, args.map(String), { encoding: 'utf8', timeout: 2 * cfg.budgetMs + START_TIMEOUT_MS + 2 * TIMEOUT_MS, killSignal: 'SIGKILL' });
  if (r.status !== 0) throw new Error(`channel_ring ${args.join(' ')} failed (${r.status ?? r.signal}): ${(r.stderr || r.error?.message || '').trim()}`);
  const o = JSON.parse(r.stdout);
  return {
    messages: o.messages,
    msgsPerSec: o.msgsPerSec,
    bytesPerSec: o.msgsPerSec * size,
    receiverCpuUsPerMsg: o.receiverCpuUs / o.messages,
    senderCpuUsPerMsg: o.senderCpuUs / o.senderMessages,
    processCpuUsPerMsg: null,
    receiverCtxPerMsg: null,
    senderCtxPerMsg: null,
    errors: o.errors,
    truncated: o.truncated,
  };
}

async function runStreamThroughput(v, size, cfg) {
  const total = cfg.counts[v.key];
  const warmup = Math.floor(total / 10);
  const dir = mkdtempSync(join(tmpdir(), 'mmapkit-ch-'));
  const config = { mode: 'send', transport: v.transport, size, total, batch: v.batch, timeoutMs: TIMEOUT_MS, startTimeoutMs: START_TIMEOUT_MS };
  let child;
  let server;
  let input;
  let dog;
  try {
    const st = tracker(total, warmup, cfg.budgetMs);
    const onChunk = streamReceiver(size, st.on);
    if (v.transport === 'fifo') {
      config.fifo = join(dir, 'child-to-parent');
      const mk = spawnSync('mkfifo', ['-m', '600', config.fifo], { encoding: 'utf8' });
      if (mk.status !== 0) throw new Error(`mkfifo failed: ${mk.stderr || mk.error?.message}`);
      // O_RDWR: opening never blocks, and reading never sees end-of-file while the child starts.
      input = new net.Socket({ fd: openSync(config.fifo, fsConstants.O_RDWR | fsConstants.O_NONBLOCK), readable: true, writable: false });
      input.on('data', onChunk);
    } else {
      config.path = join(dir, 'data.sock');
      server = net.createServer((s) => {
        input = s;
        s.on('data', onChunk);
        s.on('error', () => {});
      });
      await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(config.path, resolve);
      });
    }
    child = spawnPeer(config, { stdio: ['ignore', 'pipe', 'pipe'] });
    dog = watchdog(st, v.transport);
    const died = childDied(child).then((e) => (st.cpu === null ? Promise.reject(e) : null));
    await Promise.race([st.done, dog.p, died]);
    const rep = st.truncated ? null : await finishChild(child);
    return result(st, size, warmup, rep);
  } finally {
    dog?.stop();
    killChild(child);
    input?.destroy();
    server?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function runIpcThroughput(v, size, cfg) {
  const total = cfg.counts[v.key];
  const warmup = Math.floor(total / 10);
  const config = { mode: 'send', transport: 'ipc', size, total, timeoutMs: TIMEOUT_MS, startTimeoutMs: START_TIMEOUT_MS };
  const check = checkerFor(size);
  let child;
  let dog;
  try {
    const st = tracker(total, warmup, cfg.budgetMs);
    child = spawnPeer(config, { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], serialization: 'advanced' });
    child.proc.on('message', (m) => st.on(m instanceof Uint8Array && check(m, 0, m.length, st.k) === 0));
    dog = watchdog(st, 'ipc');
    const died = childDied(child).then((e) => (st.cpu === null ? Promise.reject(e) : null));
    await Promise.race([st.done, dog.p, died]);
    const rep = st.truncated ? null : await finishChild(child);
    return result(st, size, warmup, rep);
  } finally {
    dog?.stop();
    killChild(child);
  }
}

async function runWorkerThroughput(v, size, cfg) {
  const total = cfg.counts[v.key];
  const warmup = Math.floor(total / 10);
  const config = { mode: 'send', transport: 'worker', size, total, timeoutMs: TIMEOUT_MS, startTimeoutMs: START_TIMEOUT_MS };
  const check = checkerFor(size);
  const worker = new Worker(PEER, { workerData: config, stdout: false });
  let dog;
  try {
    const st = tracker(total, warmup, cfg.budgetMs);
    let rep = null;
    let gotReport;
    const reported = new Promise((resolve) => (gotReport = resolve));
    worker.on('message', (m) => {
      if (m instanceof Uint8Array) {
        st.on(check(m, 0, m.length, st.k) === 0);
        if ((st.k & (ACK_EVERY - 1)) === 0) worker.postMessage(st.k);
      } else if (m?.done) {
        rep = m.report;
        gotReport();
      }
    });
    const died = new Promise((_, reject) => {
      worker.once('error', (err) => reject(new Error(`the worker failed: ${err.message}`)));
      worker.once('exit', (code) => st.cpu === null && reject(new Error(`the worker exited early (code ${code})`)));
    });
    died.catch(() => {});
    dog = watchdog(st, 'worker');
    await Promise.race([st.done, dog.p, died]);
    if (!st.truncated) await Promise.race([reported, sleep(TIMEOUT_MS)]);
    // one process: the CPU time counted is the worker's and the main thread's together
    return result(st, size, warmup, rep, { processWide: true });
  } finally {
    dog?.stop();
    await worker.terminate();
  }
}

/**
 * zeromq.js PULL bound at ipc://, the child's PUSH connects: `for await (const [msg] of pull)`,
 * every message checked. The socket's receive timeout and a watchdog end a stalled run.
 */
async function runZmqThroughput(v, size, cfg) {
  const zmq = await loadZmq();
  if (zmq === null) throw new Error('zeromq is not installed');
  const total = cfg.counts[v.key];
  const warmup = Math.floor(total / 10);
  const dir = mkdtempSync(join(tmpdir(), 'mmapkit-zmq-'));
  const endpoint = `ipc://${join(dir, 'zmq.sock')}`;
  const config = { mode: 'send', transport: 'zeromq', endpoint, size, total, timeoutMs: TIMEOUT_MS, startTimeoutMs: START_TIMEOUT_MS };
  const check = checkerFor(size);
  const pull = new zmq.Pull({ receiveTimeout: START_TIMEOUT_MS, linger: 0 });
  let child;
  let dog;
  try {
    await pull.bind(endpoint);
    const st = tracker(total, warmup, cfg.budgetMs);
    // stdin: closed once every message is in, which lets the child close its socket and exit
    child = spawnPeer(config, { stdio: ['pipe', 'pipe', 'pipe'] });
    child.proc.stdin.on('error', () => {});
    dog = watchdog(st, 'zeromq');
    const loop = (async () => {
      for await (const [m] of pull) {
        st.on(check(m, 0, m.length, st.k) === 0);
        if (st.cpu !== null) return;
      }
      throw new Error(`the zeromq socket ended after ${st.k} messages`);
    })();
    const died = childDied(child).then((e) => (st.cpu === null ? Promise.reject(e) : null));
    died.catch(() => {});
    loop.catch(() => {});
    await Promise.race([st.done, dog.p, died, loop]);
    child.proc.stdin.end();
    const rep = st.truncated ? null : await finishChild(child);
    return result(st, size, warmup, rep);
  } finally {
    dog?.stop();
    killChild(child);
    pull.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function runThroughputVariant(v, size, cfg) {
  const hard = 2 * cfg.budgetMs + START_TIMEOUT_MS + 3 * TIMEOUT_MS;
  switch (v.transport) {
    case 'channel':
      return withLimit(hard, v.key, () => runChannelThroughput(v, size, cfg));
    case 'jsring':
      return withLimit(hard, v.key, () => runJsRingThroughput(v, size, cfg));
    case 'cring':
      return runCRingThroughput(v, size, cfg);
    case 'socket':
    case 'socketBatch':
    case 'fifo':
      return withLimit(hard, v.key, () => runStreamThroughput(v, size, cfg));
    case 'ipc':
      return withLimit(hard, v.key, () => runIpcThroughput(v, size, cfg));
    case 'worker':
      return withLimit(hard, v.key, () => runWorkerThroughput(v, size, cfg));
    case 'zeromq':
      return withLimit(hard, v.key, () => runZmqThroughput(v, size, cfg));
    default:
      throw new Error(`unknown transport ${v.transport}`);
  }
}

/** ns per message of the receiver's check alone, in this process (for the notes). */
function checkCostNs(size) {
  const check = checkerFor(size);
  const n = size === SMALL ? 4096 : 64;
  const msgs = [];
  for (let k = 0; k < n; k++) {
    const b = Buffer.allocUnsafe(size);
    if (size === SMALL) fillSmallI32(new Int32Array(b.buffer, b.byteOffset, 16), k);
    else {
      const lc = largeChecker();
      lc.begin(k);
      lc.ref.copy(b);
    }
    msgs.push(b);
  }
  let bad = 0;
  const per = [];
  for (let r = 0; r < 7; r++) {
    const t0 = performance.now();
    for (let i = 0; i < 20; i++) for (let k = 0; k < n; k++) bad += check(msgs[k], 0, size, k);
    per.push(((performance.now() - t0) * 1e6) / (20 * n));
  }
  if (bad !== 0) throw new Error('checkCostNs: the checker rejects good messages');
  return round(median(per), 1);
}

/** Ratio columns of each table: the competitors the targets name. */
const RATIO_COLUMNS = {
  [SMALL]: [
    { key: 'socket', head: '× Unix socket' },
    { key: 'socketBatch', head: `× socket, ${SEND_MANY} per write` },
    { key: 'zeromq', head: '× zeromq' },
    { key: 'cRingBatch', head: '÷ C floor' },
  ],
  [LARGE]: [
    { key: 'socket', head: '× Unix socket' },
    { key: 'zeromq', head: '× zeromq' },
    { key: 'cRing', head: '÷ C floor' },
  ],
};

function throughputBenchmark(size) {
  const id = size === SMALL ? 'channelThroughputSmall' : 'channelThroughputLarge';
  const all = THROUGHPUT_VARIANTS.filter((v) => !v.sizes || v.sizes.includes(size));

  async function run(ctx) {
    const cfg = ctx.quick ? { seconds: 0.05, runs: 1, budgetMs: 1_000 } : { seconds: 0.25, runs: 5, budgetMs: 1_200 };
    const cRing = compileC('channel_ring');
    const zmq = await loadZmq();
    const skipped = {};
    if (cRing.skipped) skipped.cRing = cRing.skipped;
    if (zmq === null) skipped.zeromq = '`zeromq` is not installed (a devDependency: `npm install` in the repository)';
    for (const s of Object.values(skipped)) ctx.log(`  skipped: ${s}`);
    const variants = all.filter((v) => !(v.transport === 'cring' && cRing.skipped) && !(v.transport === 'zeromq' && zmq === null));
    cfg.counts = Object.fromEntries(variants.map((v) => [v.key, Math.max(2_000, Math.round((v.rate[size] * cfg.seconds) / 1000) * 1000)]));
    const runCfg = { ...cfg, cRing };
    const { samples, failures } = await runInterleaved(ctx, variants, cfg.runs, (v) => runThroughputVariant(v, size, runCfg), (s) =>
      `${fmt(s.msgsPerSec / 1e6)} M msgs/s, ${fmt(s.bytesPerSec / 2 ** 20)} MiB/s${s.truncated ? ` (TRUNCATED: ${s.messages} messages)` : ''}${s.errors ? `, ${s.errors} BAD MESSAGES` : ''}`,
    );
    const out = {};
    for (const v of variants) {
      const s = samples[v.key];
      if (s.length === 0) {
        out[v.key] = null;
        continue;
      }
      const med = (f) => {
        const xs = s.map(f).filter((x) => typeof x === 'number');
        return xs.length ? round(median(xs), 4) : null;
      };
      out[v.key] = {
        msgsPerSec: stats(s.map((x) => x.msgsPerSec)),
        bytesPerSec: stats(s.map((x) => x.bytesPerSec)),
        senderCpuUsPerMsg: med((x) => x.senderCpuUsPerMsg),
        receiverCpuUsPerMsg: med((x) => x.receiverCpuUsPerMsg),
        processCpuUsPerMsg: med((x) => x.processCpuUsPerMsg),
        senderCtxPerMsg: med((x) => x.senderCtxPerMsg),
        receiverCtxPerMsg: med((x) => x.receiverCtxPerMsg),
        messages: s.map((x) => x.messages),
        truncatedRuns: s.filter((x) => x.truncated).length,
        errors: s.reduce((a, x) => a + x.errors, 0),
      };
    }
    const errors = variants.reduce((a, v) => a + (out[v.key]?.errors ?? 0), 0);
    return {
      id,
      config: { ...cfg, messageBytes: size, geometry: GEOMETRY[size], timeoutMs: TIMEOUT_MS, window: WINDOW, ackEvery: ACK_EVERY, sendMany: SEND_MANY, receiveMax: RECEIVE_MAX },
      checkNsPerMsg: checkCostNs(size),
      results: out,
      failures,
      skipped,
      errors,
      checksumsMatch: errors === 0,
      failed: variants.some((v) => out[v.key] === null),
    };
  }

  function render(res) {
    const { results: r, config: c } = res;
    const small = size === SMALL;
    const cols = RATIO_COLUMNS[size];
    const rows = all.filter((v) => v.key in r).map((v) => {
      const s = r[v.key];
      const label = labelOf(v, size);
      if (s === null) return [label, 'failed', '–', '–', ...cols.map(() => '–'), '–'];
      const m = s.msgsPerSec;
      const cpu =
        s.processCpuUsPerMsg !== null
          ? `${fmt(s.processCpuUsPerMsg)} (one process)`
          : `${s.senderCpuUsPerMsg === null ? '–' : fmt(s.senderCpuUsPerMsg)} + ${fmt(s.receiverCpuUsPerMsg)}`;
      return [
        `${label}${s.truncatedRuns ? ' (truncated)' : ''}`,
        fmt(m.median / 1e6),
        `${fmt(m.min / 1e6)}–${fmt(m.max / 1e6)}`,
        small ? fmt(s.bytesPerSec.median / 2 ** 20) : fmt(s.bytesPerSec.median / 2 ** 30),
        ...cols.map((col) => {
          const ref = r[col.key]?.msgsPerSec.median;
          return ref ? fmtRatio(m.median / ref) : '–';
        }),
        cpu,
      ];
    });
    const table = markdownTable(['Transport', 'M msgs/s (median)', 'min–max', small ? 'MiB/s' : 'GiB/s', ...cols.map((col) => col.head), 'CPU µs/msg: sender + receiver'], rows);
    const runs = c.runs === 1 ? 'one run' : `${c.runs} interleaved runs (a fresh child each), median`;
    const counts = Object.entries(c.counts)
      .map(([k, n]) => `${k} ${n.toLocaleString('en-US')}`)
      .join(', ');
    const sizeText = small ? '64-byte' : '64 KiB';
    const lane = c.geometry.laneSize >= 2 ** 20 ? `${c.geometry.laneSize / 2 ** 20} MiB` : `${c.geometry.laneSize / 1024} KiB`;
    const notes = [
      `One way, child → parent, ${sizeText} messages; ${runs}. Messages per run (the first tenth is warm-up, not timed; the clock starts once it has arrived, long after the child's start-up): ${counts}. ` +
        `A run that would last longer than ${c.budgetMs / 1000} s after warm-up stops there (marked truncated).`,
      small
        ? `The parent checks every message: its sequence number (the next one expected) and the XOR checksum of its 16 words (≈ ${fmt(res.checkNsPerMsg)} ns per message here, included in every row).`
        : `The parent checks every byte of every message against its own copy of the template stamped for the expected sequence number (memcmp, ≈ ${fmt(res.checkNsPerMsg / 1000)} µs per message here, included in every row). Senders keep the message in a buffer of their own and rewrite only its stamps (64 words) per message, and the transport copies the whole; with \`reserve\`, the sender writes the whole message into the lane; zeromq.js sends a Buffer of more than 128 bytes by reference, so its sender fills a new one per message.`,
      `Channel: one lane of ${lane} (\`laneSize\`), \`maxMessageSize\` ${c.messageBytes}, in \`SharedMemory.anonymous()\`, both ends with the same strategy; every call passes a ${c.timeoutMs / 1000} s timeout (the \`for await\` rows have a watchdog instead). ` +
        (small ? `Batches: \`sendMany\` of ${c.sendMany} messages per call; the receivers take up to ${c.receiveMax} per call (\`receiveInto\` into a ${fmt((c.receiveMax * 64) / 1024)} KiB target).` : `\`receiveInto\` into a 256 KiB target, \`drain\` up to ${c.receiveMax} per call.`),
      `Floors: a plain single-producer ring in JavaScript (\`bench/channel/jsring.mjs\`) and in C (\`bench/c/channel_ring.c\`, \`cc -O2\`) over shared memory between two processes, rings of the lane's size with the channel's record format; the sender copies each message from its own buffer into the ring, the receiver checks it where it lies; a side with nothing to do spins 50 µs, then sleeps until the other wakes it (as \`'hybrid'\`). "÷ C floor" is the row's rate over the C ring's${small ? ` (publishing per ${c.sendMany})` : ''}.`,
      `Streams: a 4-byte length before each message; the sender waits for \`'drain'\` when \`write()\` returns false; the parent splits the byte stream at the length prefixes and checks every message in place (a message split across reads is checked piece by piece${small ? ', or re-assembled in a 64-byte scratch buffer' : ''}). ` +
        `IPC: the child keeps at most ${c.window} sends without their callback. Worker: credit-based (window ${c.window}, credit returned every ${c.ackEvery} messages). zeromq.js: default high-water marks (1000 messages).`,
      `CPU column: process CPU time (user + system, \`process.cpuUsage()\`; \`getrusage\` in C) per message, sender (its whole send loop) + receiver (the timed part); spinning counts as CPU. For the worker, both threads are one process.`,
    ];
    const truncated = all.filter((v) => r[v.key]?.truncatedRuns);
    if (truncated.length) {
      notes.push(
        `Stopped by the ${c.budgetMs / 1000} s budget (marked truncated; their figures come from the messages timed): ` +
          `${truncated.map((v) => `${v.key} in ${r[v.key].truncatedRuns} of ${r[v.key].messages.length} runs (messages timed per run: ${r[v.key].messages.map((n) => n.toLocaleString('en-US')).join(', ')})`).join('; ')}.`,
      );
    }
    notes.push(`Messages checked: ${res.errors === 0 ? 'no bad message in any variant' : `**${res.errors} BAD MESSAGES**`}.`);
    for (const [k, f] of Object.entries(res.failures ?? {})) notes.push(`**${k} failed** in ${f.length} run(s): ${f[0]}`);
    for (const [k, why] of Object.entries(res.skipped ?? {})) notes.push(`${k} skipped: ${why}.`);
    return { title: `One-way throughput, ${sizeText} messages`, table, notes };
  }

  return { id, run, render };
}

/** For bench/channel/profile.mjs: run one variant once. */
export const internals = {
  LATENCY_VARIANTS,
  THROUGHPUT_VARIANTS,
  runLatencyVariant: (v, cfg) => runLatencyVariant(v, v.transport === 'c' ? { ...cfg, cExe: compileC('futex_pingpong').exe } : cfg),
  runThroughputVariant: (v, size, cfg) => runThroughputVariant(v, size, v.transport === 'cring' ? { ...cfg, cRing: compileC('channel_ring') } : cfg),
};

export const throughputSmall = throughputBenchmark(SMALL);
export const throughputLarge = throughputBenchmark(LARGE);
export { chart } from './channel/chart.mjs';
export { summary } from './channel/targets.mjs';
