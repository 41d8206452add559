// 02-unrelated-wait-reader.mjs: the reader half of two unrelated processes that wait for each other.
//
// Start it before or after 02-unrelated-wait-writer.mjs, with the same NAME:
//   node examples/02-unrelated-wait-reader.mjs NAME
//
// 1. Open the shared memory NAME. If the writer has not created it yet, there is nothing to sleep on
//    (the events live inside that memory): retry every RETRY_MS until it exists, for at most the
//    timeout. "Not there yet" is any of: no such name (ENOENT), created but not sized yet
//    (ERR_MMAP_EMPTY_FILE), sized but its events not initialized yet (ERR_MMAP_BAD_HEADER).
// 2. Sleep on the WRITTEN event until the writer has put the message in place (no polling: a futex).
// 3. Read the message, write our pid, set READ: the writer, asleep on READ, wakes up and removes NAME.
// MMAPKIT_WAIT_TIMEOUT=MS changes how long each of steps 1 and 2 may take (default 10000 ms).
//
// Layout of the shared memory (see the writer; keep the offsets in sync):
//   WRITTEN      0    Event (32 bytes): set by the writer once the message is in place
//   READ         32   Event (32 bytes): set by the reader once it has read the message (the ack)
//   WRITER_PID   64   u32 LE: the writer's pid
//   READER_PID   68   u32 LE: the reader's pid, written before it sets READ
//   LENGTH       72   u32 LE: the message's length in bytes
//   TEXT         76   the message, UTF-8

import { setTimeout as sleep } from 'node:timers/promises';
import { Event, SharedMemory } from 'mmapkit';

const who = '[reader]';
const WRITTEN = 0;
const READ = 32;
const WRITER_PID = 64;
const READER_PID = 68;
const LENGTH = 72;
const TEXT = 76;
const RETRY_MS = 20;
const NOT_THERE_YET = new Set(['ENOENT', 'ERR_MMAP_EMPTY_FILE', 'ERR_MMAP_BAD_HEADER']);

function waitTimeout() {
  const env = process.env.MMAPKIT_WAIT_TIMEOUT;
  if (env === undefined || env === '') return 10_000;
  const n = Number(env);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`MMAPKIT_WAIT_TIMEOUT must be a positive integer (milliseconds), not "${env}"`);
  return n;
}

// Whether process `pid` exists (signal 0 checks without sending anything; EPERM: it exists).
function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
}

// Open NAME and attach both events, retrying while the writer has not set them up yet.
async function openWhenReady(name, timeout) {
  const deadline = Date.now() + timeout;
  let said = false;
  for (;;) {
    let shm;
    try {
      shm = SharedMemory.open(name); // read-write: we set READ
      return { shm, written: Event.attach(shm, WRITTEN), read: Event.attach(shm, READ) };
    } catch (err) {
      shm?.close();
      if (!NOT_THERE_YET.has(err.code)) throw err;
      if (!said) {
        const why = err.code === 'ENOENT' ? 'does not exist yet' : 'is not set up yet';
        console.log(`${who} ${name} ${why}: waiting for the writer (retrying every ${RETRY_MS} ms, at most ${timeout / 1000} s)`);
        said = true;
      }
      if (Date.now() >= deadline) {
        throw new Error(`no writer set up ${name} within ${timeout / 1000} s: start 02-unrelated-wait-writer.mjs with the same NAME`);
      }
      await sleep(RETRY_MS);
    }
  }
}

async function read(name) {
  const timeout = waitTimeout();
  const { shm, written, read } = await openWhenReady(name, timeout);
  try {
    const buf = shm.buffer;
    const writer = buf.readUInt32LE(WRITER_PID);
    console.log(`${who} pid ${process.pid} opened ${shm.name} (${shm.size} bytes), created by writer pid ${writer}`);
    if (written.isSet) {
      console.log(`${who} WRITTEN is already set: the message is there`);
    } else {
      // A writer that was killed leaves its name behind, and nobody will ever set WRITTEN.
      if (!alive(writer)) {
        throw new Error(`${shm.name} was left behind by writer pid ${writer}, which is no longer running: remove it (rm /dev/shm/${shm.name.slice(1)}) and start the writer again`);
      }
      console.log(`${who} waiting for the writer to set WRITTEN (at most ${timeout / 1000} s)`);
      // Blocks this thread in the kernel (futex) until the writer's set(): no polling.
      if (!written.wait(timeout)) throw new Error(`the writer (pid ${writer}) did not set WRITTEN within ${timeout / 1000} s`);
      console.log(`${who} woke up: WRITTEN is set`);
    }
    const length = buf.readUInt32LE(LENGTH);
    if (length > buf.length - TEXT) {
      throw new Error(`${shm.name} does not hold a message: its length field says ${length} bytes but only ${buf.length - TEXT} follow`);
    }
    const text = buf.toString('utf8', TEXT, TEXT + length);
    console.log(`${who} read ${length} bytes: "${text}"`);

    buf.writeUInt32LE(process.pid, READER_PID);
    console.log(`${who} setting READ to acknowledge, then exiting`);
    read.set(); // after our pid: the writer that wakes up on READ sees it
  } finally {
    shm.close();
  }
}

try {
  const [name, ...extra] = process.argv.slice(2);
  if (name === undefined || name.startsWith('-') || extra.length > 0) {
    console.error('usage: node examples/02-unrelated-wait-reader.mjs NAME');
    process.exit(2);
  }
  await read(name);
} catch (err) {
  console.error(`${who} error: ${err.message}`);
  process.exitCode = 1;
}
