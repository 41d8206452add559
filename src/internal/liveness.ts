/**
 * Whether a process is alive, for the protocols that recognize a dead party by its pid (channels,
 * the CLI's pipes). One answer for every caller: a zombie counts as dead, EPERM as alive.
 * @module
 */
import { readFileSync } from 'node:fs';

/**
 * Whether process `pid` exists and is not a zombie. `kill(pid, 0)` failing with EPERM means it exists
 * (another user's); a zombie (dead, not yet reaped by its parent) answers `kill` too, so its state is
 * read from /proc.
 */
export function pidAlive(pid: number): boolean {
  if (!(pid > 0)) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as { code?: string }).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.charAt(stat.lastIndexOf(')') + 2) !== 'Z';
  } catch {
    return false; // gone between the two looks
  }
}
