#include "base/log.h"

#include <cstdarg>

namespace wisp {
namespace {
LogLevel g_level = LogLevel::kWarn;  // set by main() only, before any thread starts
const char* const kNames[] = {"error", "warn", "info", "debug"};
}  // namespace

void set_log_level(LogLevel level) { g_level = level; }
LogLevel log_level() { return g_level; }

void log_message(LogLevel level, const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  // One fprintf per line keeps lines from different threads whole.
  std::fprintf(stderr, "wisp: %s: %s\n", kNames[static_cast<int>(level)], buf);
}

}  // namespace wisp
