/**
 * `mmapkit dump FILE [--offset N] [--length N]`: a hex dump of a region of a file, read through a
 * memory mapping, in the format of `hexdump -C` (offset column with the real file offset, 16 bytes
 * per line in two groups of 8, an ASCII column, a line `*` for repeated lines, the end offset last).
 * @module
 */
import { closeSync, constants as fsConstants, fstatSync, openSync } from 'node:fs';
import type { Mapping } from '../index.js';
import type { Command, CommandContext } from './command.js';
import { Failure, parseByteCount, quote, reason } from './messages.js';

/** Bytes shown when `--length` is not given. */
const DEFAULT_LENGTH = 256;
/** Bytes of the file mapped at a time (a multiple of 16, so that lines never straddle two windows). */
const WINDOW = 64 * 1024 * 1024;
/** Bytes formatted per write to stdout. */
const BATCH = 64 * 1024;

/** The `dump` command. */
export const dumpCommand: Command = {
  name: 'dump',
  summary: 'Show bytes of a file in hex and ASCII (like hexdump -C), read through a mapping',
  synopsis: 'dump [--offset N] [--length N] [--no-squeeze] FILE',
  description: `
Prints LENGTH bytes of FILE starting at byte OFFSET, read through a memory mapping, in the format of
'hexdump -C': each line shows the file offset of its first byte (8 hex digits, more past 4 GiB),
16 bytes in hex in two groups of 8, and the same bytes as ASCII ('.' for what is not printable).
Lines start at OFFSET, which need not be a multiple of the page size or of 16. A run of lines equal
to the line before is shown as one line '*' (unless --no-squeeze). The last line is the offset just
past the last byte shown.

N is a number of bytes, decimal (4096) or hexadecimal with 0x (0x1000). The dump stops at the end
of the file: LENGTH may be larger than what is left. An empty file, a length of 0 or an offset equal
to the size of the file print nothing and exit 0; an offset past the end is an error.

Exit codes: 0 dumped, 1 failed (missing file, directory, offset past the end), 2 usage error (a
negative or malformed number).`,
  options: {
    offset: {
      type: 'string',
      short: 's',
      valueName: 'N',
      description: 'Start at byte N of the file (any N, not only page multiples). Default 0',
    },
    length: {
      type: 'string',
      short: 'n',
      valueName: 'N',
      description: `Show N bytes, or fewer if the file ends first. Default ${DEFAULT_LENGTH}`,
    },
    'no-squeeze': {
      type: 'boolean',
      short: 'v',
      description: "Print repeated lines too instead of one '*'",
    },
  },
  positionals: { min: 1, max: 1 },
  run: runDump,
};

async function runDump(ctx: CommandContext): Promise<number> {
  const [file] = ctx.positionals as [string];
  const offsetText = ctx.values['offset'];
  const lengthText = ctx.values['length'];
  const offset = typeof offsetText === 'string' ? parseByteCount(offsetText, '--offset', 'dump') : 0;
  const wanted = typeof lengthText === 'string' ? parseByteCount(lengthText, '--length', 'dump') : DEFAULT_LENGTH;
  const squeeze = ctx.values['no-squeeze'] !== true;
  const lib = await import('../index.js');

  let fd: number;
  try {
    fd = openSync(file, fsConstants.O_RDONLY);
  } catch (error) {
    throw new Failure(`cannot open ${quote(file)}: ${reason(error)}`);
  }
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) throw new Failure(`cannot dump ${quote(file)}: Is a directory`);
    if (!st.isFile()) {
      throw new Failure(`cannot dump ${quote(file)}: not a regular file (only regular files have a size to map)`);
    }
    const size = st.size;
    if (offset > size) {
      throw new Failure(`offset ${offset} is past the end of ${quote(file)} (${size} bytes)`);
    }
    const length = Math.min(wanted, size - offset);
    if (length === 0) return 0;

    const printer = new HexPrinter(ctx.out, squeeze);
    for (let pos = offset; pos < offset + length; pos += WINDOW) {
      const n = Math.min(WINDOW, offset + length - pos);
      let mapping: Mapping | undefined;
      try {
        mapping = lib.map(fd, { offset: pos, length: n });
        const view = mapping.view(0, n);
        for (let at = 0; at < n; at += BATCH) {
          printer.print(view, at, Math.min(n, at + BATCH), pos);
          // A page past a new end of the file reads as zeros (the SIGBUS guard): do not show them.
          if (mapping.faulted) throw new Failure(`error reading ${quote(file)}: the file shrank while it was being read`);
          // Let a closed stdout (EPIPE, `| head`) end the process between batches.
          if (n > BATCH) await new Promise((resolve) => setImmediate(resolve));
        }
      } catch (error) {
        if (error instanceof Failure) throw error;
        const now = fstatSync(fd).size;
        if (now < offset + length) throw new Failure(`error reading ${quote(file)}: the file shrank while it was being read`);
        throw new Failure(`error reading ${quote(file)}: ${reason(error)}`);
      } finally {
        mapping?.unmap();
      }
    }
    ctx.out(`${hexOffset(offset + length)}\n`);
    return 0;
  } finally {
    closeSync(fd);
  }
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));
const ASCII = Array.from({ length: 256 }, (_, i) => (i >= 0x20 && i < 0x7f ? String.fromCharCode(i) : '.'));

/** A file offset as the offset column shows it: at least 8 hex digits. */
function hexOffset(n: number): string {
  return n.toString(16).padStart(8, '0');
}

/** Formats lines of 16 bytes, remembering the previous line for squeezing. */
class HexPrinter {
  readonly #out: (text: string) => void;
  readonly #squeeze: boolean;
  /** The previous full line's bytes, to compare with. */
  #previous: Buffer | undefined;
  /** A '*' has been printed for the current run of equal lines. */
  #starred = false;

  constructor(out: (text: string) => void, squeeze: boolean) {
    this.#out = out;
    this.#squeeze = squeeze;
  }

  /** Print view[from, to) whose byte 0 is at file offset `base`; `from` is where a line starts. */
  print(view: Buffer, from: number, to: number, base: number): void {
    let text = '';
    for (let i = from; i < to; i += 16) {
      const n = Math.min(16, to - i);
      const bytes = view.subarray(i, i + n);
      if (this.#squeeze && n === 16 && this.#previous !== undefined && bytes.equals(this.#previous)) {
        if (!this.#starred) text += '*\n';
        this.#starred = true;
        continue;
      }
      this.#starred = false;
      // A copy: the view goes away with its mapping.
      if (this.#squeeze) this.#previous = n === 16 ? Buffer.from(bytes) : undefined;
      text += formatLine(base + i, bytes);
    }
    this.#out(text);
  }
}

/** One line of `hexdump -C`: offset, two groups of 8 hex bytes, the ASCII column. */
function formatLine(offset: number, bytes: Buffer): string {
  let hex = '';
  let ascii = '';
  for (let i = 0; i < 16; i++) {
    if (i < bytes.length) {
      const b = bytes[i]!;
      hex += `${HEX[b]!} `;
      ascii += ASCII[b]!;
    } else {
      hex += '   ';
    }
    if (i === 7) hex += ' ';
  }
  return `${hexOffset(offset)}  ${hex} |${ascii}|\n`;
}
