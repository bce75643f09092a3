// handles/entry_word.h — the handle-table entry: one atomic 64-bit word, and its access protocol.
//
// The word's layout is handles/entry_layout.h, and its loads-only read handles/inline_read.h; this file has
// every operation that changes it.
//
// Two ways to pin:
//  - through the thread's access record (access_records.h), the fast path: PinInRecord stores the entry's tag
//    in the thread's own record, fences, and loads the word; it writes no shared line, and unpinning is a
//    store to that record. Movers see these pins through MoveClaims's confirmation.
//  - counted, on the word itself (PinCounted, UnpinCounted): one CAS each, for pins a record cannot hold.
// A free announces its tag in its record too (BeginRetire), so that the location it checks cannot change,
// and retires with one CAS (EndRetire); Retire is the same CAS for callers without a record.
// AnnounceRetire with TryRetireAnnounced, TryPinInRecord and TryPinCounted are the fast paths' first
// attempts: no waiting, nothing changed on failure (the caller's slow path then starts over with the waiting
// versions).
// Invariants: counted pins > 0 implies !MOVING and generation odd; MOVING is only set (by CAS, BeginMove) from
// counted pins == 0; a free entry has no counted pins and !MOVING. Every change of a live word is a CAS or an
// RMW, except EndMove's store of a confirmed claim, which nobody else may change: so a counted pin and a
// retire of one object are totally ordered, and a counted unpin always finds its own pin.
// Waiters block with std::atomic::wait and are woken by the mover whenever a claim ends (EndMove).
#ifndef MOVA_HANDLES_ENTRY_WORD_H_
#define MOVA_HANDLES_ENTRY_WORD_H_

#include <atomic>
#include <cstdint>

#include "handles/access_records.h"
#include "handles/entry_layout.h"
#include "handles/inline_pin.h"

namespace mova::handles {

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

// Takes back a Publish that nobody was told of (no handle of that generation left the caller): the entry is
// free again, at the next (even) generation, and still the caller's to Return.
inline void Unpublish(EntryAtomic& e) {
  const std::uint16_t gen = GenOf(e.load(std::memory_order_relaxed));
  e.store(MakeWord(static_cast<std::uint16_t>(gen + 1), 0), std::memory_order_release);
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

// Raises the counted pins of the live entry of generation `gen`; waits while the object moves. On kOk `*out`
// is the word after the pin (its location is stable until UnpinCounted).
inline EntryResult PinCounted(EntryAtomic& e, std::uint16_t gen, Word* out) {
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

// PinCounted's first attempt, for the fast path: one CAS, no waiting. False, with nothing changed, when the
// entry is not live at `gen` (a generation Open gave), moves, is saturated, or the CAS lost a race: the caller
// starts again with PinCounted, which waits or tells what stood in the way.
[[gnu::always_inline]] inline bool TryPinCounted(EntryAtomic& e, std::uint16_t gen, Word* out) {
  Word w = e.load(std::memory_order_acquire);
  if (GenOf(w) != gen || IsMoving(w) || PinsOf(w) == kMaxPins) return false;
  if (!e.compare_exchange_strong(w, w + kPinOne, std::memory_order_acquire, std::memory_order_relaxed)) return false;
  *out = w + kPinOne;
  return true;
}

// Drops a counted pin; the caller holds one (no free can have retired the entry under it: a retire is a CAS
// from a word without counted pins).
inline void UnpinCounted(EntryAtomic& e) { e.fetch_sub(kPinOne, std::memory_order_release); }

// ---- through the thread's access record ----

// Pins the live entry of generation `gen` through `slot`, a free pin slot of `rec`, the calling thread's
// record; waits while the object moves. On kOk the slot holds `tag` and `*out` is the word: its location
// cannot change until UnpinRecord(slot). Otherwise the slot is left free.
inline EntryResult PinInRecord(EntryAtomic& e, std::uint16_t gen, AccessRecord& rec, std::atomic<Tag>& slot,
                               Tag tag, AccessRecords& records, Word* out) {
  records.NotePinning(rec);
  for (;;) {
    slot.store(tag, std::memory_order_relaxed);
    records.FenceAfterAnnounce();
    Word w = e.load(std::memory_order_acquire);
    if (GenOf(w) == gen && IsLiveGen(gen) && !IsMoving(w)) [[likely]] {
      *out = w;
      return EntryResult::kOk;
    }
    slot.store(0, std::memory_order_relaxed);
    if (!SettleLiveSlow(e, gen, w)) return EntryResult::kStale;
  }
}

// PinInRecord's first attempt, for the fast path: no waiting. False, with the slot left free, when the entry
// is not live at `gen` (a generation Open gave) or moves: the caller starts again with PinInRecord.
[[gnu::always_inline]] inline bool TryPinInRecord(EntryAtomic& e, std::uint16_t gen, AccessRecord& rec,
                                                  std::atomic<Tag>& slot, Tag tag, AccessRecords& records,
                                                  Word* out) {
  records.NotePinning(rec);
  slot.store(tag, std::memory_order_relaxed);
  records.FenceAfterAnnounce();
  return PinAnnounced(e, gen, slot, out);
}

// Drops a pin PinInRecord took (from any thread): the release orders the holder's accesses before a mover's.
inline void UnpinRecord(std::atomic<Tag>& slot) { slot.store(0, std::memory_order_release); }

// Begins freeing the live entry of generation `gen` by the calling thread, whose record is `rec`; waits while
// the object moves. On kOk `*out` is the live word, its location cannot change (a mover gives up a claim on
// it), and the caller ends with EndRetire or WithdrawRetire (nothing changed). kPinned when a counted pin holds
// the object, or a record pin of the calling thread — of any thread with `all_records` (reading other threads'
// records costs a cache miss per record they wrote since, so only checked mode does it); kStale when `gen` is
// not the entry's live generation.
inline EntryResult BeginRetire(EntryAtomic& e, std::uint16_t gen, AccessRecord& rec, Tag tag,
                               const AccessRecords& records, bool all_records, Word* out) {
  for (;;) {
    rec.freeing.store(tag, std::memory_order_relaxed);
    records.FenceAfterAnnounce();
    Word w = e.load(std::memory_order_acquire);
    if (GenOf(w) == gen && IsLiveGen(gen) && !IsMoving(w)) [[likely]] {
      if (PinsOf(w) != 0 || rec.HolderPins(tag) || (all_records && records.PinnedByRecord(tag))) {
        rec.freeing.store(0, std::memory_order_relaxed);
        return EntryResult::kPinned;
      }
      *out = w;
      return EntryResult::kOk;
    }
    rec.freeing.store(0, std::memory_order_relaxed);
    if (!SettleLiveSlow(e, gen, w)) return EntryResult::kStale;
  }
}

// BeginRetire's first attempt, for free's fast path, in two halves, which run only where movers synchronise
// by membarrier (its handles open against a view that is empty otherwise, Pool::Impl::fast), so the fence
// after the announce is a compiler barrier. AnnounceRetire stores `tag` in the record (the pool's thread
// cache reads the announcement too: a free under way); the caller may look at other things, and then
// TryRetireAnnounced answers true as BeginRetire's kOk when the entry is live at `gen` (a generation Open
// gave, so odd), not moving and pinned neither in the word nor in `rec`. Otherwise false, with the tag still
// announced: the caller withdraws it (WithdrawRetire) and starts again with BeginRetire, which waits or tells
// what stood in the way. Gen, MOVING and counted pins are the word's top 28 bits, so the test is one compare.
[[gnu::always_inline]] inline void AnnounceRetire(AccessRecord& rec, Tag tag) {
  rec.freeing.store(tag, std::memory_order_relaxed);
  std::atomic_signal_fence(std::memory_order_seq_cst);  // the mover's membarrier makes it a full fence
}
[[gnu::always_inline]] inline bool TryRetireAnnounced(EntryAtomic& e, std::uint16_t gen, const AccessRecord& rec,
                                                      Tag tag, Word* out) {
  static_assert(kPinShift + kPinBits + 1 == kGenShift, "pins, MOVING and the generation are the top bits");
  const Word w = e.load(std::memory_order_acquire);
  if ((w >> kPinShift) == (Word{gen} << (kGenShift - kPinShift)) && !rec.HolderPins(tag)) [[likely]] {
    *out = w;
    return true;
  }
  return false;
}

// Withdraws the tag a retire announced: one given up (nothing changed), or one EndRetireAnnounced ended.
inline void WithdrawRetire(AccessRecord& rec) { rec.freeing.store(0, std::memory_order_release); }

// The CAS of EndRetire alone: the caller withdraws the tag when it is done (WithdrawRetire), free's fast path
// once its cache holds the slot and the entry.
inline bool EndRetireAnnounced(EntryAtomic& e, Word w) {
  return e.compare_exchange_strong(w, MakeWord(static_cast<std::uint16_t>(GenOf(w) + 1), 0),
                                   std::memory_order_acq_rel, std::memory_order_relaxed);
}

// Ends a retire begun by BeginRetire (or AnnounceRetire and TryRetireAnnounced), whose word was `w`: one CAS
// from `w` to the freed word, then the tag withdrawn. True: the entry is free (an even generation), owned by
// the caller, who hands it back to the table (HandleTable::Return) or to its cache. False, with nothing
// changed: the word changed since BeginRetire — another free of the same handle won (a double free racing
// this one), a counted pin came, or a mover claimed it (and gives the claim up, seeing the tag) — and the
// caller begins again.
// A CAS and not a plain store: measured, a plain store saves 1.5–2 ns of a 15.6 ns allocate + free here, and
// the CAS keeps one winner among concurrent frees of one handle and a total order with counted pins.
inline bool EndRetire(EntryAtomic& e, Word w, AccessRecord& rec) {
  const bool done = EndRetireAnnounced(e, w);
  WithdrawRetire(rec);
  return done;
}

// The counted retire (one CAS), for callers without an access record: frees the live entry of generation `gen`: waits
// while it moves, refuses while it has counted pins. On kOk `*out` is the word before the free (its location is the
// slot to release) and the entry is left free with an even generation; the caller still owns it and hands it back to
// the table (HandleTable::Return).
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
// `offset`, has no counted pins and is not already moving. On success `*out` is the word before the claim.
// The claim is not yet safe to move under: pins and frees through records are seen only by MoveClaims's
// confirmation, which ends or keeps each claim.
inline bool BeginMove(EntryAtomic& e, std::uint64_t offset, Word* out) {
  Word w = e.load(std::memory_order_acquire);
  if (!IsLiveGen(GenOf(w)) || OffsetOf(w) != offset || PinsOf(w) != 0 || IsMoving(w)) return false;
  if (!e.compare_exchange_strong(w, w | kMovingBit, std::memory_order_acq_rel, std::memory_order_acquire)) {
    return false;
  }
  *out = w;
  return true;
}

// Ends a claim (whose BeginMove word is `claimed`): publishes `new_offset` — the old location when the claim
// is given up — clears MOVING and wakes waiters. A plain store: nobody else changes a MOVING word (a retire
// and a counted pin are CASes from a word without MOVING).
inline void EndMove(EntryAtomic& e, Word claimed, std::uint64_t new_offset) {
  e.store(MakeWord(GenOf(claimed), new_offset), std::memory_order_release);
  e.notify_all();
}

}  // namespace mova::handles

#endif  // MOVA_HANDLES_ENTRY_WORD_H_
