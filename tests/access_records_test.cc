// Access records and move claims (handles/access_records.h, handles/move_claims.h): pins and frees announced in
// a thread's own record, and a mover that confirms a batch of claims against every record after one barrier.
// The contract: a claim on an object pinned or being freed through a record is given up, never moved under its
// user; an object retired under a claim stays retired; a failed barrier gives every claim up; a thread that is
// idle, blocked or gone never makes the mover wait; the fenced mode (no membarrier) keeps every rule.
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <thread>
#include <vector>

#include "handles/access_records.h"
#include "handles/entry_word.h"
#include "handles/handle_table.h"
#include "handles/move_claims.h"
#include "os/fault_injecting_os.h"

namespace mova::handles {
namespace {

struct Fixture {
  explicit Fixture(os::Os& os = os::SystemOs())
      : table(HandleTable::Create(os, 1024, 42).value()), records(os), claims(*table, records) {}

  // A live entry at `offset`; returns its index and sets its generation.
  std::uint32_t Live(std::uint64_t offset, std::uint16_t* gen) {
    std::uint32_t index = 0;
    EXPECT_EQ(table->Acquire(std::span<std::uint32_t>(&index, 1)).value(), 1u);
    *gen = Publish(table->entry(index), offset);
    return index;
  }

  std::unique_ptr<HandleTable> table;
  AccessRecords records;
  MoveClaims claims;
};

TEST(AccessRecords, RecordsAreReusedAndEachIsACacheLineOfItsOwn) {
  AccessRecords records(os::SystemOs());
  AccessRecord* a = records.Acquire();
  AccessRecord* b = records.Acquire();
  EXPECT_NE(a, b);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(a) % 64, 0u);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(b) % 64, 0u);
  records.Release(a);
  EXPECT_EQ(records.Acquire(), a);  // a record given back is handed out again, not a new one made
  // Pin slots run out; the caller then counts the pin in the entry instead.
  for (std::size_t i = 0; i < AccessRecord::kPinSlots; ++i) a->FreePinSlot()->store(TagOf(static_cast<std::uint32_t>(i)));
  EXPECT_EQ(a->FreePinSlot(), nullptr);
  UnpinRecord(a->pins[3]);
  EXPECT_EQ(a->FreePinSlot(), &a->pins[3]);
}

TEST(AccessRecords, FreeRefusesAnObjectPinnedInAnotherThreadsRecord) {
  Fixture f;
  std::uint16_t gen = 0;
  const std::uint32_t i = f.Live(64, &gen);
  AccessRecord* mine = f.records.Acquire();
  std::atomic<Tag>* theirs_slot = nullptr;
  std::thread pinner([&] {
    AccessRecord* theirs = f.records.Acquire();
    theirs_slot = theirs->FreePinSlot();
    Word w = 0;
    ASSERT_EQ(PinInRecord(f.table->entry(i), gen, *theirs, *theirs_slot, TagOf(i), f.records, &w), EntryResult::kOk);
    EXPECT_EQ(OffsetOf(w), 64u);
  });
  pinner.join();  // the pinning thread is gone; its record and its pin stay
  Word w = 0;
  // Checked mode reads every record; otherwise a free reads only its own thread's (the pin_owned contract:
  // no other thread frees the object while it is pinned).
  EXPECT_EQ(BeginRetire(f.table->entry(i), gen, *mine, TagOf(i), f.records, true, &w), EntryResult::kPinned);
  EXPECT_EQ(mine->freeing.load(), 0u);  // a refused free withdraws its tag
  ASSERT_EQ(BeginRetire(f.table->entry(i), gen, *mine, TagOf(i), f.records, false, &w), EntryResult::kOk);
  WithdrawRetire(*mine);
  std::atomic<Tag>& own = *mine->FreePinSlot();
  ASSERT_EQ(PinInRecord(f.table->entry(i), gen, *mine, own, TagOf(i), f.records, &w), EntryResult::kOk);
  EXPECT_EQ(BeginRetire(f.table->entry(i), gen, *mine, TagOf(i), f.records, false, &w), EntryResult::kPinned);
  UnpinRecord(own);
  UnpinRecord(*theirs_slot);          // the pin is dropped from this thread (a Pinned handed over)
  ASSERT_EQ(BeginRetire(f.table->entry(i), gen, *mine, TagOf(i), f.records, true, &w), EntryResult::kOk);
  ASSERT_TRUE(EndRetire(f.table->entry(i), w, *mine));
  EXPECT_FALSE(IsLiveGen(GenOf(f.table->entry(i).load())));
  EXPECT_EQ(BeginRetire(f.table->entry(i), gen, *mine, TagOf(i), f.records, false, &w), EntryResult::kStale);
}

TEST(MoveClaims, AKeptClaimMovesAndWakesAPinnerThatWaited) {
  Fixture f;
  std::uint16_t gen = 0;
  const std::uint32_t i = f.Live(160, &gen);
  ASSERT_TRUE(f.claims.Add(i, 160));
  EXPECT_FALSE(f.claims.Add(i, 160));  // one claim per object
  EXPECT_EQ(f.claims.Confirm(), 0u);
  ASSERT_TRUE(f.claims.kept(0));
  std::atomic<bool> pinned{false};
  std::uint64_t seen = 0;
  std::thread pinner([&] {
    AccessRecord* r = f.records.Acquire();
    Word w = 0;
    EXPECT_EQ(PinInRecord(f.table->entry(i), gen, *r, *r->FreePinSlot(), TagOf(i), f.records, &w), EntryResult::kOk);
    seen = OffsetOf(w);
    pinned = true;
    UnpinRecord(r->pins[0]);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(pinned.load());  // it waits: it never sees the object mid-move
  f.claims.Publish(0, 320);
  pinner.join();
  EXPECT_EQ(seen, 320u);
  f.claims.Reset();
  EXPECT_EQ(OffsetOf(f.table->entry(i).load()), 320u);
  EXPECT_FALSE(IsMoving(f.table->entry(i).load()));
}

TEST(MoveClaims, ClaimsOnObjectsPinnedOrBeingFreedThroughRecordsAreGivenUp) {
  Fixture f;
  std::uint16_t g_pinned = 0, g_freeing = 0, g_free = 0;
  const std::uint32_t pinned = f.Live(16, &g_pinned);
  const std::uint32_t freeing = f.Live(32, &g_freeing);
  const std::uint32_t movable = f.Live(48, &g_free);
  AccessRecord* r = f.records.Acquire();
  Word w = 0;
  ASSERT_EQ(PinInRecord(f.table->entry(pinned), g_pinned, *r, *r->FreePinSlot(), TagOf(pinned), f.records, &w),
            EntryResult::kOk);
  // The freer has checked the object and not yet retired it: the claim comes in between.
  ASSERT_EQ(BeginRetire(f.table->entry(freeing), g_freeing, *r, TagOf(freeing), f.records, false, &w), EntryResult::kOk);
  ASSERT_TRUE(f.claims.Add(pinned, 16));  // a record pin is invisible to BeginMove ...
  ASSERT_TRUE(f.claims.Add(freeing, 32));
  ASSERT_TRUE(f.claims.Add(movable, 48));
  EXPECT_EQ(f.claims.Confirm(), 2u);  // ... and seen by the confirmation
  EXPECT_FALSE(f.claims.kept(0));
  EXPECT_FALSE(f.claims.kept(1));
  EXPECT_TRUE(f.claims.kept(2));
  for (std::uint32_t i : {pinned, freeing}) {  // given up: where they were, not moving
    EXPECT_FALSE(IsMoving(f.table->entry(i).load()));
  }
  EXPECT_EQ(OffsetOf(f.table->entry(pinned).load()), 16u);
  // The freer goes on: its CAS meets the word it checked, the claim having been given up.
  ASSERT_TRUE(EndRetire(f.table->entry(freeing), w, *r));
  EXPECT_FALSE(IsLiveGen(GenOf(f.table->entry(freeing).load())));
  f.claims.Publish(2, 480);
  f.claims.Reset();
  EXPECT_EQ(OffsetOf(f.table->entry(movable).load()), 480u);
  UnpinRecord(r->pins[0]);
}

TEST(MoveClaims, AFreeRacingAClaimHasOneOutcome) {
  // The freer checked the object before the claim and retires it while the claim is unconfirmed: its CAS fails
  // on MOVING, it waits for the confirmation (which gives the claim up, seeing its tag) and then frees.
  Fixture f;
  std::uint16_t gen = 0;
  const std::uint32_t i = f.Live(64, &gen);
  AccessRecord* r = f.records.Acquire();
  Word w = 0;
  ASSERT_EQ(BeginRetire(f.table->entry(i), gen, *r, TagOf(i), f.records, false, &w), EntryResult::kOk);
  ASSERT_TRUE(f.claims.Add(i, 64));
  EXPECT_FALSE(EndRetire(f.table->entry(i), w, *r));  // the word changed: begin again
  std::atomic<bool> freed{false};
  std::thread freer([&] {
    Word again = 0;
    EXPECT_EQ(BeginRetire(f.table->entry(i), gen, *r, TagOf(i), f.records, false, &again), EntryResult::kOk);
    EXPECT_EQ(OffsetOf(again), 64u);  // not moved
    EXPECT_TRUE(EndRetire(f.table->entry(i), again, *r));
    freed = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_FALSE(freed.load());  // waiting for the claim to end
  // No tag is up while the freer waits, so the confirmation keeps the claim; give it up as a mover would that
  // found its target gone.
  f.claims.Confirm();
  f.claims.Reset();
  freer.join();
  EXPECT_TRUE(freed.load());
  EXPECT_FALSE(IsLiveGen(GenOf(f.table->entry(i).load())));
}

TEST(MoveClaims, AFailedBarrierGivesEveryClaimUp) {
  os::FaultInjectingOs fos;
  Fixture f(fos);
  ASSERT_TRUE(f.records.asymmetric());
  std::uint16_t gen = 0;
  const std::uint32_t a = f.Live(16, &gen), b = f.Live(32, &gen);
  // Two records held: a barrier is a membarrier (with one, the caller's, it needs none).
  f.records.Acquire();
  f.records.Acquire();
  ASSERT_TRUE(f.claims.Add(a, 16));
  ASSERT_TRUE(f.claims.Add(b, 32));
  fos.FailAfter(os::OsOp::kMembarrier, 0, EPERM);
  EXPECT_EQ(f.claims.Confirm(), 2u);
  EXPECT_FALSE(f.claims.kept(0));
  EXPECT_FALSE(f.claims.kept(1));
  EXPECT_EQ(fos.failures(os::OsOp::kMembarrier), 1);
  for (std::uint32_t i : {a, b}) EXPECT_FALSE(IsMoving(f.table->entry(i).load()));
  fos.Clear(os::OsOp::kMembarrier);
  ASSERT_TRUE(f.claims.Add(a, 16));  // claims made after are confirmed as usual
  EXPECT_EQ(f.claims.Confirm(), 0u);
  EXPECT_TRUE(f.claims.kept(2));
}

// A barrier makes the membarrier call only when a thread other than the caller holds a record: one that
// takes a record later counts itself first, and then sees the caller's claims.
TEST(AccessRecords, ABarrierCallsMembarrierOnlyWhenAnotherThreadHoldsARecord) {
  os::FaultInjectingOs fos;
  AccessRecords records(fos);
  ASSERT_TRUE(records.asymmetric());
  ASSERT_TRUE(records.Barrier().ok());  // nobody holds one
  AccessRecord* mine = records.Acquire();
  ASSERT_TRUE(records.Barrier().ok());  // only the caller
  EXPECT_EQ(fos.calls(os::OsOp::kMembarrier), 0);
  EXPECT_EQ(records.barriers_skipped(), 2u);
  std::atomic<int> step{0};
  std::thread other([&] {
    AccessRecord* r = records.Acquire();
    step = 1;
    while (step != 2) std::this_thread::yield();
    records.Release(r);
    step = 3;
  });
  while (step != 1) std::this_thread::yield();
  ASSERT_TRUE(records.Barrier().ok());  // another thread holds one
  EXPECT_EQ(fos.calls(os::OsOp::kMembarrier), 1);
  step = 2;
  while (step != 3) std::this_thread::yield();
  other.join();
  ASSERT_TRUE(records.Barrier().ok());  // released: the caller's only, again
  EXPECT_EQ(fos.calls(os::OsOp::kMembarrier), 1);
  records.Release(mine);
  // Held by another thread alone, not by the caller: a barrier is needed.
  std::thread holder([&] {
    AccessRecord* r = records.Acquire();
    step = 4;
    while (step != 5) std::this_thread::yield();
    records.Release(r);
  });
  while (step != 4) std::this_thread::yield();
  ASSERT_TRUE(records.Barrier().ok());
  EXPECT_EQ(fos.calls(os::OsOp::kMembarrier), 2);
  step = 5;
  holder.join();
  EXPECT_EQ(records.barriers(), 5u);
}

TEST(MoveClaims, WithoutMembarrierBothSidesFenceAndTheRulesHold) {
  os::FaultInjectingOs fos;
  fos.FailAfter(os::OsOp::kRegisterMembarrier, 0, ENOSYS);
  Fixture f(fos);
  EXPECT_FALSE(f.records.asymmetric());
  std::uint16_t gen = 0;
  const std::uint32_t i = f.Live(16, &gen);
  AccessRecord* r = f.records.Acquire();
  Word w = 0;
  ASSERT_EQ(PinInRecord(f.table->entry(i), gen, *r, *r->FreePinSlot(), TagOf(i), f.records, &w), EntryResult::kOk);
  ASSERT_TRUE(f.claims.Add(i, 16));
  EXPECT_EQ(f.claims.Confirm(), 1u);  // pinned: given up
  UnpinRecord(r->pins[0]);
  ASSERT_TRUE(f.claims.Add(i, 16));
  EXPECT_EQ(f.claims.Confirm(), 0u);
  EXPECT_EQ(fos.calls(os::OsOp::kMembarrier), 0);  // fences, not the syscall
  EXPECT_EQ(f.records.barriers(), 2u);
}

// Threads pin objects through their records and check the bytes while a mover claims, confirms and moves
// every object over and over: a pinned object is never moved under its pinner, and no pinner ever reads a
// half-moved object. A third thread stays idle holding a record (and a pin) the whole time: the mover never
// waits for it. Under ThreadSanitizer too.
TEST(MoveClaims, PinnersNeverSeeAnObjectMoveUnderThem) {
  for (bool fenced : {false, true}) {
    os::FaultInjectingOs fos;
    if (fenced) fos.FailAfter(os::OsOp::kRegisterMembarrier, 0, ENOSYS);
    Fixture f(fos);
    constexpr std::uint32_t kObjects = 64;
    constexpr std::uint64_t kSlot = 64;
    // Two places per object: the mover copies between them.
    std::vector<std::atomic<std::uint64_t>> memory(kObjects * 2 * kSlot / 8);
    auto word_at = [&](std::uint64_t offset) -> std::atomic<std::uint64_t>& { return memory[offset / 8]; };
    std::vector<std::uint32_t> index(kObjects);
    std::vector<std::uint16_t> gen(kObjects);
    for (std::uint32_t k = 0; k < kObjects; ++k) {
      const std::uint64_t off = k * kSlot;
      index[k] = f.Live(off, &gen[k]);
      for (std::uint64_t b = 0; b < kSlot; b += 8) word_at(off + b).store(k);
    }
    std::atomic<bool> stop{false};
    std::atomic<int> bad{0};
    std::atomic<std::uint64_t> pins{0};
    std::vector<std::thread> pinners;
    for (int t = 0; t < 2; ++t) {
      pinners.emplace_back([&, t] {
        AccessRecord* r = f.records.Acquire();
        std::uint32_t k = static_cast<std::uint32_t>(t);
        while (!stop.load(std::memory_order_relaxed)) {
          k = (k * 7 + 3) % kObjects;
          Word w = 0;
          std::atomic<Tag>& slot = *r->FreePinSlot();
          if (PinInRecord(f.table->entry(index[k]), gen[k], *r, slot, TagOf(index[k]), f.records, &w) !=
              EntryResult::kOk) {
            bad.fetch_add(1);
            continue;
          }
          const std::uint64_t off = OffsetOf(w);
          for (int round = 0; round < 3; ++round) {  // the bytes stay put and whole while pinned
            for (std::uint64_t b = 0; b < kSlot; b += 8) {
              if (word_at(off + b).load(std::memory_order_relaxed) != k) bad.fetch_add(1);
            }
            if (OffsetOf(f.table->entry(index[k]).load()) != off) bad.fetch_add(1);
          }
          UnpinRecord(slot);
          pins.fetch_add(1, std::memory_order_relaxed);
        }
      });
    }
    std::atomic<bool> idle_ready{false};
    std::thread idle([&] {  // pins object 0's neighbour once, then sleeps until the end
      AccessRecord* r = f.records.Acquire();
      Word w = 0;
      EXPECT_EQ(PinInRecord(f.table->entry(index[1]), gen[1], *r, *r->FreePinSlot(), TagOf(index[1]), f.records, &w),
                EntryResult::kOk);
      idle_ready = true;
      while (!stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      UnpinRecord(r->pins[0]);
    });
    while (!idle_ready.load()) std::this_thread::yield();
    const std::uint64_t pinned_one = OffsetOf(f.table->entry(index[1]).load());
#ifdef MOVA_TSAN
    constexpr int kRounds = 300;
#else
    constexpr int kRounds = 3000;
#endif
    std::uint64_t moved = 0;
    for (int round = 0; round < kRounds; ++round) {
      std::vector<std::uint32_t> batch;
      for (std::uint32_t k = 0; k < kObjects; ++k) {
        if (f.claims.Add(index[k], OffsetOf(f.table->entry(index[k]).load()))) batch.push_back(k);
      }
      f.claims.Confirm();
      for (std::size_t c = 0; c < batch.size(); ++c) {
        if (!f.claims.kept(c)) continue;
        const std::uint64_t from = OffsetOf(f.claims.word(c));
        const std::uint64_t to = from < kObjects * kSlot ? from + kObjects * kSlot : from - kObjects * kSlot;
        for (std::uint64_t b = 0; b < kSlot; b += 8) word_at(to + b).store(word_at(from + b).load());
        for (std::uint64_t b = 0; b < kSlot; b += 8) word_at(from + b).store(~std::uint64_t{0});  // the old place dies
        f.claims.Publish(c, to);
        ++moved;
      }
      f.claims.Reset();
    }
    stop = true;
    for (auto& t : pinners) t.join();
    idle.join();
    EXPECT_EQ(bad.load(), 0) << (fenced ? "fenced" : "membarrier");
    EXPECT_GT(moved, 0u);
    EXPECT_GT(pins.load(), 0u);
    EXPECT_EQ(pinned_one, std::uint64_t{1} * kSlot);  // the idle thread's pinned object never moved ...
    EXPECT_EQ(OffsetOf(f.table->entry(index[1]).load()), pinned_one);
  }
}

}  // namespace
}  // namespace mova::handles
