// mova-kv/keyspace.cc — see keyspace.h.
#include "mova-kv/absl_view.h"
#include "mova-kv/keyspace.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>

#include "absl/hash/hash.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace mova::kv {
namespace {

constexpr std::size_t kEvictionPoolSize = 16;  // Redis's EVPOOL_SIZE
constexpr int kExpireSample = 20;              // ACTIVE_EXPIRE_CYCLE_KEYS_PER_LOOP
constexpr int kExpireAcceptableStalePercent = 10;

// A fixed (unseeded) 64-bit hash for the digest, which must not change between runs: murmur-style rounds of
// 8 bytes, a length fold and a final avalanche.
std::uint64_t Mix(std::uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}
std::uint64_t StableHash(std::string_view s, std::uint64_t seed) {
  std::uint64_t h = seed ^ (s.size() * 0x9e3779b97f4a7c15ULL);
  std::size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    std::uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    h = (h ^ Mix(w)) * 0x9e3779b97f4a7c15ULL;
  }
  std::uint64_t tail = 0;
  std::memcpy(&tail, s.data() + i, s.size() - i);
  h = (h ^ Mix(tail ^ 0x5bd1e995)) * 0x9e3779b97f4a7c15ULL;
  return Mix(h);
}

}  // namespace

Keyspace::Keyspace(ObjectStore& store)
    : store_(store),
      set_(0, IndexHash{this}, IndexEq{this}),
      max_keys_(entries_.max_size() > 0 && volatile_.max_size() > 0 ? kMaxKeys : 0) {
  store_.SetOwner(this);
}

Keyspace::~Keyspace() {
  store_.SetOwner(nullptr);  // waits for a compaction visiting the cells
  Clear();
}

std::uint64_t Keyspace::HashKey(std::string_view key) { return absl::HashOf(key); }

bool Keyspace::KeyMatches(Index i, const KeyProbe& p) {
  const Entry& e = entries_[i];
  if (e.hash != p.hash || e.key_len != p.key.size()) return false;
  bool same = false;
  const absl::Status s = store_.Read(e.ref, ObjectBytes(e), [&](std::string_view key, std::string_view value) {
    same = key == p.key;
    if (same && p.on_value != nullptr && !Expired(e)) (*p.on_value)(value);
  });
  if (!s.ok()) ++store_errors_;
  return same;
}

std::optional<Keyspace::Index> Keyspace::Find(std::string_view key, bool touch) {
  const auto it = set_.find(KeyProbe{key, HashKey(key)});
  if (it == set_.end()) return std::nullopt;
  return Settle(*it, touch);
}

std::optional<Keyspace::Index> Keyspace::FindAndRead(std::string_view key,
                                                     absl::FunctionRef<void(std::string_view)> fn) {
  const auto it = set_.find(KeyProbe{key, HashKey(key), &fn});
  if (it == set_.end()) return std::nullopt;
  return Settle(*it, /*touch=*/true);
}

std::optional<Keyspace::Index> Keyspace::Settle(Index i, bool touch) {
  Entry& e = entries_[i];
  if (Expired(e)) {
    Remove(i);
    ++expired_keys_;
    return std::nullopt;
  }
  if (touch) e.lru = LruClock();
  return i;
}

absl::StatusOr<std::string> Keyspace::CopyValue(Index i) {
  const Entry& e = entries_[i];
  std::string out;
  const absl::Status s = store_.Read(e.ref, ObjectBytes(e), [&](std::string_view, std::string_view value) {
    out.assign(value);
  });
  if (!s.ok()) {
    ++store_errors_;
    return s;
  }
  return out;
}

absl::StatusOr<Keyspace::Index> Keyspace::Insert(std::string_view key, std::span<const std::string_view> value_parts) {
  if (entries_.size() >= max_keys_) return absl::ResourceExhaustedError("too many keys");
  absl::StatusOr<ObjectRef> ref = store_.Put(key, value_parts);
  if (!ref.ok()) return ref.status();
  Entry e;
  e.ref = ObjectCell(Handle{*ref});
  e.hash = HashKey(key);
  e.key_len = static_cast<std::uint32_t>(key.size());
  e.value_len = static_cast<std::uint32_t>(ObjectStore::ValueSize(value_parts));
  e.lru = LruClock();
  const Index i = static_cast<Index>(entries_.size());
  {
    MutexLock lock(&shape_mu_);
    (void)entries_.push_back(e);  // below max_keys_: there is room
  }
  set_.insert(i);
  data_bytes_ += AllocatedBytes(e);
  return i;
}

absl::Status Keyspace::Replace(Index i, std::string_view key, std::span<const std::string_view> value_parts) {
  Entry& e = entries_[i];
  absl::StatusOr<ObjectRef> ref = store_.Put(key, value_parts);
  if (!ref.ok()) return ref.status();
  data_bytes_ -= AllocatedBytes(e);  // before the free: a store may read the object for it
  if (absl::Status f = store_.Free(e.ref, ObjectBytes(e)); !f.ok()) ++store_errors_;
  e.ref.store(Handle{*ref});
  e.value_len = static_cast<std::uint32_t>(ObjectStore::ValueSize(value_parts));
  e.lru = LruClock();
  data_bytes_ += AllocatedBytes(e);
  return absl::OkStatus();
}

void Keyspace::SetExpire(Index i, std::int64_t expire_ms) {
  Entry& e = entries_[i];
  if (expire_ms != 0) {
    if (e.volatile_pos == kNotVolatile) {
      e.volatile_pos = static_cast<std::uint32_t>(volatile_.size());
      (void)volatile_.push_back(VolatileEntry{i, expire_ms});  // no more than entries: there is room
    } else {
      volatile_[e.volatile_pos].expire_ms = expire_ms;
    }
  } else if (e.volatile_pos != kNotVolatile) {
    const std::uint32_t pos = e.volatile_pos;
    volatile_[pos] = volatile_.back();
    entries_[volatile_[pos].index].volatile_pos = pos;
    volatile_.pop_back();
    e.volatile_pos = kNotVolatile;
  }
}

void Keyspace::Remove(Index i) {
  SetExpire(i, 0);
  Entry& e = entries_[i];
  set_.erase(i);
  data_bytes_ -= AllocatedBytes(e);  // before the free: a store may read the object for it
  if (absl::Status s = store_.Free(e.ref, ObjectBytes(e)); !s.ok()) ++store_errors_;
  const Index last = static_cast<Index>(entries_.size() - 1);
  if (i != last) set_.erase(last);
  {
    MutexLock lock(&shape_mu_);
    if (i != last) entries_[i] = entries_[last];
    entries_.pop_back();
  }
  if (i != last) {
    set_.insert(i);
    if (entries_[i].volatile_pos != kNotVolatile) volatile_[entries_[i].volatile_pos].index = i;
  }
  MaybeShrink();
}

void Keyspace::MaybeShrink() {
  // As Redis's dict resizes down, so that used_memory follows the data set down and eviction can bring it under
  // maxmemory: the dense arrays give back their pages past the end (DenseArray::ReleaseTail), and the hash set
  // is rehashed to its size once under a quarter full.
  constexpr std::size_t kMinCapacity = 1024;
  {
    MutexLock lock(&shape_mu_);
    entries_.ReleaseTail();
  }
  volatile_.ReleaseTail();
  if (set_.capacity() > kMinCapacity && set_.size() * 4 < set_.capacity()) set_.rehash(0);
}

void Keyspace::Clear() {
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    Entry& e = entries_[i];
    if (absl::Status s = store_.Free(e.ref, ObjectBytes(e)); !s.ok()) ++store_errors_;
  }
  // Empty arrays: used_memory goes back to its empty value.
  {
    MutexLock lock(&shape_mu_);
    entries_.Clear();
  }
  volatile_.Clear();
  std::vector<Candidate>().swap(eviction_pool_);
  set_ = Set(0, IndexHash{this}, IndexEq{this});
  data_bytes_ = 0;
}

Keyspace::Index Keyspace::RandomEntry() {
  return absl::Uniform<Index>(rng_, 0, static_cast<Index>(entries_.size()));
}

Keyspace::Index Keyspace::RandomVolatileEntry() {
  return volatile_[absl::Uniform<std::size_t>(rng_, 0, volatile_.size())].index;
}

std::size_t Keyspace::ActiveExpireCycle(std::int64_t budget_us) {
  const absl::Time start = absl::Now();
  std::size_t deleted = 0;
  for (int round = 0; !volatile_.empty(); ++round) {
    int expired = 0, sampled = 0;
    for (; sampled < kExpireSample && !volatile_.empty(); ++sampled) {
      const Index i = RandomVolatileEntry();
      if (ExpireOf(i) <= now_ms_) {
        Remove(i);
        ++expired_keys_;
        ++expired;
      }
    }
    deleted += expired;
    if (expired * 100 <= sampled * kExpireAcceptableStalePercent) break;
    if ((round & 15) == 15 && absl::ToInt64Microseconds(absl::Now() - start) >= budget_us) break;
  }
  return deleted;
}

void Keyspace::Evict(Index i) {
  Remove(i);
  ++evicted_keys_;
}

bool Keyspace::EvictRandom() {
  if (entries_.empty()) return false;
  Evict(RandomEntry());
  return true;
}

bool Keyspace::EvictLru(int samples) {
  while (!entries_.empty()) {
    const std::uint32_t now = LruClock();
    for (int k = 0; k < samples; ++k) {
      const Entry& e = entries_[RandomEntry()];
      const Candidate c{now - e.lru, e.hash, e.ref.load().raw};
      if (std::any_of(eviction_pool_.begin(), eviction_pool_.end(), [&](const Candidate& o) { return o.ref == c.ref; })) {
        continue;
      }
      if (eviction_pool_.size() == kEvictionPoolSize) {
        if (c.idle <= eviction_pool_.front().idle) continue;
        eviction_pool_.erase(eviction_pool_.begin());
      }
      eviction_pool_.insert(std::upper_bound(eviction_pool_.begin(), eviction_pool_.end(), c,
                                             [](const Candidate& a, const Candidate& b) { return a.idle < b.idle; }),
                            c);
    }
    // The best candidate that still names a live entry goes (a candidate's key may be gone or rewritten since).
    while (!eviction_pool_.empty()) {
      const Candidate c = eviction_pool_.back();
      eviction_pool_.pop_back();
      const auto it = set_.find(RefProbe{c.ref, c.hash});
      if (it != set_.end()) {
        Evict(*it);
        return true;
      }
    }
  }
  return false;
}

absl::StatusOr<std::string> Keyspace::Digest() {
  std::uint64_t d[3] = {0, 0, 0};
  for (Index i = 0; i < entries_.size(); ++i) {
    const Entry& e = entries_[i];
    std::uint64_t h[3] = {0, 0, 0};
    const absl::Status s = store_.Read(e.ref, ObjectBytes(e), [&](std::string_view key, std::string_view value) {
      for (int lane = 0; lane < 3; ++lane) {
        const std::uint64_t seed = 0x6d6f76612d6b76ULL + static_cast<std::uint64_t>(lane) * 0x9e3779b97f4a7c15ULL;
        h[lane] = Mix(StableHash(key, seed) ^ Mix(StableHash(value, seed + 1)) ^
                      Mix(static_cast<std::uint64_t>(ExpireOf(i)) + seed));
      }
    });
    if (!s.ok()) return s;
    for (int lane = 0; lane < 3; ++lane) d[lane] ^= h[lane];
  }
  return absl::StrFormat("%016x%016x%08x", d[0], d[1], static_cast<std::uint32_t>(d[2]));
}

void Keyspace::VisitCells(const std::function<void(std::span<HandleCell* const>)>& visit) {
  std::array<HandleCell*, kVisitBatch> batch;
  for (std::size_t at = 0;; at += kVisitBatch) {
    MutexLock lock(&shape_mu_);
    if (at >= entries_.size()) return;
    const std::size_t n = std::min(entries_.size() - at, kVisitBatch);
    for (std::size_t k = 0; k < n; ++k) batch[k] = &entries_[at + k].ref;
    visit(std::span<HandleCell* const>(batch.data(), n));
  }
}

std::uint64_t Keyspace::used_memory() const {
  return data_bytes_ + entries_.resident_bytes() + set_.capacity() * (sizeof(Index) + 1) +
         volatile_.resident_bytes();
}

std::uint64_t Keyspace::EntryBytes(Index i) const {
  return AllocatedBytes(entries_[i]) + sizeof(Entry) + sizeof(Index) + 1 +
         (entries_[i].volatile_pos != kNotVolatile ? sizeof(VolatileEntry) : 0);
}

}  // namespace mova::kv
