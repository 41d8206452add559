#ifndef MMAPKIT_FUTEX_PI_H
#define MMAPKIT_FUTEX_PI_H
#include "util.h"

napi_value js_gettid(napi_env env, napi_callback_info info);
napi_value js_futex_lock_pi(napi_env env, napi_callback_info info);
napi_value js_futex_trylock_pi(napi_env env, napi_callback_info info);
napi_value js_futex_unlock_pi(napi_env env, napi_callback_info info);

#endif
