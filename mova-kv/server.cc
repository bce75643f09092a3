// mova-kv/server.cc — see server.h.
#include "mova-kv/server.h"

#include <array>
#include <csignal>
#include <cstdio>

#include <asio.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace mova::kv {

using asio::ip::tcp;

struct Server::State {
  explicit State(Engine& e) : engine(e), acceptor(io), signals(io, SIGINT, SIGTERM) {}

  asio::awaitable<void> Listen();
  asio::awaitable<void> Session(tcp::socket socket);
  asio::awaitable<void> Cron();

  Engine& engine;
  asio::io_context io;
  tcp::acceptor acceptor;
  asio::signal_set signals;
};

asio::awaitable<void> Server::State::Listen() {
  for (;;) {
    asio::error_code ec;
    tcp::socket socket = co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      continue;  // EMFILE and the like: this connection is lost, the server goes on
    }
    asio::co_spawn(io, Session(std::move(socket)), asio::detached);
  }
}

asio::awaitable<void> Server::State::Session(tcp::socket socket) {
  asio::error_code ec;
  socket.set_option(tcp::no_delay(true), ec);
  Client client;
  client.id = engine.OnConnect();
  client.created = absl::Now();
  if (const tcp::endpoint peer = socket.remote_endpoint(ec); !ec) {
    client.addr = absl::StrCat(peer.address().to_string(), ":", peer.port());
  }
  std::string out;
  if (engine.connected_clients() > kMaxClients) {
    engine.OnRejectedConnection();
    out = "-ERR max number of clients reached\r\n";
    co_await asio::async_write(socket, asio::buffer(out), asio::redirect_error(asio::use_awaitable, ec));
    socket.close(ec);
    engine.OnDisconnect();
    co_return;
  }
  RequestParser parser(engine.parse_limits());
  std::string in;
  std::array<char, 64 * 1024> buf;
  bool open = true;
  while (open) {
    const std::size_t n =
        co_await socket.async_read_some(asio::buffer(buf), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;  // the client left (mid-request or not): nothing half-read was applied
    in.append(buf.data(), n);
    parser.set_limits(engine.parse_limits());  // a CONFIG SET of proto-max-bulk-len counts from the next read
    std::size_t pos = 0;
    for (;;) {
      std::size_t used = 0;
      const ParseStatus s = parser.Parse(std::string_view(in).substr(pos), &used);
      pos += used;
      if (s == ParseStatus::kNeedMore) break;
      if (s == ParseStatus::kError) {
        Reply(&out).Error(absl::StrCat("ERR ", parser.error()));
        client.close_after_reply = true;
        break;
      }
      engine.Execute(client, parser.args(), &out);
      if (client.close_after_reply) break;
      if (out.size() >= 1024 * 1024) {  // a long pipeline: send what is answered so far
        co_await asio::async_write(socket, asio::buffer(out), asio::redirect_error(asio::use_awaitable, ec));
        if (ec) break;
        out.clear();
      }
    }
    if (ec) break;
    in.erase(0, pos);
    if (!out.empty()) {
      co_await asio::async_write(socket, asio::buffer(out), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
      out.clear();
    }
    if (client.close_after_reply) open = false;
    if (in.size() > engine.config().client_query_buffer_limit) {
      std::fprintf(stderr, "mova-kv: closing client %s: query buffer of %zu bytes passed client-query-buffer-limit\n",
                   client.addr.c_str(), in.size());
      open = false;
    }
    if (engine.shutdown_requested()) io.stop();
  }
  socket.shutdown(tcp::socket::shutdown_both, ec);
  socket.close(ec);
  engine.OnDisconnect();
}

asio::awaitable<void> Server::State::Cron() {
  asio::steady_timer timer(io);
  for (;;) {
    timer.expires_after(std::chrono::milliseconds(1000 / engine.config().hz));
    asio::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    engine.Cron();
  }
}

absl::StatusOr<std::unique_ptr<Server>> Server::Create(Engine& engine, const std::string& bind, int port) {
  auto state = std::make_unique<State>(engine);
  asio::error_code ec;
  const asio::ip::address address = asio::ip::make_address(bind, ec);
  if (ec) return absl::InvalidArgumentError(absl::StrCat("bind: '", bind, "' is not an IP address"));
  const tcp::endpoint endpoint(address, static_cast<unsigned short>(port));
  state->acceptor.open(endpoint.protocol(), ec);
  if (!ec) state->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) state->acceptor.bind(endpoint, ec);
  if (!ec) state->acceptor.listen(511, ec);  // Redis's tcp-backlog
  if (ec) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", bind, ":", port, ": ", ec.message()));
  }
  return std::unique_ptr<Server>(new Server(std::move(state)));
}

Server::Server(std::unique_ptr<State> state) : state_(std::move(state)) {}
Server::~Server() = default;

int Server::port() const { return state_->acceptor.local_endpoint().port(); }

void Server::Run() {
  State& s = *state_;
  s.signals.async_wait([&s](const asio::error_code& ec, int) {
    if (!ec) s.io.stop();
  });
  asio::co_spawn(s.io, s.Listen(), asio::detached);
  asio::co_spawn(s.io, s.Cron(), asio::detached);
  s.io.run();
}

}  // namespace mova::kv
