// tests/capture_stderr.h — CaptureStderr(fn): what fn wrote to file descriptor 2, read back through a
// temporary file (so output from C stdio and from the library's own fprintf is caught alike).
#ifndef MOVA_TESTS_CAPTURE_STDERR_H_
#define MOVA_TESTS_CAPTURE_STDERR_H_

#include <unistd.h>

#include <cstdio>
#include <string>

namespace mova {

template <typename Fn>
std::string CaptureStderr(Fn&& fn) {
  std::fflush(stderr);
  std::FILE* tmp = std::tmpfile();
  if (tmp == nullptr) return "<tmpfile failed>";
  const int saved = dup(2);
  dup2(fileno(tmp), 2);
  fn();
  std::fflush(stderr);
  dup2(saved, 2);
  close(saved);
  std::string out;
  std::rewind(tmp);
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof(buf), tmp)) > 0;) out.append(buf, n);
  std::fclose(tmp);
  return out;
}

}  // namespace mova

#endif  // MOVA_TESTS_CAPTURE_STDERR_H_
