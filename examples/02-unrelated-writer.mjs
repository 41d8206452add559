// 02-unrelated-writer.mjs: the writer half of two unrelated processes sharing one file.
//
// Unlike lesson 01, the two processes are not parent and child: you start them yourself, one after
// the other. All they share is a file name. The writer maps the file MAP_SHARED, stores a message in
// it and exits; the message stays in the file, where 02-unrelated-reader.mjs finds it.
//
//   node examples/02-unrelated-writer.mjs FILE [MESSAGE]
//   node examples/02-unrelated-reader.mjs FILE
//
// Layout of FILE (a tiny "protocol" both programs agree on):
//   bytes 0..3   message length in bytes, unsigned 32-bit little-endian
//   bytes 4..    the message, UTF-8
// There is no locking: run the reader after the writer has finished.

import { map } from 'mmapkit';

const who = '[writer]';
const HEADER = 4; // the length prefix
const MIN_SIZE = 4096; // one page

try {
  const [path, text = `Hello from the writer (pid ${process.pid}) at ${new Date().toISOString()}`, ...extra] =
    process.argv.slice(2);
  if (path === undefined || path.startsWith('-') || extra.length > 0) {
    console.error('usage: node examples/02-unrelated-writer.mjs FILE [MESSAGE]');
    process.exit(2);
  }
  const message = Buffer.from(text, 'utf8');

  // Create FILE if missing and grow it (never shrink it) so that the header and message fit.
  const m = map(path, { access: 'write', size: Math.max(MIN_SIZE, HEADER + message.length) });
  try {
    console.log(`${who} pid ${process.pid} mapped ${path} (${m.length} bytes, shared: ${m.shared})`);
    // Plain memory writes into the page cache: no write() system call.
    m.buffer.writeUInt32LE(message.length, 0); // the length prefix
    message.copy(m.buffer, HEADER); // the message after it
    console.log(`${who} wrote ${message.length} bytes: "${text}"`);

    // msync(MS_SYNC): push the dirty pages to the disk now. Other processes would see the bytes even
    // without it (they share the page cache); flush is what makes them survive a crash.
    m.flush();
    console.log(`${who} flushed to disk; exiting`);
  } finally {
    m.unmap();
  }
} catch (err) {
  console.error(`${who} error: ${err.message}`);
  process.exitCode = 1;
}
