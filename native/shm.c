/*
 * Shared memory objects: named POSIX shared memory (shm_open/shm_unlink) and anonymous memory files
 * (memfd_create) that can be handed to child processes as a file descriptor. One system call each;
 * names, sizes and modes are validated in src/shm.ts. The descriptor calls around them are in fd.c.
 */
#include "shm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* Copy a JS string argument into a fresh NUL-terminated buffer (free it), or NULL with an exception. */
static char* get_string(napi_env env, napi_value v) {
  size_t len;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "mmapkit: internal binding expected a string");
    return NULL;
  }
  char* s = malloc(len + 1);
  if (s == NULL) {
    napi_throw_error(env, NULL, "mmapkit: out of memory");
    return NULL;
  }
  napi_get_value_string_utf8(env, v, s, len + 1, &len);
  return s;
}

/* shmOpen(name, oflag, mode) -> fd | -errno. glibc opens it with O_CLOEXEC. */
napi_value js_shm_open(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int32_t oflag, mode;
  if (!get_args(env, info, 3, argv) || !get_i32(env, argv[1], &oflag) || !get_i32(env, argv[2], &mode)) return NULL;
  char* name = get_string(env, argv[0]);
  if (name == NULL) return NULL;
  int fd = shm_open(name, oflag, (mode_t)mode);
  int err = errno;
  free(name);
  return make_i32(env, fd >= 0 ? fd : -err);
}

/* shmUnlink(name) -> 0 | -errno */
napi_value js_shm_unlink(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  char* name = get_string(env, argv[0]);
  if (name == NULL) return NULL;
  int rc = shm_unlink(name);
  int err = errno;
  free(name);
  return make_result(env, rc, err);
}

/* memfdCreate(name, flags) -> fd | -errno */
napi_value js_memfd_create(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int32_t flags;
  if (!get_args(env, info, 2, argv) || !get_i32(env, argv[1], &flags)) return NULL;
  char* name = get_string(env, argv[0]);
  if (name == NULL) return NULL;
  int fd = memfd_create(name, (unsigned int)flags);
  int err = errno;
  free(name);
  return make_i32(env, fd >= 0 ? fd : -err);
}
