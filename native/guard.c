/*
 * The SIGBUS guard.
 *
 * A mapping of a file that another process truncates is still valid, but touching a page past the new
 * end of the file raises SIGBUS, whose default action kills the process. The handler below looks the
 * faulting address up in the registry of mappings this addon made; when it lies in one, it maps
 * anonymous zero pages over what was lost (MAP_FIXED) and marks the mapping faulted, then returns: the
 * faulting instruction runs again and reads zeros. Any other SIGBUS goes to the handler that was
 * installed before ours, or gets the default action.
 *
 * What was lost: a page past the end of the file takes every later page of the mapping with it, so
 * the first such fault repairs from the faulting page to the end of the mapping, in one mapping. One
 * repair per page made one kernel mapping (VMA) per page, two where the neighbours stayed file pages:
 * a strided reader of a truncated 512 MiB file reached vm.max_map_count (65,530) after about 32,000
 * pages, the next repair failed with ENOMEM and the process died of SIGBUS after all (issue 17).
 *
 * The registry is read from a signal handler, so it uses no locks and no allocation on the read side:
 * fixed-size chunks of slots, appended and never freed, each slot published with atomics.
 */
#include "guard.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22 /* Linux 5.14; older C headers lack the name */
#endif

/* SLOT_RESERVED: unmapped by the user but its addresses are held by a PROT_NONE placeholder until the
 * garbage collector releases them (see js_reserve); the handler ignores it, teardown unmaps it. */
enum { SLOT_FREE = 0, SLOT_CLAIMED = 1, SLOT_LIVE = 2, SLOT_RESERVED = 3 };
#define SLOTS_PER_CHUNK 512

typedef struct slot {
  _Atomic int state;        /* SLOT_FREE -> SLOT_CLAIMED (writer fills) -> SLOT_LIVE (visible) */
  _Atomic uintptr_t start;
  _Atomic size_t len;
  _Atomic int prot;
  _Atomic int faulted;
  /* Start of the repaired tail [lost_from, end of the mapping): zero pages up to the end; the end of
   * the mapping while nothing was repaired. Only ever lowered, and only after the zero pages are in. */
  _Atomic uintptr_t lost_from;
  void* _Atomic owner;
  size_t external;          /* bytes reported to V8 for this mapping while it is live; g_reg_mu */
  struct slot* bucket_next; /* hash chain of the address index; g_reg_mu */
  struct slot* free_next;   /* free list; g_reg_mu */
} slot_t;

typedef struct chunk {
  slot_t slots[SLOTS_PER_CHUNK];
  struct chunk* _Atomic next;
} chunk_t;

static chunk_t g_head;
static _Atomic int g_installed = 0; /* 0 no, 1 installing, 2 installed */
static struct sigaction g_previous;
/* Bumped by the handler after each repair; TypeScript reads it through a 4-byte view (no native call)
 * to know when a mapping's faulted flag is worth looking up. */
static _Atomic int32_t g_fault_count = 0;
static uintptr_t g_page_mask;
static size_t g_page_size;

/* How the handler asks the kernel whether a page has anything behind it without touching it (a
 * kernel access that fails returns an error instead of raising a signal). Chosen by guard_install. */
enum { PROBE_NONE = 0, PROBE_POPULATE = 1, PROBE_VM_READV = 2 };
static int g_probe = PROBE_NONE;

static void chain_to_previous(int sig, siginfo_t* info, void* uctx) {
  if (g_previous.sa_flags & SA_SIGINFO) {
    if (g_previous.sa_sigaction != NULL) {
      g_previous.sa_sigaction(sig, info, uctx);
      return;
    }
  } else if (g_previous.sa_handler == SIG_IGN) {
    return;
  } else if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != NULL) {
    g_previous.sa_handler(sig);
    return;
  }
  /* Default action: restore it and re-raise. The signal stays blocked until this handler returns,
   * then it is delivered with the default action (terminate with a core dump), as without us. */
  signal(sig, SIG_DFL);
  raise(sig);
}

/* Whether reading the page at `page` would raise SIGBUS now: the kernel fails its own read of it with
 * EFAULT (MADV_POPULATE_READ, or process_vm_readv before Linux 5.14). Any other answer is "no": the
 * page can be read, or it could not be allocated (ENOSPC from a full tmpfs), or it is poisoned
 * (EHWPOISON), or we cannot tell. "No" only makes a repair smaller. One system call; the caller saves
 * errno. (MADV_POPULATE_READ also reads the page in when it can be read.) */
static bool page_is_lost(uintptr_t page) {
  if (g_probe == PROBE_POPULATE) return madvise((void*)page, g_page_size, MADV_POPULATE_READ) != 0 && errno == EFAULT;
  if (g_probe == PROBE_VM_READV) {
    char byte;
    struct iovec local = {&byte, 1}, remote = {(void*)page, 1};
    return process_vm_readv(getpid(), &local, 1, &remote, 1, 0) < 0 && errno == EFAULT;
  }
  return false;
}

/* The first page in [from, to) that is in memory (mincore), or `to`; `from` when mincore fails. A page
 * past the end of a file never is: when a file shrinks, the kernel drops those pages from the page
 * cache and from every mapping, private copies included. A page in memory is data that still exists
 * (a page of a sparse tmpfs file that was written, past a hole that could not be allocated).
 * Measured: the first fault of a truncated 8 GiB mapping took 24 ms. The vector lives on the (signal)
 * stack: 1 KiB. */
static uintptr_t first_resident(uintptr_t from, uintptr_t to) {
  unsigned char vec[1024];
  while (from < to) {
    size_t pages = (to - from) / g_page_size;
    if (pages > sizeof vec) pages = sizeof vec;
    if (mincore((void*)from, pages * g_page_size, vec) != 0) return from;
    for (size_t i = 0; i < pages; i++)
      if (vec[i] & 1) return from + i * g_page_size;
    from += pages * g_page_size;
  }
  return to;
}

/*
 * Repair a bus error at `page` inside the mapping of slot s: map zero pages over [page, to), where `to`
 * is the end of what is lost. Returns whether the zero pages are in (then the access can run again).
 *
 * A page past the end of the file (si_code BUS_ADRERR) means every later page is past it too, so the
 * repair goes to the end of the mapping, or down to the tail repaired before (lost_from), when the
 * kernel agrees: the last page before lost_from is lost too, and no page between is in memory. That
 * fails when the bus error was not about the end of the file, or when the file grew back meanwhile: a
 * full tmpfs that could not allocate a hole (the probe says ENOSPC, not EFAULT), a poisoned page
 * (BUS_MCEERR_*, not BUS_ADRERR); then only the faulting page is repaired, as before. Pages before the
 * faulting one are never repaired in advance: without a descriptor of the file (mmapkit closes it once
 * mapped) the handler cannot fstat it, and looking for its end by probing backwards would take pages
 * that mprotect made inaccessible (their probe also fails with EFAULT) for lost ones. A reader that
 * goes on below the repaired tail faults again, and each of those repairs reaches up to the tail and
 * merges with it: still one mapping. Whatever the cause, [lost_from, end) holds zero pages only.
 *
 * Everything here is a plain system call (mmap, madvise, mincore, process_vm_readv, getpid) or a
 * lock-free atomic: async-signal-safe on Linux.
 */
static bool repair(slot_t* s, uintptr_t page, int si_code) {
  uintptr_t start = atomic_load_explicit(&s->start, memory_order_relaxed);
  size_t len = atomic_load_explicit(&s->len, memory_order_relaxed);
  uintptr_t end = start + ((len + g_page_size - 1) & g_page_mask);
  /* acquire: pairs with the release below, so the zero pages of the tail are in */
  uintptr_t lost_from = atomic_load_explicit(&s->lost_from, memory_order_acquire);
  uintptr_t to = page + g_page_size;
  bool tail = false;
  if (si_code == BUS_ADRERR && page < lost_from && lost_from <= end) {
    if (lost_from == to) {
      tail = true; /* the page right below the repaired tail (or the last page) */
    } else if (page_is_lost(lost_from - g_page_size)) {
      to = first_resident(to, lost_from);
      tail = to == lost_from;
      if (!tail) to = page + g_page_size;
    }
  }
  /* (A page at or above lost_from was repaired by another thread while this one faulted: repair the
   * page again, which cannot fail for want of a mapping, rather than count on it.) */
  int prot = atomic_load_explicit(&s->prot, memory_order_relaxed);
  int patch_prot = (prot & PROT_WRITE) ? (PROT_READ | PROT_WRITE) : PROT_READ;
  /* MAP_FIXED replaces the file pages that have no backing any more with private zero pages, so the
   * access can complete. MAP_NORESERVE: a lost range of many GiB is not charged as committed memory
   * (it reads zeros, which cost nothing); every repair uses the same flags, so that adjacent repairs
   * merge into one mapping. */
  int flags = MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
  if (mmap((void*)page, to - page, patch_prot, flags, -1, 0) == MAP_FAILED) {
    if (to - page == g_page_size) return false;
    tail = false; /* the range was refused (ENOMEM under strict overcommit, say): this page alone */
    if (mmap((void*)page, g_page_size, patch_prot, flags, -1, 0) == MAP_FAILED) return false;
  }
  if (tail) {
    /* release: a handler that sees the lower lost_from also sees the zero pages in place */
    uintptr_t cur = lost_from;
    while (page < cur && !atomic_compare_exchange_weak_explicit(&s->lost_from, &cur, page, memory_order_release,
                                                                memory_order_relaxed)) {
    }
  }
  atomic_store_explicit(&s->faulted, 1, memory_order_release);
  /* release: a reader that sees the new count also sees the faulted flag set above */
  atomic_fetch_add_explicit(&g_fault_count, 1, memory_order_release);
  return true;
}

static void on_sigbus(int sig, siginfo_t* info, void* uctx) {
  int saved_errno = errno;
  /* si_code > 0 means the kernel raised it for a memory access; a SIGBUS sent with kill() is not ours. */
  if (info != NULL && info->si_code > 0) {
    uintptr_t a = (uintptr_t)info->si_addr;
    for (chunk_t* c = &g_head; c != NULL; c = atomic_load_explicit(&c->next, memory_order_acquire)) {
      for (int i = 0; i < SLOTS_PER_CHUNK; i++) {
        slot_t* s = &c->slots[i];
        /* acquire: pairs with the release in guard_register, so start/len/prot are the ones published */
        if (atomic_load_explicit(&s->state, memory_order_acquire) != SLOT_LIVE) continue;
        uintptr_t start = atomic_load_explicit(&s->start, memory_order_relaxed);
        size_t len = atomic_load_explicit(&s->len, memory_order_relaxed);
        if (a < start || a - start >= len) continue;
        if (repair(s, a & g_page_mask, info->si_code)) {
          errno = saved_errno;
          return;
        }
      }
    }
  }
  errno = saved_errno;
  chain_to_previous(sig, info, uctx);
}

/* Which probe page_is_lost can use here (once, before the handler is installed): MADV_POPULATE_READ
 * (Linux 5.14), else process_vm_readv on ourselves (a seccomp filter may forbid it), else none (every
 * repair is then one page, as before issue 17). */
static int choose_probe(void) {
  int chosen = PROBE_NONE;
  void* p = mmap(NULL, g_page_size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return chosen;
  char byte;
  struct iovec local = {&byte, 1}, remote = {p, 1};
  if (madvise(p, g_page_size, MADV_POPULATE_READ) == 0)
    chosen = PROBE_POPULATE;
  else if (process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == 1)
    chosen = PROBE_VM_READV;
  munmap(p, g_page_size);
  return chosen;
}

int guard_install(bool again) {
  int expected = 0;
  if (!atomic_compare_exchange_strong(&g_installed, &expected, 1)) {
    if (!again || expected != 2) return 0;
    /* Put the handler back after something replaced it (libuv resets SIGBUS to SIG_DFL when the last
     * JavaScript listener goes). What it replaced becomes the handler we chain to, unless it was us. */
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    if (sigaction(SIGBUS, &sa, &old) != 0) return -errno;
    if (!((old.sa_flags & SA_SIGINFO) && old.sa_sigaction == on_sigbus)) g_previous = old;
    return 0;
  }
  g_page_size = (size_t)sysconf(_SC_PAGESIZE);
  g_page_mask = ~((uintptr_t)g_page_size - 1);
  g_probe = choose_probe();
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_sigbus;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
  if (sigaction(SIGBUS, &sa, &g_previous) != 0) {
    int err = errno;
    atomic_store(&g_installed, 0);
    return -err;
  }
  atomic_store(&g_installed, 2);
  return 0;
}

/*
 * Bookkeeping outside the signal handler: a free list of slots and a hash index from a mapping's
 * start address to its slot, both under g_reg_mu, so that registering, finding and forgetting a
 * mapping cost the same with ten mappings or a million (placeholders of unmapped memory wait in the
 * registry until the garbage collector releases them). The handler only walks the chunks.
 */
static pthread_mutex_t g_reg_mu = PTHREAD_MUTEX_INITIALIZER;
static slot_t* g_free = NULL;
static slot_t** g_buckets = NULL;
static size_t g_nbuckets = 0;
static size_t g_indexed = 0;
static chunk_t* g_last_chunk = &g_head;
static bool g_head_listed = false;
/* Live (SLOT_LIVE) mappings of every environment: written under g_reg_mu, read without it. */
static _Atomic size_t g_live = 0;

static size_t bucket_of(uintptr_t a, size_t n) {
  return (size_t)(((a >> 12) * 0x9E3779B97F4A7C15ull) >> 17) & (n - 1);
}

/* Make room in the index (g_reg_mu held). */
static bool index_grow(void) {
  if (g_indexed < g_nbuckets) return true;
  size_t n = g_nbuckets == 0 ? 1024 : g_nbuckets * 2;
  slot_t** fresh = calloc(n, sizeof *fresh);
  if (fresh == NULL) return false;
  for (size_t i = 0; i < g_nbuckets; i++) {
    for (slot_t* s = g_buckets[i]; s != NULL;) {
      slot_t* next = s->bucket_next;
      size_t b = bucket_of(atomic_load_explicit(&s->start, memory_order_relaxed), n);
      s->bucket_next = fresh[b];
      fresh[b] = s;
      s = next;
    }
  }
  free(g_buckets);
  g_buckets = fresh;
  g_nbuckets = n;
  return true;
}

static void index_remove(slot_t* slot) {
  size_t b = bucket_of(atomic_load_explicit(&slot->start, memory_order_relaxed), g_nbuckets);
  for (slot_t** p = &g_buckets[b]; *p != NULL; p = &(*p)->bucket_next) {
    if (*p == slot) {
      *p = slot->bucket_next;
      g_indexed--;
      return;
    }
  }
}

/* A chunk's slots go on the free list (g_reg_mu held). */
static void list_chunk(chunk_t* c) {
  for (int i = SLOTS_PER_CHUNK - 1; i >= 0; i--) {
    c->slots[i].free_next = g_free;
    g_free = &c->slots[i];
  }
}

/* The slot of the mapping that starts at addr (g_reg_mu held), or NULL. */
static slot_t* find_slot_locked(uintptr_t a) {
  if (g_nbuckets == 0) return NULL;
  for (slot_t* s = g_buckets[bucket_of(a, g_nbuckets)]; s != NULL; s = s->bucket_next)
    if (atomic_load_explicit(&s->start, memory_order_relaxed) == a) return s;
  return NULL;
}

static slot_t* find_slot(void* addr) {
  pthread_mutex_lock(&g_reg_mu);
  slot_t* found = find_slot_locked((uintptr_t)addr);
  pthread_mutex_unlock(&g_reg_mu);
  return found;
}

int guard_register(void* addr, size_t len, int prot, void* owner, size_t external) {
  pthread_mutex_lock(&g_reg_mu);
  if (!g_head_listed) {
    list_chunk(&g_head);
    g_head_listed = true;
  }
  if (g_free == NULL) {
    chunk_t* fresh = calloc(1, sizeof *fresh);
    if (fresh == NULL) {
      pthread_mutex_unlock(&g_reg_mu);
      return -ENOMEM;
    }
    /* release: the handler may walk into the new chunk only once it is zeroed (all slots free) */
    atomic_store_explicit(&g_last_chunk->next, fresh, memory_order_release);
    g_last_chunk = fresh;
    list_chunk(fresh);
  }
  if (!index_grow()) {
    pthread_mutex_unlock(&g_reg_mu);
    return -ENOMEM;
  }
  slot_t* s = g_free;
  g_free = s->free_next;
  atomic_store_explicit(&s->start, (uintptr_t)addr, memory_order_relaxed);
  atomic_store_explicit(&s->len, len, memory_order_relaxed);
  atomic_store_explicit(&s->prot, prot, memory_order_relaxed);
  atomic_store_explicit(&s->faulted, 0, memory_order_relaxed);
  /* (not g_page_size: a mapping can be registered before the guard is installed, by a thread that runs
   * with MMAPKIT_SIGBUS_GUARD=0 while a later one installs it) */
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  atomic_store_explicit(&s->lost_from, (uintptr_t)addr + ((len + page - 1) & ~(page - 1)), memory_order_relaxed);
  atomic_store_explicit(&s->owner, owner, memory_order_relaxed);
  s->external = external;
  size_t b = bucket_of((uintptr_t)addr, g_nbuckets);
  s->bucket_next = g_buckets[b];
  g_buckets[b] = s;
  g_indexed++;
  /* release: publish start/len/prot to the signal handler before it can match this slot */
  atomic_store_explicit(&s->state, SLOT_LIVE, memory_order_release);
  atomic_fetch_add_explicit(&g_live, 1, memory_order_relaxed);
  pthread_mutex_unlock(&g_reg_mu);
  return 0;
}

/* A live slot stops being live (g_reg_mu held): returns the bytes it had reported to V8, once. */
static size_t end_live(slot_t* s) {
  if (atomic_load_explicit(&s->state, memory_order_relaxed) != SLOT_LIVE) return 0;
  atomic_fetch_sub_explicit(&g_live, 1, memory_order_relaxed);
  size_t external = s->external;
  s->external = 0;
  return external;
}

/* Forget a slot (g_reg_mu held); returns the bytes it still had reported to V8. */
static size_t release_slot(slot_t* s) {
  size_t external = end_live(s);
  /* release: the handler stops matching the range before the address can be reused */
  atomic_store_explicit(&s->state, SLOT_FREE, memory_order_release);
  index_remove(s);
  s->free_next = g_free;
  g_free = s;
  return external;
}

size_t guard_unregister(void* addr) {
  pthread_mutex_lock(&g_reg_mu);
  slot_t* s = find_slot_locked((uintptr_t)addr);
  size_t external = s == NULL ? 0 : release_slot(s);
  pthread_mutex_unlock(&g_reg_mu);
  return external;
}

size_t guard_mark_reserved(void* addr) {
  pthread_mutex_lock(&g_reg_mu);
  slot_t* s = find_slot_locked((uintptr_t)addr);
  size_t external = 0;
  if (s != NULL) {
    external = end_live(s);
    /* release: the handler stops matching this range */
    atomic_store_explicit(&s->state, SLOT_RESERVED, memory_order_release);
  }
  pthread_mutex_unlock(&g_reg_mu);
  return external;
}

size_t guard_live_count(void) { return atomic_load_explicit(&g_live, memory_order_relaxed); }

size_t guard_unmap_owned(void* owner) {
  size_t external = 0;
  pthread_mutex_lock(&g_reg_mu);
  for (chunk_t* c = &g_head; c != NULL; c = atomic_load_explicit(&c->next, memory_order_acquire)) {
    for (int i = 0; i < SLOTS_PER_CHUNK; i++) {
      slot_t* s = &c->slots[i];
      int state = atomic_load_explicit(&s->state, memory_order_acquire);
      if ((state != SLOT_LIVE && state != SLOT_RESERVED) || atomic_load_explicit(&s->owner, memory_order_relaxed) != owner)
        continue;
      void* start = (void*)atomic_load_explicit(&s->start, memory_order_relaxed);
      size_t len = atomic_load_explicit(&s->len, memory_order_relaxed);
      external += release_slot(s); /* before munmap, as in js_munmap */
      munmap(start, len);
    }
  }
  pthread_mutex_unlock(&g_reg_mu);
  return external;
}

void guard_set_prot(void* addr, size_t len, int prot) {
  slot_t* s = find_slot(addr);
  /* only a change of the whole mapping decides the protection of a repaired page */
  if (s != NULL && len >= atomic_load_explicit(&s->len, memory_order_relaxed))
    atomic_store_explicit(&s->prot, prot, memory_order_relaxed);
}

bool guard_faulted(void* addr) {
  slot_t* s = find_slot(addr);
  /* acquire: pairs with the release store in the handler */
  return s != NULL && atomic_load_explicit(&s->faulted, memory_order_acquire) != 0;
}

/*
 * mremap moved or resized the mapping that started at old_addr (js_mremap in mapping.c): the registry
 * follows it. keep_old (MREMAP_DONTUNMAP): the old range is still mapped, so its slot stays as it is
 * (js_reserve turns it into a placeholder next, which ends it being live) and the new range gets a
 * slot of its own, with the old one's protection and owner. Otherwise the slot itself takes the new
 * range: it is taken out of the handler's sight (SLOT_CLAIMED) while its start, length and repaired
 * tail change, then published again, so a handler never matches half of the old range and half of the
 * new. The range stays live throughout, so the count of live mappings does not move. (No other thread
 * touches the memory meanwhile: src/mapping.ts refuses a resize while async work holds the mapping.)
 * `external`: the bytes now reported to V8 for the mapping; *change gets what to add to V8's count.
 * Returns 0, -ENOENT (no such mapping) or -ENOMEM (no slot for the new range).
 */
int guard_remap(void* old_addr, void* new_addr, size_t new_len, bool keep_old, size_t external, int64_t* change) {
  *change = 0;
  pthread_mutex_lock(&g_reg_mu);
  slot_t* s = find_slot_locked((uintptr_t)old_addr);
  if (s == NULL || atomic_load_explicit(&s->state, memory_order_relaxed) != SLOT_LIVE) {
    pthread_mutex_unlock(&g_reg_mu);
    return -ENOENT;
  }
  if (keep_old) {
    int prot = atomic_load_explicit(&s->prot, memory_order_relaxed);
    void* owner = atomic_load_explicit(&s->owner, memory_order_relaxed);
    pthread_mutex_unlock(&g_reg_mu);
    int rc = guard_register(new_addr, new_len, prot, owner, external);
    if (rc == 0) *change = (int64_t)external;
    return rc;
  }
  /* release: the handler stops matching the slot before its fields change */
  atomic_store_explicit(&s->state, SLOT_CLAIMED, memory_order_release);
  if ((uintptr_t)new_addr != atomic_load_explicit(&s->start, memory_order_relaxed)) {
    index_remove(s); /* by its old start */
    atomic_store_explicit(&s->start, (uintptr_t)new_addr, memory_order_relaxed);
    size_t b = bucket_of((uintptr_t)new_addr, g_nbuckets);
    s->bucket_next = g_buckets[b];
    g_buckets[b] = s;
    g_indexed++;
  }
  atomic_store_explicit(&s->len, new_len, memory_order_relaxed);
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  atomic_store_explicit(&s->lost_from, (uintptr_t)new_addr + ((new_len + page - 1) & ~(page - 1)), memory_order_relaxed);
  *change = (int64_t)external - (int64_t)s->external;
  s->external = external;
  /* release: publish the new start/len/lost_from to the signal handler */
  atomic_store_explicit(&s->state, SLOT_LIVE, memory_order_release);
  pthread_mutex_unlock(&g_reg_mu);
  return 0;
}

/* guardInstall(again) -> 0 | -errno. Installs the SIGBUS handler once per process; with again, puts
 * it back if it was installed before (and replaced since). */
napi_value js_guard_install(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  bool again = false;
  if (!get_args(env, info, 1, argv) || napi_get_value_bool(env, argv[0], &again) != napi_ok) return NULL;
  return make_i32(env, guard_install(again));
}

napi_value js_guard_installed(napi_env env, napi_callback_info info) {
  napi_value r;
  NAPI_CALL(env, napi_get_boolean(env, atomic_load(&g_installed) == 2, &r));
  return r;
}

/* faultCounter() -> a 4-byte ArrayBuffer over the count of repaired faults in this process. */
napi_value js_fault_counter(napi_env env, napi_callback_info info) {
  napi_value ab;
  if (napi_create_external_arraybuffer(env, (void*)&g_fault_count, sizeof g_fault_count, NULL, NULL, &ab) == napi_ok)
    return ab;
  /* A runtime that forbids external buffers: TypeScript falls back to asking faulted() every time. */
  return null_after_clearing(env);
}

/* mappingCount() -> how many mappings made by this addon, in every thread, are mapped (not unmapped
 * yet: placeholders of unmapped memory do not count). */
napi_value js_mapping_count(napi_env env, napi_callback_info info) {
  napi_value r;
  NAPI_CALL(env, napi_create_double(env, (double)guard_live_count(), &r));
  return r;
}

/* faulted(addr): whether the mapping that starts at addr had a bus error repaired. */
napi_value js_faulted(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  void* addr;
  if (!get_args(env, info, 1, argv) || !get_ptr(env, argv[0], &addr)) return NULL;
  napi_value r;
  NAPI_CALL(env, napi_get_boolean(env, guard_faulted(addr), &r));
  return r;
}
