// The template store's directories: the private store itself, generations and their symlink,
// staging, removal and leftovers (the layout is described in template_store.h).
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "base/error.h"
#include "manager/runtime_dir.h"
#include "manager/template_store.h"

namespace wisp::manager {
namespace {

constexpr const char* kInfoFile = "template.info";
constexpr const char* kGeneration = ".gen-";
constexpr const char* kStaging = ".tmp-";
constexpr const char* kRemoving = ".rm-";

// The generation directory template `name` stands for: the target of its symlink, or
// templates/NAME itself when an older wisp made it a directory; "" when there is none. A
// symlink anywhere but to one of its own generations is refused.
std::string generation_of(const std::string& store, const std::string& name) {
  std::string link = store + "/" + name;
  struct stat st;
  if (::lstat(link.c_str(), &st) != 0) {
    if (errno == ENOENT) return "";
    throw_errno("template " + name);
  }
  if (S_ISDIR(st.st_mode)) return link;
  if (!S_ISLNK(st.st_mode))
    throw Error("template " + name + ": " + link + " is neither a symlink nor a directory");
  char buf[256];
  ssize_t n = ::readlink(link.c_str(), buf, sizeof(buf));
  if (n < 0) {
    if (errno == ENOENT) return "";
    throw_errno("template " + name);
  }
  std::string target(buf, static_cast<size_t>(n));
  if (!target.starts_with("." + name + kGeneration) || target.find('/') != std::string::npos)
    throw Error("template " + name + ": " + link + " points at \"" + target +
                "\", not at one of its generations in the store: refused");
  return store + "/" + target;
}

bool make_private_dir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) == 0) return true;
  if (errno != EEXIST) throw_errno("create directory " + dir);
  return false;
}

// What a ".NAME.KIND-SUFFIX" entry of the store is about: {NAME, KIND}, or {"", ""}.
std::pair<std::string, std::string> parse_work_entry(const std::string& entry) {
  for (const char* kind : {kGeneration, kStaging, kRemoving}) {
    size_t at = entry.rfind(kind);
    if (entry.size() > 1 && entry[0] == '.' && at != std::string::npos && at > 1)
      return {entry.substr(1, at - 1), kind};
  }
  return {"", ""};
}

std::string template_info_text(int dir_fd, const std::string& file) {
  UniqueFd fd(::openat(dir_fd, kInfoFile, O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) throw_errno("cannot read " + file);
  return read_all_fd(fd.get());
}

}  // namespace

void check_private_dir(const std::string& dir) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) throw_errno("template store " + dir);
  if (!S_ISDIR(st.st_mode)) throw Error("template store " + dir + ": not a directory");
  if (st.st_uid != ::geteuid())
    throw Error("template store " + dir + " is owned by uid " + std::to_string(st.st_uid) +
                ", not by this user (uid " + std::to_string(::geteuid()) +
                "): refused, a store must be private to its owner (chown it, or set WISP_HOME)");
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    throw Error("template store " + dir + " is writable by group or others (mode " +
                std::to_string((st.st_mode >> 6) & 7) + std::to_string((st.st_mode >> 3) & 7) +
                std::to_string(st.st_mode & 7) + "): refused, a store must be private (chmod 700)");
}

std::string open_store(bool create) {
  std::string home = wisp_home(), store = templates_dir();
  if (create) {
    size_t slash = home.find_last_of('/');
    if (slash != std::string::npos && slash > 0) make_dirs(home.substr(0, slash));
    make_private_dir(home);
    make_private_dir(store);
  }
  for (const std::string& dir : {home, store}) {
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0 && errno == ENOENT) break;  // an empty store: nothing
    check_private_dir(dir);
  }
  return store;
}

OpenTemplate open_template(const std::string& name) {
  check_template_name(name);
  std::string store = open_store(false);
  // A rebuild or a removal may take the generation away between finding and locking it.
  for (int attempt = 0; attempt < 10; ++attempt) {
    std::string gen = generation_of(store, name);
    if (gen.empty())
      throw Error("template " + name + ": not found in " + store +
                  " (wisp template ls lists them; WISP_HOME sets the store)");
    OpenTemplate t;
    t.lock = UniqueFd(::open(gen.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!t.lock && errno == ENOENT) continue;
    if (!t.lock) throw_errno("template " + name + ": " + gen);
    if (::flock(t.lock.get(), LOCK_SH) != 0) throw_errno("template " + name + ": lock " + gen);
    struct stat st;
    if (::fstat(t.lock.get(), &st) != 0) throw_errno("template " + name + ": " + gen);
    if (st.st_nlink == 0) continue;  // removed before our lock
    t.dir = gen;
    t.snapshot_dir = gen + "/snapshot";
    std::string file = gen + "/" + kInfoFile;
    t.info = decode_template_info(template_info_text(t.lock.get(), file), file);
    return t;
  }
  throw Error("template " + name + ": it keeps changing (rebuilt or removed meanwhile)");
}

TemplateInfo read_template(const std::string& name) { return open_template(name).info; }

std::vector<std::string> template_names() {
  std::vector<std::string> names;
  DIR* d = ::opendir(open_store(false).c_str());
  if (!d) return names;
  while (dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') names.push_back(e->d_name);
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

namespace {

// A removed template's rebuild log, and its rebuild lock unless a rebuild still holds it (that
// rebuild then finds the template gone and publishes nothing).
void remove_rebuild_files(const std::string& store, const std::string& name) {
  std::string prefix = store + "/." + name;
  ::unlink((prefix + kRebuildLogSuffix).c_str());
  std::string lock = prefix + kRebuildLockSuffix;
  UniqueFd fd(::open(lock.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
  if (fd && ::flock(fd.get(), LOCK_EX | LOCK_NB) == 0) ::unlink(lock.c_str());
}

}  // namespace

void remove_template(const std::string& name) {
  check_template_name(name);
  std::string store = open_store(false);
  std::string link = store + "/" + name;
  std::string gen = generation_of(store, name);
  if (gen.empty()) throw Error("template " + name + ": not found");
  std::string doomed = store + "/." + name + kRemoving + std::to_string(::getpid());
  if (::rename(link.c_str(), doomed.c_str()) != 0) {
    if (errno == ENOENT) throw Error("template " + name + ": not found");
    throw_errno("rename " + link);
  }
  remove_tree(doomed);  // the symlink (an older wisp's directory: the template itself)
  if (gen != link) remove_if_unlocked(gen);  // else a call holds it: the next use removes it
  remove_rebuild_files(store, name);
  remove_store_leftovers();
}

std::string template_snapshot_dir(const std::string& name) {
  return templates_dir() + "/" + name + "/snapshot";
}

void remove_store_leftovers() {
  std::string store = templates_dir();
  DIR* d = ::opendir(store.c_str());
  if (!d) return;
  std::vector<std::string> entries;
  while (dirent* e = ::readdir(d))
    if (e->d_name[0] == '.') entries.push_back(e->d_name);
  ::closedir(d);
  for (const std::string& entry : entries) {
    auto [name, kind] = parse_work_entry(entry);
    if (name.empty()) continue;
    try {
      if (kind == kGeneration && generation_of(store, name) == store + "/" + entry) continue;
      remove_if_unlocked(store + "/" + entry);
    } catch (const Error&) {
      // In use, or going away: the next use tries again.
    }
  }
}

TemplateStaging::TemplateStaging(const std::string& name, bool rebuild)
    : name_(name), rebuild_(rebuild) {
  check_template_name(name);
  std::string store = open_store(/*create=*/true);
  remove_store_leftovers();
  std::string gen = generation_of(store, name);
  if (!gen.empty() && !rebuild)
    throw Error("template " + name + " already exists (wisp template rm " + name +
                ", or --rebuild to replace it)");
  if (rebuild && gen == store + "/" + name)
    throw Error("template " + name + " was made by an older wisp and cannot be swapped: " +
                "wisp template rm " + name + " first");
  lock_ = make_locked_temp_dir(store + "/." + name + kStaging + "XXXXXX", &dir_);
}

TemplateStaging::~TemplateStaging() {
  if (dir_.empty()) return;
  try {
    remove_tree(dir_);
  } catch (const Error&) {
    // A leftover is removed at the store's next use.
  }
}

void TemplateStaging::commit(const TemplateInfo& info, NoReplace how) {
  const std::string store = templates_dir();
  write_file_atomic(dir_ + "/" + kInfoFile, encode_template_info(info), 0600);
  fsync_dir(dir_);
  std::string gen_name = "." + name_ + kGeneration + dir_.substr(dir_.rfind(kStaging) + 5);
  std::string gen = store + "/" + gen_name;
  rename_dir_noreplace(dir_, gen, how);  // the lock stays: it is on the directory itself
  dir_ = gen;                            // removed on destruction if publishing fails
  std::string link = store + "/" + name_;
  std::string old;
  if (!rebuild_) {
    // symlink(2) creates it only where nothing is: no template is ever replaced by accident.
    if (::symlink(gen_name.c_str(), link.c_str()) != 0) {
      if (errno == EEXIST)
        throw Error("template " + name_ + " already exists (made meanwhile by another run)");
      throw_errno("publish template " + link);
    }
  } else {
    old = generation_of(store, name_);
    // The new symlink is made inside the locked generation (no leftover sweep enters it),
    // then renamed over the old one: calls see one generation or the other, never neither.
    std::string fresh = gen + "/.publish";
    if (::symlink(gen_name.c_str(), fresh.c_str()) != 0) throw_errno("create " + fresh);
    if (::rename(fresh.c_str(), link.c_str()) != 0) throw_errno("publish template " + link);
  }
  dir_.clear();
  fsync_dir(store);
  lock_.reset();
  if (!old.empty() && old != gen) {
    try {
      remove_if_unlocked(old);  // in use by a call: the store's next use removes it
    } catch (const Error&) {
    }
  }
}

}  // namespace wisp::manager
