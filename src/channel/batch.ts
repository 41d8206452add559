/**
 * Many messages per call: the way to the highest message rate. A batch of sends publishes the lane
 * once (one store of LANE_WRITE) and wakes consumers once; a batch of receives holds a lane for
 * several records and stores its read position once. `receiveInto` and `drain` also allocate
 * nothing per message.
 * @module
 */
import { types } from 'node:util';
import { invalidArgType, outOfRange, batchStopped } from '../internal/errors.js';

const { isProxy } = types;
import { validateArray, validateInt32 } from '../internal/validators.js';
import { type ChannelCore, crossesPage, toBytes } from './core.js';
import { type ChannelWaitOptions, deadlineOf, parseTimeout, signalOf, yieldDue, yieldToLoop } from './waiting.js';
import { faultsMoved } from './fault.js';

const INT32_MAX = 0x7fffffff;
const DEFAULT_MAX = 1024;


/**
 * Check every message of a batch before the first is sent (a bad one sends nothing). A batch of
 * Uint8Arrays (Buffers) is used as it is; one with strings or other views gets an array of bytes.
 */
export function prepareSendMany(core: ChannelCore, messages: unknown): ReadonlyArray<Uint8Array> {
  // Every element is read (a getter may close the channel or unmap it) before the state is checked.
  validateArray(messages, 'messages');
  const max = core.g.maxMessageSize;
  let all: Uint8Array[] | undefined;
  for (let i = 0; i < messages.length; i++) {
    const m: unknown = messages[i];
    const bytes = m instanceof Uint8Array && all === undefined ? m : toBytes(m, `messages[${i}]`);
    if (bytes.byteLength > max) throw outOfRange(`messages[${i}].byteLength`, `<= ${max} (the channel's maxMessageSize)`, bytes.byteLength);
    if (bytes !== m && all === undefined) all = (messages as Uint8Array[]).slice(0, i);
    all?.push(bytes);
  }
  core.checkOpen('sendMany'); // the fault count: looked at before publishing (flush)
  core.noOutstanding(core.outstandingReserve, 'reserve');
  core.attachProducer();
  return all ?? (messages as Uint8Array[]);
}

/**
 * Publish what a batch appended and wake consumers for it. ERR_MMAP_FAULTED, publishing none of it,
 * when the memory faulted (see ChannelCore.publish).
 */
function flush(core: ChannelCore, appended: number, what: string): void {
  if (core.mapping.closed) return;
  if (appended === 0) core.checkFaults(what);
  else core.publish(appended, what);
}

/**
 * A batch send stopped by `err` with `unpublished` messages appended but not published: publish them
 * (they count as sent), unless the memory faulted: then they are given up, and the fault is the error.
 */
function stopped(core: ChannelCore, err: unknown, sent: number, unpublished: number): unknown {
  if (unpublished > 0) {
    try {
      flush(core, unpublished, 'sendMany');
    } catch (fault) {
      return batchStopped(fault, sent - unpublished);
    }
  }
  return batchStopped(err, sent);
}

export function sendMany(core: ChannelCore, messages: unknown, options: ChannelWaitOptions | number | undefined): void {
  const timeout = parseTimeout(options);
  const all = prepareSendMany(core, messages);
  const writer = core.writer!;
  let deadline: bigint | undefined;
  let sent = 0;
  let unpublished = 0;
  try {
    while (sent < all.length) {
      if (writer.append(all[sent]!)) {
        sent++;
        unpublished++;
        continue;
      }
      // Full: let consumers drain what went so far while we wait for room.
      flush(core, unpublished, 'sendMany');
      unpublished = 0;
      core.waitRoom(all[sent]!.byteLength, timeout, (deadline ??= deadlineOf(timeout)));
    }
    flush(core, unpublished, 'sendMany');
  } catch (err) {
    throw stopped(core, err, sent, unpublished);
  }
}

export async function sendManyAsync(core: ChannelCore, messages: unknown, options: ChannelWaitOptions | number | undefined): Promise<void> {
  const timeout = parseTimeout(options);
  const all = prepareSendMany(core, messages);
  const writer = core.writer!;
  let deadline: bigint | undefined;
  let sent = 0;
  let unpublished = 0;
  try {
    while (sent < all.length) {
      if (writer.append(all[sent]!)) {
        sent++;
        unpublished++;
        if (yieldDue(1)) {
          // A long batch into a lane that keeps finding room would hold the event loop for all of it.
          flush(core, unpublished, 'sendManyAsync');
          unpublished = 0;
          await yieldToLoop();
          if (sent < all.length) {
            core.check('sendManyAsync'); // closed meanwhile: never write for a closed producer
            signalOf(options)?.throwIfAborted();
          }
        }
        continue;
      }
      flush(core, unpublished, 'sendManyAsync');
      unpublished = 0;
      await core.waitRoomAsync(all[sent]!.byteLength, timeout, (deadline ??= deadlineOf(timeout)), signalOf(options), 'sendManyAsync');
    }
    flush(core, unpublished, 'sendManyAsync');
  } catch (err) {
    throw stopped(core, err, sent, unpublished);
  }
}

export function trySendMany(core: ChannelCore, messages: unknown): number {
  const all = prepareSendMany(core, messages);
  const writer = core.writer!;
  let sent = 0;
  while (sent < all.length && writer.append(all[sent]!)) sent++;
  flush(core, sent, 'trySendMany');
  return sent;
}

/** The `max` argument of the batch receives. */
function parseMax(max: unknown): number {
  return max === undefined ? DEFAULT_MAX : validateInt32(max, 'max', 1, INT32_MAX);
}

/** Take up to `limit` waiting messages (copies) into `out`, lane after lane; how many were taken. */
function takeRun(core: ChannelCore, out: Buffer[], limit: number): number {
  const reader = core.reader;
  const start = out.length;
  for (let lanes = 0, most = core.g.maxProducers; out.length < limit && lanes <= most; lanes++) {
    try {
      if (!reader.lock()) break;
      for (let at; out.length < limit && (at = reader.next()) >= 0;) {
        out.push(core.copyOut(at, reader.length));
        reader.advance();
      }
    } catch (err) {
      // Garbage in a lane: what this call took is the caller's; the error comes with the next call.
      if (out.length === start) throw err;
      core.deferred = err as Error;
      break;
    } finally {
      if (reader.lane >= 0) core.finishLane();
    }
  }
  // After the copies: a page lost meanwhile read as zeros; the copies are dropped with the error.
  core.checkFaults('receive');
  return out.length - start;
}

export function receiveMany(core: ChannelCore, max: unknown, options: ChannelWaitOptions | number | undefined, what: string): Buffer[] | null {
  const limit = parseMax(max);
  const timeout = parseTimeout(options);
  core.prepareReceive(what);
  const out: Buffer[] = [];
  const deadline = deadlineOf(timeout);
  while (takeRun(core, out, limit) === 0) {
    if (!core.waitMessage(timeout, deadline)) return core.end();
  }
  return out;
}

export async function receiveManyAsync(core: ChannelCore, max: unknown, options: ChannelWaitOptions | number | undefined): Promise<Buffer[] | null> {
  const limit = parseMax(max);
  const timeout = parseTimeout(options);
  core.prepareReceive('receiveManyAsync');
  const out: Buffer[] = [];
  let deadline: bigint | undefined;
  while (takeRun(core, out, limit) === 0) {
    if (!(await core.waitMessageAsync(timeout, (deadline ??= deadlineOf(timeout)), signalOf(options), 'receiveManyAsync'))) {
      core.end();
      if (yieldDue(0)) await yieldToLoop();
      return null;
    }
  }
  if (yieldDue(out.length)) await yieldToLoop();
  return out;
}

export function tryReceiveMany(core: ChannelCore, max: unknown): Buffer[] | null {
  const limit = parseMax(max);
  core.prepareReceive('tryReceiveMany');
  const out: Buffer[] = [];
  if (takeRun(core, out, limit) === 0 && core.atEnd()) return core.end();
  return out;
}

// ------------------------------------------------------------ receiveInto

/**
 * The lengths array of receiveInto: a Uint32Array, Int32Array or Float64Array (not an Array: an
 * element setter could run user code in the middle of a copy, with a lane held).
 */
export type LengthsArray = Uint32Array | Int32Array | Float64Array;

function checkInto(core: ChannelCore, target: unknown, lengths: unknown): Uint8Array {
  // No Proxy (instanceof sees through one): its traps would run user code in the middle of a copy,
  // with a lane held.
  if (!ArrayBuffer.isView(target) || isProxy(target)) throw invalidArgType('target', 'a Buffer, TypedArray or DataView', target);
  if (!(lengths instanceof Uint32Array || lengths instanceof Int32Array || lengths instanceof Float64Array) || isProxy(lengths)) {
    throw invalidArgType('lengths', 'a Uint32Array, Int32Array or Float64Array', lengths);
  }
  if (lengths.length === 0) throw outOfRange('lengths.length', '>= 1', 0);
  const bytes = target instanceof Uint8Array ? target : new Uint8Array(target.buffer, target.byteOffset, target.byteLength);
  if (bytes.byteLength < core.g.maxMessageSize) {
    // Smaller than the largest message: one that does not fit could never be taken.
    throw outOfRange('target.byteLength', `>= ${core.g.maxMessageSize} (the channel's maxMessageSize)`, bytes.byteLength);
  }
  return bytes;
}

/**
 * Copy waiting messages back to back into `target` while they fit; how many were copied. Messages
 * of up to 256 bytes that land on a 4-byte boundary are copied a word at a time (16 ns for 64 bytes,
 * where `Buffer#copy` takes 44: it makes a view per call); others with `Buffer#copy`.
 */
function takeInto(core: ChannelCore, target: Uint8Array, lengths: LengthsArray): number {
  const reader = core.reader;
  const u8 = core.u8;
  const src = core.i32;
  const room = target.byteLength;
  const most = lengths.length;
  const words = (target.byteOffset & 3) === 0 ? new Int32Array(target.buffer, target.byteOffset, room >>> 2) : undefined;
  let n = 0;
  let pos = 0;
  for (let lanes = 0, lanesMax = core.g.maxProducers; n < most && lanes <= lanesMax; lanes++) {
    let full = false;
    try {
      if (!reader.lock()) break;
      for (let at; n < most && (at = reader.next()) >= 0;) {
        const length = reader.length;
        if (pos + length > room) {
          full = true;
          break;
        }
        if (words !== undefined && (pos & 3) === 0 && length <= 256) {
          const s = at >>> 2;
          const d = pos >>> 2;
          const w = length >>> 2;
          for (let i = 0; i < w; i++) words[d + i] = src[s + i]!;
          for (let i = w << 2; i < length; i++) target[pos + i] = u8[at + i]!;
        } else {
          u8.copy(target, pos, at, at + length);
        }
        lengths[n++] = length;
        pos += length;
        reader.advance();
      }
    } catch (err) {
      if (n === 0) throw err; // as in takeRun
      core.deferred = err as Error;
      break;
    } finally {
      if (reader.lane >= 0) core.finishLane();
    }
    if (full) break;
  }
  core.checkFaults('receive'); // as in takeRun: the target may hold zeros, its count is not returned
  return n;
}

export function receiveInto(core: ChannelCore, target: unknown, lengths: unknown, options: ChannelWaitOptions | number | undefined): number | null {
  const timeout = parseTimeout(options);
  const bytes = checkInto(core, target, lengths);
  core.prepareReceive('receiveInto');
  const deadline = deadlineOf(timeout);
  for (;;) {
    const n = takeInto(core, bytes, lengths as LengthsArray);
    if (n > 0) return n;
    if (!core.waitMessage(timeout, deadline)) return core.end();
  }
}

export async function receiveIntoAsync(core: ChannelCore, target: unknown, lengths: unknown, options: ChannelWaitOptions | number | undefined): Promise<number | null> {
  const timeout = parseTimeout(options);
  const bytes = checkInto(core, target, lengths);
  core.prepareReceive('receiveIntoAsync');
  let deadline: bigint | undefined;
  for (;;) {
    const n = takeInto(core, bytes, lengths as LengthsArray);
    if (n > 0) {
      if (yieldDue(n)) await yieldToLoop();
      return n;
    }
    if (!(await core.waitMessageAsync(timeout, (deadline ??= deadlineOf(timeout)), signalOf(options), 'receiveIntoAsync'))) return core.end();
  }
}

// ------------------------------------------------------------ drain

/**
 * A handler of {@link drain}: `buffer` is the channel's whole memory, the message is
 * `buffer[offset .. offset + length)`. Valid during the call only: copy what you keep.
 */
export type DrainHandler = (buffer: Buffer, offset: number, length: number) => void;

/**
 * Call `handler` for up to `limit` waiting messages in place; how many were handled. A message whose
 * handler throws counts as taken (it is not delivered again), and the error propagates.
 */
function drainRun(core: ChannelCore, handler: DrainHandler, limit: number): number {
  const reader = core.reader;
  const u8 = core.u8;
  const faultCount = core.faultCount;
  const pageOffset = core.pageOffset;
  const pageMask = core.pageMask;
  let n = 0;
  let inHandler = false;
  // close() from inside the handler gives back what was taken before it lets go of the lane.
  core.outstandingTake = () => {
    if (reader.lane >= 0) core.finishLane();
  };
  core.drainDepth++;
  try {
    for (let lanes = 0, lanesMax = core.g.maxProducers; n < limit && lanes <= lanesMax; lanes++) {
      try {
        if (!reader.lock()) break;
        for (let at; n < limit && (at = reader.next()) >= 0;) {
          const length = reader.length;
          reader.advance(); // taken, whatever the handler does
          n++;
          // In place: never hand out a message on a page already lost (it reads as zeros): touch its
          // pages, then look (core.touchMessage, inline). The look also reports a page lost while the
          // previous handler ran, before any other handler runs.
          if (crossesPage(at, length, pageOffset, pageMask)) core.touchPages(at, length);
          if (faultCount[0] !== core.faultsSeen) faultsMoved(core, 'drain');
          inHandler = true;
          handler(u8, at, length);
          inHandler = false;
          if (core.closed) return n; // closed by the handler: close() let go of the lane
        }
      } catch (err) {
        // Garbage found after messages were handled: report it with the next call (as in takeRun).
        // A handler's own error propagates at once, and so does a fault of the memory.
        if (inHandler || n === 0 || core.closed || core.faults.reason !== undefined) throw err;
        core.deferred = err as Error;
        break;
      } finally {
        if (reader.lane >= 0 && !core.mapping.closed) core.finishLane();
      }
    }
  } finally {
    core.drainDepth--;
    core.outstandingTake = undefined;
  }
  // A page lost while the last handler read its message: it saw zeros; say so now.
  core.checkFaults('drain');
  return n;
}

function checkDrain(core: ChannelCore, handler: unknown, max: unknown, what: string): number {
  if (typeof handler !== 'function') throw invalidArgType('handler', 'a function', handler);
  const limit = parseMax(max);
  core.prepareReceive(what);
  return limit;
}

export function drain(core: ChannelCore, handler: unknown, max: unknown, options: ChannelWaitOptions | number | undefined): number | null {
  const timeout = parseTimeout(options);
  const limit = checkDrain(core, handler, max, 'drain');
  const deadline = deadlineOf(timeout);
  for (;;) {
    const n = drainRun(core, handler as DrainHandler, limit);
    if (n > 0) return n;
    if (!core.waitMessage(timeout, deadline)) return core.end();
  }
}

export async function drainAsync(core: ChannelCore, handler: unknown, max: unknown, options: ChannelWaitOptions | number | undefined): Promise<number | null> {
  const timeout = parseTimeout(options);
  const limit = checkDrain(core, handler, max, 'drainAsync');
  let deadline: bigint | undefined;
  for (;;) {
    const n = drainRun(core, handler as DrainHandler, limit);
    if (n > 0) {
      if (yieldDue(n)) await yieldToLoop();
      return n;
    }
    if (!(await core.waitMessageAsync(timeout, (deadline ??= deadlineOf(timeout)), signalOf(options), 'drainAsync'))) return core.end();
  }
}
