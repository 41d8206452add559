/*
 * Shared memory objects: named POSIX shared memory (shm_open/shm_unlink) and anonymous memory files
 * (memfd_create) that can be handed to child processes as a file descriptor, and the descriptor
 * calls around them (dup, close-on-exec, lseek). One system call each; names, sizes and modes are
 * validated in src/shm.ts, lseek's arguments in src/posix.ts.
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

/* dupCloexec(fd) -> new fd (close-on-exec) | -errno: fcntl(F_DUPFD_CLOEXEC) */
napi_value js_dup_cloexec(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t fd;
  if (!get_args(env, info, 1, argv) || !get_i32(env, argv[0], &fd)) return NULL;
  int r = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  return make_i32(env, r >= 0 ? r : -errno);
}

/* setCloexec(fd, on) -> 0 | -errno: fcntl(F_SETFD) */
napi_value js_set_cloexec(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int32_t fd;
  bool on;
  if (!get_args(env, info, 2, argv) || !get_i32(env, argv[0], &fd) || napi_get_value_bool(env, argv[1], &on) != napi_ok)
    return NULL;
  int rc = fcntl(fd, F_SETFD, on ? FD_CLOEXEC : 0);
  return make_result(env, rc, errno);
}

/* lseek(fd, offset, whence) -> the new offset (a number: offsets stay below 2^53) | -errno.
 * For SEEK_DATA / SEEK_HOLE, which Node's fs does not offer: where data and holes of a sparse file are. */
napi_value js_lseek(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int32_t fd, whence;
  uint64_t offset;
  if (!get_args(env, info, 3, argv) || !get_i32(env, argv[0], &fd) || !get_u64(env, argv[1], &offset) || !get_i32(env, argv[2], &whence))
    return NULL;
  if (offset > (uint64_t)INT64_MAX) return make_i32(env, -EINVAL);
  off_t rc = lseek(fd, (off_t)offset, whence);
  napi_value out;
  NAPI_CALL(env, napi_create_double(env, rc < 0 ? (double)-errno : (double)rc, &out));
  return out;
}
