// 04-anonymous-shm.mjs: anonymous shared memory between a parent and its child.
//
// The C version of this lesson maps memory that belongs to no file,
//   mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0)
// then calls fork(): the child inherits the mapping, and nothing else in the system can reach it.
// Node cannot fork. The nearest thing is memfd_create: a file descriptor for anonymous memory, with
// no name anywhere (nothing in /dev/shm), handed to the child when it is spawned:
//   - SharedMemory.anonymous(size) makes it (close-on-exec: it reaches only the children it is given to);
//   - shm.childOptions(...) adds its descriptor to the child's stdio and tells the child its number;
//   - SharedMemory.inherited() in the child maps the same memory.
//
// The C parent would learn that the child is done with wait(). Here the parent does not wait for the
// exit: it sleeps on a 32-bit word in the shared memory (a futex, through waitAsync), and the child
// stores a new value there and calls notify() as soon as its message is written.
//
//   node examples/04-anonymous-shm.mjs
//
// MMAPKIT_WAIT_TIMEOUT=MS changes how long each side waits for the other (default 10000 ms).
//
// Layout of the shared memory (SIZE bytes):
//   STATE     0      i32: EMPTY (0) until the child has written its message, then WRITTEN (1)
//   NOTE      1024   the parent's note to the child, a C string (NUL-terminated UTF-8), 1024 bytes
//   MESSAGE   2048   the child's message to the parent, a C string, up to the end (2048 bytes)

import { spawn } from 'node:child_process';
import { readlinkSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { INHERIT_ENV, SharedMemory, notify, waitAsync } from 'mmapkit';

const SIZE = 4096; // one page
const STATE = 0;
const NOTE = 1024;
const NOTE_SIZE = 1024;
const MESSAGE = 2048;
const MESSAGE_SIZE = SIZE - MESSAGE;
const EMPTY = 0;
const WRITTEN = 1;

function waitTimeout() {
  const env = process.env.MMAPKIT_WAIT_TIMEOUT;
  if (env === undefined || env === '') return 10_000;
  const n = Number(env);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`MMAPKIT_WAIT_TIMEOUT must be a positive integer (milliseconds), not "${env}"`);
  return n;
}

// C strings end at the first NUL byte; the lesson keeps that convention.
function readCString(buf) {
  const end = buf.indexOf(0);
  return buf.toString('utf8', 0, end === -1 ? buf.length : end);
}
function writeCString(buf, text) {
  const n = buf.write(text, 0, buf.length - 1, 'utf8'); // always leave room for the NUL
  buf[n] = 0;
}

// The state word, as the Int32Array that wait/notify work on.
const stateWord = (shm) => new Int32Array(shm.buffer.buffer, shm.buffer.byteOffset + STATE, 1);

// What a descriptor is, as the kernel names it: "/memfd:mmapkit (deleted)" for anonymous memory.
const describeFd = (fd) => readlinkSync(`/proc/self/fd/${fd}`);

// ---------------------------------------------------------------------------------------------
// The child: attach to the inherited memory, read the parent's note, write a message, notify.
// ---------------------------------------------------------------------------------------------
function child() {
  const who = '[child]';
  if (!process.env[INHERIT_ENV]) throw new Error('no shared memory was handed to this process: run the parent (without --child)');
  const shm = SharedMemory.inherited();
  try {
    console.log(`${who} pid ${process.pid} attached the memory its parent handed over (${describeFd(shm.fd)}, ${shm.size} bytes)`);
    console.log(`${who} saw the parent's note: "${readCString(shm.buffer.subarray(NOTE, NOTE + NOTE_SIZE))}"`);
    const message = `Hello parent, this is your child (pid ${process.pid}), writing into memory that has no name!`;
    writeCString(shm.buffer.subarray(MESSAGE, MESSAGE + MESSAGE_SIZE), message);
    console.log(`${who} wrote its message: "${message}"`);
    // Publish, then wake: the store (sequentially consistent) comes after the message bytes, so a
    // process that sees WRITTEN also sees the message. notify wakes whoever sleeps on the word.
    const state = stateWord(shm);
    console.log(`${who} storing WRITTEN in the state word and notifying the parent, then exiting`);
    Atomics.store(state, 0, WRITTEN);
    notify(state, 0);
  } finally {
    shm.close();
  }
}

// ---------------------------------------------------------------------------------------------
// The parent: make the memory, write a note, start the child, sleep until the child notifies.
// ---------------------------------------------------------------------------------------------

// Start `node THIS_FILE --child` with the memory; `exited` resolves when it ends, however it ends.
function startChild(shm) {
  const script = fileURLToPath(import.meta.url);
  // stdout/stderr inherited: the child's lines appear in our output as it prints them. childOptions
  // appends the memory's descriptor to stdio (fd 3 in the child) and records it in the environment.
  const proc = spawn(process.execPath, [script, '--child'], shm.childOptions({ stdio: ['ignore', 'inherit', 'inherit'] }));
  const exited = new Promise((resolve) => {
    proc.once('error', (err) => resolve({ how: `could not be started: ${err.message}` }));
    proc.once('exit', (code, signal) => resolve({ code, how: signal ? `was killed by ${signal}` : `exited with code ${code}` }));
  });
  return { proc, exited };
}

const running = (proc) => proc.exitCode === null && proc.signalCode === null;

// Sleep until the state word leaves EMPTY, the child ends, or `timeout` ms pass.
async function waitForMessage(state, child, timeout) {
  const stop = new AbortController();
  // A child that dies without notifying would leave us asleep until the timeout: wake up at once.
  void child.exited.then(({ how }) => stop.abort(new Error(`the child (pid ${child.proc.pid}) ${how} before writing its message`)));
  const deadline = Date.now() + timeout;
  try {
    // A futex wake-up can be spurious, and the value can change before we sleep: always re-check.
    while (Atomics.load(state, 0) === EMPTY) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`the child (pid ${child.proc.pid}) did not write its message within ${timeout / 1000} s; killed it`);
      // Sleeps on a waiter thread (only while the word still holds EMPTY): the event loop stays free.
      await waitAsync(state, 0, EMPTY, left, { signal: stop.signal });
    }
  } catch (err) {
    // The child may notify and exit at once: its exit can reach us before the wake-up does.
    if (Atomics.load(state, 0) === EMPTY) throw err;
  }
}

// Wait up to `timeout` ms for the child to exit; kill it if it does not.
async function waitForExit(child, timeout) {
  let timer;
  const late = new Promise((resolve) => (timer = setTimeout(resolve, timeout, undefined)));
  const result = await Promise.race([child.exited, late]);
  clearTimeout(timer);
  if (result === undefined) throw new Error(`the child (pid ${child.proc.pid}) did not exit within ${timeout / 1000} s; killed it`);
  if (result.code !== 0) throw new Error(`the child (pid ${child.proc.pid}) failed: it ${result.how}`);
  return result;
}

async function parent() {
  const who = '[parent]';
  const timeout = waitTimeout();
  const shm = SharedMemory.anonymous(SIZE); // memfd_create + ftruncate + mmap(MAP_SHARED): zero-filled
  let child;
  try {
    console.log(`${who} pid ${process.pid} created ${shm.size} bytes of anonymous shared memory (fd ${shm.fd}: ${describeFd(shm.fd)}; no name in /dev/shm)`);
    const note = `Hi child, parent ${process.pid} here. Write your message and notify me.`;
    writeCString(shm.buffer.subarray(NOTE, NOTE + NOTE_SIZE), note);
    console.log(`${who} wrote a note: "${note}"`);

    const state = stateWord(shm);
    console.log(`${who} starting the child, then sleeping on the state word until it notifies (at most ${timeout / 1000} s)`);
    child = startChild(shm);
    await waitForMessage(state, child, timeout);
    console.log(`${who} woke up: the state word is WRITTEN`);
    const seen = readCString(shm.buffer.subarray(MESSAGE, MESSAGE + MESSAGE_SIZE));
    console.log(`${who} read from the shared memory: "${seen}"`);
    if (seen === '') throw new Error('the state word says WRITTEN but the message is empty');

    await waitForExit(child, timeout);
    console.log(`${who} child ${child.proc.pid} exited with code 0`);
  } finally {
    // Never leave a child behind: on any failure (a timeout above included), it is killed here.
    if (child !== undefined && running(child.proc)) child.proc.kill('SIGKILL');
    shm.close(); // the memory disappears with the last descriptor and mapping
  }
}

// ---------------------------------------------------------------------------------------------
// Entry point: `--child` makes this process the child; no argument, the parent.
// ---------------------------------------------------------------------------------------------
const args = process.argv.slice(2);
const isChild = args[0] === '--child';
try {
  if (isChild && args.length === 1) {
    child();
  } else {
    if (args.length > 0) {
      console.error('usage: node examples/04-anonymous-shm.mjs');
      process.exit(2);
    }
    await parent();
  }
} catch (err) {
  // A clear one-line message and a non-zero exit code, never a stack trace for expected errors.
  console.error(`${isChild ? '[child]' : '[parent]'} error: ${err.message}`);
  process.exitCode = 1;
}
