/*
 * The floor for benchmark "random reads": the same 8-byte reads at the same positions as
 * bench/random-reads.mjs, from C, through a mapping (and, for reference, through pread).
 *
 *   random_reads <file> <seed> <count> <runs> <pread-runs>
 *
 * Positions: `count` page-aligned offsets, page = mulberry32(seed) % pages, the same generator and
 * the same order as bench/lib.mjs (makePositions). The mapping uses the flags mmapkit uses for
 * access 'read' (MAP_PRIVATE, PROT_READ | PROT_WRITE). The first pass over the fresh mapping takes the
 * page faults and is reported on its own (firstPassNs), then come `runs` timed passes through the
 * mapping and `pread-runs` passes of pread. Each pass sums the little-endian uint64 values it reads
 * (mod 2^64); the sum is printed, so the compiler cannot drop the loads, and the JavaScript side
 * compares it with its own.
 *
 * Output: one JSON object on stdout.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static uint32_t mulberry32(uint32_t* state) {
  uint32_t t = (*state += 0x6D2B79F5u);
  t = (t ^ (t >> 15)) * (t | 1u);
  t = (t + ((t ^ (t >> 7)) * (t | 61u))) ^ t;
  return t ^ (t >> 14);
}

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static uint64_t load_le64(const unsigned char* p) {
  uint64_t v;
  memcpy(&v, p, sizeof v); /* x86-64 is little-endian: one 8-byte load */
  return v;
}

/* noinline: one pass is one call, as in JavaScript; the sum is returned and printed. */
__attribute__((noinline)) static uint64_t pass_mmap(const unsigned char* base, const uint64_t* pos, size_t n) {
  uint64_t sum = 0;
  for (size_t i = 0; i < n; i++) sum += load_le64(base + pos[i]);
  return sum;
}

__attribute__((noinline)) static uint64_t pass_pread(int fd, const uint64_t* pos, size_t n) {
  uint64_t sum = 0;
  unsigned char b[8];
  for (size_t i = 0; i < n; i++) {
    if (pread(fd, b, 8, (off_t)pos[i]) != 8) {
      perror("pread");
      exit(1);
    }
    sum += load_le64(b);
  }
  return sum;
}

int main(int argc, char** argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: %s <file> <seed> <count> <runs> <pread-runs>\n", argv[0]);
    return 2;
  }
  const char* path = argv[1];
  uint32_t seed = (uint32_t)strtoul(argv[2], NULL, 10);
  size_t count = (size_t)strtoull(argv[3], NULL, 10);
  int runs = atoi(argv[4]);
  int pread_runs = atoi(argv[5]);

  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    perror("open");
    return 1;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    perror("fstat");
    return 1;
  }
  size_t size = (size_t)st.st_size;
  uint64_t pages = size / 4096;
  uint64_t* pos = malloc(count * sizeof *pos);
  if (pos == NULL) return 1;
  uint32_t state = seed;
  for (size_t i = 0; i < count; i++) pos[i] = (uint64_t)(mulberry32(&state) % pages) * 4096u;

  unsigned char* base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  if (base == MAP_FAILED) {
    perror("mmap");
    return 1;
  }

  double t0 = now_ns();
  uint64_t first = pass_mmap(base, pos, count);
  double first_ns = (now_ns() - t0) / (double)count;

  printf("{\"count\":%zu,\"pages\":%" PRIu64 ",\"checksum\":\"%" PRIu64 "\",\"firstPassNs\":%.3f,\"mmapNs\":[", count,
         pages, first, first_ns);
  int ok = 1;
  for (int r = 0; r < runs; r++) {
    t0 = now_ns();
    uint64_t s = pass_mmap(base, pos, count);
    double ns = (now_ns() - t0) / (double)count;
    if (s != first) ok = 0;
    printf("%s%.3f", r ? "," : "", ns);
  }
  printf("],\"preadNs\":[");
  for (int r = 0; r < pread_runs; r++) {
    t0 = now_ns();
    uint64_t s = pass_pread(fd, pos, count);
    double ns = (now_ns() - t0) / (double)count;
    if (s != first) ok = 0;
    printf("%s%.3f", r ? "," : "", ns);
  }
  printf("],\"consistent\":%s}\n", ok ? "true" : "false");
  munmap(base, size);
  close(fd);
  free(pos);
  return 0;
}
