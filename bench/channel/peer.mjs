/**
 * The child side of the channel benchmark (bench/channel.mjs): started as a child process
 * (`node bench/channel/peer.mjs '<json config>'`) or, for worker_threads, as a worker (config in
 * workerData). Messages and checks: bench/channel/format.mjs.
 *
 * mode 'echo' (round trip over two channels): the parent's channel memories are inherited as 'ping'
 * (parent → child) and 'pong' (child → parent). `total` times: receive message k from ping, check it,
 * send message k on pong. Sync (`receive`/`send`) or, with `async`, `receiveAsync`/`sendAsync`; the
 * channel handles use the wait strategy `wait` (and `spin` µs).
 *
 * mode 'send' (one-way throughput): send messages 0..total-1 of `size` bytes to the parent, which
 * receives and checks them, over `transport`:
 *   'channel'      the memory inherited as 'data'; `method` 'send' (sync), 'sendAsync', 'sendMany' or
 *                  'sendManyAsync' (`batch` messages per call), or 'reserve' (reserve + write the
 *                  message into the lane + commit: zero copy)
 *   'jsring'       the JavaScript floor (jsring.mjs) over the memory inherited as 'data', the write
 *                  position published every `batch` messages
 *   'zeromq'       zeromq.js PUSH connected to the parent's PULL at `endpoint` (ipc://), `await send()`
 *   'socket'       a Unix domain socket (`net`), one write() per message, length-prefixed
 *   'socketBatch'  the same, `batch` messages coalesced into one write()
 *   'fifo'         a FIFO made by the parent (mkfifo), through `net.Socket`, length-prefixed
 *   'ipc'          child_process IPC, `serialization: 'advanced'`, one Buffer per message
 *   'worker'       worker_threads postMessage of a Uint8Array (cloned), credit-based flow control
 * Streams respect backpressure (wait for 'drain'); IPC keeps at most WINDOW sends unacknowledged by
 * their callbacks; the worker waits for the parent's credit.
 *
 * Every wait has a timeout (`timeoutMs` without progress, `startTimeoutMs` for the first message):
 * the peer then exits 3 with a message on stderr. At the end it prints one JSON line on stdout:
 * { errors, messages, cpuUs, ctxSwitches } (CPU time and context switches of this process during its
 * loop) and exits 0.
 */
import { once } from 'node:events';
import { constants as fsConstants, openSync } from 'node:fs';
import net from 'node:net';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { checkerFor, fillLarge, fillSmall, fillSmallAt, fillSmallI32, LARGE, largeTemplate, PREFIX, SMALL, stampLarge, WINDOW } from './format.mjs';

const cfg = isMainThread ? JSON.parse(process.argv[2]) : workerData;
const { total, timeoutMs } = cfg;
const startTimeoutMs = cfg.startTimeoutMs ?? 20_000;

function fail(message) {
  const text = `channel peer (${cfg.mode}/${cfg.transport ?? ''}${cfg.wait ? `/${cfg.wait}` : ''}): ${message}`;
  if (isMainThread) {
    process.stderr.write(`${text}\n`);
    process.exit(3);
  }
  throw new Error(text);
}

let ru0 = process.resourceUsage();
let cpu0 = process.cpuUsage();
function startCounting() {
  ru0 = process.resourceUsage();
  cpu0 = process.cpuUsage();
}
function reportLine(errors) {
  const ru = process.resourceUsage();
  const cpu = process.cpuUsage(cpu0);
  return {
    errors,
    messages: total,
    cpuUs: { user: cpu.user, system: cpu.system },
    ctxSwitches: {
      voluntary: ru.voluntaryContextSwitches - ru0.voluntaryContextSwitches,
      involuntary: ru.involuntaryContextSwitches - ru0.involuntaryContextSwitches,
    },
  };
}
function report(errors) {
  process.stdout.write(`${JSON.stringify(reportLine(errors))}\n`);
}

// ---- round trip over two channels ------------------------------------------------------------------

async function echo() {
  const { Channel, SharedMemory } = await import('../../dist/index.js');
  const pingMem = SharedMemory.inherited('ping');
  const pongMem = SharedMemory.inherited('pong');
  const options = { wait: cfg.wait, ...(cfg.spin !== undefined ? { spin: cfg.spin } : {}) };
  const rx = Channel.open(pingMem, options);
  const tx = Channel.open(pongMem, options);
  rx.attach('consumer');
  tx.attach('producer');
  const reply = new Uint8Array(SMALL);
  const replyI32 = new Int32Array(reply.buffer);
  let errors = 0;
  startCounting();
  if (cfg.async) {
    for (let k = 0; k < total; k++) {
      const m = await rx.receiveAsync(k === 0 ? startTimeoutMs : timeoutMs);
      if (m === null) fail(`the parent closed the ping channel at ${k}`);
      errors += checkerSmall(m, k);
      fillSmallI32(replyI32, k);
      await tx.sendAsync(reply, timeoutMs);
    }
  } else if (cfg.zeroCopy) {
    for (let k = 0; k < total; k++) {
      const m = rx.receiveInPlace(k === 0 ? startTimeoutMs : timeoutMs);
      if (m === null) fail(`the parent closed the ping channel at ${k}`);
      errors += checkerSmall(m.data, k);
      m.release();
      const r = tx.reserve(timeoutMs);
      fillSmallAt(r.buffer, 0, k);
      r.commit(SMALL);
    }
  } else {
    for (let k = 0; k < total; k++) {
      const m = rx.receive(k === 0 ? startTimeoutMs : timeoutMs);
      if (m === null) fail(`the parent closed the ping channel at ${k}`);
      errors += checkerSmall(m, k);
      fillSmallI32(replyI32, k);
      tx.send(reply, timeoutMs);
    }
  }
  report(errors);
  tx.close();
  rx.close();
  pingMem.close();
  pongMem.close();
  process.exit(0);
}

const checkerSmall = (m, k) => checkerFor(SMALL)(m, 0, m.length, k);

// ---- one-way throughput ----------------------------------------------------------------------------

/** A message source for senders that keep their message in a buffer of their own (channel send, IPC, worker). */
function ownBuffer(size) {
  if (size === SMALL) {
    const u8 = new Uint8Array(SMALL);
    const i32 = new Int32Array(u8.buffer);
    return { u8: Buffer.from(u8.buffer), set: (k) => fillSmallI32(i32, k) };
  }
  const u8 = Buffer.from(largeTemplate());
  return { u8, set: (k) => stampLarge(u8, 0, k) };
}

async function sendChannel() {
  const { Channel, SharedMemory } = await import('../../dist/index.js');
  const mem = SharedMemory.inherited('data');
  const ch = Channel.open(mem, { wait: cfg.wait, ...(cfg.spin !== undefined ? { spin: cfg.spin } : {}) });
  ch.attach('producer');
  const size = cfg.size;
  startCounting();
  if (cfg.method === 'reserve') {
    for (let k = 0; k < total; k++) {
      const r = ch.reserve(timeoutMs);
      if (size === SMALL) fillSmallAt(r.buffer, 0, k);
      else fillLarge(r.buffer, 0, k);
      r.commit(size);
    }
  } else if (cfg.method === 'sendMany' || cfg.method === 'sendManyAsync') {
    const srcs = Array.from({ length: cfg.batch }, () => ownBuffer(size));
    const batch = srcs.map((src) => src.u8);
    const isAsync = cfg.method === 'sendManyAsync';
    for (let k = 0; k < total; k += cfg.batch) {
      const n = Math.min(cfg.batch, total - k);
      for (let i = 0; i < n; i++) srcs[i].set(k + i);
      const msgs = n === cfg.batch ? batch : batch.slice(0, n);
      if (isAsync) await ch.sendManyAsync(msgs, timeoutMs);
      else ch.sendMany(msgs, timeoutMs);
    }
  } else {
    const src = ownBuffer(size);
    if (cfg.method === 'sendAsync') {
      for (let k = 0; k < total; k++) {
        src.set(k);
        await ch.sendAsync(src.u8, timeoutMs);
      }
    } else {
      for (let k = 0; k < total; k++) {
        src.set(k);
        ch.send(src.u8, timeoutMs);
      }
    }
  }
  report(0);
  ch.close(); // consumers see the end of the stream
  mem.close();
  process.exit(0);
}

/**
 * The JavaScript floor (bench/channel/jsring.mjs): the same messages into a plain SPSC ring over the
 * memory inherited as 'data', the write position published every `batch` messages.
 */
async function sendJsRing() {
  const { SharedMemory } = await import('../../dist/index.js');
  const { RingProducer } = await import('./jsring.mjs');
  const mem = SharedMemory.inherited('data');
  const ring = new RingProducer(mem.buffer, cfg.ringSize, timeoutMs);
  const size = cfg.size;
  const batch = cfg.batch ?? 1;
  const src = ownBuffer(size);
  startCounting();
  try {
    if (size === SMALL) {
      const words = new Int32Array(src.u8.buffer, src.u8.byteOffset, SMALL / 4);
      for (let k = 0; k < total; k++) {
        src.set(k);
        ring.append64(words);
        if ((k + 1) % batch === 0) ring.publish();
      }
    } else {
      for (let k = 0; k < total; k++) {
        src.set(k);
        ring.appendBytes(src.u8);
        if ((k + 1) % batch === 0) ring.publish();
      }
    }
  } catch (err) {
    fail(err.message);
  }
  report(0);
  ring.close();
  process.exit(0);
}

/**
 * zeromq.js PUSH over ipc:// to the parent's PULL: `await send()` per message, the idiom of its
 * documentation. 64-byte messages: one buffer reused (zeromq.js copies messages of up to 128 bytes
 * inside send()); 64 KiB: a new Buffer per message, filled from the template (zeromq.js sends larger
 * Buffers by reference, without copying, so a buffer must not be rewritten after send()).
 */
async function sendZmq() {
  let zmq;
  try {
    zmq = await import('zeromq');
  } catch (err) {
    fail(`zeromq is not installed: ${err.message}`);
  }
  const push = new zmq.Push({ sendTimeout: timeoutMs, linger: timeoutMs });
  push.connect(cfg.endpoint);
  const size = cfg.size;
  startCounting();
  try {
    if (size === SMALL) {
      const src = ownBuffer(size);
      for (let k = 0; k < total; k++) {
        src.set(k);
        await push.send(src.u8);
      }
    } else {
      const template = largeTemplate();
      for (let k = 0; k < total; k++) {
        const b = Buffer.allocUnsafe(LARGE);
        template.copy(b);
        stampLarge(b, 0, k);
        await push.send(b);
      }
    }
  } catch (err) {
    fail(`zeromq send: ${err.message}`);
  }
  process.stdout.write(`${JSON.stringify(reportLine(0))}\n`);
  // Messages may still be queued in zeromq's I/O thread, and exiting now would drop them: keep the
  // socket until the parent has them all (it closes our stdin then; so does its death).
  await new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs + startTimeoutMs);
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    process.stdin.once('end', done).once('close', done).once('error', done).resume();
  });
  push.close();
  process.exit(0);
}

/**
 * Send over a byte stream (`out`: a net.Socket), length-prefixed, waiting for 'drain' whenever
 * write() says the stream is full. 64-byte messages: a new Buffer per write (a queued write keeps its
 * Buffer), `batch` messages per write. 64 KiB messages: a ring of buffers holding the template, each
 * reused once its write has completed; only the stamps are rewritten.
 */
async function streamSend(out) {
  const size = cfg.size;
  const batch = cfg.batch ?? 1;
  const drained = () => once(out, 'drain', { signal: AbortSignal.timeout(timeoutMs) }).catch(() => fail(`no 'drain' within ${timeoutMs} ms`));
  startCounting();
  if (size === SMALL) {
    const frame = PREFIX + SMALL;
    for (let k = 0; k < total; ) {
      const n = Math.min(batch, total - k);
      const b = Buffer.allocUnsafe(n * frame);
      for (let i = 0; i < n; i++, k++) {
        const off = i * frame;
        b[off] = SMALL;
        b[off + 1] = 0;
        b[off + 2] = 0;
        b[off + 3] = 0;
        fillSmall(b, off + PREFIX, k);
      }
      if (!out.write(b)) await drained();
    }
  } else {
    const RING = 8;
    const ring = [];
    for (let i = 0; i < RING; i++) {
      const b = Buffer.allocUnsafe(PREFIX + LARGE);
      b.writeUInt32LE(LARGE, 0);
      largeTemplate().copy(b, PREFIX);
      ring.push({ b, busy: null });
    }
    for (let k = 0; k < total; k++) {
      const slot = ring[k % RING];
      if (slot.busy !== null) {
        let timer;
        await Promise.race([slot.busy, new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs, 'late')))]).then((r) => {
          if (r === 'late') fail(`a write did not complete within ${timeoutMs} ms`);
        });
        clearTimeout(timer);
      }
      stampLarge(slot.b, PREFIX, k);
      let done;
      slot.busy = new Promise((resolve) => (done = resolve));
      const ok = out.write(slot.b, (err) => {
        if (err) fail(`write: ${err.message}`);
        slot.busy = null;
        done();
      });
      if (!ok) await drained();
    }
  }
  const line = reportLine(0);
  await new Promise((resolve) => out.end(resolve));
  return line;
}

async function sendSocket() {
  const s = net.connect(cfg.path);
  s.on('error', (err) => fail(`socket: ${err.message}`));
  await once(s, 'connect', { signal: AbortSignal.timeout(startTimeoutMs) }).catch(() => fail('could not connect'));
  const line = await streamSend(s);
  process.stdout.write(`${JSON.stringify(line)}\n`);
  process.exit(0);
}

async function sendFifo() {
  // The parent holds the FIFO open for reading (O_RDWR), so this non-blocking open for writing succeeds.
  const fd = openSync(cfg.fifo, fsConstants.O_WRONLY | fsConstants.O_NONBLOCK);
  const out = new net.Socket({ fd, readable: false, writable: true });
  out.on('error', (err) => fail(`fifo write: ${err.message}`));
  const line = await streamSend(out);
  process.stdout.write(`${JSON.stringify(line)}\n`);
  process.exit(0);
}

async function sendIpc() {
  const src = ownBuffer(cfg.size);
  let inflight = 0;
  let wake = null;
  const sent = (err) => {
    if (err) fail(`process.send: ${err.message}`);
    inflight--;
    if (wake !== null && inflight < WINDOW / 2) {
      const w = wake;
      wake = null;
      w();
    }
  };
  const onDisconnect = () => fail('the parent closed the IPC channel');
  process.on('disconnect', onDisconnect);
  startCounting();
  for (let k = 0; k < total; k++) {
    if (inflight >= WINDOW) {
      let timer;
      const r = await Promise.race([new Promise((resolve) => (wake = resolve)), new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs, 'late')))]);
      clearTimeout(timer);
      if (r === 'late') fail(`IPC sends not acknowledged within ${timeoutMs} ms`);
    }
    src.set(k);
    inflight++;
    process.send(src.u8, sent); // serialized (copied) synchronously: the buffer can be reused
  }
  const line = reportLine(0);
  const deadline = performance.now() + timeoutMs;
  while (inflight > 0) {
    if (performance.now() > deadline) fail(`IPC sends not acknowledged within ${timeoutMs} ms`);
    await new Promise((resolve) => setImmediate(resolve));
  }
  process.stdout.write(`${JSON.stringify(line)}\n`);
  process.off('disconnect', onDisconnect);
  process.disconnect();
}

async function sendWorker() {
  const src = ownBuffer(cfg.size);
  const u8 = new Uint8Array(src.u8.buffer, src.u8.byteOffset, src.u8.length);
  let acked = 0;
  let wake = null;
  parentPort.on('message', (m) => {
    acked = m;
    if (wake !== null) {
      const w = wake;
      wake = null;
      w();
    }
  });
  startCounting();
  for (let k = 0; k < total; k++) {
    while (k - acked >= WINDOW) {
      let timer;
      const r = await Promise.race([new Promise((resolve) => (wake = resolve)), new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs, 'late')))]);
      clearTimeout(timer);
      if (r === 'late') fail(`no credit from the parent within ${timeoutMs} ms`);
    }
    src.set(k);
    parentPort.postMessage(u8); // structured clone: copied
  }
  parentPort.postMessage({ done: true, report: reportLine(0) });
  parentPort.close();
}

const senders = { channel: sendChannel, jsring: sendJsRing, zeromq: sendZmq, socket: sendSocket, socketBatch: sendSocket, fifo: sendFifo, ipc: sendIpc, worker: sendWorker };
if (cfg.mode === 'echo') await echo();
else if (cfg.mode === 'send') {
  const fn = senders[cfg.transport];
  if (fn === undefined) fail(`unknown transport ${cfg.transport}`);
  await fn();
} else fail(`unknown mode ${cfg.mode}`);
