// Small file helpers that report failures as Status with the path and the OS reason.
#pragma once

#include <sys/types.h>

#include <string>

#include "ronghe/base/status.h"

namespace ronghe {

Result<std::string> ReadFile(const std::string& path);

// Writes `data` to `path` atomically: a temporary file in the same folder, fsync, rename.
// A reader (or a crash at any moment) sees either the old file or the whole new one.
// `mode` is applied to the new file (use 0600 for secrets).
Status WriteFileAtomic(const std::string& path, const std::string& data, mode_t mode = 0644);

// mkdir -p. `mode` applies to folders it creates.
Status MakeDirs(const std::string& path, mode_t mode = 0755);

bool FileExists(const std::string& path);

// "$HOME/.ronghe" unless RONGHE_HOME is set; `override_dir` (the --home flag) wins over both.
std::string ResolveHome(const std::string& override_dir = "");

// The rule for private keys and key shares (PostgreSQL's): no access for group or others, except
// group read when the file is owned by root (0640 root:ssl-cert, Debian's layout). `what` names
// the secret in the error: "<path>: group or others can access the <what> (mode 0644); chmod
// 600 it" (FailedPrecondition); NotFound when the file is missing.
Status CheckSecretFileMode(const std::string& path, const std::string& what);

}  // namespace ronghe
