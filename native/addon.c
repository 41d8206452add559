/*
 * The export table, and the cleanup hooks that run when a Node environment goes away. Most exports
 * wrap one system call or pthread call (mapping.c, shm.c, fd.c, mutex.c, futex_pi.c; futexWait and
 * futexWake in futex.c), the mapping calls with the SIGBUS guard's bookkeeping around them. The others
 * do more or something else: msyncAsync runs msync on a libuv pool thread; waitAsync* hand waits to waiter
 * threads (futex.c) and uring* queue them in an io_uring whose completions the event loop polls
 * (uring.c); view and detach make and detach ArrayBuffers over mapped memory; externalMemory and
 * mutexHeldIn read bookkeeping; guardInstall, guardInstalled, faulted, faultCounter and mappingCount
 * belong to the SIGBUS guard (guard.c); constants (constants.c), mutexLayout and pageSize are values. src/binding.ts
 * is the only file that loads this addon, and it describes the contract of every export in TypeScript.
 */
#include <unistd.h>

#include "constants.h"
#include "fd.h"
#include "futex.h"
#include "futex_pi.h"
#include "guard.h"
#include "mapping.h"
#include "mutex.h"
#include "shm.h"
#include "uring.h"

/* When this environment goes away (a worker thread exits), its JavaScript objects are gone and their
 * finalizers will never run: unmap what they still held, or every worker would leak its mappings.
 * The bytes they had reported to V8 go back too, so its count is right to the end. */
static void on_env_teardown(void* env) {
  int64_t external = (int64_t)guard_unmap_owned(env), total;
  if (external > 0) napi_adjust_external_memory((napi_env)env, -external, &total);
}

static napi_value init(napi_env env, napi_value exports) {
  if (napi_add_env_cleanup_hook(env, on_env_teardown, env) != napi_ok) return NULL;
  /* Registered after the unmapping hook, so it runs before it (hooks run in reverse order): the
   * mutexes must be marked while their memory is still mapped. */
  if (napi_add_env_cleanup_hook(env, mutex_env_teardown, env) != napi_ok) return NULL;

  napi_property_descriptor props[] = {
      /* Mapping (mapping.c) */
      {"mmap", NULL, js_mmap, NULL, NULL, NULL, napi_enumerable, NULL},
      {"reserve", NULL, js_reserve, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mremap", NULL, js_mremap, NULL, NULL, NULL, napi_enumerable, NULL},
      {"munmap", NULL, js_munmap, NULL, NULL, NULL, napi_enumerable, NULL},
      {"externalMemory", NULL, js_external_memory, NULL, NULL, NULL, napi_enumerable, NULL},
      {"msync", NULL, js_msync, NULL, NULL, NULL, napi_enumerable, NULL},
      {"msyncAsync", NULL, js_msync_async, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mprotect", NULL, js_mprotect, NULL, NULL, NULL, napi_enumerable, NULL},
      {"madvise", NULL, js_madvise, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mincore", NULL, js_mincore, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mlock", NULL, js_mlock, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mlock2", NULL, js_mlock2, NULL, NULL, NULL, napi_enumerable, NULL},
      {"munlock", NULL, js_munlock, NULL, NULL, NULL, napi_enumerable, NULL},
      {"view", NULL, js_view, NULL, NULL, NULL, napi_enumerable, NULL},
      {"detach", NULL, js_detach, NULL, NULL, NULL, napi_enumerable, NULL},
      /* The SIGBUS guard (guard.c) */
      {"faultCounter", NULL, js_fault_counter, NULL, NULL, NULL, napi_enumerable, NULL},
      {"faulted", NULL, js_faulted, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mappingCount", NULL, js_mapping_count, NULL, NULL, NULL, napi_enumerable, NULL},
      {"guardInstall", NULL, js_guard_install, NULL, NULL, NULL, napi_enumerable, NULL},
      {"guardInstalled", NULL, js_guard_installed, NULL, NULL, NULL, napi_enumerable, NULL},
      /* Shared memory objects (shm.c) and file descriptors (fd.c) */
      {"shmOpen", NULL, js_shm_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"shmUnlink", NULL, js_shm_unlink, NULL, NULL, NULL, napi_enumerable, NULL},
      {"memfdCreate", NULL, js_memfd_create, NULL, NULL, NULL, napi_enumerable, NULL},
      {"dupCloexec", NULL, js_dup_cloexec, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setCloexec", NULL, js_set_cloexec, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lseek", NULL, js_lseek, NULL, NULL, NULL, napi_enumerable, NULL},
      /* Waiting: futex (futex.c), waiter threads (futex.c), io_uring (uring.c) */
      {"futexWait", NULL, js_futex_wait, NULL, NULL, NULL, napi_enumerable, NULL},
      {"futexWake", NULL, js_futex_wake, NULL, NULL, NULL, napi_enumerable, NULL},
      {"waitAsyncInit", NULL, js_wait_async_init, NULL, NULL, NULL, napi_enumerable, NULL},
      {"waitAsync", NULL, js_wait_async, NULL, NULL, NULL, napi_enumerable, NULL},
      {"waitAsyncCancel", NULL, js_wait_async_cancel, NULL, NULL, NULL, napi_enumerable, NULL},
      {"waitAsyncRef", NULL, js_wait_async_ref, NULL, NULL, NULL, napi_enumerable, NULL},
      {"uringInit", NULL, js_uring_init, NULL, NULL, NULL, napi_enumerable, NULL},
      {"uringWait", NULL, js_uring_wait, NULL, NULL, NULL, napi_enumerable, NULL},
      {"uringCancel", NULL, js_uring_cancel, NULL, NULL, NULL, napi_enumerable, NULL},
      {"uringRef", NULL, js_uring_ref, NULL, NULL, NULL, napi_enumerable, NULL},
      /* Process-shared mutexes (mutex.c) */
      {"mutexInit", NULL, js_mutex_init, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mutexLock", NULL, js_mutex_lock, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mutexTryLock", NULL, js_mutex_trylock, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mutexUnlock", NULL, js_mutex_unlock, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mutexAbandon", NULL, js_mutex_abandon, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mutexHeldIn", NULL, js_mutex_held_in, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mutexConsistent", NULL, js_mutex_consistent, NULL, NULL, NULL, napi_enumerable, NULL},
      /* The pointer-free mutex: priority-inheritance futexes (futex_pi.c) */
      {"gettid", NULL, js_gettid, NULL, NULL, NULL, napi_enumerable, NULL},
      {"futexLockPi", NULL, js_futex_lock_pi, NULL, NULL, NULL, napi_enumerable, NULL},
      {"futexTryLockPi", NULL, js_futex_trylock_pi, NULL, NULL, NULL, napi_enumerable, NULL},
      {"futexUnlockPi", NULL, js_futex_unlock_pi, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;

  napi_value constants = js_constants(env);
  napi_value mutex_layout = js_mutex_layout(env);
  if (mutex_layout == NULL || napi_set_named_property(env, exports, "mutexLayout", mutex_layout) != napi_ok) return NULL;
  napi_value page;
  if (constants == NULL || napi_set_named_property(env, exports, "constants", constants) != napi_ok ||
      napi_create_int64(env, sysconf(_SC_PAGESIZE), &page) != napi_ok ||
      napi_set_named_property(env, exports, "pageSize", page) != napi_ok)
    return NULL;
  return exports;
}

NAPI_MODULE_INIT() { return init(env, exports); }
