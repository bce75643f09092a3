// handles/access_record.h — one thread's access record: the cache line in which it announces what it is
// about to do to handle entries (access_records.h has the protocol and the records of a pool).
//
// Types: Tag, AccessRecord.
// Invariants: a tag is an entry index + 1 (0: none). Only the record's holder stores a non-zero tag; whoever
// holds a pin through a slot (a Pinned handed to another thread) may store 0 into that slot, with release.
// Installed (as mova/internal/handles/access_record.h) because Pool::pin_owned inlines its common case
// (inline_pin.h): standard headers only.
#ifndef MOVA_HANDLES_ACCESS_RECORD_H_
#define MOVA_HANDLES_ACCESS_RECORD_H_

#include <pthread.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace mova::handles {

using Tag = std::uint32_t;
constexpr Tag TagOf(std::uint32_t index) { return index + 1; }

struct alignas(64) AccessRecord {
  static constexpr std::size_t kPinSlots = 7;

  std::atomic<Tag> freeing{0};                     // the entry a free of the holder is retiring
  std::array<std::atomic<Tag>, kPinSlots> pins{};  // entries pinned through this record
  bool listed = false;       // the holder's: set once the record is on its chunk's pinning mask
  std::uint32_t number = 0;  // which record of the AccessRecords this is (fixed at its making)
  std::atomic<pthread_t> holder{};  // the thread holding it (Acquire to Release); zero while free
  std::atomic<std::uint64_t> reading{0};  // the read epoch of the holder's open read section; 0: none
  std::uint32_t read_depth = 0;           // the holder's: read sections open (nested ones count)

  // A pin slot of this record that holds no pin (the holder's call), or nullptr when all do.
  std::atomic<Tag>* FreePinSlot() {
    for (std::atomic<Tag>& s : pins) {
      if (s.load(std::memory_order_relaxed) == 0) return &s;
    }
    return nullptr;
  }
  // True when a pin slot holds `tag`.
  bool Pins(Tag tag) const {
    bool found = false;
    // Unrolled: seven loads and compares without a loop's counter and branch (the free fast path runs it).
#pragma GCC unroll 8
    for (const std::atomic<Tag>& s : pins) found |= s.load(std::memory_order_relaxed) == tag;
    return found;
  }
  // Pins(tag), for the holder: a record that never held a pin (most threads never call pin_owned) answers
  // from `listed` without reading its seven slots — about 45 instructions off every free.
  bool HolderPins(Tag tag) const { return listed && Pins(tag); }
};
static_assert(sizeof(AccessRecord) == 64, "one record, one cache line");

}  // namespace mova::handles

#endif  // MOVA_HANDLES_ACCESS_RECORD_H_
