/**
 * Message channels between processes over shared memory: a bounded multi-producer multi-consumer
 * queue of variable-size byte messages (each up to `maxMessageSize`), in fixed-size slots.
 *
 * The queue is Dmitry Vyukov's bounded MPMC queue: every slot carries a sequence number that says
 * whose turn it is; producers claim positions by compare-and-swap on `tail`, consumers on `head`.
 * Around it: a table of the producers and consumers attached (so that a process killed in the middle
 * of a message can be detected and its slot skipped), futex words to sleep on when the queue is empty
 * or full, and end-of-stream once every producer has closed. The exact layout is in
 * docs/channel-layout.md; every index and length read from shared memory is checked before use.
 * @module
 */
import { readFileSync, statSync } from 'node:fs';
import { Readable, Writable } from 'node:stream';
// Node's own setImmediate, not the global: fake timers in a user's tests replace the global, and a
// yield that waits for a faked immediate would never end.
import { setImmediate } from 'node:timers';
import { invalidArgType, invalidArgValue, invalidState, mmapkitError, outOfRange } from './errors.js';
import { Mapping, map, viewLocation } from './mapping.js';
import { OWNERSHIP_OPTIONS, type OwnershipOptions } from './ownership.js';
import { SharedMemory } from './shm.js';
import { validateBoolean, validateInt32, validateOneOf, validateOptions, validateSignal } from './validators.js';
import { type AsyncWaitSettings, type Word, notifyWord, waitWord, waitWordAsync } from './wait.js';

// ---------------------------------------------------------------- layout (docs/channel-layout.md)

/** Byte offsets of the channel header and control words. */
export const CHANNEL = Object.freeze({
  MAGIC: 0, // u32 'MKCH'
  VERSION: 4, // u16
  HEADER_SIZE: 6, // u16: bytes before the first control line (64)
  FLAGS: 8, // u32: bit 0 = a producer has ever attached; bit 1 = a producer went away without closing
  CAPACITY: 12, // u32: number of slots, a power of two
  SLOT_SIZE: 16, // u32: bytes per slot, a multiple of 64
  MAX_MESSAGE: 20, // u32: largest message in bytes (SLOT_SIZE - SLOT_HEADER at most)
  MAX_PRODUCERS: 24, // u32: entries in the producer table
  MAX_CONSUMERS: 28, // u32: entries in the consumer table
  TOTAL_SIZE_LO: 32, // u32: total size in bytes, low half
  TOTAL_SIZE_HI: 36, // u32: total size, high half
  PRODUCERS_OFFSET: 40, // u32: offset of the producer table
  CONSUMERS_OFFSET: 44, // u32: offset of the consumer table
  SLOTS_OFFSET: 48, // u32: offset of slot 0
  EXPECTED_PRODUCERS: 52, // u32 (version 2): producers to expect before the stream can end; 0: not set
  PRODUCER_COUNT: 56, // i32 (version 2): producer attaches so far (every attach adds 1)
  CREATOR: 60, // i32 (version 2): pid of the process whose create() handle is open; 0 once closed
  TAIL: 64, // i32: next position producers claim (own cache line)
  HEAD: 128, // i32: next position consumers claim (own cache line)
  NOT_EMPTY: 192, // i32 futex word: bumped when a message is published while consumers sleep
  CONSUMER_SLEEPERS: 196, // i32
  NOT_FULL: 256, // i32 futex word: bumped when a slot is freed while producers sleep
  PRODUCER_SLEEPERS: 260, // i32
  CONTROL_END: 320,
  /** Slot: i32 sequence number, i32 length (-1: torn), i32 producer pid, u32 reserved, then data. */
  SLOT_SEQ: 0,
  SLOT_LENGTH: 4,
  SLOT_PID: 8,
  SLOT_HEADER: 16,
  /** Table entry (producer or consumer): i32 pid (0: free), i32 state, i32 position, i32 busy. */
  ENTRY_PID: 0,
  ENTRY_STATE: 4, // 1 attached, 2 closed
  ENTRY_POSITION: 8, // the position this party claimed last (or is claiming), valid while BUSY is 1
  ENTRY_BUSY: 12, // 1 once POSITION is valid; 0 after a lost claim or a repair
  ENTRY_SIZE: 16,
});

const MAGIC = 0x48434b4d; // 'MKCH'
/** The layout version create() writes. 2 added EXPECTED_PRODUCERS, PRODUCER_COUNT, CREATOR and FLAGS bit 1. */
const VERSION = 2;
/** Versions open() reads: in a version 1 channel the new words are 0, which means what they mean in 2. */
const READ_VERSIONS: readonly number[] = [1, 2];
const TORN = -1;
const ATTACHED = 1;
const CLOSED = 2;
const FLAG_HAD_PRODUCER = 1;
const FLAG_PRODUCER_DIED = 2;
const INT32_MAX = 0x7fffffff;
const PID = process.pid;
/** How long a producer found alive is assumed alive by #atEnd. */
const LIVENESS_CACHE_MS = 50;
/** How long a slot may stay claimed but unfinished before its owner is checked for death. */
const STALL_CHECK_NS = 2_000_000;
/** Longest single sleep: waits wake up this often to look for ends and dead producers. */
const MAX_SLEEP_NS = 100_000_000;

/** How an end of the channel waits when the queue is full (sending) or empty (receiving). */
export type WaitStrategy = 'spin' | 'block' | 'async' | 'hybrid';
const STRATEGIES: readonly WaitStrategy[] = ['spin', 'block', 'async', 'hybrid'];

/** Options of {@link Channel.create}. */
export interface ChannelCreateOptions extends Omit<ChannelOpenOptions, keyof OwnershipOptions> {
  /** Number of message slots, rounded up to a power of two (at least 2). Default 1024. */
  capacity?: number;
  /** Largest message in bytes. Default 4096 (so a default channel takes about 4 MiB). */
  maxMessageSize?: number;
  /** How many producer handles may be attached at once (across all processes). Default 64. */
  maxProducers?: number;
  /** How many consumer handles may be attached at once. Default 64. */
  maxConsumers?: number;
  /**
   * How many producers to expect: consumers see the end of the stream only once this many producer
   * handles have attached (across all processes, over the channel's life) and every one has closed or
   * died. Default: not set, the end comes once every producer attached so far is gone.
   */
  producers?: number;
}
const CREATE_OPTIONS = ['capacity', 'maxMessageSize', 'maxProducers', 'maxConsumers', 'producers', 'wait', 'spin'] as const;
/** The options of create() that describe the channel (not the handle): byteLength() takes these. */
const CHANNEL_OPTIONS = ['capacity', 'maxMessageSize', 'maxProducers', 'maxConsumers', 'producers'] as const;

/**
 * Why a consumer saw the end of the stream: every producer closed its handle (`'closed'`), or at
 * least one producer of this channel went away without closing (its process died or exited with the
 * handle open: `'producer-died'`), so its last messages may be missing.
 */
export type ChannelEndReason = 'closed' | 'producer-died';

/** Options of {@link Channel.open} (and the per-handle part of {@link Channel.create}). */
export interface ChannelOpenOptions {
  /**
   * How this handle waits: `'block'` (default: sleep in the kernel, futex), `'spin'` (re-read
   * shared memory in a loop: lowest latency, a busy core), `'hybrid'` (spin for `spin` µs, then
   * sleep), `'async'` (like block; named for handles used with the async methods). The async
   * methods never block the event loop, except `'spin'`/`'hybrid'` for at most `spin` µs per wait.
   */
  wait?: WaitStrategy;
  /** Microseconds to spin for `'hybrid'` (default 50) and for the async methods of `'spin'` (default 200). */
  spin?: number;
  /**
   * For a `{ name }` target only: whose shared memory object to accept (`'self'`, default; a uid;
   * `'any'`), as for `SharedMemory.open()`. Any other target is `ERR_INVALID_ARG_VALUE`.
   */
  owner?: OwnershipOptions['owner'];
  /**
   * For a `{ name }` target only: whom besides its owner the object's mode may let in
   * (`'nobody'`, default; `'group'`; `'anyone'`), as for `SharedMemory.open()`.
   */
  sharedWith?: OwnershipOptions['sharedWith'];
}
const OPEN_OPTIONS = ['wait', 'spin', ...OWNERSHIP_OPTIONS] as const;

/** Where a channel lives: a file path, shared memory, a shared mapping, or `{ name }` (named shm). */
export type ChannelTarget = string | { name: string } | SharedMemory | Mapping;

/** Options of the timed methods. */
export interface ChannelWaitOptions {
  /** Milliseconds to wait at most. Default: forever. */
  timeout?: number;
  /** Abort the wait (async methods only). */
  signal?: AbortSignal;
}

interface Geometry {
  capacity: number;
  slotSize: number;
  maxMessageSize: number;
  maxProducers: number;
  maxConsumers: number;
  producersOffset: number;
  consumersOffset: number;
  slotsOffset: number;
  totalSize: number;
}

function align(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

function geometry(capacity: number, maxMessageSize: number, maxProducers: number, maxConsumers: number): Geometry {
  const cap = Math.max(2, 2 ** Math.ceil(Math.log2(capacity)));
  const slotSize = align(CHANNEL.SLOT_HEADER + maxMessageSize, 64);
  const producersOffset = CHANNEL.CONTROL_END;
  const consumersOffset = producersOffset + align(maxProducers * CHANNEL.ENTRY_SIZE, 64);
  const slotsOffset = consumersOffset + align(maxConsumers * CHANNEL.ENTRY_SIZE, 64);
  const totalSize = slotsOffset + cap * slotSize;
  return { capacity: cap, slotSize, maxMessageSize, maxProducers, maxConsumers, producersOffset, consumersOffset, slotsOffset, totalSize };
}

function corrupt(what: string): Error {
  return mmapkitError('ERR_MMAP_CHANNEL_CORRUPT', `Channel memory is corrupt: ${what}`);
}

function timedOut(what: string, timeout: number | undefined): Error {
  return mmapkitError('ERR_MMAP_CHANNEL_TIMEOUT', `Timed out after ${timeout} ms ${what}`);
}

function pidAlive(pid: number): boolean {
  if (pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as { code?: string }).code === 'EPERM';
  }
  // kill(pid, 0) succeeds on a zombie (dead, not yet reaped by its parent): look at its state.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.charAt(stat.lastIndexOf(')') + 2) !== 'Z';
  } catch {
    return false; // gone between the two looks
  }
}

function toBytes(data: unknown, name = 'data'): Uint8Array {
  if (data instanceof Uint8Array) return data;
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw invalidArgType(name, 'a string, Buffer, TypedArray or DataView', data);
}

/** Say on an error of sendMany how many messages went before it. */
function withSent(err: unknown, sent: number): unknown {
  if (err !== null && typeof err === 'object') (err as { sent?: number }).sent = sent;
  return err;
}

// ---------------------------------------------------------------- yielding to the event loop

/**
 * The async methods complete without waiting whenever there is room (or a message), and a promise
 * that settles at once resumes its caller in a microtask: a loop of them would never give the event
 * loop a turn (timers, I/O, other requests starve). So every async completion counts here, for the
 * whole thread (one event loop, however many handles), and after YIELD_EVERY messages or YIELD_AFTER_MS
 * milliseconds since the last yield, the call settles through `setImmediate` instead: timers and I/O
 * run, then the caller goes on. The count is one add and one compare per call; the clock is read only
 * every CLOCK_EVERY calls (a read costs about 60 ns, a tenth of a fast async call).
 */
const YIELD_EVERY = 256;
const YIELD_AFTER_MS = 4;
const CLOCK_EVERY = 16;
/** Messages sent or received by async calls of this thread since its last yield. */
let sinceYield = 0;
/** Async calls since the clock was last read. */
let untilClock = CLOCK_EVERY;
/** When the last yield ended (performance.now()). */
let yieldedAt = performance.now();
/** The yield under way: every call that completes meanwhile settles after it, in order. */
let pendingYield: Promise<void> | undefined;

/** Count `messages` done by an async call; true when the call must yield before it settles. */
function yieldDue(messages: number): boolean {
  if (pendingYield !== undefined) return true; // keep the order of calls that complete meanwhile
  sinceYield += messages;
  if (sinceYield >= YIELD_EVERY) return true;
  if (--untilClock > 0) return false;
  untilClock = CLOCK_EVERY;
  return performance.now() - yieldedAt >= YIELD_AFTER_MS;
}

/** Let the event loop run (timers, I/O), once for every call that is due meanwhile. */
function yieldToLoop(): Promise<void> {
  return (pendingYield ??= new Promise<void>((resolve) => {
    setImmediate(() => {
      pendingYield = undefined;
      sinceYield = 0;
      untilClock = CLOCK_EVERY;
      yieldedAt = performance.now();
      resolve();
    });
  }));
}

/** The Buffer pool's ArrayBuffer last seen by a receive, and an Int32Array over it (see #copyOut). */
let poolBuffer: ArrayBuffer | undefined;
let poolWords = new Int32Array(0);

/**
 * The timeout of a call in milliseconds (Infinity: none), validated. Only a call that has to wait
 * turns it into a deadline ({@link deadlineOf}): reading the clock on every message would cost more
 * than the message (most calls find room or a message at once).
 */
function parseTimeout(options: ChannelWaitOptions | number | undefined): number {
  if (options === undefined) return Infinity; // the common case, on every message
  if (typeof options === 'number') return checkTimeout(options);
  const o = validateOptions(options, 'options', ['timeout', 'signal'] as const);
  validateSignal(o.signal, 'options.signal');
  return o.timeout === undefined ? Infinity : checkTimeout(o.timeout);
}

function checkTimeout(t: unknown): number {
  if (typeof t !== 'number') throw invalidArgType('options.timeout', 'of type number', t);
  if (!(t >= 0)) throw invalidArgValue('options.timeout', t, 'must be a number of milliseconds >= 0');
  return t;
}

/** The AbortSignal of an async call's options (validated by {@link parseTimeout}). */
function signalOf(options: ChannelWaitOptions | number | undefined): AbortSignal | undefined {
  if (typeof options !== 'object' || options === null) return undefined;
  // Read again: a getter may answer differently the second time. Never use what was not validated.
  return validateSignal((options as { signal?: unknown }).signal, 'options.signal');
}

/** When a wait of `timeout` ms that starts now ends (process.hrtime.bigint() ns); -1n: never. */
function deadlineOf(timeout: number): bigint {
  return timeout === Infinity ? -1n : process.hrtime.bigint() + BigInt(Math.round(timeout * 1e6));
}

function nsLeft(deadline: bigint): number {
  if (deadline === -1n) return -1;
  const ns = Number(deadline - process.hrtime.bigint());
  return ns > 0 ? ns : 0;
}

const kCreate = Symbol('mmapkit.channel');

/** A message read in place: `data` is a view into the channel's memory, valid until `release()`. */
export interface InPlaceMessage {
  /**
   * The message bytes, in shared memory (zero copy). After `release()` the slot goes back to
   * producers and these bytes may change to a later message: copy what you keep.
   */
  readonly data: Buffer;
  /** Give the slot back to producers. Idempotent. */
  release(): void;
}

/** Space reserved for one message: write into `buffer`, then `commit(length)`. */
export interface Reservation {
  /** `maxLength` bytes of the slot, in shared memory. */
  readonly buffer: Buffer;
  /** Publish the first `length` bytes (default: all of `buffer`) as the message. */
  commit(length?: number): void;
}

/**
 * One handle on a channel. A handle becomes a producer on its first send and a consumer on its first
 * receive; `close()` detaches it (consumers see the end of the stream once every producer that ever
 * attached has closed, or died). Disposable.
 */
export class Channel implements Disposable, AsyncIterable<Buffer> {
  readonly #mapping: Mapping;
  /** What this handle opened itself and closes with it: shared memory, or a file's mapping. */
  readonly #owned: SharedMemory | Mapping | undefined;
  readonly #i32: Int32Array;
  readonly #u8: Buffer;
  readonly #g: Geometry;
  readonly #mask: number;
  readonly #strategy: WaitStrategy;
  readonly #spinNs: number;
  readonly #notEmpty: Word;
  readonly #notFull: Word;
  #producer = -1; // index in the producer table, once attached
  #consumer = -1;
  #closed = false;
  #ended = false;
  #endReason: ChannelEndReason | undefined;
  /** Whether this is the handle create() returned (its process is named in CREATOR until it closes). */
  readonly #creator: boolean;
  /** When #atEnd last found a live producer (performance.now()). */
  #liveSeenAt = -Infinity;
  /** A head position seen claimed but unpublished, and since when (to find producers that died). */
  #stallPos = 0;
  #stallSince = -1n;
  /** Same for a slot one lap behind the tail that a consumer claimed but never released. */
  #fullPos = 0;
  #fullSince = -1n;
  /**
   * The one reservation / in-place message this handle may have outstanding: its table entry
   * records a single position, which is what lets others repair the slot if this process dies.
   */
  #outstandingReserve: (() => void) | undefined;
  #outstandingTake: (() => void) | undefined;
  /** Data areas of the slots, made on first use (see #slotView). */
  readonly #slotViews: Array<Buffer | undefined> = [];
  /** Where this handle expects the tail / head to be (saves a load when it is right). */
  #tailGuess = 0;
  #headGuess = 0;
  /** Whether this handle's table entry has BUSY set (so each claim needs only the position store). */
  #producerBusy = false;
  #consumerBusy = false;

  /** @internal Use {@link Channel.create} or {@link Channel.open}. */
  constructor(token: symbol, mapping: Mapping, owned: SharedMemory | Mapping | undefined, g: Geometry, wait: WaitStrategy, spinNs: number, creator = false) {
    if (token !== kCreate) throw new TypeError('Illegal constructor: use Channel.create() or Channel.open()');
    this.#creator = creator;
    this.#mapping = mapping;
    this.#owned = owned;
    this.#u8 = mapping.view(0, g.totalSize);
    this.#i32 = new Int32Array(this.#u8.buffer, this.#u8.byteOffset, g.totalSize >>> 2);
    this.#g = g;
    this.#mask = g.capacity - 1;
    this.#strategy = wait;
    this.#spinNs = spinNs;
    const base = alignedBase(this.#u8);
    this.#notEmpty = { mapping, addr: Number(base) + CHANNEL.NOT_EMPTY, array: this.#i32, index: CHANNEL.NOT_EMPTY >>> 2 };
    this.#notFull = { mapping, addr: Number(base) + CHANNEL.NOT_FULL, array: this.#i32, index: CHANNEL.NOT_FULL >>> 2 };
  }

  /** Bytes a channel with these options occupies (to size a file or shared memory yourself). */
  static byteLength(options?: Omit<ChannelCreateOptions, 'wait' | 'spin'>): number {
    const o = validateOptions(options, 'options', CHANNEL_OPTIONS);
    parseExpectedProducers(o); // takes no room, but checked as create() checks it
    return parseGeometry(o).totalSize;
  }

  /**
   * Create a channel. `target`: a file path (created or grown to size, mode 0o600), `{ name }` (new
   * named shared memory, exclusive), or existing shared memory / a shared mapping (initialized in
   * place). A channel already there that is in use (a live process has a handle attached to it, or
   * holds the handle its create() returned) is never reset: `ERR_MMAP_CHANNEL_IN_USE`. Returns a
   * handle on the new channel.
   */
  static create(target: ChannelTarget, options?: ChannelCreateOptions): Channel {
    const o = validateOptions(options, 'options', CREATE_OPTIONS);
    const g = parseGeometry(o);
    const expected = parseExpectedProducers(o);
    const { wait, spinNs } = parseStrategy(o);
    if (typeof target === 'string') refuseLiveFile(target); // before map() grows the file
    const { mapping, owned } = resolveTarget(target, g.totalSize, true);
    let i32: Int32Array;
    try {
      const view = mapping.view(0, g.totalSize);
      alignedBase(view); // refuse before writing anything
      i32 = new Int32Array(view.buffer, view.byteOffset, g.totalSize >>> 2);
      claimCreator(mapping, i32);
    } catch (err) {
      if (owned instanceof SharedMemory) owned.close();
      else owned?.unmap();
      throw err;
    }
    const view = mapping.view(0, g.totalSize);
    // Zero the header, control words and tables, all but the CREATOR word this process has claimed
    // (a concurrent create() of the same memory sees it and backs off).
    view.fill(0, 0, CHANNEL.CREATOR);
    view.fill(0, CHANNEL.CREATOR + 4, g.slotsOffset);
    view.writeUInt16LE(VERSION, CHANNEL.VERSION);
    view.writeUInt16LE(64, CHANNEL.HEADER_SIZE);
    view.writeUInt32LE(g.capacity, CHANNEL.CAPACITY);
    view.writeUInt32LE(g.slotSize, CHANNEL.SLOT_SIZE);
    view.writeUInt32LE(g.maxMessageSize, CHANNEL.MAX_MESSAGE);
    view.writeUInt32LE(g.maxProducers, CHANNEL.MAX_PRODUCERS);
    view.writeUInt32LE(g.maxConsumers, CHANNEL.MAX_CONSUMERS);
    view.writeUInt32LE(g.totalSize % 2 ** 32, CHANNEL.TOTAL_SIZE_LO);
    view.writeUInt32LE(Math.floor(g.totalSize / 2 ** 32), CHANNEL.TOTAL_SIZE_HI);
    view.writeUInt32LE(g.producersOffset, CHANNEL.PRODUCERS_OFFSET);
    view.writeUInt32LE(g.consumersOffset, CHANNEL.CONSUMERS_OFFSET);
    view.writeUInt32LE(g.slotsOffset, CHANNEL.SLOTS_OFFSET);
    view.writeUInt32LE(expected, CHANNEL.EXPECTED_PRODUCERS);
    // Slot i starts with sequence number i: free for the producer that claims position i.
    for (let i = 0; i < g.capacity; i++) i32[(g.slotsOffset + i * g.slotSize) >>> 2] = i;
    // seq_cst store, last: publishes the initialized channel to processes that check the magic
    Atomics.store(i32, CHANNEL.MAGIC >>> 2, MAGIC | 0);
    return new Channel(kCreate, mapping, owned, g, wait, spinNs, true);
  }

  /**
   * Open a channel that `create` made (its header is checked: a wrong or corrupted one is an error).
   * A `{ name }` target is opened with `SharedMemory.open()`: by default it must belong to this user
   * and let no one else read or write it (`options.owner`, `options.sharedWith`).
   */
  static open(target: ChannelTarget, options?: ChannelOpenOptions): Channel {
    const o = validateOptions(options, 'options', OPEN_OPTIONS);
    const { wait, spinNs } = parseStrategy(o);
    const ownership: OwnershipOptions = {};
    for (const key of OWNERSHIP_OPTIONS) {
      if (o[key] === undefined) continue;
      if (!isNameTarget(target)) throw invalidArgValue(`options.${key}`, o[key], 'applies only to a { name } target (named shared memory)');
      Object.assign(ownership, { [key]: o[key] });
    }
    const { mapping, owned } = resolveTarget(target, undefined, false, ownership);
    try {
      const g = readGeometry(mapping);
      return new Channel(kCreate, mapping, owned, g, wait, spinNs);
    } catch (err) {
      if (owned instanceof SharedMemory) owned.close();
      else owned?.unmap();
      throw err;
    }
  }

  /** Slots in the queue. */
  get capacity(): number {
    return this.#g.capacity;
  }

  /** Largest message in bytes. */
  get maxMessageSize(): number {
    return this.#g.maxMessageSize;
  }

  /** This handle's wait strategy. */
  get wait(): WaitStrategy {
    return this.#strategy;
  }

  /** Whether `close()` has been called on this handle. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Whether this handle has seen the end of the stream (every producer closed, queue empty). */
  get ended(): boolean {
    return this.#ended;
  }

  /**
   * Why this handle saw the end of the stream, once it has (`undefined` before): `'closed'` when every
   * producer closed its handle, `'producer-died'` when some producer of the channel went away without
   * closing (killed, crashed, or exited with its handle open), whose last messages may be missing.
   */
  get endReason(): ChannelEndReason | undefined {
    return this.#endReason;
  }

  /** Producers the channel expects before its stream can end (the `producers` option of create), or undefined. */
  get producers(): number | undefined {
    const n = this.#mapping.closed ? 0 : Atomics.load(this.#i32, CHANNEL.EXPECTED_PRODUCERS >>> 2) >>> 0;
    return n === 0 ? undefined : n;
  }

  /** Messages waiting in the queue now (a snapshot). */
  get size(): number {
    this.#check('size');
    const n = (Atomics.load(this.#i32, CHANNEL.TAIL >>> 2) - Atomics.load(this.#i32, CHANNEL.HEAD >>> 2)) | 0;
    return Math.max(0, Math.min(n, this.#g.capacity));
  }

  /**
   * Attach this handle as a producer (or consumer) now, instead of on its first send (receive). A
   * consumer sees the end of the stream once every producer that has attached has closed: attach all
   * producers before the first one may close, or consumers may see the end too early (or create the
   * channel with the `producers` option).
   */
  attach(role: 'producer' | 'consumer'): void {
    this.#check('attach');
    if (validateOneOf(role, 'role', ['producer', 'consumer'] as const) === 'producer') this.#attachProducer();
    else this.#attachConsumer();
  }

  // ------------------------------------------------------------ sending

  /** Send one message if there is room now; false when the queue is full. */
  trySend(data: string | ArrayBufferView): boolean {
    const bytes = this.#prepareSend(data);
    const pos = this.#claimTail();
    if (pos === undefined) return false;
    this.#publish(pos, bytes);
    this.#wakeConsumers();
    return true;
  }

  /** Send one message, waiting while the queue is full (up to `timeout` ms; `ERR_MMAP_CHANNEL_TIMEOUT`). */
  send(data: string | ArrayBufferView, options?: ChannelWaitOptions | number): void {
    const timeout = parseTimeout(options);
    const bytes = this.#prepareSend(data);
    this.#publish(this.#claimTail() ?? this.#waitRoom(timeout, deadlineOf(timeout)), bytes);
    this.#wakeConsumers();
  }

  /** Like {@link Channel.send} without blocking the event loop. */
  async sendAsync(data: string | ArrayBufferView, options?: ChannelWaitOptions | number): Promise<void> {
    const timeout = parseTimeout(options);
    const bytes = this.#prepareSend(data);
    const pos = this.#claimTail() ?? (await this.#waitRoomAsync(timeout, deadlineOf(timeout), signalOf(options), 'sendAsync'));
    this.#publish(pos, bytes);
    this.#wakeConsumers();
    if (yieldDue(1)) await yieldToLoop(); // sent: only the caller waits for the event loop's turn
  }

  /**
   * Send several messages in order, waiting while the queue is full, as `send` would one by one, but
   * cheaper per message: the checks, and the wake-up of sleeping consumers, happen once per call
   * (and once per wait) instead of once per message: the way to the highest message rate. Every
   * message is checked before the first is sent: a bad one sends nothing. An error after some were
   * sent (`ERR_MMAP_CHANNEL_TIMEOUT`, ...) has a `sent` property: how many went.
   */
  sendMany(messages: ReadonlyArray<string | ArrayBufferView>, options?: ChannelWaitOptions | number): void {
    const timeout = parseTimeout(options);
    const all = this.#prepareSendMany(messages);
    let deadline: bigint | undefined;
    let sent = 0;
    try {
      while (sent < all.length) {
        let pos = this.#claimTail();
        if (pos === undefined) {
          this.#wakeConsumers(sent); // let consumers drain what went so far while we wait for room
          pos = this.#waitRoom(timeout, (deadline ??= deadlineOf(timeout)));
        }
        this.#publish(pos, all[sent]!);
        sent++;
      }
    } catch (err) {
      throw withSent(err, sent);
    } finally {
      if (sent > 0 && !this.#mapping.closed) this.#wakeConsumers(sent);
    }
  }

  /** Like {@link Channel.sendMany} without blocking the event loop. */
  async sendManyAsync(messages: ReadonlyArray<string | ArrayBufferView>, options?: ChannelWaitOptions | number): Promise<void> {
    const timeout = parseTimeout(options);
    const all = this.#prepareSendMany(messages);
    let deadline: bigint | undefined;
    let sent = 0;
    try {
      while (sent < all.length) {
        let pos = this.#claimTail();
        if (pos === undefined) {
          this.#wakeConsumers(sent);
          pos = await this.#waitRoomAsync(timeout, (deadline ??= deadlineOf(timeout)), signalOf(options), 'sendManyAsync');
        }
        this.#publish(pos, all[sent]!);
        sent++;
        if (yieldDue(1)) {
          // A long batch into a queue that keeps finding room would hold the event loop for all of it.
          this.#wakeConsumers(sent);
          await yieldToLoop();
          if (sent < all.length) {
            this.#check('sendManyAsync'); // closed meanwhile: never claim for a closed producer
            signalOf(options)?.throwIfAborted();
          }
        }
      }
    } catch (err) {
      throw withSent(err, sent);
    } finally {
      if (sent > 0 && !this.#mapping.closed) this.#wakeConsumers(sent);
    }
  }

  /** Send as many of `messages` as there is room for now, in order; returns how many went. */
  trySendMany(messages: ReadonlyArray<string | ArrayBufferView>): number {
    const all = this.#prepareSendMany(messages);
    let sent = 0;
    for (let pos; sent < all.length && (pos = this.#claimTail()) !== undefined; sent++) this.#publish(pos, all[sent]!);
    if (sent > 0) this.#wakeConsumers(sent);
    return sent;
  }

  /**
   * Zero copy: reserve a slot (waiting like `send` while full), write the message into
   * `reservation.buffer`, then `commit(length)`. Until committed, consumers wait at that slot, so
   * commit promptly (a producer that dies before committing is detected and its slot skipped).
   */
  reserve(options?: ChannelWaitOptions | number): Reservation {
    const timeout = parseTimeout(options);
    this.#check('reserve');
    this.#noOutstanding(this.#outstandingReserve, 'reserve');
    this.#attachProducer();
    return this.#reservation(this.#claimTail() ?? this.#waitRoom(timeout, deadlineOf(timeout)));
  }

  // ------------------------------------------------------------ receiving

  /** A message if one is waiting now; `undefined` if none; `null` at the end of the stream. */
  tryReceive(): Buffer | null | undefined {
    this.#prepareReceive('tryReceive');
    const got = this.#take(true);
    this.#wakeProducers();
    if (got === undefined && this.#atEnd()) return this.#end();
    return got;
  }

  /** The next message, waiting up to `timeout` ms (`ERR_MMAP_CHANNEL_TIMEOUT`); `null` at the end. */
  receive(options?: ChannelWaitOptions | number): Buffer | null {
    const timeout = parseTimeout(options);
    this.#prepareReceive('receive');
    const got = this.#take(true) ?? (this.#waitMessage(timeout, deadlineOf(timeout), true) as Buffer | null);
    this.#wakeProducers();
    return got === null ? this.#end() : got;
  }

  /** Like {@link Channel.receive} without blocking the event loop. */
  async receiveAsync(options?: ChannelWaitOptions | number): Promise<Buffer | null> {
    const timeout = parseTimeout(options);
    this.#prepareReceive('receiveAsync');
    const got = this.#take(true) ?? (await this.#waitMessageAsync(timeout, deadlineOf(timeout), signalOf(options), 'receiveAsync'));
    this.#wakeProducers();
    const result = got === null ? this.#end() : got;
    if (yieldDue(got === null ? 0 : 1)) await yieldToLoop(); // taken: it settles after the event loop's turn
    return result;
  }

  /**
   * The messages waiting now, up to `max` (default 1024), in order, each its own Buffer; when none is
   * waiting, waits like `receive` for the first. `null` at the end of the stream. Cheaper per message
   * than `receive`: the checks, and the wake-up of sleeping producers, happen once per call. Every
   * message returned is taken from the channel for this consumer.
   */
  receiveMany(max?: number, options?: ChannelWaitOptions | number): Buffer[] | null {
    const run = this.#beginMany(max, options, 'receiveMany');
    if (run.out.length > 0) return this.#endMany(run.out, run.out[0]!, run.limit);
    return this.#endMany(run.out, this.#waitMessage(run.timeout, deadlineOf(run.timeout), true) as Buffer | null, run.limit);
  }

  /** Like {@link Channel.receiveMany} without blocking the event loop. */
  async receiveManyAsync(max?: number, options?: ChannelWaitOptions | number): Promise<Buffer[] | null> {
    const run = this.#beginMany(max, options, 'receiveManyAsync');
    const first = run.out.length > 0 ? run.out[0]! : await this.#waitMessageAsync(run.timeout, deadlineOf(run.timeout), signalOf(options), 'receiveManyAsync');
    const out = this.#endMany(run.out, first, run.limit);
    if (yieldDue(out === null ? 0 : out.length)) await yieldToLoop();
    return out;
  }

  /** The messages waiting now, up to `max` (default 1024), in order: `[]` if none, `null` at the end. */
  tryReceiveMany(max?: number): Buffer[] | null {
    const { out } = this.#beginMany(max, undefined, 'tryReceiveMany');
    this.#wakeProducers(out.length || 1);
    if (out.length === 0 && this.#atEnd()) return this.#end();
    return out;
  }

  /**
   * Zero copy: the next message as a view into the slot, waiting like `receive`; `null` at the end.
   * Call `release()` when done: producers cannot reuse the slot before.
   */
  receiveInPlace(options?: ChannelWaitOptions | number): InPlaceMessage | null {
    const timeout = parseTimeout(options);
    this.#prepareReceive('receiveInPlace');
    const got = this.#take(false) ?? (this.#waitMessage(timeout, deadlineOf(timeout), false) as InPlaceMessage | null);
    if (got === null) {
      this.#wakeProducers(); // torn slots skipped on the way
      return this.#end();
    }
    return got;
  }

  /**
   * A Node `Readable` of the messages in object mode: one chunk (a Buffer) per message, whatever
   * reads it, so `highWaterMark` counts messages. Ends at the end of the stream. Backpressure: it
   * only receives when the stream wants more. Destroying it does not close the channel, and cancels
   * its pending receive without taking a message; the messages already in the stream's buffer (at
   * most `highWaterMark`) are gone with it.
   */
  readable(options?: { highWaterMark?: number }): Readable {
    // highWaterMark counts messages (object mode); Node validates its value.
    const hwm = validateOptions(options, 'options', ['highWaterMark'] as const).highWaterMark as number | undefined;
    this.#prepareReceive('readable');
    let reading = false;
    const cancel = new AbortController();
    // Object mode keeps message boundaries: each message stays one chunk (a Buffer), whatever reads it.
    const stream: Readable = new Readable({
      objectMode: true,
      ...(hwm === undefined ? {} : { highWaterMark: hwm }),
      read: () => {
        if (reading) return;
        reading = true;
        const pump = async (): Promise<void> => {
          try {
            for (;;) {
              const msg = await this.receiveAsync({ signal: cancel.signal });
              if (msg === null) {
                stream.push(null);
                return;
              }
              // push() returning false means the consumer is full: wait for the next read().
              if (!stream.push(msg)) return;
            }
          } catch (err) {
            if (!cancel.signal.aborted) stream.destroy(err as Error);
          } finally {
            reading = false;
          }
        };
        void pump();
      },
      destroy: (err, callback) => {
        cancel.abort();
        callback(err);
      },
    });
    return stream;
  }

  /**
   * A Node `Writable`: each chunk written becomes one message (a chunk larger than maxMessageSize is
   * an error). Backpressure: a write completes once the message is in the queue, waiting while the
   * queue is full. Ending the stream closes this producer handle (so consumers see the end once every
   * producer has closed) unless `{ close: false }`.
   */
  writable(options?: { close?: boolean; highWaterMark?: number }): Writable {
    const o = validateOptions(options, 'options', ['close', 'highWaterMark'] as const);
    const closeAtEnd = o.close === undefined ? true : validateBoolean(o.close, 'options.close');
    const hwm = o.highWaterMark as number | undefined; // Node validates its value
    this.#check('writable');
    const stream = new Writable({
      ...(hwm === undefined ? {} : { highWaterMark: hwm }),
      write: (chunk: Buffer, _encoding, callback) => {
        this.sendAsync(chunk).then(() => callback(), callback);
      },
      final: (callback) => {
        if (closeAtEnd) this.close();
        callback();
      },
    });
    // A producer from now on (once Node accepted the options), even if nothing is ever written:
    // consumers then wait for its end.
    this.#attachProducer();
    return stream;
  }

  /** `for await (const msg of channel)`: receives until the end of the stream. */
  async *[Symbol.asyncIterator](): AsyncIterator<Buffer> {
    for (;;) {
      const msg = await this.receiveAsync();
      if (msg === null) return;
      yield msg;
    }
  }

  /**
   * Detach this handle: as a producer, it no longer counts for the end of the stream (once every
   * producer has closed, consumers see the end); as a consumer, it frees its table entry. Unmaps the
   * channel's memory if this handle mapped it. Idempotent.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (!this.#mapping.closed) {
      const g = this.#g;
      this.#outstandingReserve?.();
      this.#outstandingTake?.();
      if (this.#producer >= 0) {
        const e = (g.producersOffset + this.#producer * CHANNEL.ENTRY_SIZE) >>> 2;
        // seq_cst: a consumer that sees CLOSED also sees every message this producer published
        Atomics.store(this.#i32, e + (CHANNEL.ENTRY_STATE >>> 2), CLOSED);
        // Wake sleeping consumers so they can notice the end.
        Atomics.add(this.#i32, CHANNEL.NOT_EMPTY >>> 2, 1);
        notifyWord(this.#notEmpty, INT32_MAX);
      }
      if (this.#consumer >= 0) {
        const e = (g.consumersOffset + this.#consumer * CHANNEL.ENTRY_SIZE) >>> 2;
        Atomics.store(this.#i32, e + (CHANNEL.ENTRY_PID >>> 2), 0);
      }
      // The creator's handle no longer holds the channel (unless another create() has claimed it since).
      if (this.#creator) Atomics.compareExchange(this.#i32, CHANNEL.CREATOR >>> 2, PID, 0);
    }
    if (this.#owned instanceof SharedMemory) this.#owned.close();
    else this.#owned?.unmap();
  }

  /** Same as {@link Channel.close}. */
  [Symbol.dispose](): void {
    this.close();
  }

  // ------------------------------------------------------------ the queue

  #check(what: string): void {
    if (this.#closed) throw mmapkitError('ERR_MMAP_CLOSED', `Cannot use ${what} of a closed Channel`);
    if (this.#mapping.closed) throw mmapkitError('ERR_MMAP_CLOSED', `Cannot use ${what}: the channel's memory has been unmapped`);
  }

  #prepareSend(data: unknown): Uint8Array {
    const bytes = toBytes(data);
    if (bytes.byteLength > this.#g.maxMessageSize) {
      throw outOfRange('data.byteLength', `<= ${this.#g.maxMessageSize} (the channel's maxMessageSize)`, bytes.byteLength);
    }
    this.#check('send');
    this.#noOutstanding(this.#outstandingReserve, 'reserve');
    this.#attachProducer();
    return bytes;
  }

  #prepareSendMany(messages: unknown): Uint8Array[] {
    // Every element is read (a getter may close the channel or unmap it) before the state is checked.
    if (!Array.isArray(messages)) throw invalidArgType('messages', 'an Array', messages);
    const all: Uint8Array[] = new Array<Uint8Array>(messages.length);
    for (let i = 0; i < messages.length; i++) {
      const bytes = toBytes(messages[i], `messages[${i}]`);
      if (bytes.byteLength > this.#g.maxMessageSize) {
        throw outOfRange(`messages[${i}].byteLength`, `<= ${this.#g.maxMessageSize} (the channel's maxMessageSize)`, bytes.byteLength);
      }
      all[i] = bytes;
    }
    this.#check('sendMany');
    this.#noOutstanding(this.#outstandingReserve, 'reserve');
    this.#attachProducer();
    return all;
  }

  #prepareReceive(what: string): void {
    this.#check(what);
    this.#noOutstanding(this.#outstandingTake, 'receiveInPlace');
    this.#attachConsumer();
  }

  #slot(pos: number): number {
    return this.#g.slotsOffset + (pos & this.#mask) * this.#g.slotSize;
  }

  /** Claim the next tail position if its slot is free; undefined when the queue is full. */
  #claimTail(): number | undefined {
    const i32 = this.#i32;
    const entry = (this.#g.producersOffset + this.#producer * CHANNEL.ENTRY_SIZE) >>> 2;
    // Start from where this handle's last claim left the tail: right whenever nobody else sent
    // meanwhile, which saves a load; the compare-and-swap corrects it otherwise.
    let pos = this.#tailGuess;
    for (let spins = 0; ; spins++) {
      const slot = this.#slot(pos);
      const seq = Atomics.load(i32, slot >>> 2);
      const dif = (seq - pos) | 0;
      if (dif === 0) {
        // Say which position we are claiming before claiming it: if we die before publishing, a
        // consumer finds us in the table, sees we are dead, and skips the slot. (A plain store of the
        // position, then the seq_cst BUSY store or compare-and-swap, which orders it.)
        i32[entry + (CHANNEL.ENTRY_POSITION >>> 2)] = pos;
        if (!this.#producerBusy) {
          Atomics.store(i32, entry + (CHANNEL.ENTRY_BUSY >>> 2), 1);
          this.#producerBusy = true;
        }
        const won = Atomics.compareExchange(i32, CHANNEL.TAIL >>> 2, pos, (pos + 1) | 0);
        if (won === pos) {
          this.#tailGuess = (pos + 1) | 0;
          return pos;
        }
        // Lost: our entry must not claim a position someone else owns.
        Atomics.store(i32, entry + (CHANNEL.ENTRY_BUSY >>> 2), 0);
        this.#producerBusy = false;
        pos = won;
      } else if (dif < 0) {
        // The slot still holds the message from one lap ago: full, unless its consumer died.
        const old = (pos - this.#g.capacity) | 0;
        if (dif === -this.#g.capacity + 1 && ((Atomics.load(i32, CHANNEL.HEAD >>> 2) - old) | 0) > 0 &&
            this.#stalled(old, true) && this.#repairUnreleased(old)) continue;
        this.#checkDistance();
        return undefined;
      } else {
        // A slot one lap behind being repaired looks like this too: treat it as full for now.
        if (seq === (((pos - this.#g.capacity) ^ 0x80000000) | 0)) return undefined;
        pos = Atomics.load(i32, CHANNEL.TAIL >>> 2);
      }
      this.#tailGuess = pos;
      if (spins > 1_000_000) throw corrupt('the tail position never matches a slot');
    }
  }

  #publish(pos: number, bytes: Uint8Array): void {
    const slot = this.#slot(pos);
    this.#u8.set(bytes, slot + CHANNEL.SLOT_HEADER);
    this.#commit(pos, slot, bytes.byteLength);
  }

  #commit(pos: number, slot: number, length: number): void {
    const i32 = this.#i32;
    i32[(slot + CHANNEL.SLOT_LENGTH) >>> 2] = length;
    i32[(slot + CHANNEL.SLOT_PID) >>> 2] = PID;
    // seq_cst store: publishes the length and the bytes to the consumer that sees the new sequence.
    // (The entry keeps this position: once the slot is published, nobody takes it for unfinished.)
    Atomics.store(i32, slot >>> 2, (pos + 1) | 0);
  }

  /**
   * After publishing: wake one sleeping consumer, if any sleeps. (The sleeper count is read after the
   * sequence store; a consumer counts itself, then looks at the slot again before sleeping: one of
   * the two sees the other.)
   */
  #wakeConsumers(messages = 1): void {
    if (Atomics.load(this.#i32, CHANNEL.CONSUMER_SLEEPERS >>> 2) > 0) {
      Atomics.add(this.#i32, CHANNEL.NOT_EMPTY >>> 2, 1);
      notifyWord(this.#notEmpty, messages); // one consumer per message at most
    }
  }

  /** After releasing slots: wake sleeping producers, one per slot freed at most (as {@link #wakeConsumers}). */
  #wakeProducers(slots = 1): void {
    if (Atomics.load(this.#i32, CHANNEL.PRODUCER_SLEEPERS >>> 2) > 0) {
      Atomics.add(this.#i32, CHANNEL.NOT_FULL >>> 2, 1);
      notifyWord(this.#notFull, slots);
    }
  }

  #reservation(pos: number): Reservation {
    const slot = this.#slot(pos);
    const buffer = this.#slotView(pos);
    let done = false;
    const finish = (length: number): void => {
      done = true;
      this.#outstandingReserve = undefined;
      this.#commit(pos, slot, length);
      this.#wakeConsumers();
    };
    // close() with the reservation open publishes it as torn, so that consumers skip it.
    this.#outstandingReserve = () => finish(TORN);
    return {
      buffer,
      commit: (length?: number) => {
        if (this.#closed) throw mmapkitError('ERR_MMAP_CLOSED', 'Cannot commit: the channel handle was closed (the reservation was published as torn)');
        if (done) throw invalidState('this reservation was already committed');
        if (this.#mapping.closed) throw mmapkitError('ERR_MMAP_CLOSED', "Cannot commit: the channel's memory has been unmapped");
        finish(length === undefined ? this.#g.maxMessageSize : validateInt32(length, 'length', 0, this.#g.maxMessageSize));
      },
    };
  }

  /**
   * Report garbage in the positions: head and tail further apart than the capacity, or the head past
   * the tail. Reading the head first, then the tail, the head can never be past the tail; the tail can
   * run ahead of a stale head, so only a distance that stays wrong while nothing moves is corruption.
   */
  #checkDistance(): void {
    const i32 = this.#i32;
    const head = Atomics.load(i32, CHANNEL.HEAD >>> 2);
    const tail = Atomics.load(i32, CHANNEL.TAIL >>> 2);
    const queued = (tail - head) | 0;
    if (queued >= 0 && queued <= this.#g.capacity) return;
    if (Atomics.load(i32, CHANNEL.HEAD >>> 2) !== head || Atomics.load(i32, CHANNEL.TAIL >>> 2) !== tail) return; // moving: a race
    throw corrupt(`head ${head} and tail ${tail} are ${queued} positions apart (capacity ${this.#g.capacity})`);
  }

  /**
   * The data area of a slot, as one Buffer made once per slot and reused (a new view per message
   * costs microseconds and memory). A message read in place is valid until released; after that the
   * same bytes may hold a later message.
   */
  #slotView(pos: number): Buffer {
    const i = pos & this.#mask;
    let view = this.#slotViews[i];
    if (view === undefined) {
      view = this.#mapping.view(this.#slot(pos) + CHANNEL.SLOT_HEADER, this.#g.maxMessageSize);
      this.#slotViews[i] = view;
    }
    return view;
  }

  #noOutstanding(pending: (() => void) | undefined, what: string): void {
    if (pending !== undefined) {
      throw invalidState(`this handle has a ${what === 'reserve' ? 'reservation' : 'message in place'} outstanding: ${what === 'reserve' ? 'commit' : 'release'} it first (one at a time per handle)`);
    }
  }

  /**
   * Take the message at the head if it is published. copy: return a Buffer copy and free the slot;
   * otherwise return it in place with a release function. undefined when nothing is ready.
   */
  #take(copy: true): Buffer | undefined;
  #take(copy: false): InPlaceMessage | undefined;
  #take(copy: boolean): Buffer | InPlaceMessage | undefined {
    const i32 = this.#i32;
    const g = this.#g;
    const entry = (g.consumersOffset + this.#consumer * CHANNEL.ENTRY_SIZE) >>> 2;
    let pos = this.#headGuess;
    for (let spins = 0; ; spins++) {
      const slot = this.#slot(pos);
      const seq = Atomics.load(i32, slot >>> 2);
      const dif = (seq - ((pos + 1) | 0)) | 0;
      if (dif === 0) {
        // As in #claimTail: the position first, so a dead consumer's slot can be recovered.
        i32[entry + (CHANNEL.ENTRY_POSITION >>> 2)] = pos;
        if (!this.#consumerBusy) {
          Atomics.store(i32, entry + (CHANNEL.ENTRY_BUSY >>> 2), 1);
          this.#consumerBusy = true;
        }
        const won = Atomics.compareExchange(i32, CHANNEL.HEAD >>> 2, pos, (pos + 1) | 0);
        if (won !== pos) {
          Atomics.store(i32, entry + (CHANNEL.ENTRY_BUSY >>> 2), 0);
          this.#consumerBusy = false;
          pos = won;
          this.#headGuess = pos;
          continue;
        }
        this.#headGuess = (pos + 1) | 0;
        const length = i32[(slot + CHANNEL.SLOT_LENGTH) >>> 2]!;
        if (length === TORN) {
          // A producer died in the middle of this message: it was never complete. Skip it.
          this.#release(pos, slot);
          pos = this.#headGuess;
          continue;
        }
        if (!(length >= 0 && length <= g.maxMessageSize)) {
          this.#release(pos, slot);
          throw corrupt(`message length ${length} at position ${pos} (max ${g.maxMessageSize})`);
        }
        const start = slot + CHANNEL.SLOT_HEADER;
        if (copy) {
          const out = this.#copyOut(start, length);
          this.#release(pos, slot);
          return out;
        }
        const data = this.#slotView(pos).subarray(0, length);
        let released = false;
        const release = (): void => {
          if (released || this.#mapping.closed) return;
          released = true;
          this.#outstandingTake = undefined;
          this.#release(pos, slot);
          this.#wakeProducers();
        };
        this.#outstandingTake = release;
        return { data, release };
      }
      if (dif < 0) {
        // Not published yet: empty, or a producer is writing it, or a producer died writing it.
        const head = Atomics.load(i32, CHANNEL.HEAD >>> 2);
        if (head !== pos) {
          // Our guess was behind: another consumer moved the head.
          pos = this.#headGuess = head;
          continue;
        }
        if (Atomics.load(i32, CHANNEL.TAIL >>> 2) === pos) return undefined; // empty
        this.#checkDistance();
        if (this.#stalled(pos, false) && this.#repairTorn(pos, slot)) continue;
        return undefined; // the caller waits for the producer to publish
      }
      if (seq === ((pos ^ 0x80000000) | 0)) return undefined; // being repaired by another consumer: wait
      pos = this.#headGuess = Atomics.load(i32, CHANNEL.HEAD >>> 2);
      if (spins > 1_000_000) throw corrupt('the head position never matches a slot');
    }
  }

  /** Start of the receiveMany methods: check the arguments and take what waits now. */
  #beginMany(max: number | undefined, options: ChannelWaitOptions | number | undefined, what: string): { out: Buffer[]; limit: number; timeout: number } {
    const limit = max === undefined ? 1024 : validateInt32(max, 'max', 1, INT32_MAX);
    const timeout = parseTimeout(options);
    this.#prepareReceive(what);
    const out: Buffer[] = [];
    this.#takeRun(out, limit);
    return { out, limit, timeout };
  }

  /**
   * End of the receiveMany methods, given the first message (`null`: the end of the stream): when it
   * was waited for, take what came with it; wake a producer for the slots freed.
   */
  #endMany(out: Buffer[], first: Buffer | null, limit: number): Buffer[] | null {
    if (first !== null && out.length === 0) {
      out.push(first);
      this.#takeRun(out, limit);
    }
    this.#wakeProducers(out.length || 1);
    return first === null ? this.#end() : out;
  }

  /** Take up to `limit` published messages into `out` (copies, slots freed); how many were taken. */
  #takeRun(out: Buffer[], limit: number): number {
    let n = 0;
    while (out.length < limit) {
      const got = this.#take(true);
      if (got === undefined) break;
      out.push(got);
      n++;
    }
    return n;
  }

  /**
   * A copy of `length` bytes of the channel at `start` (4-byte aligned). Small messages are copied a
   * word at a time into the Buffer pool, through an Int32Array made once per pool: three times
   * cheaper than a byte loop or `Buffer#copy` (which makes a new view per call) for 64 bytes.
   */
  #copyOut(start: number, length: number): Buffer {
    const out = Buffer.allocUnsafe(length);
    const u8 = this.#u8;
    if (length > 1024) {
      u8.copy(out, 0, start, start + length);
      return out;
    }
    const ab = out.buffer;
    let i = 0;
    if ((out.byteOffset & 3) === 0 && (ab === poolBuffer || (ab.byteLength & 3) === 0)) {
      if (ab !== poolBuffer) {
        poolBuffer = ab;
        poolWords = new Int32Array(ab);
      }
      const src = this.#i32;
      const s = start >>> 2;
      const d = out.byteOffset >>> 2;
      const words = length >>> 2;
      for (let w = 0; w < words; w++) poolWords[d + w] = src[s + w]!;
      i = words << 2;
    }
    for (; i < length; i++) out[i] = u8[start + i]!;
    return out;
  }

  /** Wait for room by this handle's strategy and claim it: the position claimed. */
  #waitRoom(timeout: number, deadline: bigint): number {
    for (;;) {
      // Read the futex word, then look again: a slot freed after this read changes the word.
      const seen = Atomics.load(this.#i32, CHANNEL.NOT_FULL >>> 2);
      const pos = this.#claimTail();
      if (pos !== undefined) return pos;
      if (!this.#sleep(this.#notFull, CHANNEL.PRODUCER_SLEEPERS, seen, deadline, () => this.#hasRoom())) {
        throw timedOut('waiting for room in the channel', timeout);
      }
    }
  }

  async #waitRoomAsync(timeout: number, deadline: bigint, signal: AbortSignal | undefined, what: string): Promise<number> {
    for (;;) {
      const seen = Atomics.load(this.#i32, CHANNEL.NOT_FULL >>> 2);
      const pos = this.#claimTail();
      if (pos !== undefined) return pos;
      if (!(await this.#sleepAsync(this.#notFull, CHANNEL.PRODUCER_SLEEPERS, seen, deadline, signal, () => this.#hasRoom()))) {
        throw timedOut('waiting for room in the channel', timeout);
      }
      this.#check(what); // closed while we slept: never claim for a closed producer
      signal?.throwIfAborted();
    }
  }

  /** Wait for a message by this handle's strategy and take it; null at the end of the stream. */
  #waitMessage(timeout: number, deadline: bigint, copy: boolean): Buffer | InPlaceMessage | null {
    for (;;) {
      // Read the futex word, then look again: a publish after this read changes the word.
      const seen = Atomics.load(this.#i32, CHANNEL.NOT_EMPTY >>> 2);
      const got = copy ? this.#take(true) : this.#take(false);
      if (got !== undefined) return got;
      if (this.#atEnd()) return null;
      if (!this.#sleep(this.#notEmpty, CHANNEL.CONSUMER_SLEEPERS, seen, deadline, () => this.#hasMessage())) {
        throw timedOut('waiting for a message', timeout);
      }
    }
  }

  async #waitMessageAsync(timeout: number, deadline: bigint, signal: AbortSignal | undefined, what: string): Promise<Buffer | null> {
    for (;;) {
      const seen = Atomics.load(this.#i32, CHANNEL.NOT_EMPTY >>> 2);
      const got = this.#take(true);
      if (got !== undefined) return got;
      if (this.#atEnd()) return null;
      if (!(await this.#sleepAsync(this.#notEmpty, CHANNEL.CONSUMER_SLEEPERS, seen, deadline, signal, () => this.#hasMessage()))) {
        throw timedOut('waiting for a message', timeout);
      }
      this.#check(what); // closed while we slept: its table entry is no longer ours
      // Aborted after the wake-up was queued: take nothing (the caller no longer wants a message).
      signal?.throwIfAborted();
    }
  }

  /** Give a consumed slot back to producers for the next lap. */
  #release(pos: number, slot: number): void {
    const i32 = this.#i32;
    // seq_cst store: the slot is free for the producer of position pos + capacity. (The entry keeps
    // this position: once the slot is released, nobody takes it for unreleased.)
    Atomics.store(i32, slot >>> 2, (pos + this.#g.capacity) | 0);
  }

  /**
   * Whether position pos has been stuck for longer than STALL_CHECK_NS (remembered across calls):
   * only then are the tables searched for a dead owner (that search makes a system call per entry).
   */
  #stalled(pos: number, full: boolean): boolean {
    const now = process.hrtime.bigint();
    if (full ? this.#fullPos !== pos || this.#fullSince < 0n : this.#stallPos !== pos || this.#stallSince < 0n) {
      if (full) [this.#fullPos, this.#fullSince] = [pos, now];
      else [this.#stallPos, this.#stallSince] = [pos, now];
      return false;
    }
    return now - (full ? this.#fullSince : this.#stallSince) > BigInt(STALL_CHECK_NS);
  }

  /**
   * The slot of position pos was claimed but never published. If no live producer is busy with it
   * and a dead one was, mark it torn and publish it so consumers skip it. True when repaired.
   */
  #repairTorn(pos: number, slot: number): boolean {
    if (!this.#ownerDead(this.#g.producersOffset, this.#g.maxProducers, pos)) return false;
    const i32 = this.#i32;
    // Claim the repair with a compare-and-swap to a value no party expects for this slot now
    // (pos + 2^31: the slot's state 2^31 positions ahead). It fails if the slot was published
    // meanwhile (a live producer had claimed it after all) or another consumer is repairing it, so a
    // good message is never marked torn and the length is written by one repairer only.
    const repairing = (pos ^ 0x80000000) | 0;
    if (Atomics.compareExchange(i32, slot >>> 2, pos, repairing) !== pos) return true; // look again
    i32[(slot + CHANNEL.SLOT_LENGTH) >>> 2] = TORN;
    // seq_cst store: publishes the TORN length with the slot; consumers then skip it
    Atomics.store(i32, slot >>> 2, (pos + 1) | 0);
    return true;
  }

  /**
   * The message of position pos (one lap behind a producer) was claimed by a consumer that never
   * released it. If that consumer is dead, free the slot (the message is lost with its consumer).
   */
  #repairUnreleased(pos: number): boolean {
    if (!this.#ownerDead(this.#g.consumersOffset, this.#g.maxConsumers, pos)) return false;
    const slot = this.#slot(pos);
    Atomics.compareExchange(this.#i32, slot >>> 2, (pos + 1) | 0, (pos + this.#g.capacity) | 0);
    return true;
  }

  /** Whether position pos is held busy by a dead party of this table and by no live one. */
  #ownerDead(tableOffset: number, entries: number, pos: number): boolean {
    const i32 = this.#i32;
    let dead = false;
    for (let i = 0; i < entries; i++) {
      const e = (tableOffset + i * CHANNEL.ENTRY_SIZE) >>> 2;
      if (Atomics.load(i32, e + (CHANNEL.ENTRY_BUSY >>> 2)) !== 1) continue;
      if (Atomics.load(i32, e + (CHANNEL.ENTRY_POSITION >>> 2)) !== pos) continue;
      if (pidAlive(Atomics.load(i32, e + (CHANNEL.ENTRY_PID >>> 2)))) return false;
      dead = true;
    }
    return dead;
  }

  #hasRoom(): boolean {
    const i32 = this.#i32;
    const pos = Atomics.load(i32, CHANNEL.TAIL >>> 2);
    return ((Atomics.load(i32, this.#slot(pos) >>> 2) - pos) | 0) >= 0;
  }

  /** Whether the head message is published (cheap: used in spin loops). */
  #hasMessage(): boolean {
    const i32 = this.#i32;
    const pos = Atomics.load(i32, CHANNEL.HEAD >>> 2);
    return Atomics.load(i32, this.#slot(pos) >>> 2) === ((pos + 1) | 0);
  }

  /** Every producer that ever attached has closed or died, and nothing is left to read. */
  #atEnd(): boolean {
    const i32 = this.#i32;
    if ((Atomics.load(i32, CHANNEL.FLAGS >>> 2) & FLAG_HAD_PRODUCER) === 0) return false;
    // Fewer producers have attached than create() was told to expect: the others are still to come.
    const expected = Atomics.load(i32, CHANNEL.EXPECTED_PRODUCERS >>> 2) >>> 0;
    if (expected !== 0 && Atomics.load(i32, CHANNEL.PRODUCER_COUNT >>> 2) >>> 0 < expected) return false;
    // Looking a producer up in /proc costs ~24 us: while some producer is attached and was alive a
    // moment ago, assume it still is (a closing producer wakes us; a dead one is found within 50 ms).
    const now = performance.now();
    let attached = false;
    for (let i = 0; i < this.#g.maxProducers; i++) {
      const e = (this.#g.producersOffset + i * CHANNEL.ENTRY_SIZE) >>> 2;
      const pid = Atomics.load(i32, e + (CHANNEL.ENTRY_PID >>> 2));
      if (pid === 0 || Atomics.load(i32, e + (CHANNEL.ENTRY_STATE >>> 2)) !== ATTACHED) continue;
      attached = true;
      if (pid === PID || now - this.#liveSeenAt < LIVENESS_CACHE_MS) return false;
      if (pidAlive(pid)) {
        this.#liveSeenAt = now;
        return false;
      }
    }
    if (attached) this.#liveSeenAt = -Infinity;
    if (Atomics.load(i32, CHANNEL.TAIL >>> 2) !== Atomics.load(i32, CHANNEL.HEAD >>> 2)) return false;
    // The end, with producers that went away without closing: say so, for every consumer (the entries
    // may be reused by later producers; the flag stays).
    if (attached) Atomics.or(i32, CHANNEL.FLAGS >>> 2, FLAG_PRODUCER_DIED);
    return true;
  }

  #end(): null {
    this.#ended = true;
    // #atEnd sets the flag before it reports an end that a dead producer is part of.
    this.#endReason = (Atomics.load(this.#i32, CHANNEL.FLAGS >>> 2) & FLAG_PRODUCER_DIED) !== 0 ? 'producer-died' : 'closed';
    return null;
  }

  #attachProducer(): void {
    if (this.#producer >= 0) return;
    this.#producer = this.#attach(this.#g.producersOffset, this.#g.maxProducers, 'producers');
    // seq_cst, after the entry's STATE: a consumer that counts this attach also sees the entry attached.
    Atomics.add(this.#i32, CHANNEL.PRODUCER_COUNT >>> 2, 1);
    Atomics.or(this.#i32, CHANNEL.FLAGS >>> 2, FLAG_HAD_PRODUCER);
  }

  #attachConsumer(): void {
    if (this.#consumer >= 0) return;
    this.#consumer = this.#attach(this.#g.consumersOffset, this.#g.maxConsumers, 'consumers');
  }

  /** Take a free table entry (or one of a dead process). */
  #attach(tableOffset: number, entries: number, what: string): number {
    const i32 = this.#i32;
    for (let pass = 0; pass < 2; pass++) {
      for (let i = 0; i < entries; i++) {
        const e = (tableOffset + i * CHANNEL.ENTRY_SIZE) >>> 2;
        const pid = Atomics.load(i32, e + (CHANNEL.ENTRY_PID >>> 2));
        const busy = Atomics.load(i32, e + (CHANNEL.ENTRY_BUSY >>> 2)) === 1;
        const stale = !busy || this.#resolved(tableOffset, Atomics.load(i32, e + (CHANNEL.ENTRY_POSITION >>> 2)));
        const reusable = pid === 0 || (pass === 1 && stale && (Atomics.load(i32, e + (CHANNEL.ENTRY_STATE >>> 2)) === CLOSED || !pidAlive(pid)));
        if (!reusable) continue;
        // A producer entry still attached whose process is dead: that producer never closed. Say so
        // before the entry is reused and the trace is gone.
        if (pid !== 0 && tableOffset === this.#g.producersOffset && Atomics.load(i32, e + (CHANNEL.ENTRY_STATE >>> 2)) === ATTACHED) {
          Atomics.or(i32, CHANNEL.FLAGS >>> 2, FLAG_PRODUCER_DIED);
        }
        if (Atomics.compareExchange(i32, e + (CHANNEL.ENTRY_PID >>> 2), pid, process.pid) !== pid) continue;
        Atomics.store(i32, e + (CHANNEL.ENTRY_BUSY >>> 2), 0);
        Atomics.store(i32, e + (CHANNEL.ENTRY_STATE >>> 2), ATTACHED);
        return i;
      }
    }
    throw mmapkitError('ERR_MMAP_CHANNEL_FULL', `The channel has no free entry for more ${what} (max ${entries}); close handles or create it with a larger max${what === 'producers' ? 'Producers' : 'Consumers'}`);
  }

  /**
   * Whether the position a (dead) party was busy with no longer needs it: a producer's position is
   * resolved once its slot is published (or repaired); a consumer's once its slot was released.
   */
  #resolved(tableOffset: number, pos: number): boolean {
    const seq = Atomics.load(this.#i32, this.#slot(pos) >>> 2);
    const want = tableOffset === this.#g.producersOffset ? pos : (pos + 1) | 0; // the unfinished states
    return seq !== want;
  }

  // ------------------------------------------------------------ waiting

  /**
   * Wait for `ready()` by this handle's strategy, at most until the deadline, and at most
   * MAX_SLEEP_NS at a time (so the caller looks again for ends and dead producers). False only when
   * the deadline has passed.
   */
  #sleep(w: Word, sleepersOffset: number, seen: number, deadline: bigint, ready: () => boolean): boolean {
    const i32 = this.#i32;
    if (this.#strategy === 'spin' || this.#strategy === 'hybrid') {
      const now = process.hrtime.bigint();
      let until = now + BigInt(this.#strategy === 'spin' ? MAX_SLEEP_NS : this.#spinNs);
      if (deadline !== -1n && deadline < until) until = deadline;
      do {
        // Several looks per clock read: reading the clock costs more than a look.
        for (let i = 0; i < 16; i++) if (ready()) return true;
      } while (process.hrtime.bigint() < until);
      if (this.#strategy === 'spin') return nsLeft(deadline) !== 0;
    }
    const ns = nsLeft(deadline);
    if (ns === 0) return false;
    Atomics.add(i32, sleepersOffset >>> 2, 1);
    try {
      // Re-check after announcing ourselves: a publish that came before our count was seen bumped nothing.
      if (ready()) return true;
      waitWord(w, seen, ns < 0 || ns > MAX_SLEEP_NS ? MAX_SLEEP_NS : ns);
    } finally {
      Atomics.sub(i32, sleepersOffset >>> 2, 1);
    }
    return nsLeft(deadline) !== 0;
  }

  async #sleepAsync(w: Word, sleepersOffset: number, seen: number, deadline: bigint, signal: AbortSignal | undefined, ready: () => boolean): Promise<boolean> {
    const i32 = this.#i32;
    const spinNs = this.#strategy === 'spin' || this.#strategy === 'hybrid' ? this.#spinNs : 0;
    const ns = nsLeft(deadline);
    if (ns === 0) return false;
    Atomics.add(i32, sleepersOffset >>> 2, 1);
    try {
      if (ready()) return true;
      const opts: AsyncWaitSettings = { ref: true, spinNs, threadSpinNs: 0 };
      if (signal !== undefined) opts.signal = signal;
      await waitWordAsync(w, seen, ns < 0 || ns > MAX_SLEEP_NS ? MAX_SLEEP_NS : ns, opts);
    } finally {
      if (!this.#mapping.closed) Atomics.sub(i32, sleepersOffset >>> 2, 1);
    }
    return nsLeft(deadline) !== 0;
  }
}

/** The address of a channel's memory, which must be 64-byte aligned (its control words have a cache line each). */
function alignedBase(view: Buffer): bigint {
  const base = viewLocation(view)!.addr;
  if (base % 64n !== 0n) {
    throw invalidArgValue('target', 'a mapping at an unaligned address', 'must start the channel on a 64-byte boundary in memory (map the file at offset 0)');
  }
  return base;
}

function parseGeometry(o: Partial<Record<string, unknown>> | undefined): Geometry {
  const opts = o ?? {};
  const capacity = opts['capacity'] === undefined ? 1024 : validateInt32(opts['capacity'], 'options.capacity', 2, 1 << 24);
  const maxMessageSize = opts['maxMessageSize'] === undefined ? 4096 : validateInt32(opts['maxMessageSize'], 'options.maxMessageSize', 1, (1 << 30) - 64);
  const maxProducers = opts['maxProducers'] === undefined ? 64 : validateInt32(opts['maxProducers'], 'options.maxProducers', 1, 4096);
  const maxConsumers = opts['maxConsumers'] === undefined ? 64 : validateInt32(opts['maxConsumers'], 'options.maxConsumers', 1, 4096);
  const g = geometry(capacity, maxMessageSize, maxProducers, maxConsumers);
  if (g.totalSize > 2 ** 32 - 1) throw invalidArgValue('options', o, `describe a channel of ${g.totalSize} bytes; at most 4 GiB`);
  return g;
}

function parseStrategy(o: Partial<Record<string, unknown>>): { wait: WaitStrategy; spinNs: number } {
  const wait = o['wait'] === undefined ? 'block' : validateOneOf(o['wait'], 'options.wait', STRATEGIES);
  let spin = wait === 'spin' ? 200 : 50;
  if (o['spin'] !== undefined) {
    if (typeof o['spin'] !== 'number') throw invalidArgType('options.spin', 'of type number', o['spin']);
    if (!(o['spin'] >= 0 && o['spin'] <= 1e6)) throw invalidArgValue('options.spin', o['spin'], 'must be microseconds from 0 to 1000000');
    spin = o['spin'];
  }
  return { wait, spinNs: Math.round(spin * 1000) };
}

/** `{ name }`: a plain object naming shared memory (a SharedMemory has a `name` too, and is not one). */
function isNameTarget(target: unknown): target is { name: string } {
  if (target instanceof SharedMemory || target instanceof Mapping) return false;
  return target !== null && typeof target === 'object' && typeof (target as { name?: unknown }).name === 'string';
}

function resolveTarget(
  target: unknown,
  size: number | undefined,
  creating: boolean,
  ownership: OwnershipOptions = {},
): { mapping: Mapping; owned: SharedMemory | Mapping | undefined } {
  if (target instanceof SharedMemory) return { mapping: checkShared(target.mapping, size), owned: undefined };
  if (target instanceof Mapping) return { mapping: checkShared(target, size), owned: undefined };
  if (typeof target === 'string') {
    const mapping = creating ? map(target, { access: 'write', size: size!, mode: 0o600 }) : map(target, { access: 'write' });
    return { mapping, owned: mapping };
  }
  if (isNameTarget(target)) {
    // Only `name`: an option put here by mistake (`{ name, owner }`) must not be silently ignored.
    for (const key of Object.keys(target)) {
      if (key !== 'name') {
        const call = creating ? 'create' : 'open';
        const hint = ((creating ? CREATE_OPTIONS : OPEN_OPTIONS) as readonly string[]).includes(key) ? `; options go in the second argument: Channel.${call}({ name }, { ${key} })` : '';
        throw invalidArgValue(`target.${key}`, (target as Record<string, unknown>)[key], `is not a property of a { name } target${hint}`);
      }
    }
    const { name } = target;
    const shm = creating ? SharedMemory.create(name, size!) : SharedMemory.open(name, ownership);
    return { mapping: shm.mapping, owned: shm };
  }
  throw invalidArgType('target', 'a file path, { name }, a SharedMemory or a Mapping', target);
}

function checkShared(m: Mapping, size: number | undefined): Mapping {
  if (!m.shared) throw mmapkitError('ERR_MMAP_NOT_SHARED', "A channel needs memory shared between processes (a 'write' mapping or SharedMemory)");
  if (size !== undefined && m.length < size) throw invalidArgValue('target', `${m.length} bytes`, `is too small for this channel (${size} bytes; see Channel.byteLength())`);
  return m;
}

/** Read and check the header: every number must describe a channel that fits the mapping. */
function readGeometry(m: Mapping): Geometry {
  if (m.length < CHANNEL.CONTROL_END) throw mmapkitError('ERR_MMAP_BAD_HEADER', `Too small for a channel: ${m.length} bytes`);
  const h = m.view(0, CHANNEL.CONTROL_END);
  const magic = h.readUInt32LE(CHANNEL.MAGIC);
  if (magic !== MAGIC) throw mmapkitError('ERR_MMAP_BAD_HEADER', `No channel here: magic is 0x${magic.toString(16)}, expected 0x${MAGIC.toString(16)} (not created yet?)`);
  const version = h.readUInt16LE(CHANNEL.VERSION);
  if (!READ_VERSIONS.includes(version)) throw mmapkitError('ERR_MMAP_BAD_HEADER', `Channel layout version ${version}; this library reads versions ${READ_VERSIONS.join(' and ')}`);
  const headerSize = h.readUInt16LE(CHANNEL.HEADER_SIZE);
  if (headerSize !== 64) throw mmapkitError('ERR_MMAP_BAD_HEADER', `Corrupt channel header: header size ${headerSize}, expected 64`);
  const capacity = h.readUInt32LE(CHANNEL.CAPACITY);
  const slotSize = h.readUInt32LE(CHANNEL.SLOT_SIZE);
  const maxMessageSize = h.readUInt32LE(CHANNEL.MAX_MESSAGE);
  const maxProducers = h.readUInt32LE(CHANNEL.MAX_PRODUCERS);
  const maxConsumers = h.readUInt32LE(CHANNEL.MAX_CONSUMERS);
  const totalSize = h.readUInt32LE(CHANNEL.TOTAL_SIZE_LO) + h.readUInt32LE(CHANNEL.TOTAL_SIZE_HI) * 2 ** 32;
  const expected = geometry(capacity, maxMessageSize, maxProducers, maxConsumers);
  const bad =
    capacity < 2 || capacity > 1 << 24 || (capacity & (capacity - 1)) !== 0 ? `capacity ${capacity} is not a power of two from 2 to 2^24`
      : maxMessageSize < 1 || slotSize !== expected.slotSize ? `slot size ${slotSize} does not fit max message size ${maxMessageSize}`
      : maxProducers < 1 || maxProducers > 4096 || maxConsumers < 1 || maxConsumers > 4096 ? `table sizes ${maxProducers}/${maxConsumers}`
      : h.readUInt32LE(CHANNEL.PRODUCERS_OFFSET) !== expected.producersOffset || h.readUInt32LE(CHANNEL.CONSUMERS_OFFSET) !== expected.consumersOffset ||
        h.readUInt32LE(CHANNEL.SLOTS_OFFSET) !== expected.slotsOffset ? 'table or slot offsets do not match the sizes'
      : totalSize !== expected.totalSize ? `total size ${totalSize}, expected ${expected.totalSize}`
      : totalSize > m.length ? `total size ${totalSize} is larger than the memory (${m.length} bytes)`
      : '';
  if (bad !== '') throw mmapkitError('ERR_MMAP_BAD_HEADER', `Corrupt channel header: ${bad}`);
  return expected;
}

function parseExpectedProducers(o: Partial<Record<string, unknown>>): number {
  return o['producers'] === undefined ? 0 : validateInt32(o['producers'], 'options.producers', 1, INT32_MAX);
}

/**
 * The parties that hold the channel in `m` now, if `m` holds a channel (a valid header): the process
 * of the handle its create() returned, attached producers and consumers, each only if the process is
 * alive. Anything else in the memory (zeros, another format, a corrupt header) holds nothing.
 */
function liveParties(m: Mapping): string[] {
  if (m.length < CHANNEL.CONTROL_END) return [];
  const h = m.view(0, CHANNEL.CONTROL_END);
  if (h.readUInt32LE(CHANNEL.MAGIC) !== MAGIC) return [];
  let g: Geometry;
  try {
    g = readGeometry(m);
  } catch {
    return []; // not a channel we can read: nothing in it follows the protocol
  }
  const view = m.view(0, g.slotsOffset); // header, control words and tables (readGeometry checked they fit)
  const words = new Int32Array(view.buffer, view.byteOffset, g.slotsOffset >>> 2);
  const live: string[] = [];
  const creator = Atomics.load(words, CHANNEL.CREATOR >>> 2);
  if (h.readUInt16LE(CHANNEL.VERSION) >= 2 && creator !== 0 && pidAlive(creator)) live.push(`process ${creator} (the handle create() returned)`);
  for (const [offset, entries, role] of [[g.producersOffset, g.maxProducers, 'producer'], [g.consumersOffset, g.maxConsumers, 'consumer']] as const) {
    for (let i = 0; i < entries; i++) {
      const e = (offset + i * CHANNEL.ENTRY_SIZE) >>> 2;
      const pid = Atomics.load(words, e + (CHANNEL.ENTRY_PID >>> 2));
      if (pid === 0 || (role === 'producer' && Atomics.load(words, e + (CHANNEL.ENTRY_STATE >>> 2)) !== ATTACHED)) continue;
      if (pidAlive(pid)) live.push(`process ${pid} (a ${role})`);
    }
  }
  return live;
}

function inUse(live: string[]): Error {
  return mmapkitError(
    'ERR_MMAP_CHANNEL_IN_USE',
    `A channel is already there, in use by ${live.join(', ')}: creating one would reset it under its users. ` +
      'Use Channel.open() to join it, or create the new one once every handle on the old one is closed',
  );
}

/** create() of a path: refuse a live channel in an existing file before map() grows or changes it. */
function refuseLiveFile(path: string): void {
  let st;
  try {
    st = statSync(path);
  } catch {
    return; // missing (map() creates it) or unreadable (map() reports why)
  }
  if (!st.isFile() || st.size < CHANNEL.CONTROL_END) return;
  const m = map(path, { access: 'write' });
  try {
    const live = liveParties(m);
    if (live.length > 0) throw inUse(live);
  } finally {
    m.unmap();
  }
}

/**
 * Refuse to create over a live channel, then name this process in CREATOR by compare-and-swap from
 * what was there: of two processes that create() the same memory at once, one wins, the other sees
 * the word change under it and backs off. A live process named in CREATOR always means "in use": it
 * holds the handle its create() returned, or its create() is under way (the magic may be 0 or, an
 * instant later, published: looking at the magic too let a second creator in between the two).
 * Only a dead creator's pid (a crash without close()) or 0 is ever replaced. The magic is zeroed
 * after the compare-and-swap is won, never before: a loser must not unpublish the winner's channel.
 * (A party that attaches to an old, abandoned channel while it is being re-created can still be reset
 * under: nothing in the protocol stops that.)
 */
function claimCreator(m: Mapping, i32: Int32Array): void {
  let seen = Atomics.load(i32, CHANNEL.CREATOR >>> 2);
  for (let tries = 0; ; tries++) {
    const live = liveParties(m);
    if (live.length > 0) throw inUse(live);
    if (seen !== 0 && pidAlive(seen)) throw inUse([`process ${seen} (creating a channel there now)`]);
    // seq_cst compare-and-swap: from 0 or a dead pid to ours; whoever wins owns the memory.
    const found = Atomics.compareExchange(i32, CHANNEL.CREATOR >>> 2, seen, PID);
    if (found === seen) {
      // seq_cst store: unpublish the old channel (if any) before we rewrite its header.
      Atomics.store(i32, CHANNEL.MAGIC >>> 2, 0);
      return;
    }
    // Changed under us: by another create() (a live pid), or by the old creator's close() (0): look again.
    if (tries === 2 || (found !== 0 && pidAlive(found))) throw inUse([`process ${found} (creating a channel there now)`]);
    seen = found;
  }
}
