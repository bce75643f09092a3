// mova-kv — a Redis-protocol cache whose keys and values live in mova. Usage, as redis-server's:
//
//   mova-kv [--port 6379] [--bind 127.0.0.1] [--maxmemory 100mb] [--maxmemory-policy allkeys-lru]
//           [--activedefrag yes] [--<any CONFIG SET parameter> <value>]...
//           [--store mova|malloc] [--mova-options "decay_ms=200,..."] [--port-file F]
//
// --store malloc keeps the objects in malloc instead (the control run; LD_PRELOAD picks the malloc);
// --mova-options takes MOVA_OPTIONS's syntax for the pool; --port 0 takes a free port, and --port-file writes
// the port taken into F once the server listens.
#include <malloc.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <string_view>

#include "absl/strings/numbers.h"
#include "mova-kv/absl_view.h"
#include "mova-kv/engine.h"
#include "mova-kv/object_store.h"
#include "mova-kv/server.h"

namespace {

int Usage(const char* why) {
  std::fprintf(stderr,
               "mova-kv: %s\nusage: mova-kv [--port N] [--bind ADDR] [--store mova|malloc] [--mova-options TEXT]\n"
               "               [--port-file FILE] [--<config parameter> <value>]...\n",
               why);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  // The server's own large buffers (the hash set's array, a long request or reply) come from mmap and go back to
  // the kernel when freed, at glibc's default threshold: setting it turns off glibc's dynamic threshold, which
  // after the first such free would keep later ones in the heap, resident. Under jemalloc or mimalloc (LD_PRELOAD)
  // this does nothing.
  mallopt(M_MMAP_THRESHOLD, 128 * 1024);
  mova::kv::ServerConfig config;
  std::string store_kind = "mova", mova_options, port_file;
  int port = 6379;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg.size() < 3 || arg.substr(0, 2) != "--") return Usage(("not an option: " + std::string(arg)).c_str());
    if (i + 1 >= argc) return Usage(("no value for " + std::string(arg)).c_str());
    const std::string_view name = arg.substr(2), value = argv[++i];
    if (name == "port") {
      if (!absl::SimpleAtoi(mova::kv::Av(value), &port) || port < 0 || port > 65535) return Usage("--port takes 0 to 65535");
    } else if (name == "bind") {
      config.bind = std::string(value);
    } else if (name == "store") {
      store_kind = std::string(value);
    } else if (name == "mova-options") {
      mova_options = std::string(value);
    } else if (name == "port-file") {
      port_file = std::string(value);
    } else if (absl::Status s = config.Set(name, value); !s.ok()) {
      return Usage(std::string(s.message()).c_str());
    }
  }

  std::unique_ptr<mova::kv::ObjectStore> store;
  if (store_kind == "mova") {
    mova::PoolOptions options;
    if (absl::Status s = mova::ParsePoolOptions(mova_options, options); !s.ok()) {
      return Usage(std::string(s.message()).c_str());
    }
    absl::StatusOr<std::unique_ptr<mova::kv::ObjectStore>> made = mova::kv::MakeMovaStore(options);
    if (!made.ok()) {
      std::fprintf(stderr, "mova-kv: %s\n", std::string(made.status().message()).c_str());
      return 1;
    }
    store = std::move(*made);
  } else if (store_kind == "malloc") {
    store = mova::kv::MakeMallocStore();
  } else {
    return Usage("--store takes mova or malloc");
  }

  if (config.activedefrag && !store->CanDefragment()) {
    return Usage("--activedefrag yes needs a store that moves objects (--store mova)");
  }
  mova::kv::Engine engine(*store, config);
  absl::StatusOr<std::unique_ptr<mova::kv::Server>> server = mova::kv::Server::Create(engine, config.bind, port);
  if (!server.ok()) {
    std::fprintf(stderr, "mova-kv: %s\n", std::string(server.status().message()).c_str());
    return 1;
  }
  engine.set_port((*server)->port());
  if (!port_file.empty()) {
    const std::string tmp = port_file + ".tmp";
    std::ofstream(tmp) << (*server)->port() << "\n";
    std::rename(tmp.c_str(), port_file.c_str());  // whole or absent: a reader never sees half a number
  }
  std::fprintf(stderr, "mova-kv: store %s, listening on %s:%d\n", store->name().data(), config.bind.c_str(),
               (*server)->port());
  (*server)->Run();
  std::fprintf(stderr, "mova-kv: stopped\n");
  return 0;
}
