// `wisp template create|ls|rm` and `wisp invoke`: functions as warmed snapshots in the
// template store (cli/template_store.h), and one call on a fresh clone of one.
#pragma once

namespace wisp {

int template_command(int argc, char** argv, unsigned long long t0_ns);
int invoke_command(int argc, char** argv, unsigned long long t0_ns);

}  // namespace wisp
