#ifndef MMAPKIT_CONSTANTS_H
#define MMAPKIT_CONSTANTS_H
#include "util.h"

napi_value js_constants(napi_env env);

#endif
