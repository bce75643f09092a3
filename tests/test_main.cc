// tests/test_main.cc — the tests' main: GoogleTest, plus (without sanitizers, which have handlers of their
// own) Abseil's failure signal handler, so that a test killed by a signal (SIGSEGV, SIGFPE, SIGBUS, ...) prints
// the stack where it died instead of only "Exception" in ctest's summary.
#include <gtest/gtest.h>

#include "absl/debugging/failure_signal_handler.h"
#include "absl/debugging/symbolize.h"
#include "tests/sanitizers.h"

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  if (!mova::testing::kSanitized) {
    absl::InitializeSymbolizer(argv[0]);
    absl::FailureSignalHandlerOptions options;
    options.call_previous_handler = true;  // death tests still see the signal they expect
    absl::InstallFailureSignalHandler(options);
  }
  return RUN_ALL_TESTS();
}
