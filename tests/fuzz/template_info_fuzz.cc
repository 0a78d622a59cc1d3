// Fuzzes template.info's reader (manager/template_store.h decode_template_info and
// parse_template_info, with the handler sandbox lines of manager/template_store_sandbox.h): a
// store can be shared between hosts, so a file is not trusted. Either parses or throws
// wisp::Error; what parses formats and parses back to the same sandbox.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "base/error.h"
#include "manager/template_store.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    wisp::manager::TemplateInfo t = data[0] & 1
                                        ? wisp::manager::decode_template_info(text, "t.info")
                                        : wisp::manager::parse_template_info(text, "t.info");
    if (t.sandbox) {
      std::string again;
      try {
        again = wisp::manager::format_template_info(t);
      } catch (const wisp::Error&) {
        return 0;  // a value with a newline cannot be written back: refused, not written wrong
      }
      wisp::manager::TemplateInfo back = wisp::manager::parse_template_info(again, "t.info");
      if (!back.sandbox || back.sandbox->root_device != t.sandbox->root_device ||
          back.sandbox->cwd != t.sandbox->cwd || back.sandbox->uid != t.sandbox->uid ||
          back.sandbox->additional_gids != t.sandbox->additional_gids ||
          back.sandbox->limits.memory_bytes != t.sandbox->limits.memory_bytes)
        abort();
    }
  } catch (const wisp::Error&) {
  }
  return 0;
}
