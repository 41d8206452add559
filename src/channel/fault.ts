/**
 * Bus errors in the memory of a Channel or a Topic. When another process truncates the file or shared
 * memory object under it, or the file system cannot provide a page of a sparse one (a full tmpfs),
 * touching the lost page raises SIGBUS; the guard (src/guard.ts) maps a page of zeros there and marks
 * the mapping faulted. Zeros pass the layouts' checks (a record of length 0 is an empty message), so
 * every path that copies a message out, hands one out in place, or publishes one looks at the guard's
 * count of repaired faults after its accesses, and a handle whose memory faulted throws
 * `ERR_MMAP_FAULTED` from then on (docs/safety.md, "Channels and topics over truncated memory").
 *
 * Cost: the count is an Int32Array over the guard's counter. A look is one load and one compare; only
 * when the count moved (a fault anywhere in the process) does the handle ask its mapping (a native
 * call). The guard repairs a fault synchronously, inside the faulting access, so a look that follows
 * this thread's accesses in program order sees every fault they raised: a plain load is enough (the
 * mapping's own getter pairs an acquire load with the handler's release for its flag).
 * @module
 */
import { readdirSync, statSync, statfsSync } from 'node:fs';
import { type MmapkitError, mmapkitError } from '../internal/errors.js';
import { type Mapping, faultCount, viewLocation } from '../mapping.js';
import { type MapsLine, isMappedFile, mapsLineAt } from '../internal/procmaps.js';

/** The guard's count of repaired faults in this process; a stand-in where it cannot be read (see faultsNow). */
export const FAULTS: Int32Array = faultCount ?? new Int32Array(1);

/** The count as a handle starts from: where it cannot be read, a value FAULTS never holds, so every look asks the mapping. */
export function faultsNow(): number {
  return faultCount === null ? -1 : FAULTS[0]!;
}

/**
 * The slow side of what one handle (a Channel's, a Topic's) knows of the faults of its memory. The
 * handle keeps the count it last saw (`faultsSeen`) in a field of its own, so that a look on a hot path
 * is `FAULTS[0] !== this.faultsSeen` (a few bytes of bytecode: the hot paths are at V8's inlining
 * budget), and calls settle() only when the count moved.
 */
export class FaultWatch {
  /** Once the memory faulted: the reason, for every later error (found once: it reads /proc). */
  reason: string | undefined;

  constructor(
    private readonly mapping: Mapping,
    private readonly kind: 'channel' | 'topic',
    /** Address of the structure's byte 0, and its size. */
    private readonly base: number,
    private readonly size: number,
  ) {
    this.reason = undefined;
  }

  /**
   * The count moved: undefined when this handle's memory is the one that faulted (for good), else the
   * count the handle may remember (the fault was in another mapping).
   */
  settle(): number | undefined {
    if (this.reason !== undefined) return undefined;
    const count = faultsNow(); // before asking: a fault after this load moves the count again
    if (!this.mapping.faulted) return count;
    this.reason = describeFault(this.kind, this.base, this.size);
    return undefined;
  }

  error(what: string): MmapkitError {
    return mmapkitError('ERR_MMAP_FAULTED', `Cannot ${what}: ${this.reason ?? describeFault(this.kind, this.base, this.size)}`);
  }
}

/**
 * A read-only look at a structure's memory (`Channel.inspect()`, `Topic.inspect()`): its report, or
 * ERR_MMAP_FAULTED when the memory faulted during the look (a lost page reads as zeros, which a report
 * would give as the structure's state) or had faulted before it.
 */
export function faultFreeLook<T>(mapping: Mapping, kind: 'channel' | 'topic', look: () => T): T {
  // A mapping that had faulted refuses views (ERR_MMAP_FAULTED, its own message): the look would too.
  const base = Number(viewLocation(mapping.view(0, 1))!.addr);
  const report = look();
  if (!mapping.faulted) return report;
  throw mmapkitError('ERR_MMAP_FAULTED', `Cannot inspect this ${kind}: ${describeFault(kind, base, mapping.length, 'look')}`);
}

/** What a handle keeps of its memory's faults (a Channel's core, a Topic's memory): see FaultWatch. */
export interface FaultHolder {
  faultsSeen: number;
  readonly faults: FaultWatch;
}

/** The count moved: throw ERR_MMAP_FAULTED if the fault was in this handle's memory, else remember the count. */
export function faultsMoved(h: FaultHolder, what: string): void {
  const seen = h.faults.settle();
  if (seen === undefined) throw h.faults.error(what);
  h.faultsSeen = seen;
}

/** Whether this handle's memory has faulted, without throwing (the look of checkFaults, then settle()). */
export function isFaulted(h: FaultHolder): boolean {
  if (FAULTS[0] === h.faultsSeen) return false;
  const seen = h.faults.settle();
  if (seen === undefined) return true;
  h.faultsSeen = seen;
  return false;
}

// ------------------------------------------------------------------ why: truncated, or out of space

/**
 * The file or object mapped there, as stat() sees it now: through its path when it still has one, a
 * descriptor of this process (a SharedMemory keeps one) or /proc/self/map_files (root); each checked
 * to be the same object (device and inode). Last, the path unchecked (an overlay file system reports
 * other numbers for the same file).
 */
function objectOf(line: MapsLine): { size: number; at: string } | undefined {
  const candidates: string[] = [];
  if (!line.deleted && line.path.startsWith('/')) candidates.push(line.path);
  try {
    for (const fd of readdirSync('/proc/self/fd')) candidates.push(`/proc/self/fd/${fd}`);
  } catch {
    // no /proc
  }
  candidates.push(`/proc/self/map_files/${line.start.toString(16)}-${line.end.toString(16)}`);
  for (const at of candidates) {
    try {
      const st = statSync(at, { bigint: true });
      if (st.isFile() && isMappedFile(st, line)) return { size: Number(st.size), at };
    } catch {
      // gone, or not ours to look at
    }
  }
  if (candidates[0] === line.path) {
    try {
      const st = statSync(line.path);
      if (st.isFile()) return { size: st.size, at: line.path };
    } catch {
      // gone
    }
  }
  return undefined;
}

const bytes = (n: number): string => `${n.toLocaleString('en-US')} bytes`;

/**
 * Why the memory of a structure at `base` (`size` bytes) faulted, in words: the object mapped there is
 * now too short (truncated), or it still covers the structure, so the page was lost because the file
 * system could not provide it (out of space: a full tmpfs, a full disk under a sparse file). Runs only
 * on the error path (it reads /proc/self/maps and stats the object).
 */
function describeFault(kind: 'channel' | 'topic', base: number, size: number, by: 'handle' | 'look' = 'handle'): string {
  const lost = `a page of the ${kind}'s memory was lost (a bus error, repaired with a page of zeros)`;
  const after =
    by === 'handle'
      ? `: messages in that memory may read as zeros, so this handle hands out and sends nothing more. Close it`
      : `: what was read there may be zeros, which would pass for its state, so nothing is reported. Unmap it`;
  const see = '. See docs/safety.md#channels-and-topics-over-truncated-memory';
  let line: MapsLine | undefined;
  let object: { size: number; at: string } | undefined;
  try {
    line = mapsLineAt(base);
    if (line !== undefined) object = objectOf(line);
  } catch {
    // no /proc: say what may have happened
  }
  const name = line === undefined ? `the object under the ${kind}` : line.path === '' ? 'the memory' : `'${line.path}'${line.deleted ? ' (deleted)' : ''}`;
  if (line === undefined || object === undefined) {
    return `${lost}: another process truncated ${name}, or the file system it lives on ran out of space${after}${see}`;
  }
  const need = line.offset + (base - line.start) + size;
  if (object.size < need) {
    return `${lost}: another process truncated ${name} to ${bytes(object.size)} (the ${kind} needs ${bytes(need)})${after} and create the ${kind} again${see}`;
  }
  let free = '';
  try {
    const fs = statfsSync(object.at);
    free = ` (${bytes(fs.bavail * fs.bsize)} free of ${bytes(fs.blocks * fs.bsize)})`;
  } catch {
    // no statfs: the size says enough
  }
  return (
    `${lost}: ${name} still has ${bytes(object.size)} (the ${kind} needs ${bytes(need)}), so the file system could not provide the page: ` +
    `it is most likely out of space${free}${after}, and free space there (or make the file system larger) before you create the ${kind} again${see}`
  );
}
