// The pseudo-terminal of a streamed command that asked for one (api/agent.capnp
// Handler.terminal). The agent makes a devpts instance of the sandbox's own (fsopen/fsmount:
// a detached mount, in no mount namespace yet), opens its ptmx (the master) and the pty
// (TIOCGPTPEER), before the sandbox is cloned. The sandbox's first process attaches the
// instance at /dev/pts of its mount namespace (move_mount) while it sets up /dev, so the
// command sees its terminal as /dev/pts/0 and no other terminal of the guest (runc does the
// same with a devpts per container); the handler makes the pty its controlling terminal.
#pragma once

#include <kj/io.h>

#include <cstdint>

namespace wisp::agent {

struct TerminalPair {
  kj::AutoCloseFd devpts;  // the detached devpts mount (for move_mount in the sandbox)
  kj::AutoCloseFd master;  // the agent's side: output is read here, input written here
  kj::AutoCloseFd pty;     // the command's side (/dev/pts/0), owned by uid/gid, mode 0620
};

// Throws kj::Exception naming the step that failed. `width` and `height` 0: the kernel's
// default size (0x0) is kept.
TerminalPair open_terminal(uint32_t uid, uint32_t gid, uint16_t width, uint16_t height);

// TIOCSWINSZ on the master; the kernel sends SIGWINCH to the terminal's foreground process
// group. Throws kj::Exception.
void resize_terminal(int master, uint16_t width, uint16_t height);

// The character that types an end of file into the terminal (its VEOF, ^D unless the command
// changed it), or -1 when it is disabled. Throws kj::Exception.
int terminal_eof_char(int master);

// Child side (async-signal-safe): attaches `devpts` at `path` (an existing directory).
// Returns -errno on failure.
int attach_devpts(int devpts, const char* path);

}  // namespace wisp::agent
