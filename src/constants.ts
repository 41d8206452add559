/**
 * Constants of this platform with their C names, read from the system headers at build time.
 * A flag this platform lacks is absent (`undefined`), never a wrong value.
 * @module
 */
import { native } from './binding.js';

/** Known constant names; any of them may be absent on a platform that lacks it. */
export interface Constants {
  readonly PROT_NONE: number;
  readonly PROT_READ: number;
  readonly PROT_WRITE: number;
  readonly PROT_EXEC: number;
  readonly MAP_SHARED: number;
  readonly MAP_PRIVATE: number;
  readonly MAP_ANONYMOUS: number;
  readonly MAP_FIXED: number;
  readonly MAP_SHARED_VALIDATE?: number;
  readonly MAP_NORESERVE?: number;
  readonly MAP_POPULATE?: number;
  readonly MAP_LOCKED?: number;
  readonly MAP_NONBLOCK?: number;
  readonly MAP_HUGETLB?: number;
  /** Where `MAP_HUGETLB` takes the huge page size: `log2(size) << MAP_HUGE_SHIFT` (26). */
  readonly MAP_HUGE_SHIFT?: number;
  /** The size bits of 2 MiB pages, to add to `MAP_HUGETLB` (`21 << MAP_HUGE_SHIFT`). */
  readonly MAP_HUGE_2MB?: number;
  /** The size bits of 1 GiB pages, to add to `MAP_HUGETLB` (`30 << MAP_HUGE_SHIFT`). */
  readonly MAP_HUGE_1GB?: number;
  readonly MAP_FIXED_NOREPLACE?: number;
  readonly MAP_GROWSDOWN?: number;
  readonly MAP_STACK?: number;
  readonly MAP_SYNC?: number;
  readonly MS_ASYNC: number;
  readonly MS_SYNC: number;
  readonly MS_INVALIDATE: number;
  readonly MADV_NORMAL: number;
  readonly MADV_RANDOM: number;
  readonly MADV_SEQUENTIAL: number;
  readonly MADV_WILLNEED: number;
  readonly MADV_DONTNEED: number;
  readonly MADV_FREE?: number;
  readonly MADV_REMOVE?: number;
  readonly MADV_DONTFORK?: number;
  readonly MADV_DOFORK?: number;
  readonly MADV_MERGEABLE?: number;
  readonly MADV_UNMERGEABLE?: number;
  readonly MADV_HUGEPAGE?: number;
  readonly MADV_NOHUGEPAGE?: number;
  readonly MADV_DONTDUMP?: number;
  readonly MADV_DODUMP?: number;
  readonly MADV_WIPEONFORK?: number;
  readonly MADV_KEEPONFORK?: number;
  readonly MADV_COLD?: number;
  readonly MADV_PAGEOUT?: number;
  readonly MADV_POPULATE_READ?: number;
  readonly MADV_POPULATE_WRITE?: number;
  readonly MFD_CLOEXEC?: number;
  readonly MFD_ALLOW_SEALING?: number;
  /** memfd_create(): memory of huge pages (hugetlbfs), of the default size unless `MFD_HUGE_*` is added. */
  readonly MFD_HUGETLB?: number;
  /** The size bits of 2 MiB pages, to add to `MFD_HUGETLB`. */
  readonly MFD_HUGE_2MB?: number;
  /** The size bits of 1 GiB pages, to add to `MFD_HUGETLB`. */
  readonly MFD_HUGE_1GB?: number;
  readonly MLOCK_ONFAULT?: number;
  readonly SEEK_SET: number;
  readonly SEEK_CUR: number;
  readonly SEEK_END: number;
  /** lseek(): the next offset holding data (Linux 3.1+; `lseek()` below). */
  readonly SEEK_DATA?: number;
  /** lseek(): the next hole (the end of the file counts as one). */
  readonly SEEK_HOLE?: number;
  readonly MCL_CURRENT?: number;
  readonly MCL_FUTURE?: number;
}

/** `PROT_*`, `MAP_*`, `MS_*`, `MADV_*` with their C names and this platform's values. */
export const constants: Constants = Object.freeze({ ...native.constants }) as unknown as Constants;

/** The size of a memory page in bytes (`sysconf(_SC_PAGESIZE)`), usually 4096. */
export const pageSize: number = native.pageSize;
