#include "shim/oci_sandbox.h"

#include <capnp/compat/json.h>
#include <capnp/message.h>

#include <cmath>

#include "base/error.h"
#include "shim/oci_process.h"

namespace wisp::shim {

namespace {

using capnp::JsonValue;

constexpr size_t kMaxGroups = 64;  // as serve and the agent take (ExecSandbox)

// A JSON number that is a whole value in [0, max], else an error naming `field`.
uint64_t whole(JsonValue::Reader v, const std::string& field, double max) {
  if (!v.isNumber()) throw Error("config.json: " + field + ": expected a number");
  double d = v.getNumber();
  if (!(d >= 0) || d > max || std::floor(d) != d)
    throw Error("config.json: " + field + ": expected a whole number from 0 to " +
                std::to_string(static_cast<uint64_t>(max)));
  return static_cast<uint64_t>(d);
}

JsonValue::Reader object_or_fail(JsonValue::Reader v, const std::string& field) {
  if (!v.isObject()) throw Error("config.json: " + field + ": expected an object");
  return v;
}

}  // namespace

OciSandbox parse_oci_sandbox(const std::string& config_json) {
  capnp::MallocMessageBuilder message;
  JsonValue::Reader spec =
      object_or_fail(decode_config_json(config_json, message), "(the document)");
  OciSandbox out;
  KJ_IF_MAYBE (process, json_member(spec, "process")) {
    object_or_fail(*process, "process");
    KJ_IF_MAYBE (cwd, json_member(*process, "cwd")) {
      if (!cwd->isString()) throw Error("config.json: process.cwd: expected a string");
      std::string c = cwd->getString().cStr();
      if (!c.empty()) {
        if (c[0] != '/' || c.size() > 4095)
          throw Error("config.json: process.cwd: '" + c.substr(0, 200) +
                      "': expected an absolute path");
        out.cwd = c;
      }
    }
    KJ_IF_MAYBE (user, json_member(*process, "user")) {
      object_or_fail(*user, "process.user");
      KJ_IF_MAYBE (uid, json_member(*user, "uid")) {
        out.uid = static_cast<uint32_t>(whole(*uid, "process.user.uid", 4294967294.0));
      }
      KJ_IF_MAYBE (gid, json_member(*user, "gid")) {
        out.gid = static_cast<uint32_t>(whole(*gid, "process.user.gid", 4294967294.0));
      }
      KJ_IF_MAYBE (groups, json_member(*user, "additionalGids")) {
        if (!groups->isNull()) {
          if (!groups->isArray())
            throw Error("config.json: process.user.additionalGids: expected an array");
          if (groups->getArray().size() > kMaxGroups)
            throw Error("config.json: process.user.additionalGids: more than " +
                        std::to_string(kMaxGroups));
          for (auto g : groups->getArray())
            out.additional_gids.push_back(
                static_cast<uint32_t>(whole(g, "process.user.additionalGids[]", 4294967294.0)));
        }
      }
    }
    KJ_IF_MAYBE (rlimits, json_member(*process, "rlimits")) {
      if (!rlimits->isNull()) {
        if (!rlimits->isArray()) throw Error("config.json: process.rlimits: expected an array");
        for (auto r : rlimits->getArray()) {
          object_or_fail(r, "process.rlimits[]");
          std::string type;
          KJ_IF_MAYBE (t, json_member(r, "type")) {
            if (t->isString()) type = t->getString().cStr();
          }
          if (type.empty()) throw Error("config.json: process.rlimits[].type: expected a string");
          KJ_IF_MAYBE (hard, json_member(r, "hard")) {
            if (type == "RLIMIT_NOFILE") {
              uint64_t n = whole(*hard, "process.rlimits RLIMIT_NOFILE hard", 1048576.0);
              out.open_files = static_cast<uint32_t>(n);
            } else if (type == "RLIMIT_CPU") {
              uint64_t s = whole(*hard, "process.rlimits RLIMIT_CPU hard", 1e9);
              out.cpu_time_ms = s * 1000;
            }
          }
        }
      }
    }
  }
  KJ_IF_MAYBE (linux_, json_member(spec, "linux")) {
    KJ_IF_MAYBE (resources, json_member(object_or_fail(*linux_, "linux"), "resources")) {
      object_or_fail(*resources, "linux.resources");
      KJ_IF_MAYBE (memory, json_member(*resources, "memory")) {
        KJ_IF_MAYBE (limit, json_member(*memory, "limit")) {
          // -1 (unlimited) leaves the default.
          if (!limit->isNumber() || limit->getNumber() >= 0)
            out.memory_bytes = whole(*limit, "linux.resources.memory.limit", 1e15);
        }
      }
      KJ_IF_MAYBE (pids, json_member(*resources, "pids")) {
        KJ_IF_MAYBE (limit, json_member(*pids, "limit")) {
          // 0 or -1 (unlimited) leaves the default.
          if (!limit->isNumber() || limit->getNumber() > 0)
            out.pids = static_cast<uint32_t>(whole(*limit, "linux.resources.pids.limit", 4194304));
        }
      }
    }
  }
  return out;
}

}  // namespace wisp::shim
