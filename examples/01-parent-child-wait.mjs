// 01-parent-child-wait.mjs: lesson 01 again, but each process waits for the other instead of for an exit.
//
// In 01-parent-child.mjs the parent learns that the greeting is there when the child exits. Here the
// two processes talk while both are alive, with two events that live in the shared mapping itself
// (futex words: a waiting process sleeps in the kernel, it does not poll):
//   1. the child writes its greeting and sets GREETING_WRITTEN, then waits for REPLY_WRITTEN;
//   2. the parent, asleep on GREETING_WRITTEN, wakes up, reads the greeting (the child is still
//      running), writes a reply and sets REPLY_WRITTEN;
//   3. the child wakes up, reads the reply and exits; the parent waits for that exit.
// The parent waits with waitAsync (its event loop stays free to notice a child that dies early); the
// child, which has nothing else to do, blocks in wait(). Every wait has a timeout.
//
//   node examples/01-parent-child-wait.mjs [FILE]
//
// FILE defaults to a temporary file, removed at the end. A FILE you name is created if missing,
// grown to 4096 bytes if smaller, and its first 4096 bytes are overwritten.
// MMAPKIT_WAIT_TIMEOUT=MS changes how long each side waits for the other (default 10000 ms).
//
// Layout of FILE (SIZE bytes):
//   GREETING_WRITTEN  0      Event (32 bytes): the child's greeting is in place
//   REPLY_WRITTEN     32     Event (32 bytes): the parent's reply is in place
//   GREETING          1024   the child's greeting, a C string (NUL-terminated UTF-8), 1024 bytes
//   REPLY             2048   the parent's reply, a C string, up to the end (2048 bytes)

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Event, map } from 'mmapkit';

const SIZE = 4096;
const GREETING_WRITTEN = 0;
const REPLY_WRITTEN = 32;
const GREETING = 1024;
const GREETING_SIZE = 1024;
const REPLY = 2048;
const REPLY_SIZE = SIZE - REPLY;

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

// ---------------------------------------------------------------------------------------------
// The child: map the file, write a greeting, signal, then block until the parent replies.
// ---------------------------------------------------------------------------------------------
function child(path) {
  const who = '[child]';
  const timeout = waitTimeout();
  const m = map(path, { access: 'write' });
  try {
    // attach checks the header the parent's Event.create wrote: a wrong file or offset fails here.
    const greetingWritten = Event.attach(m, GREETING_WRITTEN);
    const replyWritten = Event.attach(m, REPLY_WRITTEN);
    console.log(`${who} pid ${process.pid} mapped ${path} (${m.length} bytes) and attached both events`);
    const greeting = `Hello parent, this is your child (pid ${process.pid})!`;
    writeCString(m.view(GREETING, GREETING_SIZE), greeting);
    console.log(`${who} wrote its greeting: "${greeting}"`);
    console.log(`${who} setting GREETING_WRITTEN, then blocking until the parent sets REPLY_WRITTEN (at most ${timeout / 1000} s)`);
    greetingWritten.set(); // after the greeting: whoever sees the event set also sees the greeting
    if (!replyWritten.wait(timeout)) throw new Error(`the parent did not set REPLY_WRITTEN within ${timeout / 1000} s`);
    console.log(`${who} woke up: REPLY_WRITTEN is set`);
    console.log(`${who} read the parent's reply: "${readCString(m.view(REPLY, REPLY_SIZE))}"`);
  } finally {
    m.unmap();
  }
}

// ---------------------------------------------------------------------------------------------
// The parent: create the file and the events, start the child, wait for its greeting, reply.
// ---------------------------------------------------------------------------------------------

// Start `node THIS_FILE --child PATH`; `exited` resolves when it ends, however it ends.
function startChild(path) {
  const script = fileURLToPath(import.meta.url);
  // stdout/stderr inherited: the child's lines appear in our output as it prints them.
  const proc = spawn(process.execPath, [script, '--child', path], { stdio: ['ignore', 'inherit', 'inherit'] });
  const exited = new Promise((resolve) => {
    proc.once('error', (err) => resolve({ how: `could not be started: ${err.message}` }));
    proc.once('exit', (code, signal) => resolve({ code, how: signal ? `was killed by ${signal}` : `exited with code ${code}` }));
  });
  return { proc, exited };
}

const running = (proc) => proc.exitCode === null && proc.signalCode === null;

// Sleep until `event` is set, the child ends, or `timeout` ms pass.
async function waitForGreeting(event, child, timeout) {
  const stop = new AbortController();
  // A child that dies without setting the event would leave us asleep until the timeout: wake up at once.
  void child.exited.then(({ how }) => stop.abort(new Error(`the child (pid ${child.proc.pid}) ${how} before setting GREETING_WRITTEN`)));
  let set;
  try {
    set = await event.waitAsync(timeout, { signal: stop.signal });
  } catch (err) {
    // The child may set the event and exit at once: its exit can reach us before the wake-up does.
    if (!event.isSet) throw err;
    set = true;
  }
  if (!set) throw new Error(`the child (pid ${child.proc.pid}) did not set GREETING_WRITTEN within ${timeout / 1000} s; killed it`);
}

// Wait up to `timeout` ms for the child to exit; kill it if it does not.
async function waitForExit(child, timeout) {
  let timer;
  const late = new Promise((resolve) => (timer = setTimeout(resolve, timeout, undefined)));
  const result = await Promise.race([child.exited, late]);
  clearTimeout(timer);
  if (result === undefined) throw new Error(`the child (pid ${child.proc.pid}) did not exit within ${timeout / 1000} s; killed it`);
  if (result.code !== 0) throw new Error(`the child (pid ${child.proc.pid}) failed: it ${result.how}`);
}

async function parent(pathArg) {
  const who = '[parent]';
  const timeout = waitTimeout();
  // No FILE given: use a private temporary directory, removed at the end.
  const tmp = pathArg === undefined ? mkdtempSync(join(tmpdir(), 'mmapkit-01w-')) : undefined;
  const path = pathArg ?? join(tmp, 'shared.bin');
  let child;
  try {
    const m = map(path, { access: 'write', size: SIZE });
    try {
      console.log(`${who} pid ${process.pid} mapped ${path} (${m.length} bytes, shared: ${m.shared})`);
      // Clear what an earlier run may have left, then create the events (both not set) BEFORE the
      // child exists: it attaches to them as soon as it starts.
      m.buffer.fill(0, 0, SIZE);
      const greetingWritten = Event.create(m, GREETING_WRITTEN);
      const replyWritten = Event.create(m, REPLY_WRITTEN);
      console.log(`${who} created the events GREETING_WRITTEN (byte ${GREETING_WRITTEN}) and REPLY_WRITTEN (byte ${REPLY_WRITTEN}) in the mapping`);

      console.log(`${who} starting the child, then waiting for GREETING_WRITTEN (at most ${timeout / 1000} s)`);
      child = startChild(path);
      await waitForGreeting(greetingWritten, child, timeout);
      // The child is blocked on REPLY_WRITTEN: it cannot have exited unless something went wrong.
      const alive = running(child.proc) ? 'is still running, waiting for our reply' : 'has ALREADY EXITED';
      console.log(`${who} woke up: GREETING_WRITTEN is set and the child (pid ${child.proc.pid}) ${alive}`);
      const greeting = readCString(m.view(GREETING, GREETING_SIZE));
      console.log(`${who} read the child's greeting: "${greeting}"`);
      if (greeting === '') throw new Error('GREETING_WRITTEN is set but the greeting is empty');

      const reply = `Hello child, parent ${process.pid} here: I read your greeting while you were waiting.`;
      writeCString(m.view(REPLY, REPLY_SIZE), reply);
      console.log(`${who} wrote its reply: "${reply}"`);
      // The child exits as soon as it sees the reply; give it its own timeout and as much again, so
      // that a child whose wait fails can say why before we give up on it.
      console.log(`${who} setting REPLY_WRITTEN, then waiting for the child to exit (at most ${(2 * timeout) / 1000} s)`);
      replyWritten.set();
      await waitForExit(child, 2 * timeout);
      console.log(`${who} child ${child.proc.pid} exited with code 0`);
    } finally {
      m.unmap();
    }
  } finally {
    // Never leave a child behind: on any failure (a timeout above included), it is killed here.
    if (child !== undefined && running(child.proc)) child.proc.kill('SIGKILL');
    if (tmp !== undefined) rmSync(tmp, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Entry point: `--child PATH` makes this process the child; anything else is the parent.
// ---------------------------------------------------------------------------------------------
const args = process.argv.slice(2);
const isChild = args[0] === '--child';
try {
  if (isChild) {
    if (args[1] === undefined) throw new Error('--child needs the path of the shared file');
    child(args[1]);
  } else {
    if (args.length > 1 || args[0]?.startsWith('-')) {
      console.error('usage: node examples/01-parent-child-wait.mjs [FILE]');
      process.exit(2);
    }
    await parent(args[0]);
  }
} catch (err) {
  // A clear one-line message and a non-zero exit code, never a stack trace for expected errors.
  console.error(`${isChild ? '[child]' : '[parent]'} error: ${err.message}`);
  process.exitCode = 1;
}
