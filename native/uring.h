#ifndef MMAPKIT_URING_H
#define MMAPKIT_URING_H
#include "util.h"

napi_value js_uring_init(napi_env env, napi_callback_info info);
napi_value js_uring_wait(napi_env env, napi_callback_info info);
napi_value js_uring_cancel(napi_env env, napi_callback_info info);
napi_value js_uring_ref(napi_env env, napi_callback_info info);

#endif
