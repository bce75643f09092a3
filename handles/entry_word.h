// handles/entry_word.h — the handle-table entry: one atomic 64-bit word, and its access protocol.
//
// Layout (bit 0 is least significant):
//   bits  0..35  location: arena byte offset / 16 while live (objects are 16-byte aligned, so 1 TiB of arena);
//                while free, 0 (the table keeps its free entries in a bitmap per page)
//   bits 36..46  pin count (at most kMaxPins)
//   bit  47      MOVING: a mover owns the object; pinners and freers wait until it clears
//   bits 48..63  generation: odd while the object lives, even while the entry is free; an entry lives at most
//                kLastLiveGen, and rests at kRestGen afterwards until its table page is re-keyed (handle_table.h)
// Invariants: pins > 0 implies !MOVING and generation odd; MOVING is only set from pins == 0; a free entry has
// pins == 0 and !MOVING. Every change of a live entry is a CAS or an RMW on the whole word, so a pin, a free
// and a move of one object are totally ordered. Waiters block with std::atomic::wait and are woken by EndMove.
#ifndef MOVA_HANDLES_ENTRY_WORD_H_
#define MOVA_HANDLES_ENTRY_WORD_H_

#include <atomic>
#include <cstdint>

namespace mova::handles {

using Word = std::uint64_t;
using EntryAtomic = std::atomic<Word>;

inline constexpr unsigned kLocationBits = 36;
inline constexpr Word kLocationMask = (Word{1} << kLocationBits) - 1;
inline constexpr unsigned kPinShift = 36;
inline constexpr Word kMaxPins = (Word{1} << 11) - 1;
inline constexpr Word kPinOne = Word{1} << kPinShift;
inline constexpr Word kPinMask = kMaxPins << kPinShift;
inline constexpr Word kMovingBit = Word{1} << 47;
inline constexpr unsigned kGenShift = 48;
inline constexpr std::uint64_t kLocationAlign = 16;
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

// What an attempt on an entry found.
enum class EntryResult {
  kOk,
  kStale,       // generation differs, or the entry is free: a stale, double-freed or forged handle
  kPinned,      // the object is pinned (Retire only)
  kTooManyPins  // the pin count is saturated (Pin only)
};

// Makes a freshly acquired free entry live at `offset`; returns the new (odd) generation. The caller owns
// the entry (the table handed it out), so a plain store publishes it; release orders the caller's earlier
// writes of the block back-map before the entry becomes visible.
inline std::uint16_t Publish(EntryAtomic& e, std::uint64_t offset) {
  std::uint16_t gen = static_cast<std::uint16_t>(GenOf(e.load(std::memory_order_relaxed)) + 1);
  if (!IsLiveGen(gen)) ++gen;  // defensive: a free entry always has an even generation
  e.store(MakeWord(gen, offset), std::memory_order_release);
  return gen;
}

// True when the live generation `gen` is an entry's last life: once retired, the entry must go back to its
// table (HandleTable::Return rests it), never to a cache that would publish it again.
constexpr bool IsLastLife(std::uint16_t gen) { return gen >= kLastLiveGen; }

// Waits while the object of `w` (the entry's last loaded word) moves, reloading `w`; false when `w` is not
// the live entry of generation `gen` (stale, double-freed or forged). The waiting half is out of line.
[[gnu::noinline]] inline bool SettleLiveSlow(EntryAtomic& e, std::uint16_t gen, Word& w) {
  for (;;) {
    if (GenOf(w) != gen || !IsLiveGen(gen)) return false;
    if (!IsMoving(w)) return true;
    e.wait(w, std::memory_order_acquire);
    w = e.load(std::memory_order_acquire);
  }
}
[[gnu::always_inline]] inline bool SettleLive(EntryAtomic& e, std::uint16_t gen, Word& w) {
  if (GenOf(w) == gen && IsLiveGen(gen) && !IsMoving(w)) [[likely]] {
    return true;
  }
  return SettleLiveSlow(e, gen, w);
}

// Raises the pin count of the live entry of generation `gen`; waits while the object moves. On kOk `*out`
// is the word after the pin (its location is stable until Unpin).
inline EntryResult Pin(EntryAtomic& e, std::uint16_t gen, Word* out) {
  Word w = e.load(std::memory_order_acquire);
  for (;;) {
    if (!SettleLive(e, gen, w)) return EntryResult::kStale;
    if (PinsOf(w) == kMaxPins) return EntryResult::kTooManyPins;
    if (e.compare_exchange_weak(w, w + kPinOne, std::memory_order_acquire, std::memory_order_acquire)) {
      *out = w + kPinOne;
      return EntryResult::kOk;
    }
  }
}

// Lowers the pin count; returns the word before. The caller holds a pin.
inline Word Unpin(EntryAtomic& e) { return e.fetch_sub(kPinOne, std::memory_order_release); }

// Frees the live entry of generation `gen`: waits while it moves, refuses while it is pinned. On kOk `*out`
// is the word before the free (its location is the slot to release) and the entry is left free with an even
// generation; the caller still owns it and hands it back to the table (HandleTable::Return).
inline EntryResult Retire(EntryAtomic& e, std::uint16_t gen, Word* out) {
  Word w = e.load(std::memory_order_acquire);
  for (;;) {
    if (!SettleLive(e, gen, w)) return EntryResult::kStale;
    if (PinsOf(w) != 0) return EntryResult::kPinned;
    const Word freed = MakeWord(static_cast<std::uint16_t>(gen + 1), 0);
    if (e.compare_exchange_weak(w, freed, std::memory_order_acq_rel, std::memory_order_acquire)) {
      *out = w;
      return EntryResult::kOk;
    }
  }
}

// A mover claims the object: succeeds only if the entry is live with generation-independent location
// `offset`, unpinned and not already moving. On success `*out` is the word before the claim.
inline bool BeginMove(EntryAtomic& e, std::uint64_t offset, Word* out) {
  Word w = e.load(std::memory_order_acquire);
  if (!IsLiveGen(GenOf(w)) || OffsetOf(w) != offset || PinsOf(w) != 0 || IsMoving(w)) return false;
  if (!e.compare_exchange_strong(w, w | kMovingBit, std::memory_order_acq_rel, std::memory_order_acquire)) {
    return false;
  }
  *out = w;
  return true;
}

// Ends a move begun by BeginMove (whose returned word is `claimed`): publishes `new_offset` (or the old
// location, if the move was abandoned), clears MOVING and wakes waiters. Nobody else changes a MOVING entry.
inline void EndMove(EntryAtomic& e, Word claimed, std::uint64_t new_offset) {
  e.store(MakeWord(GenOf(claimed), new_offset), std::memory_order_release);
  e.notify_all();
}

}  // namespace mova::handles

#endif  // MOVA_HANDLES_ENTRY_WORD_H_
