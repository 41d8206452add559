/**
 * `mmapkit cp SRC DST`: copy a regular file of any size through memory mappings, behaving like GNU
 * `cp SRC DST` without options (messages, modes, same-file check, DST being a directory).
 *
 * How the bytes move (see docs/cli.md for the measurements): the source is mapped read-only in windows
 * (128 MiB, `madvise(MADV_SEQUENTIAL)`), and each window is handed to `write()` at its offset in the
 * destination. The kernel copies straight from the mapped page-cache pages into the destination's,
 * once, with no page fault per destination page (writing through a second, shared mapping of the
 * destination faults on every page). The destination is first set to the source's size with
 * ftruncate (hole skipping needs it, and writes inside the file's size skip ext4's per-write size
 * update: up to twice as fast in some measurements here).
 *
 * An existing destination is opened without O_TRUNC and written over, then its size is exactly the
 * source's: truncating it to 0 first would make ext4 write the whole file back inside close()
 * (docs: DESIGN "Copying files").
 *
 * Holes: a 64 KiB piece of the source that is all zeros is not written when the destination already
 * reads as zeros there (a new file, the part of an existing one past its old end, or an existing
 * part that is zero already), so sparse files stay sparse. Everywhere else zeros are written, so the
 * result is always exactly the source's bytes.
 *
 * A source that another process changes during the copy: the copy has the size of the first look
 * (fstat) and reads through mappings, so a source cut short would read as zeros past its new end (the
 * SIGBUS guard) or as one long hole (`SEEK_DATA` fails with ENXIO past the end of a file as it does
 * past its last data). So whenever a window faults, `SEEK_DATA` finds nothing, or a read error comes,
 * the source is looked at again (fstat), and once more after the last window: a size or modification
 * time that differs from the first look fails the copy. A destination left by a failed copy never looks
 * complete: one that the copy created is removed, an existing one is truncated to 0 bytes (its old
 * content is partly overwritten already) and the message says so.
 * @module
 */
import {
  type BigIntStats,
  closeSync,
  constants as fsConstants,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  lstatSync,
  openSync,
  readSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { basename } from 'node:path';
import type { Mapping } from '../index.js';
import type { Command, CommandContext } from './command.js';
import { Failure, errorCode, quote, reason } from './messages.js';
import { Progress } from './progress.js';

type Library = typeof import('../index.js');

/** Bytes of the source mapped at a time (`MMAPKIT_CP_WINDOW` overrides it, for tests). */
const DEFAULT_WINDOW = 128 * 1024 * 1024;
/** Largest single write(): keeps the progress bar moving on slow disks. */
const WRITE_MAX = 16 * 1024 * 1024;
/** Granularity of hole detection: pieces of this size (aligned in the file) that are all zeros. */
const HOLE_CHUNK = 64 * 1024;

/** The `cp` command. */
export const cpCommand: Command = {
  name: 'cp',
  summary: 'Copy a file through memory mappings, like cp (any size; sparse files stay sparse)',
  synopsis: 'cp [--flush] SRC DST',
  description: `
Copies the regular file SRC to DST, reading SRC through memory mappings, window by window, so that
files of any size copy (also larger than 4 GiB, the most one Buffer can hold). Behaves like
'cp SRC DST' of GNU coreutils without options:

  - DST may be an existing directory: the copy is DST/NAME, NAME being the last part of SRC.
  - A new DST gets the permission bits of SRC minus the umask (setuid, setgid and sticky bits are
    not copied); an existing DST keeps its own mode and owner, is given the size of SRC and is
    overwritten in place (never truncated to 0 first).
  - An empty SRC gives an empty DST (nothing is mapped: an empty file has no pages).
  - Copying a file onto itself (the same file by another name, a hard link or a symbolic link) is
    refused: 'SRC' and 'DST' are the same file.
  - All-zero regions of SRC are not written where DST already reads as zeros (a new file): sparse
    files stay sparse. The result is always exactly the bytes and size of SRC.
  - A progress bar is drawn on stderr when it is a terminal and the copy takes longer than a second.

Only regular files can be mapped: a directory is refused as by cp without -r, and devices, pipes
and sockets as sources are refused. A SRC whose size or modification time changes during the copy
(another process truncates or writes it) fails the copy: the copy would not be SRC's bytes.

If the copy fails, a DST that the copy created is removed; an existing regular DST that was partly
overwritten is truncated to 0 bytes, and the message says so: a failed copy never leaves a file that
looks complete. (An interrupted one does: DST has the size of SRC from the start. Only exit status 0
says that a copy is complete.)

Exit codes: 0 copied, 1 failed (the reason on stderr, worded like cp's), 2 usage error.`,
  options: {
    flush: {
      type: 'boolean',
      description: 'Flush the copy to the disk (fsync) before exiting: it survives a crash once mmapkit has exited 0',
    },
  },
  positionals: { min: 2, max: 2 },
  run: runCp,
};

/** What to copy where, once the names are resolved. */
interface Plan {
  /** SRC as given. */
  readonly source: string;
  /** The file to write: DST, or DST/NAME when DST is a directory. */
  readonly dest: string;
}

async function runCp(ctx: CommandContext): Promise<number> {
  const [source, target] = ctx.positionals as [string, string];
  const flush = ctx.values['flush'] === true;
  const window = windowSize();
  // Load the library before touching any file: a missing native addon is one clear error.
  const lib = await import('../index.js');
  const plan = resolvePlan(source, target);
  copyFile(lib, plan, { flush, window, progressStream: process.stderr });
  return 0;
}

/** The window size: `MMAPKIT_CP_WINDOW` (bytes) when set, else 128 MiB. */
function windowSize(): number {
  const text = process.env['MMAPKIT_CP_WINDOW'];
  if (text === undefined || text === '') return DEFAULT_WINDOW;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1 || n > 2 ** 32) {
    throw new Failure(`MMAPKIT_CP_WINDOW must be a number of bytes from 1 to 4 GiB, not '${text}'`);
  }
  return n;
}

/** stat() that returns undefined for a missing file and words other errors like cp. */
function statIfExists(path: string): BigIntStats | undefined {
  try {
    return statSync(path, { bigint: true });
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return undefined;
    throw new Failure(`cannot stat ${quote(path)}: ${reason(error)}`);
  }
}

function sameFile(a: BigIntStats, b: BigIntStats): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

/**
 * Check SRC and DST the way cp does before copying anything, and work out the file to write.
 * Throws {@link Failure} with cp's wording.
 */
function resolvePlan(source: string, target: string): Plan {
  let src: BigIntStats;
  try {
    src = statSync(source, { bigint: true });
  } catch (error) {
    throw new Failure(`cannot stat ${quote(source)}: ${reason(error)}`);
  }
  if (src.isDirectory()) throw new Failure(`-r not specified; omitting directory ${quote(source)}`);

  let dest = target;
  let dst = statIfExists(dest);
  if (dst?.isDirectory() === true) {
    dest = target.endsWith('/') ? `${target}${basename(source)}` : `${target}/${basename(source)}`;
    dst = statIfExists(dest);
    if (dst?.isDirectory() === true) throw new Failure(`cannot overwrite directory ${quote(dest)} with non-directory`);
  }
  if (dst === undefined) {
    let link = false;
    try {
      link = lstatSync(dest).isSymbolicLink();
    } catch {
      // missing: a new file
    }
    if (link) throw new Failure(`not writing through dangling symlink ${quote(dest)}`);
    if (dest.endsWith('/')) throw new Failure(`cannot create regular file ${quote(dest)}: Not a directory`);
  } else if (sameFile(src, dst)) {
    throw new Failure(`${quote(source)} and ${quote(dest)} are the same file`);
  }
  if (!src.isFile()) {
    throw new Failure(
      `cannot copy ${quote(source)}: not a regular file (mmapkit cp maps its source; use cp for devices, pipes and sockets)`,
    );
  }
  return { source, dest };
}

interface CopyOptions {
  readonly flush: boolean;
  readonly window: number;
  readonly progressStream: NodeJS.WriteStream;
}

/** The destination as opened. */
interface Destination {
  readonly fd: number;
  /** We created it (O_EXCL): on failure it is removed again. */
  readonly created: boolean;
  /** Opened O_RDWR: its old content can be read to find parts that are zero already. */
  readonly readable: boolean;
}

/** Open SRC and DST, copy, set DST's size, flush if asked. */
function copyFile(lib: Library, plan: Plan, options: CopyOptions): void {
  const { source, dest } = plan;
  let sfd: number;
  try {
    sfd = openSync(source, fsConstants.O_RDONLY);
  } catch (error) {
    throw new Failure(`cannot open ${quote(source)} for reading: ${reason(error)}`);
  }
  try {
    const src = fstatSync(sfd, { bigint: true });
    if (!src.isFile()) throw new Failure(`cannot copy ${quote(source)}: not a regular file`);
    const size = Number(src.size);
    if (size === 0) refuseUnsizedFile(sfd, source);

    const out = openDestination(dest, Number(src.mode & 0o777n));
    let closed = false;
    /** An existing regular DST whose size or content this copy has begun to change. */
    let touched: BigIntStats | undefined;
    try {
      const dst = fstatSync(out.fd, { bigint: true });
      // Checked again on the open files: DST may have changed since it was looked at by name.
      if (sameFile(src, dst)) throw new Failure(`${quote(source)} and ${quote(dest)} are the same file`);
      const regular = dst.isFile();
      const oldSize = out.created || !regular ? 0 : Number(dst.size);
      if (regular && oldSize !== size) {
        try {
          ftruncateSync(out.fd, size);
        } catch (error) {
          throw new Failure(`cannot set the size of ${quote(dest)} to ${size} bytes: ${reason(error)}`);
        }
      }
      // From here on an existing DST is no longer what it was, nor a copy yet.
      if (regular && !out.created) touched = dst;
      if (size > 0) {
        const progress = new Progress(options.progressStream, size, 'copying');
        try {
          copyContents(lib, {
            sfd,
            dfd: out.fd,
            size,
            window: options.window,
            source,
            dest,
            // A regular file or a block device is written at offsets; a pipe or tty in order.
            positioned: regular || dst.isBlockDevice(),
            // Holes need a file that reads zeros where nothing is written: a regular file of the
            // right size. Where its old content lies, only if that content is zero (read back).
            holes: regular,
            oldSize,
            readable: out.readable,
            progress,
          });
        } finally {
          progress.finish();
        }
      }
      checkUnchanged(sfd, src, source);
      if (options.flush && (regular || dst.isBlockDevice())) {
        try {
          fsyncSync(out.fd);
        } catch (error) {
          throw new Failure(`failed to flush ${quote(dest)}: ${reason(error)}`);
        }
      }
      closed = true;
      try {
        closeSync(out.fd);
      } catch (error) {
        throw new Failure(`failed to close ${quote(dest)}: ${reason(error)}`);
      }
    } catch (error) {
      // Never leave a DST that looks complete: a new one is removed, an existing one emptied.
      const emptied = touched === undefined ? undefined : emptyDestination(closed ? undefined : out.fd, dest, touched);
      if (!closed) closeQuietly(out.fd);
      if (out.created) {
        try {
          unlinkSync(dest);
        } catch {
          // already gone, or not ours to remove any more
        }
      }
      if (emptied !== undefined && error instanceof Failure) throw new Failure(`${error.message}; ${emptied}`);
      throw error;
    }
  } finally {
    closeQuietly(sfd);
  }
}

/**
 * Look at the source again after the copy: a size or modification time other than at the start means
 * that another process changed it meanwhile (cut it short and maybe grew it back, or wrote into it),
 * and the copy is not the source's bytes. (File times advance in clock ticks of a few milliseconds:
 * a change within the tick of the first look, which leaves the size as it was, goes unseen.)
 */
function checkUnchanged(fd: number, first: BigIntStats, source: string): void {
  let now: BigIntStats;
  try {
    now = fstatSync(fd, { bigint: true });
  } catch (error) {
    throw new Failure(`cannot stat ${quote(source)}: ${reason(error)}`);
  }
  if (now.size < first.size) throw new Failure(shrankMessage(source));
  if (now.size !== first.size || now.mtimeNs !== first.mtimeNs) {
    throw new Failure(`error reading ${quote(source)}: the file changed while it was being copied`);
  }
}

/**
 * Truncate an existing DST (`was`: its fstat when opened) that a failed copy has partly written to 0
 * bytes, through `fd` while it is open, else by name if the name still leads to that file: the words
 * to add to the error message.
 */
function emptyDestination(fd: number | undefined, dest: string, was: BigIntStats): string {
  let opened: number | undefined;
  try {
    let target = fd;
    if (target === undefined) {
      target = opened = openSync(dest, fsConstants.O_WRONLY);
      if (!sameFile(fstatSync(opened, { bigint: true }), was)) return `${quote(dest)} was only partly written (its name now leads to another file)`;
    }
    ftruncateSync(target, 0);
  } catch (error) {
    return `${quote(dest)} was only partly written, and could not be truncated: ${reason(error)}`;
  } finally {
    if (opened !== undefined) closeQuietly(opened);
  }
  return `${quote(dest)} was only partly written, and is now empty (truncated to 0 bytes)`;
}

/**
 * A file whose size is 0 may still have content (/proc and /sys files report 0): it cannot be copied
 * through a mapping, which needs the size. Refuse it rather than make an empty copy.
 */
function refuseUnsizedFile(fd: number, source: string): void {
  let n = 0;
  try {
    n = readSync(fd, Buffer.alloc(1), 0, 1, 0);
  } catch (error) {
    throw new Failure(`error reading ${quote(source)}: ${reason(error)}`);
  }
  if (n > 0) {
    throw new Failure(
      `cannot copy ${quote(source)}: its size is 0 but it has content (a /proc or /sys file?); mmapkit cp copies through mappings, which need the size`,
    );
  }
}

/**
 * Open an existing DST for writing without truncating it (read-write when allowed, so that its old
 * content can be compared), or create a new one with `mode` (the umask applies, as for cp).
 */
function openDestination(dest: string, mode: number): Destination {
  const { O_RDWR, O_WRONLY, O_CREAT, O_EXCL } = fsConstants;
  try {
    return { fd: openSync(dest, O_RDWR), created: false, readable: true };
  } catch (error) {
    if (errorCode(error) === 'ENOENT') {
      try {
        return { fd: openSync(dest, O_WRONLY | O_CREAT | O_EXCL, mode), created: true, readable: false };
      } catch (createError) {
        throw new Failure(`cannot create regular file ${quote(dest)}: ${reason(createError)}`);
      }
    }
    // Write permission without read permission, or a file that only opens for writing.
    try {
      return { fd: openSync(dest, O_WRONLY), created: false, readable: false };
    } catch (writeError) {
      throw new Failure(`cannot create regular file ${quote(dest)}: ${reason(writeError)}`);
    }
  }
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // the error that brought us here matters more
  }
}

interface CopyJob {
  readonly sfd: number;
  readonly dfd: number;
  readonly size: number;
  readonly window: number;
  readonly source: string;
  readonly dest: string;
  readonly positioned: boolean;
  readonly holes: boolean;
  readonly oldSize: number;
  readonly readable: boolean;
  readonly progress: Progress;
}

/** Copy `size` bytes, window by window. */
function copyContents(lib: Library, job: CopyJob): void {
  const { sfd, size, window, progress } = job;
  const zeros = Buffer.alloc(HOLE_CHUNK);
  const scratch = job.holes && job.readable && job.oldSize > 0 ? Buffer.allocUnsafe(HOLE_CHUNK) : undefined;

  /** Whether DST already reads as zeros in [pos, pos + n): then an all-zero piece need not be written. */
  const destIsZero = (pos: number, n: number): boolean => {
    if (pos >= job.oldSize) return true; // past the old end: ftruncate made it zeros
    if (scratch === undefined) return false;
    let got = 0;
    try {
      while (got < n) {
        const r = readSync(job.dfd, scratch, got, n - got, pos + got);
        if (r === 0) break;
        got += r;
      }
    } catch {
      return false; // cannot tell: write the zeros
    }
    return got === n && scratch.compare(zeros, 0, n, 0, n) === 0;
  };

  for (let base = 0; base < size; base += window) {
    const length = Math.min(window, size - base);
    // A window that is all hole in the source, where the destination already reads zeros: nothing
    // to map, read or write (a 10 GiB sparse file would otherwise be read page by page).
    if (job.holes && base >= job.oldSize && holeUntil(lib, job, base) >= base + length) {
      progress.update(base + length);
      continue;
    }
    let mapping: Mapping | undefined;
    try {
      mapping = lib.map(sfd, { offset: base, length });
      mapping.advise('sequential');
      const view = mapping.view(0, length);
      let run = -1; // start (in the view) of the pieces waiting to be written
      let pos = 0;
      while (pos < length) {
        // Pieces end on HOLE_CHUNK boundaries of the file, so that holes line up with its blocks.
        const abs = base + pos;
        const end = Math.min(length, pos + (HOLE_CHUNK - (abs % HOLE_CHUNK)));
        const skip = job.holes && view.compare(zeros, 0, end - pos, pos, end) === 0 && destIsZero(abs, end - pos);
        if (skip) {
          if (run !== -1) writeRange(job, view, base, run, pos);
          run = -1;
          progress.update(base + end);
        } else if (run === -1) {
          run = pos;
        } else if (pos - run >= WRITE_MAX) {
          writeRange(job, view, base, run, pos);
          run = pos;
        }
        pos = end;
      }
      if (run !== -1) writeRange(job, view, base, run, length);
      // A page that could not be read (the file shrank under the mapping) reads as zeros: the copy
      // would be wrong. The SIGBUS guard tells.
      if (mapping.faulted) throw new Failure(shrankMessage(job.source));
    } catch (error) {
      throw translateReadError(error, job);
    } finally {
      mapping?.unmap();
    }
  }
}

/**
 * Where the hole of the source at `pos` ends: the next byte of data (the size when no data follows),
 * or `pos` itself when there is data at pos or the file system cannot tell (SEEK_DATA unsupported).
 *
 * ENXIO says "no data at or after pos": in a hole that runs to the end of the file, or past the end
 * of a file that another process has cut short. The two look alike; the source's size tells them
 * apart, and a source shorter than at the start fails the copy (taking the rest for a hole would make
 * a wrong copy that looks complete).
 */
function holeUntil(lib: Library, job: CopyJob, pos: number): number {
  const { SEEK_DATA } = lib.constants;
  if (SEEK_DATA === undefined) return pos;
  try {
    return Math.min(lib.lseek(job.sfd, pos, SEEK_DATA), job.size);
  } catch (error) {
    if (errorCode(error) !== 'ENXIO') return pos; // cannot tell: map and read it
    const now = sourceSize(job);
    if (now === undefined) return pos; // cannot tell either: reading faults where the file has no page
    if (now < job.size) throw new Failure(shrankMessage(job.source));
    return job.size; // (a source grown meanwhile fails after the copy: checkUnchanged)
  }
}

/** The size of the source now, or undefined when fstat fails. */
function sourceSize(job: CopyJob): number | undefined {
  try {
    return fstatSync(job.sfd).size;
  } catch {
    return undefined;
  }
}

/** Write view[from, to) (the window starting at file offset `base`) to the destination. */
function writeRange(job: CopyJob, view: Buffer, base: number, from: number, to: number): void {
  let off = from;
  while (off < to) {
    let n: number;
    try {
      n = writeSync(job.dfd, view, off, to - off, job.positioned ? base + off : null);
    } catch (error) {
      if (errorCode(error) === 'EFAULT') throw error; // the source's pages, not the destination
      throw new Failure(`error writing ${quote(job.dest)}: ${reason(error)}`);
    }
    if (n <= 0) throw new Failure(`error writing ${quote(job.dest)}: the write made no progress`);
    off += n;
    job.progress.update(base + off);
  }
}

function shrankMessage(source: string): string {
  return `error reading ${quote(source)}: the file shrank while it was being copied`;
}

/**
 * An error while a window was mapped: a {@link Failure} already says what happened; anything else
 * (EFAULT from write, a faulted mapping, a range past the end) most likely means the source shrank.
 */
function translateReadError(error: unknown, job: CopyJob): Error {
  if (error instanceof Failure) return error;
  const now = sourceSize(job); // undefined: keep the original error
  if (now !== undefined && now < job.size) return new Failure(shrankMessage(job.source));
  const code = errorCode(error);
  if (code !== undefined && /^E[A-Z]/.test(code)) return new Failure(`error reading ${quote(job.source)}: ${reason(error)}`);
  return error instanceof Error ? error : new Error(String(error));
}
