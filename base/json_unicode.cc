#include "base/json_unicode.h"

#include "base/error.h"

namespace wisp {

namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The 4 hex digits at text[at..at+4) as a number, or -1.
long hex4(const std::string& text, size_t at) {
  if (at + 4 > text.size()) return -1;
  long v = 0;
  for (size_t i = at; i < at + 4; ++i) {
    int d = hex_digit(text[i]);
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

void append_utf8(std::string* out, unsigned long cp) {
  if (cp < 0x80) {
    *out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    *out += static_cast<char>(0xc0 | (cp >> 6));
    *out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    *out += static_cast<char>(0xe0 | (cp >> 12));
    *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    *out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    *out += static_cast<char>(0xf0 | (cp >> 18));
    *out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    *out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

}  // namespace

std::string unescape_json_unicode(const std::string& json, const std::string& what) {
  std::string out;
  out.reserve(json.size());
  bool in_string = false;
  for (size_t i = 0; i < json.size(); ++i) {
    char c = json[i];
    if (!in_string) {
      if (c == '"') in_string = true;
      out += c;
      continue;
    }
    if (c == '"') {
      in_string = false;
      out += c;
      continue;
    }
    if (c != '\\' || i + 1 >= json.size()) {
      out += c;
      continue;
    }
    if (json[i + 1] != 'u') {
      out += c;
      out += json[++i];
      continue;
    }
    long cp = hex4(json, i + 2);
    if (cp < 0) throw Error(what + ": a \\u escape without 4 hex digits");
    size_t used = 6;
    if (cp >= 0xd800 && cp <= 0xdbff) {
      long low =
          i + 8 <= json.size() && json.compare(i + 6, 2, "\\u") == 0 ? hex4(json, i + 8) : -1;
      if (low < 0xdc00 || low > 0xdfff) throw Error(what + ": a lone UTF-16 surrogate");
      cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
      used = 12;
    } else if (cp >= 0xdc00 && cp <= 0xdfff) {
      throw Error(what + ": a lone UTF-16 surrogate");
    }
    switch (cp) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (cp < 0x20) {
          throw Error(what + ": control character \\u" + json.substr(i + 2, 4) +
                      " in a string is not supported");
        }
        append_utf8(&out, static_cast<unsigned long>(cp));
    }
    i += used - 1;
  }
  return out;
}

}  // namespace wisp
