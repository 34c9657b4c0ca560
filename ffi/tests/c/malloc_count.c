/*
 * An LD_PRELOAD interposer that counts the process's calls to the C allocator and prints
 * them at exit: "malloc_count: malloc=.. calloc=.. realloc=.. memalign=.. free=..".
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static atomic_ulong n_malloc, n_calloc, n_realloc, n_memalign, n_free;
static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);

/* dlsym may calloc before real_calloc is known: serve that from a static buffer. */
static char bootstrap[4096];
static size_t bootstrap_used;

static void init(void) {
  if (real_malloc) return;
  real_calloc = dlsym(RTLD_NEXT, "calloc");
  real_malloc = dlsym(RTLD_NEXT, "malloc");
  real_realloc = dlsym(RTLD_NEXT, "realloc");
  real_free = dlsym(RTLD_NEXT, "free");
  real_posix_memalign = dlsym(RTLD_NEXT, "posix_memalign");
  real_aligned_alloc = dlsym(RTLD_NEXT, "aligned_alloc");
}

static int from_bootstrap(void *p) {
  return (char *)p >= bootstrap && (char *)p < bootstrap + sizeof bootstrap;
}

void *malloc(size_t n) {
  init();
  atomic_fetch_add(&n_malloc, 1);
  return real_malloc(n);
}

void *calloc(size_t a, size_t b) {
  if (!real_calloc) {
    size_t n = (a * b + 15) & ~(size_t)15;
    if (bootstrap_used + n > sizeof bootstrap) return NULL;
    void *p = bootstrap + bootstrap_used;
    bootstrap_used += n;
    return p;
  }
  atomic_fetch_add(&n_calloc, 1);
  return real_calloc(a, b);
}

void *realloc(void *p, size_t n) {
  init();
  atomic_fetch_add(&n_realloc, 1);
  if (from_bootstrap(p)) {
    void *q = real_malloc(n);
    if (q) memcpy(q, p, n);
    return q;
  }
  return real_realloc(p, n);
}

void free(void *p) {
  if (!p || from_bootstrap(p)) return;
  init();
  atomic_fetch_add(&n_free, 1);
  real_free(p);
}

int posix_memalign(void **out, size_t align, size_t n) {
  init();
  atomic_fetch_add(&n_memalign, 1);
  return real_posix_memalign(out, align, n);
}

void *aligned_alloc(size_t align, size_t n) {
  init();
  atomic_fetch_add(&n_memalign, 1);
  return real_aligned_alloc(align, n);
}

__attribute__((destructor)) static void report(void) {
  char line[256];
  int len = snprintf(line, sizeof line, "malloc_count: malloc=%lu calloc=%lu realloc=%lu memalign=%lu free=%lu\n",
                     atomic_load(&n_malloc), atomic_load(&n_calloc), atomic_load(&n_realloc),
                     atomic_load(&n_memalign), atomic_load(&n_free));
  if (len > 0) (void)!write(2, line, (size_t)len);
}
