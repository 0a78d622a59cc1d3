// Minimal leveled logging to stderr. The VMM's stdout belongs to the guest console, so every
// diagnostic goes to stderr, prefixed so it cannot be mistaken for guest output.
#pragma once

#include <cstdio>
#include <string>

namespace wisp {

enum class LogLevel { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

// Set once by main() before threads start; read-only afterwards.
void set_log_level(LogLevel level);
LogLevel log_level();

void log_message(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace wisp

#define WISP_LOG(level, ...)                                              \
  do {                                                                    \
    if (static_cast<int>(level) <= static_cast<int>(::wisp::log_level())) \
      ::wisp::log_message(level, __VA_ARGS__);                            \
  } while (0)
#define LOG_ERROR(...) WISP_LOG(::wisp::LogLevel::kError, __VA_ARGS__)
#define LOG_WARN(...) WISP_LOG(::wisp::LogLevel::kWarn, __VA_ARGS__)
#define LOG_INFO(...) WISP_LOG(::wisp::LogLevel::kInfo, __VA_ARGS__)
#define LOG_DEBUG(...) WISP_LOG(::wisp::LogLevel::kDebug, __VA_ARGS__)
