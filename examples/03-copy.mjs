// 03-copy.mjs: copy a file through two memory mappings, without read() or write().
//
//   node examples/03-copy.mjs SRC DST
//
// The C recipe: open SRC, fstat it for its size, mmap it read-only; open DST with
// O_RDWR | O_CREAT | O_TRUNC, ftruncate it to the same size, mmap it shared; memcpy; msync; munmap.
// Here memcpy is Buffer.copy, and mmapkit's { access: 'write', size } does the ftruncate.
//
// DST gets SRC's mode bits (permissions, and setuid/setgid/sticky, like `cp -p`). An existing DST
// is replaced. A Buffer holds at most 4 GiB, so the copy goes window by window (1 GiB each) through
// mapping.view(offset, length): it works for any size. MMAPKIT_COPY_WINDOW=BYTES sets a smaller
// window, to watch the loop at work on a small file.

import { closeSync, fchmodSync, openSync, statSync, unlinkSync } from 'node:fs';
import { map } from 'mmapkit';

const who = '[copy]';

function windowSize() {
  const env = process.env.MMAPKIT_COPY_WINDOW;
  if (env === undefined || env === '') return 1024 ** 3; // 1 GiB
  const n = Number(env);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`MMAPKIT_COPY_WINDOW must be a positive integer, not "${env}"`);
  return n;
}

// stat, or undefined when the path does not exist.
function statOrUndefined(path) {
  try {
    return statSync(path);
  } catch (err) {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  }
}

function copy(srcPath, dstPath) {
  const WINDOW = windowSize();
  const st = statSync(srcPath);
  if (st.isDirectory()) throw new Error(`${srcPath} is a directory`);
  if (!st.isFile()) throw new Error(`${srcPath} is not a regular file (a device or pipe has no size to copy)`);
  const mode = st.mode & 0o7777;

  // Copying a file onto itself would truncate it (O_TRUNC below) before reading it: refuse.
  const dst = statOrUndefined(dstPath);
  if (dst !== undefined && dst.dev === st.dev && dst.ino === st.ino) {
    throw new Error(`${srcPath} and ${dstPath} are the same file`);
  }

  // O_RDWR | O_CREAT | O_TRUNC ('w+'): a shared writable mapping needs a file opened for reading
  // AND writing. 0o600 while the copy is incomplete; the source's mode comes at the end.
  const fd = openSync(dstPath, 'w+', 0o600);
  let done = false;
  try {
    if (st.size === 0) {
      // An empty file has no pages: mmap would fail (mmapkit says ERR_MMAP_EMPTY_FILE). Nothing to
      // copy either: the truncated DST is already the copy.
      console.log(`${who} ${srcPath} is empty: created an empty ${dstPath} without mapping anything`);
    } else {
      // The source, read-only: O_RDONLY, so this program cannot damage it.
      const src = map(srcPath, { access: 'read' });
      try {
        const size = src.length; // the size the mapping saw (the file may have changed since stat)
        console.log(`${who} mapped ${srcPath} read-only (${size} bytes)`);
        src.advise('sequential'); // madvise(MADV_SEQUENTIAL): read ahead aggressively, drop pages behind

        // The destination: size grows the (just truncated) file to `size` bytes with ftruncate, then
        // maps it MAP_SHARED. We pass the descriptor we opened; mmapkit does not close it.
        const out = map(fd, { access: 'write', size });
        try {
          console.log(`${who} created ${dstPath}, grew it to ${out.length} bytes and mapped it shared`);
          let windows = 0;
          for (let offset = 0; offset < size; offset += WINDOW) {
            const length = Math.min(WINDOW, size - offset);
            // Two zero-copy views; copy() is a memcpy from the source's pages to the destination's.
            src.view(offset, length).copy(out.view(offset, length));
            windows++;
          }
          console.log(`${who} copied ${size} bytes in ${windows} window(s) of at most ${WINDOW} bytes`);
          out.flush(); // msync(MS_SYNC): the data is on the disk when this returns
          console.log(`${who} flushed ${dstPath} to disk`);
        } finally {
          out.unmap();
        }
      } finally {
        src.unmap();
      }
    }
    fchmodSync(fd, mode); // after O_CREAT's umask: set exactly the source's bits
    console.log(`${who} set the mode of ${dstPath} to 0${mode.toString(8)}, like ${srcPath}`);
    done = true;
  } finally {
    closeSync(fd);
    if (!done) unlinkSync(dstPath); // a half-made copy is worse than none (the old DST was truncated)
  }
}

const args = process.argv.slice(2);
if (args.length !== 2 || args.some((a) => a.startsWith('-'))) {
  console.error('usage: node examples/03-copy.mjs SRC DST');
  process.exit(2);
}
try {
  copy(args[0], args[1]);
} catch (err) {
  console.error(`${who} error: ${err.message}`);
  process.exitCode = 1;
}
