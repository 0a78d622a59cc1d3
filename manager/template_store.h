// The template store: $WISP_HOME (default /var/lib/wisp)/templates/NAME/, each holding the
// snapshot of a warmed function VM ("snapshot/") and what is needed to invoke it
// ("template.info": handler, mode, machine size, sizes and timings from its creation).
//
// template.info is line-based, "key value" per line, values without newlines; "arg" repeats,
// one line per handler argument, in order. Written to a temp directory and renamed with the
// snapshot, so a template is either complete or absent.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace wisp::manager {

struct TemplateInfo {
  std::string name;
  std::string mode = "exec";  // exec | worker
  std::vector<std::string> argv;
  std::vector<std::string> env;  // KEY=VALUE
  uint64_t mem_mib = 0;
  uint32_t vcpus = 1;
  std::string guest;  // the kernel and initrd/rootfs it was booted from (informational)
  uint32_t warmup = 0;
  int64_t created_unix = 0;
  double snapshot_ms = 0;
  uint64_t memory_file_bytes = 0, memory_disk_bytes = 0;
};

// $WISP_HOME, else /var/lib/wisp.
std::string wisp_home();
std::string templates_dir();
// Throws Error unless `name` is 1..64 of [A-Za-z0-9._-], not starting with '.'.
void check_template_name(const std::string& name);

std::string format_template_info(const TemplateInfo& info);
// Throws Error naming `file` and the line at fault.
TemplateInfo parse_template_info(const std::string& text, const std::string& file);
TemplateInfo read_template(const std::string& name);  // throws Error "template NAME: ..."

// Splits "CMD ARGS" like a POSIX shell would for words: whitespace separates, '...' and "..."
// quote, backslash escapes (outside single quotes). Throws Error on an unterminated quote.
std::vector<std::string> split_command(const std::string& text);

// The names in the store, sorted (entries starting with '.' are work in progress).
std::vector<std::string> template_names();
// Deletes template `name`: renamed away first, so a concurrent invoke sees it whole or gone.
// Throws Error "template NAME: not found" or naming what could not be removed.
void remove_template(const std::string& name);
// templates_dir()/NAME/snapshot: the snapshot a clone of template `name` is restored from.
std::string template_snapshot_dir(const std::string& name);

// A template being created: a hidden directory in the store that becomes templates_dir()/NAME
// only when commit() renames it there complete, so a template is either whole or absent.
// Removed on destruction unless committed.
class TemplateStaging {
 public:
  // Throws Error if template `name` exists or the store cannot be written.
  explicit TemplateStaging(const std::string& name);
  ~TemplateStaging();
  TemplateStaging(const TemplateStaging&) = delete;
  TemplateStaging& operator=(const TemplateStaging&) = delete;

  // Where the snapshot goes (it must not exist yet: the snapshot writer creates it).
  std::string snapshot_dir() const { return dir_ + "/snapshot"; }
  // Writes template.info (synced) and renames the directory into place. Throws Error.
  void commit(const TemplateInfo& info);

 private:
  std::string name_;
  std::string dir_;  // "" once committed
};

}  // namespace wisp::manager
