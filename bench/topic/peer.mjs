/**
 * The child processes of the topic benchmark (bench/topic.mjs): one publisher and N subscribers per
 * run, started as `node bench/topic/peer.mjs '<json config>'`. Messages and checks are the channel
 * benchmark's (bench/channel/format.mjs): 64-byte message k carries k in its first word and an XOR
 * checksum of its 16 words; streams frame each message with a 4-byte length.
 *
 * role 'sub' (a subscriber): gets ready, prints `{"ready":true}` on stdout, then receives and checks
 * every message over `transport`:
 *   'topic'    the topic inherited as 'topic' (SharedMemory.inherited), `subscribe({ wait })`, then
 *              `recv` 'receive' (one Buffer per message), 'into' (`receiveInto` a 64 KiB target) or
 *              'drain' (`drain(handler, 1024)`); message k must be the k-th received (nothing lost,
 *              nothing repeated, in order). Ready once subscribed.
 *   'socket'   listens on its own Unix socket `path` (ready once listening); the publisher connects;
 *              the byte stream is split at its length prefixes and every message checked in place,
 *              in order.
 *   'zeromq'   zeromq.js SUB connected to the publisher's PUB at `endpoint`, subscribed to all; ready
 *              once the first hello (a 1-byte message 'H') arrived: it is then connected and its
 *              subscription known to the publisher. PUB drops what a slow subscriber's queue cannot
 *              take (high-water mark), so sequence numbers only have to grow: gaps are counted as
 *              lost, a repeated or backward number or a bad checksum is an error. The stream ends
 *              with end markers ('E', repeated by the publisher until every subscriber has one).
 *              `lost` counts the gaps seen; the parent counts what never came (published − received).
 * Timing, in the subscriber: from the first message numbered `warmup` or later (the first tenth of
 * the stream is warm-up) to the last: messages/s = messages after the first timed one ÷ that time;
 * CPU time (process.cpuUsage) and context switches over the same window. Report (last stdout line):
 * { role, index, received, messages, seconds, msgsPerSec, lastSeq, lost, errors, truncated, cpuUs,
 *   ctxSwitches }.
 *
 * role 'pub' (the publisher): gets ready (topic: opens it and attaches as its publisher; socket:
 * nothing; zeromq: binds PUB and sends hellos every 2 ms), waits for a line 'go' on stdin (the
 * parent sends it once every subscriber is ready), then publishes messages 0..total-1:
 *   'topic'    `method` 'publish' (per message, from its own buffer) or 'publishMany' (`batch`
 *              buffers per call), every call with a timeout; then closes its handle (the end of the
 *              stream for the subscribers).
 *   'socket'   connects to every subscriber's `paths[i]`, then writes each message (a new Buffer per
 *              `write()`: a queued write keeps its buffer), or `batch` messages coalesced into one
 *              Buffer, to every socket; when a write() returns false it waits for 'drain' on that
 *              socket before going on; then ends the sockets.
 *   'zeromq'   `await pub.send(buf)` per message (zeromq.js copies a message of up to 128 bytes in
 *              send(): one buffer is reused); then sends end markers every 2 ms until its stdin
 *              closes (the parent closes it once every subscriber has reported).
 * A publisher stops early once `budgetMs` have passed since 'go' (truncated): subscribers then see
 * the end of the stream (topic: end; socket: 'end'; zeromq: the end markers) and report what they
 * got. Report: { role, published, truncated, cpuUs, ctxSwitches, seconds }.
 *
 * Every wait has a timeout (`timeoutMs` without progress, `startTimeoutMs` for the first message):
 * the peer then exits 3 with a message on stderr.
 */
import { once } from 'node:events';
import net from 'node:net';
import { checkSmall, fillSmall, fillSmallI32, PREFIX, SMALL, streamReceiver } from '../channel/format.mjs';

const cfg = JSON.parse(process.argv[2]);
const { total, warmup, timeoutMs } = cfg;
const startTimeoutMs = cfg.startTimeoutMs ?? 20_000;
/** Most messages per batch receive (`receiveInto`, `drain`). */
const RECEIVE_MAX = 1024;

function fail(message) {
  process.stderr.write(`topic peer (${cfg.role}${cfg.index !== undefined ? ` ${cfg.index}` : ''}/${cfg.transport}${cfg.wait ? `/${cfg.wait}` : ''}): ${message}\n`);
  process.exit(3);
}

const line = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function usage(ru0, cpu0) {
  const ru = process.resourceUsage();
  const cpu = process.cpuUsage(cpu0);
  return {
    cpuUs: { user: cpu.user, system: cpu.system },
    ctxSwitches: { voluntary: ru.voluntaryContextSwitches - ru0.voluntaryContextSwitches, involuntary: ru.involuntaryContextSwitches - ru0.involuntaryContextSwitches },
  };
}

/**
 * The subscriber's clock: `at(k)` before a receive call with the messages received so far starts the
 * clock at the first call once `warmup` are in (a batch may step past it: `k0` is where it started);
 * `mark(seq)` for receivers that see messages one at a time with possibly missing numbers (zeromq).
 */
function subClock() {
  const st = { t0: 0, t1: 0, k0: 0, ru0: null, cpu0: null, started: false };
  st.at = (k) => {
    if (!st.started && k >= warmup) {
      st.started = true;
      st.ru0 = process.resourceUsage();
      st.cpu0 = process.cpuUsage();
      st.t0 = performance.now();
      st.k0 = k;
    }
  };
  st.report = (k, extra) => {
    const t1 = st.t1 || performance.now();
    if (!st.started) fail(`only ${k} messages received: not past the ${warmup}-message warm-up`);
    const n = k - st.k0;
    if (n < 1) fail(`no message received after the warm-up (${k} in all)`);
    const seconds = (t1 - st.t0) / 1000;
    return { role: 'sub', index: cfg.index, received: k, messages: n, seconds, msgsPerSec: n / seconds, lost: 0, truncated: k < total, ...usage(st.ru0, st.cpu0), ...extra };
  };
  return st;
}

// ---- subscribers -----------------------------------------------------------------------------------

async function subTopic() {
  const { SharedMemory, Topic } = await import('../../dist/index.js');
  const mem = SharedMemory.inherited('topic');
  const options = { wait: cfg.wait, ...(cfg.spin !== undefined ? { spin: cfg.spin } : {}) };
  const topic = Topic.open(mem, options);
  const sub = topic.subscribe(options);
  line({ ready: true });
  const st = subClock();
  let k = 0;
  let errors = 0;
  let ended = false;
  const timeout = () => (k === 0 ? startTimeoutMs : timeoutMs);
  try {
    if (cfg.recv === 'receive') {
      for (; k < total; k++) {
        if ((k & 255) === 0) st.at(k);
        const m = sub.receive(timeout());
        if (m === null) {
          ended = true;
          break;
        }
        errors += checkSmall(m, 0, m.length, k);
      }
    } else if (cfg.recv === 'into') {
      const target = Buffer.allocUnsafe(RECEIVE_MAX * SMALL);
      const lengths = new Uint32Array(RECEIVE_MAX);
      while (k < total) {
        st.at(k);
        const n = sub.receiveInto(target, lengths, timeout());
        if (n === null) {
          ended = true;
          break;
        }
        for (let i = 0, off = 0; i < n; i++) {
          const len = lengths[i];
          errors += checkSmall(target, off, len, k++);
          off += len;
        }
      }
    } else if (cfg.recv === 'drain') {
      const handler = (buf, off, len) => {
        errors += checkSmall(buf, off, len, k++);
      };
      while (k < total) {
        st.at(k);
        if (sub.drain(handler, RECEIVE_MAX, timeout()) === null) {
          ended = true;
          break;
        }
      }
    } else fail(`unknown recv ${cfg.recv}`);
  } catch (err) {
    fail(`after ${k} messages: ${err.message}`);
  }
  st.t1 = performance.now();
  // A stream that ended early (the publisher's budget) is a truncated run, not a loss: the parent
  // compares `received` with what the publisher says it published.
  line(st.report(k, { errors, lastSeq: k - 1, ended }));
  sub.close();
  topic.close();
  mem.close();
  process.exit(0);
}

async function subSocket() {
  const st = subClock();
  let k = 0;
  let errors = 0;
  let finished;
  const done = new Promise((resolve) => (finished = resolve));
  const onMessage = (ok) => {
    if (k === total) return;
    if (!ok) errors++;
    k++;
    if (k === warmup) st.at(k);
    if (k === total) {
      st.t1 = performance.now();
      finished('all');
    }
  };
  const onChunk = streamReceiver(SMALL, onMessage);
  let conn = null;
  const server = net.createServer((s) => {
    if (conn !== null) {
      errors++; // one publisher per subscriber
      s.destroy();
      return;
    }
    conn = s;
    s.on('data', onChunk);
    s.on('end', () => finished('end'));
    s.on('error', (err) => fail(`socket: ${err.message}`));
  });
  server.on('error', (err) => fail(`listen ${cfg.path}: ${err.message}`));
  await new Promise((resolve) => server.listen(cfg.path, resolve));
  line({ ready: true });
  // Progress watchdog: no message for timeoutMs (startTimeoutMs before the first) fails the run.
  let seen = -1;
  let since = performance.now();
  const dog = setInterval(() => {
    if (k !== seen) {
      seen = k;
      since = performance.now();
    } else if (performance.now() - since > (k === 0 ? startTimeoutMs : timeoutMs)) fail(`no message ${k} within the timeout`);
  }, 100);
  const how = await done;
  clearInterval(dog);
  if (how === 'end') st.t1 = performance.now();
  line(st.report(k, { errors, lastSeq: k - 1, ended: how === 'end' }));
  conn?.destroy();
  server.close();
  process.exit(0);
}

async function subZmq() {
  let zmq;
  try {
    zmq = await import('zeromq');
  } catch (err) {
    fail(`zeromq is not installed: ${err.message}`);
  }
  const sub = new zmq.Subscriber({ receiveTimeout: startTimeoutMs, linger: 0 });
  sub.connect(cfg.endpoint);
  sub.subscribe();
  const st = subClock();
  let ready = false;
  let got = 0; // data messages received
  let last = -1; // the last sequence number received
  let lost = 0;
  let errors = 0;
  let timedFrom = -1; // `got` when the clock started
  try {
    for await (const [m] of sub) {
      if (m.length === 1) {
        if (m[0] === 0x48 /* H */) {
          if (!ready) {
            ready = true;
            line({ ready: true });
          }
          continue;
        }
        if (m[0] === 0x45 /* E */) break;
        errors++;
        continue;
      }
      if (m.length !== SMALL) {
        errors++;
        continue;
      }
      const seq = m[0] | (m[1] << 8) | (m[2] << 16) | (m[3] << 24);
      if (seq <= last) errors++; // repeated or out of order
      else {
        lost += seq - last - 1;
        errors += checkSmall(m, 0, m.length, seq);
        last = seq;
      }
      got++;
      if (timedFrom < 0) {
        if (seq >= warmup) {
          st.at(warmup);
          timedFrom = got;
        }
      } else st.t1 = performance.now();
    }
  } catch (err) {
    fail(`after ${got} messages: ${err.message}`);
  }
  // messages timed: those after the one that started the clock (as the other receivers count)
  st.k0 = 0;
  const rep = st.report(timedFrom < 0 ? 0 : got - timedFrom, { errors, lastSeq: last, lost, ended: true });
  rep.received = got;
  rep.truncated = false;
  line(rep);
  sub.close();
  process.exit(0);
}

// ---- the publisher ---------------------------------------------------------------------------------

/** Resolves on a line 'go' on stdin; fails after startTimeoutMs. */
function go() {
  return new Promise((resolve) => {
    let text = '';
    const timer = setTimeout(() => fail(`no 'go' within ${startTimeoutMs} ms`), startTimeoutMs);
    const onData = (s) => {
      text += s;
      if (text.includes('go\n')) {
        clearTimeout(timer);
        process.stdin.off('data', onData);
        resolve();
      }
    };
    process.stdin.setEncoding('utf8').on('data', onData);
  });
}

async function pubTopic() {
  const { SharedMemory, Topic } = await import('../../dist/index.js');
  const mem = SharedMemory.inherited('topic');
  const topic = Topic.open(mem, { wait: cfg.wait, ...(cfg.spin !== undefined ? { spin: cfg.spin } : {}) });
  topic.attach();
  const batch = cfg.method === 'publishMany' ? cfg.batch : 1;
  const srcs = Array.from({ length: batch }, () => new Uint8Array(SMALL));
  const words = srcs.map((u8) => new Int32Array(u8.buffer));
  await go();
  process.stdin.pause();
  const ru0 = process.resourceUsage();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const budgetEnd = t0 + cfg.budgetMs;
  let k = 0;
  try {
    if (cfg.method === 'publish') {
      const u8 = srcs[0];
      const i32 = words[0];
      for (; k < total; k++) {
        if ((k & 1023) === 0 && performance.now() > budgetEnd) break;
        fillSmallI32(i32, k);
        topic.publish(u8, timeoutMs);
      }
    } else if (cfg.method === 'publishMany') {
      while (k < total) {
        if (performance.now() > budgetEnd) break;
        const n = Math.min(batch, total - k);
        for (let i = 0; i < n; i++) fillSmallI32(words[i], k + i);
        topic.publishMany(n === batch ? srcs : srcs.slice(0, n), timeoutMs);
        k += n;
      }
    } else fail(`unknown method ${cfg.method}`);
  } catch (err) {
    fail(`at message ${k}: ${err.message}`);
  }
  const seconds = (performance.now() - t0) / 1000;
  line({ role: 'pub', published: k, truncated: k < total, seconds, ...usage(ru0, cpu0) });
  topic.close(); // the end of the stream
  mem.close();
  process.exit(0);
}

async function pubSocket() {
  await go();
  const socks = await Promise.all(
    cfg.paths.map(async (path) => {
      const s = net.connect(path);
      s.on('error', (err) => fail(`socket ${path}: ${err.message}`));
      await once(s, 'connect', { signal: AbortSignal.timeout(startTimeoutMs) }).catch(() => fail(`could not connect to ${path}`));
      return s;
    }),
  );
  const batch = cfg.batch ?? 1;
  const frame = PREFIX + SMALL;
  const drained = (s) => once(s, 'drain', { signal: AbortSignal.timeout(timeoutMs) }).catch(() => fail(`no 'drain' within ${timeoutMs} ms`));
  const ru0 = process.resourceUsage();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const budgetEnd = t0 + cfg.budgetMs;
  let k = 0;
  let sinceCheck = 0;
  while (k < total) {
    if (sinceCheck >= 1024) {
      sinceCheck = 0;
      if (performance.now() > budgetEnd) break;
    }
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
    sinceCheck += n;
    // the same Buffer to every subscriber (a queued write keeps it; it is never written again)
    let waits = null;
    for (let i = 0; i < socks.length; i++) if (!socks[i].write(b)) (waits ??= []).push(drained(socks[i]));
    if (waits !== null) await Promise.all(waits);
  }
  const seconds = (performance.now() - t0) / 1000;
  const rep = { role: 'pub', published: k, truncated: k < total, seconds, ...usage(ru0, cpu0) };
  await Promise.all(socks.map((s) => new Promise((resolve) => s.end(resolve))));
  line(rep);
  process.exit(0);
}

async function pubZmq() {
  let zmq;
  try {
    zmq = await import('zeromq');
  } catch (err) {
    fail(`zeromq is not installed: ${err.message}`);
  }
  const pub = new zmq.Publisher({ linger: 0 });
  await pub.bind(cfg.endpoint);
  const hello = Buffer.from('H');
  const end = Buffer.from('E');
  let going = false;
  const started = go().then(() => (going = true));
  // hellos until 'go': a subscriber is ready once one has reached it (connected and subscribed)
  while (!going) {
    await pub.send(hello);
    await Promise.race([sleep(2), started]);
  }
  const u8 = new Uint8Array(SMALL);
  const i32 = new Int32Array(u8.buffer);
  const ru0 = process.resourceUsage();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const budgetEnd = t0 + cfg.budgetMs;
  let k = 0;
  try {
    for (; k < total; k++) {
      if ((k & 1023) === 0 && performance.now() > budgetEnd) break;
      fillSmallI32(i32, k);
      await pub.send(u8);
    }
  } catch (err) {
    fail(`send at ${k}: ${err.message}`);
  }
  const seconds = (performance.now() - t0) / 1000;
  const rep = { role: 'pub', published: k, truncated: k < total, seconds, ...usage(ru0, cpu0) };
  // End markers until the parent closes stdin (every subscriber has reported), or a time limit.
  let closed = false;
  process.stdin.once('end', () => (closed = true)).once('close', () => (closed = true)).resume();
  const limit = performance.now() + timeoutMs + startTimeoutMs;
  while (!closed && performance.now() < limit) {
    await pub.send(end);
    await sleep(2);
  }
  line(rep);
  pub.close();
  process.exit(0);
}

const roles = {
  sub: { topic: subTopic, socket: subSocket, zeromq: subZmq },
  pub: { topic: pubTopic, socket: pubSocket, zeromq: pubZmq },
};
const fn = roles[cfg.role]?.[cfg.transport];
if (fn === undefined) fail(`unknown role/transport ${cfg.role}/${cfg.transport}`);
await fn();
