/**
 * Topics: broadcast over shared memory. Publishers write one ring in one order (a publish lock);
 * every subscriber reads all of it with its own cursor. `'block'`: publishers wait for the slowest
 * live subscriber; `'overwrite'`: they never wait, and a subscriber that was lapped learns exactly
 * how many messages it missed. The layout and protocol are in docs/topic-layout.md.
 * @module
 */
import { toBytes } from '../channel/core.js';
import { type ChannelWaitOptions, type SleepSite, type Strategy, type WaitStrategy, deadlineOf, parseStrategy, parseTimeout, signalOf, timedOut, yieldDue, yieldToLoop } from '../channel/waiting.js';
import { closedError, invalidState, outOfRange, batchStopped } from '../internal/errors.js';
import { checkConstruct, kConstruct } from '../internal/symbols.js';
import { NEVER } from '../internal/time.js';
import type { Mapping } from '../mapping.js';
import { OWNERSHIP_OPTIONS, type OwnershipOptions } from '../ownership.js';
import type { SharedMemory } from '../shm.js';
import { type SharedTarget, ownershipOf, useTarget } from '../target.js';
import { validateArray, validateInt32, validateOneOf, validateOptions } from '../internal/validators.js';
import { notifyWord } from '../wait.js';
import { GEOMETRY_OPTIONS, TOPIC, type TopicGeometry, type TopicPolicy, parseExpectedPublishers, parseTopicGeometry, readTopicGeometry } from './layout.js';
import { acquire, acquireAsync, holdAcrossCalls, release } from './lock.js';
import { TopicMemory, topicCorrupt } from './memory.js';
import { attachPublisher, attachSubscriber, closePublisher } from './parties.js';
import { Publisher, repairAfterTakeover } from './publisher.js';
import { Subscription, type TopicDrainHandler, type TopicEndReason } from './subscription.js';
import { type TopicInspection, initTopic, inspectTopicMemory, refuseLiveTopicFile } from './target.js';
import { faultFreeLook, faultsMoved } from '../channel/fault.js';

const INT32_MAX = 0x7fffffff;
const topicTimeout = (what: string, timeout: number): Error => timedOut(what, timeout, 'ERR_MMAP_TOPIC_TIMEOUT');
const RECORD_SEQ = TOPIC.RECORD_SEQ >>> 2;
/** How often a publisher waiting for room looks whether the subscribers holding it back are alive. */
const REAP_EVERY_MS = 50;

/** Options of {@link Topic.open} (and the publishing part of {@link Topic.create}). */
export interface TopicOpenOptions {
  /** How this handle's publishers wait for room (`'block'` topics) and for the publish lock: as for a Channel. Default `'block'`. */
  wait?: WaitStrategy;
  /** Microseconds to spin for `'hybrid'` / `'spin'`. */
  spin?: number;
  /** For a `{ name }` target only: whose shared memory to accept, as for `SharedMemory.open()`. */
  owner?: OwnershipOptions['owner'];
  /** For a `{ name }` target only: whom besides its owner its mode may let in. */
  sharedWith?: OwnershipOptions['sharedWith'];
}
const OPEN_OPTIONS = ['wait', 'spin', ...OWNERSHIP_OPTIONS] as const;
const INSPECT_OPTIONS = [...OWNERSHIP_OPTIONS] as const;

/** Options of {@link Topic.create}. */
export interface TopicCreateOptions extends Omit<TopicOpenOptions, keyof OwnershipOptions> {
  /**
   * Bytes of history the ring holds, rounded up to a power of two (at least two records of
   * `maxMessageSize`, and 4096). Each message takes 16 bytes of header plus its bytes, rounded up to 8.
   * Default 1 MiB.
   */
  capacity?: number;
  /** Largest message in bytes. Default 4096. */
  maxMessageSize?: number;
  /**
   * What publishers do when the slowest subscriber is a whole ring behind: `'block'` (default: wait
   * for it; dead subscribers stop counting) or `'overwrite'` (never wait; a lapped subscriber finds
   * out how many messages it missed).
   */
  policy?: TopicPolicy;
  /** Publisher handles attached at once. Default 16. */
  maxPublishers?: number;
  /** Subscriptions at once. Default 64. */
  maxSubscribers?: number;
  /** Publishers to expect: the end of the stream comes once this many have attached and all closed or died. */
  publishers?: number;
}
const CREATE_OPTIONS = [...GEOMETRY_OPTIONS, 'wait', 'spin'] as const;

/** Options of {@link Topic.subscribe}. */
export interface SubscribeOptions {
  /** `'latest'` (default): the messages published from now on; `'oldest'`: also every one still in the ring. */
  from?: 'latest' | 'oldest';
  /** How the subscription waits for messages: `'block'` (default), `'spin'`, `'hybrid'`, `'async'`. */
  wait?: WaitStrategy;
  /** Microseconds to spin for `'hybrid'` / `'spin'`. */
  spin?: number;
  /**
   * When the subscription finds it was lapped (`'overwrite'` topics): `'error'` (default) throws
   * `ERR_MMAP_TOPIC_LAPPED` (with `missed`) from the receive that finds the gap, and the next receive
   * goes on with the oldest message still there; `'count'` goes on silently. Either way `missed` counts.
   */
  lapped?: 'error' | 'count';
  /**
   * Milliseconds to wait for the publish lock, which subscribe() takes for a moment (a publisher holds
   * it for one copy, or from reserve() to commit()). Default: as long as it takes.
   */
  timeout?: number;
}
const SUBSCRIBE_OPTIONS = ['from', 'wait', 'spin', 'lapped', 'timeout'] as const;

/** Space reserved for one message: write into `buffer`, then `commit(length)`, or `cancel()`. */
export interface TopicReservation {
  /** The reserved bytes, in the ring. */
  readonly buffer: Buffer;
  /** Publish the first `length` bytes (default: all of `buffer`) as the message. */
  commit(length?: number): void;
  /** Give the reservation up: nothing is published. */
  cancel(): void;
}


/**
 * A handle on a topic. It publishes (attaching as a publisher on its first publish) and makes
 * subscriptions. Disposable: `close()` closes its subscriptions and, as a publisher, counts as gone
 * for the end of the stream.
 */
export class Topic implements Disposable {
  readonly #mem: TopicMemory;
  readonly #strategy: Strategy;
  readonly #creator: boolean;
  #publisher: Publisher | undefined;
  #roomSite: SleepSite | undefined;
  #roomFor = 0;
  #reapedAt = 0;
  readonly #subscriptions = new Set<Subscription>();
  #reserved: (() => void) | undefined;
  #closed = false;

  /** @internal Use {@link Topic.create} or {@link Topic.open}. */
  constructor(token: symbol, mapping: Mapping, owned: Mapping | SharedMemory | undefined, g: TopicGeometry, strategy: Strategy, creator = false) {
    checkConstruct(token, 'use Topic.create() or Topic.open()');
    this.#mem = new TopicMemory(mapping, owned, g);
    this.#strategy = strategy;
    this.#creator = creator;
  }

  /** Bytes a topic with these options occupies (to size a file or shared memory yourself). */
  static byteLength(options?: Omit<TopicCreateOptions, 'wait' | 'spin'>): number {
    const o = validateOptions(options, 'options', GEOMETRY_OPTIONS);
    parseExpectedPublishers(o);
    return parseTopicGeometry(o).totalSize;
  }

  /**
   * Create a topic in `target`: a file path (created or grown, mode 0o600), `{ name }` (new named
   * shared memory), or shared memory / a shared mapping (initialized in place). A topic there in use
   * is never reset (`ERR_MMAP_TOPIC_IN_USE`).
   */
  static create(target: SharedTarget, options?: TopicCreateOptions): Topic {
    const o = validateOptions(options, 'options', CREATE_OPTIONS);
    const g = parseTopicGeometry(o);
    const expected = parseExpectedPublishers(o);
    const strategy = parseStrategy(o);
    if (typeof target === 'string') refuseLiveTopicFile(target);
    return useTarget(target, { size: g.totalSize, creating: true, options: CREATE_OPTIONS, call: 'create', kind: 'Topic' }, ({ mapping, owned }) => {
      initTopic(mapping, g, expected);
      return new Topic(kConstruct, mapping, owned, g, strategy, true);
    });
  }

  /** Open a topic that `create` made (a wrong or corrupt header is `ERR_MMAP_BAD_HEADER`). */
  static open(target: SharedTarget, options?: TopicOpenOptions): Topic {
    const o = validateOptions(options, 'options', OPEN_OPTIONS);
    const strategy = parseStrategy(o);
    const ownership = ownershipOf(o, target);
    return useTarget(target, { creating: false, ownership, options: OPEN_OPTIONS, call: 'open', kind: 'Topic' }, ({ mapping, owned }) => new Topic(kConstruct, mapping, owned, readTopicGeometry(mapping), strategy));
  }

  /** Look at what `target` holds without joining or changing it: limits, positions, publishers, subscribers. */
  static inspect(target: SharedTarget, options?: OwnershipOptions): TopicInspection {
    const o = validateOptions(options, 'options', INSPECT_OPTIONS);
    const ownership = ownershipOf(o, target);
    return useTarget(target, { creating: false, ownership, options: INSPECT_OPTIONS, read: true, call: 'inspect', kind: 'Topic' }, ({ mapping }) => faultFreeLook(mapping, 'topic', () => inspectTopicMemory(mapping)), 'always');
  }

  /** Bytes of the ring. */
  get capacity(): number {
    return this.#mem.g.capacity;
  }

  get maxMessageSize(): number {
    return this.#mem.g.maxMessageSize;
  }

  get policy(): TopicPolicy {
    return this.#mem.g.policy;
  }

  get wait(): WaitStrategy {
    return this.#strategy.name;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The sequence number the next message will get (messages are numbered from 0). */
  get nextSequence(): number {
    this.#check('nextSequence');
    const next = this.#mem.raw64(TOPIC.NEXT_SEQ);
    this.#mem.checkFaults('nextSequence');
    return next;
  }

  #check(what: string): void {
    // One test on the way of every call; the reasons out of line.
    const mem = this.#mem;
    if (this.#closed || mem.mapping.closed || mem.faultCount[0] !== mem.faultsSeen) this.#checkFailed(what);
  }

  #checkFailed(what: string): void {
    if (this.#closed) throw closedError(what, 'Topic');
    if (this.#mem.mapping.closed) throw closedError(what, 'memory');
    faultsMoved(this.#mem, what);
  }

  /** Attach as a publisher now (the first publish does it otherwise): subscribers then wait for this handle's end. */
  attach(): void {
    this.#check('attach');
    this.#attach();
    this.#mem.checkFaults('attach');
  }

  #attach(): Publisher {
    if (this.#publisher === undefined) {
      const mem = this.#mem;
      const pub = new Publisher(mem, attachPublisher(mem.i32, mem.g));
      this.#publisher = pub;
      this.#roomSite = { word: mem.notFull, sleepers: TOPIC.PUBLISHER_WAITING >>> 2, counted: false, ready: () => pub.roomNow(this.#roomFor, false) };
    }
    return this.#publisher;
  }

  #bytes(data: unknown, name = 'data'): Uint8Array {
    const bytes = toBytes(data, name);
    // (The error out of line: the publish path is at V8's inlining budget.)
    if (bytes.byteLength > this.#mem.g.maxMessageSize) this.#tooLong(bytes, name);
    return bytes;
  }

  #tooLong(bytes: Uint8Array, name: string): never {
    throw outOfRange(`${name}.byteLength`, `<= ${this.#mem.g.maxMessageSize} (the topic's maxMessageSize)`, bytes.byteLength);
  }

  #prepare(what: string): Publisher {
    this.#check(what);
    // One test for the common case (a publisher with no reservation open); the rest out of line: the
    // publish path is at V8's inlining budget.
    const pub = this.#publisher;
    return this.#reserved === undefined && pub !== undefined ? pub : this.#prepareSlow();
  }

  #prepareSlow(): Publisher {
    if (this.#reserved !== undefined) throw invalidState('a reserve() of this handle is not committed yet: commit or cancel it first');
    return this.#attach();
  }

  /**
   * With the lock: write `all[from..]` while they fit (one TAIL store for the run); how many were
   * written (0: no room for the first). Lets go of the lock.
   */
  #run(pub: Publisher, all: ReadonlyArray<Uint8Array>, from: number): number {
    pub.begin();
    let n = 0;
    try {
      while (from + n < all.length && pub.plan(all[from + n]!.byteLength)) n++;
      if (n === 0) {
        release(pub.site);
        return 0;
      }
      pub.claim();
      const u8 = this.#mem.u8;
      for (let i = 0; i < n; i++) {
        const bytes = all[from + i]!;
        u8.set(bytes, pub.place(bytes.byteLength));
      }
    } catch (err) {
      pub.abandon();
      release(pub.site);
      throw err;
    }
    pub.publish();
    return n;
  }

  /**
   * Publish `bytes` if there is room now (always, for `'overwrite'`); false otherwise. Takes the lock
   * (waits for it until `deadline`, then ERR_MMAP_TOPIC_TIMEOUT: false means no room, never no lock).
   */
  #tryOne(pub: Publisher, bytes: Uint8Array, deadline: bigint, timeout = Infinity): boolean {
    if (!acquire(pub.site, deadline)) throw topicTimeout('waiting for the publish lock', timeout);
    return this.#oneLocked(pub, bytes);
  }

  /** #tryOne with the lock taken; lets go of it. */
  #oneLocked(pub: Publisher, bytes: Uint8Array): boolean {
    pub.begin();
    if (!pub.plan(bytes.byteLength)) {
      release(pub.site);
      return false;
    }
    try {
      pub.claim();
      this.#mem.u8.set(bytes, pub.place(bytes.byteLength));
    } catch (err) {
      pub.abandon();
      release(pub.site);
      throw err;
    }
    pub.publish();
    return true;
  }

  /** Publish a message if it fits now (`'block'`: no subscriber a ring behind); false otherwise. */
  tryPublish(data: string | ArrayBufferView): boolean {
    const bytes = this.#bytes(data);
    const pub = this.#prepare('tryPublish');
    if (this.#tryOne(pub, bytes, -1n, Infinity)) return true;
    // Subscribers store their cursors lazily: ask them to report at their next read.
    Atomics.store(this.#mem.i32, TOPIC.PUBLISHER_WAITING >>> 2, 1);
    this.#mem.checkFaults('tryPublish'); // the looks at the cursors may have hit a lost page
    return false;
  }

  /**
   * Publish one message to every subscriber. `'block'`: waits while the slowest live subscriber is a
   * ring behind, up to `timeout` ms (`ERR_MMAP_TOPIC_TIMEOUT`). `'overwrite'`: never waits for room.
   */
  publish(data: string | ArrayBufferView, options?: ChannelWaitOptions | number): void {
    const bytes = this.#bytes(data);
    const timeout = parseTimeout(options);
    const pub = this.#prepare('publish');
    // The deadline covers the wait for the lock too (-1n, no clock read, without a timeout; and no
    // call of deadlineOf() on the common path, which is at V8's inlining budget).
    const deadline = timeout === Infinity ? NEVER : deadlineOf(timeout);
    if (this.#tryOne(pub, bytes, deadline, timeout)) return;
    do this.#waitRoom(pub, bytes.byteLength, timeout, deadline);
    while (!this.#tryOne(pub, bytes, deadline, timeout));
  }

  /** Like {@link Topic.publish} without blocking the event loop. */
  publishAsync(data: string | ArrayBufferView, options?: ChannelWaitOptions | number): Promise<void> {
    try {
      const bytes = this.#bytes(data);
      const timeout = parseTimeout(options);
      const pub = this.#prepare('publishAsync');
      const i32 = this.#mem.i32;
      // The lock free: take it here (a holder copies one message; only a reserve() holds it long).
      if (Atomics.load(i32, TOPIC.LOCK >>> 2) === 0 && this.#tryOne(pub, bytes, -1n)) return yieldDue(1) ? yieldToLoop() : Promise.resolve();
      return this.#publishAsyncWaiting(pub, bytes, timeout, signalOf(options));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  async #publishAsyncWaiting(pub: Publisher, bytes: Uint8Array, timeout: number, signal: AbortSignal | undefined): Promise<void> {
    const deadline = deadlineOf(timeout);
    for (;;) {
      if (!(await acquireAsync(pub.site, deadline, signal))) throw topicTimeout('waiting for the publish lock', timeout);
      if (this.#closed || this.#mem.mapping.closed) release(pub.site);
      this.#check('publishAsync');
      if (this.#oneLocked(pub, bytes)) return;
      await this.#waitRoomAsync(pub, bytes.byteLength, timeout, deadline, signal);
      this.#check('publishAsync');
    }
  }

  #many(messages: unknown): Uint8Array[] {
    validateArray(messages, 'messages');
    const all: Uint8Array[] = [];
    for (let i = 0; i < messages.length; i++) all.push(this.#bytes(messages[i], `messages[${i}]`));
    return all;
  }

  /**
   * Publish several messages, in order, taking the lock once per run that fits (one wake-up of
   * subscribers per run). On a timeout the error's `sent` says how many went.
   */
  publishMany(messages: ReadonlyArray<string | ArrayBufferView>, options?: ChannelWaitOptions | number): void {
    const all = this.#many(messages);
    const timeout = parseTimeout(options);
    const pub = this.#prepare('publishMany');
    let sent = 0;
    let deadline: bigint | undefined;
    try {
      while (sent < all.length) {
        if (!acquire(pub.site, (deadline ??= deadlineOf(timeout)))) throw topicTimeout('waiting for the publish lock', timeout);
        const n = this.#run(pub, all, sent);
        sent += n;
        if (n === 0) this.#waitRoom(pub, all[sent]!.byteLength, timeout, deadline);
      }
    } catch (err) {
      throw batchStopped(err, sent);
    }
  }

  /** Like {@link Topic.publishMany} without blocking the event loop. */
  async publishManyAsync(messages: ReadonlyArray<string | ArrayBufferView>, options?: ChannelWaitOptions | number): Promise<void> {
    const all = this.#many(messages);
    const timeout = parseTimeout(options);
    const signal = signalOf(options);
    const pub = this.#prepare('publishManyAsync');
    let sent = 0;
    const deadline = deadlineOf(timeout);
    try {
      while (sent < all.length) {
        if (!(await acquireAsync(pub.site, deadline, signal))) throw topicTimeout('waiting for the publish lock', timeout);
        if (this.#closed || this.#mem.mapping.closed) release(pub.site);
        this.#check('publishManyAsync');
        const n = this.#run(pub, all, sent);
        sent += n;
        if (n === 0) await this.#waitRoomAsync(pub, all[sent]!.byteLength, timeout, deadline, signal);
        else if (yieldDue(n)) await yieldToLoop();
        this.#check('publishManyAsync');
      }
    } catch (err) {
      throw batchStopped(err, sent);
    }
  }

  /**
   * Zero copy: reserve room for a message of up to `length` bytes (default `maxMessageSize`) in the
   * ring, write it into `buffer`, then `commit(length)`. Holds the publish lock until then (other
   * publishers wait; subscribers do not). `'block'`: waits for room like `publish`.
   */
  reserve(length?: number, options?: ChannelWaitOptions | number): TopicReservation {
    const max = length === undefined ? this.#mem.g.maxMessageSize : validateInt32(length, 'length', 0, this.#mem.g.maxMessageSize);
    const timeout = parseTimeout(options);
    const pub = this.#prepare('reserve');
    let deadline: bigint | undefined;
    for (;;) {
      if (!acquire(pub.site, (deadline ??= deadlineOf(timeout)))) throw topicTimeout('waiting for the publish lock', timeout);
      pub.begin();
      if (pub.plan(max)) break;
      release(pub.site);
      this.#waitRoom(pub, max, timeout, deadline);
    }
    let at: number;
    try {
      pub.claim();
      at = pub.place(max);
    } catch (err) {
      pub.abandon();
      release(pub.site);
      throw err;
    }
    holdAcrossCalls(pub.site, true);
    const mem = this.#mem;
    const buffer = mem.u8.subarray(at, at + max);
    let done = false;
    const cancel = (): void => {
      if (done) return;
      done = true;
      this.#reserved = undefined;
      holdAcrossCalls(pub.site, false);
      pub.abandon();
      release(pub.site); // nothing published: TAIL stays; INTENT past it only makes subscribers careful
    };
    this.#reserved = cancel;
    return {
      buffer,
      commit: (n?: number) => {
        if (this.#closed || mem.mapping.closed) throw closedError('commit', 'Topic', ' (the reservation was given up)');
        if (done) throw invalidState('this reservation was already committed or cancelled');
        const len = n === undefined ? max : validateInt32(n, 'length', 0, max);
        done = true;
        this.#reserved = undefined;
        holdAcrossCalls(pub.site, false);
        pub.shrinkLast(at, max, len);
        pub.publish();
      },
      cancel,
    };
  }

  #reap(): boolean {
    const now = performance.now();
    if (now - this.#reapedAt < REAP_EVERY_MS) return false;
    this.#reapedAt = now;
    return true;
  }

  /** Wait until a record of `length` bytes fits ('block'), by this handle's strategy. */
  #waitRoom(pub: Publisher, length: number, timeout: number, deadline: bigint): void {
    const site = this.#roomSite!;
    this.#roomFor = length;
    // Subscribers store their cursors lazily: the flag asks them to report at their next read.
    Atomics.store(this.#mem.i32, TOPIC.PUBLISHER_WAITING >>> 2, 1);
    for (let i = 0; i < 64; i++) if (pub.roomNow(length, false)) return;
    for (;;) {
      const seen = Atomics.load(this.#mem.i32, TOPIC.NOT_FULL >>> 2);
      if (pub.roomNow(length, this.#reap())) return;
      // Before sleeping: a ring lost under the topic faults here, instead of a wait for subscribers
      // that fault on it too.
      pub.probe();
      this.#mem.checkFaults('publish');
      if (!this.#strategy.sleep(site, seen, deadline)) throw topicTimeout('waiting for room (the slowest subscriber is a whole ring behind)', timeout);
    }
  }

  async #waitRoomAsync(pub: Publisher, length: number, timeout: number, deadline: bigint, signal: AbortSignal | undefined): Promise<void> {
    const site = this.#roomSite!;
    Atomics.store(this.#mem.i32, TOPIC.PUBLISHER_WAITING >>> 2, 1); // as in #waitRoom
    for (;;) {
      this.#roomFor = length;
      const seen = Atomics.load(this.#mem.i32, TOPIC.NOT_FULL >>> 2);
      if (pub.roomNow(length, this.#reap())) return;
      pub.probe(); // as in #waitRoom
      this.#mem.checkFaults('publish');
      if (!(await this.#strategy.sleepAsync(site, seen, deadline, signal))) throw topicTimeout('waiting for room (the slowest subscriber is a whole ring behind)', timeout);
      this.#check('publish');
      signal?.throwIfAborted();
    }
  }

  /**
   * A new subscription with its own cursor: from the next message published (`from: 'latest'`,
   * default) or from the oldest still in the ring (`'oldest'`). It takes the publish lock for a moment
   * (so that its start and sequence number are exact, and `'block'` publishers count it from then on).
   */
  subscribe(options?: SubscribeOptions): Subscription {
    const o = validateOptions(options, 'options', SUBSCRIBE_OPTIONS);
    const from = o.from === undefined ? 'latest' : validateOneOf(o.from, 'options.from', ['latest', 'oldest'] as const);
    const lapped = o.lapped === undefined ? 'error' : validateOneOf(o.lapped, 'options.lapped', ['error', 'count'] as const);
    const strategy = parseStrategy(o);
    const timeout = o.timeout === undefined ? Infinity : parseTimeout({ timeout: o.timeout as number });
    this.#check('subscribe');
    if (this.#reserved !== undefined) throw invalidState('a reserve() of this handle is not committed yet: commit or cancel it first');
    const mem = this.#mem;
    const site = { lock: mem.lock, instance: mem.instance, repair: () => repairAfterTakeover(mem) };
    if (!acquire(site, deadlineOf(timeout))) throw topicTimeout('waiting for the publish lock to subscribe', timeout);
    let cursor: number;
    let seq: number;
    let entry: number;
    try {
      const tail = mem.raw64(TOPIC.TAIL);
      const head = mem.raw64(TOPIC.HEAD);
      const next = mem.raw64(TOPIC.NEXT_SEQ);
      if (!(tail >= 0 && tail % 8 === 0 && head >= 0 && head % 8 === 0 && head <= tail && tail - head <= mem.g.capacity && next >= 0)) {
        throw topicCorrupt(`HEAD ${head}, TAIL ${tail} and NEXT_SEQ ${next} do not describe a ring of ${mem.g.capacity} bytes`);
      }
      cursor = tail;
      seq = next;
      if (from === 'oldest' && head < tail) {
        const w = mem.ring + ((head & mem.mask) >>> 2) + RECORD_SEQ;
        cursor = head;
        seq = (mem.i32[w]! >>> 0) + mem.i32[w + 1]! * 2 ** 32; // a padding record carries the next record's number
      }
      entry = attachSubscriber(mem, cursor);
    } finally {
      release(site);
    }
    // Its start was read from the memory: never start a subscription from zeros of a repaired page.
    mem.checkFaults('subscribe');
    const sub = new Subscription(kConstruct, { mem, entry, cursor, seq, strategy, errorOnGap: lapped === 'error', onClose: (s) => this.#subscriptions.delete(s) });
    this.#subscriptions.add(sub);
    return sub;
  }

  /**
   * Close this handle: its subscriptions, an uncommitted reservation (given up), and as a publisher
   * it counts as gone for the end of the stream. Unmaps the memory if this handle mapped it. Idempotent.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const mem = this.#mem;
    if (!mem.mapping.closed) {
      this.#reserved?.();
      for (const sub of [...this.#subscriptions]) sub.close();
      if (this.#publisher !== undefined) {
        closePublisher(mem.i32, mem.g, this.#publisher.entry);
        Atomics.add(mem.i32, TOPIC.NOT_EMPTY >>> 2, 1);
        notifyWord(mem.notEmpty, INT32_MAX);
      }
      if (this.#creator) Atomics.compareExchange(mem.i32, TOPIC.CREATOR >>> 2, process.pid, 0);
    }
    mem.release();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * `util.inspect(topic)` (and `console.log`): capacity, maxMessageSize, policy, the wait strategy,
   * whether this handle publishes, its open subscriptions, closed. Reads only this handle's own
   * state, never the shared memory or the address; never throws.
   */
  [Symbol.for('nodejs.util.inspect.custom')](depth: number, options: import('node:util').InspectOptionsStylized, inspect: typeof import('node:util').inspect): string {
    if (depth < 0) return options.stylize('[Topic]', 'special');
    const fields: Record<string, unknown> = {};
    try {
      const g = this.#mem.g;
      fields['capacity'] = g.capacity;
      fields['maxMessageSize'] = g.maxMessageSize;
      fields['policy'] = g.policy;
      fields['wait'] = this.#strategy.name;
      fields['publisher'] = this.#publisher !== undefined;
      fields['subscriptions'] = this.#subscriptions.size;
      fields['closed'] = this.#closed;
    } catch {
      fields['state'] = 'unknown';
    }
    return `Topic ${inspect(fields, options)}`;
  }
}

export { Subscription, type TopicDrainHandler, type TopicEndReason, type TopicInspection, type TopicPolicy };
