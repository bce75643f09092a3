// Tests of mova-kv's engine without the network: each command's replies and errors byte for byte as Redis
// gives them, expiry, eviction under maxmemory, the digest across stores and across compaction, and memory
// that returns to its empty value. Each test runs on the mova store and on the malloc store.
#include "mova-kv/engine.h"

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace mova::kv {
namespace {

using Args = std::vector<std::string>;

std::unique_ptr<ObjectStore> MakeStore(const std::string& kind) {
  if (kind == "malloc") return MakeMallocStore();
  PoolOptions o;
  o.arena_capacity = Bytes(std::size_t{4} << 30);
  absl::StatusOr<std::unique_ptr<ObjectStore>> s = MakeMovaStore(o);
  EXPECT_TRUE(s.ok()) << s.status();
  return std::move(*s);
}

// Runs one request on `engine` for `client` and returns the raw reply.
std::string RunOn(Engine& engine, Client& client, Args args) {
  std::string out;
  engine.Execute(client, args, &out);
  return out;
}

class EngineTest : public ::testing::TestWithParam<std::string> {
 protected:
  EngineTest() : store_(MakeStore(GetParam())), engine_(std::make_unique<Engine>(*store_, ServerConfig{})) {}

  std::string Run(Args args) { return RunOn(*engine_, client_, std::move(args)); }
  static std::string Bulk(const std::string& s) { return absl::StrCat("$", s.size(), "\r\n", s, "\r\n"); }
  // The TTL of `key` in seconds is within (most - 10, most]: Redis rounds the time left, and a loaded machine
  // may take a while between two requests.
  ::testing::AssertionResult TtlNear(const std::string& key, std::int64_t most) {
    const std::string reply = Run({"TTL", key});
    if (reply.empty() || reply.front() != ':') return ::testing::AssertionFailure() << "TTL replied " << reply;
    const std::int64_t ttl = std::stoll(reply.substr(1));
    if (ttl > most || ttl <= most - 10) return ::testing::AssertionFailure() << "TTL " << ttl << ", expected ~" << most;
    return ::testing::AssertionSuccess();
  }

  std::unique_ptr<ObjectStore> store_;
  std::unique_ptr<Engine> engine_;
  Client client_;
};

TEST_P(EngineTest, StringCommandsAnswerAsRedis) {
  EXPECT_EQ(Run({"SET", "k", "hello"}), "+OK\r\n");
  EXPECT_EQ(Run({"get", "k"}), Bulk("hello"));
  EXPECT_EQ(Run({"GET", "missing"}), "$-1\r\n");
  EXPECT_EQ(Run({"GETSET", "k", "v2"}), Bulk("hello"));
  EXPECT_EQ(Run({"SETNX", "k", "x"}), ":0\r\n");
  EXPECT_EQ(Run({"SETNX", "n", "x"}), ":1\r\n");
  EXPECT_EQ(Run({"MSET", "a", "1", "b", "2"}), "+OK\r\n");
  EXPECT_EQ(Run({"MGET", "a", "nope", "b"}), "*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n2\r\n");
  EXPECT_EQ(Run({"INCR", "a"}), ":2\r\n");
  EXPECT_EQ(Run({"INCRBY", "a", "40"}), ":42\r\n");
  EXPECT_EQ(Run({"DECR", "a"}), ":41\r\n");
  EXPECT_EQ(Run({"DECRBY", "a", "-9"}), ":50\r\n");
  EXPECT_EQ(Run({"INCR", "fresh"}), ":1\r\n");
  EXPECT_EQ(Run({"APPEND", "k", "+more"}), ":7\r\n");
  EXPECT_EQ(Run({"GET", "k"}), Bulk("v2+more"));
  EXPECT_EQ(Run({"APPEND", "new", "abc"}), ":3\r\n");
  EXPECT_EQ(Run({"STRLEN", "k"}), ":7\r\n");
  EXPECT_EQ(Run({"STRLEN", "nope"}), ":0\r\n");
  const std::string big(100000, 'z');
  EXPECT_EQ(Run({"SET", "big", big}), "+OK\r\n");
  EXPECT_EQ(Run({"GET", "big"}), Bulk(big));
  EXPECT_EQ(Run({"SET", "empty", ""}), "+OK\r\n");
  EXPECT_EQ(Run({"GET", "empty"}), "$0\r\n\r\n");
}

TEST_P(EngineTest, SetOptionsAndTheirErrors) {
  EXPECT_EQ(Run({"SET", "k", "v", "XX"}), "$-1\r\n");
  EXPECT_EQ(Run({"SET", "k", "v", "NX"}), "+OK\r\n");
  EXPECT_EQ(Run({"SET", "k", "w", "NX"}), "$-1\r\n");
  EXPECT_EQ(Run({"SET", "k", "w", "XX", "GET"}), Bulk("v"));
  EXPECT_EQ(Run({"SET", "k", "x", "EX", "100"}), "+OK\r\n");
  EXPECT_TRUE(TtlNear("k", 100));
  EXPECT_EQ(Run({"SET", "k", "y", "KEEPTTL"}), "+OK\r\n");
  EXPECT_TRUE(TtlNear("k", 100));
  EXPECT_EQ(Run({"SET", "k", "z"}), "+OK\r\n");
  EXPECT_EQ(Run({"TTL", "k"}), ":-1\r\n");
  EXPECT_EQ(Run({"SET", "k", "z", "PX", "5000"}), "+OK\r\n");
  const std::string pttl = Run({"PTTL", "k"});
  ASSERT_EQ(pttl.front(), ':');
  EXPECT_GT(std::stoll(pttl.substr(1)), 4000);
  EXPECT_LE(std::stoll(pttl.substr(1)), 5000);
  EXPECT_EQ(Run({"SET", "k", "v", "EX", "0"}), "-ERR invalid expire time in 'set' command\r\n");
  EXPECT_EQ(Run({"SET", "k", "v", "EX", "-5"}), "-ERR invalid expire time in 'set' command\r\n");
  EXPECT_EQ(Run({"SET", "k", "v", "EX", "soon"}), "-ERR value is not an integer or out of range\r\n");
  EXPECT_EQ(Run({"SET", "k", "v", "NX", "XX"}), "-ERR syntax error\r\n");
  EXPECT_EQ(Run({"SET", "k", "v", "EX", "1", "PX", "1"}), "-ERR syntax error\r\n");
  EXPECT_EQ(Run({"SET", "k", "v", "EX"}), "-ERR syntax error\r\n");
  EXPECT_EQ(Run({"SET", "k", "v", "bogus"}), "-ERR syntax error\r\n");
  EXPECT_EQ(Run({"SETEX", "k", "0", "v"}), "-ERR invalid expire time in 'setex' command\r\n");
  EXPECT_EQ(Run({"PSETEX", "k", "100000", "v"}), "+OK\r\n");
  EXPECT_TRUE(TtlNear("k", 100));
}

TEST_P(EngineTest, BadRequestsGetRedisErrors) {
  EXPECT_EQ(Run({"NOSUCH", "a", "b"}), "-ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b' \r\n");
  EXPECT_EQ(Run({"GET"}), "-ERR wrong number of arguments for 'get' command\r\n");
  EXPECT_EQ(Run({"GET", "a", "b"}), "-ERR wrong number of arguments for 'get' command\r\n");
  EXPECT_EQ(Run({"MSET", "a", "1", "b"}), "-ERR wrong number of arguments for 'mset' command\r\n");
  EXPECT_EQ(Run({"SET", "s", "abc"}), "+OK\r\n");
  EXPECT_EQ(Run({"INCR", "s"}), "-ERR value is not an integer or out of range\r\n");
  EXPECT_EQ(Run({"INCRBY", "n", "1x"}), "-ERR value is not an integer or out of range\r\n");
  EXPECT_EQ(Run({"SET", "m", "9223372036854775807"}), "+OK\r\n");
  EXPECT_EQ(Run({"INCR", "m"}), "-ERR increment or decrement would overflow\r\n");
  EXPECT_EQ(Run({"GET", "m"}), Bulk("9223372036854775807"));
  EXPECT_EQ(Run({"SELECT", "0"}), "+OK\r\n");
  EXPECT_EQ(Run({"SELECT", "1"}), "-ERR DB index is out of range\r\n");
  EXPECT_EQ(Run({"CONFIG", "NOPE"}), "-ERR unknown subcommand 'NOPE'. Try CONFIG HELP.\r\n");
  EXPECT_EQ(Run({"CONFIG", "GET"}), "-ERR wrong number of arguments for 'config|get' command\r\n");
  EXPECT_EQ(Run({"EXPIRE", "s", "10", "NX", "XX"}),
            "-ERR NX and XX, GT or LT options at the same time are not compatible\r\n");
  EXPECT_EQ(Run({"PING", "a", "b"}), "-ERR wrong number of arguments for 'ping' command\r\n");
  EXPECT_EQ(Run({"DEBUG", "POPULATE", "-1"}), "-ERR value is out of range, must be positive\r\n");
  EXPECT_EQ(Run({"CLIENT", "SETNAME", "a b"}),
            "-ERR Client names cannot contain spaces, newlines or special characters.\r\n");
}

TEST_P(EngineTest, KeysExpireLazilyAndActively) {
  EXPECT_EQ(Run({"SET", "k", "v"}), "+OK\r\n");
  EXPECT_EQ(Run({"EXPIRE", "k", "100", "XX"}), ":0\r\n");
  EXPECT_EQ(Run({"EXPIRE", "k", "100", "NX"}), ":1\r\n");
  EXPECT_EQ(Run({"EXPIRE", "k", "50", "GT"}), ":0\r\n");
  EXPECT_EQ(Run({"EXPIRE", "k", "50", "LT"}), ":1\r\n");
  EXPECT_TRUE(TtlNear("k", 50));
  EXPECT_EQ(Run({"PERSIST", "k"}), ":1\r\n");
  EXPECT_EQ(Run({"PERSIST", "k"}), ":0\r\n");
  EXPECT_EQ(Run({"TTL", "k"}), ":-1\r\n");
  EXPECT_EQ(Run({"TTL", "nope"}), ":-2\r\n");
  EXPECT_EQ(Run({"EXPIRE", "k", "9223372036854775807"}), "-ERR invalid expire time in 'expire' command\r\n");
  EXPECT_EQ(Run({"pexpire", "k", "9223372036854775807"}), "-ERR invalid expire time in 'pexpire' command\r\n");
  EXPECT_EQ(Run({"SET", "k", "v", "PX", "9223372036854775807"}), "-ERR invalid expire time in 'set' command\r\n");
  EXPECT_EQ(Run({"EXPIRE", "k", "-1"}), ":1\r\n");  // in the past: deleted now
  EXPECT_EQ(Run({"EXISTS", "k"}), ":0\r\n");
  // Lazy: a key read after its time is gone, and counted.
  EXPECT_EQ(Run({"SET", "short", "v", "PX", "20"}), "+OK\r\n");
  std::this_thread::sleep_for(std::chrono::milliseconds(40));
  EXPECT_EQ(Run({"GET", "short"}), "$-1\r\n");
  EXPECT_EQ(engine_->keyspace().expired_keys(), 1u);
  // Active: nobody reads these; the cron deletes them.
  for (int i = 0; i < 500; ++i) Run({"SET", absl::StrCat("t", i), "v", "PX", "20"});
  for (int i = 0; i < 500; ++i) Run({"SET", absl::StrCat("p", i), "v"});
  std::this_thread::sleep_for(std::chrono::milliseconds(40));
  for (int i = 0; i < 10 && engine_->keyspace().volatile_size() > 0; ++i) engine_->Cron();  // each within its budget
  EXPECT_EQ(Run({"DBSIZE"}), ":500\r\n");
  EXPECT_EQ(engine_->keyspace().volatile_size(), 0u);
  EXPECT_EQ(engine_->keyspace().expired_keys(), 501u);
}

TEST_P(EngineTest, MaxmemoryEvictsTheLeastRecentlyUsedOrRefusesWrites) {
  const std::string value(1000, 'v');
  EXPECT_EQ(Run({"CONFIG", "SET", "maxmemory", "1mb", "maxmemory-policy", "allkeys-lru"}), "+OK\r\n");
  for (int i = 0; i < 800; ++i) ASSERT_EQ(Run({"SET", absl::StrCat("old", i), value}), "+OK\r\n");
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  for (int i = 0; i < 400; ++i) ASSERT_EQ(Run({"SET", absl::StrCat("new", i), value}), "+OK\r\n");
  Run({"PING"});  // evicts down to the limit before it runs
  EXPECT_LE(engine_->used_memory(), std::uint64_t{1} << 20);
  EXPECT_GT(engine_->keyspace().evicted_keys(), 100u);
  for (int i = 0; i < 400; ++i) EXPECT_EQ(Run({"EXISTS", absl::StrCat("new", i)}), ":1\r\n") << i;

  EXPECT_EQ(Run({"CONFIG", "SET", "maxmemory-policy", "noeviction"}), "+OK\r\n");
  EXPECT_EQ(Run({"CONFIG", "SET", "maxmemory", "1000"}), "+OK\r\n");
  EXPECT_EQ(Run({"SET", "x", "y"}), "-OOM command not allowed when used memory > 'maxmemory'.\r\n");
  EXPECT_EQ(Run({"GET", "new1"}), Bulk(value));  // reads and deletes still run
  EXPECT_EQ(Run({"DEL", "new1"}), ":1\r\n");

  EXPECT_EQ(Run({"CONFIG", "SET", "maxmemory-policy", "allkeys-random", "maxmemory", "100kb"}), "+OK\r\n");
  EXPECT_EQ(Run({"SET", "x", "y"}), "+OK\r\n");
  EXPECT_LE(engine_->used_memory() - 1000, 100u * 1024);
}

TEST_P(EngineTest, FlushAllGivesUsedMemoryBackToItsEmptyValue) {
  const std::uint64_t empty = engine_->used_memory();
  EXPECT_EQ(Run({"DEBUG", "POPULATE", "20000", "key", "100"}), "+OK\r\n");
  EXPECT_EQ(Run({"DBSIZE"}), ":20000\r\n");
  EXPECT_EQ(Run({"GET", "key:7"}), Bulk(std::string("value:7") + std::string(93, '\0')));
  EXPECT_GT(engine_->used_memory(), 20000u * 100);
  EXPECT_EQ(Run({"FLUSHALL"}), "+OK\r\n");
  EXPECT_EQ(engine_->used_memory(), empty);
  EXPECT_EQ(Run({"DEBUG", "DIGEST"}), "+0000000000000000000000000000000000000000\r\n");
  const AllocatorReport a = store_->Report();
  EXPECT_EQ(a.allocated, 0u);
}

TEST_P(EngineTest, UsedMemoryFollowsTheDataSetDown) {
  const std::uint64_t empty = engine_->used_memory();
  EXPECT_EQ(Run({"DEBUG", "POPULATE", "200000", "key", "100"}), "+OK\r\n");
  const std::uint64_t full = engine_->used_memory();
  EXPECT_GE(full - empty, 200000u * (100 + 4 + 10 + sizeof(Keyspace::Entry)));
  for (int i = 0; i < 200000; ++i) {
    if (i % 20 != 0) {
      ASSERT_EQ(Run({"DEL", absl::StrCat("key:", i)}), ":1\r\n");
    }
  }
  // A twentieth of the keys: the objects and the index's arrays went down with them (within a quarter, the
  // hysteresis of the shrinking arrays, and a MiB each of what they keep).
  EXPECT_LE(engine_->used_memory() - empty, (full - empty) / 20 * 5 / 4 + (std::uint64_t{3} << 20));
  EXPECT_EQ(Run({"DBSIZE"}), ":10000\r\n");
}

TEST_P(EngineTest, ConfigGetSetAndInfoSpeakRedis) {
  EXPECT_EQ(Run({"CONFIG", "SET", "maxmemory", "100mb"}), "+OK\r\n");
  EXPECT_EQ(Run({"CONFIG", "GET", "maxmemory"}), "*2\r\n$9\r\nmaxmemory\r\n$9\r\n104857600\r\n");
  EXPECT_EQ(Run({"CONFIG", "GET", "save"}), "*2\r\n$4\r\nsave\r\n$0\r\n\r\n");
  EXPECT_EQ(Run({"CONFIG", "GET", "appendonly"}), "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n");
  EXPECT_EQ(Run({"CONFIG", "SET", "save", ""}), "+OK\r\n");
  EXPECT_EQ(Run({"CONFIG", "SET", "maxmemory", "lots"}),
            "-ERR CONFIG SET failed (possibly related to argument 'maxmemory') - argument must be a memory value\r\n");
  EXPECT_EQ(Run({"CONFIG", "SET", "nosuch", "1"}), "-ERR Unknown option or number of arguments for CONFIG SET - 'nosuch'\r\n");
  // All or nothing.
  EXPECT_EQ(Run({"CONFIG", "SET", "maxmemory", "1mb", "hz", "0"}).substr(0, 4), "-ERR");
  EXPECT_EQ(Run({"CONFIG", "GET", "maxmemory"}), "*2\r\n$9\r\nmaxmemory\r\n$9\r\n104857600\r\n");
  EXPECT_NE(Run({"CONFIG", "GET", "active-defrag-*"}).find("active-defrag-cycle-max"), std::string::npos);
  if (GetParam() == "malloc") {
    EXPECT_EQ(Run({"CONFIG", "SET", "activedefrag", "yes"}),
              "-ERR CONFIG SET failed (possibly related to argument 'activedefrag') - Active defragmentation cannot "
              "be enabled: the malloc store cannot move objects\r\n");
  } else {
    EXPECT_EQ(Run({"CONFIG", "SET", "activedefrag", "yes"}), "+OK\r\n");
  }
  Run({"SET", "k", "v"});
  const std::string info = Run({"INFO"});
  for (const char* field :
       {"# Server", "redis_version:", "# Memory", "used_memory:", "used_memory_rss:", "used_memory_peak:",
        "maxmemory:104857600", "mem_fragmentation_ratio:", "allocator_allocated:", "allocator_active:",
        "allocator_resident:", "allocator_frag_ratio:", "active_defrag_running:", "# Stats",
        "total_commands_processed:", "keyspace_hits:", "evicted_keys:", "# Keyspace", "db0:keys=1,expires=0"}) {
    EXPECT_NE(info.find(field), std::string::npos) << field;
  }
  const std::string memory = Run({"INFO", "memory"});
  EXPECT_EQ(memory.find("# Server"), std::string::npos);
  EXPECT_NE(memory.find("used_memory:"), std::string::npos);
  EXPECT_EQ(Run({"COMMAND", "COUNT"}), absl::StrCat(":", CommandTable().size(), "\r\n"));
  EXPECT_EQ(Run({"COMMAND", "INFO", "get"}).substr(0, 22), "*1\r\n*10\r\n$3\r\nget\r\n:2\r\n");
  EXPECT_EQ(Run({"MEMORY", "PURGE"}), "+OK\r\n");
  // The allocator's own report: mova's stats table (one live object of the class that holds "k"'s), or the
  // answer Redis gives for an allocator without one.
  const std::string malloc_stats = Run({"MEMORY", "MALLOC-STATS"});
  EXPECT_EQ(malloc_stats.front(), '$');
  EXPECT_NE(malloc_stats.find(GetParam() == "mova" ? "in 1 objects" : "Stats not supported"), std::string::npos)
      << malloc_stats;
  EXPECT_EQ(Run({"MEMORY", "MALLOC-STATS", "x"}).substr(0, 4), "-ERR");
  EXPECT_EQ(Run({"MEMORY", "USAGE", "nope"}), "$-1\r\n");
  EXPECT_EQ(Run({"MEMORY", "USAGE", "k"}).front(), ':');
  EXPECT_EQ(Run({"LATENCY", "LATEST"}), "*0\r\n");
  EXPECT_EQ(Run({"CLIENT", "SETNAME", "me"}), "+OK\r\n");
  EXPECT_EQ(Run({"CLIENT", "GETNAME"}), Bulk("me"));
  EXPECT_EQ(Run({"ECHO", "hi"}), Bulk("hi"));
  EXPECT_EQ(Run({"PING"}), "+PONG\r\n");
  EXPECT_EQ(Run({"QUIT"}), "+OK\r\n");
  EXPECT_TRUE(client_.close_after_reply);
}

TEST_P(EngineTest, TheDigestDependsOnTheDataOnlyAndNotOnTheStoreOrTheOrder) {
  std::unique_ptr<ObjectStore> other_store = MakeStore(GetParam() == "mova" ? "malloc" : "mova");
  Engine other(*other_store, ServerConfig{});
  Client c;
  const auto run_other = [&](Args a) { return RunOn(other, c, std::move(a)); };
  for (int i = 0; i < 1000; ++i) Run({"SET", absl::StrCat("k", i), absl::StrCat("v", i * 7)});
  for (int i = 999; i >= 0; --i) run_other({"SET", absl::StrCat("k", i), absl::StrCat("v", i * 7)});
  const std::string d = Run({"DEBUG", "DIGEST"});
  EXPECT_EQ(d.size(), 43u);
  EXPECT_EQ(d, run_other({"DEBUG", "DIGEST"}));
  run_other({"SET", "k5", "changed"});
  EXPECT_NE(d, run_other({"DEBUG", "DIGEST"}));
  run_other({"SET", "k5", "v35"});
  EXPECT_EQ(d, run_other({"DEBUG", "DIGEST"}));
  run_other({"EXPIRE", "k5", "1000"});
  EXPECT_NE(d, run_other({"DEBUG", "DIGEST"}));
}

INSTANTIATE_TEST_SUITE_P(Stores, EngineTest, ::testing::Values("mova", "malloc"));

// The mova store only: a compaction moves the objects and the data set stays what it was.
// The defragmenter runs on a thread of its own, and the slots another thread keeps cached for its next
// allocations would hold their blocks in place: the pool empties the caches of threads not in a call when a
// pass begins, so a server thread without requests keeps nothing through it (and the engine has the server
// thread let go of its cache before it starts a pass, ReleaseThreadCache, which then finds nothing more).
TEST(MovaStore, APassGivesBackWhatAnIdleServerThreadHadCached) {
  std::unique_ptr<ObjectStore> store = MakeStore("mova");
  const std::string value(40, 'v');
  const std::string_view parts[] = {value};
  const std::size_t size = ObjectStore::ObjectSize(5, value.size());
  const auto put = [&](std::size_t i, ObjectCell& cell) {
    absl::StatusOr<ObjectRef> r = store->Put(absl::StrCat("k", 1000000 + i).substr(0, 5), parts);
    ASSERT_TRUE(r.ok()) << r.status();
    cell.store(Handle{*r});
  };
  std::vector<ObjectCell> kept(1000);
  for (std::size_t i = 0; i < kept.size(); ++i) put(i, kept[i]);
  // Batches of 2000 made and freed: this thread's cache grows until a batch fits, and ends holding its slots.
  std::vector<ObjectCell> batch(2000);
  for (int round = 0; round < 6; ++round) {
    for (std::size_t i = 0; i < batch.size(); ++i) put(i, batch[i]);
    for (ObjectCell& c : batch) ASSERT_TRUE(store->Free(c, size).ok());
  }
  const auto pass_elsewhere = [&] {
    std::thread t([&] { EXPECT_TRUE(store->Defragment(std::chrono::microseconds(0)).complete); });
    t.join();
    return store->Report();
  };
  const AllocatorReport before = store->Report();
  const AllocatorReport after = pass_elsewhere();
  EXPECT_EQ(after.allocated, before.allocated);
  // At least half of the batch's slots were cached and are back: their blocks went.
  EXPECT_GE(before.active - after.active, batch.size() / 2 * size);
  store->ReleaseThreadCache();
  const AllocatorReport released = pass_elsewhere();
  EXPECT_LE(released.active, after.active);
  for (ObjectCell& c : kept) {
    std::string got;
    ASSERT_TRUE(store->Read(c, size, [&](std::string_view, std::string_view v) { got = std::string(v); }).ok());
    EXPECT_EQ(got, value);
  }
}

TEST(EngineOnMova, TheDigestAndEveryValueSurviveCompaction) {
  std::unique_ptr<ObjectStore> store = MakeStore("mova");
  Engine engine(*store, ServerConfig{});
  Client c;
  const auto run = [&](Args a) { return RunOn(engine, c, std::move(a)); };
  ASSERT_EQ(run({"DEBUG", "POPULATE", "50000", "key", "100"}), "+OK\r\n");
  absl::BitGen rng;
  std::vector<int> kept;
  for (int i = 0; i < 50000; ++i) {
    if (absl::Bernoulli(rng, 0.9)) {
      ASSERT_EQ(run({"DEL", absl::StrCat("key:", i)}), ":1\r\n");
    } else {
      kept.push_back(i);
    }
  }
  const std::string before = run({"DEBUG", "DIGEST"});
  const auto memory_field = [&](const std::string& name) {
    const std::string info = run({"INFO", "memory"});
    const std::size_t at = info.find(name + ":");
    EXPECT_NE(at, std::string::npos) << name;
    return std::stoull(info.substr(at + name.size() + 1));
  };
  const std::uint64_t table_before = memory_field("mova_handle_table_bytes");
  const DefragPass pass = store->Defragment(std::chrono::microseconds(0));  // the whole pass in one step
  EXPECT_TRUE(pass.complete);
  EXPECT_GT(pass.objects_moved, 0u);
  EXPECT_GT(pass.pages_released, 0u);
  // The keyspace owns its handles: the one in ten kept moved out of the sparse table pages, which went back.
  EXPECT_GT(pass.handles_migrated, kept.size() / 2);
  EXPECT_GT(pass.handle_pages_released, 0u);
  EXPECT_EQ(memory_field("mova_handles_owned"), kept.size());
  EXPECT_LT(memory_field("mova_handle_table_bytes"), table_before / 2);
  EXPECT_EQ(run({"DEBUG", "DIGEST"}), before);
  for (int i : kept) {
    std::string value = absl::StrCat("value:", i);
    value.resize(100, '\0');
    ASSERT_EQ(run({"GET", absl::StrCat("key:", i)}), absl::StrCat("$100\r\n", value, "\r\n")) << i;
  }
  // The moved handles serve every path: overwrite, expiry, eviction by LRU (whose pool names entries by
  // the handles it loaded), deletion; and FLUSHALL leaves nothing.
  ASSERT_EQ(run({"SET", absl::StrCat("key:", kept[0]), "new"}), "+OK\r\n");
  EXPECT_EQ(run({"GET", absl::StrCat("key:", kept[0])}), "$3\r\nnew\r\n");
  ASSERT_EQ(run({"PEXPIRE", absl::StrCat("key:", kept[1]), "1"}), ":1\r\n");
  absl::SleepFor(absl::Milliseconds(5));
  EXPECT_EQ(run({"GET", absl::StrCat("key:", kept[1])}), "$-1\r\n");
  ASSERT_EQ(run({"DEL", absl::StrCat("key:", kept[2])}), ":1\r\n");
  const std::uint64_t keys = kept.size() - 2;
  EXPECT_EQ(run({"DBSIZE"}), absl::StrCat(":", keys, "\r\n"));
  ASSERT_EQ(run({"CONFIG", "SET", "maxmemory-policy", "allkeys-lru"}), "+OK\r\n");
  ASSERT_EQ(run({"CONFIG", "SET", "maxmemory", absl::StrCat(memory_field("used_memory") * 9 / 10)}), "+OK\r\n");
  ASSERT_EQ(run({"SET", "one-more", "v"}), "+OK\r\n");
  EXPECT_LT(memory_field("used_memory"), memory_field("maxmemory"));
  EXPECT_EQ(run({"GET", "one-more"}), "$1\r\nv\r\n");
  ASSERT_EQ(run({"CONFIG", "SET", "maxmemory", "0"}), "+OK\r\n");
  ASSERT_EQ(run({"FLUSHALL"}), "+OK\r\n");
  EXPECT_EQ(memory_field("mova_live_objects"), 0u);
}

}  // namespace
}  // namespace mova::kv
