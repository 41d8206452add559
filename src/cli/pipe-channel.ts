/**
 * The named channel behind `mmapkit send NAME` and `mmapkit recv NAME`: a pipe between two unrelated
 * processes through a {@link Channel} in named shared memory (`/dev/shm/NAME`).
 *
 * The stream on the channel, in messages (one producer, one consumer):
 *
 *   1. {@link HELLO}, sent by `send` as soon as it is attached: tells `recv` that its sender is there
 *      (and that the channel carries this protocol);
 *   2. the bytes of the sender's standard input, one message per read (at most the channel's
 *      maxMessageSize bytes each; never empty);
 *   3. one empty message: the end of the input. A stream that ends (every producer closed or dead)
 *      without it was cut short: the sender died or failed.
 *
 * Meeting ({@link openPipe}): whichever of the two starts first creates the channel (shm_open with
 * O_EXCL, then the channel is initialized in place and this end attaches); the other gets EEXIST and
 * opens it, retrying while the creator is still initializing it. What an opener finds at the name is
 * judged from what `Channel.inspect()` reports (its producers' lanes and its consumers, and whether
 * their processes live; nothing here reads the channel's memory itself): it joins a channel where the
 * other side waits alone, waits its turn while an earlier pair still holds the name, and replaces a
 * channel that nobody alive uses any more (left behind by a process that was killed), or whose header
 * is corrupt. Two ends of the same role that attach at the same moment see each other right after
 * attaching, and one steps back ({@link sameRoleRival}). Every wait sleeps between looks and ends at
 * the `--timeout` deadline.
 *
 * Who removes the name: `recv`, as soon as it has read the HELLO (both ends are attached then, and
 * the next pair can meet under the same name while this one is still streaming), and whichever end
 * fails or times out while the name still points at its channel. A receiver that has taken the HELLO
 * is the sender's receiver for good (it never steps back after that): the sender counts on a
 * receiver only from then on. A group-shared name that `send` created belongs to another user than
 * `recv`, which may not remove it (/dev/shm is sticky): `send` removes it then, once it sees that a
 * receiver has taken the HELLO. A receiver whose channel lost its name before any sender attached
 * (a take-over that raced with another) starts the meeting again.
 *
 * Whose name it is: every user can create names in /dev/shm, so another user could make the channel
 * first (mode 0666) and read or inject the stream. An end attaches only to a name of its own user
 * that gives no one else read or write access (SharedMemory.open's default check, on the opened
 * descriptor); with `--shared-with-group`, to a name of any owner that is shared, read and write,
 * with one of this process's groups and with no one else, and it creates the name with mode 0660.
 * A refused name is an error that says whose it is; it is never removed, taken over or written.
 * @module
 */
import { fstatSync, linkSync, renameSync, statSync, unlinkSync } from 'node:fs';
import type { Channel, ChannelInspection, OwnershipOptions, SharedMemory } from '../index.js';
import { type ObjectIdentity, describeGroup, describeUser, effectiveUid, octal } from '../ownership.js';
import { UsageError } from './command.js';
import { Failure, errorCode, quote, reason } from './messages.js';

/** The library, loaded by the commands at run time (`await import('../index.js')`). */
export type Library = typeof import('../index.js');

/** The first message of every stream: the sender is attached, and speaks this protocol (version 1). */
export const HELLO = Buffer.from('mmapkit-pipe/1', 'latin1');
/** Default largest message: the chunk size of the sender's reads. */
export const DEFAULT_MESSAGE_SIZE = 64 * 1024;
/**
 * Default `--capacity`: messages of `--message-size` bytes the sender's lane holds at least (the
 * channel's `capacity` option: its lane is the smallest power of two that takes one more record).
 */
export const DEFAULT_CAPACITY = 64;
/** Smallest `--message-size`: the HELLO must fit in a message. */
export const MIN_MESSAGE_SIZE = 64;
/**
 * Largest `--capacity`: a round number that fits, with messages of MIN_MESSAGE_SIZE, in the largest
 * lane a channel of TABLE_ENTRIES lanes can have (512 MiB, so that the channel stays under 4 GiB);
 * larger combinations are refused together ({@link parsePipeOptions}).
 */
export const MAX_CAPACITY = 1 << 22;
/** Largest `--message-size`: a round number that fits, with the smallest capacity, in that lane. */
export const MAX_MESSAGE_SIZE = 1 << 27;
/** Smallest `--capacity`. */
const MIN_CAPACITY = 2;

/**
 * Producer lanes and consumer entries of a channel made here: one of each is used by a pair, a few
 * more let a rival of the same role attach, see the other and step back. Only the lane in use is
 * ever written: the others take no memory in /dev/shm (tmpfs allocates pages as they are written).
 */
const TABLE_ENTRIES = 4;
/**
 * The channel layout version this CLI's library writes (docs/channel-layout.md): an old object
 * without the magic number whose header says this version is a create() that died half-way.
 */
const LAYOUT_VERSION = 3;
/**
 * A channel that nobody has attached to yet is taken for one being made (its creator attaches right
 * after initializing it) while it is younger than this, and for an abandoned one after. A time of
 * last change further in the future than this is no creation under way either (the clock of the
 * machine does not go back that far): an object whose time someone set ahead is not waited for.
 */
const YOUNG_MS = 2000;
/** Pause between two looks at a channel that is being initialized. */
const INIT_RETRY_MS = 5;
/**
 * How long past the `--timeout` deadline an end still waits for a creator that is initializing the
 * channel (microseconds of work, unless that process was descheduled): `--timeout 0` must not fail
 * because the other end was caught half-way through making the channel.
 */
const INIT_GRACE_MS = 250;
/**
 * Rounds of the meeting loop that may follow each other without a pause (a name taken over, or
 * removed meanwhile, is looked at again at once); after that every round sleeps first, and the
 * deadline holds, so that no state of the name can make an end spin.
 */
const QUICK_ROUNDS = 3;
/**
 * A producer that finds a lane below its own being taken right now (no pid yet, or not attached
 * yet) looks again this often, for at most SETTLE_MS, before it decides (see {@link sameRoleRival}).
 * Taking a lane is a few statements: only a process descheduled half-way makes it last, and giving
 * up early would let a consumer see the end of a stream whose producer has not finished attaching.
 */
const SETTLE_STEP_MS = 2;
const SETTLE_MS = 2000;
/** Pause between two looks at a name that an earlier pair still holds. */
const BUSY_RETRY_MS = 50;
/**
 * Pause of an end that stepped back because another end of its role attached at the same moment: a
 * random part, so that two that both stepped back do not collide again.
 */
const STEP_BACK_MIN_MS = 5;
const STEP_BACK_SPREAD_MS = 45;
/** Where glibc (and musl) keep POSIX shared memory objects. */
const SHM_DIR = '/dev/shm';

/** The options that `send` and `recv` share. */
export interface PipeOptions {
  /** NAME as given on the command line (for messages). */
  readonly name: string;
  /** NAME in canonical form (`/jobs`). */
  readonly canonical: string;
  /** Slots of the channel if this end creates it. */
  readonly capacity: number;
  /** Largest message (the chunk size) if this end creates the channel. */
  readonly messageSize: number;
  /** How long to wait for the other side, in milliseconds; undefined: forever. */
  readonly timeoutMs: number | undefined;
  /** `--shared-with-group`: the name is shared with this process's group (mode 0660, any owner). */
  readonly sharedWithGroup: boolean;
}

/** The paragraph of `send --help` and `recv --help` about whose NAME they use. */
export const NAME_OWNERSHIP_HELP = `Only a NAME of your own user that no one else may read or write is used: any user can create
names in /dev/shm, and one made by someone else could be read or written by them. Any other NAME
is refused with an error that says whose it is (nothing is removed or changed). To share a channel
with your group, run both ends with --shared-with-group: the NAME is created with mode 0660, and a
NAME of another user is joined if it is shared, read and write, with one of your groups and with
no one else.`;

/** The options of `send` and `recv` as `--help` shows them. */
export const PIPE_OPTIONS = {
  capacity: {
    type: 'string',
    short: 'c',
    valueName: 'N',
    description: `Messages of --message-size bytes the channel holds at least (more of smaller ones), ${MIN_CAPACITY} to ${MAX_CAPACITY} (if this end creates it). Default ${DEFAULT_CAPACITY}`,
  },
  'message-size': {
    type: 'string',
    short: 'm',
    valueName: 'BYTES',
    description: `Largest message: the sender reads its input in chunks of this size, ${MIN_MESSAGE_SIZE} to ${MAX_MESSAGE_SIZE} (if this end creates the channel). Default ${DEFAULT_MESSAGE_SIZE}`,
  },
  timeout: {
    type: 'string',
    short: 't',
    valueName: 'MS',
    description: 'Give up if the other side has not come within MS milliseconds. Default: wait forever',
  },
  'shared-with-group': {
    type: 'boolean',
    description:
      'Share the channel with your group: create NAME with mode 0660, and join a NAME of another user of the group (group read-write, nothing for others). Both ends need it',
  },
} as const;

/** Check NAME and the options of `send` or `recv`; usage errors are {@link UsageError}s of `command`. */
export async function parsePipeOptions(
  command: string,
  name: string,
  values: Readonly<Record<string, string | boolean | undefined>>,
): Promise<PipeOptions> {
  const { validateShmName } = await import('../shm.js');
  let canonical: string;
  try {
    canonical = validateShmName(name, 'NAME');
  } catch (error) {
    // "The argument 'NAME' must not contain a slash (...). Received 'a/b'" -> the reason alone.
    const why = error instanceof Error ? /^The argument 'NAME' (.*)\. Received /s.exec(error.message)?.[1] ?? error.message : String(error);
    throw new UsageError(`NAME ${why}, got ${quote(name)}`, command);
  }
  const capacity = countOption(values['capacity'], '--capacity', 'messages', command, MIN_CAPACITY, MAX_CAPACITY, DEFAULT_CAPACITY);
  const messageSize = countOption(values['message-size'], '--message-size', 'bytes', command, MIN_MESSAGE_SIZE, MAX_MESSAGE_SIZE, DEFAULT_MESSAGE_SIZE);
  const timeoutText = values['timeout'];
  let timeoutMs: number | undefined;
  if (typeof timeoutText === 'string') {
    const t = timeoutText.trim();
    if (/^-/.test(t)) throw new UsageError(`--timeout must not be negative, got '${timeoutText}'`, command);
    if (!/^[0-9]+$/.test(t)) throw new UsageError(`--timeout must be a whole number of milliseconds, got '${timeoutText}'`, command);
    timeoutMs = Number(t);
    if (!Number.isSafeInteger(timeoutMs)) {
      throw new UsageError(`--timeout is too large, got '${timeoutText}' (at most ${Number.MAX_SAFE_INTEGER})`, command);
    }
  }
  // Each lane must hold `capacity` such messages, and the channel of TABLE_ENTRIES lanes must fit
  // in 4 GiB: Channel.byteLength says whether these sizes make a channel.
  const lib = await import('../index.js');
  try {
    lib.Channel.byteLength(channelGeometry(capacity, messageSize));
  } catch (error) {
    const code = errorCode(error);
    if (code !== 'ERR_OUT_OF_RANGE' && code !== 'ERR_INVALID_ARG_VALUE') throw error;
    throw new UsageError(
      `--capacity ${capacity} x --message-size ${messageSize} needs a buffer of more than ${mib(largestLane(lib))} MiB; choose smaller values`,
      command,
    );
  }
  return { name, canonical, capacity, messageSize, timeoutMs, sharedWithGroup: values['shared-with-group'] === true };
}

/** The options of Channel.create() (and byteLength()) for a channel of send/recv. */
function channelGeometry(capacity: number, messageSize: number): { capacity: number; maxMessageSize: number; maxProducers: number; maxConsumers: number } {
  return { capacity, maxMessageSize: messageSize, maxProducers: TABLE_ENTRIES, maxConsumers: TABLE_ENTRIES };
}

/** The largest lane (a power of two) of a channel of TABLE_ENTRIES lanes, as Channel.byteLength() allows. */
function largestLane(lib: Library): number {
  for (let laneSize = 2 ** 30; laneSize > 4096; laneSize /= 2) {
    try {
      lib.Channel.byteLength({ laneSize, maxMessageSize: MIN_MESSAGE_SIZE, maxProducers: TABLE_ENTRIES, maxConsumers: TABLE_ENTRIES });
      return laneSize;
    } catch {
      // too large: try half
    }
  }
  return 4096;
}

function mib(bytes: number): string {
  return String(bytes / (1024 * 1024));
}

/**
 * A count option (`--capacity` in messages, `--message-size` in bytes): decimal or hexadecimal with
 * `0x`, from min to max; `fallback` when the option is not given.
 */
function countOption(
  text: string | boolean | undefined,
  option: string,
  unit: 'messages' | 'bytes',
  command: string,
  min: number,
  max: number,
  fallback: number,
): number {
  if (typeof text !== 'string') return fallback;
  const t = text.trim();
  if (/^-/.test(t)) throw new UsageError(`${option} must not be negative, got '${text}'`, command);
  if (!/^(?:0[xX][0-9a-fA-F]+|[0-9]+)$/.test(t)) {
    throw new UsageError(`${option} must be a number of ${unit}, decimal or hexadecimal with 0x, got '${text}'`, command);
  }
  const n = Number(t);
  if (!(n >= min && n <= max)) throw new UsageError(`${option} must be from ${min} to ${max}, got '${text}'`, command);
  return n;
}

/** Who is attached to a channel, as Channel.inspect() reports it. */
export interface Parties {
  /** Pids of producers attached and alive. */
  readonly liveProducers: readonly number[];
  /** Pids of consumers attached and alive. */
  readonly liveConsumers: readonly number[];
  /** Consumer entries of processes that died without closing. */
  readonly deadConsumers: number;
  /** Whether a producer has ever attached. */
  readonly hadProducer: boolean;
  /** Whether a consumer has taken anything from a lane (the HELLO first): the stream has its receiver. */
  readonly streamTaken: boolean;
  /**
   * Whether another live process holds the handle that created the channel: the end that made it,
   * which attaches right after (or has stepped back, and closed that handle).
   */
  readonly otherCreator: boolean;
}

/** What Channel.inspect() says of the channel in `shm` (nothing in it is trusted). */
function inspect(lib: Library, shm: SharedMemory): ChannelInspection {
  return lib.Channel.inspect(shm);
}

/** Read who is attached to the channel in `shm`. */
function readParties(lib: Library, shm: SharedMemory): Parties {
  const found = inspect(lib, shm);
  const consumers = found.consumers ?? [];
  return {
    liveProducers: (found.producers ?? []).filter((p) => p.state === 'attached' && p.alive).map((p) => p.pid),
    liveConsumers: consumers.filter((c) => c.alive).map((c) => c.pid),
    deadConsumers: consumers.filter((c) => !c.alive).length,
    hadProducer: found.hadProducer === true,
    streamTaken: (found.producers ?? []).some((p) => p.takenBytes !== 0),
    otherCreator: found.creator !== undefined && found.creator.alive && found.creator.pid !== process.pid,
  };
}

/**
 * Just after this process attached as `role`: whether it must step back and wait its turn, because
 * another end of the same role got in at the same moment (both looked before either attached), or
 * because the channel already carries a stream (the look that judged it was older than the attach:
 * a whole pair may have met and finished meanwhile).
 *
 * A stream went through the channel when a lane holds or has had records: this end has written or
 * taken nothing yet, so they are another pair's. A sender never joins such a channel, and a receiver
 * only a channel whose HELLO no one has taken yet (bytes taken from a lane: another receiver has
 * the stream).
 *
 * Consumers: besides, any other live consumer. A consumer takes its entry with one compare-and-swap
 * of its pid, so two that attached both see each other; one that detaches changes nothing in the
 * stream (the sender counts a receiver only once it has taken the HELLO), so both step back and try
 * again after a random pause.
 *
 * Producers: exactly one of two must stay, since producers detach by closing and a consumer takes
 * "every producer closed" for the end of the stream. The one that stays is the one in the lowest
 * lane: both look for a lane from the first one on, and a lane is passed over only while another
 * producer holds it or is taking it. So a producer steps back when a lane below its own is attached
 * to a live process. A lane below it that `inspect()` shows without a pid, or closed, is being taken
 * right now (a producer takes a lane by compare-and-swap of its state, then stores its pid, then
 * marks it attached; until then inspect() lists it without that producer, or as the closed lane of
 * its previous owner): look again until it is attached, for at most SETTLE_MS. One that never gets
 * there is a producer that died half-way (or a lane closed since, by the end of an earlier stream):
 * step back too, which is always safe (the rival stays, or the channel is found abandoned and
 * replaced); staying could let two senders write into one stream. The look-again ends at the
 * `--timeout` deadline too (`deadline`, or undefined): stepping back then fails the end.
 */
async function sameRoleRival(
  lib: Library,
  shm: SharedMemory,
  role: 'producer' | 'consumer',
  channel: Channel,
  deadline: number | undefined,
): Promise<boolean> {
  if (role === 'consumer') {
    // Ours is among them (this process's pid); more than one live consumer is a rival. Then, in a
    // second look (inspect() reads one word after the other, it is no snapshot): bytes taken. In
    // this order, a receiver attached before us that has left since is seen to have taken them.
    if ((inspect(lib, shm).consumers ?? []).filter((c) => c.alive).length > 1) return true;
    return (inspect(lib, shm).producers ?? []).some((p) => p.takenBytes !== 0);
  }
  const mine = channel.lane;
  if (mine === undefined) return false;
  const settleBy = Math.min(nowMs() + SETTLE_MS, deadline ?? Infinity);
  for (;;) {
    const producers = inspect(lib, shm).producers ?? [];
    if (producers.some((p) => p.takenBytes !== 0 || p.queuedBytes !== 0)) return true;
    const lanes = new Map(producers.map((p) => [p.lane, p]));
    let settled = true;
    for (let lane = 0; lane < mine; lane++) {
      const p = lanes.get(lane);
      if (p?.state === 'attached') {
        if (p.alive) return true;
        // A producer that died attached: no rival.
      } else {
        settled = false; // no pid yet, or shown closed: being taken now (or closed since)
      }
    }
    if (settled) return false;
    if (nowMs() >= settleBy) return true;
    await sleep(SETTLE_STEP_MS);
  }
}

/**
 * What an opener finds in a shared memory object at the name: a channel of the layout version this
 * CLI reads, one of another version, one whose creator is still writing its header, one whose creator
 * died doing so, or something else.
 */
type HeaderState = 'channel' | 'initializing' | 'abandoned' | 'foreign' | { version: number };

/** Look at what `shm` (last modified `age` ms ago) holds, through Channel.inspect(). */
function headerState(lib: Library, shm: SharedMemory, age: number): HeaderState {
  const found = inspect(lib, shm);
  switch (found.state) {
    case 'channel':
    case 'corrupt': // the magic is right: open() reports the header, and the name is taken for stale
      return 'channel';
    case 'other-version':
      return { version: found.version ?? 0 };
    case 'uninitialized':
      // Channel.create stores the magic last: before that, its creator is writing the header. Old and
      // still without its magic: a creator that died while writing it (all zeros, or the header of
      // this layout version without the magic), or something that is not a channel.
      if (isYoung(age)) return 'initializing';
      return found.partial !== true || found.version === LAYOUT_VERSION ? 'abandoned' : 'foreign';
    default:
      return 'foreign';
  }
}

/** How long ago a shared memory object was last modified (its size set at creation), in ms. */
function ageMs(stats: { mtimeMs: number }): number {
  return Date.now() - stats.mtimeMs;
}

/**
 * Whether an object last modified `age` ms ago may still be being made by its creator: younger than
 * YOUNG_MS, and not dated further ahead than that (a time set in the future is no creation under way,
 * and must not make an end wait for ever).
 */
function isYoung(age: number): boolean {
  return age < YOUNG_MS && age > -YOUNG_MS;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** One end of the pipe: the channel, the shared memory under it, and the name it was found by. */
export class PipeEnd {
  /** The channel handle (attached as producer or consumer). */
  readonly channel: Channel;
  /** The shared memory the channel lives in (this end maps and closes it). */
  readonly shm: SharedMemory;
  /** Whether this end created the channel. */
  readonly created: boolean;
  readonly #lib: Library;
  readonly #path: string;
  readonly #dev: number;
  readonly #ino: number;

  /** @internal Made by {@link openPipe}. */
  constructor(lib: Library, channel: Channel, shm: SharedMemory, canonical: string, created: boolean) {
    this.#lib = lib;
    this.channel = channel;
    this.shm = shm;
    this.created = created;
    this.#path = `${SHM_DIR}${canonical}`;
    const st = fstatSync(shm.fd);
    this.#dev = st.dev;
    this.#ino = st.ino;
  }

  /** Whether the name still leads to this channel (nobody removed or replaced it). */
  nameLeadsHere(): boolean {
    const st = statSync(this.#path, { throwIfNoEntry: false });
    return st !== undefined && st.dev === this.#dev && st.ino === this.#ino;
  }

  /**
   * Remove the name if it still leads to this channel (another pair may have made a new channel
   * under it since). The check and the unlink are two steps: a new channel made in between by a
   * process that found this one abandoned would lose its name; only a channel with no live party
   * is ever taken for abandoned, so this cannot happen while this end is attached.
   */
  removeName(): void {
    if (!this.nameLeadsHere()) return;
    try {
      this.#lib.SharedMemory.unlink(this.shm.name ?? '');
    } catch (error) {
      const code = errorCode(error);
      if (code === 'ENOENT') return;
      // A group-shared name made by the other end, another user: only its owner may remove it in the
      // sticky /dev/shm, and the sender does once its receiver has the stream (send.ts).
      if ((code === 'EACCES' || code === 'EPERM') && !this.ownsName()) return;
      throw error;
    }
  }

  /** Whether the channel's object belongs to this process's user (with --shared-with-group it may not). */
  ownsName(): boolean {
    return fstatSync(this.shm.fd).uid === effectiveUid();
  }

  /**
   * Whether a receiver has taken the first message (the HELLO) of this producer's channel: consumers
   * have taken bytes from its lane (the HELLO is the lane's first record: a producer steps back from
   * a channel where any lane holds or has had records, see {@link sameRoleRival}).
   */
  helloTaken(): boolean {
    const lane = this.channel.lane;
    return (inspect(this.#lib, this.shm).producers ?? []).some((p) => p.lane === lane && p.takenBytes !== 0);
  }

  /** Who is attached now. */
  parties(): Parties {
    return readParties(this.#lib, this.shm);
  }

  /** Close the channel handle (a producer's close is what ends the stream) and unmap the memory. */
  close(): void {
    try {
      this.channel.close();
    } finally {
      this.shm.close();
    }
  }
}

/** What an end does with the channel it found at the name. */
type Verdict = 'join' | 'busy' | 'stale';

/**
 * Decide from the tables whether a `role` end may join the channel, must wait for the name to be
 * free (an earlier pair still uses it), or may replace it (nobody alive uses it any more).
 */
function judge(role: 'producer' | 'consumer', p: Parties, ageMsNow: number): Verdict {
  const young = isYoung(ageMsNow);
  if (role === 'consumer') {
    if (p.liveConsumers.length > 0) return 'busy'; // another receiver
    if (p.hadProducer) {
      if (p.liveProducers.length === 0) return 'stale'; // the sender died (or finished for a receiver that died)
      // A live sender whose receiver died: the sender notices, fails and removes the name. One whose
      // receiver has taken the stream and finished: the sender is about to exit (the name is gone
      // already, or goes with it).
      return p.deadConsumers > 0 || p.streamTaken ? 'busy' : 'join';
    }
    if (p.deadConsumers > 0) return 'stale'; // a receiver died waiting for its sender
    return young ? 'join' : 'stale'; // no one yet: its creator is about to attach, or died before
  }
  if (p.liveProducers.length > 0) return 'busy'; // another sender
  if (p.hadProducer) return p.liveConsumers.length > 0 ? 'busy' : 'stale'; // an earlier stream
  if (p.liveConsumers.length > 0) return 'join'; // a receiver waits
  if (p.deadConsumers > 0) return 'stale';
  return young ? 'join' : 'stale';
}

/** What {@link openPipe} needs to know. */
export interface OpenPipeOptions {
  /** `producer` for send, `consumer` for recv. */
  readonly role: 'producer' | 'consumer';
  /** NAME, and the sizes of the channel if this end creates it. */
  readonly options: PipeOptions;
  /** When to give up waiting for the name to be free (`process.hrtime` ms), or undefined. */
  readonly deadline: number | undefined;
}

/** What SharedMemory.open accepts at the name: this user's alone, or one shared with our group. */
function ownershipOf(options: PipeOptions): OwnershipOptions {
  return options.sharedWithGroup ? { owner: 'any', sharedWith: 'group' } : {};
}

/** Both ends of a group-shared channel read and write it: the group needs both bits. */
const GROUP_RW = 0o060;
const OTHER_RW = 0o006;

/**
 * The error for a name this end will not use (`id`: its owner, group and mode, from fstat of the
 * opened descriptor or from the library's refusal): whose it is, why not, and how to go on.
 */
function refusal(options: PipeOptions, id: ObjectIdentity): Failure {
  const path = `${SHM_DIR}${options.canonical}`;
  const mode = id.mode & 0o777;
  const mine = id.uid === effectiveUid();
  const whose = `${quote(path)} belongs to ${describeUser(id.uid)}${mine ? ' (you)' : ''}, group ${describeGroup(id.gid)}, mode ${octal(mode)}`;
  const flag = '--shared-with-group';
  let why: string;
  let how: string;
  if (!options.sharedWithGroup) {
    why = !mine
      ? `it is not yours${(mode & OTHER_RW) !== 0 ? ' (and its mode lets every user read or write it)' : ''}, and its owner could read what goes through it or send data of its own`
      : `its mode lets ${(mode & OTHER_RW) !== 0 ? 'every user' : 'its group'} read or write it, so they could read what goes through it or send data of their own`;
    how = mine
      ? `If you did not make it so, remove it (rm ${quote(path)}) and run again; to share a channel with your group, run both ends with ${flag}.`
      : `Choose another NAME, or ask its owner to remove it; to share a channel with your group, run both ends with ${flag}.`;
  } else {
    why = (mode & OTHER_RW) !== 0
      ? `its mode lets every user read or write it (${flag} accepts a name shared with one of your groups, and with no one else)`
      : (mode & GROUP_RW) !== GROUP_RW
        ? `it is not shared with its group for reading and writing (both ends need ${flag}, or neither)`
        : `its group is not one of yours`;
    how = mine
      ? `Choose another NAME, or remove it (rm ${quote(path)}) and run again.`
      : 'Choose another NAME, or ask its owner to remove it.';
  }
  return new Failure(`refusing ${quote(options.name)}: ${whose}: ${why}. Nothing was changed. ${how}`);
}

/** The owner, group and mode of the name now (for messages only: decisions use the descriptor). */
function describeName(path: string): string {
  const st = statSync(path, { throwIfNoEntry: false });
  return st === undefined ? '' : ` (${quote(path)} belongs to ${describeUser(st.uid)}, group ${describeGroup(st.gid)}, mode ${octal(st.mode)})`;
}

/** Milliseconds on a monotonic clock. */
export function nowMs(): number {
  return Number(process.hrtime.bigint() / 1_000_000n);
}

/**
 * Create the channel at the name, or open and join the one there, and attach this end to it (see the
 * module's comment for the rules). Throws {@link Failure} for system errors, a name held by something
 * that is not a channel, and a deadline passed while an earlier pair holds the name (or its creator
 * is still making it).
 */
export async function openPipe(lib: Library, { role, options, deadline }: OpenPipeOptions): Promise<PipeEnd> {
  const { Channel, SharedMemory } = lib;
  const { name, canonical } = options;
  const geometry = channelGeometry(options.capacity, options.messageSize);
  const size = Channel.byteLength(geometry);
  const same = role === 'producer' ? 'sender' : 'receiver';
  const waited = (): string => `waited ${options.timeoutMs ?? 0} ms`;
  /**
   * Sleep before the next round, or fail with `why` once the deadline (plus `grace`) has passed: every
   * round that waits for something goes through here, so none can spin or outlast --timeout.
   */
  const pause = async (ms: number, why: () => string, grace = 0): Promise<void> => {
    if (deadline !== undefined && nowMs() >= deadline + grace) throw new Failure(why());
    await sleep(deadline === undefined ? ms : Math.max(1, Math.min(ms, deadline + grace - nowMs())));
  };
  const inUse = (): string => `${quote(name)} is still in use by another ${same} or an earlier send/recv pair (${waited()})`;
  /**
   * Step back after attaching (another end of this role got in too, or the channel carries a stream
   * already), and try again after a random pause: through {@link pause}, so that a channel that makes
   * every round step back (a peer that can write it can keep it so) ends at the deadline too.
   */
  const stepBack = (): Promise<void> => pause(STEP_BACK_MIN_MS + Math.random() * STEP_BACK_SPREAD_MS, inUse);
  const initializing = (): string => `${quote(name)} is still being made by another send or recv (${waited()})`;
  // Rounds in a row that did not sleep (a take-over, a name removed meanwhile): see QUICK_ROUNDS.
  let quick = 0;
  for (;;) {
    if (quick++ >= QUICK_ROUNDS) {
      await pause(INIT_RETRY_MS, () => `${quote(name)} keeps changing under this ${same} (${waited()})`);
      quick = 0;
    }
    // 1. Create it, exclusively: of two ends that start together, one creates and one opens.
    let shm: SharedMemory | undefined;
    try {
      shm = createName(lib, options, size);
    } catch (error) {
      if (errorCode(error) !== 'EEXIST') throw new Failure(`cannot create channel ${quote(name)}: ${reason(error)}`);
    }
    if (shm !== undefined) {
      let channel: Channel | undefined;
      try {
        // Initialized in place; the magic number is stored last, so openers wait until it is done.
        channel = Channel.create(shm, { ...geometry, wait: 'block' });
        // Attach at once: an opener that finds no party in a young channel takes it for this one.
        channel.attach(role);
      } catch (error) {
        channel?.close();
        shm.close();
        try {
          SharedMemory.unlink(canonical);
        } catch {
          // already gone
        }
        throw new Failure(`cannot create channel ${quote(name)}: ${reason(error)}`);
      }
      if (!(await sameRoleRival(lib, shm, role, channel, deadline))) return new PipeEnd(lib, channel, shm, canonical, true);
      // Another end of this role joined at the same moment: step back (the channel stays), try again.
      channel.close();
      shm.close();
      await stepBack();
      quick = 0;
      continue;
    }

    // 2. It exists: open it (if it is ours, or shared with our group as asked) and see what it is.
    try {
      shm = SharedMemory.open(canonical, ownershipOf(options));
    } catch (error) {
      const code = errorCode(error);
      if (code === 'ENOENT') continue; // removed meanwhile: create it
      if (code === 'ERR_MMAP_NOT_OWNER' || code === 'ERR_MMAP_UNSAFE_PERMISSIONS') throw refusal(options, error as ObjectIdentity);
      if (code === 'ERR_MMAP_EMPTY_FILE') {
        // Its creator has not sized it yet, or died before it could.
        const st = statSync(`${SHM_DIR}${canonical}`, { throwIfNoEntry: false });
        if (st !== undefined && st.size === 0 && !isYoung(ageMs(st))) takeOver(options, st);
        else {
          await pause(INIT_RETRY_MS, initializing, INIT_GRACE_MS);
          quick = 0;
        }
        continue;
      }
      const owner = code === 'EACCES' ? describeName(`${SHM_DIR}${canonical}`) : '';
      throw new Failure(`cannot open channel ${quote(name)}: ${reason(error)}${owner}`);
    }
    if (options.sharedWithGroup && (fstatSync(shm.fd).mode & GROUP_RW) !== GROUP_RW) {
      const st = fstatSync(shm.fd);
      shm.close();
      throw refusal(options, st);
    }

    let verdict: Verdict;
    const age = ageMs(fstatSync(shm.fd));
    const state = headerState(lib, shm, age);
    if (state === 'foreign') {
      shm.close();
      throw new Failure(
        `cannot use ${quote(name)}: ${SHM_DIR}${canonical} exists and is not a channel of mmapkit send/recv (remove it, or choose another NAME)`,
      );
    } else if (typeof state === 'object') {
      shm.close();
      throw new Failure(`cannot use channel ${quote(name)}: it was made by another version of mmapkit (channel layout version ${state.version})`);
    } else if (state === 'initializing') {
      shm.close();
      await pause(INIT_RETRY_MS, initializing, INIT_GRACE_MS);
      quick = 0;
      continue;
    } else if (state === 'abandoned') {
      verdict = 'stale';
    } else {
      let channel: Channel | undefined;
      try {
        channel = Channel.open(shm, { wait: 'block' });
      } catch (error) {
        if (errorCode(error) !== 'ERR_MMAP_BAD_HEADER') {
          shm.close();
          throw new Failure(`cannot open channel ${quote(name)}: ${reason(error)}`);
        }
        // The magic is right but the header is not: a corrupt channel, of no use to anyone.
      }
      verdict = channel === undefined ? 'stale' : judge(role, readParties(lib, shm), age);
      if (channel !== undefined && verdict === 'join') {
        if (channel.maxMessageSize < HELLO.length) {
          channel.close();
          shm.close();
          throw new Failure(`cannot use channel ${quote(name)}: its messages are too small (${channel.maxMessageSize} bytes) for mmapkit send/recv`);
        }
        let attached = true;
        try {
          channel.attach(role);
        } catch (error) {
          // Every lane (consumer entry) taken: more ends of this role than the channel has room for
          // are racing for it; wait as for one that holds it.
          if (errorCode(error) !== 'ERR_MMAP_CHANNEL_FULL') {
            channel.close();
            shm.close();
            throw new Failure(`cannot attach to channel ${quote(name)}: ${reason(error)}`);
          }
          attached = false;
          verdict = 'busy';
        }
        if (attached) {
          if (!(await sameRoleRival(lib, shm, role, channel, deadline))) return new PipeEnd(lib, channel, shm, canonical, false);
          channel.close();
          shm.close();
          await stepBack();
          quick = 0;
          continue;
        }
      }
      channel?.close(); // not attached: closing it changes nothing in the channel
    }

    if (verdict === 'stale') {
      // Nobody alive uses it: remove the name (if it still leads to this object) and start again.
      const st = fstatSync(shm.fd);
      shm.close();
      takeOver(options, st);
      continue;
    }
    // busy: an earlier pair (or another end like this one) holds the name; wait for it to be free.
    shm.close();
    await pause(BUSY_RETRY_MS, inUse);
    quick = 0;
  }
}

/**
 * Create the name, exclusively: mode 0600, or 0660 with `--shared-with-group` (the umask cleared
 * of group bits meanwhile, so that a group member can open it at once: no window of a narrower mode).
 */
function createName(lib: Library, options: PipeOptions, size: number): SharedMemory {
  if (!options.sharedWithGroup) return lib.SharedMemory.create(options.canonical, size, { mode: 0o600 });
  const umask = process.umask(0o077 & ~GROUP_RW);
  try {
    return lib.SharedMemory.create(options.canonical, size, { mode: 0o600 | GROUP_RW });
  } finally {
    process.umask(umask);
  }
}

/**
 * Remove a name that nobody alive uses any more (its object, `judged`, was found abandoned or never
 * sized). Another end may have done the same and made a fresh channel under the name meanwhile: a
 * plain unlink by name could remove that one, leaving both ends to wait alone. So the name is first
 * renamed aside (atomic: whatever object it names at that instant moves), and only the judged object
 * is removed; anything else is linked back. Nothing is moved at all when the name no longer leads to
 * the judged object. One of another user (a group-shared name) may not be ours to move (/dev/shm is
 * sticky): say so, instead of finding it abandoned again and again.
 */
function takeOver(options: PipeOptions, judged: { dev: number; ino: number }): void {
  const path = `${SHM_DIR}${options.canonical}`;
  const aside = `${path}.takeover-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
  // The name may have moved on since the object was judged (its pair met and removed it, another end
  // took it over and made a fresh channel): then there is nothing to take over, and the rename would
  // only move a fresh channel aside.
  const now = statSync(path, { throwIfNoEntry: false });
  if (now === undefined || now.dev !== judged.dev || now.ino !== judged.ino) return;
  try {
    renameSync(path, aside);
    const st = statSync(aside, { throwIfNoEntry: false });
    if (st !== undefined && (st.dev !== judged.dev || st.ino !== judged.ino)) {
      // A fresh channel: give its name back (unless yet another one took the name meanwhile).
      try {
        linkSync(aside, path);
      } catch {
        // EEXIST: a third object holds the name now. The fresh one's creator finds its name gone: a
        // receiver that no sender has reached yet starts again (recv.ts), a sender fails.
      }
    }
    unlinkSync(aside);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return; // removed by someone else meanwhile
    // The sticky /dev/shm refuses rename with EPERM; say it as shm_unlink would (glibc turns it into EACCES).
    const why = errorCode(error) === 'EPERM' ? 'Permission denied' : reason(error);
    throw new Failure(
      `cannot take over ${quote(options.name)}, left behind by an earlier send or recv: ${why}${describeName(path)}. Choose another NAME, or ask its owner to remove it.`,
    );
  }
}
