/*
 * Small helpers shared by the native files: argument extraction and result construction.
 * Arguments are validated in TypeScript (src/validators.ts); the checks here are the cheap guards
 * that keep a bad call from the internal binding from crashing the process.
 */
#ifndef MMAPKIT_UTIL_H
#define MMAPKIT_UTIL_H

#define _GNU_SOURCE
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <node_api.h>

/* Throw a plain Error with `msg` and return NULL from the calling native function. */
#define THROW(env, msg)                        \
  do {                                         \
    napi_throw_error((env), NULL, (msg));      \
    return NULL;                               \
  } while (0)

/* Evaluate a napi call; on failure throw a generic error and return NULL. */
#define NAPI_CALL(env, call)                                   \
  do {                                                         \
    if ((call) != napi_ok) THROW((env), "mmapkit: Node-API call failed: " #call); \
  } while (0)

/* Read up to `n` arguments into argv; returns false (with a pending exception) on failure. */
bool get_args(napi_env env, napi_callback_info info, size_t n, napi_value* argv);

/* Read a non-negative 64-bit integer given as a number or a bigint. */
bool get_u64(napi_env env, napi_value v, uint64_t* out);

/* Read a 32-bit signed integer given as a number. */
bool get_i32(napi_env env, napi_value v, int32_t* out);

/* Read an address (bigint or number) as a pointer. */
bool get_ptr(napi_env env, napi_value v, void** out);

/* The pointer of an external (a context made by this addon), or NULL with a TypeError naming `what`. */
void* get_external(napi_env env, napi_value v, const char* what);

/* Return a JS number. */
napi_value make_i32(napi_env env, int32_t v);

/* Return a JS bigint holding an address. */
napi_value make_ptr(napi_env env, void* p);

/* Return 0 on success or -errno on failure as a JS number: the convention of every wrapper. */
napi_value make_result(napi_env env, int rc, int err);

/* Clear any pending exception and return null: for a call whose failure TypeScript reports itself. */
napi_value null_after_clearing(napi_env env);

#endif
