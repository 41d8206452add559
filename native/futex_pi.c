/*
 * Priority-inheritance futexes: the kernel side of the pointer-free Mutex (src/mutex.ts). The lock word
 * in shared memory holds the owner's thread id (TID) | FUTEX_WAITERS | FUTEX_OWNER_DIED and nothing
 * else; the kernel keeps the waiters and the owner in its own memory (pi_state, rt_mutex), looks the
 * owner up by TID, and hands the lock to the top waiter when the owner exits (exit_pi_state_list).
 * TypeScript does the user-space fast paths (compare-and-swap 0 -> TID and TID -> 0) and everything
 * else; one futex call per wrapper here, on shared (not FUTEX_PRIVATE_FLAG) words.
 */
#include "futex_pi.h"

#include <errno.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef FUTEX_LOCK_PI2
#define FUTEX_LOCK_PI2 13 /* Linux 5.14: FUTEX_LOCK_PI with a CLOCK_MONOTONIC timeout */
#endif

#define NS_PER_S 1000000000LL

/* Set once the kernel answered FUTEX_LOCK_PI2 with ENOSYS (Linux < 5.14): use FUTEX_LOCK_PI. */
static _Atomic int g_lock_pi2_missing = 0;

/* gettid() -> this thread's id, as the kernel writes it into PI futex words (in our pid namespace). */
napi_value js_gettid(napi_env env, napi_callback_info info) {
  return make_i32(env, (int32_t)syscall(SYS_gettid));
}

/* An absolute deadline timeoutNs from now on `clock`. */
static struct timespec deadline_on(clockid_t clock, double timeout) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  long long ns = (long long)ts.tv_nsec + (long long)timeout;
  ts.tv_sec += ns / NS_PER_S;
  ts.tv_nsec = ns % NS_PER_S;
  return ts;
}

/* futexLockPi(addr, timeoutNs) -> 0 | -errno: FUTEX_LOCK_PI2 (FUTEX_LOCK_PI before Linux 5.14).
 * timeoutNs < 0 waits forever. -ESRCH: the TID in the word belongs to no thread (its owner died);
 * -EDEADLK: it is ours; -ETIMEDOUT; -EPERM: a kernel thread's TID; -EINVAL: the word disagrees with
 * the kernel's state. A signal does not end the wait (the kernel restarts it). */
napi_value js_futex_lock_pi(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  void* addr;
  double timeout;
  if (!get_args(env, info, 2, argv) || !get_ptr(env, argv[0], &addr) || napi_get_value_double(env, argv[1], &timeout) != napi_ok)
    return NULL;
  long rc;
  if (timeout < 0) {
    rc = syscall(SYS_futex, addr, FUTEX_LOCK_PI, 0, NULL, NULL, 0);
  } else if (!atomic_load_explicit(&g_lock_pi2_missing, memory_order_relaxed)) {
    struct timespec ts = deadline_on(CLOCK_MONOTONIC, timeout);
    rc = syscall(SYS_futex, addr, FUTEX_LOCK_PI2, 0, &ts, NULL, 0);
    if (rc < 0 && errno == ENOSYS) {
      atomic_store_explicit(&g_lock_pi2_missing, 1, memory_order_relaxed);
      ts = deadline_on(CLOCK_REALTIME, timeout); /* FUTEX_LOCK_PI: an absolute CLOCK_REALTIME deadline */
      rc = syscall(SYS_futex, addr, FUTEX_LOCK_PI, 0, &ts, NULL, 0);
    }
  } else {
    struct timespec ts = deadline_on(CLOCK_REALTIME, timeout);
    rc = syscall(SYS_futex, addr, FUTEX_LOCK_PI, 0, &ts, NULL, 0);
  }
  return make_i32(env, rc == 0 ? 0 : -errno);
}

/* futexTryLockPi(addr) -> 0 | -errno: FUTEX_TRYLOCK_PI. -EAGAIN: held by a live thread (the kernel
 * sets FUTEX_WAITERS in the word then, so the owner's unlock goes through the kernel); -ESRCH,
 * -EDEADLK, -EPERM, -EINVAL as for futexLockPi. */
napi_value js_futex_trylock_pi(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  void* addr;
  if (!get_args(env, info, 1, argv) || !get_ptr(env, argv[0], &addr)) return NULL;
  long rc = syscall(SYS_futex, addr, FUTEX_TRYLOCK_PI, 0, NULL, NULL, 0);
  return make_i32(env, rc == 0 ? 0 : -errno);
}

/* futexUnlockPi(addr) -> 0 | -errno: FUTEX_UNLOCK_PI, which hands the lock to the top waiter (or
 * stores 0). -EPERM: the word does not hold our TID; -EINVAL: the word disagrees with the kernel's
 * state; -EAGAIN: the word changed under the call (try again). */
napi_value js_futex_unlock_pi(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  void* addr;
  if (!get_args(env, info, 1, argv) || !get_ptr(env, argv[0], &addr)) return NULL;
  long rc = syscall(SYS_futex, addr, FUTEX_UNLOCK_PI, 0, NULL, NULL, 0);
  return make_i32(env, rc == 0 ? 0 : -errno);
}
