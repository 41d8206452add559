/*
 * The platform's constants, with their C names, for the TypeScript side (`constants`: protection and
 * mapping flags with the huge page sizes, madvise advice, msync and mlock flags, memfd flags and lseek
 * whence values). A constant the platform lacks is absent. Values only: no system call.
 */
#include "constants.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

/* The huge page size of MAP_HUGETLB / MFD_HUGETLB is log2(size) << MAP_HUGE_SHIFT (linux/mman.h,
 * linux/memfd.h: both are HUGETLB_FLAG_ENCODE_SHIFT, 26). glibc's <sys/mman.h> defines MAP_HUGE_SHIFT
 * and MFD_HUGETLB but not the sizes, and the kernel headers that do would redefine glibc's MFD_* names:
 * encode the two sizes here, as the kernel does. */
#ifdef MAP_HUGE_SHIFT
#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB (21 << MAP_HUGE_SHIFT)
#endif
#ifndef MAP_HUGE_1GB
#define MAP_HUGE_1GB (30 << MAP_HUGE_SHIFT)
#endif
#endif
#if defined(MFD_HUGETLB) && !defined(MFD_HUGE_SHIFT)
#define MFD_HUGE_SHIFT 26 /* HUGETLB_FLAG_ENCODE_SHIFT, as MAP_HUGE_SHIFT */
#endif
#ifdef MFD_HUGETLB
#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB (21U << MFD_HUGE_SHIFT)
#endif
#ifndef MFD_HUGE_1GB
#define MFD_HUGE_1GB (30U << MFD_HUGE_SHIFT)
#endif
#endif

static bool set_const(napi_env env, napi_value obj, const char* name, int64_t v) {
  napi_value n;
  return napi_create_int64(env, v, &n) == napi_ok && napi_set_named_property(env, obj, name, n) == napi_ok;
}

#define C(name)                                                   \
  do {                                                            \
    if (!set_const(env, obj, #name, (int64_t)(name))) return NULL; \
  } while (0)

/* The flags of this platform, with their C names. A flag the platform lacks is absent. */
napi_value js_constants(napi_env env) {
  napi_value obj;
  NAPI_CALL(env, napi_create_object(env, &obj));
  C(PROT_NONE);
  C(PROT_READ);
  C(PROT_WRITE);
  C(PROT_EXEC);
  C(MAP_SHARED);
  C(MAP_PRIVATE);
  C(MAP_ANONYMOUS);
  C(MAP_FIXED);
#ifdef MAP_SHARED_VALIDATE
  C(MAP_SHARED_VALIDATE);
#endif
#ifdef MAP_NORESERVE
  C(MAP_NORESERVE);
#endif
#ifdef MAP_POPULATE
  C(MAP_POPULATE);
#endif
#ifdef MAP_LOCKED
  C(MAP_LOCKED);
#endif
#ifdef MAP_NONBLOCK
  C(MAP_NONBLOCK);
#endif
#ifdef MAP_HUGETLB
  C(MAP_HUGETLB);
#endif
#ifdef MAP_HUGE_SHIFT
  C(MAP_HUGE_SHIFT);
  C(MAP_HUGE_2MB);
  C(MAP_HUGE_1GB);
#endif
#ifdef MAP_FIXED_NOREPLACE
  C(MAP_FIXED_NOREPLACE);
#endif
#ifdef MAP_GROWSDOWN
  C(MAP_GROWSDOWN);
#endif
#ifdef MAP_STACK
  C(MAP_STACK);
#endif
#ifdef MAP_SYNC
  C(MAP_SYNC);
#endif
  C(MS_ASYNC);
  C(MS_SYNC);
  C(MS_INVALIDATE);
  C(MADV_NORMAL);
  C(MADV_RANDOM);
  C(MADV_SEQUENTIAL);
  C(MADV_WILLNEED);
  C(MADV_DONTNEED);
#ifdef MADV_FREE
  C(MADV_FREE);
#endif
#ifdef MADV_REMOVE
  C(MADV_REMOVE);
#endif
#ifdef MADV_DONTFORK
  C(MADV_DONTFORK);
#endif
#ifdef MADV_DOFORK
  C(MADV_DOFORK);
#endif
#ifdef MADV_MERGEABLE
  C(MADV_MERGEABLE);
#endif
#ifdef MADV_UNMERGEABLE
  C(MADV_UNMERGEABLE);
#endif
#ifdef MADV_HUGEPAGE
  C(MADV_HUGEPAGE);
#endif
#ifdef MADV_NOHUGEPAGE
  C(MADV_NOHUGEPAGE);
#endif
#ifdef MADV_DONTDUMP
  C(MADV_DONTDUMP);
#endif
#ifdef MADV_DODUMP
  C(MADV_DODUMP);
#endif
#ifdef MADV_WIPEONFORK
  C(MADV_WIPEONFORK);
#endif
#ifdef MADV_KEEPONFORK
  C(MADV_KEEPONFORK);
#endif
#ifdef MADV_COLD
  C(MADV_COLD);
#endif
#ifdef MADV_PAGEOUT
  C(MADV_PAGEOUT);
#endif
#ifdef MADV_POPULATE_READ
  C(MADV_POPULATE_READ);
#endif
#ifdef MADV_POPULATE_WRITE
  C(MADV_POPULATE_WRITE);
#endif
#ifdef MFD_CLOEXEC
  C(MFD_CLOEXEC);
#endif
#ifdef MFD_ALLOW_SEALING
  C(MFD_ALLOW_SEALING);
#endif
#ifdef MFD_HUGETLB
  C(MFD_HUGETLB);
  C(MFD_HUGE_2MB);
  C(MFD_HUGE_1GB);
#endif
#ifdef MLOCK_ONFAULT
  C(MLOCK_ONFAULT);
#endif
  C(SEEK_SET);
  C(SEEK_CUR);
  C(SEEK_END);
#ifdef SEEK_DATA
  C(SEEK_DATA);
  C(SEEK_HOLE);
#endif
#ifdef MCL_CURRENT
  C(MCL_CURRENT);
  C(MCL_FUTURE);
#endif
  return obj;
}
