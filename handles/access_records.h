// handles/access_records.h — per-thread access records: how pins and frees keep off shared cache lines.
//
// Types: AccessRecords (the records of one pool); Tag and AccessRecord, one thread's record, are in
// access_record.h.
// A thread announces in its own record (plain stores to a cache line only it writes) what it is about to do
// to an entry: `freeing` names the entry a free is retiring, `pins[]` the entries it holds pinned. A mover
// claims entries (MOVING, entry_word.h), calls Barrier() once for the whole batch, then reads every record:
// an entry a record names is not moved (move_claims.h). The thread's side is: store the tag,
// FenceAfterAnnounce(), load the entry word. This is Dekker's handshake with an asymmetric fence: either the
// mover's read after its barrier sees the tag, or the thread's load sees MOVING (the thread then withdraws the
// tag and waits for the move to end). So a pin or a free costs stores to the thread's own line, never an RMW
// on a shared word.
// Barrier: membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) when the kernel has it (registered once); the
// thread's fence is then a compiler barrier. Without it both sides pay a full fence (atomic_thread_fence).
// Read sections (the same handshake, for readers that announce no entry at all): a thread entering a section
// stores the read epoch it loaded into its record's `reading` (EnterRead; nested sections keep the outermost
// one's), and withdraws it when the section ends. A mover that published objects at new places stamps their
// old places with NextReadEpoch() (the epoch before its increment) and keeps them unchanged; after a Barrier,
// a place stamped s may be reused once SafeReadEpoch() > s: every section that may have loaded the old place
// began at an epoch <= s and is shown in its record until it ends (the Barrier makes a section's store
// visible, or else its later loads see the publish), and a section that loaded an epoch > s synchronised with
// the stamp, which came after the publish. Readers never wait; old places wait for readers.
// Records live as long as the AccessRecords: a Pinned may outlive its thread's cache. A thread gives its record
// back when its cache retires and a later thread takes it over, with any pins still held in it.
// Invariants of one record: access_record.h.
// Locks: mu_ (handing records out and back) is a leaf; records are read and written without it.
#ifndef MOVA_HANDLES_ACCESS_RECORDS_H_
#define MOVA_HANDLES_ACCESS_RECORDS_H_

#include <pthread.h>

#include <array>
#include <atomic>
#include <bit>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "base/mutex.h"
#include "handles/access_record.h"
#include "os/os.h"

namespace mova::handles {


class AccessRecords {
 public:
  // Registers the process for expedited membarrier (once; later calls are cheap); without it, the fenced mode.
  explicit AccessRecords(os::Os& os);
  ~AccessRecords();
  AccessRecords(const AccessRecords&) = delete;
  AccessRecords& operator=(const AccessRecords&) = delete;

  // A record for the calling thread: one given back earlier, else a new one. Aborts with a message past
  // kMaxRecords records held at once (threads using one pool at the same time).
  AccessRecord* Acquire() ABSL_LOCKS_EXCLUDED(mu_);
  // Gives `r` back (its holder's cache retires). Pins still held in it stay until their holders drop them.
  void Release(AccessRecord* r) ABSL_LOCKS_EXCLUDED(mu_);

  // True when movers synchronise by membarrier (threads pay a compiler barrier), false in the fenced mode.
  bool asymmetric() const { return asymmetric_; }

  // The thread's side: between storing a tag and loading the entry word.
  void FenceAfterAnnounce() const {
    if (asymmetric_) [[likely]] {
      std::atomic_signal_fence(std::memory_order_seq_cst);
    } else {
      std::atomic_thread_fence(std::memory_order_seq_cst);
    }
  }

  // Read sections (the holder's side). EnterRead: a plain store to the holder's own line and the fence of
  // the handshake; the outermost section's epoch stands for the nested ones.
  void EnterRead(AccessRecord& r) const {
    if (r.read_depth++ != 0) return;
    r.reading.store(read_epoch_.load(std::memory_order_acquire), std::memory_order_relaxed);
    FenceAfterAnnounce();
  }
  // Release: the section's reads of old places come before a mover that sees the record clear reuses them.
  void ExitRead(AccessRecord& r) const {
    if (--r.read_depth == 0) r.reading.store(0, std::memory_order_release);
  }
  // The mover's side: the stamp of places objects were published away from (call it after the publishes).
  std::uint64_t NextReadEpoch() { return read_epoch_.fetch_add(1, std::memory_order_acq_rel); }
  // The current read epoch: load it before the Barrier that SafeReadEpoch follows.
  std::uint64_t ReadEpoch() const { return read_epoch_.load(std::memory_order_acquire); }
  // After a Barrier that followed `epoch_before = ReadEpoch()`: places stamped below the answer may be
  // reused — the oldest epoch of a section open now, and never more than epoch_before (a place stamped
  // after that load may have been read by a section that began after this scan).
  std::uint64_t SafeReadEpoch(std::uint64_t epoch_before) const {
    std::uint64_t safe = epoch_before;
    ForEach([&](const AccessRecord& r) {
      const std::uint64_t e = r.reading.load(std::memory_order_acquire);
      if (e != 0 && e < safe) safe = e;
    });
    return safe;
  }

  // The holder's first pin through `r` puts it on the pinning mask (one RMW in the record's lifetime), so that
  // PinnedByRecord reads only records that have held pins.
  void NotePinning(AccessRecord& r) {
    if (r.listed) [[likely]] return;
    ListPinning(r);
  }

  // True when any record holds a pin of `tag`. Loads only: a pin taken by another thread at this very moment
  // may be missed (that thread races the caller on the object). Reads one mask word per 64 records, and
  // only the records that have ever held a pin.
  bool PinnedByRecord(Tag tag) const {
    bool found = false;
    const std::size_t chunks = (made_.load(std::memory_order_acquire) + kRecordsPerChunk - 1) / kRecordsPerChunk;
    for (std::size_t c = 0; c < chunks; ++c) {
      const Chunk* chunk = ChunkAt(c);
      for (std::uint64_t m = chunk->pinning.load(std::memory_order_acquire); m != 0; m &= m - 1) {
        found |= chunk->records[std::countr_zero(m)].Pins(tag);
      }
    }
    return found;
  }

  // The mover's side: every thread executes a full barrier before this returns (a failed membarrier is
  // returned: the caller must then trust no record it reads, and give its claims up). No system call when no
  // thread but the caller holds a record: a thread takes its record (a locked RMW on the count of records
  // held) before its first pin or free, so one that comes later loads entry words after the caller's claims.
  absl::Status Barrier();
  // Barriers that needed no membarrier (no other thread held a record), for stats.
  std::uint64_t barriers_skipped() const { return barriers_skipped_.load(std::memory_order_relaxed); }
  // Appends every tag named in any record (being freed or pinned), sorted and without repeats.
  void CollectTags(std::vector<Tag>* out) const;

  // The records' memory: this object and the directories and chunks made (for stats).
  std::uint64_t heap_bytes() const;

  // Barriers made (membarrier calls or fences), for stats.
  std::uint64_t barriers() const { return barriers_.load(std::memory_order_relaxed); }

  static constexpr std::size_t kRecordsPerChunk = 64;
  static constexpr std::size_t kChunksPerDirectory = 64;
  static constexpr std::size_t kMaxDirectories = 64;
  static constexpr std::size_t kMaxChunks = kChunksPerDirectory * kMaxDirectories;
  static constexpr std::size_t kMaxRecords = kRecordsPerChunk * kMaxChunks;

 private:
  struct Chunk {
    std::array<AccessRecord, kRecordsPerChunk> records;
    std::atomic<std::uint64_t> pinning{0};  // bit i: records[i] has held a pin (set once, never cleared)
  };

  [[gnu::noinline]] void ListPinning(AccessRecord& r);
  template <typename F>
  void ForEach(F&& f) const {
    const std::size_t n = made_.load(std::memory_order_acquire);
    for (std::size_t i = 0; i < n; ++i) f(ChunkAt(i / kRecordsPerChunk)->records[i % kRecordsPerChunk]);
  }

  // True when no thread but the caller holds a record (the caller's claims are made: see Barrier).
  bool OnlyCallerHolds() const;

  os::Os& os_;
  const bool asymmetric_;
  alignas(64) std::atomic<std::uint64_t> read_epoch_{1};  // readers load it; movers bump it once per batch
  std::atomic<std::uint64_t> barriers_{0}, barriers_skipped_{0};
  std::atomic<std::size_t> held_{0};  // records acquired and not released
  // Chunk c (made before any of its records counts in made_) is (*directories_[c / kChunksPerDirectory])
  // [c % kChunksPerDirectory]. Two levels, so that a pool's fixed part is 512 B of directory pointers rather
  // than 32 KiB of chunk pointers written at its making (most pools see a few threads).
  using Directory = std::array<std::atomic<Chunk*>, kChunksPerDirectory>;
  Chunk* ChunkAt(std::size_t c) const {
    return (*directories_[c / kChunksPerDirectory].load(std::memory_order_acquire))[c % kChunksPerDirectory].load(
        std::memory_order_acquire);
  }
  std::array<std::atomic<Directory*>, kMaxDirectories> directories_{};
  std::atomic<std::size_t> made_{0};
  Mutex mu_;
  std::vector<AccessRecord*> released_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mova::handles

#endif  // MOVA_HANDLES_ACCESS_RECORDS_H_
