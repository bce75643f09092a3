// Tests of `activedefrag yes`: the cron starts passes on the defragmenter's thread when fragmentation passes
// the thresholds, the server's thread reads and writes while they run (under ThreadSanitizer too), and the data
// set comes out whole; below the thresholds nothing runs.
#include "mova-kv/active_defrag.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "mova-kv/engine.h"

namespace mova::kv {
namespace {

using Args = std::vector<std::string>;

class ActiveDefragTest : public ::testing::Test {
 protected:
  ActiveDefragTest() {
    PoolOptions o;
    o.arena_capacity = Bytes(std::size_t{4} << 30);
    absl::StatusOr<std::unique_ptr<ObjectStore>> s = MakeMovaStore(o);
    EXPECT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
    engine_ = std::make_unique<Engine>(*store_, ServerConfig{});
  }
  std::string Run(Args args) {
    std::string out;
    engine_->Execute(client_, args, &out);
    return out;
  }
  std::string Info(const std::string& field, const std::string& section = "stats") {
    const std::string info = Run({"INFO", section});
    const std::size_t at = info.find(field + ":");
    if (at == std::string::npos) return "";
    return info.substr(at + field.size() + 1, info.find('\r', at) - at - field.size() - 1);
  }
  // Keeps one key in ten of `n` 200-byte values: the rest of their blocks is fragmentation.
  void Fragment(int n) {
    ASSERT_EQ(Run({"DEBUG", "POPULATE", absl::StrCat(n), "key", "200"}), "+OK\r\n");
    for (int i = 0; i < n; ++i) {
      if (i % 10 != 0) {
        ASSERT_EQ(Run({"DEL", absl::StrCat("key:", i)}), ":1\r\n");
      }
    }
  }

  std::unique_ptr<ObjectStore> store_;
  std::unique_ptr<Engine> engine_;
  Client client_;
};

TEST_F(ActiveDefragTest, PassesRunBesideReadsAndWritesAndKeepTheDataSet) {
  const int n = 20000;
  Fragment(n);
  const std::string digest = Run({"DEBUG", "DIGEST"});
  ASSERT_EQ(Run({"CONFIG", "SET", "activedefrag", "yes", "active-defrag-ignore-bytes", "0",
                 "active-defrag-threshold-lower", "5", "latency-monitor-threshold", "1"}),
            "+OK\r\n");
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  int round = 0;
  // Until a pass has reached its last part, handle compaction (the keyspace's cells rewritten from the
  // defragmenter's thread while this one reads and writes them).
  while ((Info("active_defrag_cycles") == "0" || Info("mova_handles_migrated", "memory") == "0") &&
         absl::Now() < deadline) {
    engine_->Cron();
    // The server's thread goes on while a pass may run: reads of kept keys, writes of other keys, and kept
    // keys deleted and set again to the same value (frees racing moves; the entry array's last entry moving
    // into the hole).
    for (int i = 0; i < n; i += 10) {
      std::string value = absl::StrCat("value:", i);
      value.resize(200, '\0');
      const std::string key = absl::StrCat("key:", i);
      ASSERT_EQ(Run({"GET", key}), absl::StrCat("$200\r\n", value, "\r\n"));
      if ((i / 10) % 64 == round % 64) {
        ASSERT_EQ(Run({"DEL", key}), ":1\r\n");
        ASSERT_EQ(Run({"SET", key, value}), "+OK\r\n");
      }
    }
    Run({"SET", absl::StrCat("scratch", round % 8), std::string(300, 's')});
    ++round;
  }
  ASSERT_NE(Info("active_defrag_cycles"), "0");
  ASSERT_NE(Info("mova_handles_migrated", "memory"), "0");
  engine_->Cron();  // collects the finished pass
  for (int k = 0; k < 8; ++k) Run({"DEL", absl::StrCat("scratch", k)});
  EXPECT_EQ(Run({"DEBUG", "DIGEST"}), digest);
  EXPECT_NE(Info("active_defrag_hits"), "0");
  const std::string memory = Run({"INFO", "memory"});
  EXPECT_EQ(memory.find("mova_objects_moved:0\r\n"), std::string::npos) << memory;

}

TEST_F(ActiveDefragTest, NothingRunsBelowTheThresholdsOrWhenOff) {
  Fragment(20000);
  // Off: no pass however fragmented.
  for (int i = 0; i < 5; ++i) engine_->Cron();
  EXPECT_EQ(Info("active_defrag_cycles"), "0");
  // On, but the ignore-bytes threshold (100mb by default) is far above this heap's fragmentation.
  ASSERT_EQ(Run({"CONFIG", "SET", "activedefrag", "yes"}), "+OK\r\n");
  for (int i = 0; i < 5; ++i) engine_->Cron();
  EXPECT_EQ(Info("active_defrag_cycles"), "0");
}

TEST(ActiveDefrag, RunsAPassInCyclesPacedToItsCpuBudgetAndStopsWhenDestroyed) {
  // A store whose passes are two cycles of 20 ms: at 50%, 20 ms of rest follow each.
  class SlowStore final : public ObjectStore {
   public:
    std::string_view name() const override { return "slow"; }
    absl::StatusOr<ObjectRef> Put(std::string_view, std::span<const std::string_view>) override { return 0; }
    absl::Status Read(const ObjectCell&, std::size_t,
                      absl::FunctionRef<void(std::string_view, std::string_view)>) override {
      return absl::OkStatus();
    }
    absl::Status Free(ObjectCell&, std::size_t) override { return absl::OkStatus(); }
    std::size_t AllocationSize(const ObjectCell&, std::size_t size) const override { return size; }
    AllocatorReport Report() override { return {}; }
    void Purge() override {}
    bool CanDefragment() const override { return true; }
    DefragPass Defragment(std::chrono::microseconds) override {
      absl::SleepFor(absl::Milliseconds(20));
      DefragPass step;
      step.complete = ++steps % 2 == 0;  // a pass of two cycles
      return step;
    }
    int steps = 0;
  } store;
  ActiveDefrag defrag(store);
  const absl::Time start = absl::Now();
  defrag.Trigger(50, std::chrono::microseconds(20000));
  EXPECT_TRUE(defrag.running());  // asked for: running until the pass ends
  while (defrag.running()) absl::SleepFor(absl::Milliseconds(1));
  // Two cycles of 20 ms, each followed by 20 ms of rest at 50%.
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(80));
  EXPECT_EQ(defrag.cycles(), 2u);
  const std::vector<DefragCycle> done = defrag.TakeFinished();
  ASSERT_EQ(done.size(), 2u);
  EXPECT_GE(done[0].ms, 19.0);
  EXPECT_FALSE(done[0].pass.complete);
  EXPECT_TRUE(done[1].pass.complete);
  defrag.Trigger(1, std::chrono::microseconds(0));  // 20 ms then ~2 s of rest: the destructor must not wait
}

}  // namespace
}  // namespace mova::kv
