/*
 * The textbook copy through memory mappings, for benchmark "file copy" (bench/cp.mjs): the C version
 * of examples/03-copy.mjs, with the whole file in one mapping on each side.
 *
 *   mmap_copy SRC DST
 *
 * open SRC, fstat it for its size, mmap it whole (PROT_READ, MAP_SHARED); open DST with
 * O_RDWR | O_CREAT | O_TRUNC (mode 0644 minus the umask), ftruncate it to SRC's size, mmap it whole
 * (PROT_READ | PROT_WRITE, MAP_SHARED); memcpy; munmap both; close both. No msync: like cp and
 * write(), the copy is left in the page cache for the kernel to write back in its own time. An empty
 * SRC gives an empty DST without mapping anything (mmap of length 0 is EINVAL).
 *
 * Prints nothing on success; a failed step is reported with perror and exit status 1.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static void die(const char* what) {
  perror(what);
  exit(1);
}

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s SRC DST\n", argv[0]);
    return 2;
  }
  int src = open(argv[1], O_RDONLY);
  if (src < 0) die("open SRC");
  struct stat st;
  if (fstat(src, &st) != 0) die("fstat SRC");
  size_t size = (size_t)st.st_size;

  int dst = open(argv[2], O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (dst < 0) die("open DST");
  if (size > 0) {
    if (ftruncate(dst, st.st_size) != 0) die("ftruncate DST");
    void* from = mmap(NULL, size, PROT_READ, MAP_SHARED, src, 0);
    if (from == MAP_FAILED) die("mmap SRC");
    void* to = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, dst, 0);
    if (to == MAP_FAILED) die("mmap DST");
    memcpy(to, from, size);
    if (munmap(to, size) != 0) die("munmap DST");
    if (munmap(from, size) != 0) die("munmap SRC");
  }
  if (close(dst) != 0) die("close DST");
  close(src);
  return 0;
}
