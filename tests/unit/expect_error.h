// The unit tests' one check for wisp's error model: a call that must fail with a wisp::Error
// whose message names what went wrong.
#pragma once

#include <gtest/gtest.h>

#include <exception>
#include <initializer_list>
#include <string>

#include "base/error.h"

namespace wisp::testutil {

// Runs `fn`, expects an exception of type E (wisp::Error or a subclass such as UsageError)
// whose message contains every one of `parts`.
template <typename E = Error, typename Fn>
void expect_error(Fn fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "no error";
  } catch (const E& e) {
    std::string msg = e.what();
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not the expected kind of error: " << e.what();
  }
}

}  // namespace wisp::testutil
