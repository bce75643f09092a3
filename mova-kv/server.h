// mova-kv/server.h — the network side: a single-threaded RESP2 server on standalone Asio (C++20 coroutines),
// with one coroutine per connection, the cron on a timer, and SIGINT / SIGTERM to stop.
//
// Types: Server.
// Each connection reads, parses every whole request it has (pipelining: all of them before one write), runs
// them through the Engine and writes the replies. A protocol error is answered and closes that connection
// only; a connection whose unparsed input passes client-query-buffer-limit is closed (as Redis's
// "max query buffer length" does); a client that leaves mid-request leaves nothing behind (nothing it sent
// is applied until a request is whole). Everything runs on the thread that calls Run.
#ifndef MOVA_KV_SERVER_H_
#define MOVA_KV_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "mova-kv/engine.h"

namespace mova::kv {

class Server {
 public:
  static constexpr int kMaxClients = 10000;

  // Binds `bind`:`port` (0: a free port) for `engine`.
  static absl::StatusOr<std::unique_ptr<Server>> Create(Engine& engine, const std::string& bind, int port);
  ~Server();

  int port() const;
  // Serves until SHUTDOWN, SIGINT or SIGTERM.
  void Run();

 private:
  struct State;
  explicit Server(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace mova::kv

#endif  // MOVA_KV_SERVER_H_
