#include "manager/template_store.h"

#include <cctype>
#include <cstdlib>
#include <span>
#include <sstream>

#include "base/error.h"
#include "base/hex.h"
#include "snapshot/crc64.h"

namespace wisp::manager {
namespace {

std::span<const uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace

std::string wisp_home() {
  const char* h = std::getenv("WISP_HOME");
  return h && *h ? h : "/var/lib/wisp";
}

std::string templates_dir() { return wisp_home() + "/templates"; }

void check_template_name(const std::string& name) {
  bool ok = !name.empty() && name.size() <= 64 && name[0] != '.';
  for (char c : name)
    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-');
  if (!ok)
    throw Error("template name \"" + name +
                "\": use 1 to 64 letters, digits, '.', '_' or '-', not starting with '.'");
}

std::string format_template_info(const TemplateInfo& t) {
  std::ostringstream o;
  auto line = [&](const std::string& k, const std::string& v) {
    if (v.find('\n') != std::string::npos)
      throw Error("template " + t.name + ": " + k + " must not contain a newline");
    o << k << ' ' << v << '\n';
  };
  line("name", t.name);
  line("mode", t.mode);
  for (const auto& a : t.argv) line("arg", a);
  for (const auto& e : t.env) line("env", e);
  for (const auto& d : t.drives) line("drive", d);
  for (const auto& n : t.net.nets) line("net", n);
  if (t.net.own) line("net_own", "1");
  for (const auto& a : t.net.allow) line("net_allow", a);
  for (const auto& d : t.net.dns) line("net_dns", d);
  if (t.network) line("network", "1");
  line("mem_mib", std::to_string(t.mem_mib));
  line("vcpus", std::to_string(t.vcpus));
  if (t.portable) line("portable", "1");
  if (t.sandbox) format_template_sandbox(*t.sandbox, line);
  line("guest", t.guest);
  if (t.boot_recorded) {
    line("boot_recorded", "1");
    if (!t.boot_kernel.empty()) line("boot_kernel", t.boot_kernel);
    if (!t.boot_initrd.empty()) line("boot_initrd", t.boot_initrd);
    if (!t.boot_rootfs.empty()) line("boot_rootfs", t.boot_rootfs);
    if (!t.boot_cmdline.empty()) line("boot_cmdline", t.boot_cmdline);
  }
  // Only a fork has one: other templates' files stay as older wisps wrote them.
  if (!t.parent.empty()) line("parent", t.parent);
  line("warmup", std::to_string(t.warmup));
  line("created_unix", std::to_string(t.created_unix));
  line("snapshot_ms", std::to_string(t.snapshot_ms));
  line("memory_file_bytes", std::to_string(t.memory_file_bytes));
  line("memory_disk_bytes", std::to_string(t.memory_disk_bytes));
  return o.str();
}

TemplateInfo parse_template_info(const std::string& text, const std::string& file) {
  TemplateInfo t;
  std::istringstream in(text);
  std::string line;
  int n = 0;
  auto number = [&](const std::string& v, const std::string& k) -> uint64_t {
    char* end = nullptr;
    errno = 0;
    unsigned long long x = std::strtoull(v.c_str(), &end, 10);
    if (v.empty() || *end || errno || v[0] == '-')
      throw Error(file + ":" + std::to_string(n) + ": " + k + ": expected a number, got \"" + v +
                  "\"");
    return x;
  };
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    size_t sp = line.find(' ');
    std::string k = line.substr(0, sp), v = sp == std::string::npos ? "" : line.substr(sp + 1);
    if (k == "name")
      t.name = v;
    else if (k == "mode")
      t.mode = v;
    else if (k == "arg")
      t.argv.push_back(v);
    else if (k == "env")
      t.env.push_back(v);
    else if (k == "drive")
      t.drives.push_back(v);
    else if (k == "net" || k == "net_allow" || k == "net_dns") {
      if (v.empty()) throw Error(file + ":" + std::to_string(n) + ": " + k + ": empty");
      (k == "net" ? t.net.nets : k == "net_allow" ? t.net.allow : t.net.dns).push_back(v);
    } else if (k == "net_own") {
      t.net.own = number(v, k) != 0;
    } else if (k == "network")
      t.network = number(v, k) != 0;
    else if (k == "mem_mib")
      t.mem_mib = number(v, k);
    else if (k == "vcpus")
      t.vcpus = static_cast<uint32_t>(number(v, k));
    else if (k == "portable")
      t.portable = number(v, k) != 0;
    else if (k == "guest")
      t.guest = v;
    else if (k == "boot_recorded")
      t.boot_recorded = number(v, k) != 0;
    else if (k == "boot_kernel" || k == "boot_initrd" || k == "boot_rootfs") {
      // Guest files a cold boot will read: absolute, as the maker resolved them.
      if (v.empty() || v[0] != '/')
        throw Error(file + ":" + std::to_string(n) + ": " + k + ": expected an absolute path");
      (k == "boot_kernel" ? t.boot_kernel : k == "boot_initrd" ? t.boot_initrd : t.boot_rootfs) = v;
    } else if (k == "boot_cmdline")
      t.boot_cmdline = v;
    else if (k == "parent") {
      try {
        check_template_name(v);
      } catch (const Error& e) {
        throw Error(file + ":" + std::to_string(n) + ": parent: " + e.what());
      }
      t.parent = v;
    } else if (k == "warmup")
      t.warmup = static_cast<uint32_t>(number(v, k));
    else if (k == "created_unix")
      t.created_unix = static_cast<int64_t>(number(v, k));
    else if (k == "snapshot_ms")
      t.snapshot_ms = std::strtod(v.c_str(), nullptr);
    else if (k == "memory_file_bytes")
      t.memory_file_bytes = number(v, k);
    else if (k == "memory_disk_bytes")
      t.memory_disk_bytes = number(v, k);
    else if (k.starts_with("sandbox_")) {
      TemplateSandbox s = t.sandbox.value_or(TemplateSandbox{});
      try {
        // Unknown sandbox_ keys are from a newer wisp too: parse_... returns false for them.
        if (parse_template_sandbox_line(k, v, &s)) t.sandbox = std::move(s);
      } catch (const Error& e) {
        throw Error(file + ":" + std::to_string(n) + ": " + e.what());
      }
    }
    // Unknown keys are from a newer wisp: ignored, so old readers keep working.
  }
  if (t.sandbox && t.mode != "exec")
    throw Error(file + ": sandbox_ lines: only an exec-mode template has a handler sandbox");
  if (t.mode != "exec" && t.mode != "worker")
    throw Error(file + ": mode \"" + t.mode + "\": expected exec or worker");
  if (t.argv.empty()) throw Error(file + ": no handler command (arg lines)");
  return t;
}

std::string encode_template_info(const TemplateInfo& info) {
  std::string body = format_template_info(info);
  return body + "crc64 " + hex(snapshot::crc64(bytes_of(body))) + "\n";
}

TemplateInfo decode_template_info(const std::string& text, const std::string& file) {
  // The checksum line is the last one, covering every byte before it.
  size_t end = text.size();
  size_t start = end >= 2 ? text.rfind('\n', end - 2) : std::string::npos;
  start = start == std::string::npos ? 0 : start + 1;
  std::string last = text.substr(start);
  if (!last.starts_with("crc64 ") || !last.ends_with("\n"))
    throw Error(file +
                ": no checksum line at the end: the file is truncated or damaged (or "
                "from an older wisp): re-create the template");
  std::string body = text.substr(0, start);
  std::string stored = last.substr(6, last.size() - 7);
  std::string actual = hex(snapshot::crc64(bytes_of(body)));
  if (stored != actual)
    throw Error(file + ": checksum mismatch (stored " + stored + ", computed " + actual +
                "): the file is damaged: re-create the template");
  return parse_template_info(body, file);
}

std::vector<std::string> split_command(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  bool in_word = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\'') {
      size_t end = text.find('\'', i + 1);
      if (end == std::string::npos) throw Error("unterminated ' in \"" + text + "\"");
      cur += text.substr(i + 1, end - i - 1);
      in_word = true;
      i = end;
    } else if (c == '"') {
      size_t j = i + 1;
      for (; j < text.size() && text[j] != '"'; ++j) {
        if (text[j] == '\\' && j + 1 < text.size() &&
            (text[j + 1] == '"' || text[j + 1] == '\\' || text[j + 1] == '$' || text[j + 1] == '`'))
          ++j;
        cur += text[j];
      }
      if (j >= text.size()) throw Error("unterminated \" in \"" + text + "\"");
      in_word = true;
      i = j;
    } else if (c == '\\') {
      if (i + 1 < text.size()) cur += text[++i];
      in_word = true;
    } else if (c == ' ' || c == '\t' || c == '\n') {
      if (in_word) out.push_back(cur);
      cur.clear();
      in_word = false;
    } else {
      cur += c;
      in_word = true;
    }
  }
  if (in_word) out.push_back(cur);
  return out;
}

}  // namespace wisp::manager
