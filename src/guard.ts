/**
 * The SIGBUS guard (native/guard.c): installed when mmapkit is first imported, unless the environment
 * sets `MMAPKIT_SIGBUS_GUARD=0`. See docs/safety.md.
 * @module
 */
import { native } from './binding.js';
import { systemError } from './errors.js';

if (process.env['MMAPKIT_SIGBUS_GUARD'] !== '0') {
  const rc = native.guardInstall();
  if (rc < 0) process.emitWarning(systemError(rc, 'sigaction').message, { code: 'MMAPKIT_NO_SIGBUS_GUARD' });
  // A JavaScript SIGBUS listener replaces every native handler, ours included: a bus error in a
  // mapping would then never be repaired and the faulting access would run again forever. Say so.
  process.on('newListener', (event) => {
    if (event === 'SIGBUS') {
      process.emitWarning(
        "A process.on('SIGBUS') listener replaces mmapkit's SIGBUS guard: a read of a truncated mapped file " +
          'will no longer be repaired and will hang the process in a fault loop. See docs/safety.md.',
        { code: 'MMAPKIT_SIGBUS_LISTENER' },
      );
    }
  });
}

/**
 * Whether the SIGBUS guard is installed in this process: a mapped file truncated by another process
 * then marks the mapping `faulted` instead of killing the process. It is installed on import unless
 * `MMAPKIT_SIGBUS_GUARD=0`. A JavaScript `process.on('SIGBUS')` listener replaces it (a warning says so).
 */
export function guardInstalled(): boolean {
  return native.guardInstalled();
}
