#ifndef MMAPKIT_FD_H
#define MMAPKIT_FD_H
#include "util.h"

napi_value js_dup_cloexec(napi_env env, napi_callback_info info);
napi_value js_set_cloexec(napi_env env, napi_callback_info info);
napi_value js_lseek(napi_env env, napi_callback_info info);

#endif
