#include "manager/template_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "base/error.h"
#include "base/unique_fd.h"
#include "manager/runtime_dir.h"

namespace wisp::manager {

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
  line("mem_mib", std::to_string(t.mem_mib));
  line("vcpus", std::to_string(t.vcpus));
  line("guest", t.guest);
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
    else if (k == "mem_mib")
      t.mem_mib = number(v, k);
    else if (k == "vcpus")
      t.vcpus = static_cast<uint32_t>(number(v, k));
    else if (k == "guest")
      t.guest = v;
    else if (k == "warmup")
      t.warmup = static_cast<uint32_t>(number(v, k));
    else if (k == "created_unix")
      t.created_unix = static_cast<int64_t>(number(v, k));
    else if (k == "snapshot_ms")
      t.snapshot_ms = std::strtod(v.c_str(), nullptr);
    else if (k == "memory_file_bytes")
      t.memory_file_bytes = number(v, k);
    else if (k == "memory_disk_bytes")
      t.memory_disk_bytes = number(v, k);
    // Unknown keys are from a newer wisp: ignored, so old readers keep working.
  }
  if (t.mode != "exec" && t.mode != "worker")
    throw Error(file + ": mode \"" + t.mode + "\": expected exec or worker");
  if (t.argv.empty()) throw Error(file + ": no handler command (arg lines)");
  return t;
}

TemplateInfo read_template(const std::string& name) {
  check_template_name(name);
  std::string dir = templates_dir() + "/" + name;
  std::string file = dir + "/template.info";
  std::ifstream in(file);
  if (!in) {
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0)
      throw Error("template " + name + ": not found in " + templates_dir() +
                  " (wisp template ls lists them; WISP_HOME sets the store)");
    throw Error("template " + name + ": cannot read " + file);
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_template_info(ss.str(), file);
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

std::vector<std::string> template_names() {
  std::vector<std::string> names;
  DIR* d = ::opendir(templates_dir().c_str());
  if (!d) return names;
  while (dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') names.push_back(e->d_name);
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

void remove_template(const std::string& name) {
  check_template_name(name);
  std::string dir = templates_dir() + "/" + name;
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) throw Error("template " + name + ": not found");
  std::string doomed = templates_dir() + "/." + name + ".rm-" + std::to_string(::getpid());
  if (::rename(dir.c_str(), doomed.c_str()) != 0) throw_errno("rename " + dir);
  remove_tree(doomed);
}

std::string template_snapshot_dir(const std::string& name) {
  return templates_dir() + "/" + name + "/snapshot";
}

TemplateStaging::TemplateStaging(const std::string& name) : name_(name) {
  check_template_name(name);
  struct stat st;
  if (::stat((templates_dir() + "/" + name).c_str(), &st) == 0)
    throw Error("template " + name + " already exists (wisp template rm " + name + ")");
  make_dirs(templates_dir());
  dir_ = make_temp_dir(templates_dir() + "/." + name + ".tmp-XXXXXX");
}

TemplateStaging::~TemplateStaging() {
  if (dir_.empty()) return;
  try {
    remove_tree(dir_);
  } catch (const Error&) {
    // A leftover hidden directory is ignored by the store.
  }
}

void TemplateStaging::commit(const TemplateInfo& info) {
  std::string info_path = dir_ + "/template.info";
  {
    std::ofstream out(info_path);
    out << format_template_info(info);
    if (!out.flush()) throw Error("cannot write " + info_path);
  }
  UniqueFd fd(::open(info_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd) ::fsync(fd.get());
  std::string final_dir = templates_dir() + "/" + name_;
  if (::renameat2(AT_FDCWD, dir_.c_str(), AT_FDCWD, final_dir.c_str(), RENAME_NOREPLACE) != 0)
    throw_errno("rename " + dir_ + " to " + final_dir);
  dir_.clear();
}

}  // namespace wisp::manager
