/**
 * /proc/self/maps: which mapping holds an address, and the identity of the file behind it, for the
 * code that must know what the kernel maps there without keeping a descriptor (resize() checking that
 * a path still names the mapped file; the description of a fault in a Channel's or Topic's memory).
 * Error paths and first uses only: it reads the whole file.
 * @module
 */
import { readFileSync } from 'node:fs';

/** A line of /proc/self/maps: one mapping as the kernel sees it. */
export interface MapsLine {
  start: number;
  end: number;
  /** Offset in the file of the mapping's first byte. */
  offset: number;
  /** The device, as stat() reports st_dev (glibc's encoding of the line's major:minor). */
  dev: bigint;
  ino: bigint;
  path: string;
  /** The file was removed (the kernel appends " (deleted)" to its path). */
  deleted: boolean;
}

/** st_dev as stat() reports it for a maps line's `major:minor` (glibc's makedev). */
function makedev(major: bigint, minor: bigint): bigint {
  return ((major & 0xfffn) << 8n) | (minor & 0xffn) | ((minor & ~0xffn) << 12n) | ((major & ~0xfffn) << 32n);
}

/** The line of the mapping that holds `addr`; undefined when none does or /proc cannot be read. */
export function mapsLineAt(addr: number | bigint): MapsLine | undefined {
  let text: string;
  try {
    text = readFileSync('/proc/self/maps', 'latin1');
  } catch {
    return undefined;
  }
  const a = Number(addr);
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) \S+ ([0-9a-f]+) ([0-9a-f]+):([0-9a-f]+) (\d+)\s*(.*)$/.exec(line);
    if (m === null) continue;
    const start = Number.parseInt(m[1]!, 16);
    const end = Number.parseInt(m[2]!, 16);
    if (a < start || a >= end) continue;
    const deleted = m[7]!.endsWith(' (deleted)');
    return {
      start,
      end,
      offset: Number.parseInt(m[3]!, 16),
      dev: makedev(BigInt(`0x${m[4]}`), BigInt(`0x${m[5]}`)),
      ino: BigInt(m[6]!),
      path: deleted ? m[7]!.slice(0, -' (deleted)'.length) : m[7]!,
      deleted,
    };
  }
  return undefined;
}

/** Whether a stat result (`{ bigint: true }`) is the file of a maps line: same device and inode. */
export function isMappedFile(st: { dev: bigint; ino: bigint }, line: Pick<MapsLine, 'dev' | 'ino'>): boolean {
  return st.dev === line.dev && st.ino === line.ino;
}
