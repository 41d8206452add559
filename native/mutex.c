/*
 * A robust, process-shared POSIX mutex (pthread_mutex_t with PTHREAD_PROCESS_SHARED and
 * PTHREAD_MUTEX_ROBUST) placed in shared memory by src/sync.ts. If its owner dies, the kernel marks the
 * lock word FUTEX_OWNER_DIED and wakes a waiter, whose lock returns EOWNERDEAD: it owns the mutex and
 * must repair the data, then call pthread_mutex_consistent. One pthread call per wrapper; pthread
 * functions return their error number, which the wrappers negate.
 */
#include "mutex.h"

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <time.h>

static bool get_mutex(napi_env env, napi_callback_info info, size_t n, napi_value* argv, pthread_mutex_t** m) {
  void* p;
  if (!get_args(env, info, n, argv) || !get_ptr(env, argv[0], &p)) return false;
  *m = p;
  return true;
}

/* mutexInit(addr) -> 0 | -errno: a robust, process-shared mutex at addr. */
napi_value js_mutex_init(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  pthread_mutex_t* m;
  if (!get_mutex(env, info, 1, argv, &m)) return NULL;
  pthread_mutexattr_t attr;
  int rc = pthread_mutexattr_init(&attr);
  if (rc == 0) rc = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  if (rc == 0) rc = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  if (rc == 0) rc = pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
  if (rc == 0) rc = pthread_mutex_init(m, &attr);
  pthread_mutexattr_destroy(&attr);
  return make_i32(env, -rc);
}

/* mutexLock(addr, timeoutNs) -> 0 | -EOWNERDEAD | -ETIMEDOUT | -ENOTRECOVERABLE | -EDEADLK.
 * timeoutNs < 0 waits forever; otherwise pthread_mutex_clocklock on CLOCK_MONOTONIC. */
napi_value js_mutex_lock(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  pthread_mutex_t* m;
  double timeout;
  if (!get_mutex(env, info, 2, argv, &m) || napi_get_value_double(env, argv[1], &timeout) != napi_ok) return NULL;
  int rc;
  if (timeout < 0) {
    rc = pthread_mutex_lock(m);
  } else {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long ns = (long long)ts.tv_nsec + (long long)timeout;
    ts.tv_sec += ns / 1000000000LL;
    ts.tv_nsec = ns % 1000000000LL;
    rc = pthread_mutex_clocklock(m, CLOCK_MONOTONIC, &ts);
  }
  return make_i32(env, -rc);
}

/* mutexTryLock(addr) -> 0 | -EBUSY | -EOWNERDEAD | -ENOTRECOVERABLE */
napi_value js_mutex_trylock(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  pthread_mutex_t* m;
  if (!get_mutex(env, info, 1, argv, &m)) return NULL;
  return make_i32(env, -pthread_mutex_trylock(m));
}

/* mutexUnlock(addr) -> 0 | -EPERM (not the owner) */
napi_value js_mutex_unlock(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  pthread_mutex_t* m;
  if (!get_mutex(env, info, 1, argv, &m)) return NULL;
  return make_i32(env, -pthread_mutex_unlock(m));
}

/* mutexConsistent(addr) -> 0 | -EINVAL: after EOWNERDEAD, the data has been repaired. */
napi_value js_mutex_consistent(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  pthread_mutex_t* m;
  if (!get_mutex(env, info, 1, argv, &m)) return NULL;
  return make_i32(env, -pthread_mutex_consistent(m));
}

/* { size, align, lockWordOffset }: where the futex word of the mutex is (glibc: __data.__lock),
 * so that an async locker can sleep on it; -1 where the layout is unknown. */
napi_value js_mutex_layout(napi_env env) {
  napi_value obj, v;
  NAPI_CALL(env, napi_create_object(env, &obj));
  NAPI_CALL(env, napi_create_int32(env, (int32_t)sizeof(pthread_mutex_t), &v));
  NAPI_CALL(env, napi_set_named_property(env, obj, "size", v));
  NAPI_CALL(env, napi_create_int32(env, (int32_t)_Alignof(pthread_mutex_t), &v));
  NAPI_CALL(env, napi_set_named_property(env, obj, "align", v));
#ifdef __GLIBC__
  NAPI_CALL(env, napi_create_int32(env, (int32_t)offsetof(pthread_mutex_t, __data.__lock), &v));
#else
  NAPI_CALL(env, napi_create_int32(env, -1, &v));
#endif
  NAPI_CALL(env, napi_set_named_property(env, obj, "lockWordOffset", v));
  return obj;
}
