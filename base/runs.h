// base/runs.h — the maximal runs of positions that share a property, for page operations made a run at a time.
//
// Types: none; one function, ForEachRun. The move engine walks the pages a move left behind (and those it
// moved) with it, the handle table the idle pages of its states; both then make one operation per run.
#ifndef MOVA_BASE_RUNS_H_
#define MOVA_BASE_RUNS_H_

#include <cstddef>

namespace mova {

// Calls f(first, end) for each maximal run [first, end) of positions in [0, n) where in_run(i) holds, in order,
// until f returns false; returns whether every run was taken.
template <typename InRun, typename F>
bool ForEachRun(std::size_t n, InRun in_run, F f) {
  for (std::size_t i = 0; i < n;) {
    if (!in_run(i)) {
      ++i;
      continue;
    }
    std::size_t end = i + 1;
    while (end < n && in_run(end)) ++end;
    if (!f(i, end)) return false;
    i = end;
  }
  return true;
}

}  // namespace mova

#endif  // MOVA_BASE_RUNS_H_
