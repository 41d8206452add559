// 07-topic.mjs: one publisher, three subscriber processes, and every subscriber sees every message.
//
// A Channel (05-channel.mjs) is a work queue: each message goes to one consumer. A Topic is a
// broadcast: publishers append to one ring in shared memory, and every subscription reads all of it
// with a cursor of its own, in the same order for everyone (market data, telemetry, cache
// invalidations...). Here the parent publishes price ticks; three workers subscribe and each computes
// the same totals.
//
//   1. The parent creates a topic in anonymous shared memory (no file, no name) with policy 'block':
//      when the slowest subscriber is a whole ring behind, the parent waits for it, so nobody misses
//      anything. (With policy 'overwrite' the parent would never wait, and a subscriber that fell a ring
//      behind would learn exactly how many ticks it missed.)
//   2. It starts three workers (this same file with `--child N`), handing them the memory, and waits
//      until Topic.inspect() shows three subscribers: a subscription from 'latest' sees what is
//      published after it started.
//   3. It publishes the ticks: the first ones one by one (publish), the rest in batches (publishMany:
//      one lock and one wake-up per batch), then closes its handle: the end of the stream.
//   4. Each worker reads with `for await` until the end, checks the sequence numbers, and prints its
//      count and totals; the parent checks that all three agree with what it published.
//
//   node examples/07-topic.mjs [TICKS]
//
// TICKS: 1 to 1000000 (default 1000). MMAPKIT_WAIT_TIMEOUT=MS: how long a wait may take (default 10000).

import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { SharedMemory, Topic } from 'mmapkit';

const WORKERS = 3;
const SHAPE = { capacity: 16 * 1024, maxMessageSize: 64, policy: 'block' };
const timeout = Number(process.env.MMAPKIT_WAIT_TIMEOUT || 10_000);

/** Tick i: a price that moves by a small step; the same function in every process. */
const tickOf = (i) => ({ i, sym: ['ACME', 'INIT', 'MMAP'][i % 3], px: 100 + ((i * 37) % 101) / 10 });

if (process.argv[2] === '--child') {
  // ------------------------------------------------------------------------------------------- a worker
  const n = process.argv[3];
  const shm = SharedMemory.inherited();
  const topic = Topic.open(shm);
  const sub = topic.subscribe(); // from 'latest': what is published from now on
  console.log(`[sub ${n}] pid ${process.pid} subscribed`);
  let count = 0;
  let total = 0;
  for await (const msg of sub) {
    const tick = JSON.parse(msg.toString());
    if (tick.i !== count) throw new Error(`[sub ${n}] tick ${tick.i} where ${count} was due`);
    count++;
    total += tick.px;
  }
  console.log(`[sub ${n}] end of the stream (${sub.endReason}): ${count} ticks, total ${total.toFixed(1)}, missed ${sub.missed}`);
  topic.close();
  shm.close();
} else {
  // ------------------------------------------------------------------------------------------- the parent
  const ticks = Number(process.argv[2] ?? 1000);
  if (!Number.isSafeInteger(ticks) || ticks < 1 || ticks > 1_000_000) throw new Error('TICKS must be 1 to 1000000');
  const shm = SharedMemory.anonymous(Topic.byteLength(SHAPE));
  const topic = Topic.create(shm, SHAPE);
  console.log(`[parent] pid ${process.pid}: a topic of ${Topic.byteLength(SHAPE)} bytes, starting ${WORKERS} subscribers`);
  const me = fileURLToPath(import.meta.url);
  const outputs = [];
  const exits = [];
  for (let n = 1; n <= WORKERS; n++) {
    const child = spawn(process.execPath, [me, '--child', String(n)], shm.childOptions({ stdio: ['ignore', 'pipe', 'inherit'] }));
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      process.stdout.write(d);
    });
    outputs.push(() => out);
    exits.push(new Promise((resolve) => child.on('exit', (code, signal) => resolve({ n, code, signal }))));
  }
  // Wait (with a deadline) until every worker has subscribed.
  const deadline = Date.now() + timeout;
  while (Topic.inspect(shm).subscribers.length < WORKERS) {
    if (Date.now() > deadline) throw new Error('[parent] the subscribers did not all start in time');
    await new Promise((r) => setTimeout(r, 5));
  }
  console.log(`[parent] ${WORKERS} subscribers; publishing ${ticks} ticks`);
  let total = 0;
  const first = Math.min(ticks, 10);
  for (let i = 0; i < first; i++) {
    const tick = tickOf(i);
    total += tick.px;
    await topic.publishAsync(JSON.stringify(tick), { timeout });
  }
  for (let i = first; i < ticks; i += 100) {
    const batch = [];
    for (let j = i; j < Math.min(ticks, i + 100); j++) {
      const tick = tickOf(j);
      total += tick.px;
      batch.push(JSON.stringify(tick));
    }
    await topic.publishManyAsync(batch, { timeout });
  }
  topic.close(); // the only publisher: the subscribers see the end of the stream once they read everything
  const results = await Promise.all(exits);
  shm.close();
  const expected = `${ticks} ticks, total ${total.toFixed(1)}, missed 0`;
  const bad = results.filter(({ n, code }) => code !== 0 || !outputs[n - 1]().includes(expected));
  if (bad.length > 0) {
    console.log(`[parent] error: subscriber(s) ${bad.map((b) => b.n).join(', ')} did not see ${expected}`);
    process.exitCode = 1;
  } else {
    console.log(`[parent] all ${WORKERS} subscribers saw every tick: ${expected}`);
  }
}
