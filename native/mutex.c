/*
 * A robust, process-shared POSIX mutex (pthread_mutex_t with PTHREAD_PROCESS_SHARED and
 * PTHREAD_MUTEX_ROBUST) placed in shared memory by src/sync.ts. If its owner dies, the kernel marks the
 * lock word FUTEX_OWNER_DIED and wakes a waiter, whose lock returns EOWNERDEAD: it owns the mutex and
 * must repair the data, then call pthread_mutex_consistent. One pthread call per wrapper; pthread
 * functions return their error number, which the wrappers negate.
 */
#include "mutex.h"

#include <dlfcn.h>
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/*
 * Mutexes held by each Node environment. When an environment is torn down (a worker exits, or the
 * main thread's environment is freed at exit) mmapkit unmaps its memory before the thread exits, so
 * the kernel's robust-list walk at thread exit can no longer reach those mutexes. mutex_env_teardown
 * does for them what the kernel would have done: mark the owner dead and wake a waiter.
 */
typedef struct held {
  napi_env env;
  pthread_mutex_t* m;
  struct held* next;
} held_t;
static pthread_mutex_t g_held_mu = PTHREAD_MUTEX_INITIALIZER;
static held_t* g_held = NULL;

static void held_add(napi_env env, pthread_mutex_t* m) {
  held_t* h = malloc(sizeof *h);
  if (h == NULL) return; /* only the teardown repair is lost */
  h->env = env;
  h->m = m;
  pthread_mutex_lock(&g_held_mu);
  h->next = g_held;
  g_held = h;
  pthread_mutex_unlock(&g_held_mu);
}

static void held_remove(napi_env env, pthread_mutex_t* m) {
  pthread_mutex_lock(&g_held_mu);
  for (held_t** p = &g_held; *p != NULL; p = &(*p)->next) {
    if ((*p)->env == env && (*p)->m == m) {
      held_t* h = *p;
      *p = h->next;
      free(h);
      break;
    }
  }
  pthread_mutex_unlock(&g_held_mu);
}

/* mutexHeldIn(addr, length) -> how many mutexes inside [addr, addr+length) this environment holds. */
napi_value js_mutex_held_in(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  void* addr;
  uint64_t len;
  if (!get_args(env, info, 2, argv) || !get_ptr(env, argv[0], &addr) || !get_u64(env, argv[1], &len)) return NULL;
  uintptr_t start = (uintptr_t)addr;
  int32_t n = 0;
  pthread_mutex_lock(&g_held_mu);
  for (held_t* h = g_held; h != NULL; h = h->next) {
    uintptr_t m = (uintptr_t)h->m;
    if (h->env == env && m >= start && m - start < len) n++;
  }
  pthread_mutex_unlock(&g_held_mu);
  return make_i32(env, n);
}

void mutex_env_teardown(void* env) {
#ifdef __GLIBC__
  uint32_t tid = (uint32_t)syscall(SYS_gettid);
#endif
  pthread_mutex_lock(&g_held_mu);
  for (held_t** p = &g_held; *p != NULL;) {
    held_t* h = *p;
    if (h->env != env) {
      p = &h->next;
      continue;
    }
#ifdef __GLIBC__
    /* The kernel's handle_futex_death on the robust futex word (glibc: __data.__lock). */
    _Atomic uint32_t* word = (_Atomic uint32_t*)&h->m->__data.__lock;
    uint32_t uval = atomic_load(word);
    while ((uval & FUTEX_TID_MASK) == tid) {
      uint32_t nval = (uval & FUTEX_WAITERS) | FUTEX_OWNER_DIED;
      /* seq_cst: publishes "owner died" before any waiter is woken */
      if (atomic_compare_exchange_strong(word, &uval, nval)) {
        if (uval & FUTEX_WAITERS) syscall(SYS_futex, word, FUTEX_WAKE, 1, NULL, NULL, 0);
        break;
      }
    }
#endif
    *p = h->next;
    free(h);
  }
  pthread_mutex_unlock(&g_held_mu);
}

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

typedef int (*clocklock_fn)(pthread_mutex_t*, clockid_t, const struct timespec*);

/* pthread_mutex_clocklock looked up at run time, so that one binary loads on C libraries without it
 * (glibc < 2.30, musl), where it is NULL. */
static clocklock_fn g_clocklock = NULL;
static pthread_once_t g_clocklock_once = PTHREAD_ONCE_INIT;

static void look_up_clocklock(void) {
  void* sym = dlsym(RTLD_DEFAULT, "pthread_mutex_clocklock");
  memcpy(&g_clocklock, &sym, sizeof g_clocklock); /* object to function pointer, as POSIX allows for dlsym */
}

static clocklock_fn find_clocklock(void) {
  pthread_once(&g_clocklock_once, look_up_clocklock); /* publishes g_clocklock to every caller */
  return g_clocklock;
}

/* Record a successful lock (0 or EOWNERDEAD) or unlock for mutex_env_teardown. */
static int track(napi_env env, pthread_mutex_t* m, int rc, bool locking) {
  if (locking && (rc == 0 || rc == EOWNERDEAD)) held_add(env, m);
  if (!locking && rc == 0) held_remove(env, m);
  return rc;
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
    /* pthread_mutex_clocklock (glibc 2.30+, not in musl) takes a monotonic deadline; where the C
     * library lacks it, pthread_mutex_timedlock takes a wall-clock one (a clock change moves it). */
    clocklock_fn clocklock = find_clocklock();
    clockid_t clock = clocklock != NULL ? CLOCK_MONOTONIC : CLOCK_REALTIME;
    struct timespec ts;
    clock_gettime(clock, &ts);
    long long ns = (long long)ts.tv_nsec + (long long)timeout;
    ts.tv_sec += ns / 1000000000LL;
    ts.tv_nsec = ns % 1000000000LL;
    rc = clocklock != NULL ? clocklock(m, CLOCK_MONOTONIC, &ts) : pthread_mutex_timedlock(m, &ts);
  }
  return make_i32(env, -track(env, m, rc, true));
}

/* mutexTryLock(addr) -> 0 | -EBUSY | -EOWNERDEAD | -ENOTRECOVERABLE */
napi_value js_mutex_trylock(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  pthread_mutex_t* m;
  if (!get_mutex(env, info, 1, argv, &m)) return NULL;
  return make_i32(env, -track(env, m, pthread_mutex_trylock(m), true));
}

/* mutexUnlock(addr) -> 0 | -EPERM (not the owner) */
napi_value js_mutex_unlock(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  pthread_mutex_t* m;
  if (!get_mutex(env, info, 1, argv, &m)) return NULL;
  return make_i32(env, -track(env, m, pthread_mutex_unlock(m), false));
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
