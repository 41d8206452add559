/*
 * File descriptor calls: dup with close-on-exec, the close-on-exec flag (for descriptors handed to
 * children: src/shm.ts), and lseek (SEEK_DATA / SEEK_HOLE: src/posix.ts validates its arguments). One
 * system call each.
 */
#include "fd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>

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
