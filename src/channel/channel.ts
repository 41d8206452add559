/**
 * Message channels between processes over shared memory: a bounded queue of byte messages for any
 * number of producer and consumer processes. Every producer handle owns a lane, a single-producer
 * byte ring; consumers take records from whichever lanes no other consumer holds. Every message goes
 * to exactly one consumer, in order per producer. The layout and protocol are in
 * docs/channel-layout.md; this class is the public handle over the modules that implement it.
 * @module
 */
import type { Readable, Writable } from 'node:stream';
import { checkConstruct, kConstruct } from '../internal/symbols.js';
import type { Mapping } from '../mapping.js';
import { OWNERSHIP_OPTIONS, type OwnershipOptions } from '../ownership.js';
import { validateOneOf, validateOptions } from '../internal/validators.js';
import {
  type DrainHandler,
  type LengthsArray,
  drain,
  drainAsync,
  receiveInto,
  receiveIntoAsync,
  receiveMany,
  receiveManyAsync,
  sendMany,
  sendManyAsync,
  tryReceiveMany,
  trySendMany,
} from './batch.js';
import { type ChannelEndReason, ChannelCore } from './core.js';
import { faultFreeLook } from './fault.js';
import { CHANNEL, GEOMETRY_OPTIONS, type Geometry, laneCapacity, parseExpectedProducers, parseGeometry, readGeometry } from './layout.js';
import { queuedMessages } from './ring.js';
import { messageIterator, parseReadableOptions, parseWritableOptions, readableOf, writableOf } from './streams.js';
import { ownershipOf, useTarget } from '../target.js';
import { type ChannelInspection, type ChannelTarget, initChannel, inspectMemory, refuseLiveFile } from './target.js';
import { type ChannelWaitOptions, type Strategy, type WaitStrategy, deadlineOf, parseStrategy, parseTimeout, signalOf, yieldDue, yieldToLoop } from './waiting.js';
import { type InPlaceMessage, type Reservation, receiveInPlace, reserve } from './zerocopy.js';

/** Options of {@link Channel.create}. */
export interface ChannelCreateOptions extends Omit<ChannelOpenOptions, keyof OwnershipOptions> {
  /**
   * Bytes of each producer's lane (its ring), rounded up to a power of two: what one producer may
   * have queued before its sends wait. At least two records of `maxMessageSize` and 4096. Default
   * 256 KiB (or the least for `maxMessageSize`). Not with `capacity`.
   */
  laneSize?: number;
  /**
   * Instead of `laneSize`: size each lane to hold at least this many messages of `maxMessageSize`
   * (smaller messages take less room, so more of them fit).
   */
  capacity?: number;
  /** Largest message in bytes. Default 4096. */
  maxMessageSize?: number;
  /** How many producer handles may be attached at once (across all processes): one lane each. Default 16. */
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
const CREATE_OPTIONS = [...GEOMETRY_OPTIONS, 'wait', 'spin'] as const;

/** Options of {@link Channel.open} (and the per-handle part of {@link Channel.create}). */
export interface ChannelOpenOptions {
  /**
   * How this handle waits: `'block'` (default: sleep in the kernel, futex), `'spin'` (re-read
   * shared memory in a loop: lowest latency, a busy core), `'hybrid'` (spin for `spin` µs, then
   * sleep), `'async'` (like block; named for handles used with the async methods). The async
   * methods never block the event loop, except `'spin'`/`'hybrid'` for at most `spin` µs per wait.
   */
  wait?: WaitStrategy;
  /**
   * Microseconds to spin: for `'hybrid'` before sleeping (default 50), for the async methods of
   * `'spin'` (default 200). Refused with `'block'` and `'async'`, which never spin.
   */
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
const INSPECT_OPTIONS = [...OWNERSHIP_OPTIONS] as const;


/**
 * One handle on a channel. A handle becomes a producer on its first send and a consumer on its first
 * receive; `close()` detaches it (consumers see the end of the stream once every producer that ever
 * attached has closed, or died). Disposable.
 */
export class Channel implements Disposable, AsyncIterable<Buffer> {
  readonly #core: ChannelCore;

  /** @internal Use {@link Channel.create} or {@link Channel.open}. */
  constructor(token: symbol, mapping: Mapping, owned: Mapping | import('../shm.js').SharedMemory | undefined, g: Geometry, strategy: Strategy, creator = false) {
    checkConstruct(token, 'use Channel.create() or Channel.open()');
    this.#core = new ChannelCore(mapping, owned, g, strategy, creator);
  }

  /** Bytes a channel with these options occupies (to size a file or shared memory yourself). */
  static byteLength(options?: Omit<ChannelCreateOptions, 'wait' | 'spin'>): number {
    const o = validateOptions(options, 'options', GEOMETRY_OPTIONS);
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
    const strategy = parseStrategy(o);
    if (typeof target === 'string') refuseLiveFile(target); // before map() grows the file
    return useTarget(target, { size: g.totalSize, creating: true, options: CREATE_OPTIONS, call: 'create' }, ({ mapping, owned }) => {
      initChannel(mapping, g, expected);
      return new Channel(kConstruct, mapping, owned, g, strategy, true);
    });
  }

  /**
   * Open a channel that `create` made (its header is checked: a wrong or corrupted one, or one of
   * another layout version, is `ERR_MMAP_BAD_HEADER`). A `{ name }` target is opened with
   * `SharedMemory.open()`: by default it must belong to this user and let no one else read or write
   * it (`options.owner`, `options.sharedWith`).
   */
  static open(target: ChannelTarget, options?: ChannelOpenOptions): Channel {
    const o = validateOptions(options, 'options', OPEN_OPTIONS);
    const strategy = parseStrategy(o);
    const ownership = ownershipOf(o, target);
    return useTarget(target, { creating: false, ownership, options: OPEN_OPTIONS, call: 'open' }, ({ mapping, owned }) => new Channel(kConstruct, mapping, owned, readGeometry(mapping), strategy));
  }

  /**
   * Look at what `target` holds without joining it or changing anything: whether it is a channel
   * (and of which layout version), its limits, its producers (with their lanes' queued bytes) and
   * consumers, and whether their processes live. Nothing read is trusted; a file or `{ name }` is
   * mapped read-only for the look.
   */
  static inspect(target: ChannelTarget, options?: OwnershipOptions): ChannelInspection {
    const o = validateOptions(options, 'options', INSPECT_OPTIONS);
    const ownership = ownershipOf(o, target);
    return useTarget(target, { creating: false, ownership, options: INSPECT_OPTIONS, read: true, call: 'inspect' }, ({ mapping }) => faultFreeLook(mapping, 'channel', () => inspectMemory(mapping)), 'always');
  }

  /** Messages of `maxMessageSize` one producer can have queued at least (smaller ones take less room). */
  get capacity(): number {
    return laneCapacity(this.#core.g.laneSize, this.#core.g.maxMessageSize);
  }

  /** Bytes of each producer's lane. */
  get laneSize(): number {
    return this.#core.g.laneSize;
  }

  /** Largest message in bytes. */
  get maxMessageSize(): number {
    return this.#core.g.maxMessageSize;
  }

  /** The lane this handle sends through, once it is a producer (`undefined` before). */
  get lane(): number | undefined {
    return this.#core.writer?.lane;
  }

  /** This handle's wait strategy. */
  get wait(): WaitStrategy {
    return this.#core.strategy.name;
  }

  /** Whether `close()` has been called on this handle. */
  get closed(): boolean {
    return this.#core.closed;
  }

  /** Whether this handle has seen the end of the stream (every producer closed, every lane empty). */
  get ended(): boolean {
    return this.#core.ended;
  }

  /**
   * Why this handle saw the end of the stream, once it has (`undefined` before): `'closed'` when every
   * producer closed its handle, `'producer-died'` when some producer of the channel went away without
   * closing (killed, crashed, or exited with its handle open), whose last messages may be missing.
   */
  get endReason(): ChannelEndReason | undefined {
    return this.#core.endReason;
  }

  /** Producers the channel expects before its stream can end (the `producers` option of create), or undefined. */
  get producers(): number | undefined {
    const core = this.#core;
    const n = core.mapping.closed ? 0 : Atomics.load(core.i32, CHANNEL.EXPECTED_PRODUCERS >>> 2) >>> 0;
    return n === 0 ? undefined : n;
  }

  /**
   * Messages waiting in all lanes now (a snapshot), including those a consumer holds in place or is
   * draining (they leave the lane when released).
   */
  get size(): number {
    const core = this.#core;
    core.check('size');
    let n = 0;
    for (let lane = 0, used = core.reader.lanesUsed(); lane < used; lane++) n += queuedMessages(core.i32, core.g, lane);
    core.checkFaults('size'); // it counted records: zeros count as empty ones
    return n;
  }

  /**
   * Attach this handle as a producer (or consumer) now, instead of on its first send (receive). A
   * consumer sees the end of the stream once every producer that has attached has closed: attach all
   * producers before the first one may close, or consumers may see the end too early (or create the
   * channel with the `producers` option).
   */
  attach(role: 'producer' | 'consumer'): void {
    this.#core.check('attach');
    if (validateOneOf(role, 'role', ['producer', 'consumer'] as const) === 'producer') this.#core.attachProducer();
    else this.#core.attachConsumer();
    this.#core.checkFaults('attach');
  }

  // ------------------------------------------------------------ sending

  /** Send one message if there is room in this producer's lane now; false when it is full. */
  trySend(data: string | ArrayBufferView): boolean {
    const core = this.#core;
    const bytes = core.prepareSend(data);
    const writer = core.writer!;
    if (!writer.append(bytes)) {
      core.checkFaults('send'); // the look at the read position may have hit a lost page
      return false;
    }
    core.publish(1, 'send');
    return true;
  }

  /** Send one message, waiting while the lane is full (up to `timeout` ms; `ERR_MMAP_CHANNEL_TIMEOUT`). */
  send(data: string | ArrayBufferView, options?: ChannelWaitOptions | number): void {
    const timeout = parseTimeout(options);
    const core = this.#core;
    const bytes = core.prepareSend(data);
    const writer = core.writer!;
    if (!writer.append(bytes)) {
      const deadline = deadlineOf(timeout);
      do core.waitRoom(bytes.byteLength, timeout, deadline);
      while (!writer.append(bytes));
    }
    core.publish(1, 'send');
  }

  /** Like {@link Channel.send} without blocking the event loop. */
  sendAsync(data: string | ArrayBufferView, options?: ChannelWaitOptions | number): Promise<void> {
    // Not an async function: when there is room (the common case) the message is sent here and an
    // already settled promise is returned, without the machinery of an async call.
    try {
      const timeout = parseTimeout(options);
      const core = this.#core;
      const bytes = core.prepareSend(data);
      const writer = core.writer!;
      if (!writer.append(bytes)) return this.#sendAsyncWaiting(bytes, timeout, options);
      core.publish(1, 'send');
      // Sent: only the caller waits for the event loop's turn.
      return yieldDue(1) ? yieldToLoop() : Promise.resolve();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  async #sendAsyncWaiting(bytes: Uint8Array, timeout: number, options: ChannelWaitOptions | number | undefined): Promise<void> {
    const core = this.#core;
    const writer = core.writer!;
    const deadline = deadlineOf(timeout);
    do await core.waitRoomAsync(bytes.byteLength, timeout, deadline, signalOf(options), 'sendAsync');
    while (!writer.append(bytes));
    core.publish(1, 'sendAsync');
    if (yieldDue(1)) await yieldToLoop();
  }

  /**
   * Send several messages in order, waiting while the lane is full, as `send` would one by one, but
   * cheaper per message: the checks, the publishing of the lane and the wake-up of sleeping consumers
   * happen once per call (and once per wait): the way to the highest message rate. Every message is
   * checked before the first is sent: a bad one sends nothing. An error after some were sent
   * (`ERR_MMAP_CHANNEL_TIMEOUT`, ...) has a `sent` property: how many went.
   */
  sendMany(messages: ReadonlyArray<string | ArrayBufferView>, options?: ChannelWaitOptions | number): void {
    sendMany(this.#core, messages, options);
  }

  /** Like {@link Channel.sendMany} without blocking the event loop. */
  sendManyAsync(messages: ReadonlyArray<string | ArrayBufferView>, options?: ChannelWaitOptions | number): Promise<void> {
    return sendManyAsync(this.#core, messages, options);
  }

  /** Send as many of `messages` as there is room for now, in order; returns how many went. */
  trySendMany(messages: ReadonlyArray<string | ArrayBufferView>): number {
    return trySendMany(this.#core, messages);
  }

  /**
   * Zero copy: reserve room for a message of up to `maxMessageSize` bytes in this producer's lane
   * (waiting like `send` while it is full), write the message into `reservation.buffer`, then
   * `commit(length)`. Nothing is visible to consumers before the commit; a producer that dies or
   * closes before it publishes nothing.
   */
  reserve(options?: ChannelWaitOptions | number): Reservation {
    return reserve(this.#core, options);
  }

  // ------------------------------------------------------------ receiving

  /** A message if one is waiting now; `undefined` if none; `null` at the end of the stream. */
  tryReceive(): Buffer | null | undefined {
    const core = this.#core;
    core.prepareReceive('tryReceive');
    const got = core.takeOne();
    if (got === undefined) {
      if (core.atEnd()) return core.end();
      core.checkFaults('receive'); // "nothing yet" may be zeros where the control lines were lost
    }
    return got;
  }

  /** The next message, waiting up to `timeout` ms (`ERR_MMAP_CHANNEL_TIMEOUT`); `null` at the end. */
  receive(options?: ChannelWaitOptions | number): Buffer | null {
    const timeout = parseTimeout(options);
    const core = this.#core;
    core.prepareReceive('receive');
    return core.takeOne() ?? core.receiveOne(timeout);
  }

  /** Like {@link Channel.receive} without blocking the event loop. */
  receiveAsync(options?: ChannelWaitOptions | number): Promise<Buffer | null> {
    // Not an async function: a message that is waiting is taken here and returned in an already
    // settled promise (see sendAsync).
    try {
      const timeout = parseTimeout(options);
      const core = this.#core;
      core.prepareReceive('receiveAsync');
      const got = core.takeOne();
      if (got === undefined) return this.#receiveAsyncWaiting(timeout, options);
      // Taken: it settles after the event loop's turn when one is due.
      return yieldDue(1) ? yieldToLoop().then(() => got) : Promise.resolve(got);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  async #receiveAsyncWaiting(timeout: number, options: ChannelWaitOptions | number | undefined): Promise<Buffer | null> {
    const core = this.#core;
    const deadline = deadlineOf(timeout);
    const signal = signalOf(options);
    for (;;) {
      if (!(await core.waitMessageAsync(timeout, deadline, signal, 'receiveAsync'))) {
        core.end();
        if (yieldDue(0)) await yieldToLoop();
        return null;
      }
      const got = core.takeOne();
      if (got !== undefined) {
        if (yieldDue(1)) await yieldToLoop();
        return got;
      }
    }
  }

  /**
   * The messages waiting now, up to `max` (default 1024), in order per producer, each its own Buffer;
   * when none is waiting, waits like `receive` for the first. `null` at the end of the stream. Every
   * message returned is taken from the channel for this consumer.
   */
  receiveMany(max?: number, options?: ChannelWaitOptions | number): Buffer[] | null {
    return receiveMany(this.#core, max, options, 'receiveMany');
  }

  /** Like {@link Channel.receiveMany} without blocking the event loop. */
  receiveManyAsync(max?: number, options?: ChannelWaitOptions | number): Promise<Buffer[] | null> {
    return receiveManyAsync(this.#core, max, options);
  }

  /** The messages waiting now, up to `max` (default 1024), in order: `[]` if none, `null` at the end. */
  tryReceiveMany(max?: number): Buffer[] | null {
    return tryReceiveMany(this.#core, max);
  }

  /**
   * No allocation per message: copy as many waiting messages as fit, back to back, into `target`
   * (which must hold at least `maxMessageSize` bytes), and write each one's length into `lengths`
   * (at most `lengths.length` messages). Waits like `receive` for the first. Returns how many
   * messages were copied, `null` at the end of the stream.
   */
  receiveInto(target: ArrayBufferView, lengths: LengthsArray, options?: ChannelWaitOptions | number): number | null {
    return receiveInto(this.#core, target, lengths, options);
  }

  /** Like {@link Channel.receiveInto} without blocking the event loop. */
  receiveIntoAsync(target: ArrayBufferView, lengths: LengthsArray, options?: ChannelWaitOptions | number): Promise<number | null> {
    return receiveIntoAsync(this.#core, target, lengths, options);
  }

  /**
   * Zero copy, no allocation: call `handler(buffer, offset, length)` for each waiting message (up to
   * `max`, default 1024) where it lies in shared memory. `buffer` is valid during the call only: the
   * producer may reuse the bytes once the handler returns. Waits like `receive` for the first;
   * returns how many messages were handled, `null` at the end of the stream. A message whose handler
   * throws counts as taken; the error propagates and the messages after it stay in the channel.
   */
  drain(handler: DrainHandler, max?: number, options?: ChannelWaitOptions | number): number | null {
    return drain(this.#core, handler, max, options);
  }

  /** Like {@link Channel.drain} without blocking the event loop while it waits for the first message. */
  drainAsync(handler: DrainHandler, max?: number, options?: ChannelWaitOptions | number): Promise<number | null> {
    return drainAsync(this.#core, handler, max, options);
  }

  /**
   * Zero copy: the next message as a view into its lane, waiting like `receive`; `null` at the end.
   * Call `release()` when done: until then this handle holds the message's lane (other consumers
   * take from other lanes) and its producer cannot reuse the bytes.
   */
  receiveInPlace(options?: ChannelWaitOptions | number): InPlaceMessage | null {
    return receiveInPlace(this.#core, options);
  }

  /**
   * A Node `Readable` of the messages in object mode: one chunk (a Buffer) per message, whatever
   * reads it, so `highWaterMark` counts messages. Ends at the end of the stream. Backpressure: it
   * only receives when the stream wants more. Destroying it does not close the channel, and cancels
   * its pending receive without taking a message; the messages already in the stream's buffer (at
   * most `highWaterMark`) are gone with it.
   */
  readable(options?: { highWaterMark?: number }): Readable {
    const hwm = parseReadableOptions(options);
    this.#core.prepareReceive('readable');
    return readableOf(this, hwm);
  }

  /**
   * A Node `Writable`: each chunk written becomes one message (a chunk larger than maxMessageSize is
   * an error). Backpressure: a write completes once the message is in the lane, waiting while it is
   * full. Ending the stream closes this producer handle (so consumers see the end once every
   * producer has closed) unless `{ close: false }`.
   */
  writable(options?: { close?: boolean; highWaterMark?: number }): Writable {
    const { closeAtEnd, hwm } = parseWritableOptions(options);
    this.#core.check('writable');
    const stream = writableOf(this, closeAtEnd, hwm);
    // A producer from now on (once Node accepted the options), even if nothing is ever written:
    // consumers then wait for its end.
    this.#core.attachProducer();
    return stream;
  }

  /**
   * `for await (const msg of channel)`: receives until the end of the stream. Leaving the loop early
   * (`break`, `return`, an exception) does not close the channel and takes nothing more.
   */
  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    return messageIterator(this);
  }

  /**
   * Detach this handle: as a producer, it no longer counts for the end of the stream (once every
   * producer has closed, consumers see the end); as a consumer, it frees its table entry. Unmaps the
   * channel's memory if this handle mapped it. Idempotent.
   */
  close(): void {
    this.#core.close();
  }

  /** Same as {@link Channel.close}. */
  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * `util.inspect(channel)` (and `console.log`): this handle's role (`'unattached'`, `'producer'`,
   * `'consumer'`, `'producer+consumer'`), its lane, the channel's lanes (`maxProducers`), laneSize,
   * capacity, maxMessageSize, the wait strategy, closed and ended. Reads only this handle's own
   * state, never the shared memory (so it is cheap and cannot meet a corrupt or lost page), never
   * the address; never throws.
   */
  [Symbol.for('nodejs.util.inspect.custom')](depth: number, options: import('node:util').InspectOptionsStylized, inspect: typeof import('node:util').inspect): string {
    if (depth < 0) return options.stylize('[Channel]', 'special');
    const fields: Record<string, unknown> = {};
    try {
      const core = this.#core;
      const producer = core.writer !== undefined;
      const consumer = core.seat !== undefined;
      fields['role'] = producer && consumer ? 'producer+consumer' : producer ? 'producer' : consumer ? 'consumer' : 'unattached';
      if (producer) fields['lane'] = core.writer!.lane;
      fields['lanes'] = core.g.maxProducers;
      fields['laneSize'] = core.g.laneSize;
      fields['capacity'] = laneCapacity(core.g.laneSize, core.g.maxMessageSize);
      fields['maxMessageSize'] = core.g.maxMessageSize;
      fields['wait'] = core.strategy.name;
      fields['closed'] = core.closed;
      fields['ended'] = core.ended;
      if (core.endReason !== undefined) fields['endReason'] = core.endReason;
    } catch {
      fields['state'] = 'unknown';
    }
    return `Channel ${inspect(fields, options)}`;
  }
}

export { CHANNEL, type ChannelEndReason, type ChannelInspection, type ChannelTarget, type ChannelWaitOptions, type DrainHandler, type InPlaceMessage, type LengthsArray, type Reservation, type WaitStrategy };
