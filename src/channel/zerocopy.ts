/**
 * Zero copy: a producer writes a message straight into its lane (`reserve()` / `commit()`), a
 * consumer reads one where it lies (`receiveInPlace()` / `release()`). One of each at a time per
 * handle: a reservation is the unpublished end of the handle's lane, a message in place keeps the
 * handle's hold on its lane until released.
 * @module
 */
import { closedError, invalidState } from '../internal/errors.js';
import { validateInt32 } from '../internal/validators.js';
import type { ChannelCore } from './core.js';
import { CHANNEL } from './layout.js';
import { type ChannelWaitOptions, deadlineOf, parseTimeout } from './waiting.js';

/** A message read in place: `data` is a view into the channel's memory, valid until `release()`. */
export interface InPlaceMessage {
  /**
   * The message bytes, in shared memory (zero copy). After `release()` the producer may reuse the
   * bytes for a later message: copy what you keep.
   */
  readonly data: Buffer;
  /**
   * Give the message's bytes back to its producer. Idempotent. Throws `ERR_MMAP_FAULTED` (having given
   * them back) when a page of the channel's memory was lost meanwhile (truncated, out of space): what
   * `data` showed may have been zeros. Trust what you read only once `release()` returned.
   */
  release(): void;
}

/** Space reserved for one message: write into `buffer`, then `commit(length)`. */
export interface Reservation {
  /** `maxMessageSize` bytes of the lane, in shared memory. */
  readonly buffer: Buffer;
  /**
   * Publish the first `length` bytes (default: all of `buffer`) as the message. `ERR_MMAP_FAULTED`,
   * publishing nothing, when a page of the channel's memory was lost (the bytes written may be gone).
   */
  commit(length?: number): void;
}

export function reserve(core: ChannelCore, options: ChannelWaitOptions | number | undefined): Reservation {
  const timeout = parseTimeout(options);
  core.check('reserve');
  core.noOutstanding(core.outstandingReserve, 'reserve');
  const writer = core.attachProducer();
  const max = core.g.maxMessageSize;
  let at = writer.reserve(max);
  if (at < 0) {
    const deadline = deadlineOf(timeout);
    while ((at = writer.reserve(max)) < 0) core.waitRoom(max, timeout, deadline);
  }
  const buffer = core.u8.subarray(at + CHANNEL.RECORD_HEADER, at + CHANNEL.RECORD_HEADER + max);
  let done = false;
  // close() with the reservation open gives it up: nothing of it was published.
  core.outstandingReserve = () => {
    done = true;
    core.outstandingReserve = undefined;
    writer.rollback();
  };
  return {
    buffer,
    commit: (length?: number) => {
      if (core.closed) throw closedError('commit', 'Channel', ' (the reservation was given up)');
      if (done) throw invalidState('this reservation was already committed');
      if (core.mapping.closed) throw closedError('commit', 'memory');
      const n = length === undefined ? max : validateInt32(length, 'length', 0, max);
      done = true;
      core.outstandingReserve = undefined;
      writer.commit(at, n);
      // ERR_MMAP_FAULTED, publishing nothing, if what was written went into a repaired page.
      core.publish(1, 'commit');
    },
  };
}

export function receiveInPlace(core: ChannelCore, options: ChannelWaitOptions | number | undefined): InPlaceMessage | null {
  const timeout = parseTimeout(options);
  core.prepareReceive('receiveInPlace');
  const reader = core.reader;
  const deadline = deadlineOf(timeout);
  for (;;) {
    if (reader.lock()) {
      const at = reader.next();
      if (at < 0) {
        core.finishLane(); // only padding was left
        continue;
      }
      try {
        // Never hand out a message in a page already lost (it reads as zeros): it is dropped.
        core.touchMessage(at, reader.length, 'receiveInPlace');
      } catch (err) {
        reader.advance();
        core.finishLane();
        throw err;
      }
      const data = core.u8.subarray(at, at + reader.length);
      let released = false;
      const finish = (): boolean => {
        if (released || core.mapping.closed) return false;
        released = true;
        core.outstandingTake = undefined;
        reader.advance();
        core.finishLane();
        return true;
      };
      // close() gives the message back without a look at the faults (close never throws).
      core.outstandingTake = finish;
      const release = (): void => {
        // A page lost while the caller read the message in place read as zeros: say so.
        if (finish()) core.checkFaults('release a message read in place');
      };
      return { data, release };
    }
    if (!core.waitMessage(timeout, deadline)) return core.end();
  }
}
