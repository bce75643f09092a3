/* mova/mova.h — the C API: a pool of movable objects behind handles, for C callers.
 *
 * Types: mova_pool, mova_read_section (opaque), mova_handle (the 64-bit handle of mova/handle.h), mova_options, mova_status,
 * mova_compact_result, mova_defrag_result. Every function returns a mova_status; MOVA_OK is 0. The semantics
 * are those of the C++ API (mova/pool.h): a pinned object stays put until unpinned; mova_compact and
 * mova_defragment (and a background compactor, if the options ask for one) may move any other object.
 *
 *   mova_pool* pool;
 *   mova_pool_create(NULL, &pool);
 *   mova_handle h;
 *   mova_alloc(pool, 100, &h);
 *   void* p; size_t n;
 *   mova_pin(pool, h, 1, &p, &n); memcpy(p, src, n); mova_unpin(pool, h);
 *   mova_compact(pool, NULL);
 *   mova_free(pool, h);
 *   mova_pool_destroy(pool);
 */
#ifndef MOVA_MOVA_H_
#define MOVA_MOVA_H_

#include <stddef.h>
#include <stdint.h>

#include "mova/export.h"
#include "mova/version.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mova_pool mova_pool;
typedef struct mova_read_section mova_read_section;
typedef uint64_t mova_handle;

typedef enum mova_status {
  MOVA_OK = 0,
  MOVA_INVALID_ARGUMENT = 1, /* size 0 or too large; a handle this pool never issued; bad options */
  MOVA_STALE_HANDLE = 2,     /* the handle's object was freed (double free, use after free) */
  MOVA_PINNED = 3,           /* freeing a pinned object; mova_unpin of a handle with no mova_pin to undo */
  MOVA_EXHAUSTED = 4,        /* memory limit, address space, handle table or the kernel's memory */
  MOVA_DATA_LOSS = 5,        /* checked mode found a block descriptor overwritten */
  MOVA_INTERNAL = 6          /* an OS call failed unexpectedly */
} mova_status;

typedef struct mova_options {
  uint64_t arena_capacity; /* address space for objects, bytes (at most 1 TiB) */
  uint64_t memory_limit;   /* most bytes of object pages at once */
  uint32_t decay_ms;       /* freed pages stay resident this long; 0 gives them back at once */
  uint32_t max_handles;    /* handle-table capacity, at most 2^28 - 1 */
  int checked;             /* nonzero: abort on handle misuse, naming the handle */
  int move_by_userfaultfd; /* nonzero: defragmentation may move pages by UFFDIO_MOVE */
  int move_by_mremap;      /* nonzero: ... huge objects by mremap where there is no UFFDIO_MOVE */
  int collapse_dense_regions; /* nonzero: full 2 MiB regions go on transparent huge pages after defragmenting */
  uint32_t background_interval_ms; /* nonzero: a background compactor wakes this often */
  double background_threshold;     /* ... and compacts when more than this share of block bytes is not live */
  int include_in_core_dumps;       /* nonzero: the pool's reserved ranges stay in core dumps (MADV_DONTDUMP otherwise) */
  int show_stats;                  /* 0: nothing; 1: stats as text on stderr when the pool is destroyed; 2: as JSON */
  uint32_t direct_compaction_us;   /* an allocation that needs fresh pages may first compact this long; 0: never */
} mova_options;

typedef struct mova_defrag_result {
  uint64_t regions_freed;    /* 2 MiB regions emptied */
  uint64_t blocks_migrated;  /* blocks and huge objects moved (or freed while isolated) */
  uint64_t blocks_failed;    /* isolated but put back */
  uint64_t pages_moved;
  uint64_t moves_uffd;       /* of the moves: by UFFDIO_MOVE, by mremap, by memcpy */
  uint64_t moves_mremap;
  uint64_t moves_copy;
  double seconds;
} mova_defrag_result;

/* What mova_relocate did with one handle (mova::RelocateOutcome). */
typedef enum mova_relocate_outcome {
  MOVA_RELOCATE_MOVED = 0,
  MOVA_RELOCATE_PINNED = 1,     /* pinned, or a free of it under way: left where it is */
  MOVA_RELOCATE_BUSY = 2,       /* another mover had it, or the list named it before */
  MOVA_RELOCATE_STALE = 3,      /* its object was freed */
  MOVA_RELOCATE_NOT_ISSUED = 4, /* not a handle of this pool */
  MOVA_RELOCATE_HUGE = 5,       /* a huge object: nothing to gather */
  MOVA_RELOCATE_NO_MEMORY = 6   /* no fresh block could be made: left where it is */
} mova_relocate_outcome;

typedef struct mova_compact_result {
  uint64_t objects_moved;
  uint64_t bytes_moved;
  uint64_t blocks_released;
  uint64_t pages_released;
  uint64_t objects_skipped; /* pinned or busy */
  double seconds;
} mova_compact_result;

/* The version of the library linked (MOVA_VERSION_STRING is the headers'). */
MOVA_API const char* mova_version(void);
/* The defaults of mova::PoolOptions: built in, with MOVA_OPTIONS and MOVA_SHOW_STATS applied (mova/pool_options.h). */
MOVA_API void mova_options_init(mova_options* options);
/* options may be NULL for the defaults. MOVA_INVALID_ARGUMENT for a bad option or a bad MOVA_OPTIONS. */
MOVA_API mova_status mova_pool_create(const mova_options* options, mova_pool** out);
/* Frees the pool and every object in it. No call on it may be running or follow. */
MOVA_API void mova_pool_destroy(mova_pool* pool);

MOVA_API mova_status mova_alloc(mova_pool* pool, size_t size, mova_handle* out);
MOVA_API mova_status mova_free(mova_pool* pool, mova_handle handle);
MOVA_API mova_status mova_size_of(mova_pool* pool, mova_handle handle, size_t* size);
/* Pins the object (writable: nonzero to write through *data) and returns where its bytes are. Every
 * successful mova_pin needs one mova_unpin. */
MOVA_API mova_status mova_pin(mova_pool* pool, mova_handle handle, int writable, void** data, size_t* size);
MOVA_API mova_status mova_unpin(mova_pool* pool, mova_handle handle);
/* A read section (mova::ReadGuard): reads through handles that write no shared memory and never wait for a
 * compaction; an object moved meanwhile stays readable at the place mova_read gave until mova_read_end. The
 * calling thread's, and only for objects no other thread frees or writes meanwhile. Sections nest. */
MOVA_API mova_status mova_read_begin(mova_pool* pool, mova_read_section** out);
/* Where the object's bytes are, for reading, until the section ends. */
MOVA_API mova_status mova_read(mova_read_section* section, mova_handle handle, const void** data, size_t* size);
MOVA_API void mova_read_end(mova_read_section* section);

/* result may be NULL. */
MOVA_API mova_status mova_compact(mova_pool* pool, mova_compact_result* result);
/* Moves whole blocks and huge objects down the arena so high regions empty out. result may be NULL. */
MOVA_API mova_status mova_defragment(mova_pool* pool, mova_defrag_result* result);
/* mova_compact / mova_defragment in steps (mova::PassBudget): each call works about budget_us microseconds
 * (budget_us > 0) and sets *complete to 1 when the pass is done, else 0: call again, as a service's cron does,
 * so that no call holds the pool's locks long. result and complete may be NULL. */
MOVA_API mova_status mova_compact_step(mova_pool* pool, uint32_t budget_us, mova_compact_result* result,
                                       int* complete);
MOVA_API mova_status mova_defragment_step(mova_pool* pool, uint32_t budget_us, mova_defrag_result* result,
                                          int* complete);
/* Moves the class objects of handles[0 .. count) into fresh blocks, in that order (mova::Pool::relocate): objects
 * read together end up together. outcomes (count bytes, each a mova_relocate_outcome) and moved may be NULL.
 * A stale or foreign handle is an outcome, not an error (checked mode aborts on it). */
MOVA_API mova_status mova_relocate(mova_pool* pool, const mova_handle* handles, size_t count, uint8_t* outcomes,
                                   size_t* moved);
/* Owned handles (mova/handle_owner.h): handles the pool may renumber, so that mova_compact_handles (and
 * mova_compact) can move them out of sparse handle-table pages and give those pages back. An owner keeps each
 * handle in a cell (a mova_handle it does not move while a visit holds it) and registers with ops:
 *  - visit_cells (required) hands every cell to visit(cells, count, visit_ctx), at most MOVA_VISIT_BATCH at a
 *    time; cells holding 0 or another pool's handles are skipped. It runs on the thread that compacts and must
 *    not call the pool's compaction, nor pin or free the cells it hands over, during the call;
 *  - isolate (optional): nonzero lets the handle in `cell` move now;
 *  - migrate (optional): store `to` where `from` was and answer MOVA_MIGRATE_SUCCESS; MOVA_MIGRATE_AGAIN (retried
 *    on later passes, then put back) or MOVA_MIGRATE_FAIL (put back at once) leave `from` in the cell. Without
 *    it the pool compares and swaps the cell;
 *  - putback (optional): the isolated handle stays where it is.
 * Between compactions read a cell with the *_cell calls: they go on with the new handle when the entry moved
 * under them. A pinned entry never moves, so after mova_pin_cell the cell holds the pinned handle until
 * mova_unpin(pool, *cell). The old handle of a moved entry is stale. */
enum { MOVA_VISIT_BATCH = 256 };
typedef enum mova_migrate_answer {
  MOVA_MIGRATE_SUCCESS = 0,
  MOVA_MIGRATE_AGAIN = 1,
  MOVA_MIGRATE_FAIL = 2
} mova_migrate_answer;
typedef void (*mova_visit_fn)(mova_handle* const* cells, size_t count, void* visit_ctx);
typedef struct mova_owner_ops {
  void (*visit_cells)(void* owner_ctx, mova_visit_fn visit, void* visit_ctx);
  int (*isolate)(void* owner_ctx, mova_handle* cell, mova_handle handle);
  mova_migrate_answer (*migrate)(void* owner_ctx, mova_handle* cell, mova_handle from, mova_handle to);
  void (*putback)(void* owner_ctx, mova_handle* cell, mova_handle handle);
} mova_owner_ops;
typedef struct mova_owner mova_owner;
typedef struct mova_handle_compact_result {
  uint64_t cells_owned;
  uint64_t entries_migrated; /* freed while isolated included */
  uint64_t isolate_failed;   /* pinned, moving, or refused by the owner */
  uint64_t put_back;
  uint64_t pages_released;   /* handle-table pages given back */
  double seconds;
} mova_handle_compact_result;

/* ops is copied; owner_ctx is passed to every op. *out names the registration until mova_unregister_owner
 * (which waits for a compaction under way) or mova_pool_destroy. */
MOVA_API mova_status mova_register_owner(mova_pool* pool, const mova_owner_ops* ops, void* owner_ctx,
                                         mova_owner** out);
MOVA_API mova_status mova_unregister_owner(mova_pool* pool, mova_owner* owner);
/* result may be NULL. */
MOVA_API mova_status mova_compact_handles(mova_pool* pool, mova_handle_compact_result* result);
MOVA_API mova_status mova_pin_cell(mova_pool* pool, const mova_handle* cell, int writable, void** data,
                                   size_t* size);
MOVA_API mova_status mova_size_of_cell(mova_pool* pool, const mova_handle* cell, size_t* size);
/* Frees the object the cell names and stores 0 in the cell. */
MOVA_API mova_status mova_free_cell(mova_pool* pool, mova_handle* cell);
/* Writes the pool's stats as JSON (NUL-terminated) if it fits in `capacity` bytes; *needed is the length
 * without the NUL. MOVA_EXHAUSTED if it did not fit (call again with *needed + 1). */
MOVA_API mova_status mova_stats_json(mova_pool* pool, char* buffer, size_t capacity, size_t* needed);
/* The message of the last failed call on this thread (empty if none). */
MOVA_API const char* mova_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* MOVA_MOVA_H_ */
