// mova-kv/keyspace.h — the data set: keys to objects, with expiry, LRU clocks and the memory it counts.
//
// Types: Keyspace, Keyspace::Entry, Keyspace::Index.
// The index holds no key bytes: each key lives in its object (object_store.h) beside its value, and the hash
// set compares a probe with a candidate by reading the candidate's object only when the 64-bit hash and the
// key length match. Entries sit in one dense array (so that sampling for eviction and expiry is a random index,
// as Redis's dictGetRandomKey is); the hash set holds positions in it; a removal moves the last entry into the
// hole. Keys with a time to live are listed in a second dense array, for active expiry.
// The arrays shrink when under a quarter full, so used_memory follows the data set down.
// The keyspace is the store's handle owner (mova/handle_owner.h): each entry keeps its object's reference in an
// ObjectCell, which the store's handle compaction rewrites from the defragmenter's thread (VisitCells); the
// server's thread reads and frees through the cells, never through a reference it loaded and kept. The
// eviction pool keeps loaded references only as names to look up again: a candidate whose handle moved since
// is not found, and is passed over as a candidate whose key is gone.
// Invariants: every entry's object is live in the store; `data_bytes_` is the sum of the entries' allocation
// sizes (ObjectStore::AllocationSize); an entry's `volatile_pos` is its place in `volatile_` iff it has an
// expiry.
// Threads: the server's thread calls everything; the store's compaction calls VisitCells from the
// defragmenter's thread. The entry array's shape (its size, which entry sits where, its pages) changes only
// under shape_mu_, on the server's thread, which reads it without the lock (it is the only writer); the
// visit holds shape_mu_ while it hands a batch of cells over. Lock order: the pool's compaction lock →
// shape_mu_; the server's thread calls no store function while it holds shape_mu_.
#ifndef MOVA_KV_KEYSPACE_H_
#define MOVA_KV_KEYSPACE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/mutex.h"
#include "mova-kv/dense_array.h"
#include "mova-kv/object_store.h"

namespace mova::kv {

class Keyspace final : public HandleOwner {
 public:
  using Index = std::uint32_t;  // a position in the entry array: valid until the next removal
  static constexpr std::uint32_t kNotVolatile = ~std::uint32_t{0};
  static constexpr std::size_t kMaxKeys = std::size_t{1} << 30;

  struct Entry {  // 32 bytes
    ObjectCell ref;  // read through the store; rewritten by its handle compaction
    std::uint64_t hash = 0;
    std::uint32_t key_len = 0;
    std::uint32_t value_len = 0;
    std::uint32_t lru = 0;       // the LRU clock (ms, wrapping) at the last access
    std::uint32_t volatile_pos = kNotVolatile;  // its place in the expiry array, if it has an expiry
  };

  // Registers as `store`'s owner (ObjectStore::SetOwner) until destroyed.
  explicit Keyspace(ObjectStore& store);
  ~Keyspace() override;
  Keyspace(const Keyspace&) = delete;
  Keyspace& operator=(const Keyspace&) = delete;

  // The time commands see (Redis caches it per command too): expiry and LRU clocks read it.
  void set_now_ms(std::int64_t now) { now_ms_ = now; }
  std::int64_t now_ms() const { return now_ms_; }

  // The live entry of `key`; an expired one is deleted here (counted in expired_keys). `touch` updates its LRU
  // clock (reads and writes do; TTL and MEMORY USAGE do not, as in Redis).
  std::optional<Index> Find(std::string_view key, bool touch = true);
  // Find, and `fn` with the live entry's value while the lookup has its object open (one read of the object
  // for the key comparison and the value both): `fn` is called exactly when an entry is returned.
  std::optional<Index> FindAndRead(std::string_view key, absl::FunctionRef<void(std::string_view value)> fn);
  const Entry& entry(Index i) const { return entries_[i]; }
  // The absolute expiry of entry `i` in ms since the epoch; 0: none.
  std::int64_t ExpireOf(Index i) const {
    const std::uint32_t pos = entries_[i].volatile_pos;
    return pos == kNotVolatile ? 0 : volatile_[pos].expire_ms;
  }

  // Copies the value of entry `i` out.
  absl::StatusOr<std::string> CopyValue(Index i);

  // A new entry for `key`, which must not be present; no expiry. kResourceExhausted when memory runs out.
  absl::StatusOr<Index> Insert(std::string_view key, std::span<const std::string_view> value_parts);
  // A new value for entry `i`, whose key is `key` (a new object: the old one is freed); the expiry stays.
  absl::Status Replace(Index i, std::string_view key, std::span<const std::string_view> value_parts);
  // Sets (or, with 0, clears) the absolute expiry of entry `i`.
  void SetExpire(Index i, std::int64_t expire_ms);
  void Remove(Index i);
  void Clear();

  std::size_t size() const { return entries_.size(); }
  std::size_t volatile_size() const { return volatile_.size(); }

  // Sampling, for eviction and expiry: a uniformly random entry; a random entry with an expiry.
  Index RandomEntry();
  Index RandomVolatileEntry();

  // Redis's active expiry: samples keys with a time to live and deletes the expired, looping while more than a
  // tenth of a sample had expired and `budget_us` is not spent. Returns the keys deleted.
  std::size_t ActiveExpireCycle(std::int64_t budget_us);

  // Evicts one entry by `allkeys-lru` (a pool of the best candidates over `samples`-key samples, as Redis's
  // evictionPoolPopulate) or `allkeys-random`. False when there is nothing to evict.
  bool EvictLru(int samples);
  bool EvictRandom();

  // The order-independent digest of the data set (keys, values, expiries) as 40 hex digits; all zeros when
  // empty (as Redis's DEBUG DIGEST).
  absl::StatusOr<std::string> Digest();

  // Bytes the data set holds: its objects (what the allocator handed out for them, as Redis counts them) plus
  // the index's arrays (their resident pages). This is used_memory; maxmemory is checked against it.
  std::uint64_t used_memory() const;
  std::uint64_t data_bytes() const { return data_bytes_; }
  // The bytes entry `i` costs: its object and its share of the index (MEMORY USAGE).
  std::uint64_t EntryBytes(Index i) const;

  // Counters, as INFO's stats section names them.
  std::uint64_t expired_keys() const { return expired_keys_; }
  std::uint64_t evicted_keys() const { return evicted_keys_; }
  std::uint64_t store_errors() const { return store_errors_; }
  void ResetStats() { expired_keys_ = evicted_keys_ = 0; }

  static std::uint64_t HashKey(std::string_view key);

  // HandleOwner: the entries' cells, kVisitBatch at a time, each batch under shape_mu_ (an entry moved or
  // removed between two batches may be handed over twice or not at all in one visit: the compaction skips
  // a cell it already moved and leaves one it did not see where it is).
  void VisitCells(const std::function<void(std::span<HandleCell* const>)>& visit) override;

 private:
  struct KeyProbe {
    std::string_view key;
    std::uint64_t hash;
    const absl::FunctionRef<void(std::string_view)>* on_value = nullptr;  // called for the live match
  };
  struct RefProbe {
    ObjectRef ref;  // a reference loaded from a cell
    std::uint64_t hash;
  };
  struct IndexHash {
    using is_transparent = void;
    const Keyspace* ks;
    std::size_t operator()(Index i) const { return ks->entries_[i].hash; }
    std::size_t operator()(const KeyProbe& p) const { return p.hash; }
    std::size_t operator()(const RefProbe& p) const { return p.hash; }
  };
  struct IndexEq {
    using is_transparent = void;
    Keyspace* ks;
    bool operator()(Index a, Index b) const { return a == b; }
    bool operator()(const KeyProbe& p, Index i) const { return ks->KeyMatches(i, p); }
    bool operator()(Index i, const KeyProbe& p) const { return ks->KeyMatches(i, p); }
    bool operator()(const RefProbe& p, Index i) const { return ks->entries_[i].ref.load().raw == p.ref; }
    bool operator()(Index i, const RefProbe& p) const { return ks->entries_[i].ref.load().raw == p.ref; }
  };
  struct VolatileEntry {
    Index index;
    std::int64_t expire_ms;
  };
  struct Candidate {  // of the eviction pool
    std::uint32_t idle;
    std::uint64_t hash;
    ObjectRef ref;  // loaded from the entry's cell when sampled: a name to look up, never read through
  };
  using Set = absl::flat_hash_set<Index, IndexHash, IndexEq>;

  bool KeyMatches(Index i, const KeyProbe& p);
  bool Expired(const Entry& e) const {
    return e.volatile_pos != kNotVolatile && volatile_[e.volatile_pos].expire_ms <= now_ms_;
  }
  // Entry `i` that a lookup found, or none after deleting it if it has expired; `touch` updates its LRU clock.
  std::optional<Index> Settle(Index i, bool touch);
  std::uint32_t LruClock() const { return static_cast<std::uint32_t>(now_ms_); }
  std::size_t ObjectBytes(const Entry& e) const { return ObjectStore::ObjectSize(e.key_len, e.value_len); }
  std::size_t AllocatedBytes(const Entry& e) const { return store_.AllocationSize(e.ref, ObjectBytes(e)); }
  void Evict(Index i);
  void MaybeShrink();

  ObjectStore& store_;
  Mutex shape_mu_;  // entries_' shape changes; the compaction's visit (see the top of this file)
  DenseArray<Entry> entries_{kMaxKeys};
  Set set_;
  DenseArray<VolatileEntry> volatile_{kMaxKeys};
  std::size_t max_keys_;  // kMaxKeys, or 0 if the arrays could not be reserved
  std::vector<Candidate> eviction_pool_;  // ascending idle time: the best candidate last
  absl::BitGen rng_;
  std::int64_t now_ms_ = 0;
  std::uint64_t data_bytes_ = 0;
  std::uint64_t expired_keys_ = 0;
  std::uint64_t evicted_keys_ = 0;
  std::uint64_t store_errors_ = 0;
};

}  // namespace mova::kv

#endif  // MOVA_KV_KEYSPACE_H_
