/*
 * The export table. Each export wraps one system call (see mapping.c and guard.c); src/binding.ts is
 * the only file that loads this addon, and it describes the contract of every export in TypeScript.
 */
#include <unistd.h>

#include "guard.h"
#include "mapping.h"

/* When this environment goes away (a worker thread exits), its JavaScript objects are gone and their
 * finalizers will never run: unmap what they still held, or every worker would leak its mappings. */
static void on_env_teardown(void* env) { guard_unmap_owned(env); }

static napi_value init(napi_env env, napi_value exports) {
  if (napi_add_env_cleanup_hook(env, on_env_teardown, env) != napi_ok) return NULL;

  napi_property_descriptor props[] = {
      {"mmap", NULL, js_mmap, NULL, NULL, NULL, napi_enumerable, NULL},
      {"munmap", NULL, js_munmap, NULL, NULL, NULL, napi_enumerable, NULL},
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
      {"faultCounter", NULL, js_fault_counter, NULL, NULL, NULL, napi_enumerable, NULL},
      {"faulted", NULL, js_faulted, NULL, NULL, NULL, napi_enumerable, NULL},
      {"guardInstall", NULL, js_guard_install, NULL, NULL, NULL, napi_enumerable, NULL},
      {"guardInstalled", NULL, js_guard_installed, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;

  napi_value constants = js_constants(env);
  napi_value page;
  if (constants == NULL || napi_set_named_property(env, exports, "constants", constants) != napi_ok ||
      napi_create_int64(env, sysconf(_SC_PAGESIZE), &page) != napi_ok ||
      napi_set_named_property(env, exports, "pageSize", page) != napi_ok)
    return NULL;
  return exports;
}

NAPI_MODULE_INIT() { return init(env, exports); }
