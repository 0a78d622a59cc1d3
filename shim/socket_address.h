// Where a shim's ttrpc socket lives. containerd's own shims put it at
// unix://<state dir>/s/<sha256 of filepath.Join(containerd's address, namespace, id)> with the
// state dir /run/containerd (runtime/v2/shim/util_unix.go): one socket per containerd, namespace
// and task, short enough for sun_path whatever the names. This shim does the same, so a second
// `start` for the same task finds the first shim's socket.
#pragma once

#include <string>
#include <string_view>

namespace wisp::shim {

// Go's filepath.Clean: "." and ".." resolved lexically, repeated and trailing slashes dropped;
// "" is ".".
std::string clean_path(std::string_view path);

// Go's filepath.Join: the non-empty parts joined by "/", then cleaned.
std::string join_path(std::initializer_list<std::string_view> parts);

// The socket root: $WISP_SHIM_SOCKET_ROOT when set (tests), else /run/containerd.
std::string socket_root();

// "unix://<root>/s/<hex sha256>".
std::string socket_address(const std::string& root, const std::string& containerd_address,
                           const std::string& ns, const std::string& id);

// The filesystem path of a "unix://PATH" address (PATH itself when it has no scheme).
std::string socket_path(const std::string& address);

}  // namespace wisp::shim
