#ifndef MMAPKIT_MUTEX_H
#define MMAPKIT_MUTEX_H
#include "util.h"

napi_value js_mutex_init(napi_env env, napi_callback_info info);
napi_value js_mutex_lock(napi_env env, napi_callback_info info);
napi_value js_mutex_trylock(napi_env env, napi_callback_info info);
napi_value js_mutex_unlock(napi_env env, napi_callback_info info);
napi_value js_mutex_abandon(napi_env env, napi_callback_info info);
napi_value js_mutex_held_in(napi_env env, napi_callback_info info);
napi_value js_mutex_consistent(napi_env env, napi_callback_info info);
napi_value js_mutex_layout(napi_env env);

/* Environment cleanup hook: mark mutexes this environment still holds as owner-died (see mutex.c). */
void mutex_env_teardown(void* env);

#endif
