// handles/handle_table.cc — see handle_table.h.
#include "handles/handle_table.h"

#include <algorithm>
#include <bit>

#include "absl/strings/str_format.h"

namespace mova::handles {

absl::StatusOr<std::unique_ptr<HandleTable>> HandleTable::Create(os::Os& os, std::uint32_t max_entries) {
  if (max_entries == 0) return absl::InvalidArgumentError("handle table needs at least one entry");
  const std::uint64_t pages = (std::uint64_t{max_entries} + kEntriesPerPage - 1) / kEntriesPerPage;
  const std::uint64_t capacity64 = std::min<std::uint64_t>(pages * kEntriesPerPage, 0xFFFFFFFFull);
  absl::StatusOr<std::byte*> mem = os.Reserve(ToBytes(Pages(pages)), Bytes(kPageSize));
  if (!mem.ok()) return mem.status();
  return std::unique_ptr<HandleTable>(new HandleTable(os, reinterpret_cast<EntryAtomic*>(*mem),
                                                      static_cast<std::uint32_t>(capacity64),
                                                      static_cast<std::uint32_t>(pages)));
}

HandleTable::HandleTable(os::Os& os, EntryAtomic* entries, std::uint32_t capacity, std::uint32_t max_pages)
    : os_(os), entries_(entries), capacity_(capacity), max_pages_(max_pages) {
  buckets_.fill(kNoPage);
}

void HandleTable::BucketInsert(std::uint32_t p) {
  PageState& st = pages_[p];
  const std::uint16_t b = st.used;
  st.prev = kNoPage;
  st.next = buckets_[b];
  if (st.next != kNoPage) pages_[st.next].prev = p;
  buckets_[b] = p;
  nonempty_[b / 64] |= std::uint64_t{1} << (b % 64);
}

void HandleTable::BucketRemove(std::uint32_t p) {
  PageState& st = pages_[p];
  const std::uint16_t b = st.used;
  if (st.prev != kNoPage) {
    pages_[st.prev].next = st.next;
  } else {
    buckets_[b] = st.next;
  }
  if (st.next != kNoPage) pages_[st.next].prev = st.prev;
  if (buckets_[b] == kNoPage) nonempty_[b / 64] &= ~(std::uint64_t{1} << (b % 64));
  st.prev = st.next = kNoPage;
}

std::uint32_t HandleTable::DensestAvailable() const {
  for (std::size_t w = kBucketWords; w-- > 0;) {
    if (nonempty_[w] != 0) return buckets_[w * 64 + 63 - std::countl_zero(nonempty_[w])];
  }
  return kNoPage;
}

HandleTable::~HandleTable() {
  (void)os_.Unreserve(reinterpret_cast<std::byte*>(entries_), ToBytes(Pages(max_pages_)));
}

absl::Status HandleTable::OpenPage(std::uint32_t p) {
  std::byte* addr = reinterpret_cast<std::byte*>(entries_ + std::size_t{p} * kEntriesPerPage);
  if (absl::Status s = os_.Populate(addr, Bytes(kPageSize)); !s.ok()) return s;
  PageState& st = pages_[p];
  const std::uint32_t first = p * kEntriesPerPage;
  for (std::uint32_t i = 0; i < kEntriesPerPage; ++i) {
    std::uint16_t next = i + 1 < kEntriesPerPage ? static_cast<std::uint16_t>(i + 1) : kNoNext;
    // Location bits hold the next free entry; offsets are stored / 16, so scale the link up.
    entries_[first + i].store(MakeWord(st.restart_gen, std::uint64_t{next} * kLocationAlign),
                              std::memory_order_relaxed);
  }
  st.free_head = 0;
  st.used = 0;
  st.resident = true;
  ++resident_;
  return absl::OkStatus();
}

void HandleTable::DiscardPage(std::uint32_t p) {
  PageState& st = pages_[p];
  const std::uint32_t first = p * kEntriesPerPage;
  std::uint16_t max_gen = 0;
  for (std::uint32_t i = 0; i < kEntriesPerPage; ++i) {
    max_gen = std::max(max_gen, GenOf(entries_[first + i].load(std::memory_order_relaxed)));
  }
  std::byte* addr = reinterpret_cast<std::byte*>(entries_ + first);
  if (!os_.Discard(addr, Bytes(kPageSize)).ok()) return;  // keep the page: it stays usable and counted
  st.restart_gen = static_cast<std::uint16_t>((max_gen + 2) & ~1u);
  st.resident = false;
  --resident_;
  ++discarded_;
}

absl::StatusOr<std::size_t> HandleTable::Acquire(std::span<std::uint32_t> out) {
  MutexLock lock(&mu_);
  std::size_t n = 0;
  while (n < out.size()) {
    std::uint32_t p = DensestAvailable();
    if (p != kNoPage) {
      BucketRemove(p);
    } else {
      const std::uint32_t opened = opened_pages_.load(std::memory_order_relaxed);
      if (opened == max_pages_) break;
      pages_.emplace_back();
      if (absl::Status s = OpenPage(opened); !s.ok()) {
        pages_.pop_back();
        if (n > 0) break;
        return s;
      }
      opened_pages_.store(opened + 1, std::memory_order_release);
      p = opened;
    }
    PageState& st = pages_[p];
    if (!st.resident) {
      if (absl::Status s = OpenPage(p); !s.ok()) {
        BucketInsert(p);
        if (n > 0) break;
        return s;
      }
    }
    const std::uint32_t first = p * kEntriesPerPage;
    while (n < out.size() && st.free_head != kNoNext) {
      const std::uint32_t idx = first + st.free_head;
      if (idx >= capacity_) {  // the last page may be partly beyond capacity (capacity < 2^32)
        st.free_head = kNoNext;
        break;
      }
      st.free_head = static_cast<std::uint16_t>(OffsetOf(entries_[idx].load(std::memory_order_relaxed)) /
                                                kLocationAlign);
      ++st.used;
      ++in_use_;
      out[n++] = idx;
    }
    if (st.free_head != kNoNext) BucketInsert(p);
  }
  if (n == 0) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("handle table full: all %u entries are in use", capacity_));
  }
  return n;
}

void HandleTable::Return(std::span<const std::uint32_t> indices) {
  // Group by page so each page moves between density buckets once per call, not once per entry.
  std::uint32_t local[64];
  std::vector<std::uint32_t> heap;
  std::uint32_t* sorted = local;
  if (indices.size() > 64) {
    heap.resize(indices.size());
    sorted = heap.data();
  }
  std::copy(indices.begin(), indices.end(), sorted);
  std::sort(sorted, sorted + indices.size());
  MutexLock lock(&mu_);
  for (std::size_t i = 0; i < indices.size();) {
    const std::uint32_t p = sorted[i] / kEntriesPerPage;
    PageState& st = pages_[p];
    if (st.free_head != kNoNext) BucketRemove(p);  // bucketed exactly when it has a free entry
    for (; i < indices.size() && sorted[i] / kEntriesPerPage == p; ++i) {
      EntryAtomic& e = entries_[sorted[i]];
      const std::uint16_t gen = GenOf(e.load(std::memory_order_relaxed));
      e.store(MakeWord(gen, std::uint64_t{st.free_head} * kLocationAlign), std::memory_order_relaxed);
      st.free_head = static_cast<std::uint16_t>(sorted[i] - p * kEntriesPerPage);
      --st.used;
      --in_use_;
    }
    if (st.used == 0) DiscardPage(p);
    BucketInsert(p);
  }
}

HandleTable::Stats HandleTable::stats() const {
  MutexLock lock(&mu_);
  Stats s;
  s.entries_in_use = in_use_;
  s.pages_opened = opened_pages_.load(std::memory_order_relaxed);
  s.pages_resident = resident_;
  s.pages_discarded = discarded_;
  return s;
}

}  // namespace mova::handles
