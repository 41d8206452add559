// 02-unrelated-wait-writer.mjs: the writer half of two unrelated processes that wait for each other.
//
// Lesson 02 again, with named POSIX shared memory (shm_open) instead of a file, and without "run the
// reader after the writer has finished": start the two programs in either order, in two terminals.
//   node examples/02-unrelated-wait-writer.mjs [--delay MS] NAME [MESSAGE]
//   node examples/02-unrelated-wait-reader.mjs NAME
// NAME is the shared memory object's name (a file in /dev/shm on Linux), with or without a leading
// slash; both programs must be given the same one.
//
// The writer creates NAME (exclusively: an existing NAME is an error, never silently reused), writes
// the message, sets the WRITTEN event, then sleeps on the READ event until the reader acknowledges.
// Then it removes the name (shm_unlink): the memory goes away once the reader has closed it too.
// It removes the name when it fails as well, so a name is only ever left behind by a killed writer.
// --delay MS: take MS ms between creating NAME and writing the message, as a writer that still has to
// compute its message would; a reader started first sleeps on WRITTEN in the meantime.
// MMAPKIT_WAIT_TIMEOUT=MS changes how long it waits for the reader (default 10000 ms).
//
// Layout of the shared memory (both programs define these offsets; keep them in sync):
//   WRITTEN      0    Event (32 bytes): set by the writer once the message is in place
//   READ         32   Event (32 bytes): set by the reader once it has read the message (the ack)
//   WRITER_PID   64   u32 LE: the writer's pid (so the reader can tell a live writer from a stale name)
//   READER_PID   68   u32 LE: the reader's pid, written before it sets READ
//   LENGTH       72   u32 LE: the message's length in bytes
//   TEXT         76   the message, UTF-8; the object is MIN_SIZE bytes, or larger to fit the message

import { setTimeout as sleep } from 'node:timers/promises';
import { Event, SharedMemory } from 'mmapkit';

const who = '[writer]';
const WRITTEN = 0;
const READ = 32;
const WRITER_PID = 64;
const READER_PID = 68;
const LENGTH = 72;
const TEXT = 76;
const MIN_SIZE = 4096; // one page

function waitTimeout() {
  const env = process.env.MMAPKIT_WAIT_TIMEOUT;
  if (env === undefined || env === '') return 10_000;
  const n = Number(env);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`MMAPKIT_WAIT_TIMEOUT must be a positive integer (milliseconds), not "${env}"`);
  return n;
}

async function write(name, text, delay) {
  const timeout = waitTimeout();
  const message = Buffer.from(text, 'utf8');
  let shm;
  try {
    // shm_open(O_CREAT | O_EXCL | O_RDWR, 0600) + ftruncate + mmap(MAP_SHARED): zero-filled memory.
    shm = SharedMemory.create(name, Math.max(MIN_SIZE, TEXT + message.length));
  } catch (err) {
    if (err.code === 'EEXIST') {
      const bare = name.replace(/^\//, '');
      throw new Error(`/${bare} already exists: another writer is using it, or one was killed before removing it (rm /dev/shm/${bare})`);
    }
    throw err;
  }
  try {
    console.log(`${who} pid ${process.pid} created ${shm.name} (${shm.size} bytes)`);
    const buf = shm.buffer;
    buf.writeUInt32LE(process.pid, WRITER_PID);
    // A reader that opened the name early retries until both events are there (attach checks a
    // header that create writes last), so the pid above is visible to it by then.
    const read = Event.create(shm, READ);
    const written = Event.create(shm, WRITTEN);
    if (delay > 0) {
      console.log(`${who} taking ${delay} ms to prepare the message (--delay)`);
      await sleep(delay);
    }

    message.copy(buf, TEXT);
    buf.writeUInt32LE(message.length, LENGTH);
    console.log(`${who} wrote ${message.length} bytes: "${text}"`);
    written.set(); // after the message: a reader that sees WRITTEN set also sees the message
    console.log(`${who} set WRITTEN; waiting for the reader to set READ (at most ${timeout / 1000} s)`);

    // Blocks this thread in the kernel (futex) until the reader sets READ: no polling.
    if (!read.wait(timeout)) throw new Error(`no reader acknowledged the message within ${timeout / 1000} s`);
    console.log(`${who} the reader (pid ${buf.readUInt32LE(READER_PID)}) set READ: message delivered`);
  } finally {
    // Remove the name whether we succeeded or not: it is ours (we created it exclusively).
    shm.close();
    try {
      shm.unlink();
      console.log(`${who} removed the name ${shm.name}`);
    } catch (err) {
      if (err.code !== 'ENOENT') throw err; // someone removed it for us: fine
    }
  }
}

try {
  const args = process.argv.slice(2);
  let delay = 0;
  if (args[0] === '--delay') {
    delay = args[1] === undefined || args[1] === '' ? NaN : Number(args[1]);
    args.splice(0, 2);
  }
  const [name, text = `Hello from the writer (pid ${process.pid}) at ${new Date().toISOString()}`, ...extra] = args;
  if (name === undefined || name.startsWith('-') || extra.length > 0 || !Number.isSafeInteger(delay) || delay < 0) {
    console.error('usage: node examples/02-unrelated-wait-writer.mjs [--delay MS] NAME [MESSAGE]');
    process.exit(2);
  }
  await write(name, text, delay);
} catch (err) {
  console.error(`${who} error: ${err.message}`);
  process.exitCode = 1;
}
