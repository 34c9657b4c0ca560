/*
 * firmware_loop: a scanner firmware's main loop in miniature, on libusq.
 *
 *   firmware_loop INPUT --frames N --fps F [--budget-ms B] [--size WxH] [--threads T]
 *                 [--model M] [--manifold DIR] [--organ NAME] [--zero-copy] [--stats-every S]
 *
 * INPUT is a folder of images (PNG, JPEG, BMP, TIFF), played in name order and looped, or with
 * --size a file of raw GRAY8 frames of W x H. A producer thread pushes a frame every 1/F s
 * (copying with usq_producer_push, or with --zero-copy writing straight into an acquired slot);
 * the main thread prints one line per result:
 *
 *   frame=<id> nrq=<score> coverage=<0..1> latency_ms=<ms> missed=<0|1>
 *
 * then a summary line of the engine's statistics. With --stats-every S, also every S seconds
 * (for soaks) a line of the engine's and the pool's counters so far:
 *
 *   tick t_s=<s> pushed=.. scored=.. dropped=.. skipped=.. failed=.. misses=.. p50_ms=.. p99_ms=.. run_ms=..
 *        pool_in_use_mb=.. pool_peak_mb=.. pool_fallbacks=..
 *
 * All memory is set up before the loop starts; the loop itself allocates nothing.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "usq.h"

struct clip {
  uint8_t **frames;
  size_t count;
  uint32_t width, height;
};

struct producer_args {
  const usq_engine *engine;
  const struct clip *clip;
  unsigned frames;
  double fps;
  int zero_copy;
  atomic_uint pushed;
  atomic_int failed;
};

static int fail_usq(const char *what, usq_status s) {
  fprintf(stderr, "firmware_loop: %s: %s: %s\n", what, usq_status_name(s), usq_last_error());
  return 1;
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Loads every image of a folder; all frames must have the size of the first. */
static int load_folder(const char *dir, struct clip *clip) {
  DIR *d = opendir(dir);
  if (!d) {
    perror(dir);
    return 1;
  }
  char **names = NULL;
  size_t n = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 64;
      names = realloc(names, cap * sizeof *names);
    }
    names[n++] = strdup(e->d_name);
  }
  closedir(d);
  qsort(names, n, sizeof *names, by_name);
  clip->frames = calloc(n ? n : 1, sizeof *clip->frames);
  clip->count = 0;
  for (size_t i = 0; i < n; i++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    uint32_t w = 0, h = 0;
    usq_status s = usq_image_load_gray(path, NULL, 0, &w, &h);
    if (s != USQ_ERR_WRONG_SIZE) { /* not an image, or unreadable: say so and skip it */
      fprintf(stderr, "firmware_loop: skipping %s: %s\n", path, usq_last_error());
      continue;
    }
    if (clip->count == 0) {
      clip->width = w;
      clip->height = h;
    } else if (w != clip->width || h != clip->height) {
      fprintf(stderr, "firmware_loop: skipping %s: %ux%u, the clip is %ux%u\n", path, w, h, clip->width, clip->height);
      continue;
    }
    uint8_t *buf = malloc((size_t)w * h);
    s = usq_image_load_gray(path, buf, (size_t)w * h, &w, &h);
    if (s != USQ_OK) return fail_usq(path, s);
    clip->frames[clip->count++] = buf;
  }
  for (size_t i = 0; i < n; i++) free(names[i]);
  free(names);
  if (clip->count == 0) {
    fprintf(stderr, "firmware_loop: no images in %s\n", dir);
    return 1;
  }
  return 0;
}

static int load_raw(const char *path, uint32_t w, uint32_t h, struct clip *clip) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    return 1;
  }
  size_t frame = (size_t)w * h;
  clip->width = w;
  clip->height = h;
  clip->count = 0;
  clip->frames = NULL;
  for (;;) {
    uint8_t *buf = malloc(frame);
    if (fread(buf, 1, frame, f) != frame) {
      free(buf);
      break;
    }
    clip->frames = realloc(clip->frames, (clip->count + 1) * sizeof *clip->frames);
    clip->frames[clip->count++] = buf;
  }
  fclose(f);
  if (clip->count == 0) {
    fprintf(stderr, "firmware_loop: %s holds no whole %ux%u frame\n", path, w, h);
    return 1;
  }
  return 0;
}

static uint64_t now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

static void *produce(void *arg) {
  struct producer_args *p = arg;
  usq_frame_desc desc = {sizeof(usq_frame_desc), p->clip->width, p->clip->height, 0, USQ_PIXEL_GRAY8};
  size_t bytes = (size_t)desc.width * desc.height;
  struct timespec next;
  clock_gettime(CLOCK_MONOTONIC, &next);
  long period_ns = (long)(1e9 / p->fps);
  /* The grabber thread owns the engine's one producer. */
  usq_producer *producer = NULL;
  usq_status made = usq_engine_producer_new(p->engine, &producer);
  if (made != USQ_OK) {
    p->failed = fail_usq("producer", made);
    return NULL;
  }
  for (unsigned i = 0; i < p->frames; i++) {
    const uint8_t *frame = p->clip->frames[i % p->clip->count];
    usq_status s;
    if (p->zero_copy) {
      uint8_t *slot;
      size_t cap;
      s = usq_producer_acquire(producer, &slot, &cap);
      if (s == USQ_OK) {
        memcpy(slot, frame, bytes); /* stands in for the grabber's DMA into the slot */
        s = usq_producer_commit(producer, &desc, now_us(), NULL);
      }
    } else {
      s = usq_producer_push(producer, frame, bytes, &desc, now_us(), NULL);
    }
    if (s != USQ_OK) {
      p->failed = fail_usq("push", s);
      usq_producer_free(producer);
      return NULL;
    }
    atomic_fetch_add(&p->pushed, 1);
    next.tv_nsec += period_ns;
    while (next.tv_nsec >= 1000000000L) {
      next.tv_nsec -= 1000000000L;
      next.tv_sec++;
    }
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
  }
  usq_producer_free(producer);
  return NULL;
}

static void usage(void) {
  fprintf(stderr,
          "usage: firmware_loop INPUT --frames N --fps F [--budget-ms B] [--size WxH] [--threads T]\n"
          "                     [--model M] [--manifold DIR] [--organ NAME] [--zero-copy] [--stats-every S]\n");
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + t.tv_nsec / 1e9;
}

/* One soak sample: the engine's counters (latency percentiles over its recent results) and the
   allocation pool's. */
static usq_status print_tick(const usq_engine *engine, double t) {
  usq_engine_stats st = {.struct_size = sizeof st};
  usq_pool_stats pool = {.struct_size = sizeof pool};
  usq_status s = usq_engine_get_stats(engine, &st);
  if (s == USQ_OK) s = usq_pool_get_stats(&pool);
  if (s != USQ_OK) return s;
  printf("tick t_s=%.1f pushed=%llu scored=%llu dropped=%llu skipped=%llu failed=%llu misses=%llu p50_ms=%.2f "
         "p99_ms=%.2f run_ms=%.2f pool_in_use_mb=%.1f pool_peak_mb=%.1f pool_fallbacks=%llu\n",
         t, (unsigned long long)st.frames_pushed, (unsigned long long)st.frames_scored,
         (unsigned long long)st.frames_dropped, (unsigned long long)st.frames_skipped,
         (unsigned long long)st.frames_failed, (unsigned long long)st.deadline_misses, st.latency_p50_ms,
         st.latency_p99_ms, st.run_ms, pool.in_use_bytes / 1048576.0, pool.peak_bytes / 1048576.0,
         (unsigned long long)pool.fallbacks);
  fflush(stdout);
  return USQ_OK;
}

int main(int argc, char **argv) {
  const char *input = NULL, *model = NULL, *manifold = NULL, *organ = NULL;
  unsigned frames = 0, w = 0, h = 0;
  double fps = 0, budget = 33.0, stats_every = 0;
  unsigned threads = 1;
  int zero_copy = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--frames") && v) frames = (unsigned)strtoul(argv[++i], NULL, 10);
    else if (!strcmp(a, "--fps") && v) fps = strtod(argv[++i], NULL);
    else if (!strcmp(a, "--budget-ms") && v) budget = strtod(argv[++i], NULL);
    else if (!strcmp(a, "--threads") && v) threads = (unsigned)strtoul(argv[++i], NULL, 10);
    else if (!strcmp(a, "--size") && v) {
      if (sscanf(argv[++i], "%ux%u", &w, &h) != 2) return usage(), 2;
    } else if (!strcmp(a, "--model") && v) model = argv[++i];
    else if (!strcmp(a, "--manifold") && v) manifold = argv[++i];
    else if (!strcmp(a, "--organ") && v) organ = argv[++i];
    else if (!strcmp(a, "--stats-every") && v) stats_every = strtod(argv[++i], NULL);
    else if (!strcmp(a, "--zero-copy")) zero_copy = 1;
    else if (a[0] != '-' && !input) input = a;
    else return usage(), 2;
  }
  if (!input || frames == 0 || !(fps > 0) || !(budget > 0) || stats_every < 0) return usage(), 2;

  struct clip clip;
  if (w ? load_raw(input, w, h, &clip) : load_folder(input, &clip)) return 1;

  usq_engine_config cfg;
  usq_status s = usq_engine_config_default(&cfg, clip.width, clip.height);
  if (s != USQ_OK) return fail_usq("config", s);
  cfg.budget_ms = budget;
  cfg.threads = threads;
  usq_engine *engine = NULL;
  s = usq_engine_start(model, manifold, organ, &cfg, &engine);
  if (s != USQ_OK) return fail_usq("start", s);
  printf("libusq %s: %zu frames of %ux%u, %u pushes at %.1f fps, budget %.1f ms\n", usq_version(), clip.count,
         clip.width, clip.height, frames, fps, budget);
  fflush(stdout);

  struct producer_args p = {engine, &clip, frames, fps, zero_copy, 0, 0};
  pthread_t producer;
  if (pthread_create(&producer, NULL, produce, &p)) {
    fprintf(stderr, "firmware_loop: cannot start the producer thread\n");
    return 1;
  }
  usq_result r = {.struct_size = sizeof r};
  usq_engine_stats st = {.struct_size = sizeof st};
  int producer_done = 0;
  const double start = now_s();
  double next_tick = stats_every;
  for (;;) {
    const double t = now_s() - start;
    if (stats_every > 0 && t >= next_tick) {
      s = print_tick(engine, t);
      if (s != USQ_OK) return fail_usq("stats", s);
      next_tick += stats_every;
    }
    s = usq_engine_wait_result(engine, 100, &r);
    if (s == USQ_OK) {
      /* The reason beside the number: what the sonographer should fix ("" when nothing). */
      /* quality: the calibrated 0-100 index beside NRQ (nan when the manifold has no scale). */
      printf("frame=%llu nrq=%.4f quality=%.1f coverage=%.3f latency_ms=%.2f missed=%u faults=0x%x reason=\"%s\"\n",
             (unsigned long long)r.frame_id, r.nrq, r.quality, r.coverage, r.latency_ms, r.deadline_missed, r.checks.faults,
             usq_fault_reason(r.checks.faults));
      continue;
    }
    if (s != USQ_EMPTY) return fail_usq("result", s);
    if (!producer_done) {
      /* pthread_tryjoin_np is a GNU extension; a finished producer has pushed them all. */
      if (atomic_load(&p.pushed) < frames && !atomic_load(&p.failed)) continue;
      pthread_join(producer, NULL);
      producer_done = 1;
    }
    s = usq_engine_get_stats(engine, &st);
    if (s != USQ_OK) return fail_usq("stats", s);
    uint64_t settled = st.frames_scored + st.frames_dropped + st.frames_skipped + st.frames_failed;
    if (settled >= st.frames_pushed) break;
  }
  usq_pool_stats pool = {.struct_size = sizeof(usq_pool_stats)};
  s = usq_pool_get_stats(&pool);
  if (s != USQ_OK) return fail_usq("pool stats", s);
  printf("stats pushed=%llu scored=%llu dropped=%llu skipped=%llu failed=%llu misses=%llu p50_ms=%.2f p99_ms=%.2f "
         "run_ms=%.2f pool_peak_mb=%.1f pool_fallbacks=%llu\n",
         (unsigned long long)st.frames_pushed, (unsigned long long)st.frames_scored,
         (unsigned long long)st.frames_dropped, (unsigned long long)st.frames_skipped,
         (unsigned long long)st.frames_failed, (unsigned long long)st.deadline_misses, st.latency_p50_ms,
         st.latency_p99_ms, st.run_ms, pool.peak_bytes / 1048576.0, (unsigned long long)pool.fallbacks);
  usq_engine_free(engine);
  for (size_t i = 0; i < clip.count; i++) free(clip.frames[i]);
  free(clip.frames);
  return atomic_load(&p.failed);
}
