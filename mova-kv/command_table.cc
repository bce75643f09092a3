// mova-kv/command_table.cc — every command mova-kv runs: Redis's name, arity, flags and key positions (as
// COMMAND reports them), and the Engine member that runs it.
#include "mova-kv/engine.h"

namespace mova::kv {

const std::vector<CommandSpec>& CommandTable() {
  static const std::vector<CommandSpec> table = {
      // Strings.
      {"get", 2, "readonly fast", 1, 1, 1, &Engine::Get},
      {"set", -3, "write denyoom", 1, 1, 1, &Engine::Set},
      {"setnx", 3, "write denyoom fast", 1, 1, 1, &Engine::SetNx},
      {"setex", 4, "write denyoom", 1, 1, 1, &Engine::SetEx},
      {"psetex", 4, "write denyoom", 1, 1, 1, &Engine::PSetEx},
      {"getset", 3, "write denyoom fast", 1, 1, 1, &Engine::GetSet},
      {"mget", -2, "readonly fast", 1, -1, 1, &Engine::MGet},
      {"mset", -3, "write denyoom", 1, -1, 2, &Engine::MSet},
      {"incr", 2, "write denyoom fast", 1, 1, 1, &Engine::Incr},
      {"decr", 2, "write denyoom fast", 1, 1, 1, &Engine::Decr},
      {"incrby", 3, "write denyoom fast", 1, 1, 1, &Engine::IncrBy},
      {"decrby", 3, "write denyoom fast", 1, 1, 1, &Engine::DecrBy},
      {"append", 3, "write denyoom fast", 1, 1, 1, &Engine::Append},
      {"strlen", 2, "readonly fast", 1, 1, 1, &Engine::StrLen},
      // Keys.
      {"del", -2, "write", 1, -1, 1, &Engine::Del},
      {"unlink", -2, "write fast", 1, -1, 1, &Engine::Del},
      {"exists", -2, "readonly fast", 1, -1, 1, &Engine::Exists},
      {"expire", -3, "write fast", 1, 1, 1, &Engine::Expire},
      {"pexpire", -3, "write fast", 1, 1, 1, &Engine::PExpire},
      {"ttl", 2, "readonly fast", 1, 1, 1, &Engine::Ttl},
      {"pttl", 2, "readonly fast", 1, 1, 1, &Engine::PTtl},
      {"persist", 2, "write fast", 1, 1, 1, &Engine::Persist},
      {"type", 2, "readonly fast", 1, 1, 1, &Engine::Type},
      {"dbsize", 1, "readonly fast", 0, 0, 0, &Engine::DbSize},
      {"flushall", -1, "write", 0, 0, 0, &Engine::FlushAll},
      {"flushdb", -1, "write", 0, 0, 0, &Engine::FlushAll},
      {"select", 2, "loading stale fast", 0, 0, 0, &Engine::Select},
      // Connection and server.
      {"ping", -1, "fast", 0, 0, 0, &Engine::Ping},
      {"echo", 2, "fast", 0, 0, 0, &Engine::Echo},
      {"quit", -1, "allow_busy fast", 0, 0, 0, &Engine::Quit},
      {"shutdown", -1, "admin noscript loading stale", 0, 0, 0, &Engine::Shutdown},
      {"client", -2, "noscript loading stale", 0, 0, 0, &Engine::ClientCmd},
      {"command", -1, "loading stale", 0, 0, 0, &Engine::CommandCmd},
      {"config", -2, "admin noscript loading stale", 0, 0, 0, &Engine::ConfigCmd},
      {"info", -1, "loading stale", 0, 0, 0, &Engine::Info},
      {"memory", -2, "readonly", 0, 0, 0, &Engine::MemoryCmd},
      {"debug", -2, "admin noscript loading stale", 0, 0, 0, &Engine::DebugCmd},
      {"latency", -2, "admin noscript loading stale", 0, 0, 0, &Engine::LatencyCmd},
  };
  return table;
}

}  // namespace mova::kv
