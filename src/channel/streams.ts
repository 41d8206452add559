/**
 * A channel as Node streams: `readable()` (object mode, one Buffer per message, backpressure) and
 * `writable()` (one message per chunk). Built on the public async methods only.
 * @module
 */
import { Readable, Writable } from 'node:stream';
import { validateBoolean, validateOptions } from '../internal/validators.js';

/** What a readable stream and an async iterator need: a handle that receives (a Channel, a Subscription). */
export interface MessageSource {
  receiveAsync(options?: { signal?: AbortSignal }): Promise<Buffer | null>;
}

/** What the writable stream needs of a channel handle. */
export interface StreamSource extends MessageSource {
  sendAsync(data: Uint8Array): Promise<void>;
  close(): void;
}

/** Validate readable()'s options: its highWaterMark counts messages (Node validates the value). */
export function parseReadableOptions(options: unknown): number | undefined {
  return validateOptions(options, 'options', ['highWaterMark'] as const).highWaterMark as number | undefined;
}

/**
 * Object mode keeps message boundaries: each message stays one chunk, whatever reads it. It only
 * receives when the stream wants more; destroying it cancels its pending receive without taking a
 * message.
 */
export function readableOf(channel: MessageSource, hwm: number | undefined): Readable {
  let reading = false;
  const cancel = new AbortController();
  const stream: Readable = new Readable({
    objectMode: true,
    ...(hwm === undefined ? {} : { highWaterMark: hwm }),
    read: () => {
      if (reading) return;
      reading = true;
      const pump = async (): Promise<void> => {
        try {
          for (;;) {
            const msg = await channel.receiveAsync({ signal: cancel.signal });
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

/** Validate writable()'s options. */
export function parseWritableOptions(options: unknown): { closeAtEnd: boolean; hwm: number | undefined } {
  const o = validateOptions(options, 'options', ['close', 'highWaterMark'] as const);
  return { closeAtEnd: o.close === undefined ? true : validateBoolean(o.close, 'options.close'), hwm: o.highWaterMark as number | undefined };
}

/** Each chunk becomes one message; a write completes once the message is in the lane. */
export function writableOf(channel: StreamSource, closeAtEnd: boolean, hwm: number | undefined): Writable {
  return new Writable({
    ...(hwm === undefined ? {} : { highWaterMark: hwm }),
    write: (chunk: Buffer, _encoding, callback) => {
      channel.sendAsync(chunk).then(() => callback(), callback);
    },
    final: (callback) => {
      if (closeAtEnd) channel.close();
      callback();
    },
  });
}

/**
 * `for await`: receives until the end of the stream. A plain iterator over receiveAsync (not an async
 * generator: one promise per message, not three). Leaving the loop early takes nothing more.
 */
export function messageIterator(source: MessageSource): AsyncIterator<Buffer> {
  let done = false;
  const finished: IteratorReturnResult<undefined> = { done: true, value: undefined };
  return {
    next: (): Promise<IteratorResult<Buffer>> => {
      if (done) return Promise.resolve(finished);
      return source.receiveAsync().then(
        (value) => {
          if (value !== null) return { done: false, value };
          done = true;
          return finished;
        },
        (err: unknown) => {
          done = true;
          throw err;
        },
      );
    },
    return: (): Promise<IteratorResult<Buffer>> => {
      done = true;
      return Promise.resolve(finished);
    },
  };
}
