// 02-unrelated-reader.mjs: the reader half of two unrelated processes sharing one file.
//
// Run 02-unrelated-writer.mjs FILE first, then this program with the same FILE. It maps the file
// read-only and prints the message the writer left there (see the writer for the layout:
// a 4-byte little-endian length, then the UTF-8 message).
//
//   node examples/02-unrelated-reader.mjs FILE

import { map } from 'mmapkit';

const who = '[reader]';
const HEADER = 4;

try {
  const [path, ...extra] = process.argv.slice(2);
  if (path === undefined || path.startsWith('-') || extra.length > 0) {
    console.error('usage: node examples/02-unrelated-reader.mjs FILE');
    process.exit(2);
  }

  // access 'read': opened O_RDONLY, so this process can never change the file. mmapkit refuses an
  // empty file (it has no pages to map): that is what a reader started before the writer meets.
  let m;
  try {
    m = map(path, { access: 'read' });
  } catch (err) {
    if (err.code === 'ERR_MMAP_EMPTY_FILE') throw new Error(`${path} is empty: run the writer first`);
    throw err;
  }
  try {
    console.log(`${who} pid ${process.pid} mapped ${path} read-only (${m.length} bytes)`);
    const buf = m.buffer; // zero-copy: these bytes are the page cache's, not a copy
    if (buf.length < HEADER) throw new Error(`${path} is too small (${buf.length} bytes) to hold a message`);
    const length = buf.readUInt32LE(0);
    if (length === 0) throw new Error(`${path} holds no message yet: run the writer first`);
    if (length > buf.length - HEADER) {
      throw new Error(`${path} does not hold a message: its length field says ${length} bytes but only ${buf.length - HEADER} follow`);
    }
    // toString copies the bytes out into a JavaScript string; the mapping itself is untouched.
    const text = buf.toString('utf8', HEADER, HEADER + length);
    console.log(`${who} read ${length} bytes: "${text}"`);
  } finally {
    m.unmap();
  }
} catch (err) {
  console.error(`${who} error: ${err.message}`);
  process.exitCode = 1;
}
