/*
 * The floors for benchmark "IPC latency" (bench/ipc-latency.mjs): a 64-byte ping-pong between two
 * processes over a shared mapping, from C, with the same protocol and layout as the JavaScript side.
 *
 *   futex_pingpong <futex|spin> <rounds> <warmup> [timeout-ms [parent-cpu child-cpu]]
 *
 * A MAP_SHARED | MAP_ANONYMOUS page is made, then the process forks. Layout (the same as
 * bench/ipc/peer.mjs): a 32-bit turn word at byte 0, the ping message at byte 64 and the pong message
 * at byte 128 (one cache line each). Round k: the parent writes ping(k) (16 words, see fill()), stores
 * turn = 2k+1 and, in futex mode, FUTEX_WAKEs the word; the child waits for turn == 2k+1, checks
 * ping(k) word by word, writes pong(k), stores turn = 2k+2 and wakes the word; the parent waits for
 * 2k+2 and checks pong(k). futex mode sleeps with FUTEX_WAIT (not private: what mmapkit's wait()
 * does); spin mode re-reads the word (with the x86 pause hint) and makes no system call at all.
 * Both sides read the word once per loop iteration and sleep on that very value.
 *
 * The parent takes one CLOCK_MONOTONIC timestamp at the start of every round; round trip k is the
 * difference between the timestamps of rounds k+1 and k. The first `warmup` rounds are not counted.
 * Every wait has a timeout (default 5000 ms without progress): the parent then kills the child and
 * exits 1; the child dies with its parent (PR_SET_PDEATHSIG).
 *
 * With parent-cpu and child-cpu (>= 0), each process pins itself to that CPU (sched_setaffinity)
 * before the first round: the same placements the JavaScript side gets with taskset.
 *
 * Output: one JSON object on stdout: rounds, p50/p99/mean/min/max in microseconds, errors (messages
 * that did not match, both sides; must be 0), and the parent's context switches per round trip.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
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

#define TURN 0
#define PING 16 /* int32 index: byte 64 */
#define PONG 32 /* int32 index: byte 128 */
#define WORDS 16
#define PING_SALT 0x50494e47u /* "PING" */
#define PONG_SALT 0x504f4e47u /* "PONG" */

static int spin_mode;
static int64_t timeout_ns;

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

/* Word i of message k: word 0 is k, the others a hash of (k, i) and the direction's salt. The same
 * function as msgWord() in bench/ipc/peer.mjs. */
static inline int32_t msg_word(uint32_t k, uint32_t i, uint32_t salt) {
  return i == 0 ? (int32_t)k : (int32_t)(((k + i) * 0x9E3779B1u) ^ salt);
}

static void fill(volatile int32_t* m, uint32_t k, uint32_t salt) {
  for (uint32_t i = 0; i < WORDS; i++) m[i] = msg_word(k, i, salt);
}

static int check(volatile int32_t* m, uint32_t k, uint32_t salt) {
  int bad = 0;
  for (uint32_t i = 0; i < WORDS; i++) bad |= m[i] != msg_word(k, i, salt);
  return bad;
}

/* Wait until the turn word holds `want`. Returns 0, or -1 after timeout_ns without it. */
static int await_turn(_Atomic int32_t* turn, int32_t want) {
  int64_t deadline = now_ns() + timeout_ns;
  if (spin_mode) {
    for (;;) {
      for (int i = 0; i < 4096; i++) {
        if (atomic_load_explicit(turn, memory_order_acquire) == want) return 0;
        cpu_relax();
      }
      if (now_ns() > deadline) return -1;
    }
  }
  for (;;) {
    int32_t v = atomic_load_explicit(turn, memory_order_acquire); /* read once... */
    if (v == want) return 0;
    int64_t left = deadline - now_ns();
    if (left <= 0) return -1;
    struct timespec ts = {.tv_sec = left / 1000000000LL, .tv_nsec = left % 1000000000LL};
    /* ...and sleep on that same value: a change in between makes FUTEX_WAIT return EAGAIN. */
    syscall(SYS_futex, (int32_t*)turn, FUTEX_WAIT, v, &ts, NULL, 0);
  }
}

static void publish(_Atomic int32_t* turn, int32_t value) {
  atomic_store_explicit(turn, value, memory_order_release);
  if (!spin_mode) syscall(SYS_futex, (int32_t*)turn, FUTEX_WAKE, 1, NULL, NULL, 0);
}

static void pin(int cpu) {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) {
    perror("sched_setaffinity");
    exit(1);
  }
}

static int cmp_double(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

/* Nearest rank, as in bench/ipc-latency.mjs. */
static double percentile(const double* sorted, size_t n, double p) {
  size_t rank = (size_t)(p * (double)n + 0.999999999);
  if (rank < 1) rank = 1;
  if (rank > n) rank = n;
  return sorted[rank - 1];
}

int main(int argc, char** argv) {
  if ((argc != 4 && argc != 5 && argc != 7) || (strcmp(argv[1], "futex") != 0 && strcmp(argv[1], "spin") != 0)) {
    fprintf(stderr, "usage: %s <futex|spin> <rounds> <warmup> [timeout-ms [parent-cpu child-cpu]]\n", argv[0]);
    return 2;
  }
  spin_mode = strcmp(argv[1], "spin") == 0;
  uint32_t rounds = (uint32_t)strtoul(argv[2], NULL, 10);
  uint32_t warmup = (uint32_t)strtoul(argv[3], NULL, 10);
  timeout_ns = (argc >= 5 ? strtoll(argv[4], NULL, 10) : 5000) * 1000000LL;
  int parent_cpu = argc == 7 ? atoi(argv[5]) : -1;
  int child_cpu = argc == 7 ? atoi(argv[6]) : -1;
  if (rounds < 1 || (uint64_t)rounds + warmup > 0x3fffffffu) {
    fprintf(stderr, "rounds must be >= 1 and rounds + warmup < 2^30\n");
    return 2;
  }
  uint32_t total = rounds + warmup;

  int32_t* mem = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    perror("mmap");
    return 1;
  }
  memset(mem, 0, 4096);
  _Atomic int32_t* turn = (_Atomic int32_t*)&mem[TURN];
  /* errors found by the child, reported through the mapping */
  _Atomic int32_t* child_errors = (_Atomic int32_t*)&mem[1];

  pid_t parent_pid = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    perror("fork");
    return 1;
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent_pid) _exit(1);
    pin(child_cpu);
    for (uint32_t k = 0; k < total; k++) {
      if (await_turn(turn, (int32_t)(2 * k + 1)) != 0) _exit(3);
      if (check(&mem[PING], k, PING_SALT)) atomic_fetch_add(child_errors, 1);
      fill(&mem[PONG], k, PONG_SALT);
      publish(turn, (int32_t)(2 * k + 2));
    }
    _exit(0);
  }

  pin(parent_cpu);
  double* rtt = malloc(sizeof(double) * rounds);
  if (rtt == NULL) return 1;
  struct rusage ru0, ru1;
  int errors = 0;
  int64_t prev = 0;
  getrusage(RUSAGE_SELF, &ru0);
  for (uint32_t k = 0; k <= total; k++) {
    int64_t t = now_ns();
    if (k > warmup) rtt[k - warmup - 1] = (double)(t - prev) / 1000.0;
    prev = t;
    if (k == total) break;
    fill(&mem[PING], k, PING_SALT);
    publish(turn, (int32_t)(2 * k + 1));
    if (await_turn(turn, (int32_t)(2 * k + 2)) != 0) {
      fprintf(stderr, "futex_pingpong: no reply to round %u within %lld ms\n", k, (long long)(timeout_ns / 1000000));
      kill(pid, SIGKILL);
      waitpid(pid, NULL, 0);
      return 1;
    }
    errors += check(&mem[PONG], k, PONG_SALT);
  }
  getrusage(RUSAGE_SELF, &ru1);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "futex_pingpong: child failed (status %d)\n", status);
    return 1;
  }
  errors += atomic_load(child_errors);

  double sum = 0;
  for (uint32_t i = 0; i < rounds; i++) sum += rtt[i];
  qsort(rtt, rounds, sizeof *rtt, cmp_double);
  /* context switches of the parent during the whole loop (warm-up included), per round trip */
  double vcsw = (double)(ru1.ru_nvcsw - ru0.ru_nvcsw) / total;
  double ivcsw = (double)(ru1.ru_nivcsw - ru0.ru_nivcsw) / total;
  printf("{\"mode\":\"%s\",\"rounds\":%u,\"warmup\":%u,\"p50\":%.4f,\"p99\":%.4f,\"mean\":%.4f,\"min\":%.4f,\"max\":%.4f,"
         "\"errors\":%d,\"parentCtxSwitches\":{\"voluntary\":%.4f,\"involuntary\":%.4f}}\n",
         argv[1], rounds, warmup, percentile(rtt, rounds, 0.5), percentile(rtt, rounds, 0.99), sum / rounds, rtt[0],
         rtt[rounds - 1], errors, vcsw, ivcsw);
  free(rtt);
  return 0;
}
