/**
 * The SIGBUS guard (native/guard.c) is installed when the addon loads. See docs/safety.md.
 * @module
 */
import { native } from './binding.js';

/**
 * Whether the SIGBUS guard is installed in this process: a mapped file truncated by another process
 * then marks the mapping `faulted` instead of killing the process. Note that a JavaScript
 * `process.on('SIGBUS')` listener replaces native handlers; do not add one.
 */
export function guardInstalled(): boolean {
  return native.guardInstalled();
}
