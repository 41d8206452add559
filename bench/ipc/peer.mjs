/**
 * The answering side of the IPC latency benchmark (bench/ipc-latency.mjs): started by it as a child
 * process (`node bench/ipc/peer.mjs '<json config>'`) or as a worker thread (config in workerData).
 * It answers `total` pings with pongs, checking every ping (see protocol.mjs), then prints one JSON
 * line on stdout: `{ errors, rounds, ctxSwitches: { voluntary, involuntary } }` (context switches of
 * this process during the loop, per round trip) and exits 0.
 *
 * Config: { transport, total, timeoutMs, ... }
 *   transport 'shm':    wait: 'block' | 'spin' | 'async', spin, threadSpin (waitAsync options, µs);
 *                       the memory is SharedMemory.inherited('ipc').
 *   transport 'socket': path of the parent's Unix socket server.
 *   transport 'fifo':   fifoIn (parent → child) and fifoOut (child → parent), made with mkfifo.
 *   transport 'ipc':    the child_process channel (process.send / 'message').
 *   transport 'worker': parentPort.
 * Every wait has a timeout (timeoutMs without progress): the peer then exits 3 with a message on
 * stderr. The stream peers start with a 64-byte hello (message -1) so that the parent starts timing
 * only once the child is ready.
 */
import { constants as fsConstants, openSync } from 'node:fs';
import net from 'node:net';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import {
  checkBuf,
  checkBytes,
  checkI32,
  fillBytes,
  fillI32,
  framer,
  makeBuf,
  makeString,
  MSG_BYTES,
  PING,
  PING_SALT,
  PONG,
  PONG_SALT,
  READY,
  TURN,
} from './protocol.mjs';

const cfg = isMainThread ? JSON.parse(process.argv[2]) : workerData;
const { total, timeoutMs } = cfg;

function fail(message) {
  if (isMainThread) {
    process.stderr.write(`peer (${cfg.transport}${cfg.wait ? `/${cfg.wait}` : ''}): ${message}\n`);
    process.exit(3);
  }
  throw new Error(message);
}

let ru0 = process.resourceUsage();
function startCounting() {
  ru0 = process.resourceUsage();
}
function report(errors) {
  const ru = process.resourceUsage();
  const out = {
    errors,
    rounds: total,
    ctxSwitches: {
      voluntary: (ru.voluntaryContextSwitches - ru0.voluntaryContextSwitches) / total,
      involuntary: (ru.involuntaryContextSwitches - ru0.involuntaryContextSwitches) / total,
    },
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

// ---- shared memory -------------------------------------------------------------------------------

/** Blocking: wait() on the value just read, notify() after publishing. */
function shmBlock(mk, i32) {
  const { wait, notify } = mk;
  let errors = 0;
  for (let k = 0; k < total; k++) {
    const want = 2 * k + 1;
    for (;;) {
      const v = Atomics.load(i32, TURN); // read once, and sleep on that very value
      if (v === want) break;
      if (wait(i32, TURN, v, timeoutMs) === 'timed-out') fail(`no ping ${k} within ${timeoutMs} ms`);
    }
    errors += checkI32(i32, PING, k, PING_SALT);
    fillI32(i32, PONG, k, PONG_SALT);
    Atomics.store(i32, TURN, want + 1);
    notify(i32, TURN, 1);
  }
  return errors;
}

/** Spinning: Atomics.load until the turn comes (no futex at all); a deadline checked now and then. */
function shmSpin(i32) {
  let errors = 0;
  for (let k = 0; k < total; k++) {
    const want = 2 * k + 1;
    if (Atomics.load(i32, TURN) !== want) {
      const deadline = performance.now() + timeoutMs;
      let n = 0;
      while (Atomics.load(i32, TURN) !== want) {
        if ((++n & 0xfff) === 0 && performance.now() > deadline) fail(`no ping ${k} within ${timeoutMs} ms`);
      }
    }
    errors += checkI32(i32, PING, k, PING_SALT);
    fillI32(i32, PONG, k, PONG_SALT);
    Atomics.store(i32, TURN, want + 1);
  }
  return errors;
}

/** waitAsync (with the given options) on the value just read, notify() after publishing. */
async function shmAsync(mk, i32, options) {
  const { waitAsync, notify } = mk;
  let errors = 0;
  for (let k = 0; k < total; k++) {
    const want = 2 * k + 1;
    for (;;) {
      const v = Atomics.load(i32, TURN);
      if (v === want) break;
      if ((await waitAsync(i32, TURN, v, timeoutMs, options)) === 'timed-out') fail(`no ping ${k} within ${timeoutMs} ms`);
    }
    errors += checkI32(i32, PING, k, PING_SALT);
    fillI32(i32, PONG, k, PONG_SALT);
    Atomics.store(i32, TURN, want + 1);
    notify(i32, TURN, 1);
  }
  return errors;
}

async function shm() {
  const mk = await import('../../dist/index.js');
  const mem = mk.SharedMemory.inherited('ipc');
  const b = mem.buffer;
  const i32 = new Int32Array(b.buffer, b.byteOffset, b.length >>> 2);
  startCounting();
  Atomics.store(i32, READY, 1);
  mk.notify(i32, READY);
  let errors;
  if (cfg.wait === 'block') errors = shmBlock(mk, i32);
  else if (cfg.wait === 'spin') errors = shmSpin(i32);
  else if (cfg.wait === 'async') {
    const options = {};
    if (cfg.spin) options.spin = cfg.spin;
    if (cfg.threadSpin) options.threadSpin = cfg.threadSpin;
    errors = await shmAsync(mk, i32, options);
  } else fail(`unknown wait kind ${cfg.wait}`);
  report(errors);
  mem.close();
  process.exit(0);
}

// ---- byte streams: Unix socket, FIFO pair --------------------------------------------------------

/** Answer pings arriving on `input` through `write`; resolve with the error count after `total`. */
function streamPeer(input, write) {
  return new Promise((resolve) => {
    let k = 0;
    let errors = 0;
    let last = Date.now();
    const watchdog = setInterval(() => {
      if (Date.now() - last > timeoutMs) fail(`no ping ${k} within ${timeoutMs} ms`);
    }, 250);
    input.on(
      'data',
      framer((buf, off) => {
        errors += checkBuf(buf, off, k, PING_SALT);
        write(makeBuf(k, PONG_SALT));
        last = Date.now();
        if (++k === total) {
          clearInterval(watchdog);
          resolve(errors);
        }
      }),
    );
    input.on('error', (err) => fail(`read: ${err.message}`));
    startCounting();
    write(makeBuf(-1, PONG_SALT)); // hello
  });
}

async function socket() {
  const s = net.connect(cfg.path);
  s.on('error', (err) => fail(`socket: ${err.message}`));
  await new Promise((resolve) => s.once('connect', resolve));
  const errors = await streamPeer(s, (b) => s.write(b));
  report(errors);
  s.end(() => process.exit(0));
}

async function fifo() {
  // O_RDWR: opening never blocks and the read side never sees end-of-file while we run.
  const flags = fsConstants.O_RDWR | fsConstants.O_NONBLOCK;
  const inFd = openSync(cfg.fifoIn, flags);
  const outFd = openSync(cfg.fifoOut, flags);
  const input = new net.Socket({ fd: inFd, readable: true, writable: false });
  const output = new net.Socket({ fd: outFd, readable: false, writable: true });
  output.on('error', (err) => fail(`fifo write: ${err.message}`));
  const errors = await streamPeer(input, (b) => output.write(b));
  report(errors);
  input.destroy();
  output.end(() => process.exit(0));
}

// ---- message channels: child_process IPC, worker_threads ------------------------------------------

async function ipc() {
  let k = 0;
  let errors = 0;
  let last = Date.now();
  const watchdog = setInterval(() => {
    if (Date.now() - last > timeoutMs) fail(`no ping ${k} within ${timeoutMs} ms`);
  }, 250);
  const done = new Promise((resolve) => {
    process.on('message', (m) => {
      errors += m === makeString(k, PING_SALT) ? 0 : 1;
      process.send(makeString(k, PONG_SALT));
      last = Date.now();
      if (++k === total) resolve();
    });
  });
  process.on('disconnect', () => {
    if (k < total) fail('the parent closed the channel early');
  });
  startCounting();
  process.send('ready');
  await done;
  clearInterval(watchdog);
  report(errors);
  process.disconnect();
}

function worker() {
  let k = 0;
  let errors = 0;
  const reply = new Uint8Array(MSG_BYTES);
  const dv = new DataView(reply.buffer);
  parentPort.on('message', (m) => {
    errors += checkBytes(m, k, PING_SALT);
    fillBytes(dv, k, PONG_SALT);
    parentPort.postMessage(reply); // structured clone: the 64 bytes are copied
    if (++k === total) {
      parentPort.postMessage({ done: true, errors });
      parentPort.close();
    }
  });
  parentPort.postMessage('ready');
}

const transports = { shm, socket, fifo, ipc, worker };
const fn = transports[cfg.transport];
if (fn === undefined) fail(`unknown transport ${cfg.transport}`);
await fn();
