// stress/fuzz_main.cc — mova-fuzz, the differential fuzzer: random sequences of pool operations checked
// against a model of what every call must answer.
//
// Types: Model (the live objects: handle, size, content seed, pins held), Fuzzer (one pool of one option set),
// OptionSet. Operations: allocate, free, pin-write, pin-read-verify, size_of, hold / drop a Pinned across
// moves, pin_detached / unpin, compact, defragment, release_free_memory, flush_thread_cache; and handles the
// pool must refuse: stale and double-freed (kept from earlier lives), a live handle with its size field
// changed, unissued indices, the null handle, another pool's handles, live handles with check bits flipped.
// OS failures are injected at random through the OS seam in the option sets that ask for them; the C API is
// one of the option sets. After every compaction and every few thousand operations all objects are verified
// byte for byte, and the pool's counters (live objects, live bytes) must equal the model's.
//
// A mismatch is any answer the contract in mova/pool.h rules out; each is printed with the operations that
// led to it, and the exit code is 1. A "slip" is a forged or re-keyed handle the pool accepted, which the
// contract allows with a chance of about 2^-20 per handle (the model then follows what the pool did); slips
// are counted and printed, not failed.
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <deque>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "mova/pool.h"
#include "os/fault_injecting_os.h"
#include "stress/content.h"
#include "stress/fuzz_target.h"

ABSL_FLAG(std::uint64_t, ops, 1000000, "operations in all");
ABSL_FLAG(std::uint64_t, seed, 1, "random seed (the same seed replays the same operations)");
ABSL_FLAG(std::uint64_t, ops_per_pool, 20000, "operations on one pool before the next option set");
ABSL_FLAG(std::string, sets, "all", "comma-separated option set names, or all");
ABSL_FLAG(bool, verbose, false, "print every operation");

namespace mova::stress {
namespace {

struct OptionSet {
  const char* name = "";
  bool c_api = false;
  bool faults = false;      // inject OS failures at random
  bool may_exhaust = false; // allocation may run out (small limit, arena or table)
  PoolOptions options;
};

std::vector<OptionSet> AllSets() {
  std::vector<OptionSet> sets;
  auto add = [&](const char* name, auto change) {
    OptionSet s;
    s.name = name;
    change(s);
    sets.push_back(s);
  };
  add("default", [](OptionSet&) {});
  add("decay", [](OptionSet& s) { s.options.decay = std::chrono::milliseconds(20); });
  add("no-uffd", [](OptionSet& s) { s.options.move_by_userfaultfd = false; });
  add("no-uffd-no-mremap", [](OptionSet& s) {
    s.options.move_by_userfaultfd = false;
    s.options.move_by_mremap = false;
  });
  add("collapse", [](OptionSet& s) { s.options.collapse_dense_regions = true; });
  add("small-limit", [](OptionSet& s) {
    s.options.memory_limit = Bytes(std::size_t{6} << 20);
    s.may_exhaust = true;
  });
  add("small-arena", [](OptionSet& s) {
    s.options.arena_capacity = Bytes(std::size_t{8} << 20);
    s.may_exhaust = true;
  });
  add("small-table", [](OptionSet& s) {
    s.options.max_handles = 1500;
    s.may_exhaust = true;
  });
  add("checked", [](OptionSet& s) { s.options.checked = true; });
  add("background", [](OptionSet& s) {
    s.options.background_interval = std::chrono::milliseconds(2);
    s.options.background_threshold = 0.05;
  });
  add("c-api", [](OptionSet& s) { s.c_api = true; });
  add("faults", [](OptionSet& s) {
    s.faults = true;
    s.may_exhaust = true;
  });
  add("faults-decay-no-uffd", [](OptionSet& s) {
    s.faults = true;
    s.may_exhaust = true;
    s.options.decay = std::chrono::milliseconds(5);
    s.options.move_by_userfaultfd = false;
  });
  add("faults-checked-background", [](OptionSet& s) {
    s.faults = true;
    s.may_exhaust = true;
    s.options.checked = true;
    s.options.background_interval = std::chrono::milliseconds(3);
    s.options.background_threshold = 0.05;
  });
  return sets;
}

struct Totals {
  std::uint64_t ops = 0, verifications = 0, objects_moved = 0, blocks_migrated = 0, refused = 0;
  std::uint64_t exhausted = 0, faults_armed = 0, slips = 0, mismatches = 0, pools = 0;
};

struct Obj {
  Handle h;
  std::size_t size = 0;
  std::uint64_t seed = 0;
  std::vector<Pinned> held;             // RAII pins kept across operations (C++ target)
  std::vector<const std::byte*> held_at;
  int detached = 0;                     // pin_detached pins not yet unpinned
  const std::byte* detached_at = nullptr;
  bool pinned() const { return !held.empty() || detached > 0; }
};

class Fuzzer {
 public:
  Fuzzer(const OptionSet& set, std::uint64_t seed, Totals& totals)
      : set_(set), rng_(seed), totals_(totals), verbose_(absl::GetFlag(FLAGS_verbose)) {}

  bool Init() {
    PoolOptions o = set_.options;
    if (set_.faults) o.os = &fos_;
    if (set_.c_api) {
      mova_options c;
      mova_options_init(&c);
      c.decay_ms = static_cast<std::uint32_t>(o.decay.count());
      c.checked = o.checked;
      absl::StatusOr<std::unique_ptr<CTarget>> t = CTarget::Create(c);
      if (!t.ok()) return Mismatch(absl::StrFormat("create: %s", t.status().ToString()));
      target_ = std::move(*t);
    } else {
      absl::StatusOr<std::unique_ptr<Pool>> p = Pool::Create(o);
      if (!p.ok()) return Mismatch(absl::StrFormat("create: %s", p.status().ToString()));
      target_ = std::make_unique<CppTarget>(std::move(*p));
    }
    // Another pool whose handles this one must refuse.
    other_ = Pool::Create().value();
    for (int i = 0; i < 16; ++i) other_handles_.push_back(other_->allocate(1 + rng_() % 300).value());
    return true;
  }

  void Run(std::uint64_t ops) {
    for (std::uint64_t i = 0; i < ops && totals_.mismatches < 20; ++i) {
      Step();
      ++totals_.ops;
      if (i % 4096 == 4095) VerifyAll("periodic");
    }
    Teardown();
  }

 private:
  bool checked() const { return set_.options.checked; }

  void Log(std::string line) {
    if (verbose_) std::printf("[%s] %s\n", set_.name, line.c_str());
    recent_.push_back(std::move(line));
    if (recent_.size() > 24) recent_.pop_front();
  }

  bool Mismatch(const std::string& what) {
    ++totals_.mismatches;
    std::printf("MISMATCH [%s, %s API] %s\n  recent operations:\n", set_.name, target_ ? target_->api() : "?",
                what.c_str());
    for (const std::string& r : recent_) std::printf("    %s\n", r.c_str());
    return false;
  }

  std::size_t RandomSize() {
    const std::uint64_t r = rng_() % 100;
    if (r < 70) return 1 + rng_() % 512;
    if (r < 90) return 513 + rng_() % 7680;
    if (r < 99) return 8193 + rng_() % (65536 - 8192);
    return 65537 + rng_() % 400000;
  }

  Obj* RandomObj() { return objs_.empty() ? nullptr : &objs_[rng_() % objs_.size()]; }

  // Writes the object's content through a pin (RAII for C++, detached for the C API).
  bool Write(Obj& o) {
    o.seed = rng_();
    if (set_.c_api) {
      absl::StatusOr<std::span<std::byte>> b = target_->PinDetached(o.h, true);
      if (!b.ok()) return Mismatch(absl::StrFormat("pin-write %#x: %s", o.h.raw, b.status().ToString()));
      Fill(*b, o.seed);
      return Expect("unpin after write", target_->Unpin(o.h), absl::StatusCode::kOk);
    }
    absl::StatusOr<Pinned> p = target_->pool().pin(o.h, Access::kWrite);
    if (!p.ok()) return Mismatch(absl::StrFormat("pin-write %#x: %s", o.h.raw, p.status().ToString()));
    if (p->size() != o.size) return Mismatch(absl::StrFormat("pin-write %#x: size %u, want %u", o.h.raw, p->size(), o.size));
    Fill(p->mutable_bytes(), o.seed);
    return true;
  }

  bool Verify(const Obj& o, const char* why) {
    ++totals_.verifications;
    for (std::size_t k = 0; k < o.held.size(); ++k) {  // a pinned object never moves
      if (o.held[k].data() != o.held_at[k] || !Matches(o.held[k].bytes(), o.seed)) {
        return Mismatch(absl::StrFormat("%s: held pin of %#x moved or lost its bytes", why, o.h.raw));
      }
    }
    std::span<const std::byte> bytes;
    Pinned pin;
    if (set_.c_api) {
      absl::StatusOr<std::span<std::byte>> b = target_->PinDetached(o.h, false);
      if (!b.ok()) return Mismatch(absl::StrFormat("%s: pin %#x: %s", why, o.h.raw, b.status().ToString()));
      bytes = *b;
    } else {
      absl::StatusOr<Pinned> p = target_->pool().pin(o.h, Access::kRead);
      if (!p.ok()) return Mismatch(absl::StrFormat("%s: pin %#x: %s", why, o.h.raw, p.status().ToString()));
      pin = std::move(*p);
      bytes = pin.bytes();
    }
    bool ok = bytes.size() == o.size && Matches(bytes, o.seed);
    if (o.detached > 0 && bytes.data() != o.detached_at) ok = false;
    if (set_.c_api) (void)target_->Unpin(o.h);
    if (!ok) return Mismatch(absl::StrFormat("%s: object %#x (%u B) lost its bytes", why, o.h.raw, o.size));
    return true;
  }

  bool VerifyAll(const char* why) {
    for (const Obj& o : objs_) {
      if (!Verify(o, why)) return false;
    }
    const PoolStats s = target_->pool().stats();
    std::uint64_t bytes = 0;
    for (const Obj& o : objs_) bytes += o.size;
    if (s.live_objects != objs_.size() || s.live_bytes != bytes) {
      return Mismatch(absl::StrFormat("%s: stats say %u objects / %u B live, the model %u / %u", why, s.live_objects,
                                      s.live_bytes, objs_.size(), bytes));
    }
    return true;
  }

  bool Expect(const std::string& what, const absl::Status& s, absl::StatusCode want) {
    if (s.code() == want) return true;
    return Mismatch(absl::StrFormat("%s: got %s, want %s", what, s.ToString(), absl::StatusCodeToString(want)));
  }

  void Remember(Handle h) {
    dead_.push_back(h);
    if (dead_.size() > 512) dead_.erase(dead_.begin(), dead_.begin() + 256);
  }

  Obj* LiveAt(std::uint32_t index) {
    for (Obj& o : objs_) {
      if (o.h.index() == index) return &o;
    }
    return nullptr;
  }

  // A refused handle must change nothing; one accepted although the contract only makes that unlikely is a
  // slip (the model follows it); one accepted although the contract rules it out is a mismatch.
  void BadHandle() {
    if (checked()) return;  // misuse aborts in checked mode
    Handle bad;
    bool guaranteed = true;  // refusal is certain for this kind (mova/pool.h)
    const char* kind;
    Obj* o = RandomObj();
    const std::uint64_t pick = rng_() % 6;
    if (pick == 0 && !dead_.empty()) {
      bad = dead_[rng_() % dead_.size()];
      kind = "stale";
      guaranteed = target_->pool().stats().handle_pages_rekeyed == 0;
    } else if (pick == 1 && o != nullptr) {
      std::uint16_t f = o->h.size_field();
      while (f == o->h.size_field()) f = static_cast<std::uint16_t>(rng_() % 4 == 0 ? rng_() : f + 1 + rng_() % 64);
      bad = Handle::Make(o->h.index(), o->h.check(), f);
      kind = "size field changed";
    } else if (pick == 2 && o != nullptr) {
      bad = Handle::Make(o->h.index(), o->h.check() ^ static_cast<std::uint32_t>(1 + rng_() % Handle::kCheckMask),
                         o->h.size_field());
      kind = "check changed";
      guaranteed = false;
    } else if (pick == 3) {
      bad = other_handles_[rng_() % other_handles_.size()];
      kind = "another pool's";
      guaranteed = false;
    } else if (pick == 4) {
      bad = Handle::Make((1u << 27) + static_cast<std::uint32_t>(rng_() % 1000), static_cast<std::uint32_t>(rng_()),
                         static_cast<std::uint16_t>(rng_()));
      kind = "unissued index";
    } else {
      bad = rng_() % 2 ? kNullHandle : Handle{rng_()};
      kind = bad.is_null() ? "null" : "random";
      guaranteed = bad.is_null();
    }
    const std::uint64_t op = rng_() % 4;
    Log(absl::StrFormat("bad handle (%s) %#x, op %d", kind, bad.raw, op));
    absl::Status s;
    bool pinned_by_it = false;
    if (op == 0) {
      s = target_->Free(bad);
    } else if (op == 1) {
      s = target_->SizeOf(bad).status();
    } else if (op == 2) {
      absl::StatusOr<std::span<std::byte>> b = target_->PinDetached(bad, false);
      s = b.status();
      pinned_by_it = b.ok();
    } else {
      s = target_->Unpin(bad);
    }
    if (!s.ok()) {
      ++totals_.refused;
      if (s.code() != absl::StatusCode::kInvalidArgument && s.code() != absl::StatusCode::kNotFound &&
          !(op == 3 && s.code() == absl::StatusCode::kFailedPrecondition)) {
        Mismatch(absl::StrFormat("bad handle (%s) %#x: unexpected %s", kind, bad.raw, s.ToString()));
      }
      return;
    }
    if (guaranteed) {
      Mismatch(absl::StrFormat("bad handle (%s) %#x was accepted by op %d", kind, bad.raw, op));
    } else {
      ++totals_.slips;
      std::printf("slip [%s]: a %s handle %#llx was accepted by op %d (allowed with a chance of about 2^-20)\n",
                  set_.name, kind, static_cast<unsigned long long>(bad.raw), static_cast<int>(op));
    }
    // Follow what the pool did to the object living at that index.
    Obj* hit = LiveAt(bad.index());
    if (hit == nullptr) return;
    if (op == 0) {
      std::swap(*hit, objs_.back());
      objs_.pop_back();
    } else if (op == 2 && pinned_by_it) {
      (void)target_->Unpin(bad);
    } else if (op == 3) {
      --hit->detached;
    }
  }

  void MaybeArmFault() {
    if (!set_.faults) return;
    if (armed_ops_ > 0) {
      if (--armed_ops_ == 0) {
        for (int k = 0; k < static_cast<int>(os::OsOp::kCount); ++k) fos_.Clear(static_cast<os::OsOp>(k));
        Log("faults cleared");
      }
      return;
    }
    if (rng_() % 500 != 0) return;
    struct Choice {
      os::OsOp op;
      int err;
      bool after_doing = false;  // MovePages: the pages move, then the error comes with nothing counted
    };
    static constexpr Choice kChoices[] = {
        {os::OsOp::kPopulate, ENOMEM},  {os::OsOp::kPopulate, EAGAIN},       {os::OsOp::kDiscard, EINVAL},
        {os::OsOp::kDiscard, ENOMEM},   {os::OsOp::kMovePages, EBUSY},       {os::OsOp::kMovePages, ENOMEM},
        {os::OsOp::kMovePages, EINVAL}, {os::OsOp::kMovePages, EEXIST, true}, {os::OsOp::kRemap, ENOMEM},
        {os::OsOp::kCollapseHugepages, EAGAIN}, {os::OsOp::kPagesPresent, EACCES},
    };
    const Choice& c = kChoices[rng_() % std::size(kChoices)];
    const std::int64_t after = static_cast<std::int64_t>(rng_() % 8);
    if (c.after_doing) {
      fos_.MisreportMovesAfter(after, c.err);
    } else {
      fos_.FailAfter(c.op, after, c.err);
    }
    armed_ops_ = 50 + rng_() % 400;
    ++totals_.faults_armed;
    Log(absl::StrFormat("fault armed: op %d fails with errno %d after %d calls", static_cast<int>(c.op), c.err, after));
  }

  bool faults_armed() const { return armed_ops_ > 0; }

  void Step() {
    MaybeArmFault();
    const std::uint64_t r = rng_() % 1000;
    const bool grow = objs_.size() < 600;
    const bool shrink = objs_.size() > 2500;
    if (r < (grow ? 400u : shrink ? 100u : 250u)) {
      const std::size_t size = RandomSize();
      absl::StatusOr<Handle> h = target_->Allocate(size);
      Log(absl::StrFormat("allocate %u -> %s", size, h.ok() ? absl::StrFormat("%#x", h->raw) : h.status().ToString()));
      if (!h.ok()) {
        if (h.status().code() == absl::StatusCode::kResourceExhausted && (set_.may_exhaust || faults_armed())) {
          ++totals_.exhausted;
          return;
        }
        Mismatch(absl::StrFormat("allocate %u: %s", size, h.status().ToString()));
        return;
      }
      Obj o;
      o.h = *h;
      o.size = size;
      objs_.push_back(std::move(o));
      Write(objs_.back());
    } else if (r < (shrink ? 650u : 480u)) {
      if (objs_.empty()) return;
      const std::size_t k = rng_() % objs_.size();
      Obj& o = objs_[k];
      if (o.pinned() && checked()) return;  // would abort
      const absl::Status s = target_->Free(o.h);
      Log(absl::StrFormat("free %#x (pinned %d) -> %s", o.h.raw, o.pinned(), s.ToString()));
      if (o.pinned()) {
        Expect("free of a pinned object", s, absl::StatusCode::kFailedPrecondition);
        return;
      }
      if (!Expect(absl::StrFormat("free %#x", o.h.raw), s, absl::StatusCode::kOk)) return;
      Remember(o.h);
      std::swap(o, objs_.back());
      objs_.pop_back();
    } else if (r < 560) {
      if (Obj* o = RandomObj(); o != nullptr && !o->pinned()) {
        Log(absl::StrFormat("pin-write %#x", o->h.raw));
        Write(*o);
      }
    } else if (r < 680) {
      if (Obj* o = RandomObj()) {
        Log(absl::StrFormat("pin-read-verify %#x", o->h.raw));
        Verify(*o, "pin-read-verify");
      }
    } else if (r < 720) {
      if (Obj* o = RandomObj()) {
        absl::StatusOr<std::size_t> n = target_->SizeOf(o->h);
        Log(absl::StrFormat("size_of %#x", o->h.raw));
        if (!n.ok() || *n != o->size) {
          Mismatch(absl::StrFormat("size_of %#x: %s, want %u", o->h.raw, n.ok() ? std::to_string(*n) : n.status().ToString(), o->size));
        }
      }
    } else if (r < 750) {  // hold a pin across later operations (and moves)
      Obj* o = RandomObj();
      if (o == nullptr) return;
      if (set_.c_api || rng_() % 2 == 0) {
        absl::StatusOr<std::span<std::byte>> b = target_->PinDetached(o->h, false);
        Log(absl::StrFormat("pin_detached %#x", o->h.raw));
        if (!b.ok()) {
          Mismatch(absl::StrFormat("pin_detached %#x: %s", o->h.raw, b.status().ToString()));
          return;
        }
        if (o->detached > 0 && b->data() != o->detached_at) Mismatch("a detached-pinned object moved");
        o->detached_at = b->data();
        ++o->detached;
      } else {
        absl::StatusOr<Pinned> p = target_->pool().pin(o->h, Access::kRead);
        Log(absl::StrFormat("hold pin %#x", o->h.raw));
        if (!p.ok()) {
          Mismatch(absl::StrFormat("hold pin %#x: %s", o->h.raw, p.status().ToString()));
          return;
        }
        o->held_at.push_back(p->data());
        o->held.push_back(std::move(*p));
      }
    } else if (r < 790) {  // drop a held pin
      Obj* o = RandomObj();
      if (o == nullptr) return;
      if (o->detached > 0) {
        Verify(*o, "before unpin");
        Log(absl::StrFormat("unpin %#x", o->h.raw));
        if (Expect(absl::StrFormat("unpin %#x", o->h.raw), target_->Unpin(o->h), absl::StatusCode::kOk)) --o->detached;
      } else if (!o->held.empty()) {
        Verify(*o, "before dropping a pin");
        Log(absl::StrFormat("drop pin %#x", o->h.raw));
        o->held.pop_back();
        o->held_at.pop_back();
      } else if (!checked()) {  // unpin without a detached pin is refused
        Log(absl::StrFormat("unpin without pin %#x", o->h.raw));
        Expect(absl::StrFormat("unpin %#x with no detached pin", o->h.raw), target_->Unpin(o->h),
               absl::StatusCode::kFailedPrecondition);
      }
    } else if (r < 880) {
      BadHandle();
    } else if (r < 890) {
      Log("compact");
      totals_.objects_moved += target_->Compact();
      VerifyAll("after compact");
    } else if (r < 896) {
      Log("defragment");
      totals_.blocks_migrated += target_->Defragment();
      VerifyAll("after defragment");
    } else if (r < 925) {
      Log("release_free_memory");
      target_->ReleaseFreeMemory();
    } else if (r < 940) {
      Log("flush_thread_cache");
      target_->FlushThreadCache();
    } else {
      // Bursts of frees make sparse blocks for the compactor.
      for (int k = 0; k < 8 && !objs_.empty(); ++k) {
        Obj& o = objs_[rng_() % objs_.size()];
        if (o.pinned()) continue;
        Log(absl::StrFormat("burst free %#x", o.h.raw));
        if (!Expect("burst free", target_->Free(o.h), absl::StatusCode::kOk)) return;
        Remember(o.h);
        std::swap(o, objs_.back());
        objs_.pop_back();
      }
    }
  }

  void Teardown() {
    for (int k = 0; k < static_cast<int>(os::OsOp::kCount); ++k) fos_.Clear(static_cast<os::OsOp>(k));
    armed_ops_ = 0;
    VerifyAll("teardown");
    for (Obj& o : objs_) {
      o.held.clear();
      for (; o.detached > 0; --o.detached) (void)target_->Unpin(o.h);
      Expect("teardown free", target_->Free(o.h), absl::StatusCode::kOk);
    }
    objs_.clear();
    const PoolStats s = target_->pool().stats();
    if (s.live_objects != 0) Mismatch(absl::StrFormat("teardown: %u objects still live", s.live_objects));
  }

  const OptionSet& set_;
  std::mt19937_64 rng_;
  Totals& totals_;
  const bool verbose_;
  os::FaultInjectingOs fos_;
  std::unique_ptr<FuzzTarget> target_;
  std::unique_ptr<Pool> other_;
  std::vector<Handle> other_handles_;
  std::vector<Obj> objs_;
  std::vector<Handle> dead_;
  std::deque<std::string> recent_;
  std::uint64_t armed_ops_ = 0;
};

}  // namespace
}  // namespace mova::stress

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  using mova::stress::OptionSet;
  std::vector<OptionSet> sets;
  const std::string wanted = "," + absl::GetFlag(FLAGS_sets) + ",";
  for (const OptionSet& s : mova::stress::AllSets()) {
    if (wanted == ",all," || wanted.find("," + std::string(s.name) + ",") != std::string::npos) sets.push_back(s);
  }
  if (sets.empty()) {
    std::fprintf(stderr, "mova-fuzz: no option set matches --sets=%s\n", absl::GetFlag(FLAGS_sets).c_str());
    return 2;
  }
  const std::uint64_t total = absl::GetFlag(FLAGS_ops), chunk = std::max<std::uint64_t>(1, absl::GetFlag(FLAGS_ops_per_pool));
  const std::uint64_t seed = absl::GetFlag(FLAGS_seed);
  mova::stress::Totals t;
  const absl::Time start = absl::Now();
  for (std::uint64_t round = 0; t.ops < total && t.mismatches == 0; ++round) {
    const OptionSet& set = sets[round % sets.size()];
    mova::stress::Fuzzer f(set, seed * 1000003 + round, t);
    ++t.pools;
    if (!f.Init()) break;
    f.Run(std::min(chunk, total - t.ops));
  }
  const double secs = absl::ToDoubleSeconds(absl::Now() - start);
  std::printf("mova-fuzz: seed %" PRIu64 ", %zu option sets, %" PRIu64 " pools, %" PRIu64
              " operations in %.1f s (%.0f ops/s)\n",
              seed, sets.size(), t.pools, t.ops, secs, t.ops / std::max(secs, 1e-9));
  std::printf("  verifications %" PRIu64 ", objects moved by compact %" PRIu64 ", blocks migrated %" PRIu64
              ", bad handles refused %" PRIu64 ", allocations refused as exhausted %" PRIu64
              ", OS faults armed %" PRIu64 "\n",
              t.verifications, t.objects_moved, t.blocks_migrated, t.refused, t.exhausted, t.faults_armed);
  std::printf("  slips (forged or re-keyed handles accepted, contract: ~2^-20 each) %" PRIu64 "\n", t.slips);
  std::printf("  mismatches %" PRIu64 "\n", t.mismatches);
  return t.mismatches == 0 ? 0 : 1;
}
