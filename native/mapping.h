#ifndef MMAPKIT_MAPPING_H
#define MMAPKIT_MAPPING_H
#include "util.h"

napi_value js_mmap(napi_env env, napi_callback_info info);
napi_value js_reserve(napi_env env, napi_callback_info info);
napi_value js_mremap(napi_env env, napi_callback_info info);
napi_value js_munmap(napi_env env, napi_callback_info info);
napi_value js_external_memory(napi_env env, napi_callback_info info);
napi_value js_msync(napi_env env, napi_callback_info info);
napi_value js_msync_async(napi_env env, napi_callback_info info);
napi_value js_mprotect(napi_env env, napi_callback_info info);
napi_value js_madvise(napi_env env, napi_callback_info info);
napi_value js_mincore(napi_env env, napi_callback_info info);
napi_value js_mlock(napi_env env, napi_callback_info info);
napi_value js_mlock2(napi_env env, napi_callback_info info);
napi_value js_munlock(napi_env env, napi_callback_info info);
napi_value js_view(napi_env env, napi_callback_info info);
napi_value js_detach(napi_env env, napi_callback_info info);

#endif
