/*
 * The floor for benchmark "map + unmap": the system calls that mmapkit's map()/mapAnonymous() and
 * unmap() make, from C, with the same flags ('read' access: MAP_PRIVATE, PROT_READ | PROT_WRITE).
 *
 *   map_unmap <small-file> <big-file> <iterations> <runs>
 *
 * Cases (each `runs` times `iterations` pairs; microseconds per pair):
 *   open_close          open + close                                  (the fs.openSync+closeSync reference)
 *   path_small/path_big open + fstat + mmap(whole file) + close + munmap   (what map(path) + unmap() do)
 *   path_small_touch    the same, reading the first byte before munmap (one page fault)
 *   fd_small/fd_big     mmap + munmap on an open descriptor           (what map(fd) + unmap() do)
 *   anon_1m             mmap(1 MiB, MAP_ANONYMOUS) + munmap            (mapAnonymous(1 MiB) + unmap())
 *   populate_big        open + fstat + mmap(PROT_READ, MAP_POPULATE) + mprotect(PROT_READ|PROT_WRITE)
 *                       + close + munmap of the big file, iterations/200 times (map(path, { populate:
 *                       true }) + unmap(): mmapkit populates a 'read' mapping while it is read-only)
 *
 * Output: one JSON object on stdout.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void die(const char* what) {
  perror(what);
  exit(1);
}

static size_t file_size(const char* path) {
  struct stat st;
  if (stat(path, &st) != 0) die("stat");
  return (size_t)st.st_size;
}

static void open_close(const char* path, long n) {
  for (long i = 0; i < n; i++) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("open");
    close(fd);
  }
}

static volatile unsigned char g_sink;

static void populate_map(const char* path, long n) {
  for (long i = 0; i < n; i++) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("open");
    struct stat st;
    if (fstat(fd, &st) != 0) die("fstat");
    void* p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    if (p == MAP_FAILED) die("mmap");
    if (mprotect(p, (size_t)st.st_size, PROT_READ | PROT_WRITE) != 0) die("mprotect");
    close(fd);
    if (munmap(p, (size_t)st.st_size) != 0) die("munmap");
  }
}

static void path_map(const char* path, long n, int touch) {
  for (long i = 0; i < n; i++) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("open");
    struct stat st;
    if (fstat(fd, &st) != 0) die("fstat");
    void* p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) die("mmap");
    close(fd);
    if (touch) g_sink += *(volatile unsigned char*)p;
    if (munmap(p, (size_t)st.st_size) != 0) die("munmap");
  }
}

static void fd_map(int fd, size_t size, long n) {
  for (long i = 0; i < n; i++) {
    void* p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) die("mmap");
    if (munmap(p, size) != 0) die("munmap");
  }
}

static void anon_map(size_t size, long n) {
  for (long i = 0; i < n; i++) {
    void* p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) die("mmap");
    if (munmap(p, size) != 0) die("munmap");
  }
}

int main(int argc, char** argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s <small-file> <big-file> <iterations> <runs>\n", argv[0]);
    return 2;
  }
  const char* small = argv[1];
  const char* big = argv[2];
  long n = atol(argv[3]);
  int runs = atoi(argv[4]);
  int fd_s = open(small, O_RDONLY | O_CLOEXEC), fd_b = open(big, O_RDONLY | O_CLOEXEC);
  if (fd_s < 0 || fd_b < 0) die("open");
  size_t size_s = file_size(small), size_b = file_size(big);

  const char* names[] = {"open_close", "path_small", "path_small_touch", "path_big", "fd_small", "fd_big", "anon_1m", "populate_big"};
  printf("{");
  for (int c = 0; c < 8; c++) {
    printf("%s\"%s\":[", c ? "," : "", names[c]);
    for (int r = -1; r < runs; r++) { /* r == -1: untimed warm-up */
      long base = c == 7 ? (n / 200 > 0 ? n / 200 : 1) : n;
      long iters = r < 0 ? (c == 7 ? 1 : base / 10 + 1) : base;
      double t0 = now_ns();
      switch (c) {
        case 0: open_close(small, iters); break;
        case 1: path_map(small, iters, 0); break;
        case 2: path_map(small, iters, 1); break;
        case 3: path_map(big, iters, 0); break;
        case 4: fd_map(fd_s, size_s, iters); break;
        case 5: fd_map(fd_b, size_b, iters); break;
        case 6: anon_map(1 << 20, iters); break;
        case 7: populate_map(big, iters); break;
      }
      double us = (now_ns() - t0) / 1e3 / (double)iters;
      if (r >= 0) printf("%s%.4f", r ? "," : "", us);
    }
    printf("]");
  }
  printf("}\n");
  close(fd_s);
  close(fd_b);
  return 0;
}
