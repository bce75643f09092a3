// The access protocol on one handle entry: pin, unpin, retire, move, and waiting for moves.
#include "handles/entry_word.h"

#include <gtest/gtest.h>

#include <thread>

namespace mova::handles {
namespace {

TEST(EntryWord, LayoutRoundTrips) {
  const Word w = MakeWord(7, 123456 * 16);
  EXPECT_EQ(GenOf(w), 7);
  EXPECT_EQ(OffsetOf(w), 123456u * 16);
  EXPECT_EQ(PinsOf(w), 0u);
  EXPECT_FALSE(IsMoving(w));
  EXPECT_EQ(PinsOf(w + 3 * kPinOne), 3u);
  EXPECT_EQ(kMaxArenaBytes, std::uint64_t{1} << 40);
  // Locations are in 8 B units (slots of 24, 40, .. B start at odd multiples of 8), up to the arena's last.
  const Word odd = MakeWord(9, 123456 * 16 + 8);
  EXPECT_EQ(OffsetOf(odd), 123456u * 16 + 8);
  const Word last = MakeWord(kLastLiveGen, kMaxArenaBytes - kLocationAlign) + kMaxPins * kPinOne;
  EXPECT_EQ(OffsetOf(last), kMaxArenaBytes - kLocationAlign);
  EXPECT_EQ(PinsOf(last), kMaxPins);
  EXPECT_FALSE(IsMoving(last));
  EXPECT_EQ(GenOf(last), kLastLiveGen);
}

TEST(EntryWord, PublishMakesALiveOddGeneration) {
  EntryAtomic e{MakeWord(4, 0)};
  const std::uint16_t gen = Publish(e, 4096);
  EXPECT_EQ(gen, 5);
  EXPECT_TRUE(IsLiveGen(gen));
  EXPECT_EQ(OffsetOf(e.load()), 4096u);
}

TEST(EntryWord, PinUnpinAndStaleGeneration) {
  EntryAtomic e{0};
  const std::uint16_t gen = Publish(e, 64);
  Word w = 0;
  ASSERT_EQ(PinCounted(e, gen, &w), EntryResult::kOk);
  EXPECT_EQ(PinsOf(w), 1u);
  EXPECT_EQ(OffsetOf(w), 64u);
  EXPECT_EQ(PinCounted(e, gen + 2, &w), EntryResult::kStale);
  UnpinCounted(e);
  EXPECT_EQ(PinsOf(e.load()), 0u);
}

TEST(EntryWord, RetireRefusesPinnedAndIsOnce) {
  EntryAtomic e{0};
  const std::uint16_t gen = Publish(e, 32);
  Word w = 0;
  ASSERT_EQ(PinCounted(e, gen, &w), EntryResult::kOk);
  EXPECT_EQ(Retire(e, gen, &w), EntryResult::kPinned);
  UnpinCounted(e);
  ASSERT_EQ(Retire(e, gen, &w), EntryResult::kOk);
  EXPECT_EQ(OffsetOf(w), 32u);
  EXPECT_FALSE(IsLiveGen(GenOf(e.load())));
  EXPECT_EQ(Retire(e, gen, &w), EntryResult::kStale);  // double free
  EXPECT_EQ(PinCounted(e, gen, &w), EntryResult::kStale);     // use after free
}

TEST(EntryWord, MoveNeedsNoPinsAndTheExpectedLocation) {
  EntryAtomic e{0};
  const std::uint16_t gen = Publish(e, 160);
  Word pinned = 0, claimed = 0;
  ASSERT_EQ(PinCounted(e, gen, &pinned), EntryResult::kOk);
  EXPECT_FALSE(BeginMove(e, 160, &claimed));  // pinned objects cannot move
  UnpinCounted(e);
  EXPECT_FALSE(BeginMove(e, 176, &claimed));  // not where the mover thinks
  ASSERT_TRUE(BeginMove(e, 160, &claimed));
  EXPECT_FALSE(BeginMove(e, 160, &claimed));  // one mover at a time
  EndMove(e, claimed, 320);
  Word w = 0;
  ASSERT_EQ(PinCounted(e, gen, &w), EntryResult::kOk);
  EXPECT_EQ(OffsetOf(w), 320u);
  EXPECT_EQ(GenOf(w), gen);
}

TEST(EntryWord, PinAndRetireWaitForTheMoveToEnd) {
  EntryAtomic e{0};
  const std::uint16_t gen = Publish(e, 16);
  Word claimed = 0;
  ASSERT_TRUE(BeginMove(e, 16, &claimed));
  std::atomic<bool> pinned{false};
  std::uint64_t seen = 0;
  std::thread pinner([&] {
    Word w = 0;
    EXPECT_EQ(PinCounted(e, gen, &w), EntryResult::kOk);
    seen = OffsetOf(w);
    pinned = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(pinned.load());  // still waiting: it never sees a half-moved object
  EndMove(e, claimed, 48);
  pinner.join();
  EXPECT_TRUE(pinned.load());
  EXPECT_EQ(seen, 48u);
  UnpinCounted(e);

  ASSERT_TRUE(BeginMove(e, 48, &claimed));
  Word before = 0;
  std::thread freer([&] { EXPECT_EQ(Retire(e, gen, &before), EntryResult::kOk); });
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EndMove(e, claimed, 96);
  freer.join();
  EXPECT_EQ(OffsetOf(before), 96u);  // the freer releases the slot the object moved to
}

TEST(EntryWord, PinCountSaturates) {
  EntryAtomic e{0};
  const std::uint16_t gen = Publish(e, 16);
  Word w = 0;
  for (Word i = 0; i < kMaxPins; ++i) { ASSERT_EQ(PinCounted(e, gen, &w), EntryResult::kOk); }
  EXPECT_EQ(PinCounted(e, gen, &w), EntryResult::kTooManyPins);
  EXPECT_EQ(GenOf(e.load()), gen);  // saturation left the generation intact
}

}  // namespace
}  // namespace mova::handles
