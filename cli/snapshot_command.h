// `wisp snapshot create|restore|verify`: the raw snapshot operations on one VM.
#pragma once

namespace wisp {

int snapshot_command(int argc, char** argv, unsigned long long t0_ns);

}  // namespace wisp
