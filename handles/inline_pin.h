// handles/inline_pin.h — pin_owned's common case, with loads and stores to the calling thread's own record
// only: what Pool::pin_owned inlines into its callers.
//
// Types: PinPath (what a pool's pins need: the table's view, the objects' base, the page map and the size class
// of each size). Functions: PinAnnounced (shared with entry_word.h's TryPinInRecord), TryPinOwnedObject.
// Protocol (access_records.h): the entry's tag goes into a free pin slot of the thread's own record, a compiler
// barrier follows (the mover pays membarrier for both sides), then the entry is loaded: live at the handle's
// generation and not moving, or the slot is cleared and the caller's slow path starts over. Then the size class
// check every pin makes: the object's page belongs to a block of the class the handle's size field names, so a
// forged size field (a check that opens with it, a chance of about 2^-20) never gives a span past its slot.
// A path is filled only for a pool whose movers synchronise by membarrier and that is not in checked mode, and
// a record is used here only once it is listed as pinning (AccessRecords::NotePinning, the slow path's); any
// other pool's path opens nothing (table.last_index 0), so its pins all go to the library.
// Installed (as mova/internal/handles/inline_pin.h, beside the headers it includes by relative path).
#ifndef MOVA_HANDLES_INLINE_PIN_H_
#define MOVA_HANDLES_INLINE_PIN_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "access_record.h"  // relative: this header is installed (see above)
#include "entry_layout.h"
#include "inline_read.h"
#include "mova/handle.h"
#include "mova/units.h"

namespace mova::handles {

struct PinPath {
  TableView table;  // last_index 0: a path that opens nothing
  std::byte* objects = nullptr;
  // The page map (alloc/page_map.h): an owner word per arena page. A page of a block of class c holds a word
  // that, shifted right by owner_shift, is owner_base | c; no other page's word does.
  const std::atomic<std::uint16_t>* page_owners = nullptr;
  std::uint32_t owner_shift = 0;
  std::uint32_t owner_base = 0;
  // The size class of an object of size s is class_by_granule[(s + 7) / 8], for s up to max_class_size.
  const std::uint16_t* class_by_granule = nullptr;
  std::uint32_t max_class_size = 0;
};

// The load and check that follow a pin's announce (the tag stored in `slot`, then the fence): true with `*out`
// the entry's word when it is live at `gen` (an odd generation, as a handle opens to) and not moving; else the
// slot is cleared again.
[[gnu::always_inline]] inline bool PinAnnounced(const EntryAtomic& e, std::uint16_t gen, std::atomic<Tag>& slot,
                                                Word* out) {
  const Word w = e.load(std::memory_order_acquire);
  if (GenOf(w) == gen && !IsMoving(w)) [[likely]] {
    *out = w;
    return true;
  }
  slot.store(0, std::memory_order_relaxed);
  return false;
}

// pin_owned's common case for the class object `h` names, by the holder of `rec`: true with `*slot` the pin
// slot now holding the entry's tag (cleared by whoever unpins) and `*data` the object's first byte. False, with
// nothing changed, for anything else — a huge object's handle, one that does not open or is stale, an object
// moving, a record not yet listed or with no free slot, a size field of another class — which the caller's
// slow path sorts out.
[[gnu::always_inline]] inline bool TryPinOwnedObject(const PinPath& p, Handle h, AccessRecord& rec,
                                                     std::atomic<Tag>** slot, std::byte** data) {
  const std::uint32_t size = std::uint32_t{h.size_field()} + 1;
  if (size > p.max_class_size) [[unlikely]] return false;  // a huge object's (or a forged) size field
  const HandleRef r = OpenHandle(p.table, h);
  if (r.entry == nullptr || !rec.listed) [[unlikely]] return false;
  std::atomic<Tag>* const s = rec.FreePinSlot();
  if (s == nullptr) [[unlikely]] return false;
  s->store(TagOf(h.index()), std::memory_order_relaxed);
  std::atomic_signal_fence(std::memory_order_seq_cst);  // the mover's membarrier makes it a full fence
  Word w;
  if (!PinAnnounced(*r.entry, r.gen, *s, &w)) [[unlikely]] return false;
  const std::uint64_t offset = OffsetOf(w);
  const std::uint32_t owner = p.page_owners[offset >> kPageShift].load(std::memory_order_acquire);
  if ((owner >> p.owner_shift) != (p.owner_base | p.class_by_granule[(size + 7) / 8])) [[unlikely]] {
    s->store(0, std::memory_order_relaxed);
    return false;
  }
  *slot = s;
  *data = p.objects + offset;
  return true;
}

}  // namespace mova::handles

#endif  // MOVA_HANDLES_INLINE_PIN_H_
