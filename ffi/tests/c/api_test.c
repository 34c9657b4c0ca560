/*
 * The C API as a customer uses it: every bad call answered with its status, then the happy
 * paths. Prints "ALL OK" and exits 0 when every check passes.
 *
 *   api_test MODEL MANIFOLD_DIR REF.png IMG.png EXPECTED_ULPIPS
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "usq.h"

static int failures;

#define EXPECT(cond, ...)                         \
  do {                                            \
    if (!(cond)) {                                \
      failures++;                                 \
      fprintf(stderr, "FAIL line %d: ", __LINE__); \
      fprintf(stderr, __VA_ARGS__);               \
      fprintf(stderr, "\n");                      \
    }                                             \
  } while (0)

#define EXPECT_STATUS(call, want)                                                                      \
  do {                                                                                                 \
    usq_status got_ = (call);                                                                          \
    EXPECT(got_ == (want), "%s gave %s (%s), expected %s", #call, usq_status_name(got_), usq_last_error(), \
           usq_status_name(want));                                                                     \
  } while (0)

static uint8_t *load(const char *path, uint32_t *w, uint32_t *h) {
  usq_status s = usq_image_load_gray(path, NULL, 0, w, h);
  EXPECT(s == USQ_ERR_WRONG_SIZE, "probe %s gave %s", path, usq_status_name(s));
  uint8_t *buf = malloc((size_t)*w * *h);
  EXPECT_STATUS(usq_image_load_gray(path, buf, (size_t)*w * *h, w, h), USQ_OK);
  return buf;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: api_test MODEL MANIFOLD_DIR REF IMG EXPECTED_ULPIPS\n");
    return 2;
  }
  const char *model = argv[1], *manifold = argv[2];
  double expected = strtod(argv[5], NULL);

  EXPECT(strlen(usq_version()) > 0, "version");
  EXPECT(!strcmp(usq_status_name(USQ_ERR_MODEL), "USQ_ERR_MODEL"), "status name");
  EXPECT(!strcmp(usq_status_name(12345), "USQ_UNKNOWN_STATUS"), "unknown status name");

  /* Images. */
  uint32_t w = 0, h = 0, iw = 0, ih = 0;
  EXPECT_STATUS(usq_image_load_gray(NULL, NULL, 0, &w, &h), USQ_ERR_NULL_ARGUMENT);
  EXPECT_STATUS(usq_image_load_gray("/no/such/image.png", NULL, 0, &w, &h), USQ_ERR_IO);
  EXPECT(strstr(usq_last_error(), "/no/such/image.png") != NULL, "the message names the file: %s", usq_last_error());
  EXPECT_STATUS(usq_image_load_gray(model, NULL, 0, &w, &h), USQ_ERR_IMAGE);
  uint8_t *ref = load(argv[3], &w, &h);
  uint8_t *img = load(argv[4], &iw, &ih);
  usq_frame_desc desc = {sizeof(usq_frame_desc), w, h, 0, USQ_PIXEL_GRAY8};
  usq_frame_desc idesc = {sizeof(usq_frame_desc), iw, ih, 0, USQ_PIXEL_GRAY8};

  /* Offline scorer. */
  usq_scorer *scorer = NULL;
  EXPECT_STATUS(usq_scorer_new(model, manifold, NULL), USQ_ERR_NULL_ARGUMENT);
  EXPECT_STATUS(usq_scorer_new("/no/such/model.onnx", manifold, &scorer), USQ_ERR_IO);
  EXPECT_STATUS(usq_scorer_new(argv[3], manifold, &scorer), USQ_ERR_MODEL);
  EXPECT_STATUS(usq_scorer_new(model, "/no/such/manifold", &scorer), USQ_ERR_IO);
  EXPECT_STATUS(usq_scorer_new(model, manifold, &scorer), USQ_OK);
  double nrq = NAN, ulpips = NAN;
  EXPECT_STATUS(usq_scorer_score(NULL, ref, (size_t)w * h, &desc, NULL, &nrq), USQ_ERR_NULL_ARGUMENT);
  EXPECT_STATUS(usq_scorer_score(scorer, ref, (size_t)w * h - 1, &desc, NULL, &nrq), USQ_ERR_WRONG_SIZE);
  usq_frame_desc bad = desc;
  bad.format = 99;
  EXPECT_STATUS(usq_scorer_score(scorer, ref, (size_t)w * h, &bad, NULL, &nrq), USQ_ERR_INVALID_ARGUMENT);
  bad = desc;
  bad.stride = w - 1;
  EXPECT_STATUS(usq_scorer_score(scorer, ref, (size_t)w * h, &bad, NULL, &nrq), USQ_ERR_INVALID_ARGUMENT);
  bad = desc;
  bad.struct_size = 8; /* a program built against another header */
  EXPECT_STATUS(usq_scorer_score(scorer, ref, (size_t)w * h, &bad, NULL, &nrq), USQ_ERR_WRONG_SIZE);
  bad = desc;
  bad.width = 0;
  EXPECT_STATUS(usq_scorer_score(scorer, ref, (size_t)w * h, &bad, NULL, &nrq), USQ_ERR_INVALID_ARGUMENT);
  EXPECT_STATUS(usq_scorer_score(scorer, ref, (size_t)w * h, &desc, "Spleen", &nrq), USQ_ERR_INVALID_ARGUMENT);
  char misaligned_storage[16];
  double *misaligned = (double *)(misaligned_storage + 1);
  EXPECT_STATUS(usq_scorer_score(scorer, ref, (size_t)w * h, &desc, NULL, misaligned), USQ_ERR_MISALIGNED);
  EXPECT_STATUS(usq_scorer_score(scorer, ref, (size_t)w * h, &desc, NULL, &nrq), USQ_OK);
  EXPECT(isfinite(nrq), "nrq %f", nrq);
  /* The same score with its acquisition checks. These manifolds carry no clean statistics, so
     nothing judges the measured values and no fault is raised. */
  usq_score_report rep;
  memset(&rep, 0, sizeof rep);
  EXPECT_STATUS(usq_scorer_score_report(scorer, ref, (size_t)w * h, &desc, NULL, &rep), USQ_ERR_WRONG_SIZE);
  rep.struct_size = sizeof rep;
  EXPECT_STATUS(usq_scorer_score_report(scorer, ref, (size_t)w * h, &desc, NULL, NULL), USQ_ERR_NULL_ARGUMENT);
  EXPECT_STATUS(usq_scorer_score_report(scorer, ref, (size_t)w * h, &desc, NULL, &rep), USQ_OK);
  EXPECT(rep.nrq == nrq, "report nrq %f vs %f", rep.nrq, nrq);
  EXPECT(rep.checks.faults == 0 && rep.checks.judged == 0 && isnan(rep.checks.organ_margin) &&
             isnan(rep.checks.frame_change),
         "unjudged checks: faults %u judged %u", rep.checks.faults, rep.checks.judged);
  EXPECT(rep.checks.echo_level > 0 && rep.checks.pixel_std > 0 && rep.checks.dead_width >= 0 &&
             rep.checks.dead_width <= 1 && rep.checks.clipped_share >= 0,
         "measured: echo %f std %f dead width %f", rep.checks.echo_level, rep.checks.pixel_std, rep.checks.dead_width);
  /* No quality scale in these manifolds: the calibrated index is NaN, the raw NRQ stands. */
  EXPECT(isnan(rep.quality), "quality without a scale: %f", rep.quality);
  /* A program built against the header before `quality` gets the fields it knows. */
  union {
    usq_score_report r;
    unsigned char bytes[sizeof(usq_score_report)];
  } old_rep;
  memset(&old_rep, 0xAB, sizeof old_rep);
  old_rep.r.struct_size = offsetof(usq_score_report, quality);
  EXPECT_STATUS(usq_scorer_score_report(scorer, ref, (size_t)w * h, &desc, NULL, &old_rep.r), USQ_OK);
  EXPECT(old_rep.r.nrq == nrq && old_rep.bytes[sizeof old_rep - 1] == 0xAB, "old-size report");
  EXPECT(!strcmp(usq_fault_name(USQ_FAULT_FROZEN), "frozen") && !strcmp(usq_fault_name(3), ""), "fault names");
  EXPECT(!strcmp(usq_fault_reason(USQ_FAULT_GAIN_LOW | USQ_FAULT_CONTACT_LOST), "no contact") &&
             !strcmp(usq_fault_reason(0), ""),
         "fault reasons");
  EXPECT_STATUS(usq_scorer_compare(scorer, ref, (size_t)w * h, &desc, img, (size_t)iw * ih, &idesc, &ulpips), USQ_OK);
  EXPECT(fabs(ulpips - expected) <= 1e-4 * fabs(expected), "ulpips %.9f, reference %.9f", ulpips, expected);
  EXPECT_STATUS(usq_scorer_compare(scorer, ref, (size_t)w * h, &desc, ref, (size_t)w * h, &desc, &ulpips), USQ_OK);
  EXPECT(ulpips == 0.0, "identical frames: %g", ulpips);
  usq_scorer_free(scorer);
  usq_scorer_free(NULL);

  /* Engine: configuration. */
  usq_engine_config cfg;
  usq_engine *engine = NULL;
  EXPECT_STATUS(usq_engine_config_default(NULL, w, h), USQ_ERR_NULL_ARGUMENT);
  EXPECT_STATUS(usq_engine_config_default(&cfg, w, h), USQ_OK);
  cfg.struct_size = 3;
  EXPECT_STATUS(usq_engine_start(model, manifold, NULL, &cfg, &engine), USQ_ERR_WRONG_SIZE);
  EXPECT_STATUS(usq_engine_config_default(&cfg, w, h), USQ_OK);
  cfg.batch = 0;
  EXPECT_STATUS(usq_engine_start(model, manifold, NULL, &cfg, &engine), USQ_ERR_INVALID_ARGUMENT);
  EXPECT_STATUS(usq_engine_config_default(&cfg, w, h), USQ_OK);
  cfg.ring_capacity = 2;
  EXPECT_STATUS(usq_engine_start(model, manifold, NULL, &cfg, &engine), USQ_ERR_INVALID_ARGUMENT);
  EXPECT_STATUS(usq_engine_config_default(&cfg, w, h), USQ_OK);
  cfg.threads = 0;
  EXPECT_STATUS(usq_engine_start(model, manifold, NULL, &cfg, &engine), USQ_ERR_INVALID_ARGUMENT);
  EXPECT_STATUS(usq_engine_config_default(&cfg, w, h), USQ_OK);
  EXPECT_STATUS(usq_engine_start(model, manifold, "Spleen", &cfg, &engine), USQ_ERR_INVALID_ARGUMENT);
  EXPECT_STATUS(usq_engine_start(model, manifold, NULL, &cfg, NULL), USQ_ERR_NULL_ARGUMENT);
  cfg.budget_ms = 1e6; /* score whole frames */
  EXPECT_STATUS(usq_engine_start(model, manifold, NULL, &cfg, &engine), USQ_OK);

  /* Engine: frames in through its one producer, in the wrong ways first. */
  usq_producer *producer = NULL, *second = NULL;
  EXPECT_STATUS(usq_engine_producer_new(NULL, &producer), USQ_ERR_NULL_ARGUMENT);
  EXPECT_STATUS(usq_engine_producer_new(engine, NULL), USQ_ERR_NULL_ARGUMENT);
  EXPECT_STATUS(usq_engine_producer_new(engine, &producer), USQ_OK);
  EXPECT_STATUS(usq_engine_producer_new(engine, &second), USQ_ERR_BUSY);
  uint64_t id = 0;
  EXPECT_STATUS(usq_producer_push(NULL, ref, (size_t)w * h, &desc, 0, &id), USQ_ERR_NULL_ARGUMENT);
  EXPECT_STATUS(usq_producer_push(producer, NULL, (size_t)w * h, &desc, 0, &id), USQ_ERR_NULL_ARGUMENT);
  EXPECT_STATUS(usq_producer_push(producer, ref, (size_t)w * h, NULL, 0, &id), USQ_ERR_NULL_ARGUMENT);
  EXPECT_STATUS(usq_producer_push(producer, ref, 10, &desc, 0, &id), USQ_ERR_WRONG_SIZE);
  usq_frame_desc huge = {sizeof(usq_frame_desc), w * 4, h * 4, 0, USQ_PIXEL_GRAY8};
  uint8_t *big = calloc((size_t)huge.width * huge.height, 1);
  EXPECT_STATUS(usq_producer_push(producer, big, (size_t)huge.width * huge.height, &huge, 0, &id), USQ_ERR_WRONG_SIZE);
  free(big);
  uint64_t *misaligned_id = (uint64_t *)(misaligned_storage + 3);
  EXPECT_STATUS(usq_producer_push(producer, ref, (size_t)w * h, &desc, 0, misaligned_id), USQ_ERR_MISALIGNED);
  EXPECT_STATUS(usq_producer_commit(producer, &desc, 0, &id), USQ_ERR_WRONG_STATE);
  EXPECT_STATUS(usq_producer_abandon(producer), USQ_ERR_WRONG_STATE);
  uint8_t *slot = NULL;
  size_t cap = 0;
  EXPECT_STATUS(usq_producer_acquire(producer, &slot, &cap), USQ_OK);
  EXPECT(slot != NULL && cap >= (size_t)w * h, "slot %p of %zu bytes", (void *)slot, cap);
  EXPECT_STATUS(usq_producer_acquire(producer, &slot, &cap), USQ_ERR_WRONG_STATE);
  EXPECT_STATUS(usq_producer_push(producer, ref, (size_t)w * h, &desc, 0, &id), USQ_ERR_WRONG_STATE);
  EXPECT_STATUS(usq_producer_abandon(producer), USQ_OK);

  /* Results, in the wrong ways. */
  usq_result r;
  memset(&r, 0, sizeof r);
  EXPECT_STATUS(usq_engine_next_result(engine, &r), USQ_ERR_WRONG_SIZE);
  r.struct_size = sizeof r;
  EXPECT_STATUS(usq_engine_next_result(engine, NULL), USQ_ERR_NULL_ARGUMENT);
  EXPECT_STATUS(usq_engine_next_result(engine, &r), USQ_EMPTY);
  char result_storage[sizeof(usq_result) + 8];
  usq_result *misaligned_r = (usq_result *)(result_storage + 1);
  EXPECT_STATUS(usq_engine_next_result(engine, misaligned_r), USQ_ERR_MISALIGNED);
  usq_engine_stats st;
  memset(&st, 0, sizeof st);
  EXPECT_STATUS(usq_engine_get_stats(engine, &st), USQ_ERR_WRONG_SIZE);

  /* The happy path: copy-in, then zero-copy. */
  EXPECT_STATUS(usq_producer_push(producer, ref, (size_t)w * h, &desc, 111, &id), USQ_OK);
  EXPECT_STATUS(usq_engine_wait_result(engine, 60000, &r), USQ_OK);
  EXPECT(r.frame_id == id && r.timestamp_us == 111, "result of frame %llu", (unsigned long long)r.frame_id);
  EXPECT(fabs(r.nrq - nrq) < 1e-6 * fabs(nrq) + 1e-9, "live %f vs offline %f", r.nrq, nrq);
  EXPECT(r.coverage == 1.0f && r.deadline_missed == 0, "coverage %f missed %u", r.coverage, r.deadline_missed);
  EXPECT(r.struct_size == sizeof r && r.checks.echo_level == rep.checks.echo_level && isnan(r.checks.frame_change) &&
             r.checks.faults == 0 && isnan(r.quality),
         "live checks of the first frame: echo %f change %f faults %u", r.checks.echo_level, r.checks.frame_change,
         r.checks.faults);
  EXPECT_STATUS(usq_producer_acquire(producer, &slot, &cap), USQ_OK);
  memcpy(slot, ref, (size_t)w * h);
  usq_frame_desc too_big = {sizeof(usq_frame_desc), w * 4, h * 4, 0, USQ_PIXEL_GRAY8};
  EXPECT_STATUS(usq_producer_commit(producer, &too_big, 0, &id), USQ_ERR_WRONG_SIZE);
  /* The refused commit gave the slot back: nothing is acquired now. */
  EXPECT_STATUS(usq_producer_abandon(producer), USQ_ERR_WRONG_STATE);
  EXPECT_STATUS(usq_producer_acquire(producer, &slot, &cap), USQ_OK);
  memcpy(slot, ref, (size_t)w * h);
  EXPECT_STATUS(usq_producer_commit(producer, &desc, 222, &id), USQ_OK);
  EXPECT_STATUS(usq_engine_wait_result(engine, 60000, &r), USQ_OK);
  EXPECT(r.frame_id == id && r.timestamp_us == 222, "zero-copy result");
  /* The same frame again: the image did not change, which reads frozen. */
  EXPECT(r.checks.frame_change == 0.0f && r.checks.faults == USQ_FAULT_FROZEN, "repeat: change %f faults %u",
         r.checks.frame_change, r.checks.faults);
  /* A program built against a header from before the checks passes the shorter struct_size and
     gets only the fields it knows: nothing past them is written. */
  union {
    usq_result r;
    unsigned char bytes[sizeof(usq_result)];
  } old;
  memset(&old, 0xAB, sizeof old);
  old.r.struct_size = offsetof(usq_result, checks);
  EXPECT_STATUS(usq_producer_push(producer, img, (size_t)iw * ih, &idesc, 223, &id), USQ_OK);
  EXPECT_STATUS(usq_engine_wait_result(engine, 60000, &old.r), USQ_OK);
  EXPECT(old.r.frame_id == id && old.r.struct_size == offsetof(usq_result, checks), "old-size result");
  int untouched = 1;
  for (size_t i = offsetof(usq_result, checks); i < sizeof old; i++) untouched &= old.bytes[i] == 0xAB;
  EXPECT(untouched, "bytes past the old struct were written");
  old.r.struct_size = offsetof(usq_result, checks) + 4;
  EXPECT_STATUS(usq_engine_next_result(engine, &old.r), USQ_ERR_WRONG_SIZE);
  st.struct_size = sizeof st;
  EXPECT_STATUS(usq_engine_get_stats(engine, &st), USQ_OK);
  EXPECT(st.frames_pushed == 3 && st.frames_scored == 3, "pushed %llu scored %llu",
         (unsigned long long)st.frames_pushed, (unsigned long long)st.frames_scored);
  usq_pool_stats pool;
  memset(&pool, 0, sizeof pool);
  EXPECT_STATUS(usq_pool_get_stats(NULL), USQ_ERR_NULL_ARGUMENT);
  EXPECT_STATUS(usq_pool_get_stats(&pool), USQ_ERR_WRONG_SIZE);
  pool.struct_size = sizeof pool;
  EXPECT_STATUS(usq_pool_get_stats(&pool), USQ_OK);
  /* Destructors take NULL and return nothing; freeing a producer gives its slot back, and
     frees the engine's one producer place. */
  EXPECT_STATUS(usq_producer_acquire(producer, &slot, &cap), USQ_OK);
  usq_producer_free(producer);
  usq_producer_free(NULL);
  EXPECT_STATUS(usq_engine_producer_new(engine, &second), USQ_OK);
  EXPECT_STATUS(usq_producer_push(second, ref, (size_t)w * h, &desc, 333, &id), USQ_OK);
  usq_engine_free(engine);
  /* The producer outlives its engine harmlessly: frames go into a ring nobody reads. */
  EXPECT_STATUS(usq_producer_push(second, ref, (size_t)w * h, &desc, 444, &id), USQ_OK);
  usq_producer_free(second);
  usq_engine_free(NULL);

  free(ref);
  free(img);
  if (failures) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  printf("ALL OK (pool: %llu allocations, peak %.1f MiB, %llu fallbacks)\n", (unsigned long long)pool.allocations,
         pool.peak_bytes / 1048576.0, (unsigned long long)pool.fallbacks);
  return 0;
}
