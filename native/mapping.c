/*
 * Memory-mapping system calls, one wrapper each. Every wrapper takes checked primitives (addresses as
 * bigint, lengths and offsets as number or bigint, flags as int32) and returns its result or -errno.
 * Validation, page rounding and error shaping are in src/mapping.ts.
 */
#include "mapping.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "guard.h"

/* Tell V8 that `change` bytes of memory outside its heap came or went (napi_adjust_external_memory),
 * so that its garbage collector runs sooner while dropped mappings hold memory, and finds them. */
static bool report_external(napi_env env, int64_t change) {
  int64_t total;
  return change == 0 || napi_adjust_external_memory(env, change, &total) == napi_ok;
}

/* mmap(length, prot, flags, fd, offset, external) -> address (bigint) | -errno (number).
 * The mapping is recorded in the SIGBUS guard's registry so a truncated file cannot kill us, and
 * `external` bytes of it (TypeScript decides how many) are reported to V8 until it is unmapped: the
 * registry gives them back once, to js_reserve, js_munmap or the environment's teardown. */
napi_value js_mmap(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  uint64_t len, off, external;
  int32_t prot, flags, fd;
  if (!get_args(env, info, 6, argv) || !get_u64(env, argv[0], &len) || !get_i32(env, argv[1], &prot) ||
      !get_i32(env, argv[2], &flags) || !get_i32(env, argv[3], &fd) || !get_u64(env, argv[4], &off) ||
      !get_u64(env, argv[5], &external))
    return NULL;
  if (external > (uint64_t)INT64_MAX) external = (uint64_t)INT64_MAX;
  void* p = mmap(NULL, (size_t)len, prot, flags, fd, (off_t)off);
  if (p == MAP_FAILED) return make_i32(env, -errno);
  int rc = guard_register(p, (size_t)len, prot, env, (size_t)external);
  if (rc != 0) {
    munmap(p, (size_t)len);
    return make_i32(env, rc);
  }
  if (!report_external(env, (int64_t)external)) {
    guard_unregister(p); /* gives back bytes V8 never got: drop them */
    munmap(p, (size_t)len);
    THROW(env, "mmapkit: napi_adjust_external_memory failed");
  }
  return make_ptr(env, p);
}

/* externalMemory() -> the bytes of external memory V8 counts for this environment's isolate (what
 * napi_adjust_external_memory adds up; not process.memoryUsage().external, which counts ArrayBuffers). */
napi_value js_external_memory(napi_env env, napi_callback_info info) {
  int64_t total;
  NAPI_CALL(env, napi_adjust_external_memory(env, 0, &total));
  napi_value r;
  NAPI_CALL(env, napi_create_double(env, (double)total, &r));
  return r;
}

/* munmap(addr, length) -> 0 | -errno. Only whole mappings made by js_mmap are passed here. */
napi_value js_munmap(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  void* addr;
  uint64_t len;
  if (!get_args(env, info, 2, argv) || !get_ptr(env, argv[0], &addr) || !get_u64(env, argv[1], &len))
    return NULL;
  /* Forget the range first: once unmapped, the address may be reused by an unrelated mapping. */
  size_t external = guard_unregister(addr);
  int rc = munmap(addr, (size_t)len);
  int err = errno;
  report_external(env, -(int64_t)external);
  return make_result(env, rc, err);
}

/* reserve(addr, length) -> 0 | -errno: replace a mapping by an inaccessible placeholder
 * (mmap MAP_FIXED, PROT_NONE, anonymous, no reserve). The file pages are released at once, but the
 * addresses stay ours, so nothing new can be mapped where a stale pointer (an fs.write in flight on
 * a libuv thread, say) could still write from or read into: it gets EFAULT instead. munmap later.
 * The memory is gone, so V8 hears that its bytes are. */
napi_value js_reserve(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  void* addr;
  uint64_t len;
  if (!get_args(env, info, 2, argv) || !get_ptr(env, argv[0], &addr) || !get_u64(env, argv[1], &len))
    return NULL;
  void* p = mmap(addr, (size_t)len, PROT_NONE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return make_i32(env, -errno);
  report_external(env, -(int64_t)guard_mark_reserved(addr));
  return make_i32(env, 0);
}

#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4 /* Linux 5.7; older C headers lack the name */
#endif

/* mremap(addr, oldLength, newLength, flags, external) -> new address (bigint) | -errno (number).
 * flags: 0 (in place only), MREMAP_MAYMOVE, or MREMAP_MAYMOVE | MREMAP_DONTUNMAP (same length: the
 * old range stays mapped, empty, for js_reserve to hold); never MREMAP_FIXED (mmapkit chooses no
 * address). Only whole mappings made by js_mmap are passed here. The SIGBUS guard's registry follows
 * the move (guard_remap), and V8 hears of `external` bytes for the mapping instead of the old count.
 * If the new range cannot be registered after a DONTUNMAP move, the pages are moved back. */
napi_value js_mremap(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  void* addr;
  uint64_t old_len, new_len, external;
  int32_t flags;
  if (!get_args(env, info, 5, argv) || !get_ptr(env, argv[0], &addr) || !get_u64(env, argv[1], &old_len) ||
      !get_u64(env, argv[2], &new_len) || !get_i32(env, argv[3], &flags) || !get_u64(env, argv[4], &external))
    return NULL;
  if ((flags & ~(MREMAP_MAYMOVE | MREMAP_DONTUNMAP)) != 0) return make_i32(env, -EINVAL);
  if (external > (uint64_t)INT64_MAX) external = (uint64_t)INT64_MAX;
  /* (the fifth argument is read by glibc for MREMAP_DONTUNMAP too: always pass it) */
  void* p = mremap(addr, (size_t)old_len, (size_t)new_len, flags, NULL);
  if (p == MAP_FAILED) return make_i32(env, -errno);
  bool keep_old = (flags & MREMAP_DONTUNMAP) != 0;
  int64_t change;
  int rc = guard_remap(addr, p, (size_t)new_len, keep_old, (size_t)external, &change);
  if (rc != 0 && keep_old) {
    mremap(p, (size_t)new_len, (size_t)new_len, MREMAP_MAYMOVE | MREMAP_FIXED, addr);
    return make_i32(env, rc);
  }
  report_external(env, change);
  return make_ptr(env, p);
}

/* addr, length, int: the shape of msync, mprotect, madvise. */
static bool get_range_and_int(napi_env env, napi_callback_info info, void** addr, uint64_t* len, int32_t* v) {
  napi_value argv[3];
  return get_args(env, info, 3, argv) && get_ptr(env, argv[0], addr) && get_u64(env, argv[1], len) &&
         get_i32(env, argv[2], v);
}

/* msync(addr, length, flags) -> 0 | -errno */
napi_value js_msync(napi_env env, napi_callback_info info) {
  void* addr;
  uint64_t len;
  int32_t flags;
  if (!get_range_and_int(env, info, &addr, &len, &flags)) return NULL;
  int rc = msync(addr, (size_t)len, flags);
  return make_result(env, rc, errno);
}

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  void* addr;
  size_t len;
  int flags;
  int result;
} msync_job_t;

static void msync_execute(napi_env env, void* data) {
  msync_job_t* job = data;
  job->result = msync(job->addr, job->len, job->flags) == 0 ? 0 : -errno;
}

static void msync_complete(napi_env env, napi_status status, void* data) {
  msync_job_t* job = data;
  napi_value v;
  if (napi_create_int32(env, status == napi_ok ? job->result : -ECANCELED, &v) == napi_ok)
    napi_resolve_deferred(env, job->deferred, v);
  napi_delete_async_work(env, job->work);
  free(job);
}

/* msyncAsync(addr, length, flags) -> Promise<0 | -errno>, msync on a libuv pool thread.
 * The caller (src/mapping.ts) keeps the mapping alive until the promise settles. */
napi_value js_msync_async(napi_env env, napi_callback_info info) {
  void* addr;
  uint64_t len;
  int32_t flags;
  if (!get_range_and_int(env, info, &addr, &len, &flags)) return NULL;
  msync_job_t* job = calloc(1, sizeof *job);
  if (job == NULL) THROW(env, "mmapkit: out of memory");
  job->addr = addr;
  job->len = (size_t)len;
  job->flags = flags;
  napi_value promise, name;
  NAPI_CALL(env, napi_create_promise(env, &job->deferred, &promise));
  NAPI_CALL(env, napi_create_string_utf8(env, "mmapkit.msync", NAPI_AUTO_LENGTH, &name));
  NAPI_CALL(env, napi_create_async_work(env, NULL, name, msync_execute, msync_complete, job, &job->work));
  NAPI_CALL(env, napi_queue_async_work(env, job->work));
  return promise;
}

/* mprotect(addr, length, prot) -> 0 | -errno. The guard learns the new protection so that a page it
 * patches keeps the access the mapping has. */
napi_value js_mprotect(napi_env env, napi_callback_info info) {
  void* addr;
  uint64_t len;
  int32_t prot;
  if (!get_range_and_int(env, info, &addr, &len, &prot)) return NULL;
  int rc = mprotect(addr, (size_t)len, prot);
  int err = errno;
  if (rc == 0) guard_set_prot(addr, (size_t)len, prot);
  return make_result(env, rc, err);
}

/* madvise(addr, length, advice) -> 0 | -errno */
napi_value js_madvise(napi_env env, napi_callback_info info) {
  void* addr;
  uint64_t len;
  int32_t advice;
  if (!get_range_and_int(env, info, &addr, &len, &advice)) return NULL;
  int rc = madvise(addr, (size_t)len, advice);
  return make_result(env, rc, errno);
}

/* mincore(addr, length, vec: Uint8Array) -> 0 | -errno; vec holds one byte per page. */
napi_value js_mincore(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  void* addr;
  uint64_t len;
  if (!get_args(env, info, 3, argv) || !get_ptr(env, argv[0], &addr) || !get_u64(env, argv[1], &len))
    return NULL;
  bool is_typed;
  NAPI_CALL(env, napi_is_typedarray(env, argv[2], &is_typed));
  if (!is_typed) THROW(env, "mmapkit: mincore expects a Uint8Array");
  napi_typedarray_type type;
  size_t count;
  void* data;
  NAPI_CALL(env, napi_get_typedarray_info(env, argv[2], &type, &count, &data, NULL, NULL));
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  if (type != napi_uint8_array || count < ((size_t)len + page - 1) / page)
    THROW(env, "mmapkit: mincore vector is too small");
  int rc = mincore(addr, (size_t)len, data);
  return make_result(env, rc, errno);
}

static bool get_range(napi_env env, napi_callback_info info, void** addr, uint64_t* len) {
  napi_value argv[2];
  return get_args(env, info, 2, argv) && get_ptr(env, argv[0], addr) && get_u64(env, argv[1], len);
}

/* mlock(addr, length) -> 0 | -errno */
napi_value js_mlock(napi_env env, napi_callback_info info) {
  void* addr;
  uint64_t len;
  if (!get_range(env, info, &addr, &len)) return NULL;
  int rc = mlock(addr, (size_t)len);
  return make_result(env, rc, errno);
}

/* mlock2(addr, length, flags) -> 0 | -errno (flags: MLOCK_ONFAULT) */
napi_value js_mlock2(napi_env env, napi_callback_info info) {
  void* addr;
  uint64_t len;
  int32_t flags;
  if (!get_range_and_int(env, info, &addr, &len, &flags)) return NULL;
  int rc = mlock2(addr, (size_t)len, (unsigned int)flags);
  return make_result(env, rc, errno);
}

/* munlock(addr, length) -> 0 | -errno */
napi_value js_munlock(napi_env env, napi_callback_info info) {
  void* addr;
  uint64_t len;
  if (!get_range(env, info, &addr, &len)) return NULL;
  int rc = munlock(addr, (size_t)len);
  return make_result(env, rc, errno);
}

/* view(addr, length) -> ArrayBuffer over that memory | null when this runtime forbids external
 * buffers (V8 memory cage, e.g. Electron). No finalizer: the mapping's lifetime is owned by the
 * Mapping object in TypeScript, which every view keeps alive. */
napi_value js_view(napi_env env, napi_callback_info info) {
  void* addr;
  uint64_t len;
  if (!get_range(env, info, &addr, &len)) return NULL;
  napi_value ab;
  napi_status s = napi_create_external_arraybuffer(env, addr, (size_t)len, NULL, NULL, &ab);
  if (s == napi_ok) return ab;
  if (s == napi_no_external_buffers_allowed) return null_after_clearing(env);
  THROW(env, "mmapkit: napi_create_external_arraybuffer failed");
}

/* detach(arrayBuffer): every view of it becomes length 0. Called before munmap. */
napi_value js_detach(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  bool detached = false;
  NAPI_CALL(env, napi_is_detached_arraybuffer(env, argv[0], &detached));
  if (!detached) NAPI_CALL(env, napi_detach_arraybuffer(env, argv[0]));
  return NULL;
}
