/**
 * `mmapkit send NAME`: the writing end of a pipe through a named shared-memory channel. Standard
 * input goes, byte for byte and in order, to the `mmapkit recv NAME` that reads from the same NAME,
 * in another process, started before or after this one (src/cli/pipe-channel.ts: the protocol, how
 * the two ends meet, and who removes the name).
 *
 * How the bytes move: each read of standard input goes straight into the sender's lane of the channel
 * (`reserve()`, then `read()` into the reserved memory, then `commit()`): one copy, from the kernel
 * into shared memory, where the receiver writes it out from. While the channel is full, the sender waits
 * for room, and looks every {@link WATCH_MS} ms whether its receiver has gone (or never came within
 * `--timeout`). At the end of its input it sends the empty message that ends the stream, and exits
 * once a receiver has the stream (has taken its first message and is attached, or has already
 * finished reading).
 * @module
 */
import { readSync, statSync } from 'node:fs';
import type { Reservation } from '../index.js';
import type { Command, CommandContext } from './command.js';
import { Failure, errorCode, quote, reason } from './messages.js';
import { HELLO, NAME_OWNERSHIP_HELP, PIPE_OPTIONS, type Parties, type PipeEnd, type PipeOptions, nowMs, openPipe, parsePipeOptions } from './pipe-channel.js';

/** While the channel is full, look at the receiver this often (ms). */
const WATCH_MS = 100;
/** Longest pause between two reads of a non-blocking standard input that had nothing (ms). */
const EAGAIN_PAUSE_MAX_MS = 16;
/** Longest pause between two looks for a receiver once the input has ended (ms). */
const RECEIVER_PAUSE_MAX_MS = 50;
/** How long past --timeout a receiver that is there may take to take the HELLO (ms; see #checkDeadline). */
const ATTACHED_GRACE_MS = 1000;

/** The `send` command. */
export const sendCommand: Command = {
  name: 'send',
  summary: 'Send standard input to `mmapkit recv NAME` in another process, through shared memory',
  synopsis: 'send [--timeout MS] [--capacity N] [--message-size BYTES] [--shared-with-group] NAME',
  description: `
Sends everything read from standard input, byte for byte, to the process that runs
'mmapkit recv NAME' with the same NAME: a pipe between two unrelated processes through a channel
in named shared memory (/dev/shm/NAME).

  producer | mmapkit send jobs        # in one shell
  mmapkit recv jobs | consumer        # in another, before or after

Either end may start first: the first creates the channel, the other opens it. A sender that
starts first does not lose what it sends before the receiver comes: the channel holds at least
CAPACITY messages of MESSAGE-SIZE bytes (more of smaller ones), and once it is full the sender
waits. At the end of its input the sender marks the end of the stream and exits once a receiver
has the stream (has begun to read it, or has read it all). The receiver removes the name when it
has met its sender, so the next pair can use it at once.

A name left behind by a send or recv that was killed is taken over by the next one. While another
sender (or an earlier pair that has not finished meeting) holds the name, send waits its turn.

--capacity and --message-size apply when this end creates the channel; otherwise the values of the
end that created it hold.

${NAME_OWNERSHIP_HELP}

Exit codes: 0 the input was sent and a receiver has it; 1 failed (the receiver went away before
the end, no receiver within --timeout, an error reading the input, a refused NAME, a system
error); 2 usage error.`,
  options: PIPE_OPTIONS,
  positionals: { min: 1, max: 1 },
  run: runSend,
};

async function runSend(ctx: CommandContext): Promise<number> {
  const [name] = ctx.positionals as [string];
  const options = await parsePipeOptions('send', name, ctx.values);
  const lib = await import('../index.js');
  const deadline = options.timeoutMs === undefined ? undefined : nowMs() + options.timeoutMs;
  const end = await openPipe(lib, { role: 'producer', options, deadline });
  const watch = new ReceiverWatch(end, options, deadline);
  try {
    sendInput(end, watch, options.name);
    await watch.untilReceiverHasStream();
  } catch (error) {
    // The stream is cut: a reservation still open is given up by close() (nothing of it is published),
    // and the receiver (if one comes or is there) sees a stream that ended without its end mark.
    try {
      end.removeName();
    } finally {
      end.close();
    }
    throw error;
  }
  end.close();
  return 0;
}

/** Send the HELLO, then standard input in chunks, then the empty message that ends the stream. */
function sendInput(end: PipeEnd, watch: ReceiverWatch, name: string): void {
  const hello = reserve(end, watch, name);
  HELLO.copy(hello.buffer);
  hello.commit(HELLO.length);
  for (;;) {
    const slot = reserve(end, watch, name);
    const n = readInput(slot.buffer);
    // n = 0 at the end of the input: the empty message, the end mark of the stream.
    slot.commit(n);
    if (n === 0) return;
  }
}

/** Room for a message in the channel, waiting while it is full and watching the receiver meanwhile. */
function reserve(end: PipeEnd, watch: ReceiverWatch, name: string): Reservation {
  for (;;) {
    try {
      return end.channel.reserve(WATCH_MS);
    } catch (error) {
      if (errorCode(error) !== 'ERR_MMAP_CHANNEL_TIMEOUT') {
        throw new Failure(`error sending to channel ${quote(name)}: ${reason(error)}`);
      }
      watch.whileFull();
    }
  }
}

/** Pause this thread (the sender has nothing else to do meanwhile). */
function pauseSync(ms: number): void {
  Atomics.wait(PAUSE, 0, 0, ms);
}
const PAUSE = new Int32Array(new SharedArrayBuffer(4));

/**
 * Read from standard input into `buffer` (reserved in the channel): the number of bytes, 0 at the end.
 * A standard input in non-blocking mode (shared with a process that set O_NONBLOCK on it) has no
 * data now and then: read again after a short pause (Node has no poll() for a plain descriptor).
 */
function readInput(buffer: Buffer): number {
  let pause = 1;
  for (;;) {
    try {
      return readSync(0, buffer, 0, buffer.length, null);
    } catch (error) {
      const code = errorCode(error);
      if (code === 'EAGAIN' || code === 'EWOULDBLOCK') {
        pauseSync(pause);
        pause = Math.min(pause * 2, EAGAIN_PAUSE_MAX_MS);
        continue;
      }
      if (code === 'EINTR') continue;
      throw new Failure(`error reading standard input: ${reason(error)}`);
    }
  }
}

/** Whether the receiver has come, is still there, or has gone; and the `--timeout` for its coming. */
class ReceiverWatch {
  readonly #end: PipeEnd;
  readonly #options: PipeOptions;
  readonly #deadline: number | undefined;
  /**
   * A receiver has taken the HELLO: it is this sender's receiver from then on (an end steps back only
   * before it receives anything). One that is merely attached may still step back (another receiver
   * got in at the same moment, or the channel it judged has changed since), so it does not count yet.
   */
  #seen = false;

  constructor(end: PipeEnd, options: PipeOptions, deadline: number | undefined) {
    this.#end = end;
    this.#options = options;
    this.#deadline = deadline;
  }

  /** The channel has been full for a while: fail if the receiver has gone, or has not come in time. */
  whileFull(): void {
    // In this order: the name (a receiver removes it once it has taken the HELLO), who is attached,
    // then whether the HELLO was taken. A receiver that had the HELLO before we looked at who is
    // attached must be attached then: it stays until the end mark, which is not sent yet.
    const met = !this.#end.nameLeadsHere();
    const wasSeen = this.#seen;
    const parties = this.#end.parties();
    if (!this.#seen && this.#end.helloTaken()) this.#seen = true;
    if (parties.liveConsumers.length > 0) {
      if (this.#seen) {
        this.#handOverName(parties.liveConsumers);
        return;
      }
      // One that has just attached: it takes the HELLO, or steps back (--timeout still holds).
    } else if (wasSeen || parties.deadConsumers > 0) {
      // A consumer entry of a dead process: a receiver attached to this channel and was killed.
      throw this.#gone();
    } else if (this.#seen) {
      return; // it took the HELLO after we looked at who is attached: look again next time
    } else if (met) {
      throw this.#nameLost();
    }
    this.#checkDeadline(parties);
  }

  /**
   * The input has ended (the end mark is in the channel): wait until a receiver has the stream, that
   * is, has taken the HELLO and is attached now, or has already read everything.
   */
  async untilReceiverHasStream(): Promise<void> {
    let pause = 1;
    for (;;) {
      // In this order (see whileFull): a receiver that had the HELLO before we looked at who is
      // attached is attached then, or it has finished (the channel is empty: only a consumer empties
      // it, and nothing is sent any more), or it has gone.
      const met = !this.#end.nameLeadsHere();
      const wasSeen = this.#seen;
      const parties = this.#end.parties();
      if (!this.#seen && this.#end.helloTaken()) this.#seen = true;
      if (this.#seen) {
        if (this.#end.channel.size === 0) {
          this.#handOverName(undefined); // every message taken, the HELLO and the end mark too
          return;
        }
        if (parties.liveConsumers.length > 0) {
          // (A group-shared name of ours: remove it now, the receiver may not.)
          if (this.#handOverName(parties.liveConsumers)) return;
        } else if (wasSeen) {
          throw this.#gone();
        }
        // (It took the HELLO after we looked at who is attached: look again.)
      } else {
        if (parties.liveConsumers.length === 0 && parties.deadConsumers > 0) throw this.#gone();
        if (parties.liveConsumers.length === 0 && met) throw this.#nameLost();
        this.#checkDeadline(parties);
      }
      await new Promise((resolve) => setTimeout(resolve, pause));
      pause = Math.min(pause * 2, RECEIVER_PAUSE_MAX_MS);
    }
  }

  /**
   * A name this sender created with --shared-with-group may belong to another user than its receiver,
   * which then cannot remove it: remove it here, once the receiver has taken the HELLO (from then on
   * it is the receiver of this stream, as when it removes the name itself). A receiver of our own
   * user removes it itself, and two ends removing one name could remove a next pair's. `receivers`:
   * the pids attached, or undefined once the receiver has finished (taken every message, the HELLO
   * first). Returns whether the name needs nothing more from this sender.
   */
  #handOverName(receivers: readonly number[] | undefined): boolean {
    if (!this.#options.sharedWithGroup || !this.#end.created || !this.#end.nameLeadsHere()) return true;
    const me = process.geteuid?.();
    if (receivers !== undefined && receivers.every((pid) => statSync(`/proc/${pid}`, { throwIfNoEntry: false })?.uid === me)) return true;
    if (receivers !== undefined && !this.#end.helloTaken()) return false;
    this.#end.removeName();
    return true;
  }

  /**
   * No receiver has taken the HELLO: fail once the deadline has passed. A consumer attached now, or
   * another end that created the channel (a receiver that made it attaches right after), is most
   * likely a receiver about to take it: it gets ATTACHED_GRACE_MS more, so that `--timeout 0` works
   * with a receiver already there.
   */
  #checkDeadline(parties: Parties): void {
    const here = parties.liveConsumers.length > 0 || parties.otherCreator;
    if (!this.#seen && this.#deadline !== undefined && nowMs() >= this.#deadline + (here ? ATTACHED_GRACE_MS : 0)) {
      throw new Failure(`no receiver for ${quote(this.#options.name)} within ${this.#options.timeoutMs ?? 0} ms`);
    }
  }

  #gone(): Failure {
    return new Failure(`the receiver of ${quote(this.#options.name)} has gone before the end of the input`);
  }

  /** The name no longer leads to this channel, and no receiver has come: none can find it now. */
  #nameLost(): Failure {
    const name = quote(this.#options.name);
    return new Failure(`${name} was removed or replaced before a receiver came (by rm, or by another send or recv): no receiver can find this sender's channel`);
  }
}
