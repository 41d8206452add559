/*
 * SIGBUS guard: a registry of the mappings this addon made, and a signal handler that repairs a bus
 * error inside one of them (a page past the end of a truncated file: zero pages from there to the end
 * of the mapping, in one kernel mapping) instead of letting it kill the process. See docs/safety.md
 * for what the user sees.
 */
#ifndef MMAPKIT_GUARD_H
#define MMAPKIT_GUARD_H

#include "util.h"

/* Install the handler once per process (again: reinstall it if it was replaced). Returns 0 or -errno. */
int guard_install(bool again);

/* Record a live mapping so that a bus error inside it can be repaired, owned by the Node environment
 * (main thread or worker) that made it, which reported `external` bytes of it to V8
 * (napi_adjust_external_memory). Returns 0 or -ENOMEM.
 * The registry hands those bytes back exactly once, when the mapping stops being live: from
 * guard_mark_reserved, guard_unregister or guard_unmap_owned, whichever comes first; the caller
 * subtracts them from V8's count. */
int guard_register(void* addr, size_t len, int prot, void* owner, size_t external);

/* Unmap every mapping still owned by `owner`: called when that environment is torn down (a worker
 * thread exits), when no JavaScript object of it can reach the memory any more. Returns the bytes the
 * live ones had reported to V8. */
size_t guard_unmap_owned(void* owner);

/* Forget a mapping (called right before munmap). Returns the bytes it had reported to V8 if it was
 * still live (0 for a placeholder: guard_mark_reserved returned them). */
size_t guard_unregister(void* addr);

/* How many registered mappings are live, in every environment (placeholders do not count). */
size_t guard_live_count(void);

/* Record the protection of a mapping after mprotect of [addr, addr+len); only a change of the whole
 * mapping counts (used to patch pages). */
void guard_set_prot(void* addr, size_t len, int prot);

/* The mapping at addr was replaced by a PROT_NONE placeholder: stop repairing faults there, but keep
 * it for guard_unmap_owned. Returns the bytes it had reported to V8 (0 if it was not live). */
size_t guard_mark_reserved(void* addr);

/* Whether a bus error inside the mapping starting at addr has been repaired since it was mapped. */
bool guard_faulted(void* addr);

/* mremap moved or resized the mapping at old_addr to [new_addr, new_addr+new_len): the registry follows
 * (keep_old, MREMAP_DONTUNMAP: the old range stays registered and the new one gets a slot of its own).
 * `external` is what is now reported to V8 for it; *change, what to add to V8's count. 0 or -errno. */
int guard_remap(void* old_addr, void* new_addr, size_t new_len, bool keep_old, size_t external, int64_t* change);

napi_value js_guard_install(napi_env env, napi_callback_info info);
napi_value js_guard_installed(napi_env env, napi_callback_info info);
napi_value js_fault_counter(napi_env env, napi_callback_info info);
napi_value js_faulted(napi_env env, napi_callback_info info);
napi_value js_mapping_count(napi_env env, napi_callback_info info);

#endif
