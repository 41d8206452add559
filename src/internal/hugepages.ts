/**
 * Huge pages from the kernel's reserved pool (hugetlbfs) for `mapAnonymous()` and
 * `SharedMemory.anonymous()`: the `hugePages` option, the page size it names, the length check, and
 * the error when the pool cannot give the pages.
 *
 * Facts this relies on (Linux 6.x, checked on the machine it was written on):
 * - The pages are taken from the pool when the memory is mapped, not when it is touched: a shared or
 *   private hugetlb mmap reserves every page of its range at once (HugePages_Rsvd) and fails with
 *   ENOMEM when the pool has too few; a fault of a reserved page cannot fail for want of pages.
 *   So the SIGBUS guard is not needed for them (it could not repair them anyway: its 4 KiB zero
 *   pages cannot split a huge page).
 * - A size the kernel does not offer is EINVAL from mmap, ENODEV from memfd_create (EINVAL from a
 *   kernel without MFD_HUGETLB, before 4.14).
 * - munmap, mprotect and ftruncate of hugetlb memory take whole huge pages only (EINVAL otherwise):
 *   Python's mmap with MAP_HUGETLB and a length of 4096 keeps the huge page mapped after close().
 * @module
 */
import { readFileSync, readdirSync, statfsSync } from 'node:fs';
import { constants } from '../constants.js';
import { invalidArgType, invalidArgValue, mmapkitError, outOfRange, type MmapkitError } from './errors.js';

/**
 * The `hugePages` option: `false` (default) for normal pages, `true` for huge pages of the system's
 * default size (`Hugepagesize` in /proc/meminfo), `'2MB'` or `'1GB'` for that size.
 */
export type HugePages = boolean | '2MB' | '1GB';

/** A resolved `hugePages` option. */
export interface HugePageChoice {
  /** Bytes per huge page. */
  size: number;
  /** The flags to add: `MAP_HUGETLB` or `MFD_HUGETLB`, with the size bits unless the default was asked for. */
  flags: number;
  /** Whether `size` is the system's default huge page size (`vm.nr_hugepages` counts those). */
  isDefault: boolean;
}

const SIZES: Readonly<Record<'2MB' | '1GB', number>> = { '2MB': 2 * 1024 * 1024, '1GB': 1024 * 1024 * 1024 };
const SYSFS = '/sys/kernel/mm/hugepages';

/** "2 MiB", "1 GiB". */
export function sizeLabel(bytes: number): string {
  if (bytes >= 1 << 30 && bytes % (1 << 30) === 0) return `${bytes / (1 << 30)} GiB`;
  if (bytes >= 1 << 20 && bytes % (1 << 20) === 0) return `${bytes / (1 << 20)} MiB`;
  return `${bytes / 1024} KiB`;
}

/** The huge page sizes this kernel offers (the directories of /sys/kernel/mm/hugepages), or undefined. */
function offeredSizes(): number[] | undefined {
  try {
    return readdirSync(SYSFS)
      .map((n) => /^hugepages-(\d+)kB$/.exec(n))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]) * 1024)
      .sort((a, b) => a - b);
  } catch {
    return undefined;
  }
}

/** The default huge page size (`Hugepagesize` in /proc/meminfo), or undefined where there is none. */
function defaultSize(): number | undefined {
  try {
    const m = /^Hugepagesize:\s+(\d+) kB$/m.exec(readFileSync('/proc/meminfo', 'latin1'));
    return m === null ? undefined : Number(m[1]) * 1024;
  } catch {
    return undefined;
  }
}

function noHugePages(message: string): MmapkitError {
  return mmapkitError('ERR_MMAP_NO_HUGE_PAGES', message);
}

/** "it offers 2 MiB, 1 GiB", or "it offers none". */
function offeredText(offered: number[] | undefined): string {
  if (offered === undefined) return '';
  return offered.length === 0 ? ' (it offers none)' : ` (it offers ${offered.map(sizeLabel).join(', ')})`;
}

/**
 * Validate a `hugePages` option (`name` is its path, `options.hugePages`) for `mmap` (`MAP_HUGETLB`)
 * or `memfd_create` (`MFD_HUGETLB`): undefined when huge pages were not asked for. A size this system
 * does not offer is `ERR_MMAP_NO_HUGE_PAGES`, as is a system without huge pages.
 */
export function parseHugePages(value: unknown, name: string, syscall: 'mmap' | 'memfd_create'): HugePageChoice | undefined {
  if (value === undefined || value === false) return undefined;
  if (value !== true && typeof value !== 'string') throw invalidArgType(name, "of type boolean or one of '2MB', '1GB'", value);
  if (value !== true && value !== '2MB' && value !== '1GB') {
    throw invalidArgValue(name, value, "must be true (the system's default huge page size), false, '2MB' or '1GB'");
  }
  const base = syscall === 'mmap' ? constants.MAP_HUGETLB : constants.MFD_HUGETLB;
  if (base === undefined) {
    throw noHugePages(`Cannot use huge pages: this platform has no ${syscall === 'mmap' ? 'MAP_HUGETLB' : 'MFD_HUGETLB'}.`);
  }
  const dflt = defaultSize();
  if (value === true) {
    if (dflt === undefined) {
      throw noHugePages('Cannot use huge pages: this system has none (/proc/meminfo has no Hugepagesize: a kernel without hugetlbfs).');
    }
    return { size: dflt, flags: base, isDefault: true };
  }
  const size = SIZES[value];
  const offered = offeredSizes();
  if (offered !== undefined ? !offered.includes(size) : dflt === undefined) {
    throw noHugePages(`Cannot use huge pages of ${sizeLabel(size)}: this system does not offer that size${offeredText(offered)}.`);
  }
  const bits = syscall === 'mmap'
    ? (value === '2MB' ? constants.MAP_HUGE_2MB : constants.MAP_HUGE_1GB)
    : (value === '2MB' ? constants.MFD_HUGE_2MB : constants.MFD_HUGE_1GB);
  if (bits === undefined && size !== dflt) {
    throw noHugePages(`Cannot ask for huge pages of ${sizeLabel(size)}: this platform's headers lack their flag (only the default size, hugePages: true, can be had).`);
  }
  return { size, flags: base | (bits ?? 0), isDefault: size === dflt };
}

/**
 * Refuse a length that is not a whole number of huge pages (`ERR_OUT_OF_RANGE`): hugetlb memory is
 * mapped, unmapped and sized by whole huge pages only, and the pages come from a small pool set aside
 * for them, so rounding up silently would take up to a whole page (1 GiB) more than was asked for.
 */
export function checkHugeLength(length: bigint, choice: Pick<HugePageChoice, 'size'>, name: string, value: unknown): void {
  const size = BigInt(choice.size);
  if (length % size === 0n) return;
  const up = (length / size + 1n) * size;
  throw outOfRange(name, `a multiple of the huge page size, ${choice.size} (${sizeLabel(choice.size)}), with hugePages; the next one is ${up}`, value);
}

/** The pool of one huge page size, from /sys/kernel/mm/hugepages/hugepages-<kB>kB (undefined: unreadable). */
function poolOf(size: number): { total: number; free: number; reserved: number; overcommit: number; surplus: number; dir: string } | undefined {
  const dir = `${SYSFS}/hugepages-${size / 1024}kB`;
  try {
    const read = (f: string): number => Number.parseInt(readFileSync(`${dir}/${f}`, 'latin1'), 10);
    const pool = {
      total: read('nr_hugepages'),
      free: read('free_hugepages'),
      reserved: read('resv_hugepages'),
      overcommit: read('nr_overcommit_hugepages'),
      surplus: read('surplus_hugepages'),
      dir,
    };
    return Object.values(pool).some((v) => typeof v === 'number' && Number.isNaN(v)) ? undefined : pool;
  } catch {
    return undefined;
  }
}

/**
 * The error to throw for `err`, which mapping or creating `length` bytes of huge pages raised: a
 * system error that means "no such huge pages now" becomes `ERR_MMAP_NO_HUGE_PAGES` (the system error
 * as its `cause`), with the state of the pool in the message; anything else is returned as it is.
 * - ENOMEM from mmap, when the pool has fewer pages available than the mapping needs (an ENOMEM
 *   with enough pages available is about something else: address space, vm.max_map_count).
 * - EINVAL from mmap, EINVAL or ENODEV from memfd_create: the kernel does not offer that size.
 */
export function hugePagesError(err: unknown, choice: HugePageChoice, length: bigint): unknown {
  const e = err as { code?: unknown; syscall?: unknown };
  const label = sizeLabel(choice.size);
  let out: MmapkitError | undefined;
  if ((e.code === 'EINVAL' && (e.syscall === 'mmap' || e.syscall === 'memfd_create')) || (e.code === 'ENODEV' && e.syscall === 'memfd_create')) {
    out = noHugePages(`Cannot use huge pages of ${label}: the kernel refused them (${String(e.code)} from ${String(e.syscall)})${offeredText(offeredSizes())}.`);
  } else if (e.code === 'ENOMEM' && e.syscall === 'mmap') {
    const needed = Number(length / BigInt(choice.size));
    const pool = poolOf(choice.size);
    const knob = choice.isDefault ? 'vm.nr_hugepages' : `${pool?.dir ?? `${SYSFS}/hugepages-${choice.size / 1024}kB`}/nr_hugepages`;
    const fix =
      `Reserve huge pages as root (${choice.isDefault ? `sysctl ${knob}=N, or ` : ''}echo N > ${SYSFS}/hugepages-${choice.size / 1024}kB/nr_hugepages), ` +
      "or map without hugePages: advise('hugepage') asks for transparent huge pages, which need no reservation.";
    if (pool === undefined) {
      out = noHugePages(`Cannot map ${length} bytes with huge pages of ${label} (${needed} pages): the kernel has too few (mmap: ENOMEM). ${fix}`);
    } else {
      const available = Math.max(0, pool.free - pool.reserved) + Math.max(0, pool.overcommit - pool.surplus);
      if (pool.total === 0 && pool.overcommit === 0) {
        out = noHugePages(`Cannot map ${length} bytes with huge pages: no huge pages of ${label} are reserved (${knob} is 0; mmap: ENOMEM). ${fix}`);
      } else if (available < needed) {
        out = noHugePages(
          `Cannot map ${length} bytes with huge pages: that takes ${needed} huge page${needed === 1 ? '' : 's'} of ${label}, and ` +
            `${available} ${available === 1 ? 'is' : 'are'} available (${knob} is ${pool.total}, ${pool.free} of them free, ` +
            `${pool.reserved} of the free ones promised to other mappings; nr_overcommit_hugepages ${pool.overcommit}; mmap: ENOMEM). ${fix}`,
        );
      }
    }
  }
  if (out === undefined) return err;
  out.cause = err;
  return out;
}

/** statfs's f_type of hugetlbfs (linux/magic.h). */
const HUGETLBFS_MAGIC = 0x958458f6;

/**
 * The huge page size of a mapping about to be made of descriptor `fd` (st_blksize `blksize`), or
 * undefined for normal pages. Only hugetlbfs files (a `MFD_HUGETLB` memfd, a file on a hugetlbfs mount)
 * have huge pages; their st_blksize is the huge page size, so the statfs that confirms the file
 * system is asked only when st_blksize exceeds the page size (other file systems may report a large
 * block size too).
 */
export function hugePageSizeOfFd(fd: number, blksize: number, pageSize: number): number | undefined {
  if (blksize <= pageSize) return undefined;
  try {
    const fs = statfsSync(`/proc/self/fd/${fd}`);
    return fs.type === HUGETLBFS_MAGIC ? Number(fs.bsize) : undefined;
  } catch {
    return undefined;
  }
}

/** The huge page size a low-level `mmap()` with `flags` asks for (`MAP_HUGETLB`), or undefined. */
export function hugePageSizeOfFlags(flags: number): number | undefined {
  const hugetlb = constants.MAP_HUGETLB;
  if (hugetlb === undefined || (flags & hugetlb) === 0) return undefined;
  const shift = constants.MAP_HUGE_SHIFT === undefined ? 0 : (flags >>> constants.MAP_HUGE_SHIFT) & 0x3f;
  return shift !== 0 ? 2 ** shift : defaultSize();
}
