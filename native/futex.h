#ifndef MMAPKIT_FUTEX_H
#define MMAPKIT_FUTEX_H
#include "util.h"

napi_value js_futex_wait(napi_env env, napi_callback_info info);
napi_value js_futex_wake(napi_env env, napi_callback_info info);
napi_value js_wait_async_init(napi_env env, napi_callback_info info);
napi_value js_wait_async(napi_env env, napi_callback_info info);
napi_value js_wait_async_cancel(napi_env env, napi_callback_info info);
napi_value js_wait_async_ref(napi_env env, napi_callback_info info);

#endif
