// tests/sanitizers.h — whether this build runs under a sanitizer, for tests whose readings are meaningful
// only without one (sanitizers keep shadow memory, quarantines and threads of their own in the process).
#ifndef MOVA_TESTS_SANITIZERS_H_
#define MOVA_TESTS_SANITIZERS_H_

namespace mova::testing {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif

}  // namespace mova::testing

#define MOVA_SKIP_UNDER_SANITIZERS()                                                  \
  do {                                                                                \
    if (::mova::testing::kSanitized) GTEST_SKIP() << "measured in the unsanitized build"; \
  } while (0)

#endif  // MOVA_TESTS_SANITIZERS_H_
