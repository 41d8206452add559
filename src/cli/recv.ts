/**
 * `mmapkit recv NAME`: the reading end of a pipe through a named shared-memory channel. Writes to
 * standard output, byte for byte and in order, what `mmapkit send NAME` reads from its standard input
 * in another process (src/cli/pipe-channel.ts: the protocol, how the two ends meet, and who removes
 * the name).
 *
 * How the bytes move: each message is written to standard output straight from the channel's memory
 * (`receiveInPlace()`, `write()`, then `release()`), so the only copy is the kernel's. Standard output
 * is written with blocking `write()` calls: Node puts a pipe or socket there in non-blocking mode when
 * it makes `process.stdout`, and {@link blockingStdout} puts it back in blocking mode (as the shell
 * made it). Should a `write()` still find it non-blocking and full (EAGAIN), the rest goes through
 * `process.stdout`, and the message is released once it has been written. Either way a slow reader of
 * standard output slows the receiver, and backpressure reaches the sender as a full channel.
 *
 * A closed standard output (EPIPE: `mmapkit recv jobs | head`) ends the receiver quietly with exit
 * code 141, as a process killed by SIGPIPE; the sender then fails (its receiver has gone).
 * @module
 */
import { writeSync } from 'node:fs';
import type { InPlaceMessage } from '../index.js';
import type { Command, CommandContext } from './command.js';
import { EXIT_CLOSED_OUTPUT, Failure, errorCode, quote, reason } from './messages.js';
import { HELLO, NAME_OWNERSHIP_HELP, PIPE_OPTIONS, type PipeEnd, type PipeOptions, nowMs, openPipe, parsePipeOptions } from './pipe-channel.js';

/** While waiting for a sender, look this often whether the channel still has its name. */
const ORPHAN_CHECK_MS = 250;
/** Shortest wait for the HELLO at a time (ms). */
const MIN_SLICE_MS = 10;
/** How long past --timeout a sender that is there may take to send the HELLO (ms; see receiveHello). */
const SENDER_GRACE_MS = 1000;

/** Standard output was closed by its reader. */
class OutputClosed extends Error {}

/** The `recv` command. */
export const recvCommand: Command = {
  name: 'recv',
  summary: 'Write to standard output what `mmapkit send NAME` sends from another process',
  synopsis: 'recv [--timeout MS] [--capacity N] [--message-size BYTES] [--shared-with-group] NAME',
  description: `
Writes to standard output, byte for byte and in order, what the process that runs
'mmapkit send NAME' with the same NAME reads from its standard input: a pipe between two unrelated
processes through a channel in named shared memory (/dev/shm/NAME).

  producer | mmapkit send jobs        # in one shell
  mmapkit recv jobs | consumer        # in another, before or after

Either end may start first: the first creates the channel, the other opens it. A receiver that
starts first waits for a sender (at most --timeout milliseconds). Once it has met its sender it
removes the name (so that the next pair can use it at once), then writes until the end of the
sender's input and exits 0.

A name left behind by a send or recv that was killed is taken over by the next one. While another
receiver (or an earlier pair that has not finished meeting) holds the name, recv waits its turn.

--capacity and --message-size apply when this end creates the channel; otherwise the values of the
end that created it hold.

${NAME_OWNERSHIP_HELP}

Exit codes: 0 everything the sender read has been written; 1 failed (the sender stopped before the
end of its input, no sender within --timeout, a write error, a refused NAME, a system error);
2 usage error; 141 standard output was closed (as for a process killed by SIGPIPE).`,
  options: PIPE_OPTIONS,
  positionals: { min: 1, max: 1 },
  run: runRecv,
};

async function runRecv(ctx: CommandContext): Promise<number> {
  const [name] = ctx.positionals as [string];
  const options = await parsePipeOptions('recv', name, ctx.values);
  const lib = await import('../index.js');
  const deadline = options.timeoutMs === undefined ? undefined : nowMs() + options.timeoutMs;
  let end: PipeEnd;
  for (;;) {
    end = await openPipe(lib, { role: 'consumer', options, deadline });
    let met: boolean;
    try {
      met = receiveHello(end, options, deadline);
    } catch (error) {
      try {
        end.removeName();
      } finally {
        end.close();
      }
      throw error;
    }
    if (met) break;
    // No sender can find this channel any more: meet again under the name.
    end.close();
  }
  const cleanUp = (): void => {
    try {
      end.removeName();
    } finally {
      end.close();
    }
  };
  try {
    // Both ends are attached: the name is no longer needed, and the next pair may use it.
    end.removeName();
    blockingStdout();
    await copyOut(end, options, cleanUp);
  } catch (error) {
    cleanUp();
    if (error instanceof OutputClosed) return EXIT_CLOSED_OUTPUT;
    throw error;
  }
  end.close();
  return 0;
}

/**
 * Wait for the sender's first message and check that it is the HELLO: true. The wait lasts until the
 * deadline, and up to {@link SENDER_GRACE_MS} past it while a sender is there (attached, or the end
 * that created the channel); then a {@link Failure}. False when the channel has lost its name before
 * any sender attached (no sender can find it: meet again), which is looked at after every slice of
 * the wait (at most {@link ORPHAN_CHECK_MS} ms).
 */
function receiveHello(end: PipeEnd, options: PipeOptions, deadline: number | undefined): boolean {
  const name = quote(options.name);
  let first: Buffer | null;
  for (;;) {
    // Up to the deadline, and in short slices past it (the grace below), never 0: no busy loop.
    const slice = deadline === undefined ? ORPHAN_CHECK_MS : Math.max(MIN_SLICE_MS, Math.min(ORPHAN_CHECK_MS, deadline - nowMs()));
    try {
      first = end.channel.receive({ timeout: slice });
      break;
    } catch (error) {
      if (errorCode(error) !== 'ERR_MMAP_CHANNEL_TIMEOUT') throw new Failure(`error receiving from channel ${name}: ${reason(error)}`);
    }
    if (deadline !== undefined && nowMs() >= deadline) {
      // A sender attached, or one that made the channel (it attaches right after), is about to send
      // the HELLO: SENDER_GRACE_MS more, so that `--timeout 0` works with a sender already there.
      const parties = end.parties();
      const here = parties.liveProducers.length > 0 || parties.otherCreator;
      if (!here || nowMs() >= deadline + SENDER_GRACE_MS) throw new Failure(`no sender for ${name} within ${options.timeoutMs ?? 0} ms`);
    }
    // In this order: a sender that attached before the name was gone is seen.
    if (!end.nameLeadsHere() && !end.parties().hadProducer) return false;
  }
  if (first === null) throw new Failure(`the sender of ${name} stopped before sending anything`);
  if (!first.equals(HELLO)) {
    throw new Failure(`channel ${name} does not carry a stream of mmapkit send (or an earlier receiver read its beginning)`);
  }
  return true;
}

/**
 * Put standard output back in blocking mode when Node has put it in non-blocking mode (a pipe or a
 * socket: libuv's `uv_pipe_open` or `uv_tcp_open` sets O_NONBLOCK), so that `write()` waits for the reader instead of
 * failing with EAGAIN: `setBlocking(true)` of `process.stdout`'s libuv handle clears O_NONBLOCK
 * (`uv_stream_set_blocking`). The handle is not public API: when it is missing (a file, where writes
 * block anyway) or refuses, the EAGAIN path of {@link writeOut} does the job, more slowly.
 */
function blockingStdout(): void {
  const handle = (process.stdout as unknown as { _handle?: { setBlocking?: (blocking: boolean) => number } })._handle;
  if (typeof handle?.setBlocking === 'function') handle.setBlocking(true);
}

/** Write every message to standard output until the end mark (an empty message). */
async function copyOut(end: PipeEnd, options: PipeOptions, cleanUp: () => void): Promise<void> {
  const { channel } = end;
  let received = 0;
  for (;;) {
    let msg: InPlaceMessage | null;
    try {
      msg = channel.receiveInPlace();
    } catch (error) {
      throw new Failure(`error receiving from channel ${quote(options.name)}: ${reason(error)}`);
    }
    if (msg === null) {
      throw new Failure(`the sender of ${quote(options.name)} stopped before the end of its input (${received} bytes received)`);
    }
    const n = msg.data.length;
    if (n === 0) {
      msg.release();
      return;
    }
    const pending = writeOut(msg.data, cleanUp);
    if (pending !== undefined) await pending;
    msg.release();
    received += n;
  }
}

/**
 * Write `data` to standard output. Returns undefined when it is written, or a promise when standard
 * output (in non-blocking mode) could not take all of it at once: the rest goes through
 * `process.stdout`, and the promise settles once it is written. Throws {@link OutputClosed} on EPIPE,
 * a {@link Failure} on any other write error.
 */
function writeOut(data: Buffer, cleanUp: () => void): Promise<void> | undefined {
  let done = 0;
  while (done < data.length) {
    try {
      done += writeSync(1, data, done, data.length - done);
    } catch (error) {
      const code = errorCode(error);
      if (code === 'EAGAIN' || code === 'EWOULDBLOCK') return writeStream(data.subarray(done), cleanUp);
      if (code === 'EINTR') continue;
      if (code === 'EPIPE') throw new OutputClosed();
      throw new Failure(`error writing standard output: ${reason(error)}`);
    }
  }
  return undefined;
}

/**
 * Write through `process.stdout`, which waits for a non-blocking descriptor to take more (libuv).
 * Its queue is empty whenever this is called: every write is awaited before the next message. The
 * promise never rejects: a failed write cleans up and exits the process (141 on EPIPE, else 1).
 */
function writeStream(rest: Buffer, cleanUp: () => void): Promise<void> {
  return new Promise((resolve) => {
    process.stdout.write(rest, (error) => {
      if (error === undefined || error === null) {
        resolve();
        return;
      }
      // The stream emits 'error' right after this callback, and src/cli/main.ts ends the process on
      // it: clean up and exit here, with the same outcome as a failed write() above.
      cleanUp();
      if (errorCode(error) === 'EPIPE') process.exit(EXIT_CLOSED_OUTPUT);
      process.stderr.write(`mmapkit recv: error writing standard output: ${reason(error)}\n`);
      process.exit(1);
    });
  });
}
