/**
 * The Unix domain socket pair of bench/send-recv.mjs, the same shape as `mmapkit send` / `recv`:
 *
 *   node socket-peer.mjs listen PATH    accept one connection on PATH, copy it to stdout, exit
 *   node socket-peer.mjs connect PATH   copy stdin to the socket at PATH (retrying until it listens)
 *
 * Idiomatic Node streams (stream.pipeline) with 256 KiB reads of stdin, so that the comparison is with
 * what a Node program would do, not with a hand-tuned C loop (the FIFO row has `cat` for that).
 */
import { createReadStream, rmSync } from 'node:fs';
import { once } from 'node:events';
import net from 'node:net';
import { pipeline } from 'node:stream/promises';

const [mode, path] = process.argv.slice(2);
const CONNECT_DEADLINE_MS = 60_000;

if (mode === 'listen') {
  rmSync(path, { force: true });
  const server = net.createServer();
  server.listen(path);
  const [socket] = await once(server, 'connection');
  server.close();
  await pipeline(socket, process.stdout);
} else if (mode === 'connect') {
  const deadline = Date.now() + CONNECT_DEADLINE_MS;
  let socket;
  for (;;) {
    socket = net.connect(path);
    try {
      await once(socket, 'connect');
      break;
    } catch (err) {
      if ((err.code !== 'ENOENT' && err.code !== 'ECONNREFUSED') || Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  }
  await pipeline(createReadStream(null, { fd: 0, highWaterMark: 256 * 1024 }), socket);
} else {
  console.error('usage: socket-peer.mjs listen|connect PATH');
  process.exit(2);
}
