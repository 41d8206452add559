/*
 * Async waiting through io_uring, where the kernel has IORING_OP_FUTEX_WAIT (Linux 6.7+).
 *
 * The waiter-thread path (futex.c) costs two thread wake-ups per wait: the futex wakes the waiter
 * thread, which wakes the event loop. Here the wait is queued in the kernel instead: FUTEX_WAKE from any
 * process completes it, the completion signals an eventfd, and the event loop, which polls that eventfd,
 * wakes once, as it would for a socket. (Measured in C between two processes: 12-14 us per round trip,
 * against 13-15 us for a Unix socket with epoll.)
 *
 * One ring per Node environment. Each export does one thing: uringInit sets the ring up (io_uring_setup,
 * its two mappings, the eventfd, and the poll handle: the only composite, done once), uringWait queues
 * one futex wait (plus a linked timeout) with one io_uring_enter, uringCancel queues one cancellation,
 * uringRef refs or unrefs the poll handle. Results go to the JavaScript dispatch(id, result) given to
 * uringInit: 0 woken (or the word had changed: -EAGAIN), -ECANCELED cancelled or timed out (TypeScript
 * knows which), another -errno an error. Where uringInit returns null, or uringWait refuses a wait,
 * src/wait.ts hands the wait to a waiter thread (futex.c) instead.
 *
 * Ring memory: this thread and the kernel share the rings' mapping. The indexes this thread moves
 * (sq.tail, cq.head) are stored with release and those the kernel moves (sq.head, cq.tail) are loaded
 * with acquire, each paired with the kernel's access to the same index (see the note on barriers at
 * the top of the kernel's io_uring/io_uring.c). This thread is the only writer of sq.tail and
 * cq.head, so it reads those two plainly.
 *
 * Teardown: an async cleanup hook closes the ring (the kernel drops the queued waits) and the poll
 * handle; Node waits until the handle's close callback has removed the hook before it closes the loop.
 */
#include "uring.h"

#include <errno.h>
#include <linux/io_uring.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

/* Not in the headers of older kernels (this Debian's are 6.1); stable kernel ABI values. */
#define OP_FUTEX_WAIT 51
#define FUTEX2_SIZE_U32 0x02
#define FUTEX_BITSET_ANY 0xffffffffu
#define RING_ENTRIES 256
/* Completions the ring holds before the kernel keeps them on its overflow list (see on_poll). */
#define CQ_ENTRIES 4096
/* user_data of the helper requests, whose completions are not reported. */
#define TAG_TIMEOUT (1ULL << 62)
#define TAG_CANCEL (1ULL << 61)

typedef struct {
  napi_env env;
  napi_ref dispatch;
  napi_async_context async_context;
  napi_async_cleanup_hook_handle hook;
  uv_poll_t poll;
  int ring_fd;
  int event_fd;
  void* ring;
  size_t ring_len;
  struct io_uring_sqe* sqes;
  size_t sqes_len;
  unsigned sq_entries;
  unsigned *sq_head, *sq_tail, *sq_mask, *sq_array, *sq_flags;
  unsigned *cq_head, *cq_tail, *cq_mask;
  struct io_uring_cqe* cqes;
} uring_t;

static int sys_setup(unsigned entries, struct io_uring_params* p) { return (int)syscall(__NR_io_uring_setup, entries, p); }
static int sys_enter(int fd, unsigned submit, unsigned flags) { return (int)syscall(__NR_io_uring_enter, fd, submit, 0, flags, NULL, 0); }
static int sys_register(int fd, unsigned op, void* arg, unsigned n) { return (int)syscall(__NR_io_uring_register, fd, op, arg, n); }

/* Whether this kernel knows IORING_OP_FUTEX_WAIT (the probe lists the opcodes it supports). */
static bool supports_futex_wait(int fd) {
  size_t len = sizeof(struct io_uring_probe) + 256 * sizeof(struct io_uring_probe_op);
  struct io_uring_probe* probe = calloc(1, len);
  if (probe == NULL) return false;
  bool ok = sys_register(fd, IORING_REGISTER_PROBE, probe, 256) == 0 && probe->last_op >= OP_FUTEX_WAIT &&
            (probe->ops[OP_FUTEX_WAIT].flags & IO_URING_OP_SUPPORTED) != 0;
  free(probe);
  return ok;
}

static void release_ring(uring_t* u) {
  if (u->sqes != NULL && u->sqes != MAP_FAILED) munmap(u->sqes, u->sqes_len);
  if (u->ring != NULL && u->ring != MAP_FAILED) munmap(u->ring, u->ring_len);
  if (u->ring_fd >= 0) close(u->ring_fd);
  if (u->event_fd >= 0) close(u->event_fd);
  u->sqes = NULL;
  u->ring = NULL;
  u->ring_fd = u->event_fd = -1;
}

/* Set up the ring and its eventfd; false (everything released) where io_uring or its futex wait is missing. */
static bool open_ring(uring_t* u) {
  struct io_uring_params p;
  memset(&p, 0, sizeof p);
  p.flags = IORING_SETUP_CQSIZE;
  p.cq_entries = CQ_ENTRIES;
  u->ring_fd = sys_setup(RING_ENTRIES, &p);
  if (u->ring_fd < 0 || !(p.features & IORING_FEAT_SINGLE_MMAP) || !supports_futex_wait(u->ring_fd)) goto fail;
  size_t sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
  size_t cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
  u->ring_len = sq_len > cq_len ? sq_len : cq_len;
  u->ring = mmap(NULL, u->ring_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, u->ring_fd, IORING_OFF_SQ_RING);
  if (u->ring == MAP_FAILED) goto fail;
  u->sqes_len = p.sq_entries * sizeof(struct io_uring_sqe);
  u->sqes = mmap(NULL, u->sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, u->ring_fd, IORING_OFF_SQES);
  if (u->sqes == MAP_FAILED) goto fail;
  char* r = u->ring;
  u->sq_entries = p.sq_entries;
  u->sq_head = (unsigned*)(r + p.sq_off.head);
  u->sq_tail = (unsigned*)(r + p.sq_off.tail);
  u->sq_mask = (unsigned*)(r + p.sq_off.ring_mask);
  u->sq_array = (unsigned*)(r + p.sq_off.array);
  u->sq_flags = (unsigned*)(r + p.sq_off.flags);
  u->cq_head = (unsigned*)(r + p.cq_off.head);
  u->cq_tail = (unsigned*)(r + p.cq_off.tail);
  u->cq_mask = (unsigned*)(r + p.cq_off.ring_mask);
  u->cqes = (struct io_uring_cqe*)(r + p.cq_off.cqes);
  u->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (u->event_fd < 0 || sys_register(u->ring_fd, IORING_REGISTER_EVENTFD, &u->event_fd, 1) < 0) goto fail;
  return true;
fail:
  release_ring(u);
  return false;
}

/* The next free submission entry, zeroed; NULL when the queue is full (it never is: we submit at once). */
static struct io_uring_sqe* next_sqe(uring_t* u, unsigned* tail) {
  /* acquire: pairs with the kernel's smp_store_release of sq.head (io_commit_sqring), so it has done
   * reading the entries below head before they are reused here */
  unsigned head = atomic_load_explicit((_Atomic unsigned*)u->sq_head, memory_order_acquire);
  if (*tail - head >= u->sq_entries) return NULL;
  unsigned idx = *tail & *u->sq_mask;
  struct io_uring_sqe* sqe = &u->sqes[idx];
  memset(sqe, 0, sizeof *sqe);
  u->sq_array[idx] = idx;
  (*tail)++;
  return sqe;
}

/* Publish the entries up to tail and submit them: 0 | -errno. */
static int submit(uring_t* u, unsigned tail, unsigned count) {
  /* release: pairs with the kernel's smp_load_acquire of sq.tail (io_sqring_entries), so it reads the
   * entries and their sq_array slots as written above */
  atomic_store_explicit((_Atomic unsigned*)u->sq_tail, tail, memory_order_release);
  int rc = sys_enter(u->ring_fd, count, 0);
  if (rc < 0) return -errno;
  return rc == (int)count ? 0 : -EIO;
}

/* The event loop saw the eventfd readable: report every completion to JavaScript. */
static void on_poll(uv_poll_t* handle, int status, int events) {
  (void)status;
  (void)events;
  uring_t* u = handle->data;
  uint64_t count;
  /* One read resets the eventfd's counter (not in semaphore mode): a second would only say EAGAIN. */
  if (read(u->event_fd, &count, sizeof count) < 0 && errno != EAGAIN) return;
  napi_env env = u->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value fn, recv;
  if (napi_get_reference_value(env, u->dispatch, &fn) == napi_ok && fn != NULL && napi_get_global(env, &recv) == napi_ok) {
    for (;;) {
      /* plain: only this thread writes cq.head */
      unsigned head = *u->cq_head;
      /* acquire: pairs with the kernel's smp_store_release of cq.tail (io_commit_cqring), so the
       * entries below tail are read as the kernel wrote them */
      while (head != atomic_load_explicit((_Atomic unsigned*)u->cq_tail, memory_order_acquire)) {
        struct io_uring_cqe* cqe = &u->cqes[head & *u->cq_mask];
        uint64_t id = cqe->user_data;
        int res = cqe->res;
        head++;
        /* release: pairs with the kernel's READ_ONCE of cq.head before it fills a slot (a control
         * dependency, io_get_cqe), so user_data and res are read before the slot is reused */
        atomic_store_explicit((_Atomic unsigned*)u->cq_head, head, memory_order_release);
        if (id & (TAG_TIMEOUT | TAG_CANCEL)) continue;
        napi_value argv[2];
        if (napi_create_double(env, (double)id, &argv[0]) != napi_ok || napi_create_int32(env, res == -EAGAIN ? 0 : res, &argv[1]) != napi_ok) break;
        if (napi_make_callback(env, u->async_context, recv, fn, 2, argv, NULL) == napi_pending_exception) {
          napi_value err;
          napi_get_and_clear_last_exception(env, &err);
          napi_fatal_exception(env, err);
        }
        if (u->ring_fd < 0) goto done; /* the environment is going away */
      }
      /* Completions that did not fit wait on the kernel's overflow list, and signal nothing more: ask
       * for them now that there is room (io_uring_enter with GETEVENTS moves them into the ring).
       * acquire, though nothing in the kernel pairs with it: it sets and clears IORING_SQ_CQ_OVERFLOW
       * with unordered atomic_or / atomic_andnot. The flag only says whether to call io_uring_enter;
       * the completions it moves are read through the acquire of cq.tail above. */
      if (!(atomic_load_explicit((_Atomic unsigned*)u->sq_flags, memory_order_acquire) & IORING_SQ_CQ_OVERFLOW)) break;
      if (sys_enter(u->ring_fd, 0, IORING_ENTER_GETEVENTS) < 0 && errno != EINTR && errno != EBUSY) break;
    }
  }
done:
  napi_close_handle_scope(env, scope);
}

static void on_closed(uv_handle_t* handle) {
  uring_t* u = handle->data;
  napi_remove_async_cleanup_hook(u->hook);
  free(u);
}

/* The environment goes away: drop the ring (and the kernel's queued waits) and close the poll handle. */
static void on_teardown(napi_async_cleanup_hook_handle hook, void* arg) {
  (void)hook;
  uring_t* u = arg;
  uv_poll_stop(&u->poll);
  release_ring(u);
  napi_delete_reference(u->env, u->dispatch);
  napi_async_destroy(u->env, u->async_context);
  uv_close((uv_handle_t*)&u->poll, on_closed);
}

/* uringInit(dispatch) -> context | null (no io_uring, or no futex wait in it) */
napi_value js_uring_init(napi_env env, napi_callback_info info) {
  napi_value argv[1], out, name;
  if (!get_args(env, info, 1, argv)) return NULL;
  uring_t* u = calloc(1, sizeof *u);
  if (u == NULL) THROW(env, "mmapkit: out of memory");
  u->ring_fd = u->event_fd = -1;
  u->env = env;
  struct uv_loop_s* loop;
  if (!open_ring(u) || napi_get_uv_event_loop(env, &loop) != napi_ok || uv_poll_init(loop, &u->poll, u->event_fd) != 0) {
    release_ring(u);
    free(u);
    NAPI_CALL(env, napi_get_null(env, &out));
    return out;
  }
  u->poll.data = u;
  uv_unref((uv_handle_t*)&u->poll); /* TypeScript refs it while a wait that keeps the process alive is pending */
  uv_poll_start(&u->poll, UV_READABLE, on_poll);
  NAPI_CALL(env, napi_create_reference(env, argv[0], 1, &u->dispatch));
  NAPI_CALL(env, napi_create_string_utf8(env, "mmapkit.waitAsync", NAPI_AUTO_LENGTH, &name));
  NAPI_CALL(env, napi_async_init(env, NULL, name, &u->async_context));
  NAPI_CALL(env, napi_add_async_cleanup_hook(env, on_teardown, u, &u->hook));
  NAPI_CALL(env, napi_create_external(env, u, NULL, NULL, &out));
  return out;
}

static uring_t* get_ctx(napi_env env, napi_value v) { return get_external(env, v, "an io_uring context"); }

/* uringWait(ctx, addr, expected, timeoutNs, id) -> 0 | -errno: queue a futex wait (timeoutNs < 0: none). */
napi_value js_uring_wait(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  void* addr;
  int32_t expected;
  double timeout, id;
  if (!get_args(env, info, 5, argv)) return NULL;
  uring_t* u = get_ctx(env, argv[0]);
  if (u == NULL || !get_ptr(env, argv[1], &addr) || !get_i32(env, argv[2], &expected) ||
      napi_get_value_double(env, argv[3], &timeout) != napi_ok || napi_get_value_double(env, argv[4], &id) != napi_ok)
    return NULL;
  if (u->ring_fd < 0) return make_i32(env, -EBADF);
  if (((uintptr_t)addr & 3) != 0 || !(id >= 1 && id < (double)TAG_CANCEL)) return make_i32(env, -EINVAL);
  /* plain: only this thread writes sq.tail */
  unsigned tail = *u->sq_tail;
  struct io_uring_sqe* sqe = next_sqe(u, &tail);
  if (sqe == NULL) return make_i32(env, -EBUSY);
  sqe->opcode = OP_FUTEX_WAIT;
  sqe->fd = FUTEX2_SIZE_U32; /* futex2 flags: a 32-bit word, shared between processes (no FUTEX2_PRIVATE) */
  sqe->addr = (uint64_t)(uintptr_t)addr;
  sqe->off = (uint32_t)expected; /* addr2: the value expected */
  sqe->addr3 = FUTEX_BITSET_ANY;
  sqe->user_data = (uint64_t)id;
  unsigned count = 1;
  struct __kernel_timespec ts; /* read by the kernel during the submission below */
  if (timeout >= 0) {
    struct io_uring_sqe* t = next_sqe(u, &tail);
    if (t == NULL) return make_i32(env, -EBUSY);
    int64_t ns = timeout > 9e18 ? INT64_MAX : (int64_t)timeout;
    ts.tv_sec = ns / 1000000000;
    ts.tv_nsec = ns % 1000000000;
    sqe->flags |= IOSQE_IO_LINK;
    t->opcode = IORING_OP_LINK_TIMEOUT;
    t->fd = -1;
    t->addr = (uint64_t)(uintptr_t)&ts;
    t->len = 1;
    t->user_data = (uint64_t)id | TAG_TIMEOUT;
    count = 2;
  }
  return make_i32(env, submit(u, tail, count));
}

/* uringCancel(ctx, id) -> 0 | -errno: ask the kernel to cancel wait id (its result: -ECANCELED). */
napi_value js_uring_cancel(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  double id;
  if (!get_args(env, info, 2, argv)) return NULL;
  uring_t* u = get_ctx(env, argv[0]);
  if (u == NULL || napi_get_value_double(env, argv[1], &id) != napi_ok) return NULL;
  if (u->ring_fd < 0) return make_i32(env, -EBADF);
  /* plain: only this thread writes sq.tail */
  unsigned tail = *u->sq_tail;
  struct io_uring_sqe* sqe = next_sqe(u, &tail);
  if (sqe == NULL) return make_i32(env, -EBUSY);
  sqe->opcode = IORING_OP_ASYNC_CANCEL;
  sqe->fd = -1;
  sqe->addr = (uint64_t)id;
  sqe->user_data = (uint64_t)id | TAG_CANCEL;
  return make_i32(env, submit(u, tail, 1));
}

/* uringRef(ctx, keepAlive): whether the poll handle keeps the event loop alive. */
napi_value js_uring_ref(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  bool keep;
  if (!get_args(env, info, 2, argv)) return NULL;
  uring_t* u = get_ctx(env, argv[0]);
  if (u == NULL || napi_get_value_bool(env, argv[1], &keep) != napi_ok) return NULL;
  if (u->ring_fd >= 0) {
    if (keep) uv_ref((uv_handle_t*)&u->poll);
    else uv_unref((uv_handle_t*)&u->poll);
  }
  return NULL;
}
