/**
 * A subscription: one subscriber's cursor over a topic, with every way of receiving a Channel
 * offers (one message, many, into a buffer, a handler, `for await`, a Readable). Every subscription
 * sees every message published after its start, in the one order publishers wrote them.
 * @module
 */
import type { Readable } from 'node:stream';
import { isProxy } from 'node:util/types';
import { closedError, invalidArgType, outOfRange } from '../internal/errors.js';
import { passed } from '../internal/time.js';
import type { LengthsArray } from '../channel/batch.js';
import { messageIterator, parseReadableOptions, readableOf } from '../channel/streams.js';
import { type ChannelWaitOptions, type SleepSite, type Strategy, deadlineOf, parseTimeout, signalOf, timedOut, yieldDue, yieldToLoop } from '../channel/waiting.js';
import { checkConstruct } from '../internal/symbols.js';
import { validateInt32 } from '../internal/validators.js';
import { FLAG_PUBLISHER_DIED, TOPIC } from './layout.js';
import type { TopicMemory } from './memory.js';
import { TopicEndCheck, closeSubscriber } from './parties.js';
import { BufferSink, IntoSink, OneSink, TopicReader } from './reader.js';
import { faultsMoved } from '../channel/fault.js';

/** Why a subscription saw the end: every publisher closed, or one went away without closing. */
export type TopicEndReason = 'closed' | 'publisher-died';

/** A handler of `drain()`: the message is `buffer[offset .. offset + length)`, valid during the call only. */
export type TopicDrainHandler = (buffer: Buffer, offset: number, length: number) => void;

const DEFAULT_MANY = 1024;
const one = (): number => 1;
const count = (n: number): number => n;
const noMessage = (timeout: number): Error => timedOut('waiting for a message', timeout, 'ERR_MMAP_TOPIC_TIMEOUT');

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
    checkConstruct(token, 'use topic.subscribe()');
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
    const tail = this.#mem.raw64(TOPIC.TAIL);
    this.#mem.checkFaults('lag');
    return Math.max(0, tail - this.#reader.cursor);
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
    // One test on the way of every call; the reasons out of line.
    const mem = this.#mem;
    if (this.#closed || mem.closed || mem.faultCount[0] !== mem.faultsSeen) this.#checkFailed(what);
  }

  #checkFailed(what: string): void {
    if (this.#closed) throw closedError(what, 'Subscription');
    if (this.#mem.closed) throw closedError(what, 'Topic');
    faultsMoved(this.#mem, what);
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
    // Zeros where the publisher table was lost look like publishers that are gone: not an end.
    this.#mem.checkFaults('receive');
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
      this.#mem.checkFaults('receive'); // the looks read zeros where the control lines were lost
      if (!this.#strategy.sleep(this.#site, seen, deadline)) throw noMessage(timeout);
    }
  }

  async #waitAsync(timeout: number, deadline: bigint, signal: AbortSignal | undefined, what: string): Promise<boolean> {
    const reader = this.#reader;
    reader.flushCursor();
    for (;;) {
      const seen = Atomics.load(this.#mem.i32, TOPIC.NOT_EMPTY >>> 2);
      if (reader.ready()) return true;
      if (this.#atEnd()) return false;
      this.#mem.checkFaults(what);
      if (!(await this.#strategy.sleepAsync(this.#site, seen, deadline, signal))) throw noMessage(timeout);
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
      this.#mem.checkFaults('receive'); // "nothing yet" may be zeros where the control lines were lost
    }
    return got;
  }

  /**
   * What `take()` finds (undefined: nothing yet), waiting for it by this subscription's strategy up to
   * `timeout` ms; null at the end of the stream. The loop of every blocking receive method.
   */
  #until<T>(take: () => T | undefined, timeout: number): T | null {
    const got = take();
    if (got !== undefined) return got;
    const deadline = deadlineOf(timeout);
    for (;;) {
      if (!this.#wait(timeout, deadline)) return this.#endNow();
      const next = take();
      if (next !== undefined) return next;
      // (A wait that found TAIL moved but nothing to take: a lap, or garbage. Time still counts.)
      if (passed(deadline)) throw noMessage(timeout);
    }
  }

  /** #until without blocking the event loop; `messages(got)`: how many messages it took (for the yield). */
  async #untilAsync<T>(take: () => T | undefined, messages: (got: T) => number, timeout: number, options: ChannelWaitOptions | number | undefined, what: string): Promise<T | null> {
    let deadline: bigint | undefined;
    for (;;) {
      const got = take();
      if (got !== undefined) {
        if (yieldDue(messages(got))) await yieldToLoop();
        return got;
      }
      if (deadline !== undefined && passed(deadline)) throw noMessage(timeout);
      if (!(await this.#waitAsync(timeout, (deadline ??= deadlineOf(timeout)), signalOf(options), what))) return this.#endNow();
    }
  }

  /** The next message, waiting up to `timeout` ms (`ERR_MMAP_TOPIC_TIMEOUT`); `null` at the end of the stream. */
  receive(options?: ChannelWaitOptions | number): Buffer | null {
    const timeout = parseTimeout(options);
    this.#check('receive');
    return this.#takeOne() ?? this.#until(this.#take, timeout);
  }

  readonly #take = (): Buffer | undefined => this.#takeOne();

  /** Like {@link Subscription.receive} without blocking the event loop. */
  receiveAsync(options?: ChannelWaitOptions | number): Promise<Buffer | null> {
    // Not an async function: a message that is waiting is returned in an already settled promise.
    try {
      const timeout = parseTimeout(options);
      this.#check('receiveAsync');
      const got = this.#takeOne();
      if (got === undefined) return this.#untilAsync(this.#take, one, timeout, options, 'receiveAsync');
      return yieldDue(1) ? yieldToLoop().then(() => got) : Promise.resolve(got);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  #manyArgs(max: unknown, options: ChannelWaitOptions | number | undefined, what: string): { take: () => Buffer[] | undefined; timeout: number } {
    const most = max === undefined ? DEFAULT_MANY : validateInt32(max, 'max', 1);
    const timeout = parseTimeout(options);
    this.#check(what);
    const sink = new BufferSink();
    return { take: () => (this.#reader.poll(most, sink) > 0 ? sink.out : undefined), timeout };
  }

  /** Up to `max` (default 1024) waiting messages, waiting for the first; `null` at the end of the stream. */
  receiveMany(max?: number, options?: ChannelWaitOptions | number): Buffer[] | null {
    const { take, timeout } = this.#manyArgs(max, options, 'receiveMany');
    return this.#until(take, timeout);
  }

  /** Like {@link Subscription.receiveMany} without blocking the event loop. */
  async receiveManyAsync(max?: number, options?: ChannelWaitOptions | number): Promise<Buffer[] | null> {
    const { take, timeout } = this.#manyArgs(max, options, 'receiveManyAsync');
    return this.#untilAsync(take, (got) => got.length, timeout, options, 'receiveManyAsync');
  }

  #intoArgs(target: unknown, lengths: unknown, options: ChannelWaitOptions | number | undefined, what: string): { take: () => number | undefined; timeout: number } {
    const timeout = parseTimeout(options);
    if (!ArrayBuffer.isView(target) || isProxy(target)) throw invalidArgType('target', 'a Buffer, TypedArray or DataView', target);
    if (!(lengths instanceof Uint32Array || lengths instanceof Int32Array || lengths instanceof Float64Array) || isProxy(lengths)) {
      throw invalidArgType('lengths', 'a Uint32Array, Int32Array or Float64Array', lengths);
    }
    if (lengths.length === 0) throw outOfRange('lengths.length', '>= 1', 0);
    const bytes = target instanceof Uint8Array ? target : new Uint8Array(target.buffer, target.byteOffset, target.byteLength);
    if (bytes.byteLength < this.#mem.g.maxMessageSize) throw outOfRange('target.byteLength', `>= ${this.#mem.g.maxMessageSize} (the topic's maxMessageSize)`, bytes.byteLength);
    this.#check(what);
    const sink = new IntoSink(bytes, lengths);
    return {
      take: () => {
        sink.discard();
        const n = this.#reader.poll(lengths.length, sink);
        return n > 0 ? n : undefined;
      },
      timeout,
    };
  }

  /**
   * Copy waiting messages back to back into `target` (at least `maxMessageSize` bytes) and their
   * lengths into `lengths`, waiting for the first; how many, or `null` at the end of the stream.
   */
  receiveInto(target: ArrayBufferView, lengths: LengthsArray, options?: ChannelWaitOptions | number): number | null {
    const { take, timeout } = this.#intoArgs(target, lengths, options, 'receiveInto');
    return this.#until(take, timeout);
  }

  /** Like {@link Subscription.receiveInto} without blocking the event loop. */
  async receiveIntoAsync(target: ArrayBufferView, lengths: LengthsArray, options?: ChannelWaitOptions | number): Promise<number | null> {
    const { take, timeout } = this.#intoArgs(target, lengths, options, 'receiveIntoAsync');
    return this.#untilAsync(take, count, timeout, options, 'receiveIntoAsync');
  }

  #drainArgs(handler: unknown, max: unknown, options: ChannelWaitOptions | number | undefined, what: string): { take: () => number | undefined; timeout: number } {
    if (typeof handler !== 'function') throw invalidArgType('handler', 'a function', handler);
    const limit = max === undefined ? Infinity : validateInt32(max, 'max', 1);
    const timeout = parseTimeout(options);
    this.#check(what);
    return {
      take: () => {
        const n = this.#drainRun(handler as TopicDrainHandler, limit);
        return n > 0 ? n : undefined;
      },
      timeout,
    };
  }

  /** Copy each waiting message (up to `limit`) to a scratch buffer, validated, then hand it to `handler`. */
  #drainRun(handler: TopicDrainHandler, limit: number): number {
    // A handler that drains again (nested) gets a scratch of its own: the outer one still reads its copy.
    const scratch = this.#drainScratch ?? Buffer.allocUnsafe(this.#mem.g.maxMessageSize);
    this.#drainScratch = undefined;
    try {
      return this.#drainInto(scratch, handler, limit);
    } finally {
      this.#drainScratch = scratch;
    }
  }

  #drainInto(scratch: Buffer, handler: TopicDrainHandler, limit: number): number {
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
    const { take, timeout } = this.#drainArgs(handler, max, options, 'drain');
    return this.#until(take, timeout);
  }

  /** Like {@link Subscription.drain} without blocking the event loop. */
  async drainAsync(handler: TopicDrainHandler, max?: number, options?: ChannelWaitOptions | number): Promise<number | null> {
    const { take, timeout } = this.#drainArgs(handler, max, options, 'drainAsync');
    return this.#untilAsync(take, count, timeout, options, 'drainAsync');
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

  /**
   * `util.inspect(subscription)` (and `console.log`): the next sequence number, missed, the wait
   * strategy, closed, ended. Reads only this handle's own state, never the shared memory or the
   * address; never throws.
   */
  [Symbol.for('nodejs.util.inspect.custom')](depth: number, options: import('node:util').InspectOptionsStylized, inspect: typeof import('node:util').inspect): string {
    if (depth < 0) return options.stylize('[Subscription]', 'special');
    const fields: Record<string, unknown> = {};
    try {
      fields['sequence'] = this.#reader.seq;
      fields['missed'] = this.#reader.missed;
      fields['wait'] = this.#strategy.name;
      fields['closed'] = this.#closed;
      fields['ended'] = this.#ended;
      if (this.#endReason !== undefined) fields['endReason'] = this.#endReason;
    } catch {
      fields['state'] = 'unknown';
    }
    return `Subscription ${inspect(fields, options)}`;
  }
}
