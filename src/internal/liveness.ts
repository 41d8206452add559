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
    const stat = procStat(pid);
    return stat !== undefined && stat[STATE] !== 'Z'; // undefined: gone between the two looks
  } catch {
    return false; // an entry we cannot read counts as gone, like a missing one
  }
}

/** Fields of /proc/ID/stat (see proc(5)) counted from the state, past the command name. */
const STATE = 0;
const FLAGS = 6;
/** PF_EXITING in the flags (include/linux/sched.h): the task is in do_exit(). */
const PF_EXITING = 0x4;

/**
 * The fields of /proc/ID/stat after the command name (which may hold spaces and parentheses), from the
 * state on; undefined when there is no such task (ENOENT, ESRCH). Other errors are thrown.
 */
function procStat(id: number): string[] | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${id}/stat`, 'latin1');
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ENOENT' || code === 'ESRCH') return undefined;
    throw err;
  }
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/**
 * Whether thread `tid` has exited or is exiting: no /proc entry, a zombie or dead task, or one in
 * `do_exit()` (PF_EXITING). Unlike {@link pidAlive}, a task that still answers `kill` but is on its
 * way out counts as gone: the futex Mutex asks this to tell the kernel's hand-over of a dead owner's
 * lock (in progress until the woken waiter runs) from a corrupt lock word.
 */
export function threadExited(tid: number): boolean {
  if (!(tid > 0)) return false;
  let stat: string[] | undefined;
  try {
    stat = procStat(tid);
  } catch {
    return false; // /proc unreadable: the word's owner cannot be shown gone
  }
  if (stat === undefined) return true;
  const state = stat[STATE];
  return state === 'Z' || state === 'X' || state === 'x' || (Number(stat[FLAGS]) & PF_EXITING) !== 0;
}
