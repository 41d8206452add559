#include "util.h"

#include <errno.h>
#include <stdio.h>

bool get_args(napi_env env, napi_callback_info info, size_t n, napi_value* argv) {
  size_t argc = n;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return false;
  if (argc < n) {
    napi_throw_type_error(env, NULL, "mmapkit: internal binding called with too few arguments");
    return false;
  }
  return true;
}

bool get_u64(napi_env env, napi_value v, uint64_t* out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return false;
  if (t == napi_bigint) {
    bool lossless = false;
    if (napi_get_value_bigint_uint64(env, v, out, &lossless) != napi_ok) return false;
    if (!lossless) {
      napi_throw_range_error(env, NULL, "mmapkit: internal binding got a bigint out of 64-bit range");
      return false;
    }
    return true;
  }
  if (t == napi_number) {
    double d;
    if (napi_get_value_double(env, v, &d) != napi_ok) return false;
    if (!(d >= 0 && d <= 9007199254740991.0) || d != (double)(uint64_t)d) {
      napi_throw_range_error(env, NULL, "mmapkit: internal binding got a number that is not a safe non-negative integer");
      return false;
    }
    *out = (uint64_t)d;
    return true;
  }
  napi_throw_type_error(env, NULL, "mmapkit: internal binding expected a number or a bigint");
  return false;
}

bool get_i32(napi_env env, napi_value v, int32_t* out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return false;
  if (t != napi_number) {
    napi_throw_type_error(env, NULL, "mmapkit: internal binding expected a number");
    return false;
  }
  return napi_get_value_int32(env, v, out) == napi_ok;
}

bool get_ptr(napi_env env, napi_value v, void** out) {
  uint64_t u;
  if (!get_u64(env, v, &u)) return false;
  *out = (void*)(uintptr_t)u;
  return true;
}

void* get_external(napi_env env, napi_value v, const char* what) {
  void* p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || p == NULL) {
    char msg[96];
    snprintf(msg, sizeof msg, "mmapkit: internal binding expected %s", what);
    napi_throw_type_error(env, NULL, msg);
    return NULL;
  }
  return p;
}

napi_value make_i32(napi_env env, int32_t v) {
  napi_value r;
  NAPI_CALL(env, napi_create_int32(env, v, &r));
  return r;
}

napi_value make_ptr(napi_env env, void* p) {
  napi_value r;
  NAPI_CALL(env, napi_create_bigint_uint64(env, (uint64_t)(uintptr_t)p, &r));
  return r;
}

napi_value make_result(napi_env env, int rc, int err) {
  return make_i32(env, rc == 0 ? 0 : -err);
}

napi_value null_after_clearing(napi_env env) {
  napi_value v;
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (pending) napi_get_and_clear_last_exception(env, &v);
  NAPI_CALL(env, napi_get_null(env, &v));
  return v;
}
