/**
 * Wording shared by the commands (cp, dump, send, recv, bench) and the modules around them
 * (pipe-channel.ts, progress.ts, main.ts): file names quoted the way GNU coreutils quotes them, system
 * errors worded like `strerror`, byte counts read from the command line and written for people, the
 * error a command throws for an ordinary failure ({@link Failure}: exit code 1, printed as one line
 * without an error code), and the exit code of a command whose standard output was closed
 * ({@link EXIT_CLOSED_OUTPUT}).
 * @module
 */
import { UsageError } from './command.js';

/**
 * Exit code of a command whose standard output was closed by its reader (`mmapkit dump x | head`):
 * 141, what a shell reports for a process killed by SIGPIPE, as `hexdump` or `cat` would be there.
 */
export const EXIT_CLOSED_OUTPUT = 141;

/**
 * A failure that the message fully explains (`cannot stat 'x': No such file or directory`): exit
 * code 1, printed after `mmapkit COMMAND: ` as it is.
 */
export class Failure extends Error {
  override get name(): string {
    return 'Failure';
  }
}

const CONTROL_NAMES: Readonly<Record<string, string>> = {
  '\x07': '\\a',
  '\b': '\\b',
  '\f': '\\f',
  '\n': '\\n',
  '\r': '\\r',
  '\t': '\\t',
  '\v': '\\v',
};

/**
 * A file name quoted as GNU coreutils quotes it in messages (`shell-escape-always`): `'a b'`, `"it's"`,
 * `'a'\''b"'`, and control characters as `$'\n'` outside the quotes: `'nl'$'\n''x'`.
 */
export function quote(name: string): string {
  if (/[\x00-\x1f\x7f]/.test(name)) {
    // Split into printable runs (quoted) and control characters ($'...'), glued together.
    let result = '';
    for (const part of name.split(/([\x00-\x1f\x7f]+)/)) {
      if (part === '') continue;
      if (/^[\x00-\x1f\x7f]/.test(part)) {
        const escaped = [...part]
          .map((c) => CONTROL_NAMES[c] ?? `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`)
          .join('');
        result += `$'${escaped}'`;
      } else {
        result += quotePrintable(part);
      }
    }
    return result;
  }
  return quotePrintable(name);
}

function quotePrintable(name: string): string {
  if (!name.includes("'")) return `'${name}'`;
  if (!/[\\"$`]/.test(name)) return `"${name}"`;
  return `'${name.replaceAll("'", "'\\''")}'`;
}

/** glibc's `strerror` text for the errors the commands meet; libuv's wording differs in places. */
const STRERROR: Readonly<Record<string, string>> = {
  E2BIG: 'Argument list too long',
  EACCES: 'Permission denied',
  EAGAIN: 'Resource temporarily unavailable',
  EBADF: 'Bad file descriptor',
  EBUSY: 'Device or resource busy',
  EDQUOT: 'Disk quota exceeded',
  EEXIST: 'File exists',
  EFAULT: 'Bad address',
  EFBIG: 'File too large',
  EINTR: 'Interrupted system call',
  EINVAL: 'Invalid argument',
  EIO: 'Input/output error',
  EISDIR: 'Is a directory',
  ELOOP: 'Too many levels of symbolic links',
  EMFILE: 'Too many open files',
  ENAMETOOLONG: 'File name too long',
  ENFILE: 'Too many open files in system',
  ENODEV: 'No such device',
  ENOENT: 'No such file or directory',
  ENOMEM: 'Cannot allocate memory',
  ENOSPC: 'No space left on device',
  ENOTDIR: 'Not a directory',
  ENXIO: 'No such device or address',
  EOVERFLOW: 'Value too large for defined data type',
  EPERM: 'Operation not permitted',
  EPIPE: 'Broken pipe',
  EROFS: 'Read-only file system',
  ESPIPE: 'Illegal seek',
  ESTALE: 'Stale file handle',
  ETXTBSY: 'Text file busy',
};

/**
 * The reason part of a message: `No such file or directory` for a system error (as `strerror` words
 * it), the message itself for anything else.
 */
export function reason(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string') {
    const known = STRERROR[code];
    if (known !== undefined) return known;
    // A Node system error: "ECODE: description, syscall 'path'" -> "Description".
    const match = /^E[A-Z0-9]+: ([^,]+)/.exec(error.message);
    if (match?.[1] !== undefined) return match[1].charAt(0).toUpperCase() + match[1].slice(1);
  }
  return error.message;
}

/** The `code` of a system error (`'ENOENT'`), or undefined. */
export function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * A byte count or offset given on the command line: decimal (`4096`) or hexadecimal with `0x`
 * (`0x1000`). Anything else, and negative numbers, are usage errors of `command`.
 */
export function parseByteCount(text: string, option: string, command: string): number {
  const t = text.trim();
  if (/^-/.test(t)) throw new UsageError(`${option} must not be negative, got '${text}'`, command);
  if (!/^(?:0[xX][0-9a-fA-F]+|[0-9]+)$/.test(t)) {
    throw new UsageError(`${option} must be a number of bytes, decimal or hexadecimal with 0x, got '${text}'`, command);
  }
  const value = BigInt(t);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new UsageError(`${option} is too large, got '${text}' (at most ${Number.MAX_SAFE_INTEGER})`, command);
  }
  return Number(value);
}

/** A byte count for people: `512 B`, `1.5 KiB`, `3.00 GiB`. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 2 : value < 100 ? 1 : 0)} ${units[unit]}`;
}
