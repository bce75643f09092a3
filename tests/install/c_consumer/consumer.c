/* tests/install/c_consumer/consumer.c — what a C program does with an installed mova: every kind of call,
 * its bytes checked through a compaction and a defragmentation. run_consumer() returns 0 when all went right. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mova/mova.h>

#define CHECK(cond)                                                                              \
  do {                                                                                           \
    if (!(cond)) {                                                                               \
      fprintf(stderr, "consumer: %s failed (last error: %s)\n", #cond, mova_last_error());       \
      return 1;                                                                                  \
    }                                                                                            \
  } while (0)

int run_consumer(void) {
  CHECK(strcmp(mova_version(), MOVA_VERSION_STRING) == 0);
  mova_options o;
  mova_options_init(&o);
  o.arena_capacity = (uint64_t)1 << 30;
  mova_pool* pool = NULL;
  CHECK(mova_pool_create(&o, &pool) == MOVA_OK);
  enum { kCount = 20000 };
  static mova_handle handles[kCount];
  for (int i = 0; i < kCount; ++i) {
    CHECK(mova_alloc(pool, 16 + (size_t)(i % 700), &handles[i]) == MOVA_OK);
    void* p;
    size_t n;
    CHECK(mova_pin(pool, handles[i], 1, &p, &n) == MOVA_OK);
    memset(p, i & 0xFF, n);
    CHECK(mova_unpin(pool, handles[i]) == MOVA_OK);
  }
  for (int i = 0; i < kCount; i += 2) CHECK(mova_free(pool, handles[i]) == MOVA_OK);
  CHECK(mova_free(pool, handles[0]) == MOVA_STALE_HANDLE);
  mova_compact_result c;
  CHECK(mova_compact(pool, &c) == MOVA_OK);
  CHECK(mova_defragment(pool, NULL) == MOVA_OK);
  for (int i = 1; i < kCount; i += 2) {
    void* p;
    size_t n;
    CHECK(mova_pin(pool, handles[i], 0, &p, &n) == MOVA_OK);
    CHECK(n == 16 + (size_t)(i % 700));
    for (size_t k = 0; k < n; ++k) CHECK(((unsigned char*)p)[k] == (unsigned char)(i & 0xFF));
    CHECK(mova_unpin(pool, handles[i]) == MOVA_OK);
  }
  size_t needed = 0;
  CHECK(mova_stats_json(pool, NULL, 0, &needed) == MOVA_EXHAUSTED);  /* how long, then the text */
  char* json = malloc(needed + 1);
  CHECK(json != NULL);
  CHECK(mova_stats_json(pool, json, needed + 1, &needed) == MOVA_OK);
  CHECK(strstr(json, "\"live_objects\":10000,") != NULL);
  free(json);
  mova_pool_destroy(pool);
  printf("c consumer: mova %s, %llu objects moved by compaction, contents intact\n", mova_version(),
         (unsigned long long)c.objects_moved);
  return 0;
}
