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

/** PF_EXITING in the flags of /proc/TID/stat (include/linux/sched.h): the task is in do_exit(). */
const PF_EXITING = 0x4;

/**
 * Whether thread `tid` has exited or is exiting: no /proc entry, a zombie or dead task, or one in
 * `do_exit()` (PF_EXITING). Unlike {@link pidAlive}, a task that still answers `kill` but is on its
 * way out counts as gone: the futex Mutex asks this to tell the kernel's hand-over of a dead owner's
 * lock (in progress until the woken waiter runs) from a corrupt lock word.
 */
export function threadExited(tid: number): boolean {
  if (!(tid > 0)) return false;
  let stat: string;
  try {
    stat = readFileSync(`/proc/${tid}/stat`, 'latin1');
  } catch (err) {
    const code = (err as { code?: string }).code;
    return code === 'ENOENT' || code === 'ESRCH';
  }
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const state = fields[0];
  return state === 'Z' || state === 'X' || state === 'x' || (Number(fields[6]) & PF_EXITING) !== 0;
}
