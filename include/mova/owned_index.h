// mova/owned_index.h — a hash map from keys to objects of a pool whose handles the pool may move.
//
// Types: OwnedIndex<Key, Hash, Eq>. An absl::flat_hash_map<Key, HandleCell> that is a HandleOwner
// (mova/handle_owner.h): the pool's handle compaction moves the entries of its objects into dense table
// pages and rewrites the cells. The index owns its objects: erase() and the destructor free them.
// Thread safety: every member may be called from any thread at once. Lookups (pin, pin_owned, contains,
// size) share a reader lock with the compactor's visit; changes (insert, erase, extract, clear) take it
// alone, ahead of readers that come later (WriterPreferringLock). The pool must outlive the index.
// Lock order: the pool's compaction lock → the index's lock (the compactor visits under both), so a caller
// must not compact the pool from inside for_each.
#ifndef MOVA_OWNED_INDEX_H_
#define MOVA_OWNED_INDEX_H_

#include <pthread.h>

#include <functional>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "mova/handle_owner.h"
#include "mova/pool.h"

namespace mova {

// A reader/writer lock that prefers writers: glibc's default (std::shared_mutex) lets a steady stream of
// readers starve a writer for as long as it lasts. Meets SharedMutex for std::shared_lock / std::unique_lock.
class WriterPreferringLock {
 public:
  WriterPreferringLock() {
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&rw_, &attr);
    pthread_rwlockattr_destroy(&attr);
  }
  ~WriterPreferringLock() { pthread_rwlock_destroy(&rw_); }
  WriterPreferringLock(const WriterPreferringLock&) = delete;
  WriterPreferringLock& operator=(const WriterPreferringLock&) = delete;
  void lock() { pthread_rwlock_wrlock(&rw_); }
  void unlock() { pthread_rwlock_unlock(&rw_); }
  void lock_shared() { pthread_rwlock_rdlock(&rw_); }
  void unlock_shared() { pthread_rwlock_unlock(&rw_); }

 private:
  pthread_rwlock_t rw_;
};

template <typename Key, typename Hash = absl::Hash<Key>, typename Eq = std::equal_to<Key>>
class OwnedIndex final : public HandleOwner {
 public:
  explicit OwnedIndex(Pool& pool) : pool_(pool) { pool_.register_owner(*this); }
  // Frees the objects (one still pinned is left to its pinner, and leaks: unpin before destroying the index).
  ~OwnedIndex() override {
    pool_.unregister_owner(*this);
    (void)clear();
  }
  OwnedIndex(const OwnedIndex&) = delete;
  OwnedIndex& operator=(const OwnedIndex&) = delete;

  // Takes `h` (an object of the pool) under `key`; false, with `h` not taken, when the key is present.
  bool insert(const Key& key, Handle h) {
    std::unique_lock lock(mu_);
    return map_.try_emplace(key, h).second;
  }
  // Takes `h` under `key`, freeing the object the key held before, if any. When that free fails (the old
  // object is pinned: kFailedPrecondition), nothing changes and `h` is not taken.
  absl::Status insert_or_assign(const Key& key, Handle h) {
    std::unique_lock lock(mu_);
    auto [it, inserted] = map_.try_emplace(key, h);
    if (inserted) return absl::OkStatus();
    if (absl::Status s = pool_.free(it->second); !s.ok()) return s;
    it->second.store(h);
    return absl::OkStatus();
  }
  // Frees the key's object and removes the key; kNotFound when absent. When the free fails (the object is
  // pinned: kFailedPrecondition), the key stays.
  absl::Status erase(const Key& key) {
    std::unique_lock lock(mu_);
    auto it = map_.find(key);
    if (it == map_.end()) return absl::NotFoundError("OwnedIndex::erase: no such key");
    if (absl::Status s = pool_.free(it->second); !s.ok()) return s;
    map_.erase(it);
    return absl::OkStatus();
  }
  // Removes the key and hands its object's current handle to the caller (no longer owned: it will not move).
  std::optional<Handle> extract(const Key& key) {
    std::unique_lock lock(mu_);
    auto it = map_.find(key);
    if (it == map_.end()) return std::nullopt;
    const Handle h = it->second.load();
    map_.erase(it);
    return h;
  }
  // Frees every object and removes its key; keys whose objects are pinned stay (the first such free's status
  // is returned).
  absl::Status clear() {
    std::unique_lock lock(mu_);
    absl::Status first;
    for (auto it = map_.begin(); it != map_.end();) {
      absl::Status s = pool_.free(it->second);
      if (s.ok()) {
        map_.erase(it++);
      } else {
        first.Update(s);
        ++it;
      }
    }
    return first;
  }

  // Pins the key's object (Pool::pin through its cell); kNotFound when the key is absent.
  absl::StatusOr<Pinned> pin(const Key& key, Access access) const {
    std::shared_lock lock(mu_);
    auto it = map_.find(key);
    if (it == map_.end()) return absl::NotFoundError("OwnedIndex::pin: no such key");
    return pool_.pin(it->second, access);
  }
  // Pool::pin_owned's contract holds: no other thread erases or replaces the key while the pin is held.
  absl::StatusOr<Pinned> pin_owned(const Key& key, Access access) const {
    std::shared_lock lock(mu_);
    auto it = map_.find(key);
    if (it == map_.end()) return absl::NotFoundError("OwnedIndex::pin_owned: no such key");
    return pool_.pin_owned(it->second, access);
  }
  bool contains(const Key& key) const {
    std::shared_lock lock(mu_);
    return map_.contains(key);
  }
  std::size_t size() const {
    std::shared_lock lock(mu_);
    return map_.size();
  }
  // Calls f(key, cell) for every key, under the reader lock (read the cell through the pool).
  template <typename F>
  void for_each(F&& f) const {
    std::shared_lock lock(mu_);
    for (const auto& [key, cell] : map_) f(key, cell);
  }

  // HandleOwner: the cells, kVisitBatch at a time, under the reader lock (cells do not move meanwhile).
  void VisitCells(const std::function<void(std::span<HandleCell* const>)>& visit) override {
    std::shared_lock lock(mu_);
    VisitInBatches(map_, [](auto& key_and_cell) { return &key_and_cell.second; }, visit);
  }

 private:
  Pool& pool_;
  mutable WriterPreferringLock mu_;  // a reader must not take it twice (a waiting writer would block it)
  absl::flat_hash_map<Key, HandleCell, Hash, Eq> map_;
};

}  // namespace mova

#endif  // MOVA_OWNED_INDEX_H_
