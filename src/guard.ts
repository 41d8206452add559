/**
 * The SIGBUS guard (native/guard.c): installed when mmapkit is first imported, unless the environment
 * sets `MMAPKIT_SIGBUS_GUARD=0`. See docs/safety.md.
 * @module
 */
import { isMainThread } from 'node:worker_threads';
import { native } from './binding.js';
import { systemError } from './internal/errors.js';

const enabled = process.env['MMAPKIT_SIGBUS_GUARD'] !== '0';
/**
 * Whether a JavaScript SIGBUS listener was added after the guard went in (libuv's handler then
 * replaced ours). A listener from before the import does not count: our handler replaced libuv's.
 */
let replaced = false;

function install(again: boolean): void {
  const rc = native.guardInstall(again);
  if (rc < 0) process.emitWarning(systemError(rc, 'sigaction').message, { code: 'MMAPKIT_NO_SIGBUS_GUARD' });
}

if (enabled) {
  install(false);
  // Signal listeners exist on the main thread only (workers do not receive signals).
  if (isMainThread) {
    // A JavaScript SIGBUS listener replaces every native handler, ours included: a bus error in a
    // mapping would then never be repaired, and the faulting access would run again forever.
    process.on('newListener', (event) => {
      if (event === 'SIGBUS' && process.listenerCount('SIGBUS') === 0) {
        replaced = true;
        process.emitWarning(
          "A process.on('SIGBUS') listener replaces mmapkit's SIGBUS guard: a read of a truncated mapped file " +
            'will no longer be repaired and will hang the process in a fault loop. See docs/safety.md.',
          { code: 'MMAPKIT_SIGBUS_LISTENER' },
        );
      }
    });
    // When the last listener goes, libuv resets SIGBUS to its default action: put the guard back.
    // (Node's own 'removeListener' handler, which does that reset, was registered before this one.)
    process.on('removeListener', (event) => {
      if (event === 'SIGBUS' && process.listenerCount('SIGBUS') === 0) {
        install(true);
        replaced = false;
      }
    });
  }
}

/**
 * Whether the SIGBUS guard protects this process now: a mapped file truncated by another process
 * then marks the mapping `faulted` instead of killing the process. It is installed on import unless
 * `MMAPKIT_SIGBUS_GUARD=0`; a JavaScript `process.on('SIGBUS')` listener replaces it (false while one
 * is registered; a warning says so) and it comes back when the last such listener is removed.
 */
export function guardInstalled(): boolean {
  return native.guardInstalled() && !replaced;
}
