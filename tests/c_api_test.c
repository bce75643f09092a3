/* The C API, compiled as C: every call, its error codes, and contents surviving compaction and defragmentation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mova/mova.h"

static int failures = 0;
#define CHECK(cond)                                                  \
  do {                                                               \
    if (!(cond)) {                                                   \
      fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", __FILE__, __LINE__, #cond, \
              mova_last_error());                                    \
      ++failures;                                                    \
    }                                                                \
  } while (0)

/* A C owner of handle cells: it can refuse isolation, answer "again" to every migration, and counts putbacks. */
typedef struct test_owner {
  mova_handle* cells;
  size_t n;
  int refuse;
  int again;
  int putbacks;
} test_owner;

static void visit_all(void* ctx, mova_visit_fn visit, void* visit_ctx) {
  test_owner* o = (test_owner*)ctx;
  mova_handle* batch[MOVA_VISIT_BATCH];
  for (size_t i = 0; i < o->n; i += MOVA_VISIT_BATCH) {
    size_t k = o->n - i < MOVA_VISIT_BATCH ? o->n - i : MOVA_VISIT_BATCH;
    for (size_t j = 0; j < k; ++j) batch[j] = &o->cells[i + j];
    visit(batch, k, visit_ctx);
  }
}
static int isolate_unless_refusing(void* ctx, mova_handle* cell, mova_handle h) {
  (void)cell;
  (void)h;
  return !((test_owner*)ctx)->refuse;
}
static mova_migrate_answer migrate_unless_again(void* ctx, mova_handle* cell, mova_handle from, mova_handle to) {
  if (((test_owner*)ctx)->again) return MOVA_MIGRATE_AGAIN;
  if (!__atomic_compare_exchange_n(cell, &from, to, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) return MOVA_MIGRATE_AGAIN;
  return MOVA_MIGRATE_SUCCESS;
}
static void count_putback(void* ctx, mova_handle* cell, mova_handle h) {
  (void)cell;
  (void)h;
  ++((test_owner*)ctx)->putbacks;
}

/* Owned handles: cells kept by a C owner move to dense table pages by the owner rules; reads go through the
 * cells; the old handles are stale; the pool unregisters what is left when it is destroyed. */
static void owned_handles(void) {
  enum { M = 8192 };
  static mova_handle cells[M];
  mova_pool* pool;
  CHECK(mova_pool_create(NULL, &pool) == MOVA_OK);
  for (int i = 0; i < M; ++i) {
    void* p;
    CHECK(mova_alloc(pool, 32, &cells[i]) == MOVA_OK);
    CHECK(mova_pin_cell(pool, &cells[i], 1, &p, NULL) == MOVA_OK);
    memset(p, i & 0xFF, 32);
    CHECK(mova_unpin(pool, cells[i]) == MOVA_OK);
  }
  for (int i = 0; i < M; ++i) {
    if (i % 16 != 0) CHECK(mova_free_cell(pool, &cells[i]) == MOVA_OK && cells[i] == 0);
  }
  test_owner owner = {cells, M, 1, 0, 0};
  const mova_owner_ops ops = {visit_all, isolate_unless_refusing, migrate_unless_again, count_putback};
  mova_owner* reg = NULL;
  CHECK(mova_register_owner(pool, &ops, &owner, &reg) == MOVA_OK && reg != NULL);
  mova_handle_compact_result r;
  /* Isolation refused: nothing moves. */
  CHECK(mova_compact_handles(pool, &r) == MOVA_OK);
  CHECK(r.cells_owned == M / 16 && r.entries_migrated == 0 && r.isolate_failed > 0 && r.pages_released == 0);
  /* "Again" to every migration: retried, then put back (the owner is told). */
  owner.refuse = 0;
  owner.again = 1;
  CHECK(mova_compact_handles(pool, &r) == MOVA_OK);
  CHECK(r.entries_migrated == 0 && r.put_back > 0 && (uint64_t)owner.putbacks == r.put_back);
  /* Then they move, and the emptied table pages go back. */
  owner.again = 0;
  const mova_handle old = cells[M - 16]; /* on the highest page: an evacuation empties it first */
  CHECK(mova_compact_handles(pool, &r) == MOVA_OK);
  CHECK(r.entries_migrated > 0 && r.pages_released > 0);
  CHECK(cells[M - 16] != old);
  void* p;
  CHECK(mova_pin(pool, old, 0, &p, NULL) == MOVA_STALE_HANDLE);
  for (int i = 0; i < M; i += 16) {
    size_t n = 0;
    CHECK(mova_size_of_cell(pool, &cells[i], &n) == MOVA_OK && n == 32);
    CHECK(mova_pin_cell(pool, &cells[i], 0, &p, NULL) == MOVA_OK);
    CHECK(((unsigned char*)p)[0] == (unsigned char)(i & 0xFF) && ((unsigned char*)p)[31] == (unsigned char)(i & 0xFF));
    CHECK(mova_unpin(pool, cells[i]) == MOVA_OK);
  }
  CHECK(mova_unregister_owner(pool, reg) == MOVA_OK);
  CHECK(mova_unregister_owner(pool, reg) == MOVA_INVALID_ARGUMENT);
  /* Argument checks; an owner with the default migrate, left registered for mova_pool_destroy. */
  const mova_owner_ops no_visit = {NULL, NULL, NULL, NULL};
  CHECK(mova_register_owner(pool, &no_visit, &owner, &reg) == MOVA_INVALID_ARGUMENT);
  CHECK(mova_pin_cell(pool, NULL, 0, &p, NULL) == MOVA_INVALID_ARGUMENT);
  const mova_owner_ops visit_only = {visit_all, NULL, NULL, NULL};
  CHECK(mova_register_owner(pool, &visit_only, &owner, &reg) == MOVA_OK);
  CHECK(mova_compact_handles(pool, NULL) == MOVA_OK);
  CHECK(mova_free_cell(pool, &cells[0]) == MOVA_OK && cells[0] == 0);
  mova_pool_destroy(pool);
}

int main(void) {
  mova_options o;
  mova_options_init(&o);
  CHECK(o.max_handles > 0 && o.checked == 0 && o.decay_ms == 1000);
  CHECK(o.move_by_userfaultfd == 1 && o.move_by_mremap == 1 && o.collapse_dense_regions == 0);
  CHECK(o.background_interval_ms == 0 && o.background_threshold > 0 && o.background_threshold < 1);
  CHECK(o.include_in_core_dumps == 0 && o.show_stats == 0);
  CHECK(strcmp(mova_version(), MOVA_VERSION_STRING) == 0);
  CHECK(MOVA_VERSION == MOVA_VERSION_MAJOR * 10000 + MOVA_VERSION_MINOR * 100 + MOVA_VERSION_PATCH);
  o.show_stats = 3;
  {
    mova_pool* refused = NULL;
    CHECK(mova_pool_create(&o, &refused) == MOVA_INVALID_ARGUMENT && refused == NULL);
    CHECK(strstr(mova_last_error(), "show_stats") != NULL);
  }
  mova_options_init(&o);
  o.background_threshold = 2;
  mova_pool* bad = NULL;
  CHECK(mova_pool_create(&o, &bad) == MOVA_INVALID_ARGUMENT && bad == NULL);
  mova_options_init(&o);
  o.max_handles = 0;
  mova_pool* pool = NULL;
  CHECK(mova_pool_create(&o, &pool) == MOVA_INVALID_ARGUMENT);
  CHECK(strlen(mova_last_error()) > 0);
  CHECK(mova_pool_create(NULL, &pool) == MOVA_OK && pool != NULL);

  enum { N = 20000 };
  static mova_handle h[N];
  for (int i = 0; i < N; ++i) {
    CHECK(mova_alloc(pool, 24 + i % 300, &h[i]) == MOVA_OK);
    void* p;
    size_t n;
    CHECK(mova_pin(pool, h[i], 1, &p, &n) == MOVA_OK);
    CHECK(n == (size_t)(24 + i % 300));
    memset(p, i & 0xFF, n);
    CHECK(mova_unpin(pool, h[i]) == MOVA_OK);
  }
  for (int i = 0; i < N; ++i) {
    if (i % 8 != 0) CHECK(mova_free(pool, h[i]) == MOVA_OK);
  }
  /* Compaction in budgeted steps until the pass is done; then a whole pass finds nothing left to move. */
  mova_compact_result r;
  int complete = 0, steps = 0;
  uint64_t moved = 0, released = 0;
  while (!complete) {
    CHECK(mova_compact_step(pool, 50, &r, &complete) == MOVA_OK);
    moved += r.objects_moved;
    released += r.pages_released;
    CHECK(++steps < 100000);
  }
  CHECK(moved > 0 && released > 0);
  CHECK(mova_compact_step(pool, 0, &r, &complete) == MOVA_INVALID_ARGUMENT);
  CHECK(mova_compact_step(NULL, 50, &r, &complete) == MOVA_INVALID_ARGUMENT);
  CHECK(mova_compact(pool, &r) == MOVA_OK);
  CHECK(r.objects_moved == 0);
  mova_defrag_result d;
  for (complete = 0, steps = 0; !complete;) {
    CHECK(mova_defragment_step(pool, 50, &d, &complete) == MOVA_OK);
    CHECK(d.moves_uffd + d.moves_mremap + d.moves_copy <= d.blocks_migrated);
    CHECK(++steps < 100000);
  }
  CHECK(mova_defragment(pool, &d) == MOVA_OK);
  CHECK(d.blocks_migrated == 0);
  CHECK(mova_defragment(NULL, &d) == MOVA_INVALID_ARGUMENT);
  for (int i = 0; i < N; i += 8) {
    void* p;
    size_t n;
    CHECK(mova_pin(pool, h[i], 0, &p, &n) == MOVA_OK);
    for (size_t k = 0; k < n; ++k) {
      if (((unsigned char*)p)[k] != (unsigned char)(i & 0xFF)) {
        CHECK(!"contents changed across compaction");
        break;
      }
    }
    CHECK(mova_unpin(pool, h[i]) == MOVA_OK);
  }

  /* A read section: the objects read stay readable where they were read while a compaction moves them. */
  {
    mova_read_section* section = NULL;
    const void* before[N / 8];
    CHECK(mova_read_begin(pool, &section) == MOVA_OK && section != NULL);
    for (int i = 0; i < N; i += 8) {
      size_t n = 0;
      CHECK(mova_read(section, h[i], &before[i / 8], &n) == MOVA_OK && n == (size_t)(24 + i % 300));
    }
    const void* p;
    CHECK(mova_read(section, h[1], &p, NULL) == MOVA_STALE_HANDLE);
    CHECK(mova_read(section, 0, &p, NULL) == MOVA_INVALID_ARGUMENT);
    CHECK(mova_read(NULL, h[0], &p, NULL) == MOVA_INVALID_ARGUMENT);
    CHECK(mova_read_begin(NULL, &section) == MOVA_INVALID_ARGUMENT);
    CHECK(mova_relocate(pool, h, 1, NULL, NULL) == MOVA_OK); /* h[0] moves */
    CHECK(mova_read(section, h[0], &p, NULL) == MOVA_OK && p != before[0]);
    for (int i = 0; i < N; i += 8) CHECK(((const unsigned char*)before[i / 8])[0] == (unsigned char)(i & 0xFF));
    mova_read_end(section);
  }

  /* Relocation: the kept objects gathered in order; a freed handle is an outcome. */
  {
    mova_handle list[3] = {h[8], h[608], h[1]}; /* two objects of 32 B, and a freed one */
    uint8_t outcomes[3];
    size_t moved = 0;
    void* a;
    void* b;
    CHECK(mova_relocate(pool, list, 3, outcomes, &moved) == MOVA_OK && moved == 2);
    CHECK(outcomes[0] == MOVA_RELOCATE_MOVED && outcomes[1] == MOVA_RELOCATE_MOVED);
    CHECK(outcomes[2] == MOVA_RELOCATE_STALE);
    CHECK(mova_pin(pool, h[8], 0, &a, NULL) == MOVA_OK && mova_pin(pool, h[608], 0, &b, NULL) == MOVA_OK);
    CHECK((char*)b == (char*)a + 32); /* the second in the slot after the first's, in a fresh block */
    CHECK(((unsigned char*)a)[0] == 8 && ((unsigned char*)b)[0] == (608 & 0xFF));
    CHECK(mova_unpin(pool, h[8]) == MOVA_OK && mova_unpin(pool, h[608]) == MOVA_OK);
    CHECK(mova_relocate(NULL, list, 3, NULL, NULL) == MOVA_INVALID_ARGUMENT);
    CHECK(mova_relocate(pool, NULL, 3, NULL, NULL) == MOVA_INVALID_ARGUMENT);
    CHECK(mova_relocate(pool, NULL, 0, NULL, &moved) == MOVA_OK && moved == 0);
  }

  /* Errors. */
  mova_handle x;
  size_t size;
  CHECK(mova_alloc(pool, 0, &x) == MOVA_INVALID_ARGUMENT);
  CHECK(mova_free(pool, h[1]) == MOVA_STALE_HANDLE);
  CHECK(mova_size_of(pool, h[1], &size) == MOVA_STALE_HANDLE);
  CHECK(mova_free(pool, 0) == MOVA_INVALID_ARGUMENT);
  CHECK(mova_unpin(pool, h[0]) == MOVA_PINNED); /* not pinned */
  void* p;
  CHECK(mova_pin(pool, h[0], 0, &p, NULL) == MOVA_OK);
  CHECK(mova_free(pool, h[0]) == MOVA_PINNED);
  CHECK(mova_unpin(pool, h[0]) == MOVA_OK);
  CHECK(mova_size_of(pool, h[0], &size) == MOVA_OK && size == 24);
  CHECK(mova_alloc(NULL, 10, &x) == MOVA_INVALID_ARGUMENT);

  /* Stats as JSON. */
  size_t needed = 0;
  CHECK(mova_stats_json(pool, NULL, 0, &needed) == MOVA_EXHAUSTED && needed > 0);
  char* json = malloc(needed + 1);
  CHECK(mova_stats_json(pool, json, needed + 1, &needed) == MOVA_OK);
  CHECK(strstr(json, "\"live_objects\":2500,") != NULL);
  free(json);

  mova_pool_destroy(pool);
  owned_handles();
  printf("c_api_test: %d failures\n", failures);
  return failures == 0 ? 0 : 1;
}
