/*
 * Waiting across processes: the futex system call on a 32-bit word in shared memory.
 *
 * Blocking: futexWait / futexWake wrap FUTEX_WAIT / FUTEX_WAKE without FUTEX_PRIVATE_FLAG (the private
 * flag only works inside one process).
 *
 * Async: waitAsync hands the wait to a dedicated waiter thread (never the libuv pool: pending waits
 * there would starve fs I/O). The thread spins briefly on the word, then sleeps in futex_waitv on two
 * words at once: the shared word, and a private per-job "cancel" word, so an AbortSignal wakes exactly
 * its own waiter and nobody else. The result goes back to JavaScript through one thread-safe function
 * per Node environment, which is unref'd unless TypeScript asks otherwise. Where futex_waitv is missing
 * (Linux < 5.16) the thread sleeps in FUTEX_WAIT slices of 50 ms and checks the cancel word between them.
 *
 * Threads: idle waiter threads are kept for reuse and exit after IDLE_SECONDS without work.
 */
#include "futex.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define IDLE_SECONDS 10
#define FALLBACK_SLICE_NS 50000000LL
#define NS_PER_S 1000000000LL

#ifndef FUTEX_32
#define FUTEX_32 2
#endif
/* futex_waitv (Linux 5.16) is called by number: the C library of the oldest glibc we build for (2.28)
 * has no SYS_futex_waitv, and kernel headers may or may not define struct futex_waitv, so we use our
 * own copy of it under another name (the layout is the kernel ABI: include/uapi/linux/futex.h). */
#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif
struct mk_futex_waitv {
  uint64_t val;
  uint64_t uaddr;
  uint32_t flags;
  uint32_t reserved;
};

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static struct timespec to_timespec(int64_t ns) {
  struct timespec ts = {.tv_sec = ns / NS_PER_S, .tv_nsec = ns % NS_PER_S};
  return ts;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* ---------- blocking ---------- */

/* futexWait(addr, expected, timeoutNs) -> 0 | -errno. timeoutNs < 0 waits forever.
 * -EAGAIN: the word did not hold `expected`; -ETIMEDOUT; -EINTR: a signal (TypeScript retries). */
napi_value js_futex_wait(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  void* addr;
  int32_t expected;
  double timeout;
  if (!get_args(env, info, 3, argv) || !get_ptr(env, argv[0], &addr) || !get_i32(env, argv[1], &expected) ||
      napi_get_value_double(env, argv[2], &timeout) != napi_ok)
    return NULL;
  struct timespec ts, *tsp = NULL;
  if (timeout >= 0) {
    ts = to_timespec((int64_t)timeout);
    tsp = &ts;
  }
  long rc = syscall(SYS_futex, addr, FUTEX_WAIT, expected, tsp, NULL, 0);
  return make_result(env, rc == 0 ? 0 : -1, errno);
}

/* futexWake(addr, count) -> number woken | -errno */
napi_value js_futex_wake(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  void* addr;
  int32_t count;
  if (!get_args(env, info, 2, argv) || !get_ptr(env, argv[0], &addr) || !get_i32(env, argv[1], &count)) return NULL;
  long rc = syscall(SYS_futex, addr, FUTEX_WAKE, count, NULL, NULL, 0);
  return make_i32(env, rc >= 0 ? (int32_t)rc : -errno);
}

/* ---------- async ---------- */

typedef struct env_ctx env_ctx_t;

typedef struct job {
  _Atomic int32_t* addr;
  int32_t expected;
  int64_t deadline_ns; /* CLOCK_MONOTONIC; < 0: none */
  int64_t spin_ns;
  _Atomic uint32_t cancel; /* private futex word: 1 once aborted */
  int32_t result;          /* 0 woken (or the word changed), -ETIMEDOUT, -ECANCELED */
  uint32_t id;
  env_ctx_t* ctx;
  struct job* next_queued;
  struct job* next_live;
} job_t;

/* One per Node environment. Freed once Node has finalized its thread-safe function AND no job refers
 * to it any more (a waiter thread may still be finishing a job of an environment that is gone). */
struct env_ctx {
  napi_threadsafe_function tsfn;
  napi_ref dispatch;
  job_t* live;      /* jobs not yet delivered, for cancel and teardown */
  int waiting;      /* jobs that may still read their word (queued or inside wait_job) */
  uint32_t next_id;
  bool closing;     /* the environment is being torn down: never touch tsfn again */
  bool finalized;   /* Node has finalized tsfn */
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv;
static pthread_cond_t g_done_cv = PTHREAD_COND_INITIALIZER; /* a job left wait_job */
static bool g_cv_ready = false;
static job_t* g_queue_head = NULL;
static job_t* g_queue_tail = NULL;
static int g_idle = 0;   /* threads waiting for work */
static int g_queued = 0; /* jobs in the queue; each one needs an idle thread of its own or a new one */
static _Atomic int g_waitv_missing = 0;

/* Forget a delivered (or undeliverable) job and free it, and its context if that was the last
 * reference. Called with g_mu held. */
static void retire_job(job_t* job) {
  env_ctx_t* ctx = job->ctx;
  for (job_t** p = &ctx->live; *p != NULL; p = &(*p)->next_live) {
    if (*p == job) {
      *p = job->next_live;
      break;
    }
  }
  free(job);
  if (ctx->finalized && ctx->live == NULL) free(ctx);
}

/* Sleep until the word changes or is woken, the job is cancelled, or the deadline passes. */
static int32_t wait_job(job_t* job) {
  /* Spin first: a notify that comes within microseconds costs no sleep and no wake-up. */
  if (job->spin_ns > 0) {
    int64_t until = now_ns() + job->spin_ns;
    do {
      for (int i = 0; i < 64; i++) {
        /* acquire: what the notifier wrote before changing the word is visible to JavaScript after */
        if (atomic_load_explicit(job->addr, memory_order_acquire) != job->expected) return 0;
        if (atomic_load_explicit(&job->cancel, memory_order_relaxed)) return -ECANCELED;
        cpu_relax();
      }
    } while (now_ns() < until);
  }
  for (;;) {
    if (atomic_load_explicit(&job->cancel, memory_order_acquire)) return -ECANCELED;
    if (job->deadline_ns >= 0 && now_ns() >= job->deadline_ns) return -ETIMEDOUT;
    if (!atomic_load_explicit(&g_waitv_missing, memory_order_relaxed)) {
      struct mk_futex_waitv w[2];
      memset(w, 0, sizeof w);
      w[0].uaddr = (uint64_t)(uintptr_t)job->addr;
      w[0].val = (uint32_t)job->expected;
      w[0].flags = FUTEX_32; /* shared: other processes wake it */
      w[1].uaddr = (uint64_t)(uintptr_t)&job->cancel;
      w[1].val = 0;
      w[1].flags = FUTEX_32 | FUTEX_PRIVATE_FLAG; /* only this process cancels */
      struct timespec ts, *tsp = NULL;
      if (job->deadline_ns >= 0) {
        ts = to_timespec(job->deadline_ns);
        tsp = &ts;
      }
      long rc = syscall(SYS_futex_waitv, w, 2, 0, tsp, CLOCK_MONOTONIC);
      if (rc == 0) return 0; /* the shared word was woken */
      if (rc == 1) continue; /* the cancel word: loop sees cancel */
      if (errno == ENOSYS) {
        atomic_store(&g_waitv_missing, 1);
        continue;
      }
      if (errno == ETIMEDOUT) return -ETIMEDOUT;
      if (errno == EAGAIN) {
        /* one of the words did not hold its value: cancelled, or the shared word changed (a wake) */
        if (atomic_load_explicit(&job->cancel, memory_order_acquire)) return -ECANCELED;
        return 0;
      }
      if (errno == EINTR) continue;
      return -errno;
    }
    /* Fallback: FUTEX_WAIT in slices, checking the cancel word between them. */
    int64_t slice = FALLBACK_SLICE_NS;
    if (job->deadline_ns >= 0) {
      int64_t left = job->deadline_ns - now_ns();
      if (left <= 0) return -ETIMEDOUT;
      if (left < slice) slice = left;
    }
    struct timespec ts = to_timespec(slice);
    long rc = syscall(SYS_futex, job->addr, FUTEX_WAIT, job->expected, &ts, NULL, 0);
    if (rc == 0) return 0;
    if (errno == EAGAIN) return 0;
    if (errno != ETIMEDOUT && errno != EINTR) return -errno;
  }
}

/* Hand a finished job to JavaScript. Runs on the waiter thread; g_mu is held while the thread-safe
 * function is used, so environment teardown (which takes g_mu) cannot run in between. */
static void deliver(job_t* job) {
  env_ctx_t* ctx = job->ctx;
  pthread_mutex_lock(&g_mu);
  /* The word is no longer read: teardown may unmap it now. */
  ctx->waiting--;
  pthread_cond_broadcast(&g_done_cv);
  if (ctx->closing || napi_call_threadsafe_function(ctx->tsfn, job, napi_tsfn_nonblocking) != napi_ok) retire_job(job);
  pthread_mutex_unlock(&g_mu);
}

static void* waiter_main(void* arg) {
  (void)arg;
  pthread_mutex_lock(&g_mu);
  for (;;) {
    while (g_queue_head == NULL) {
      g_idle++;
      struct timespec ts = to_timespec(now_ns() + IDLE_SECONDS * NS_PER_S);
      int rc = pthread_cond_timedwait(&g_cv, &g_mu, &ts);
      g_idle--;
      if (rc == ETIMEDOUT && g_queue_head == NULL) {
        pthread_mutex_unlock(&g_mu);
        return NULL;
      }
    }
    job_t* job = g_queue_head;
    g_queue_head = job->next_queued;
    if (g_queue_head == NULL) g_queue_tail = NULL;
    g_queued--;
    pthread_mutex_unlock(&g_mu);
    job->result = wait_job(job);
    deliver(job);
    pthread_mutex_lock(&g_mu);
  }
}

/* Runs on the JavaScript thread: hand (id, result) to the dispatcher registered by TypeScript. With
 * env == NULL, Node is finalizing the thread-safe function and drops the queued job. */
static void call_js(napi_env env, napi_value js_cb, void* context, void* data) {
  job_t* job = data;
  env_ctx_t* ctx = context;
  uint32_t id = job->id;
  int32_t result = job->result;
  pthread_mutex_lock(&g_mu);
  bool deliverable = env != NULL && !ctx->closing;
  napi_ref dispatch = ctx->dispatch;
  retire_job(job); /* may free ctx when env == NULL: do not touch ctx below unless deliverable */
  pthread_mutex_unlock(&g_mu);
  if (!deliverable) return;
  napi_value fn, global, argv[2];
  if (napi_get_reference_value(env, dispatch, &fn) != napi_ok || napi_get_global(env, &global) != napi_ok ||
      napi_create_uint32(env, id, &argv[0]) != napi_ok || napi_create_int32(env, result, &argv[1]) != napi_ok)
    return;
  napi_call_function(env, global, fn, 2, argv, NULL);
}

/* Environment teardown (a worker exits, or the main thread's environment is freed). Registered after
 * the thread-safe function, so it runs before Node closes it (cleanup hooks run in reverse order),
 * and before the mapping guard unmaps this environment's memory. Cancel every waiter and wait until
 * none reads its word any more; from then on no thread touches the thread-safe function. */
static void ctx_teardown(void* arg) {
  env_ctx_t* ctx = arg;
  pthread_mutex_lock(&g_mu);
  ctx->closing = true;
  for (job_t* j = ctx->live; j != NULL; j = j->next_live) {
    /* release: the waiter that sees cancel == 1 stops reading its word */
    atomic_store_explicit(&j->cancel, 1, memory_order_release);
    syscall(SYS_futex, &j->cancel, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
  }
  while (ctx->waiting > 0) pthread_cond_wait(&g_done_cv, &g_mu);
  pthread_mutex_unlock(&g_mu);
}

static void ctx_finalize(napi_env env, void* data, void* hint) {
  env_ctx_t* ctx = data;
  pthread_mutex_lock(&g_mu);
  bool was_closing = ctx->closing;
  ctx->closing = true;
  ctx->finalized = true;
  napi_ref dispatch = ctx->dispatch;
  ctx->dispatch = NULL;
  bool free_now = ctx->live == NULL;
  pthread_mutex_unlock(&g_mu);
  if (!was_closing) napi_remove_env_cleanup_hook(env, ctx_teardown, ctx);
  if (dispatch != NULL) napi_delete_reference(env, dispatch);
  if (free_now) free(ctx);
}

/* waitAsyncInit(dispatch(id, result)) -> context (external). Once per environment. */
napi_value js_wait_async_init(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  pthread_mutex_lock(&g_mu);
  if (!g_cv_ready) {
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&g_cv, &attr);
    pthread_condattr_destroy(&attr);
    g_cv_ready = true;
  }
  pthread_mutex_unlock(&g_mu);
  env_ctx_t* ctx = calloc(1, sizeof *ctx);
  if (ctx == NULL) THROW(env, "mmapkit: out of memory");
  napi_value name, ext;
  if (napi_create_reference(env, argv[0], 1, &ctx->dispatch) != napi_ok ||
      napi_create_string_utf8(env, "mmapkit.waitAsync", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, ctx, ctx_finalize, ctx, call_js, &ctx->tsfn) !=
          napi_ok) {
    free(ctx);
    THROW(env, "mmapkit: could not create the waitAsync thread-safe function");
  }
  napi_unref_threadsafe_function(env, ctx->tsfn);
  napi_add_env_cleanup_hook(env, ctx_teardown, ctx);
  NAPI_CALL(env, napi_create_external(env, ctx, NULL, NULL, &ext));
  return ext;
}

static env_ctx_t* get_ctx(napi_env env, napi_value v) { return get_external(env, v, "the waitAsync context"); }

/* waitAsync(ctx, addr, expected, timeoutNs, spinNs) -> job id (>0) | -errno.
 * timeoutNs < 0 waits forever. The result arrives through dispatch(id, 0 | -ETIMEDOUT | -ECANCELED). */
napi_value js_wait_async(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  void* addr;
  int32_t expected;
  double timeout, spin;
  if (!get_args(env, info, 5, argv)) return NULL;
  env_ctx_t* ctx = get_ctx(env, argv[0]);
  if (ctx == NULL || !get_ptr(env, argv[1], &addr) || !get_i32(env, argv[2], &expected) ||
      napi_get_value_double(env, argv[3], &timeout) != napi_ok || napi_get_value_double(env, argv[4], &spin) != napi_ok)
    return NULL;
  job_t* job = calloc(1, sizeof *job);
  if (job == NULL) return make_i32(env, -ENOMEM);
  job->addr = addr;
  job->expected = expected;
  job->deadline_ns = timeout >= 0 ? now_ns() + (int64_t)timeout : -1;
  job->spin_ns = spin > 0 ? (int64_t)spin : 0;
  job->ctx = ctx;
  pthread_mutex_lock(&g_mu);
  if (ctx->closing) {
    pthread_mutex_unlock(&g_mu);
    free(job);
    return make_i32(env, -ECANCELED);
  }
  ctx->waiting++;
  if (++ctx->next_id == 0) ctx->next_id = 1;
  job->id = ctx->next_id;
  job->next_live = ctx->live;
  ctx->live = job;
  if (g_queue_tail != NULL) g_queue_tail->next_queued = job;
  else g_queue_head = job;
  g_queue_tail = job;
  g_queued++;
  int err = 0;
  /* A job must never wait behind another: a queued job can sleep forever in its futex. So each
   * queued job gets an idle thread of its own, or a new thread. */
  if (g_idle >= g_queued) {
    pthread_cond_signal(&g_cv);
  } else {
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    err = pthread_create(&t, &attr, waiter_main, NULL);
    pthread_attr_destroy(&attr);
  }
  uint32_t id = job->id;
  if (err != 0) {
    /* No thread to run it: take the job back out (it is the queue's tail). */
    job_t* prev = NULL;
    for (job_t* j = g_queue_head; j != job; j = j->next_queued) prev = j;
    if (prev == NULL) g_queue_head = NULL;
    else prev->next_queued = NULL;
    g_queue_tail = prev;
    g_queued--;
    ctx->waiting--;
    retire_job(job);
    pthread_mutex_unlock(&g_mu);
    return make_i32(env, -err);
  }
  pthread_mutex_unlock(&g_mu);
  napi_value r;
  NAPI_CALL(env, napi_create_uint32(env, id, &r));
  return r;
}

/* waitAsyncCancel(ctx, id) -> 1 if the job was still pending, else 0. Its result will be -ECANCELED
 * unless it completed first. */
napi_value js_wait_async_cancel(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  uint32_t id;
  if (!get_args(env, info, 2, argv)) return NULL;
  env_ctx_t* ctx = get_ctx(env, argv[0]);
  if (ctx == NULL || napi_get_value_uint32(env, argv[1], &id) != napi_ok) return NULL;
  int found = 0;
  pthread_mutex_lock(&g_mu);
  for (job_t* j = ctx->live; j != NULL; j = j->next_live) {
    if (j->id == id) {
      /* release: the waiter that sees cancel == 1 returns -ECANCELED */
      atomic_store_explicit(&j->cancel, 1, memory_order_release);
      syscall(SYS_futex, &j->cancel, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
      found = 1;
      break;
    }
  }
  pthread_mutex_unlock(&g_mu);
  return make_i32(env, found);
}

/* waitAsyncRef(ctx, keepAlive): whether pending waits keep the event loop alive. */
napi_value js_wait_async_ref(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  bool keep;
  if (!get_args(env, info, 2, argv)) return NULL;
  env_ctx_t* ctx = get_ctx(env, argv[0]);
  if (ctx == NULL || napi_get_value_bool(env, argv[1], &keep) != napi_ok) return NULL;
  if (keep) NAPI_CALL(env, napi_ref_threadsafe_function(env, ctx->tsfn));
  else NAPI_CALL(env, napi_unref_threadsafe_function(env, ctx->tsfn));
  return NULL;
}
