// shim/checkpoint_record: the file the shim leaves in containerd's checkpoint directory, read
// back as untrusted input when a task is created from a checkpoint image.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "base/error.h"
#include "shim/checkpoint_record.h"

namespace wisp::shim {
namespace {

std::string parse_error(const std::string& text) {
  try {
    parse_checkpoint_record(text);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(CheckpointRecordTest, RoundTripsThroughTheDirectory) {
  char tmpl[] = "/tmp/wisp-ckpt-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  CheckpointRecord r{checkpoint_template_name("task/with odd:chars"), "task/with odd:chars"};
  EXPECT_EQ(r.template_name.size(), 5u + 32);
  write_checkpoint_record(dir, r);
  CheckpointRecord back = read_checkpoint_record(dir);
  EXPECT_EQ(back.template_name, r.template_name);
  EXPECT_EQ(back.task_id, r.task_id);
  EXPECT_NE(checkpoint_template_name("a"), checkpoint_template_name("a"));  // the time differs
  // A symlink in its place (the directory is an unpacked image layer) is not followed.
  std::string file = dir + "/" + kCheckpointFile;
  ASSERT_EQ(::unlink(file.c_str()), 0);
  ASSERT_EQ(::symlink("/etc/passwd", file.c_str()), 0);
  EXPECT_THROW(read_checkpoint_record(dir), Error);
  std::system(("rm -rf '" + dir + "'").c_str());
}

TEST(CheckpointRecordTest, BadRecordsAreRefusedByLineAndField) {
  EXPECT_EQ(parse_error("wisp-checkpoint 1\ntemplate ckpt-1\ntask t\n"), "");
  EXPECT_NE(parse_error("").find("no template line"), std::string::npos);
  EXPECT_NE(parse_error("wisp-checkpoint 2\ntemplate x\n").find("another version"),
            std::string::npos);
  EXPECT_NE(parse_error("wisp-checkpoint 1\ntemplate ../etc\n").find("template: template name"),
            std::string::npos);
  EXPECT_NE(parse_error("wisp-checkpoint 1\ntemplate a\ntemplate b\n").find("repeated"),
            std::string::npos);
  EXPECT_NE(parse_error("wisp-checkpoint 1\nrootfs /x\n").find("line 2"), std::string::npos);
  EXPECT_NE(parse_error("wisp-checkpoint 1\ntemplate a").find("no newline"), std::string::npos);
  EXPECT_NE(parse_error(std::string(5000, 'x')).find("over the limit"), std::string::npos);
  EXPECT_THROW(format_checkpoint_record({"a", "b\nc"}), Error);
}

}  // namespace
}  // namespace wisp::shim
