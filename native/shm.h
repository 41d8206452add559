#ifndef MMAPKIT_SHM_H
#define MMAPKIT_SHM_H
#include "util.h"

napi_value js_shm_open(napi_env env, napi_callback_info info);
napi_value js_shm_unlink(napi_env env, napi_callback_info info);
napi_value js_memfd_create(napi_env env, napi_callback_info info);

#endif
