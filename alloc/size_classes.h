// alloc/size_classes.h — a pool's size classes, each made when it is first asked for a slot.
//
// Types: SizeClasses. Most of a pool's ~230 classes never hold an object (a cache of 64 B values uses one),
// and each SizeClass is ~280 B written at its making: made up front they were 55 KiB of the ~110 KiB of heap
// every Pool::Create took, resident before any object.
// Invariants: a class, once made, lives as long as the SizeClasses (it is never unmade: blocks, slots cached by
// threads and the page map name it); Find answers null only for a class never made, and a class with a block,
// a slot or an object anywhere has been made. A made class is published with a release store after its
// construction, so Find's acquire load sees it whole.
// Locks: mu_ (making a class) is a leaf: a SizeClass's constructor takes no lock.
#ifndef MOVA_ALLOC_SIZE_CLASSES_H_
#define MOVA_ALLOC_SIZE_CLASSES_H_

#include <atomic>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>

#include "absl/base/optimization.h"
#include "absl/base/thread_annotations.h"
#include "alloc/size_class.h"
#include "alloc/size_class_map.h"
#include "base/mutex.h"

namespace mova::alloc {

class SizeClasses {
 public:
  // Makes class `id` (its info from the map the factory closes over); called under mu_, once per class.
  using Factory = std::function<std::unique_ptr<SizeClass>(ClassId id)>;

  SizeClasses(std::size_t count, Factory make)
      : count_(count), make_(std::move(make)), classes_(std::make_unique<std::atomic<SizeClass*>[]>(count)) {}
  ~SizeClasses() {
    for (std::size_t k = 0; k < count_; ++k) delete classes_[k].load(std::memory_order_relaxed);
  }
  SizeClasses(const SizeClasses&) = delete;
  SizeClasses& operator=(const SizeClasses&) = delete;

  // How many classes the map has (made or not).
  std::size_t size() const { return count_; }

  // Class `id` if it has been made, else null.
  SizeClass* Find(ClassId id) const { return classes_[id.value()].load(std::memory_order_acquire); }

  // Class `id`, which the caller knows was made: a block, a cached slot or an object of it exists.
  SizeClass& Get(ClassId id) const {
    SizeClass* c = Find(id);
    if (ABSL_PREDICT_FALSE(c == nullptr)) Unmade(id);
    return *c;
  }

  // Class `id`, made now if it never was (a refill's first visit to it).
  SizeClass& GetOrMake(ClassId id) {
    if (SizeClass* c = Find(id); ABSL_PREDICT_TRUE(c != nullptr)) return *c;
    return Make(id);
  }

  // f(class) for every class made so far, in class order.
  template <typename F>
  void ForEachMade(F&& f) const {
    for (std::size_t k = 0; k < count_; ++k) {
      if (SizeClass* c = classes_[k].load(std::memory_order_acquire); c != nullptr) f(*c);
    }
  }

 private:
  [[noreturn]] static void Unmade(ClassId id) {
    std::fprintf(stderr, "mova: internal error: size class %u used before it was made\n", id.value());
    std::abort();
  }
  [[gnu::noinline]] SizeClass& Make(ClassId id) ABSL_LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    if (SizeClass* c = classes_[id.value()].load(std::memory_order_relaxed); c != nullptr) return *c;
    SizeClass* c = make_(id).release();
    classes_[id.value()].store(c, std::memory_order_release);
    return *c;
  }

  const std::size_t count_;
  const Factory make_;
  const std::unique_ptr<std::atomic<SizeClass*>[]> classes_;
  Mutex mu_;
};

}  // namespace mova::alloc

#endif  // MOVA_ALLOC_SIZE_CLASSES_H_
