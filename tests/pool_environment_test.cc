// tests/pool_environment_test.cc — MOVA_OPTIONS and MOVA_SHOW_STATS as a user sets them. The environment is
// read once per process, so ctest runs this binary once per case with the variables set (tests/CMakeLists.txt);
// each test first checks that the variables it was written for are there.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <initializer_list>
#include <string>

#include "mova/mova.h"
#include "mova/pool.h"
#include "tests/capture_stderr.h"

namespace mova {
namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "<unset>" : v;
}

bool Contains(absl::string_view haystack, const std::string& needle) {
  return std::string(haystack).find(needle) != std::string::npos;
}

// The environment's refusal: kInvalidArgument whose message says each of `says`, and what every Pool::Create
// returns while the process runs.
void ExpectRefused(std::initializer_list<const char*> says) {
  const absl::Status env = EnvironmentOptionsStatus();
  EXPECT_EQ(env.code(), absl::StatusCode::kInvalidArgument);
  for (const char* s : says) EXPECT_TRUE(Contains(env.message(), s)) << env.message();
  for (int i = 0; i < 2; ++i) EXPECT_EQ(Pool::Create().status(), env);
}

// MOVA_OPTIONS="decay_ms=5, checked=true,memory_limit=64m" MOVA_SHOW_STATS=json
TEST(Environment, GoodVariablesAreTheDefaultsAndTheProgramWins) {
  ASSERT_EQ(Env("MOVA_OPTIONS"), "decay_ms=5, checked=true,memory_limit=64m");
  ASSERT_EQ(Env("MOVA_SHOW_STATS"), "json");
  EXPECT_TRUE(EnvironmentOptionsStatus().ok());
  const PoolOptions d;
  EXPECT_EQ(d.decay, std::chrono::milliseconds(5));
  EXPECT_TRUE(d.checked);
  EXPECT_EQ(d.memory_limit.value(), std::size_t{64} << 20);
  EXPECT_EQ(d.show_stats, StatsOutput::kJson);
  EXPECT_EQ(d.max_handles, (1u << 28) - 1);  // not in the variable: built in
  // What the program sets wins over the environment.
  const PoolOptions mine{.decay = std::chrono::milliseconds(0)};
  EXPECT_EQ(mine.decay, std::chrono::milliseconds(0));
  EXPECT_TRUE(mine.checked);
  // The C API's defaults are the same.
  mova_options c;
  mova_options_init(&c);
  EXPECT_EQ(c.decay_ms, 5u);
  EXPECT_EQ(c.checked, 1);
  EXPECT_EQ(c.memory_limit, std::uint64_t{64} << 20);
  EXPECT_EQ(c.show_stats, 2);
  // A pool made with them prints its stats as JSON when it goes.
  const std::string printed = CaptureStderr([] {
    std::unique_ptr<Pool> pool = Pool::Create().value();
    ASSERT_TRUE(pool->allocate(10).ok());
  });
  EXPECT_TRUE(Contains(printed, "\"live_objects\":1,")) << printed;
}

// MOVA_OPTIONS="checked=true,decay_ms=soon"
TEST(Environment, ABadValueFailsEveryCreateAndNamesTheItem) {
  ASSERT_EQ(Env("MOVA_OPTIONS"), "checked=true,decay_ms=soon");
  ExpectRefused({"MOVA_OPTIONS=\"checked=true,decay_ms=soon\"", "decay_ms=soon: expected a non-negative whole number"});
  EXPECT_FALSE(PoolOptions().checked);  // nothing of a bad variable is applied
  mova_pool* p = nullptr;
  EXPECT_EQ(mova_pool_create(nullptr, &p), MOVA_INVALID_ARGUMENT);
  EXPECT_EQ(p, nullptr);
  EXPECT_TRUE(Contains(mova_last_error(), "MOVA_OPTIONS")) << mova_last_error();
}

// MOVA_OPTIONS="dekay_ms=5"
TEST(Environment, AnUnknownNameListsTheKnownOnes) {
  ASSERT_EQ(Env("MOVA_OPTIONS"), "dekay_ms=5");
  ExpectRefused({"unknown option 'dekay_ms' (known: arena_capacity, memory_limit, decay_ms"});
}

// MOVA_SHOW_STATS=yes
TEST(Environment, ABadShowStatsFailsEveryCreate) {
  ASSERT_EQ(Env("MOVA_SHOW_STATS"), "yes");
  ExpectRefused({"MOVA_SHOW_STATS=yes"});
}

// MOVA_SHOW_STATS=1, MOVA_OPTIONS="show_stats=json" (MOVA_SHOW_STATS is applied after MOVA_OPTIONS)
TEST(Environment, ShowStatsPrintsTextAtDestruction) {
  ASSERT_EQ(Env("MOVA_SHOW_STATS"), "1");
  ASSERT_EQ(Env("MOVA_OPTIONS"), "show_stats=json");
  EXPECT_EQ(PoolOptions().show_stats, StatsOutput::kText);
  const std::string printed = CaptureStderr([] {
    std::unique_ptr<Pool> pool = Pool::Create().value();
    ASSERT_TRUE(pool->allocate(10).ok());
    ASSERT_TRUE(pool->allocate(20).ok());
  });
  EXPECT_TRUE(Contains(printed, "mova: stats of pool")) << printed;
  EXPECT_TRUE(Contains(printed, "in 2 objects")) << printed;
}

// Neither variable set: the built-in defaults.
TEST(Environment, NoVariablesMeansTheBuiltInDefaults) {
  ASSERT_EQ(Env("MOVA_OPTIONS"), "<unset>");
  ASSERT_EQ(Env("MOVA_SHOW_STATS"), "<unset>");
  EXPECT_TRUE(EnvironmentOptionsStatus().ok());
  const PoolOptions d;
  EXPECT_EQ(d.decay, std::chrono::milliseconds(1000));
  EXPECT_FALSE(d.checked);
  EXPECT_FALSE(d.include_in_core_dumps);
  EXPECT_EQ(d.show_stats, StatsOutput::kNone);
  const std::string printed = CaptureStderr([] { EXPECT_TRUE(Pool::Create().ok()); });
  EXPECT_EQ(printed, "");
}

}  // namespace
}  // namespace mova
