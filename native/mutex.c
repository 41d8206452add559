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
#include <stdint.h>
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

/* Drop this environment's record of m (g_held_mu held). */
static void held_unlink(napi_env env, const pthread_mutex_t* m) {
  for (held_t** p = &g_held; *p != NULL; p = &(*p)->next) {
    if ((*p)->env == env && (*p)->m == m) {
      held_t* h = *p;
      *p = h->next;
      free(h);
      break;
    }
  }
}

static void held_remove(napi_env env, pthread_mutex_t* m) {
  pthread_mutex_lock(&g_held_mu);
  held_unlink(env, m);
  pthread_mutex_unlock(&g_held_mu);
}

/* Whether this environment holds m (g_held_mu held). Used only where the robust list's layout is known
 * (glibc): unused on musl. */
__attribute__((unused)) static bool held_locked(napi_env env, const pthread_mutex_t* m) {
  for (held_t* h = g_held; h != NULL; h = h->next)
    if (h->env == env && h->m == m) return true;
  return false;
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

#ifdef __GLIBC__
/* What the kernel's handle_futex_death does to a robust mutex whose owner `tid` died: if the lock word
 * (glibc: __data.__lock) still names it, mark it FUTEX_OWNER_DIED (keeping FUTEX_WAITERS) and wake one
 * waiter. Whether it did. */
static bool mark_owner_died(pthread_mutex_t* m, uint32_t tid) {
  _Atomic uint32_t* word = (_Atomic uint32_t*)&m->__data.__lock;
  uint32_t uval = atomic_load(word);
  while ((uval & FUTEX_TID_MASK) == tid) {
    uint32_t nval = (uval & FUTEX_WAITERS) | FUTEX_OWNER_DIED;
    /* seq_cst: publishes "owner died" before any waiter is woken */
    if (atomic_compare_exchange_strong(word, &uval, nval)) {
      if (uval & FUTEX_WAITERS) syscall(SYS_futex, word, FUTEX_WAKE, 1, NULL, NULL, 0);
      return true;
    }
  }
  return false;
}
#endif

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
    mark_owner_died(h->m, tid);
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

/* A robust, error-checking mutex at m, process-shared or not: 0 | an error number. */
static int init_robust(pthread_mutex_t* m, bool pshared) {
  pthread_mutexattr_t attr;
  int rc = pthread_mutexattr_init(&attr);
  if (rc == 0 && pshared) rc = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  if (rc == 0) rc = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  if (rc == 0) rc = pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
  if (rc == 0) rc = pthread_mutex_init(m, &attr);
  pthread_mutexattr_destroy(&attr);
  return rc;
}

/* mutexInit(addr) -> 0 | -errno: a robust, process-shared mutex at addr. */
napi_value js_mutex_init(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  pthread_mutex_t* m;
  if (!get_mutex(env, info, 1, argv, &m)) return NULL;
  return make_i32(env, -init_robust(m, true));
}

/*
 * Another process can write anything into the pthread_mutex_t, and glibc trusts it (issue 17). Two
 * fields decide whether glibc's robust list, which runs through the mutexes a thread holds, stays
 * right: the type (__kind) picks the code path of every lock and unlock, and only the robust path
 * links a mutex into the list and takes it out again. So:
 * - lock, trylock and unlock refuse (-EINVAL, without calling glibc) a mutex whose type is not the one
 *   mutexInit gave it: a normal or error-checking type would lock without linking, or unlock without
 *   unlinking, and leave the list pointing into memory that unmap() may then free (the next robust
 *   lock writes there: SIGSEGV); a garbage type is EINVAL from glibc anyway;
 * - after a lock or unlock, the list is checked, for a type changed during the call;
 * - mutexAbandon takes a mutex that glibc will not unlock (its type or lock word was overwritten
 *   while this thread held it) off the list itself, following only links it can vouch for.
 */
#if defined(__GLIBC__) && defined(__PTHREAD_MUTEX_HAVE_PREV) && __PTHREAD_MUTEX_HAVE_PREV
#define ROBUST_LIST_KNOWN 1
/* How far a walk of the list goes (the kernel's own limit, ROBUST_LIST_LIMIT). */
#define LIST_LIMIT 2048
/*
 * An entry of glibc's list is the address of a mutex's __data.__list.__next, which holds the next
 * entry (bit 0 marks a PI mutex); the head's link is robust_head.list.next. Links are read and
 * written with memcpy: they are pointers of different types at the same places (strict aliasing).
 */
#define ENTRY_OF(m) ((void*)&(m)->__data.__list.__next)
#define MUTEX_OF(e) ((pthread_mutex_t*)((char*)(e) - offsetof(pthread_mutex_t, __data.__list.__next)))
static void* strip(void* e) {
  return (void*)((uintptr_t)e & ~(uintptr_t)1);
}
static void* get_link(const void* at) {
  void* v;
  memcpy(&v, at, sizeof v);
  return v;
}

/* The type glibc gives a robust, process-shared, error-checking mutex (-1: unknown). */
static int g_kind = -1;
static pthread_once_t g_kind_once = PTHREAD_ONCE_INIT;
static void find_kind(void) {
  pthread_mutex_t probe;
  if (init_robust(&probe, true) != 0) return;
  g_kind = probe.__data.__kind;
  pthread_mutex_destroy(&probe);
}
static int expected_kind(void) {
  pthread_once(&g_kind_once, find_kind); /* publishes g_kind to every caller */
  return g_kind;
}
static bool kind_ok(pthread_mutex_t* m) {
  int kind = expected_kind();
  return kind < 0 || __atomic_load_n(&m->__data.__kind, __ATOMIC_RELAXED) == kind;
}

/*
 * The head of glibc's robust list for this thread (&THREAD_SELF->robust_head), or NULL. Taken from a
 * private robust mutex that this thread locks once: glibc links it in with __prev pointing at the
 * head. (get_robust_list would tell what is registered with the kernel, which other code may have
 * replaced; glibc goes on using its own head.)
 */
static __thread struct robust_list_head* t_head;
static struct robust_list_head* thread_head(void) {
  if (t_head != NULL) return t_head;
  pthread_mutex_t probe;
  if (init_robust(&probe, false) != 0) return NULL;
  if (pthread_mutex_lock(&probe) == 0) {
    t_head = (struct robust_list_head*)probe.__data.__list.__prev;
    pthread_mutex_unlock(&probe);
  }
  pthread_mutex_destroy(&probe);
  return t_head;
}

/*
 * Find m on this thread's robust list: 1 (*link_out: the link that points to it), 0 (not on it), -1
 * (cannot tell: an entry that is not a mutex this environment holds, which this code will not
 * follow, or no head). g_held_mu held. Reads only this thread's head and mutexes this environment
 * holds (mapped until it lets go of them), and m itself.
 */
static int find_on_list(napi_env env, pthread_mutex_t* m, void** link_out) {
  struct robust_list_head* head = thread_head();
  if (head == NULL) return -1;
  void* end = &head->list;
  void* link = &head->list.next;
  for (int n = 0; n < LIST_LIMIT; n++) {
    void* e = strip(get_link(link));
    if (e == end) return 0;
    if (e == ENTRY_OF(m)) {
      *link_out = link;
      return 1;
    }
    if (!held_locked(env, MUTEX_OF(e))) return -1;
    link = e; /* an entry is the address of its own link */
  }
  return -1;
}

/* Whether m is on this thread's robust list (1, 0, or -1: cannot tell). */
static int on_list(napi_env env, pthread_mutex_t* m) {
  /* The common cases without g_held_mu: m just locked (first on the list), or the list empty. */
  struct robust_list_head* head = thread_head();
  if (head == NULL) return -1;
  void* first = strip(get_link(&head->list.next));
  if (first == ENTRY_OF(m)) return 1;
  if (first == (void*)&head->list) return 0;
  void* link;
  pthread_mutex_lock(&g_held_mu);
  int r = find_on_list(env, m, &link);
  pthread_mutex_unlock(&g_held_mu);
  return r;
}
#else
#define ROBUST_LIST_KNOWN 0
static bool kind_ok(pthread_mutex_t* m) {
  (void)m;
  return true;
}
static int on_list(napi_env env, pthread_mutex_t* m) {
  (void)env;
  (void)m;
  return -1;
}
#endif

/*
 * glibc locked m without linking it into the robust list (its type changed during the call): let go
 * of it again the way glibc's plain unlock does (lll_unlock), so that this thread never holds a mutex
 * the list does not know.
 */
static void undo_plain_lock(pthread_mutex_t* m) {
#ifdef __GLIBC__
  m->__data.__owner = 0;
  /* release (seq_cst exchange): publishes the unlock; 1 was locked without waiters */
  if (__atomic_exchange_n(&m->__data.__lock, 0, __ATOMIC_SEQ_CST) != 1) syscall(SYS_futex, &m->__data.__lock, FUTEX_WAKE, 1, NULL, NULL, 0);
#else
  (void)m;
#endif
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

/* After a lock call: a mutex glibc locked without linking it in (type changed meanwhile) is EINVAL. */
static int locked(napi_env env, pthread_mutex_t* m, int rc) {
  if ((rc == 0 || rc == EOWNERDEAD) && on_list(env, m) == 0) {
    undo_plain_lock(m);
    return EINVAL;
  }
  return track(env, m, rc, true);
}

/* mutexLock(addr, timeoutNs) -> 0 | -EOWNERDEAD | -ETIMEDOUT | -ENOTRECOVERABLE | -EDEADLK.
 * timeoutNs < 0 waits forever; otherwise pthread_mutex_clocklock on CLOCK_MONOTONIC. */
napi_value js_mutex_lock(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  pthread_mutex_t* m;
  double timeout;
  if (!get_mutex(env, info, 2, argv, &m) || napi_get_value_double(env, argv[1], &timeout) != napi_ok) return NULL;
  if (!kind_ok(m)) return make_i32(env, -EINVAL);
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
  return make_i32(env, -locked(env, m, rc));
}

/* mutexTryLock(addr) -> 0 | -EBUSY | -EOWNERDEAD | -ENOTRECOVERABLE | -EINVAL (a corrupt type) */
napi_value js_mutex_trylock(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  pthread_mutex_t* m;
  if (!get_mutex(env, info, 1, argv, &m)) return NULL;
  if (!kind_ok(m)) return make_i32(env, -EINVAL);
  return make_i32(env, -locked(env, m, pthread_mutex_trylock(m)));
}

/* mutexUnlock(addr) -> 0 | -EPERM (not the owner, or a lock word overwritten) | -EINVAL (a corrupt
 * type: not unlocked; or one that changed during the call: unlocked but still on the robust list).
 * After -EINVAL, or -EPERM for a mutex this environment holds, mutexAbandon lets go of it. */
napi_value js_mutex_unlock(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  pthread_mutex_t* m;
  if (!get_mutex(env, info, 1, argv, &m)) return NULL;
  if (!kind_ok(m)) return make_i32(env, -EINVAL);
  int rc = pthread_mutex_unlock(m);
  if (rc == 0 && on_list(env, m) == 1) return make_i32(env, -EINVAL); /* still held on record */
  return make_i32(env, -track(env, m, rc, false));
}

/*
 * mutexAbandon(addr) -> 1 (let go, lock word marked) | 0 (let go; the word did not name this thread)
 * | -EPERM (this environment does not hold it) | -EFAULT (cannot let go safely: nothing changed) |
 * -ENOSYS (not glibc).
 * Let go of a mutex this environment holds but glibc will not unlock: take it off this thread's
 * robust list (following only links to the list's head or to mutexes this environment holds), mark
 * it as the kernel marks the mutex of an owner that died (FUTEX_OWNER_DIED, one waiter woken) if its
 * lock word still names this thread, and forget it, so that its memory can be unmapped.
 */
napi_value js_mutex_abandon(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  pthread_mutex_t* m;
  if (!get_mutex(env, info, 1, argv, &m)) return NULL;
#if ROBUST_LIST_KNOWN
  uint32_t tid = (uint32_t)syscall(SYS_gettid);
  int rc = 0;
  pthread_mutex_lock(&g_held_mu);
  void* link = NULL;
  int where = held_locked(env, m) ? find_on_list(env, m, &link) : -2;
  if (where == -2) {
    rc = -EPERM;
  } else if (where < 0) {
    rc = -EFAULT;
  } else if (where == 1) {
    void* end = &thread_head()->list;
    void* next = get_link(ENTRY_OF(m));
    void* after = strip(next);
    if (after != end && !held_locked(env, MUTEX_OF(after))) {
      rc = -EFAULT; /* its own link is garbage: the rest of the list cannot be found from here */
    } else {
      /* As glibc's DEQUEUE_MUTEX: the link the kernel follows changes first, then the back link
       * (glibc's __prev: the address of the link that points to the entry). */
      memcpy(link, &next, sizeof next);
      if (after != end) MUTEX_OF(after)->__data.__list.__prev = (__pthread_list_t*)link;
      m->__data.__list.__prev = NULL;
      m->__data.__list.__next = NULL;
    }
  }
  if (where >= 0 && rc == 0) {
    if (mark_owner_died(m, tid)) rc = 1;
    held_unlink(env, m);
  }
  pthread_mutex_unlock(&g_held_mu);
  return make_i32(env, rc);
#else
  return make_i32(env, -ENOSYS);
#endif
}

/* mutexConsistent(addr) -> 0 | -EINVAL: after EOWNERDEAD, the data has been repaired. */
napi_value js_mutex_consistent(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  pthread_mutex_t* m;
  if (!get_mutex(env, info, 1, argv, &m)) return NULL;
  return make_i32(env, -pthread_mutex_consistent(m));
}

/* { size, align, lockWordOffset, kindOffset, kind }: where the futex word of the mutex is (glibc:
 * __data.__lock), so that an async locker can sleep on it, and where its type is (__data.__kind) and
 * the value mutexInit gives it, for messages; -1 where the layout is unknown. */
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
#if ROBUST_LIST_KNOWN
  NAPI_CALL(env, napi_create_int32(env, (int32_t)offsetof(pthread_mutex_t, __data.__kind), &v));
  NAPI_CALL(env, napi_set_named_property(env, obj, "kindOffset", v));
  NAPI_CALL(env, napi_create_int32(env, expected_kind(), &v));
#else
  NAPI_CALL(env, napi_create_int32(env, -1, &v));
  NAPI_CALL(env, napi_set_named_property(env, obj, "kindOffset", v));
#endif
  NAPI_CALL(env, napi_set_named_property(env, obj, "kind", v));
  return obj;
}
