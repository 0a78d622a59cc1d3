// The template store: $WISP_HOME (default /var/lib/wisp)/templates. A template NAME is a
// generation directory holding the snapshot of a warmed function VM ("snapshot/") and what is
// needed to invoke it ("template.info": handler, mode, machine size, drives, sizes and timings
// from its creation); templates/NAME is a symlink to its current generation:
//
//   templates/NAME -> .NAME.gen-XXXXXX      the template (symlink() publishes it: atomic, and
//                                           it never replaces an existing one, on any fs)
//   templates/.NAME.gen-XXXXXX/             a generation; a rebuild makes a new one and swaps
//                                           the symlink by rename(2), atomically
//   templates/.NAME.tmp-XXXXXX/             a template being made (locked by its maker)
//   templates/.NAME.rm-PID                  a template being removed
//
// A call opens a generation (open_template: a shared lock on it) and uses it to the end, so a
// rebuild or a removal meanwhile does not touch it: an old generation is removed once nobody
// holds it, by the rebuild or by the next use of the store, which also removes what a crashed
// run left (unlocked ".tmp-" and ".rm-" entries, unreferenced generations).
//
// The store trusts nothing it finds: WISP_HOME and templates/ are created 0700, and refused
// when another user owns them or group or others can write them. template.info is line-based,
// "key value" per line, values without newlines; "arg", "env" and "drive" repeat, in order;
// its last line "crc64 HEX" is a CRC-64 of everything before it, so a truncated or overwritten
// file is refused like a damaged snapshot state file. It is written temp + fsync + rename.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/file_io.h"
#include "base/unique_fd.h"
#include "manager/template_store_sandbox.h"
#include "manager/vm_net.h"

namespace wisp::manager {

struct TemplateInfo {
  std::string name;
  std::string mode = "exec";  // exec | worker
  std::vector<std::string> argv;
  std::vector<std::string> env;  // KEY=VALUE
  // The images of the snapshot's drives, "PATH[,ro]" in slot order (the rootfs first): a
  // snapshot names no host file itself (snapshot/snapshot_trust.h), restore is given these.
  std::vector<std::string> drives;
  // Its NICs ("net", "net_allow", "net_dns" lines; none in templates from before them): each
  // clone restores with them (vmm_restore_net_args).
  VmNet net;
  // The handler gets the guest's network (its sandbox otherwise has an empty network
  // namespace): the "network 1" line, absent when false.
  bool network = false;
  uint64_t mem_mib = 0;
  uint32_t vcpus = 1;
  // Booted on the x86-64-v2 baseline CPU (`--portable`): the "portable 1" line, absent when
  // false. Its snapshot records the model, so clones restore with it; a boot of this
  // template's guest again (VmSpec::portable) must use it too, or what the guest checkpointed
  // could need a newer CPU than the baseline.
  bool portable = false;
  std::string guest;  // the kernel and initrd/rootfs it was booted from (informational)
  // How to boot its guest again (a CRIU fallback or `wisp template rebuild`, issue 17): the
  // "boot_kernel", "boot_initrd", "boot_rootfs" and "boot_cmdline" lines as the maker gave them
  // (resolved paths; "" is wisp's default, so an upgraded wisp boots its own), present when
  // "boot_recorded 1" is (templates from before them have none). The rootfs is also drives[0].
  bool boot_recorded = false;
  std::string boot_kernel, boot_initrd, boot_rootfs, boot_cmdline;
  // "" or the template this one was forked from (Sandbox.snapshot: its snapshot is a diff over
  // that template's, whose files its generation holds hard links of: manager/template_fork.h).
  std::string parent;
  // exec mode: the handler sandbox its calls run in (the "sandbox_*" lines:
  // manager/template_store_sandbox.h); none: the guest's own root as nobody, default limits.
  std::optional<TemplateSandbox> sandbox;
  uint32_t warmup = 0;
  int64_t created_unix = 0;
  double snapshot_ms = 0;
  uint64_t memory_file_bytes = 0, memory_disk_bytes = 0;
};

// $WISP_HOME, else /var/lib/wisp.
std::string wisp_home();
std::string templates_dir();
// Throws Error naming `dir` unless it is a directory (not a symlink) owned by this user that
// group and others cannot write.
void check_private_dir(const std::string& dir);
// templates_dir(), checked (check_private_dir on it and WISP_HOME); with `create`, made first
// (0700) where missing. Throws Error.
std::string open_store(bool create);
// Throws Error unless `name` is 1..64 of [A-Za-z0-9._-], not starting with '.'.
void check_template_name(const std::string& name);

// The "key value" lines (no checksum).
std::string format_template_info(const TemplateInfo& info);
// Throws Error naming `file` and the line at fault.
TemplateInfo parse_template_info(const std::string& text, const std::string& file);
// The whole file: format_template_info and its "crc64 HEX" line.
std::string encode_template_info(const TemplateInfo& info);
// Checks the checksum line, then parses. Throws Error naming `file` and the fault.
TemplateInfo decode_template_info(const std::string& text, const std::string& file);

// A generation of a template, open for one call: its files stay as they are (a rebuild or a
// removal leaves it) until this is destroyed.
struct OpenTemplate {
  TemplateInfo info;
  std::string dir;           // the generation directory
  std::string snapshot_dir;  // dir + "/snapshot"
  UniqueFd lock;             // a shared lock on dir
};
// Throws Error "template NAME: ..." (not found, damaged template.info).
OpenTemplate open_template(const std::string& name);
TemplateInfo read_template(const std::string& name);  // open_template(name).info

// Splits "CMD ARGS" like a POSIX shell would for words: whitespace separates, '...' and "..."
// quote, backslash escapes (outside single quotes). Throws Error on an unterminated quote.
std::vector<std::string> split_command(const std::string& text);

// The names in the store, sorted (entries starting with '.' are work in progress).
std::vector<std::string> template_names();
// Deletes template `name`: its symlink is renamed away first, so a concurrent invoke sees it
// whole or gone; its generation goes once no call holds it, and its rebuild's log and lock
// (template_rebuild.h) with it unless a rebuild holds the lock. Throws Error "template NAME:
// not found" or naming what could not be removed.
void remove_template(const std::string& name);
// Beside template NAME in the store: ".NAME" + these (template_rebuild.h).
inline constexpr char kRebuildLockSuffix[] = ".rebuild-lock";
inline constexpr char kRebuildLogSuffix[] = ".rebuild.log";
// templates_dir()/NAME/snapshot: the snapshot of template `name`'s current generation.
std::string template_snapshot_dir(const std::string& name);
// Removes what crashed or finished runs left in the store (see the top of this file); entries
// in use are left alone. Best effort.
void remove_store_leftovers();

// A template being created: a hidden, locked directory in the store that becomes template NAME
// only when commit() publishes it complete, so a template is either whole or absent. Removed
// on destruction unless committed.
class TemplateStaging {
 public:
  // Throws Error if template `name` exists (unless `rebuild`: it is replaced at commit) or the
  // store cannot be written.
  explicit TemplateStaging(const std::string& name, bool rebuild = false);
  ~TemplateStaging();
  TemplateStaging(const TemplateStaging&) = delete;
  TemplateStaging& operator=(const TemplateStaging&) = delete;

  // Where the snapshot goes (it must not exist yet: the snapshot writer creates it).
  std::string snapshot_dir() const { return dir_ + "/snapshot"; }
  // The directory being made (the generation to be), for files besides the snapshot.
  const std::string& dir() const { return dir_; }
  // Writes template.info (temp, fsync, rename, directory fsync), makes the directory a
  // generation (rename_dir_noreplace; `how` forces its NFS/9p fallback in tests) and publishes
  // it: a new template by symlink(), which fails if one appeared meanwhile; a rebuild by an
  // atomic swap of the symlink, after which the old generation goes once no call holds it.
  // Throws Error.
  void commit(const TemplateInfo& info, NoReplace how = NoReplace::kAuto);

 private:
  std::string name_;
  bool rebuild_ = false;
  std::string dir_;  // "" once committed
  UniqueFd lock_;    // dir_, locked while it is being made
};

}  // namespace wisp::manager
