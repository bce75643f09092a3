// Integration tests of the mova-kv binary: each test starts the server on 127.0.0.1 at a free port and drives
// it with the real redis-cli and redis-benchmark, and with a raw socket for what a well-behaved client never
// sends (malformed requests, a value cut short, a query buffer past its limit).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace {

// One raw TCP connection to the server.
class RawClient {
 public:
  explicit RawClient(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    timeval tv{10, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~RawClient() { Close(); }
  bool connected() const { return connected_; }
  bool Send(const std::string& bytes) {
    std::size_t sent = 0;
    while (sent < bytes.size()) {
      const ssize_t n = send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<std::size_t>(n);
    }
    return true;
  }
  // Reads until `n` bytes came, the peer closed, or 10 s passed.
  std::string Read(std::size_t n) {
    std::string out;
    char buf[65536];
    while (out.size() < n) {
      const ssize_t got = recv(fd_, buf, sizeof buf, 0);
      if (got <= 0) {
        // A close with our bytes still unread on its side reaches us as a reset rather than an end of stream.
        closed_by_peer_ = got == 0 || errno == ECONNRESET;
        break;
      }
      out.append(buf, static_cast<std::size_t>(got));
    }
    return out;
  }
  // Reads everything until the peer closes (or 10 s pass); closed_by_peer() says which.
  std::string ReadAllUntilClosed() { return Read(~std::size_t{0} >> 1); }
  bool closed_by_peer() const { return closed_by_peer_; }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool closed_by_peer_ = false;
};

std::string Quote(const std::string& s) { return "'" + absl::StrReplaceAll(s, {{"'", "'\\''"}}) + "'"; }

// Runs a shell command and returns what it printed on stdout.
std::string Shell(const std::string& command) {
  std::string out;
  FILE* f = popen(command.c_str(), "r");
  if (f == nullptr) return out;
  char buf[4096];
  std::size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  pclose(f);
  return out;
}

class MovaKvServer : public ::testing::Test {
 protected:
  void Start(std::vector<std::string> extra = {}) {
    ASSERT_EQ(access(MOVA_KV_BINARY, X_OK), 0) << MOVA_KV_BINARY;
    ASSERT_EQ(access(REDIS_CLI, X_OK), 0) << "redis-cli is not installed (scripts/install-deps.sh installs it)";
    port_file_ = absl::StrCat(::testing::TempDir(), "/mova-kv-port-", getpid(), "-", ++starts_);
    std::remove(port_file_.c_str());
    std::vector<std::string> args = {MOVA_KV_BINARY, "--port", "0", "--port-file", port_file_};
    args.insert(args.end(), extra.begin(), extra.end());
    pid_ = fork();
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (absl::Now() < deadline) {
      std::ifstream f(port_file_);
      if (f >> port_) break;
      absl::SleepFor(absl::Milliseconds(10));
    }
    ASSERT_GT(port_, 0) << "mova-kv did not start";
  }

  void TearDown() override {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status = 0;
      waitpid(pid_, &status, 0);
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "mova-kv ended with status " << status;
    }
    std::remove(port_file_.c_str());
  }

  // redis-cli's output for one command (its words quoted for the shell), newline-terminated.
  std::string Cli(const std::vector<std::string>& words) {
    std::string cmd = absl::StrCat(REDIS_CLI, " -p ", port_);
    for (const std::string& w : words) absl::StrAppend(&cmd, " ", Quote(w));
    return Shell(cmd + " 2>&1");
  }
  std::string InfoField(const std::string& field) {
    const std::string info = Cli({"INFO"});
    const std::size_t at = info.find(field + ":");
    if (at == std::string::npos) return "";
    return info.substr(at + field.size() + 1, info.find('\r', at) - at - field.size() - 1);
  }

  // Polls `done` for up to 30 s (a loaded machine, a sanitizer build): true once it holds.
  template <typename F>
  static bool Eventually(F done) {
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (!done()) {
      if (absl::Now() > deadline) return false;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return true;
  }

  int port_ = 0;
  pid_t pid_ = -1;
  std::string port_file_;
  static inline int starts_ = 0;
};

TEST_F(MovaKvServer, EveryCommandThroughRedisCli) {
  Start();
  const std::string empty_used = InfoField("used_memory");
  struct Step {
    std::vector<std::string> cmd;
    std::string out;
  };
  const std::vector<Step> steps = {
      {{"PING"}, "PONG\n"},
      {{"PING", "hi"}, "hi\n"},
      {{"ECHO", "a b"}, "a b\n"},
      {{"SET", "k", "v1"}, "OK\n"},
      {{"SET", "k", "v2", "NX"}, "\n"},
      {{"SET", "k", "v2", "XX", "GET"}, "v1\n"},
      {{"SET", "e", "x", "EX", "100"}, "OK\n"},
      {{"SET", "p", "x", "PX", "100000"}, "OK\n"},
      {{"GET", "k"}, "v2\n"},
      {{"MSET", "a", "1", "b", "2"}, "OK\n"},
      {{"MGET", "a", "b", "zz"}, "1\n2\n\n"},
      {{"INCR", "a"}, "2\n"},
      {{"APPEND", "b", "34"}, "3\n"},
      {{"STRLEN", "b"}, "3\n"},
      {{"EXISTS", "a", "b", "zz"}, "2\n"},
      {{"DEL", "a", "zz"}, "1\n"},
      {{"EXPIRE", "k", "100"}, "1\n"},
      {{"PEXPIRE", "b", "100000"}, "1\n"},
      {{"PERSIST", "k"}, "1\n"},
      {{"TTL", "k"}, "-1\n"},
      {{"TTL", "nope"}, "-2\n"},
      {{"DBSIZE"}, "4\n"},
      {{"SELECT", "0"}, "OK\n"},
      {{"SELECT", "3"}, "ERR DB index is out of range\n\n"},  // redis-cli adds a line after an error
      {{"CONFIG", "SET", "maxmemory", "100mb"}, "OK\n"},
      {{"CONFIG", "GET", "maxmemory"}, "maxmemory\n104857600\n"},
      {{"CONFIG", "SET", "maxmemory-policy", "allkeys-lru"}, "OK\n"},
      {{"CONFIG", "GET", "maxmemory-policy"}, "maxmemory-policy\nallkeys-lru\n"},
      {{"CONFIG", "GET", "save"}, "save\n\n"},
      {{"CONFIG", "GET", "appendonly"}, "appendonly\nno\n"},
      {{"CLIENT", "GETNAME"}, "\n"},
      {{"DEBUG", "POPULATE", "1000", "pop", "50"}, "OK\n"},
      {{"DBSIZE"}, "1004\n"},
      {{"STRLEN", "pop:999"}, "50\n"},
      {{"MEMORY", "PURGE"}, "OK\n"},
      {{"LATENCY", "LATEST"}, "\n"},  // an empty array
      {{"LATENCY", "HISTORY", "active-defrag-cycle"}, "\n"},
      {{"GET", "a", "b"}, "ERR wrong number of arguments for 'get' command\n\n"},
      {{"FOO"}, "ERR unknown command 'FOO', with args beginning with: \n\n"},
      {{"FLUSHDB"}, "OK\n"},
      {{"FLUSHALL"}, "OK\n"},
      {{"DBSIZE"}, "0\n"},
      {{"DEBUG", "DIGEST"}, "0000000000000000000000000000000000000000\n"},
  };
  for (const Step& s : steps) {
    EXPECT_EQ(Cli(s.cmd), s.out) << absl::StrJoin(s.cmd, " ");
    if (s.cmd == std::vector<std::string>{"PEXPIRE", "b", "100000"}) {
      // Times to live: Redis rounds what is left, and a loaded machine may take a while between two requests.
      for (const char* key : {"k", "e"}) {
        const int ttl = std::stoi(Cli({"TTL", key}));
        EXPECT_LE(ttl, 100) << key;
        EXPECT_GT(ttl, 90) << key;
      }
    }
  }
  EXPECT_EQ(InfoField("used_memory"), empty_used);  // FLUSHALL gave back everything the data set held
  // One connection for the per-connection commands.
  EXPECT_EQ(Shell(absl::StrCat("printf 'CLIENT SETNAME me\\nCLIENT GETNAME\\n' | ", REDIS_CLI, " -p ", port_)),
            "OK\nme\n");
  EXPECT_NE(Cli({"MEMORY", "USAGE", "nope"}), "0\n");
  EXPECT_NE(Cli({"INFO", "memory"}).find("mem_fragmentation_ratio:"), std::string::npos);
  EXPECT_NE(Cli({"COMMAND", "COUNT"}), "0\n");
  EXPECT_NE(Cli({"MEMORY", "STATS"}).find("keys.count"), std::string::npos);
}

TEST_F(MovaKvServer, RedisBenchmarkRunsPipelinedAndNot) {
  Start();
  for (const char* pipeline : {"1", "16"}) {
    const std::string out = Shell(absl::StrCat(REDIS_BENCHMARK, " -p ", port_, " -t set,get -n 20000 -r 5000 -d 100 -P ",
                                               pipeline, " -q 2>&1"));
    EXPECT_NE(out.find("SET: "), std::string::npos) << out;
    EXPECT_NE(out.find("GET: "), std::string::npos) << out;
    EXPECT_EQ(out.find("ERR"), std::string::npos) << out;
  }
  EXPECT_NE(Cli({"DBSIZE"}), "0\n");
  EXPECT_EQ(Cli({"STRLEN", "key:__rand_int__"}).empty(), false);
}

TEST_F(MovaKvServer, APipelineIsAnsweredInOrder) {
  Start();
  RawClient c(port_);
  ASSERT_TRUE(c.connected());
  std::string req, want;
  for (int i = 0; i < 2000; ++i) {
    const std::string k = absl::StrCat("k", i), v = absl::StrCat("value", i);
    absl::StrAppend(&req, "*3\r\n$3\r\nSET\r\n$", k.size(), "\r\n", k, "\r\n$", v.size(), "\r\n", v, "\r\n");
    absl::StrAppend(&req, "*2\r\n$3\r\nGET\r\n$", k.size(), "\r\n", k, "\r\n");
    absl::StrAppend(&want, "+OK\r\n$", v.size(), "\r\n", v, "\r\n");
  }
  req += "PING\r\n";  // an inline command after them
  want += "+PONG\r\n";
  ASSERT_TRUE(c.Send(req));
  EXPECT_EQ(c.Read(want.size()), want);
}

TEST_F(MovaKvServer, AProtocolErrorClosesThatConnectionOnly) {
  Start();
  RawClient good(port_);
  ASSERT_TRUE(good.Send("SET kept 1\r\n"));
  EXPECT_EQ(good.Read(5), "+OK\r\n");
  const std::pair<std::string, std::string> cases[] = {
      {"*1\r\n$x\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
      {"*1\r\n$-2\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
      {"*1\r\n%3\r\n", "-ERR Protocol error: expected '$', got '%'\r\n"},
      {"*-x\r\n", "-ERR Protocol error: invalid multibulk length\r\n"},
      {"SET \"a b\r\n", "-ERR Protocol error: unbalanced quotes in request\r\n"},
      {"*2\r\n$3\r\nGET\r\n$999999999999\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
      {std::string(70000, 'x'), "-ERR Protocol error: too big inline request\r\n"},
  };
  for (const auto& [input, reply] : cases) {
    RawClient bad(port_);
    ASSERT_TRUE(bad.Send(input));
    EXPECT_EQ(bad.ReadAllUntilClosed(), reply);
    EXPECT_TRUE(bad.closed_by_peer());
  }
  ASSERT_TRUE(good.Send("GET kept\r\n"));
  EXPECT_EQ(good.Read(7), "$1\r\n1\r\n");
}

TEST_F(MovaKvServer, AClientLeavingMidValueChangesNothing) {
  Start();
  {
    RawClient c(port_);
    ASSERT_TRUE(c.Send("*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$100000\r\n" + std::string(50000, 'h')));
  }
  {
    RawClient c(port_);
    ASSERT_TRUE(c.Send("*3\r\n$3\r\nSET"));  // not even the whole first argument
  }
  EXPECT_EQ(Cli({"EXISTS", "half"}), "0\n");
  EXPECT_EQ(Cli({"PING"}), "PONG\n");
  // The server counts the closed connections out once it has seen them close (the INFO's own client counts).
  EXPECT_TRUE(Eventually([&] { return InfoField("connected_clients") == "1"; }));
}

TEST_F(MovaKvServer, AQueryBufferPastItsLimitClosesThatClient) {
  Start({"--client-query-buffer-limit", "1mb"});
  RawClient c(port_);
  ASSERT_TRUE(c.Send("*2\r\n$4\r\nECHO\r\n$5000000\r\n"));
  c.Send(std::string(2 << 20, 'q'));  // the server may close before all of it is sent
  c.ReadAllUntilClosed();
  EXPECT_TRUE(c.closed_by_peer());
  EXPECT_EQ(Cli({"PING"}), "PONG\n");
}

TEST_F(MovaKvServer, KeysExpireWithoutBeingReadAndMaxmemoryEvicts) {
  Start({"--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru"});
  EXPECT_EQ(Cli({"SET", "gone", "v", "PX", "100"}), "OK\n");
  // Nobody reads it: the cron (10 Hz) deletes it.
  EXPECT_TRUE(Eventually([&] { return InfoField("expired_keys") == "1"; }));
  EXPECT_EQ(Cli({"DEBUG", "POPULATE", "50000", "key", "100"}), "OK\n");
  EXPECT_EQ(Cli({"PING"}), "PONG\n");  // evicts before it runs
  EXPECT_NE(InfoField("evicted_keys"), "0");
  EXPECT_LE(std::stoull(InfoField("used_memory")), 2u << 20);
  EXPECT_EQ(InfoField("maxmemory_policy"), "allkeys-lru");
}

TEST_F(MovaKvServer, TheDigestIsUnchangedAcrossActiveDefragmentation) {
  Start();
  EXPECT_EQ(Cli({"DEBUG", "POPULATE", "100000", "key", "200"}), "OK\n");
  // Nine keys in ten go, in one pipeline.
  RawClient c(port_);
  std::string dels;
  int n = 0;
  for (int i = 0; i < 100000; ++i) {
    if (i % 10 == 0) continue;
    const std::string k = absl::StrCat("key:", i);
    absl::StrAppend(&dels, "*2\r\n$3\r\nDEL\r\n$", k.size(), "\r\n", k, "\r\n");
    ++n;
  }
  ASSERT_TRUE(c.Send(dels));
  EXPECT_EQ(c.Read(static_cast<std::size_t>(n) * 4).size(), static_cast<std::size_t>(n) * 4);
  const std::string digest = Cli({"DEBUG", "DIGEST"});
  EXPECT_EQ(Cli({"CONFIG", "SET", "activedefrag", "yes", "active-defrag-ignore-bytes", "0",
                 "active-defrag-threshold-lower", "5", "latency-monitor-threshold", "1"}),
            "OK\n");
  EXPECT_TRUE(Eventually([&] { return InfoField("active_defrag_cycles") != "0"; }));
  EXPECT_EQ(Cli({"DEBUG", "DIGEST"}), digest);
  EXPECT_NE(InfoField("mova_objects_moved"), "0");
  // A pass of a millisecond or more is a latency event, as Redis records its defrag cycles.
  EXPECT_TRUE(Eventually([&] { return InfoField("active_defrag_longest_cycle_ms") != "0.000"; }));
  if (std::stod(InfoField("active_defrag_longest_cycle_ms")) >= 1.0) {
    EXPECT_NE(Cli({"LATENCY", "LATEST"}).find("active-defrag-cycle"), std::string::npos);
    EXPECT_NE(Cli({"LATENCY", "HISTORY", "active-defrag-cycle"}), "\n");
  }
}

TEST_F(MovaKvServer, ShutdownStopsTheServerCleanly) {
  Start();
  EXPECT_EQ(Cli({"SET", "k", "v"}), "OK\n");
  Cli({"SHUTDOWN", "NOSAVE"});
  int status = 0;
  ASSERT_EQ(waitpid(pid_, &status, 0), pid_);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  pid_ = -1;
}

}  // namespace
