// handles/inline_read.h — opening a handle against its table and reading the object's place, with loads only:
// what HandleTable::Open does for every entry point, and what ReadGuard::read inlines into its callers.
//
// Types: TableView (the three arrays a handle is opened against), HandleRef, ReadPath (a table's view and the
// base its entries' offsets count from). Functions: OpenHandle, TryRead, TryReadObject.
// Opening (handle_seal.h): the index must lie in the table's reserved range (index 0 never does), and the
// check, opened with the page's key, the size field and the index in the page, must give a live generation
// (odd, below 2^16). The entry then holds the object while its word carries that generation. An entry of a
// page never opened, or given back, reads as 0 (reserved memory not backed reads as zeros): the free word of
// generation 0, which no handle's live generation matches, so no bound on the opened pages is needed here.
// A view's arrays are reserved for the table's life and never move: keys_ and entries_ of HandleTable.
// Installed (as mova/internal/handles/inline_read.h, beside entry_layout.h and handle_seal.h) because
// ReadGuard::read inlines TryReadObject: standard headers, the public mova/handle.h and mova/units.h, and its
// two neighbours, included by relative path so that the installed copies find each other.
#ifndef MOVA_HANDLES_INLINE_READ_H_
#define MOVA_HANDLES_INLINE_READ_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>

#include "entry_layout.h"  // relative: this header is installed (see above)
#include "handle_seal.h"
#include "mova/handle.h"
#include "mova/units.h"

namespace mova::handles {

inline constexpr std::uint32_t kEntriesPerPage = kPageSize / sizeof(Word);

// What a handle claims: its entry, and the generation its check opened to. entry == nullptr when the handle
// cannot be one this table issued (index 0 or past the table's range, or a check that opens to no live
// generation).
struct HandleRef {
  EntryAtomic* entry = nullptr;
  std::uint16_t gen = 0;
};

struct TableView {
  std::uint32_t last_index = 0;  // the highest index the reserved range holds; 0: a view that opens nothing
  const std::atomic<std::uint32_t>* keys = nullptr;  // one key per page
  EntryAtomic* entries = nullptr;
};

// Opens `h` against the table `t` views: loads only (the page's key).
[[gnu::always_inline]] inline HandleRef OpenHandle(const TableView& t, Handle h) {
  const std::uint32_t index = h.index();
  if (index - 1 >= t.last_index) [[unlikely]] return {};  // index 0 (which wraps to the top) or past the range
  const std::uint32_t key = t.keys[index / kEntriesPerPage].load(std::memory_order_relaxed);
  const std::uint32_t gen = Open(h.check(), key, h.size_field(), index % kEntriesPerPage);
  if (!OpensToLiveGen(gen)) [[unlikely]] return {};
  return HandleRef{&t.entries[index], static_cast<std::uint16_t>(gen)};
}

// A read in a read section (access_records.h): true when the entry is live at `gen`, with `*out` its word.
// MOVING is no obstacle: while a move is under way the word still names the old place, which the mover only
// copies from, and which it keeps unchanged after the publish until the section ends. Loads only.
[[gnu::always_inline]] inline bool TryRead(const EntryAtomic& e, std::uint16_t gen, Word* out) {
  const Word w = e.load(std::memory_order_acquire);
  *out = w;
  return GenOf(w) == gen && IsLiveGen(gen);
}

// What ReadGuard::read needs of its pool: the table, and where offset 0 of the entries' locations is. The
// default path opens nothing (every read goes to the library).
struct ReadPath {
  TableView table;
  const std::byte* objects = nullptr;
};

// A read section's common read: the bytes of the class object `h` names (its size field + 1 of them), when
// `h` opens and its entry is live at that generation. False for anything else — a huge object's handle (its
// size is kept with the object), a handle that does not open, a stale one — which the caller's slow path
// sorts out (and where checked mode and the size class check live: a forged handle passes this path only by
// opening to its entry's live generation, a chance of about 2^-20, handle_seal.h).
[[gnu::always_inline]] inline bool TryReadObject(const ReadPath& p, Handle h, std::span<const std::byte>* out) {
  if (h.size_field() == Handle::kHugeSize) [[unlikely]] return false;
  const HandleRef r = OpenHandle(p.table, h);
  if (r.entry == nullptr) [[unlikely]] return false;
  Word w;
  if (!TryRead(*r.entry, r.gen, &w)) [[unlikely]] return false;
  *out = std::span<const std::byte>(p.objects + OffsetOf(w), std::size_t{h.size_field()} + 1);
  return true;
}

}  // namespace mova::handles

#endif  // MOVA_HANDLES_INLINE_READ_H_
