// Unit tests that point code at a temporary directory through an environment variable
// ($WISP_HOME, $WISP_CGROUP_ROOT, ...) set it for one scope only.
#pragma once

#include <cstdlib>
#include <optional>
#include <string>

namespace wisp::testutil {

// Sets an environment variable for one scope (unsets it for nullptr), restoring the old value
// after. Tests run on one thread, so nothing reads the environment meanwhile.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value)
      ::setenv(name, value, 1);
    else
      ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_)
      ::setenv(name_, old_->c_str(), 1);
    else
      ::unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

}  // namespace wisp::testutil
