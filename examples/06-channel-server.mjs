// 06-channel-server.mjs: a process that streams messages from a channel and answers HTTP requests at
// the same time.
//
// A channel's async methods leave the event loop free while they wait. When they do not have to wait
// (a producer keeps its lane full), they still give the event loop a turn every 256 messages or
// 4 ms (docs/api.md, "The event loop"), so a server in the same process keeps answering. This
// example shows it with three processes:
//
//   producer  (this file with --producer)  sends MESSAGES messages as fast as it can, then closes
//   parent    (this file)                  receives them with receiveAsync() and serves HTTP on
//                                          127.0.0.1 (a free port; never other interfaces)
//   client    (this file with --client)    asks the parent GET /progress every 10 ms while the
//                                          messages flow, and says how long each answer took
//
// The parent checks that every message came, in order, and that the client was answered while the
// messages flowed: the slowest answer took milliseconds, not the whole stream.
//
//   node examples/06-channel-server.mjs [MESSAGES]
//
// MESSAGES: 1000 to 10000000 (default 300000). Every wait has a timeout (MMAPKIT_WAIT_TIMEOUT=MS,
// default 10000 ms), and the server accepts connections from this machine only, for this run only.

import { spawn } from 'node:child_process';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { Channel, INHERIT_ENV, SharedMemory } from 'mmapkit';

// One producer, so one lane (of 512 KiB: at least 4096 messages of 64 bytes).
const SHAPE = { capacity: 4096, maxMessageSize: 64, maxProducers: 1 };
const DEFAULT_MESSAGES = 300_000;
const POLL_MS = 10; // the client's pace
const HOST = '127.0.0.1';

function waitTimeout() {
  const env = process.env.MMAPKIT_WAIT_TIMEOUT;
  if (env === undefined || env === '') return 10_000;
  const n = Number(env);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`MMAPKIT_WAIT_TIMEOUT must be a positive integer (milliseconds), not "${env}"`);
  return n;
}

// ---------------------------------------------------------------------------------------------
// The producer: send every message as fast as possible (sendMany: blocking, 256 per call).
// ---------------------------------------------------------------------------------------------
function producer(count) {
  const timeout = waitTimeout();
  if (!process.env[INHERIT_ENV]) throw new Error('no channel was handed to this process: run the parent (without --producer)');
  const memory = SharedMemory.inherited('stream');
  const stream = Channel.open(memory);
  try {
    const batch = Array.from({ length: 256 }, () => Buffer.alloc(SHAPE.maxMessageSize, 0x2a));
    for (let seq = 0; seq < count;) {
      const now = batch.slice(0, Math.min(batch.length, count - seq));
      for (const message of now) message.writeUInt32LE(seq++, 0); // the sequence number first
      stream.sendMany(now, { timeout }); // copied into the channel: the buffers can be reused
    }
    console.log(`[producer] sent ${count} messages`);
  } finally {
    stream.close(); // the end of the stream for the parent
    memory.close();
  }
}

// ---------------------------------------------------------------------------------------------
// The client: GET /progress every POLL_MS until the parent says the stream is over.
// ---------------------------------------------------------------------------------------------
function get(url, agent, timeout) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent, timeout }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d) => (body += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(body)) : reject(new Error(`HTTP ${res.statusCode}`))));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeout} ms`)));
    req.on('error', reject);
  });
}

async function client(url) {
  const timeout = waitTimeout();
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const during = []; // answer times (ms) of requests answered while messages were still coming
  const deadline = Date.now() + 6 * timeout;
  for (;;) {
    if (Date.now() > deadline) throw new Error('the stream did not end in time');
    const t0 = performance.now();
    const progress = await get(url, agent, timeout);
    const ms = performance.now() - t0;
    if (progress.done) break;
    if (progress.received > 0) during.push(ms);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  agent.destroy();
  during.sort((a, b) => a - b);
  const median = during.length ? during[during.length >> 1] : null;
  const slowest = during.length ? during[during.length - 1] : null;
  console.log(JSON.stringify({ answered: during.length, medianMs: median && +median.toFixed(2), slowestMs: slowest && +slowest.toFixed(2) }));
}

// ---------------------------------------------------------------------------------------------
// The parent: serve, receive, check.
// ---------------------------------------------------------------------------------------------
function start(args, options, label) {
  const proc = spawn(process.execPath, [fileURLToPath(import.meta.url), ...args], options);
  let out = '';
  proc.stdout.setEncoding('utf8').on('data', (d) => {
    out += d;
    if (label !== 'client') process.stdout.write(d); // the producer's lines, as they come (the client's report is read below)
  });
  const exited = new Promise((resolve) => {
    proc.once('error', (err) => resolve({ how: `could not be started: ${err.message}` }));
    proc.once('exit', (code, signal) => resolve({ code, how: signal ? `was killed by ${signal}` : `exited with code ${code}` }));
  });
  return { label, proc, exited, output: () => out };
}

async function exitOf(child, timeout) {
  let timer;
  const late = new Promise((resolve) => (timer = setTimeout(resolve, timeout, { how: `did not exit within ${timeout} ms` })));
  const result = await Promise.race([child.exited, late]);
  clearTimeout(timer);
  if (result.code !== 0) throw new Error(`the ${child.label} ${result.how}`);
}

async function parent(count) {
  const timeout = waitTimeout();
  const memory = SharedMemory.anonymous(Channel.byteLength(SHAPE));
  const stream = Channel.create(memory, SHAPE); // 'block': async waits sleep on a thread of mmapkit's
  const children = [];
  let received = 0;
  let done = false;
  const server = http.createServer((req, res) => {
    if (req.url !== '/progress') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ received, done }));
  });
  try {
    await new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, HOST, resolve); // port 0: a free one; HOST: loopback only
    });
    server.unref(); // the open connections of a finished client do not keep us alive
    const url = `http://${HOST}:${server.address().port}/progress`;
    console.log(`[parent] serving ${url}; receiving ${count} messages of ${SHAPE.maxMessageSize} bytes`);
    stream.attach('consumer');
    const stdio = { stdio: ['ignore', 'pipe', 'inherit'] };
    children.push(start(['--client', url], stdio, 'client'));
    children.push(start(['--producer', String(count)], memory.childOptions(stdio, 'stream'), 'producer'));
    let t0 = 0;
    for (;;) {
      const message = await stream.receiveAsync({ timeout }); // null: the producer has closed
      if (message === null) break;
      if (received === 0) t0 = performance.now(); // from the first message (not the producer's start-up)
      const seq = message.readUInt32LE(0);
      if (seq !== received) throw new Error(`message ${seq} came where ${received} was due`);
      received++;
    }
    const ms = performance.now() - t0;
    if (received !== count) throw new Error(`the stream ended after ${received} of ${count} messages`);
    console.log(`[parent] received all ${count} messages in order in ${Math.round(ms)} ms (${(count / ms / 1000).toFixed(2)} M/s)`);
    done = true; // the client's next request hears it and stops
    for (const child of children) await exitOf(child, timeout);
    const report = JSON.parse(children[0].output().trim().split('\n').pop());
    if (report.answered === 0) throw new Error('the client got no answer while the messages flowed');
    console.log(
      `[parent] while they flowed the client was answered ${report.answered} times: ` +
        `median ${report.medianMs} ms, slowest ${report.slowestMs} ms`,
    );
  } finally {
    for (const child of children) if (child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill('SIGKILL');
    server.close();
    stream.close(); // the channel first, then its memory
    memory.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Entry point.
// ---------------------------------------------------------------------------------------------
const USAGE = 'usage: node examples/06-channel-server.mjs [MESSAGES]';
const args = process.argv.slice(2);
const role = args[0] === '--producer' ? 'producer' : args[0] === '--client' ? 'client' : 'parent';
const count = role === 'parent' ? (args[0] === undefined ? DEFAULT_MESSAGES : Number(args[0])) : Number(args[1]);
const valid = role === 'client' ? args.length === 2 && URL.canParse(args[1]) : args.length <= (role === 'parent' ? 1 : 2) && Number.isSafeInteger(count) && count >= 1000 && count <= 10_000_000;
if (!valid) {
  console.error(USAGE);
  process.exit(2);
}
try {
  if (role === 'producer') producer(count);
  else if (role === 'client') await client(args[1]);
  else await parent(count);
} catch (err) {
  console.error(`[${role}] error: ${err.message}`);
  process.exitCode = 1;
}
