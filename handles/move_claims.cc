// handles/move_claims.cc — see move_claims.h.
#include "handles/move_claims.h"

#include <algorithm>

namespace mova::handles {

bool MoveClaims::Add(std::uint32_t index, std::uint64_t offset) {
  Word w;
  if (!BeginMove(table_.entry(index), offset, &w)) return false;
  claims_.push_back(Claim{w, index, State::kClaimed});
  return true;
}

std::size_t MoveClaims::Confirm() {
  std::size_t given_up = 0;
  const bool trusted = records_.Barrier().ok();
  tags_.clear();
  if (trusted) records_.CollectTags(&tags_);
  for (std::size_t i = confirmed_; i < claims_.size(); ++i) {
    Claim& c = claims_[i];
    // After the barrier a pinner or freer that loaded the word before the claim shows in its record; any
    // later pin or free sees MOVING and waits.
    if (trusted && !std::binary_search(tags_.begin(), tags_.end(), TagOf(c.index))) {
      c.state = State::kKept;
      continue;
    }
    GiveUp(c);
    ++given_up;
  }
  confirmed_ = claims_.size();
  return given_up;
}

void MoveClaims::Publish(std::size_t i, std::uint64_t new_offset) {
  Claim& c = claims_[i];
  EndMove(table_.entry(c.index), c.word, new_offset);
  c.state = State::kEnded;
}

void MoveClaims::Retire(std::size_t i) {
  Claim& c = claims_[i];
  EntryAtomic& e = table_.entry(c.index);
  e.store(MakeWord(static_cast<std::uint16_t>(GenOf(c.word) + 1), 0), std::memory_order_release);
  e.notify_all();
  c.state = State::kEnded;
}

void MoveClaims::GiveUp(Claim& c) {
  EndMove(table_.entry(c.index), c.word, OffsetOf(c.word));
  c.state = State::kEnded;
}

void MoveClaims::Reset() {
  for (Claim& c : claims_) {
    if (c.state != State::kEnded) GiveUp(c);
  }
  claims_.clear();
  confirmed_ = 0;
}

}  // namespace mova::handles
