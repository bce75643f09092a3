// handles/entry_layout.h — the handle-table entry word's layout: one atomic 64-bit word per entry.
//
// Layout (bit 0 is least significant):
//   bits  0..36  location: arena byte offset / 8 while live (objects are 8-byte aligned, so 1 TiB of arena);
//                while free, 0 (the table keeps its free entries in a bitmap per page)
//   bits 37..46  counted pins (at most kMaxPins): pins that live in the word, for pins a thread's record
//                cannot hold (pin_detached, more pins at once than a record has slots)
//   bit  47      MOVING: a mover owns the object; pinners and freers wait until it clears
//   bits 48..63  generation: odd while the object lives, even while the entry is free; an entry lives at most
//                kLastLiveGen, and rests at kRestGen afterwards until its table page is re-keyed (handle_table.h)
//
// Types: Word, EntryAtomic; the constants and decoders of the layout above. Changes of the word are
// handles/entry_word.h's (its protocol and invariants); reading it, handles/inline_read.h's.
// Installed (as mova/internal/handles/entry_layout.h) because ReadGuard::read inlines handles/inline_read.h,
// so it is self-contained: standard headers only. Code outside handles/ calls these decoders and never
// takes the word apart itself.
#ifndef MOVA_HANDLES_ENTRY_LAYOUT_H_
#define MOVA_HANDLES_ENTRY_LAYOUT_H_

#include <atomic>
#include <cstdint>

namespace mova::handles {

using Word = std::uint64_t;
using EntryAtomic = std::atomic<Word>;

inline constexpr unsigned kLocationBits = 37;
inline constexpr Word kLocationMask = (Word{1} << kLocationBits) - 1;
inline constexpr unsigned kPinShift = 37;
inline constexpr unsigned kPinBits = 10;
inline constexpr Word kMaxPins = (Word{1} << kPinBits) - 1;
inline constexpr Word kPinOne = Word{1} << kPinShift;
inline constexpr Word kPinMask = kMaxPins << kPinShift;
inline constexpr Word kMovingBit = Word{1} << 47;
inline constexpr unsigned kGenShift = 48;
inline constexpr std::uint64_t kLocationAlign = 8;
inline constexpr std::uint16_t kLastLiveGen = 0xFFFD;  // the last life an entry is given
inline constexpr std::uint16_t kRestGen = 0xFFFE;      // a free entry at this generation is never handed out
inline constexpr std::uint64_t kMaxArenaBytes = (Word{1} << kLocationBits) * kLocationAlign;

constexpr std::uint64_t LocationOf(Word w) { return w & kLocationMask; }
constexpr std::uint64_t OffsetOf(Word w) { return (w & kLocationMask) * kLocationAlign; }
constexpr Word PinsOf(Word w) { return (w & kPinMask) >> kPinShift; }
constexpr bool IsMoving(Word w) { return (w & kMovingBit) != 0; }
constexpr std::uint16_t GenOf(Word w) { return static_cast<std::uint16_t>(w >> kGenShift); }
constexpr bool IsLiveGen(std::uint16_t gen) { return (gen & 1) != 0; }
constexpr Word MakeWord(std::uint16_t gen, std::uint64_t offset) {
  return (Word{gen} << kGenShift) | ((offset / kLocationAlign) & kLocationMask);
}

}  // namespace mova::handles

#endif  // MOVA_HANDLES_ENTRY_LAYOUT_H_
