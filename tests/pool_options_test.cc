// tests/pool_options_test.cc — PoolOptions as text (ParsePoolOptions, the MOVA_OPTIONS syntax), their range
// checks, show_stats, and the reserved ranges left out of core dumps (MADV_DONTDUMP, read back from smaps).
// The environment variables themselves are tested by pool_environment_test, run by ctest with them set.
#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <string>

#include "bench/rss.h"
#include "mova/pool.h"
#include "os/fault_injecting_os.h"
#include "tests/capture_stderr.h"

namespace mova {
namespace {

using std::chrono::milliseconds;

TEST(PoolOptionsText, EveryOptionParses) {
  PoolOptions o;
  ASSERT_TRUE(ParsePoolOptions("arena_capacity=2g, memory_limit=512M,decay_ms=250,max_handles=600,checked=true,"
                               "move_by_userfaultfd=0,move_by_mremap=false,collapse_dense_regions=1,"
                               "background_interval_ms=100,background_threshold=0.5,background_cycle_us=500,"
                               "background_cpu_percent=12.5,include_in_core_dumps=true,show_stats=json",
                               o)
                  .ok());
  EXPECT_EQ(o.arena_capacity.value(), std::size_t{2} << 30);
  EXPECT_EQ(o.memory_limit.value(), std::size_t{512} << 20);
  EXPECT_EQ(o.decay, milliseconds(250));
  EXPECT_EQ(o.max_handles, 600u);
  EXPECT_TRUE(o.checked);
  EXPECT_FALSE(o.move_by_userfaultfd);
  EXPECT_FALSE(o.move_by_mremap);
  EXPECT_TRUE(o.collapse_dense_regions);
  EXPECT_EQ(o.background_interval, milliseconds(100));
  EXPECT_EQ(o.background_threshold, 0.5);
  EXPECT_EQ(o.background_cycle, std::chrono::microseconds(500));
  EXPECT_EQ(o.background_cpu_percent, 12.5);
  EXPECT_TRUE(o.include_in_core_dumps);
  EXPECT_EQ(o.show_stats, StatsOutput::kJson);
}

TEST(PoolOptionsText, SizesTakeBinarySuffixesAndEmptyItemsAreSkipped) {
  PoolOptions o;
  ASSERT_TRUE(ParsePoolOptions(" memory_limit = 4096 ,, ", o).ok());
  EXPECT_EQ(o.memory_limit.value(), 4096u);
  ASSERT_TRUE(ParsePoolOptions("memory_limit=64k", o).ok());
  EXPECT_EQ(o.memory_limit.value(), 65536u);
  ASSERT_TRUE(ParsePoolOptions("arena_capacity=1T", o).ok());
  EXPECT_EQ(o.arena_capacity.value(), std::size_t{1} << 40);
  ASSERT_TRUE(ParsePoolOptions("", o).ok());
  ASSERT_TRUE(ParsePoolOptions("show_stats=1", o).ok());
  EXPECT_EQ(o.show_stats, StatsOutput::kText);
  ASSERT_TRUE(ParsePoolOptions("show_stats=none", o).ok());
  EXPECT_EQ(o.show_stats, StatsOutput::kNone);
}

// Each bad text is refused with a message naming what is wrong, and the options are left as they were.
TEST(PoolOptionsText, BadTextIsRefusedWholeAndNamed) {
  struct Case {
    const char* text;
    const char* says;
  };
  const Case cases[] = {
      {"decay=5", "unknown option 'decay'"},
      {"decay_ms", "expected name=value"},
      {"decay_ms=abc", "decay_ms=abc"},
      {"decay_ms=-1", "non-negative whole number"},
      {"decay_ms=1.5", "decay_ms=1.5"},
      {"decay_ms=99999999999", "too large"},
      {"memory_limit=12q", "byte count"},
      {"memory_limit=k", "byte count"},
      {"memory_limit=99999999999t", "too large"},
      {"max_handles=4294967296", "too large"},
      {"max_handles=0", "max_handles must be in"},
      {"max_handles=268435456", "max_handles must be in"},
      {"arena_capacity=2t", "arena_capacity must be in"},
      {"checked=yes", "expected true, false, 1 or 0"},
      {"background_threshold=1.5", "background_threshold must be in [0, 1]"},
      {"background_threshold=half", "expected a number"},
      {"background_cycle_us=0", "background_cycle must be positive"},
      {"background_cycle_us=-5", "non-negative whole number"},
      {"background_cpu_percent=0", "background_cpu_percent must be in (0, 100]"},
      {"background_cpu_percent=101", "background_cpu_percent must be in (0, 100]"},
      {"show_stats=2", "expected none, text, json"},
      {"checked=true,decay_ms=x", "decay_ms=x"},  // all or nothing: checked stays false
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    PoolOptions o;
    const PoolOptions before = o;
    const absl::Status s = ParsePoolOptions(c.text, o);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(std::string(s.message()).find(c.says), std::string::npos) << s.message();
    EXPECT_EQ(o.decay, before.decay);
    EXPECT_EQ(o.checked, before.checked);
    EXPECT_EQ(o.max_handles, before.max_handles);
    EXPECT_EQ(o.memory_limit.value(), before.memory_limit.value());
  }
}

TEST(PoolOptionsText, ValidateIsWhatCreateChecks) {
  PoolOptions o;
  EXPECT_TRUE(ValidatePoolOptions(o).ok());
  o.decay = milliseconds(-1);
  EXPECT_EQ(ValidatePoolOptions(o).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Pool::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = PoolOptions();
  o.show_stats = static_cast<StatsOutput>(7);
  EXPECT_EQ(Pool::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(PoolOptionsText, ShowStatsPrintsAtDestruction) {
  for (StatsOutput out : {StatsOutput::kNone, StatsOutput::kText, StatsOutput::kJson}) {
    const std::string printed = CaptureStderr([&] {
      PoolOptions o;
      o.show_stats = out;
      std::unique_ptr<Pool> pool = Pool::Create(o).value();
      ASSERT_TRUE(pool->allocate(100).ok());
    });
    if (out == StatsOutput::kNone) {
      EXPECT_EQ(printed, "");
    } else {
      EXPECT_NE(printed.find("mova: stats of pool"), std::string::npos) << printed;
      // Text names the live objects; JSON is one object with the same count.
      EXPECT_NE(printed.find(out == StatsOutput::kJson ? "\"live_objects\":1" : "in 1 objects"), std::string::npos)
          << printed;
    }
  }
}

std::unique_ptr<Pool> SmallPool(bool in_dumps, os::Os* the_os = nullptr) {
  PoolOptions o;
  o.arena_capacity = Bytes(std::size_t{64} << 20);
  o.max_handles = 100000;
  o.include_in_core_dumps = in_dumps;
  o.os = the_os;
  return Pool::Create(o).value();
}

TEST(CoreDumps, ReservedRangesAreLeftOutUnlessAsked) {
  for (bool in_dumps : {false, true}) {
    SCOPED_TRACE(in_dumps ? "include_in_core_dumps" : "default");
    std::unique_ptr<Pool> pool = SmallPool(in_dumps);
    std::vector<Handle> live;
    for (int i = 0; i < 5000; ++i) live.push_back(pool->allocate(16 + i % 3000).value());
    ASSERT_TRUE(pool->allocate(std::size_t{3} << 20).ok());  // a huge object too
    const std::vector<Pool::AddressRange> ranges = pool->reserved_ranges();
    ASSERT_GE(ranges.size(), 3u);
    for (const Pool::AddressRange& r : ranges) {
      SCOPED_TRACE(r.role);
      const bench::FlaggedMappings m = bench::MappingsWithFlag(r.start, r.size, "dd").value();
      ASSERT_GE(m.mappings, 1u);
      EXPECT_EQ(m.flagged, in_dumps ? 0u : m.mappings);
    }
  }
}

TEST(CoreDumps, TheFlagStaysWithPagesMovedByDefragmentation) {
  std::unique_ptr<Pool> pool = SmallPool(false);
  std::vector<Handle> live;
  for (int i = 0; i < 40000; ++i) live.push_back(pool->allocate(200).value());
  for (std::size_t i = 0; i < live.size(); ++i) {
    if (i % 10 != 0) {
      ASSERT_TRUE(pool->free(live[i]).ok());
    }
  }
  pool->compact();
  const DefragResult d = pool->defragment();
  EXPECT_GT(d.blocks_migrated, 0u);
  for (const Pool::AddressRange& r : pool->reserved_ranges()) {
    const bench::FlaggedMappings m = bench::MappingsWithFlag(r.start, r.size, "dd").value();
    EXPECT_EQ(m.flagged, m.mappings) << r.role;
  }
}

TEST(CoreDumps, AFailedExclusionFailsCreateAndLeaksNothing) {
  os::FaultInjectingOs fos;
  fos.FailAfter(os::OsOp::kExcludeFromCoreDumps, 1, EINVAL);
  PoolOptions o;
  o.arena_capacity = Bytes(std::size_t{64} << 20);
  o.os = &fos;
  const absl::StatusOr<std::unique_ptr<Pool>> pool = Pool::Create(o);
  EXPECT_EQ(pool.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(pool.status().message()).find("MADV_DONTDUMP"), std::string::npos);
  EXPECT_EQ(fos.calls(os::OsOp::kExcludeFromCoreDumps), 2);
  // Every reservation was given back (ASan's leak check covers the rest).
  EXPECT_EQ(fos.calls(os::OsOp::kReserve), fos.calls(os::OsOp::kUnreserve));
  fos.Clear(os::OsOp::kExcludeFromCoreDumps);
  EXPECT_TRUE(Pool::Create(o).ok());
}

}  // namespace
}  // namespace mova
