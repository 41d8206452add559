/*
 * The C floor of the channel benchmark (bench/channel.mjs): one-way throughput of a plain
 * single-producer single-consumer byte ring between two processes over shared memory, doing the
 * same work per message as the JavaScript rows and nothing else.
 *
 *   channel_ring <size> <messages> <warmup> <batch> <ring-bytes> [timeout-ms [budget-ms]]
 *
 * size: 64 or 65536 (bytes per message); messages: how many the producer sends; warmup: messages
 * received before the clock starts; batch: messages per publish of the write position (1: every
 * message, as `send` does; 64: as `sendMany` of 64 does); ring-bytes: the ring, a power of two (the
 * channel's lane size in the same table); budget-ms: stop once this long has passed after the
 * warm-up (the consumer raises a "stop" flag, the producer sees it when it next waits for room and
 * exits), as the JavaScript rows do; 0 (the default): no budget.
 *
 * A MAP_SHARED | MAP_ANONYMOUS mapping is made, then the process forks: the child produces, the
 * parent consumes. Layout: the write position (u32) at byte 0 with the producer's "closed" flag and
 * its CPU time beside it, the read position (u32) at byte 128 (its own cache line pair), the ring
 * from byte 256. Records as in the channel's lanes (docs/channel-layout.md): a 32-bit length, 4
 * bytes of zero, the message, padded to 8 bytes; a record never wraps: at the end of the ring a
 * length of -1 says "skip to the start". Positions are byte counters modulo 2^32.
 *
 * Producer: builds message k in a buffer of its own (64 bytes: 16 words, word 0 = k, words 1..14 a
 * hash of (k, i), word 15 their XOR, as bench/channel/format.mjs; 64 KiB: seeded random bytes with
 * a stamp every KiB, only the stamps rewritten per message), copies it into the ring (memcpy), and
 * publishes the write position with a store every `batch` messages (and before it waits).
 * It caches the read position and loads it only when the cache says the ring is full.
 * Consumer: loads the write position (acquire), checks every message where it lies in the ring (64
 * bytes: the XOR of its 16 words is 0 and word 0 is the k expected; 64 KiB: memcmp with its own copy
 * of the template stamped for k), then stores the read position once per poll.
 * Both sides spin (with the x86 pause hint) when the ring is empty or full: no system call with a
 * core for each side. Past SPIN_NS without progress a side raises its "waiting" flag, looks once
 * more and sleeps (FUTEX_WAIT on the other side's position word); the other side loads that flag
 * after each store of its position and wakes it (FUTEX_WAKE): the channel's sleep protocol, as in
 * bench/channel/jsring.mjs. It keeps the floor sane when a side must share a core with its peer.
 *
 * Every wait has a timeout (default 5000 ms without progress): the parent then kills the child and
 * exits 1; the child dies with its parent (PR_SET_PDEATHSIG).
 *
 * Output: one JSON object on stdout: messages timed, seconds, msgsPerSec, the receiver's CPU time
 * over the timed part and the sender's over its whole loop (user + system, µs) with the messages it
 * sent, truncated (the budget stopped the run), errors (must be 0).
 */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SMALL 64
#define LARGE 65536
#define STAMP_EVERY 1024
#define SALT 0x4348414eu /* "CHAN", as bench/channel/format.mjs */
#define TEMPLATE_SEED 0x6368616eu
#define PAD (-1)
#define HDR 8

/* Byte offsets in the mapping. */
#define OFF_WRITE 0
#define OFF_CLOSED 4
#define OFF_SENDER_CPU 8 /* u64 µs */
#define OFF_SENDER_SENT 16 /* u32: messages the producer wrote */
#define OFF_CONSUMER_WAITING 64
#define OFF_READ 128
#define OFF_STOP 132 /* u32: 1 when the consumer's budget is spent */
#define OFF_PRODUCER_WAITING 192
#define OFF_RING 256

static int64_t timeout_ns;

#define SPIN_NS 50000LL
#define MAX_SLEEP_NS 100000000L

/*
 * Sleep while *word == seen, at most MAX_SLEEP_NS: raise *flag (seq_cst), look at the word once more,
 * FUTEX_WAIT, lower the flag. The other side stores the word (seq_cst), then loads the flag and wakes
 * the word when it is up: one of the two always sees the other.
 */
static void sleep_on(_Atomic uint32_t* word, uint32_t seen, _Atomic uint32_t* flag) {
  struct timespec ts = {.tv_sec = 0, .tv_nsec = MAX_SLEEP_NS};
  atomic_store(flag, 1);
  if (atomic_load(word) == seen) syscall(SYS_futex, (uint32_t*)word, FUTEX_WAIT, seen, &ts, NULL, 0);
  atomic_store(flag, 0);
}

/* After a seq_cst store of `word`: wake the other side if it sleeps (or is about to) on it. */
static void wake_if(_Atomic uint32_t* word, _Atomic uint32_t* flag) {
  if (atomic_load(flag) != 0) syscall(SYS_futex, (uint32_t*)word, FUTEX_WAKE, 1, NULL, NULL, 0);
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

static uint64_t cpu_us(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u + (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* msgWord() of bench/ipc/protocol.mjs with the channel's salt. */
static inline int32_t msg_word(uint32_t k, uint32_t i) {
  return i == 0 ? (int32_t)k : (int32_t)(((k + i) * 0x9E3779B1u) ^ SALT);
}

static void fill_small(int32_t* m, uint32_t k) {
  int32_t x = 0;
  for (uint32_t i = 0; i < 15; i++) {
    m[i] = msg_word(k, i);
    x ^= m[i];
  }
  m[15] = x;
}

static int check_small(const int32_t* m, uint32_t len, uint32_t k) {
  if (len != SMALL) return 1;
  int32_t x = 0;
  for (int i = 0; i < 16; i++) x ^= m[i];
  return x == 0 && m[0] == (int32_t)k ? 0 : 1;
}

/* mulberry32, as bench/lib.mjs. */
static uint32_t rng_state;
static uint32_t mulberry32(void) {
  uint32_t t = (rng_state += 0x6d2b79f5u);
  t = (t ^ (t >> 15)) * (t | 1u);
  t ^= t + (t ^ (t >> 7)) * (t | 61u);
  return t ^ (t >> 14);
}

static void make_template(uint8_t* m) {
  rng_state = TEMPLATE_SEED;
  for (uint32_t i = 0; i < LARGE; i += 4) {
    uint32_t v = mulberry32();
    memcpy(m + i, &v, 4);
  }
}

/* The stamps of message k: word 0 of every KiB (little-endian, as bench/channel/format.mjs). */
static void stamp_large(uint8_t* m, uint32_t k) {
  for (uint32_t j = 0; j < LARGE / STAMP_EVERY; j++) {
    int32_t w = j == 0 ? (int32_t)k : msg_word(k, j);
    memcpy(m + j * STAMP_EVERY, &w, 4);
  }
}

int main(int argc, char** argv) {
  if (argc < 6 || argc > 8) {
    fprintf(stderr, "usage: %s <size 64|65536> <messages> <warmup> <batch> <ring-bytes> [timeout-ms [budget-ms]]\n", argv[0]);
    return 2;
  }
  uint32_t size = (uint32_t)strtoul(argv[1], NULL, 10);
  uint32_t total = (uint32_t)strtoul(argv[2], NULL, 10);
  uint32_t warmup = (uint32_t)strtoul(argv[3], NULL, 10);
  uint32_t batch = (uint32_t)strtoul(argv[4], NULL, 10);
  uint32_t ring = (uint32_t)strtoul(argv[5], NULL, 10);
  timeout_ns = (argc >= 7 ? strtoll(argv[6], NULL, 10) : 5000) * 1000000LL;
  int64_t budget_ns = (argc == 8 ? strtoll(argv[7], NULL, 10) : 0) * 1000000LL;
  uint32_t need_max = (HDR + size + 7) & ~7u;
  if ((size != SMALL && size != LARGE) || total < 1 || warmup >= total || batch < 1 || ring < 4096 || (ring & (ring - 1)) != 0 ||
      ring < 2 * need_max) {
    fprintf(stderr, "channel_ring: bad arguments (size 64 or 65536, warmup < messages, ring a power of two >= 4096 holding two records)\n");
    return 2;
  }
  uint32_t mask = ring - 1;
  size_t bytes = OFF_RING + (size_t)ring;
  uint8_t* mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    perror("mmap");
    return 1;
  }
  _Atomic uint32_t* writep = (_Atomic uint32_t*)(mem + OFF_WRITE);
  _Atomic uint32_t* closed = (_Atomic uint32_t*)(mem + OFF_CLOSED);
  _Atomic uint64_t* sender_cpu = (_Atomic uint64_t*)(mem + OFF_SENDER_CPU);
  _Atomic uint32_t* readp = (_Atomic uint32_t*)(mem + OFF_READ);
  _Atomic uint32_t* consumer_waiting = (_Atomic uint32_t*)(mem + OFF_CONSUMER_WAITING);
  _Atomic uint32_t* producer_waiting = (_Atomic uint32_t*)(mem + OFF_PRODUCER_WAITING);
  _Atomic uint32_t* stop = (_Atomic uint32_t*)(mem + OFF_STOP);
  _Atomic uint32_t* sender_sent = (_Atomic uint32_t*)(mem + OFF_SENDER_SENT);
  uint8_t* base = mem + OFF_RING;

  uint8_t* own = aligned_alloc(64, LARGE);
  uint8_t* ref = aligned_alloc(64, LARGE);
  if (own == NULL || ref == NULL) return 1;
  if (size == LARGE) {
    make_template(own);
    memcpy(ref, own, LARGE);
  }

  pid_t parent_pid = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    perror("fork");
    return 1;
  }
  if (pid == 0) {
    /* ---- producer ---- */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent_pid) _exit(1);
    uint64_t c0 = cpu_us();
    uint32_t w = 0, r = 0, published = 0, k = 0;
    for (; k < total; k++) {
      if (size == SMALL) fill_small((int32_t*)own, k);
      else stamp_large(own, k);
      uint32_t off = w & mask;
      uint32_t pad = off + need_max > ring ? ring - off : 0;
      if (pad + need_max > ring - (w - r)) {
        r = atomic_load_explicit(readp, memory_order_acquire);
        if (pad + need_max > ring - (w - r)) {
          /* Full: publish what is pending (the consumer may be waiting for it), then spin. */
          if (published != w) {
            atomic_store(writep, published = w);
            wake_if(writep, consumer_waiting);
          }
          int64_t start = now_ns();
          for (;;) {
            for (int i = 0; i < 256; i++) {
              r = atomic_load_explicit(readp, memory_order_acquire);
              if (pad + need_max <= ring - (w - r)) goto room;
              cpu_relax();
            }
            if (atomic_load(stop)) goto done; /* the consumer's budget is spent */
            int64_t t = now_ns() - start;
            if (t > timeout_ns) _exit(3);
            if (t > SPIN_NS) sleep_on(readp, r, producer_waiting);
          }
        }
      }
    room:
      if (pad > 0) {
        *(int32_t*)(base + off) = PAD;
        w += pad;
        off = 0;
      }
      memcpy(base + off + HDR, own, size);
      ((int32_t*)(base + off))[0] = (int32_t)size;
      ((int32_t*)(base + off))[1] = 0;
      w += need_max;
      if ((k + 1) % batch == 0) {
        /* seq_cst: publishes the records up to w, and orders before the load of the consumer's flag */
        atomic_store(writep, published = w);
        wake_if(writep, consumer_waiting);
      }
    }
  done:
    atomic_store(writep, w);
    atomic_store_explicit(sender_cpu, cpu_us() - c0, memory_order_relaxed);
    atomic_store_explicit(sender_sent, k, memory_order_relaxed);
    atomic_store(closed, 1);
    syscall(SYS_futex, (uint32_t*)writep, FUTEX_WAKE, 1, NULL, NULL, 0);
    _exit(0);
  }

  /* ---- consumer ---- */
  uint32_t r = 0, k = 0;
  int errors = 0;
  int64_t t0 = 0;
  uint64_t c0 = 0;
  int64_t idle_since = -1; /* when the ring was first seen empty, -1: it was not */
  int truncated = 0;
  while (k < total) {
    uint32_t w = atomic_load_explicit(writep, memory_order_acquire);
    if (w == r) {
      for (int i = 0; i < 256 && (w = atomic_load_explicit(writep, memory_order_acquire)) == r; i++) cpu_relax();
      if (w == r) {
        int64_t now = now_ns();
        if (idle_since < 0) idle_since = now;
        if (now - idle_since > timeout_ns) {
          fprintf(stderr, "channel_ring: no message %u within %lld ms%s\n", k, (long long)(timeout_ns / 1000000),
                  atomic_load(closed) ? " (the producer closed)" : "");
          kill(pid, SIGKILL);
          waitpid(pid, NULL, 0);
          return 1;
        }
        if (now - idle_since > SPIN_NS) sleep_on(writep, r, consumer_waiting);
        continue;
      }
    }
    idle_since = -1;
    while (r != w) {
      uint32_t off = r & mask;
      int32_t len = *(const int32_t*)(base + off);
      if (len == PAD) {
        r += ring - off;
        continue;
      }
      if (len < 0 || (uint32_t)len > size || (w - r) < ((HDR + (uint32_t)len + 7) & ~7u)) {
        fprintf(stderr, "channel_ring: bad record length %d at %u\n", len, r);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return 1;
      }
      const uint8_t* msg = base + off + HDR;
      if (size == SMALL) {
        errors += check_small((const int32_t*)msg, (uint32_t)len, k);
      } else {
        stamp_large(ref, k);
        errors += (uint32_t)len != LARGE || memcmp(msg, ref, LARGE) != 0;
      }
      r += (HDR + (uint32_t)len + 7) & ~7u;
      if (++k == warmup) {
        t0 = now_ns();
        c0 = cpu_us();
      }
    }
    if (budget_ns > 0 && t0 != 0 && k < total && now_ns() - t0 > budget_ns) {
      /* Budget spent: stop here, and let the producer go (it sees the flag when it next waits). */
      truncated = 1;
      atomic_store(stop, 1);
      atomic_store(readp, r);
      syscall(SYS_futex, (uint32_t*)readp, FUTEX_WAKE, 1, NULL, NULL, 0);
      break;
    }
    /* seq_cst, once per poll: the bytes up to r are free; then the producer's flag */
    atomic_store(readp, r);
    wake_if(readp, producer_waiting);
  }
  int64_t t1 = now_ns();
  uint64_t c1 = cpu_us();
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "channel_ring: producer failed (status %d)\n", status);
    return 1;
  }
  uint32_t timed = k - warmup;
  double seconds = (double)(t1 - t0) / 1e9;
  printf("{\"size\":%u,\"batch\":%u,\"ringBytes\":%u,\"messages\":%u,\"seconds\":%.6f,\"msgsPerSec\":%.1f,"
         "\"receiverCpuUs\":%llu,\"senderCpuUs\":%llu,\"senderMessages\":%u,\"truncated\":%s,\"errors\":%d}\n",
         size, batch, ring, timed, seconds, timed / seconds, (unsigned long long)(c1 - c0),
         (unsigned long long)atomic_load(sender_cpu), atomic_load(sender_sent), truncated ? "true" : "false", errors);
  free(own);
  free(ref);
  return 0;
}
