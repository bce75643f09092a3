// handles/move_claims.h — a mover's batch of claimed entries: claimed one by one, confirmed together after one
// barrier.
//
// Types: MoveClaims. A mover Adds the objects it means to move (BeginMove sets MOVING on each), then Confirms
// the batch: one AccessRecords::Barrier and one read of every access record for the whole batch. A claim is
// given up (EndMove at its old place) when a record names its entry: a pin through a record, or a free that
// loaded the word before the claim (its retire CAS then fails on MOVING, and it begins again once the claim
// is given up). After Confirm a kept claim's object is the mover's until Publish or Reset: nobody pins, frees
// or moves it.
// Invariants: the entries of a batch are distinct (MOVING is exclusive); every claim ends exactly once — by
// Confirm (given up), Publish, Retire, GiveUp, or Reset (given up). Not thread-safe: one mover owns a batch.
#ifndef MOVA_HANDLES_MOVE_CLAIMS_H_
#define MOVA_HANDLES_MOVE_CLAIMS_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "handles/access_records.h"
#include "handles/entry_word.h"
#include "handles/handle_table.h"

namespace mova::handles {

class MoveClaims {
 public:
  MoveClaims(HandleTable& table, AccessRecords& records) : table_(table), records_(records) {}
  ~MoveClaims() { Reset(); }
  MoveClaims(const MoveClaims&) = delete;
  MoveClaims& operator=(const MoveClaims&) = delete;

  // Claims entry `index`, expected live at arena offset `offset`: false (nothing added) when it cannot be
  // claimed now — freed, moved elsewhere, counted pins, or already moving.
  bool Add(std::uint32_t index, std::uint64_t offset);
  std::size_t size() const { return claims_.size(); }
  // Room for `n` claims without growing.
  void Reserve(std::size_t n) { claims_.reserve(n); }

  // Confirms every claim added since the last Confirm; returns how many of them were given up. A failed
  // barrier gives up all of them (no record read after it can be trusted).
  std::size_t Confirm();
  // True when claim i (in the order of Add) was confirmed and not yet ended: its object may be moved.
  bool kept(std::size_t i) const { return claims_[i].state == State::kKept; }
  // The word claim i was made on (its location is the object's place before the move), and its entry.
  Word word(std::size_t i) const { return claims_[i].word; }
  std::uint32_t index(std::size_t i) const { return claims_[i].index; }

  // Publishes kept claim i at `new_offset` and wakes whoever waits for it.
  void Publish(std::size_t i, std::uint64_t new_offset);
  // Ends kept claim i by freeing its entry (the object now lives under another entry, entry_migrator.h): the
  // word becomes free at the next generation, and whoever waits wakes to a stale handle.
  void Retire(std::size_t i);
  // Ends kept claim i where it was (the move did not happen).
  void GiveUp(std::size_t i) { GiveUp(claims_[i]); }
  // Gives up every claim not yet ended and empties the batch.
  void Reset();

 private:
  enum class State : std::uint8_t { kClaimed, kKept, kEnded };
  struct Claim {
    Word word;
    std::uint32_t index;
    State state;
  };
  void GiveUp(Claim& c);  // ends it at its old place

  HandleTable& table_;
  AccessRecords& records_;
  std::vector<Claim> claims_;
  std::size_t confirmed_ = 0;  // claims_[0, confirmed_) went through Confirm
  std::vector<Tag> tags_;      // scratch for Confirm
};

}  // namespace mova::handles

#endif  // MOVA_HANDLES_MOVE_CLAIMS_H_
