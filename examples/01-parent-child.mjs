// 01-parent-child.mjs: a parent and its child share memory through one mapped file.
//
// The C version of this lesson calls fork(): the child inherits the parent's MAP_SHARED mapping.
// Node cannot fork, so the child is a fresh process (this same file, started with --child) that maps
// the same file itself. MAP_SHARED means both mappings are views of the same page-cache pages:
// what one process writes, the other reads, without any read() or write() system call.
//
//   node examples/01-parent-child.mjs [FILE]
//
// FILE defaults to a temporary file, removed at the end. A FILE you name is created if missing,
// grown to 4096 bytes if smaller, and its first bytes are overwritten.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { map } from 'mmapkit';

const SIZE = 4096; // one page: the smallest piece of a file the kernel maps
const CHILD_TIMEOUT_MS = 10_000; // the parent gives up on a child that takes longer than this

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
// The child: map the file the parent named, read the parent's note, answer in the same bytes.
// ---------------------------------------------------------------------------------------------
function child(path) {
  const who = '[child]';
  // access 'write' = O_RDWR + MAP_SHARED: our writes land in the parent's view too.
  const m = map(path, { access: 'write' });
  try {
    console.log(`${who} pid ${process.pid} mapped ${path} (${m.length} bytes, shared: ${m.shared})`);
    console.log(`${who} saw the parent's note: "${readCString(m.buffer)}"`);
    const greeting = `Hello parent, this is your child (pid ${process.pid})!`;
    writeCString(m.buffer, greeting); // a plain memory write: no write() system call
    console.log(`${who} wrote its greeting: "${greeting}"`);
  } finally {
    m.unmap(); // munmap; the written pages stay in the page cache (and the parent's mapping)
  }
}

// ---------------------------------------------------------------------------------------------
// The parent: create the file, map it, start the child, wait, read what the child wrote.
// ---------------------------------------------------------------------------------------------

// Start `node THIS_FILE --child PATH` and wait for it to exit, for at most CHILD_TIMEOUT_MS.
function runChild(path) {
  return new Promise((resolve, reject) => {
    const script = fileURLToPath(import.meta.url);
    // stdout/stderr inherited: the child's lines appear in our output as it prints them.
    const proc = spawn(process.execPath, [script, '--child', path], { stdio: ['ignore', 'inherit', 'inherit'] });
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`the child (pid ${proc.pid}) did not finish within ${CHILD_TIMEOUT_MS / 1000} s; killed it`));
    }, CHILD_TIMEOUT_MS);
    proc.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`could not start the child: ${err.message}`));
    });
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(proc.pid);
      else reject(new Error(`the child (pid ${proc.pid}) failed: ${signal ? `killed by ${signal}` : `exit code ${code}`}`));
    });
  });
}

async function parent(pathArg) {
  const who = '[parent]';
  // No FILE given: use a private temporary directory, removed at the end.
  const tmp = pathArg === undefined ? mkdtempSync(join(tmpdir(), 'mmapkit-01-')) : undefined;
  const path = pathArg ?? join(tmp, 'shared.bin');
  try {
    // size: create the file if missing and grow it (ftruncate) to SIZE bytes, then mmap it shared.
    const m = map(path, { access: 'write', size: SIZE });
    try {
      console.log(`${who} pid ${process.pid} mapped ${path} (${m.length} bytes, shared: ${m.shared})`);
      const note = `Hi child, parent ${process.pid} here. Please write your greeting over this.`;
      writeCString(m.buffer, note);
      console.log(`${who} wrote a note: "${note}"`);

      // The child is another process with its own address space; only the file connects us.
      console.log(`${who} starting the child and waiting for it (at most ${CHILD_TIMEOUT_MS / 1000} s)`);
      const pid = await runChild(path);
      console.log(`${who} child ${pid} exited with code 0`);

      // No read(), no re-mapping: our own mapping already shows the child's bytes.
      const seen = readCString(m.buffer);
      console.log(`${who} read from its mapping: "${seen}"`);
      if (seen === note) throw new Error('the mapping still holds the parent\'s note: the child\'s write did not arrive');
    } finally {
      m.unmap();
    }
  } finally {
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
      console.error('usage: node examples/01-parent-child.mjs [FILE]');
      process.exit(2);
    }
    await parent(args[0]);
  }
} catch (err) {
  // A clear one-line message and a non-zero exit code, never a stack trace for expected errors.
  console.error(`${isChild ? '[child]' : '[parent]'} error: ${err.message}`);
  process.exitCode = 1;
}
