/*
 * The SIGBUS guard.
 *
 * A mapping of a file that another process truncates is still valid, but touching a page past the new
 * end of the file raises SIGBUS, whose default action kills the process. The handler below looks the
 * faulting address up in the registry of mappings this addon made; when it lies in one, it maps an
 * anonymous zero page over the faulting page (MAP_FIXED) and marks the mapping faulted, then returns:
 * the faulting instruction runs again and reads zeros. Any other SIGBUS goes to the handler that was
 * installed before ours, or gets the default action.
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
#include <unistd.h>

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
        int prot = atomic_load_explicit(&s->prot, memory_order_relaxed);
        int patch_prot = (prot & PROT_WRITE) ? (PROT_READ | PROT_WRITE) : PROT_READ;
        void* page = (void*)(a & g_page_mask);
        /* mmap is async-signal-safe on Linux (a plain system call). MAP_FIXED replaces the file page
         * that has no backing any more with a private zero page, so the access can complete. */
        if (mmap(page, ~g_page_mask + 1, patch_prot, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) !=
            MAP_FAILED) {
          atomic_store_explicit(&s->faulted, 1, memory_order_release);
          /* release: a reader that sees the new count also sees the faulted flag set above */
          atomic_fetch_add_explicit(&g_fault_count, 1, memory_order_release);
          errno = saved_errno;
          return;
        }
      }
    }
  }
  errno = saved_errno;
  chain_to_previous(sig, info, uctx);
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
  g_page_mask = ~((uintptr_t)sysconf(_SC_PAGESIZE) - 1);
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
