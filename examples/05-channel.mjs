// 05-channel.mjs: a parent hands out jobs to two worker processes through message channels.
//
// 04-anonymous-shm.mjs shared raw bytes and one word to sleep on. A Channel is a message queue in
// shared memory that does the bookkeeping for you: byte messages from any number of producers to any
// number of consumers, each message taken by exactly one consumer and in the order its producer sent
// it, waits that sleep in the kernel (futex), and an end of the stream once every producer has
// closed, or died. Each producer appends to a lane of its own (a bounded ring of bytes); consumers
// take from whichever lanes no other consumer is reading.
//
// Two channels, each in its own anonymous shared memory (no file, no name):
//   JOBS     parent -> workers   {"id":7,"n":1007}             "square n"
//   RESULTS  workers -> parent   {"worker":1,"id":7,"answer":1014049}
//
//   1. The parent creates both channels, then starts two workers: this same file with `--child N`.
//      childOptions() hands both memories to each worker, which attaches with inherited().
//   2. Each worker sends "ready" on RESULTS. Its first send makes it a producer of RESULTS, and the
//      parent's RESULTS stream ends only once every producer has closed: with both workers attached
//      before either can finish, RESULTS cannot end too early.
//   3. The parent sends the jobs: the first 8 one by one (sendAsync), the rest in batches
//      (sendManyAsync: one call and one wake-up per batch), then closes JOBS. The parent's lane of
//      JOBS is 4 KiB (about 128 jobs of this size), so with many jobs the sends wait (without
//      blocking the parent's event loop) while it is full.
//   4. Each worker takes jobs with receive() (it blocks: a worker has nothing else to do) until the
//      end of the stream (null), answers each on RESULTS, prints what it did, closes and exits.
//   5. Meanwhile the parent collects the answers (drainAsync: several per call, each read where it
//      lies in shared memory, no Buffer per message) until RESULTS ends, checks that every job was
//      done exactly once with the right answer, and prints a summary.
//
// What if a worker dies? Before JOBS is closed, the parent notices its exit and stops at once. After
// that, the channel notices for it: a producer whose process died counts as closed, so RESULTS still
// ends, and the parent reports the jobs that were lost and the worker's exit. Every wait has a timeout.
//
//   node examples/05-channel.mjs [JOBS]
//
// JOBS is the number of jobs, 1 to 100000 (default 40).
// MMAPKIT_WAIT_TIMEOUT=MS changes how long each wait may take (default 10000 ms).

import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Channel, INHERIT_ENV, SharedMemory } from 'mmapkit';

const WORKERS = 2;
const DEFAULT_JOBS = 40;
const ONE_BY_ONE = 8; // jobs sent with sendAsync, one call each; the rest go in batches
const BATCH = 8; // jobs per sendManyAsync call
const WORK_MS = 2; // each job "takes" 2 ms (a stand-in for real work), so that both workers get a share
// maxMessageSize: bytes per message at most; capacity: messages of that size each producer's lane
// holds at least (smaller ones take less room, so more fit); maxProducers: one lane each (the parent
// alone sends JOBS, the two workers send RESULTS). Channel.byteLength() says how much memory a
// channel of this shape needs.
const JOBS_SHAPE = { capacity: 8, maxMessageSize: 64, maxProducers: 1 };
const RESULTS_SHAPE = { capacity: 8, maxMessageSize: 128, maxProducers: WORKERS };

function waitTimeout() {
  const env = process.env.MMAPKIT_WAIT_TIMEOUT;
  if (env === undefined || env === '') return 10_000;
  const n = Number(env);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`MMAPKIT_WAIT_TIMEOUT must be a positive integer (milliseconds), not "${env}"`);
  return n;
}

const job = (id) => ({ id, n: 1000 + id });
const answerOf = (n) => n * n;

// ---------------------------------------------------------------------------------------------
// A worker: open both channels, say it is ready, take jobs until the end of the stream.
// ---------------------------------------------------------------------------------------------
function worker(n) {
  const who = `[worker ${n}]`;
  const timeout = waitTimeout();
  if (!process.env[INHERIT_ENV]) throw new Error('no channels were handed to this process: run the parent (without --child)');
  const jobsMemory = SharedMemory.inherited('jobs');
  const resultsMemory = SharedMemory.inherited('results');
  // open() checks the header the parent's create() wrote. The default wait strategy, 'block',
  // sleeps in the kernel while there is nothing to take (receive) or our lane is full (send).
  const jobs = Channel.open(jobsMemory);
  const results = Channel.open(resultsMemory);
  try {
    console.log(`${who} pid ${process.pid} opened JOBS and RESULTS; telling the parent it is ready`);
    results.send(JSON.stringify({ worker: n, pid: process.pid, ready: true }), { timeout });
    const pause = new Int32Array(new SharedArrayBuffer(4)); // only to sleep WORK_MS per job
    const done = [];
    for (;;) {
      const message = jobs.receive({ timeout }); // a Buffer (a copy); null at the end of the stream
      if (message === null) break;
      const { id, n: number } = JSON.parse(message.toString('utf8'));
      Atomics.wait(pause, 0, 0, WORK_MS); // the "work"
      results.send(JSON.stringify({ worker: n, id, answer: answerOf(number) }), { timeout });
      done.push(id);
    }
    console.log(`${who} end of the stream: processed ${done.length} jobs: ${done.join(' ')}`);
  } finally {
    // Close the channels before their memory. Closing RESULTS tells the parent that this producer
    // is done; closing JOBS gives our consumer entry back.
    jobs.close();
    results.close();
    jobsMemory.close();
    resultsMemory.close();
  }
}

// ---------------------------------------------------------------------------------------------
// The parent: create the channels, start the workers, send the jobs, collect and check the answers.
// ---------------------------------------------------------------------------------------------

// Start `node THIS_FILE --child N` with both memories; `exited` resolves when it ends, however it ends.
function startWorker(n, jobsMemory, resultsMemory) {
  const script = fileURLToPath(import.meta.url);
  // stdout/stderr inherited: the workers' lines appear in our output as they print them. Each
  // childOptions() call appends one descriptor to stdio and names it in the environment.
  const options = resultsMemory.childOptions(jobsMemory.childOptions({ stdio: ['ignore', 'inherit', 'inherit'] }, 'jobs'), 'results');
  const proc = spawn(process.execPath, [script, '--child', String(n)], options);
  const exited = new Promise((resolve) => {
    proc.once('error', (err) => resolve({ how: `could not be started: ${err.message}` }));
    proc.once('exit', (code, signal) => resolve({ code, how: signal ? `was killed by ${signal}` : `exited with code ${code}` }));
  });
  return { n, proc, exited };
}

const running = (proc) => proc.exitCode === null && proc.signalCode === null;

// Wait up to `timeout` ms for a worker to exit; undefined if it does not.
async function exitOf(worker, timeout) {
  let timer;
  const late = new Promise((resolve) => (timer = setTimeout(resolve, timeout, undefined)));
  const result = await Promise.race([worker.exited, late]);
  clearTimeout(timer);
  return result;
}

const range = (from, to) => (from === to ? `${from}` : `${from}-${to}`);

async function parent(count) {
  const who = '[parent]';
  const timeout = waitTimeout();
  const jobsMemory = SharedMemory.anonymous(Channel.byteLength(JOBS_SHAPE));
  const resultsMemory = SharedMemory.anonymous(Channel.byteLength(RESULTS_SHAPE));
  let jobs;
  let results;
  const workers = [];
  try {
    // create() writes the channel's header into the memory: do it before any worker can open it.
    jobs = Channel.create(jobsMemory, JOBS_SHAPE);
    results = Channel.create(resultsMemory, RESULTS_SHAPE);
    console.log(
      `${who} pid ${process.pid} created JOBS (a lane of ${jobs.laneSize} bytes, at least ${jobs.capacity} messages of up to ${jobs.maxMessageSize} bytes, ${jobsMemory.size} bytes of memory) ` +
        `and RESULTS (a lane per worker of ${results.laneSize} bytes, at least ${results.capacity} messages of up to ${results.maxMessageSize} bytes each, ${resultsMemory.size} bytes)`,
    );

    // Until JOBS is closed, every worker is needed: one that exits before stops the parent at once
    // (the signal aborts whatever the parent is waiting for). After that, the channel notices a dead
    // worker by itself.
    const stop = new AbortController();
    let jobsClosed = false;
    console.log(`${who} starting ${WORKERS} workers, then waiting until both are ready (at most ${timeout / 1000} s)`);
    for (let n = 1; n <= WORKERS; n++) {
      const w = startWorker(n, jobsMemory, resultsMemory);
      workers.push(w);
      void w.exited.then(({ how }) => {
        if (!jobsClosed) stop.abort(new Error(`worker ${n} (pid ${w.proc.pid}) ${how} before the end of the jobs`));
      });
    }
    const wait = { timeout, signal: stop.signal };

    // 2. Both workers ready: both are producers of RESULTS from now on.
    for (let ready = 0; ready < WORKERS; ready++) {
      const message = await results.receiveAsync(wait).catch((err) => {
        throw err.code === 'ERR_MMAP_CHANNEL_TIMEOUT' ? new Error(`only ${ready} of ${WORKERS} workers got ready within ${timeout / 1000} s`) : err;
      });
      if (message === null || !JSON.parse(message.toString('utf8')).ready) throw new Error(`expected a ready message, got ${message}`);
    }
    console.log(`${who} both workers are ready: sending ${count} jobs, ${Math.min(ONE_BY_ONE, count)} one by one, the rest in batches of ${BATCH}`);

    // 3. Send the jobs, then close JOBS: the end of the stream for the workers.
    async function sendJobs() {
      const first = Math.min(ONE_BY_ONE, count);
      for (let id = 0; id < first; id++) await jobs.sendAsync(JSON.stringify(job(id)), wait);
      console.log(`${who} sent jobs ${range(0, first - 1)} one by one (sendAsync)`);
      let batches = 0;
      for (let id = first; id < count; id += BATCH) {
        const batch = [];
        for (let i = id; i < Math.min(id + BATCH, count); i++) batch.push(JSON.stringify(job(i)));
        try {
          await jobs.sendManyAsync(batch, wait);
        } catch (err) {
          if (stop.signal.aborted) throw err;
          // An error after part of a batch went says how many did: err.sent.
          throw new Error(`sending jobs ${range(id, id + batch.length - 1)}: ${err.message} (${err.sent ?? 0} of them went)`);
        }
        batches++;
      }
      if (batches > 0) console.log(`${who} sent jobs ${range(first, count - 1)} in ${batches} batch(es) (sendManyAsync)`);
      // Said before it is done: once JOBS is closed a worker may print its end at once.
      console.log(`${who} closing JOBS: the workers see the end of the stream once they have taken every job`);
      jobs.close();
      jobsClosed = true;
    }

    // 5. Collect the answers until RESULTS ends (every worker closed it, or died).
    const doneBy = new Map(); // job id -> the workers that answered it
    const wrong = [];
    async function collect() {
      // Each answer is read where it lies in RESULTS (buffer[offset .. offset + length)), valid
      // during the call only: parse it there, keep nothing that points into it.
      const take = (buffer, offset, length) => {
        const { worker: n, id, answer } = JSON.parse(buffer.toString('utf8', offset, offset + length));
        doneBy.set(id, [...(doneBy.get(id) ?? []), n]);
        if (answer !== answerOf(job(id).n)) wrong.push(id);
      };
      // What is waiting, up to 64 per call (waiting for the first); null at the end of the stream.
      while ((await results.drainAsync(take, 64, wait)) !== null);
      console.log(`${who} RESULTS ended: every worker has closed it (or died)`);
    }

    // Both at once: the parent's event loop is free while either waits. The first failure stops the other.
    const stopAll = (err) => {
      stop.abort(err);
      throw err;
    };
    await Promise.all([sendJobs().catch(stopAll), collect().catch(stopAll)]);

    // Every worker exits once it has seen the end of JOBS and closed RESULTS.
    const problems = [];
    const did = [];
    for (const w of workers) {
      const result = await exitOf(w, timeout);
      if (result === undefined) problems.push(`worker ${w.n} (pid ${w.proc.pid}) did not exit within ${timeout / 1000} s; killed it`);
      else if (result.code !== 0) problems.push(`worker ${w.n} (pid ${w.proc.pid}) ${result.how}`);
      else console.log(`${who} worker ${w.n} (pid ${w.proc.pid}) exited with code 0`);
      did.push(`worker ${w.n} did ${[...doneBy.values()].filter((by) => by.includes(w.n)).length}`);
    }
    const lost = [];
    const twice = [];
    for (let id = 0; id < count; id++) {
      const by = doneBy.get(id) ?? [];
      if (by.length === 0) lost.push(id);
      else if (by.length > 1) twice.push(id);
    }
    if (lost.length > 0) problems.push(`${lost.length} of ${count} jobs were never done: ${lost.join(' ')}`);
    if (twice.length > 0) problems.push(`jobs done more than once: ${twice.join(' ')}`);
    if (wrong.length > 0) problems.push(`wrong answers for jobs ${wrong.join(' ')}`);
    if (problems.length > 0) throw new Error(problems.join('; '));
    console.log(`${who} all ${count} jobs were done exactly once, with the right answers: ${did.join(', ')}`);
  } finally {
    // Never leave a worker behind: on any failure (a timeout above included), it is killed here.
    for (const w of workers) if (running(w.proc)) w.proc.kill('SIGKILL');
    // The channels first, then their memory (a channel cannot say it closed once its memory is gone).
    jobs?.close();
    results?.close();
    jobsMemory.close();
    resultsMemory.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Entry point: `--child N` makes this process worker N; otherwise it is the parent.
// ---------------------------------------------------------------------------------------------
const USAGE = 'usage: node examples/05-channel.mjs [JOBS]';
const args = process.argv.slice(2);
const isChild = args[0] === '--child';
try {
  if (isChild) {
    const n = Number(args[1]);
    if (args.length !== 2 || !Number.isInteger(n) || n < 1 || n > WORKERS) {
      console.error(USAGE);
      process.exit(2);
    }
    worker(n);
  } else {
    const count = args[0] === undefined ? DEFAULT_JOBS : Number(args[0]);
    if (args.length > 1 || !Number.isSafeInteger(count) || count < 1 || count > 100_000) {
      console.error(USAGE);
      process.exit(2);
    }
    await parent(count);
  }
} catch (err) {
  // A clear one-line message and a non-zero exit code, never a stack trace for expected errors.
  console.error(`${isChild ? `[worker ${args[1]}]` : '[parent]'} error: ${err.message}`);
  process.exitCode = 1;
}
