/**
 * A subscription: one subscriber's cursor over a topic, with every way of receiving a Channel
 * offers (one message, many, into a buffer, a handler, `for await`, a Readable). Every subscription
 * sees every message published after its start, in the one order publishers wrote them.
 * @module
 */
import type { Readable } from 'node:stream';
import { invalidArgType, mmapkitError, outOfRange } from '../errors.js';
import { isProxy } from 'node:util/types';
import type { LengthsArray } from '../channel/batch.js';
import { messageIterator, parseReadableOptions, readableOf } from '../channel/streams.js';
import { type ChannelWaitOptions, type SleepSite, type Strategy, deadlineOf, parseTimeout, signalOf, timedOut, yieldDue, yieldToLoop } from '../channel/waiting.js';
import { validateInt32 } from '../validators.js';
import { FLAG_PUBLISHER_DIED, TOPIC } from './layout.js';
import type { TopicMemory } from './memory.js';
import { TopicEndCheck, closeSubscriber } from './parties.js';
import { BufferSink, IntoSink, OneSink, TopicReader } from './reader.js';

/** Why a subscription saw the end: every publisher closed, or one went away without closing. */
export type TopicEndReason = 'closed' | 'publisher-died';

/** A handler of `drain()`: the message is `buffer[offset .. offset + length)`, valid during the call only. */
export type TopicDrainHandler = (buffer: Buffer, offset: number, length: number) => void;

const DEFAULT_MANY = 1024;

/** @internal What a Topic hands a new subscription. */
export interface SubscriptionInit {
  mem: TopicMemory;
  entry: number;
  cursor: number;
  seq: number;
  strategy: Strategy;
  errorOnGap: boolean;
  /** Tells the topic handle this subscription closed. */
  onClose(sub: Subscription): void;
}

const kSubscribe = Symbol('mmapkit.subscription');
export { kSubscribe };

/**
 * One subscriber's view of a topic: its own cursor, so it sees every message published after it
 * started (or every one still retained, with `from: 'oldest'`). Made by `Topic#subscribe()`. Disposable.
 */
export class Subscription implements Disposable, AsyncIterable<Buffer> {
  readonly #mem: TopicMemory;
  readonly #reader: TopicReader;
  readonly #strategy: Strategy;
  readonly #site: SleepSite;
  readonly #end = new TopicEndCheck();
  readonly #onClose: (sub: Subscription) => void;
  readonly #one = new OneSink();
  #closed = false;
  #ended = false;
  #endReason: TopicEndReason | undefined;
  #drainScratch: Buffer | undefined;

  /** @internal Use `Topic#subscribe()`. */
  constructor(token: symbol, init: SubscriptionInit) {
    if (token !== kSubscribe) throw new TypeError('Illegal constructor: use topic.subscribe()');
    this.#mem = init.mem;
    this.#reader = new TopicReader(init.mem, init.entry, init.cursor, init.seq, init.errorOnGap);
    this.#strategy = init.strategy;
    this.#onClose = init.onClose;
    const reader = this.#reader;
    this.#site = { word: init.mem.notEmpty, sleepers: TOPIC.SUBSCRIBER_SLEEPERS >>> 2, counted: false, ready: () => reader.ready() };
  }

  /** Messages this subscription missed because publishers overwrote them first (`'overwrite'` topics). */
  get missed(): number {
    return this.#reader.missed;
  }

  /** The sequence number of the next message it will read (messages are numbered from 0 in publishing order). */
  get sequence(): number {
    return this.#reader.seq;
  }

  /** Bytes published that this subscription has not read yet (records and their headers). */
  get lag(): number {
    this.#check('lag');
    return Math.max(0, this.#mem.raw64(TOPIC.TAIL) - this.#reader.cursor);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Whether a receive returned the end of the stream (`null`). */
  get ended(): boolean {
    return this.#ended;
  }

  get endReason(): TopicEndReason | undefined {
    return this.#endReason;
  }

  #check(what: string): void {
    if (this.#closed) throw mmapkitError('ERR_MMAP_CLOSED', `Cannot ${what}: the subscription is closed`);
    if (this.#mem.closed) throw mmapkitError('ERR_MMAP_CLOSED', `Cannot ${what}: the topic handle is closed`);
  }

  /** Take one message now; undefined when none is waiting. */
  #takeOne(): Buffer | undefined {
    const sink = this.#one;
    if (this.#reader.poll(1, sink) === 0) return undefined;
    const out = sink.out;
    sink.out = undefined;
    return out;
  }

  #atEnd(): boolean {
    const mem = this.#mem;
    if (!this.#end.publishersGone(mem.i32, mem.g)) return false;
    // After the states: a publisher stores its last TAIL before CLOSED.
    return !this.#reader.ready();
  }

  #endNow(): null {
    this.#ended = true;
    this.#endReason = (Atomics.load(this.#mem.i32, TOPIC.FLAGS >>> 2) & FLAG_PUBLISHER_DIED) !== 0 ? 'publisher-died' : 'closed';
    return null;
  }

  /** Wait until a message may be waiting (true) or the stream ended (false). */
  #wait(timeout: number, deadline: bigint): boolean {
    const reader = this.#reader;
    reader.flushCursor();
    for (let i = 0; i < 64; i++) if (reader.ready()) return true;
    for (;;) {
      const seen = Atomics.load(this.#mem.i32, TOPIC.NOT_EMPTY >>> 2);
      if (reader.ready()) return true;
      if (this.#atEnd()) return false;
      if (!this.#strategy.sleep(this.#site, seen, deadline)) throw timedOut('waiting for a message', timeout, 'ERR_MMAP_TOPIC_TIMEOUT');
    }
  }

  async #waitAsync(timeout: number, deadline: bigint, signal: AbortSignal | undefined, what: string): Promise<boolean> {
    const reader = this.#reader;
    reader.flushCursor();
    for (;;) {
      const seen = Atomics.load(this.#mem.i32, TOPIC.NOT_EMPTY >>> 2);
      if (reader.ready()) return true;
      if (this.#atEnd()) return false;
      if (!(await this.#strategy.sleepAsync(this.#site, seen, deadline, signal))) throw timedOut('waiting for a message', timeout, 'ERR_MMAP_TOPIC_TIMEOUT');
      this.#check(what);
      signal?.throwIfAborted();
    }
  }

  /** A message if one is waiting now; `undefined` if none; `null` at the end of the stream. */
  tryReceive(): Buffer | null | undefined {
    this.#check('tryReceive');
    const got = this.#takeOne();
    if (got === undefined) {
      this.#reader.flushCursor(); // caught up: publishers may count on all it read
      if (this.#atEnd()) return this.#endNow();
    }
    return got;
  }

  /** The next message, waiting up to `timeout` ms (`ERR_MMAP_TOPIC_TIMEOUT`); `null` at the end of the stream. */
  receive(options?: ChannelWaitOptions | number): Buffer | null {
    const timeout = parseTimeout(options);
    this.#check('receive');
    const got = this.#takeOne();
    if (got !== undefined) return got;
    const deadline = deadlineOf(timeout);
    for (;;) {
      if (!this.#wait(timeout, deadline)) return this.#endNow();
      const next = this.#takeOne();
      if (next !== undefined) return next;
      if (deadline !== -1n && process.hrtime.bigint() > deadline) throw timedOut('waiting for a message', timeout, 'ERR_MMAP_TOPIC_TIMEOUT');
    }
  }

  /** Like {@link Subscription.receive} without blocking the event loop. */
  receiveAsync(options?: ChannelWaitOptions | number): Promise<Buffer | null> {
    try {
      const timeout = parseTimeout(options);
      this.#check('receiveAsync');
      const got = this.#takeOne();
      if (got === undefined) return this.#receiveAsyncWaiting(timeout, options);
      return yieldDue(1) ? yieldToLoop().then(() => got) : Promise.resolve(got);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  async #receiveAsyncWaiting(timeout: number, options: ChannelWaitOptions | number | undefined): Promise<Buffer | null> {
    const deadline = deadlineOf(timeout);
    const signal = signalOf(options);
    for (;;) {
      if (!(await this.#waitAsync(timeout, deadline, signal, 'receiveAsync'))) return this.#endNow();
      const got = this.#takeOne();
      if (got !== undefined) return got;
      if (deadline !== -1n && process.hrtime.bigint() > deadline) throw timedOut('waiting for a message', timeout, 'ERR_MMAP_TOPIC_TIMEOUT');
    }
  }

  /** Up to `max` (default 1024) waiting messages, waiting for the first; `null` at the end of the stream. */
  receiveMany(max?: number, options?: ChannelWaitOptions | number): Buffer[] | null {
    const most = max === undefined ? DEFAULT_MANY : validateInt32(max, 'max', 1);
    const timeout = parseTimeout(options);
    this.#check('receiveMany');
    const deadline = deadlineOf(timeout);
    const sink = new BufferSink();
    for (;;) {
      if (this.#reader.poll(most, sink) > 0) return sink.out;
      if (!this.#wait(timeout, deadline)) return this.#endNow();
      if (this.#reader.poll(most, sink) > 0) return sink.out;
      if (deadline !== -1n && process.hrtime.bigint() > deadline) throw timedOut('waiting for a message', timeout, 'ERR_MMAP_TOPIC_TIMEOUT');
    }
  }

  /** Like {@link Subscription.receiveMany} without blocking the event loop. */
  async receiveManyAsync(max?: number, options?: ChannelWaitOptions | number): Promise<Buffer[] | null> {
    const most = max === undefined ? DEFAULT_MANY : validateInt32(max, 'max', 1);
    const timeout = parseTimeout(options);
    this.#check('receiveManyAsync');
    const sink = new BufferSink();
    let deadline: bigint | undefined;
    for (;;) {
      if (this.#reader.poll(most, sink) > 0) {
        if (yieldDue(sink.out.length)) await yieldToLoop();
        return sink.out;
      }
      if (deadline !== undefined && deadline !== -1n && process.hrtime.bigint() > deadline) throw timedOut('waiting for a message', timeout, 'ERR_MMAP_TOPIC_TIMEOUT');
      if (!(await this.#waitAsync(timeout, (deadline ??= deadlineOf(timeout)), signalOf(options), 'receiveManyAsync'))) return this.#endNow();
    }
  }

  #intoSink(target: unknown, lengths: unknown): IntoSink {
    if (!ArrayBuffer.isView(target) || isProxy(target)) throw invalidArgType('target', 'a Buffer, TypedArray or DataView', target);
    if (!(lengths instanceof Uint32Array || lengths instanceof Int32Array || lengths instanceof Float64Array) || isProxy(lengths)) {
      throw invalidArgType('lengths', 'a Uint32Array, Int32Array or Float64Array', lengths);
    }
    if (lengths.length === 0) throw outOfRange('lengths.length', '>= 1', 0);
    const bytes = target instanceof Uint8Array ? target : new Uint8Array(target.buffer, target.byteOffset, target.byteLength);
    if (bytes.byteLength < this.#mem.g.maxMessageSize) throw outOfRange('target.byteLength', `>= ${this.#mem.g.maxMessageSize} (the topic's maxMessageSize)`, bytes.byteLength);
    return new IntoSink(bytes, lengths);
  }

  /**
   * Copy waiting messages back to back into `target` (at least `maxMessageSize` bytes) and their
   * lengths into `lengths`, waiting for the first; how many, or `null` at the end of the stream.
   */
  receiveInto(target: ArrayBufferView, lengths: LengthsArray, options?: ChannelWaitOptions | number): number | null {
    const timeout = parseTimeout(options);
    const sink = this.#intoSink(target, lengths);
    this.#check('receiveInto');
    const deadline = deadlineOf(timeout);
    for (;;) {
      const n = this.#reader.poll(sink.lengths.length, sink);
      if (n > 0) return n;
      if (!this.#wait(timeout, deadline)) return this.#endNow();
      if (deadline !== -1n && process.hrtime.bigint() > deadline) throw timedOut('waiting for a message', timeout, 'ERR_MMAP_TOPIC_TIMEOUT');
    }
  }

  /** Like {@link Subscription.receiveInto} without blocking the event loop. */
  async receiveIntoAsync(target: ArrayBufferView, lengths: LengthsArray, options?: ChannelWaitOptions | number): Promise<number | null> {
    const timeout = parseTimeout(options);
    const sink = this.#intoSink(target, lengths);
    this.#check('receiveIntoAsync');
    let deadline: bigint | undefined;
    for (;;) {
      const n = this.#reader.poll(sink.lengths.length, sink);
      if (n > 0) {
        if (yieldDue(n)) await yieldToLoop();
        return n;
      }
      if (deadline !== undefined && deadline !== -1n && process.hrtime.bigint() > deadline) throw timedOut('waiting for a message', timeout, 'ERR_MMAP_TOPIC_TIMEOUT');
      if (!(await this.#waitAsync(timeout, (deadline ??= deadlineOf(timeout)), signalOf(options), 'receiveIntoAsync'))) return this.#endNow();
    }
  }

  #drainArgs(handler: unknown, max: unknown): number {
    if (typeof handler !== 'function') throw invalidArgType('handler', 'a function', handler);
    return max === undefined ? Infinity : validateInt32(max, 'max', 1);
  }

  /** Copy each waiting message (up to `limit`) to a scratch buffer, validated, then hand it to `handler`. */
  #drainRun(handler: TopicDrainHandler, limit: number): number {
    const scratch = (this.#drainScratch ??= Buffer.allocUnsafe(this.#mem.g.maxMessageSize));
    const lengths = new Uint32Array(1);
    const sink = new IntoSink(scratch, lengths);
    let n = 0;
    while (n < limit) {
      sink.discard();
      if (this.#reader.poll(1, sink) === 0) break;
      n++; // taken, even if the handler throws
      handler(scratch, 0, lengths[0]!);
    }
    return n;
  }

  /**
   * Call `handler(buffer, offset, length)` for each waiting message (up to `max`), waiting for the
   * first; how many, or `null` at the end of the stream. The bytes are a copy checked against
   * overwriting, valid during the call only. A message whose handler throws counts as read.
   */
  drain(handler: TopicDrainHandler, max?: number, options?: ChannelWaitOptions | number): number | null {
    const limit = this.#drainArgs(handler, max);
    const timeout = parseTimeout(options);
    this.#check('drain');
    const deadline = deadlineOf(timeout);
    for (;;) {
      const n = this.#drainRun(handler, limit);
      if (n > 0) return n;
      if (!this.#wait(timeout, deadline)) return this.#endNow();
      if (deadline !== -1n && process.hrtime.bigint() > deadline) throw timedOut('waiting for a message', timeout, 'ERR_MMAP_TOPIC_TIMEOUT');
    }
  }

  /** Like {@link Subscription.drain} without blocking the event loop. */
  async drainAsync(handler: TopicDrainHandler, max?: number, options?: ChannelWaitOptions | number): Promise<number | null> {
    const limit = this.#drainArgs(handler, max);
    const timeout = parseTimeout(options);
    this.#check('drainAsync');
    let deadline: bigint | undefined;
    for (;;) {
      const n = this.#drainRun(handler, limit);
      if (n > 0) {
        if (yieldDue(n)) await yieldToLoop();
        return n;
      }
      if (deadline !== undefined && deadline !== -1n && process.hrtime.bigint() > deadline) throw timedOut('waiting for a message', timeout, 'ERR_MMAP_TOPIC_TIMEOUT');
      if (!(await this.#waitAsync(timeout, (deadline ??= deadlineOf(timeout)), signalOf(options), 'drainAsync'))) return this.#endNow();
    }
  }

  /** A Node `Readable` in object mode, one Buffer per message; ends at the end of the stream. */
  readable(options?: { highWaterMark?: number }): Readable {
    const hwm = parseReadableOptions(options);
    this.#check('readable');
    return readableOf(this, hwm);
  }

  /** `for await (const msg of subscription)`: receives until the end of the stream. */
  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    return messageIterator(this);
  }

  /** Leave the topic: frees the subscriber entry (publishers of a `'block'` topic no longer wait for it). Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (!this.#mem.closed) closeSubscriber(this.#mem, this.#reader.entry);
    this.#onClose(this);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
