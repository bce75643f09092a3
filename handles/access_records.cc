// handles/access_records.cc — see access_records.h.
#include "handles/access_records.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace mova::handles {

AccessRecords::AccessRecords(os::Os& os) : os_(os), asymmetric_(os.RegisterMembarrier().ok()) {}

AccessRecords::~AccessRecords() {
  for (std::atomic<Directory*>& d : directories_) {
    Directory* dir = d.load(std::memory_order_relaxed);
    if (dir == nullptr) continue;
    for (std::atomic<Chunk*>& c : *dir) delete c.load(std::memory_order_relaxed);
    delete dir;
  }
}

AccessRecord* AccessRecords::Acquire() {
  // Counted before the record is used at all (a seq_cst RMW): see Barrier.
  held_.fetch_add(1, std::memory_order_seq_cst);
  MutexLock lock(&mu_);
  if (!released_.empty()) {
    AccessRecord* r = released_.back();
    released_.pop_back();
    r->holder.store(pthread_self(), std::memory_order_relaxed);
    return r;
  }
  const std::size_t i = made_.load(std::memory_order_relaxed);
  if (i == kMaxRecords) {
    std::fprintf(stderr, "mova: more than %zu threads use one pool at once\n", kMaxRecords);
    std::abort();
  }
  const std::size_t c = i / kRecordsPerChunk;
  Directory* dir = directories_[c / kChunksPerDirectory].load(std::memory_order_relaxed);
  if (dir == nullptr) {
    dir = new Directory{};
    directories_[c / kChunksPerDirectory].store(dir, std::memory_order_release);
  }
  Chunk* chunk = (*dir)[c % kChunksPerDirectory].load(std::memory_order_relaxed);
  if (chunk == nullptr) {
    chunk = new Chunk;
    (*dir)[c % kChunksPerDirectory].store(chunk, std::memory_order_release);
  }
  AccessRecord* r = &chunk->records[i % kRecordsPerChunk];
  r->number = static_cast<std::uint32_t>(i);
  r->holder.store(pthread_self(), std::memory_order_relaxed);
  made_.store(i + 1, std::memory_order_release);
  return r;
}

std::uint64_t AccessRecords::heap_bytes() const {
  const std::size_t chunks = (made_.load(std::memory_order_acquire) + kRecordsPerChunk - 1) / kRecordsPerChunk;
  const std::size_t directories = (chunks + kChunksPerDirectory - 1) / kChunksPerDirectory;
  return sizeof(AccessRecords) + chunks * sizeof(Chunk) + directories * sizeof(Directory);
}

void AccessRecords::ListPinning(AccessRecord& r) {
  Chunk* chunk = ChunkAt(r.number / kRecordsPerChunk);
  // Release: a freer that sees a pin stored after this (through the application's synchronisation) sees the bit.
  chunk->pinning.fetch_or(std::uint64_t{1} << (r.number % kRecordsPerChunk), std::memory_order_release);
  r.listed = true;
}

void AccessRecords::Release(AccessRecord* r) {
  r->freeing.store(0, std::memory_order_relaxed);  // a free does not span its thread's exit; this is tidiness
  r->read_depth = 0;                               // nor does a read section
  r->reading.store(0, std::memory_order_release);
  r->holder.store(pthread_t{}, std::memory_order_relaxed);
  {
    MutexLock lock(&mu_);
    released_.push_back(r);
  }
  held_.fetch_sub(1, std::memory_order_release);
}

bool AccessRecords::OnlyCallerHolds() const {
  // The caller's claims (RMWs) come before this fence; a thread acquiring a record after the load below
  // counts itself first (a seq_cst RMW), so its later loads of entry words see the claims.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  const std::size_t held = held_.load(std::memory_order_seq_cst);
  if (held == 0) return true;
  if (held > 1) return false;
  bool mine = false;
  ForEach([&](const AccessRecord& r) { mine |= pthread_equal(r.holder.load(std::memory_order_relaxed), pthread_self()); });
  return mine;
}

absl::Status AccessRecords::Barrier() {
  barriers_.fetch_add(1, std::memory_order_relaxed);
  if (OnlyCallerHolds()) {
    barriers_skipped_.fetch_add(1, std::memory_order_relaxed);
    return absl::OkStatus();
  }
  if (!asymmetric_) {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return absl::OkStatus();
  }
  return os_.Membarrier();
}

void AccessRecords::CollectTags(std::vector<Tag>* out) const {
  const std::size_t first = out->size();
  ForEach([&](const AccessRecord& r) {
    // Acquire: a tag withdrawn (an unpin, a free that ended) orders the holder's accesses before the mover's.
    if (const Tag t = r.freeing.load(std::memory_order_acquire); t != 0) out->push_back(t);
    for (const std::atomic<Tag>& s : r.pins) {
      if (const Tag t = s.load(std::memory_order_acquire); t != 0) out->push_back(t);
    }
  });
  std::sort(out->begin() + static_cast<std::ptrdiff_t>(first), out->end());
  out->erase(std::unique(out->begin() + static_cast<std::ptrdiff_t>(first), out->end()), out->end());
}

}  // namespace mova::handles
