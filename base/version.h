// wisp's release version: reported by `wisp --version`, the agent's info() and recorded in
// every snapshot it writes. The snapshot format has its own version (snapshot/state_file.h).
#pragma once

namespace wisp {

inline constexpr char kWispVersion[] = "0.1.0";

}  // namespace wisp
