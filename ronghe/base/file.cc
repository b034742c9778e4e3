#include "ronghe/base/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace ronghe {

namespace {
std::string Errno() { return std::strerror(errno); }
}  // namespace

Result<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (!FileExists(path)) return NotFound(path + ": no such file");
    return IoError(path + ": cannot open: " + Errno());
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return IoError(path + ": read failed");
  return ss.str();
}

Status WriteFileAtomic(const std::string& path, const std::string& data, mode_t mode) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return IoError(tmp + ": cannot create: " + Errno());
  // open() honours the umask; set the mode exactly so 0600 secrets stay 0600.
  if (::fchmod(fd, mode) != 0) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return IoError(tmp + ": chmod failed: " + Errno());
  }
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::string why = Errno();
      ::close(fd);
      ::unlink(tmp.c_str());
      return IoError(tmp + ": write failed: " + why);
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp.c_str());
    return IoError(tmp + ": fsync/close failed: " + Errno());
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string why = Errno();
    ::unlink(tmp.c_str());
    return IoError(path + ": rename failed: " + why);
  }
  return Status::OK();
}

Status MakeDirs(const std::string& path, mode_t mode) {
  std::error_code ec;
  std::filesystem::path p(path);
  if (std::filesystem::is_directory(p, ec)) return Status::OK();
  std::filesystem::create_directories(p, ec);
  if (ec) return IoError(path + ": cannot create folder: " + ec.message());
  ::chmod(path.c_str(), mode);
  return Status::OK();
}

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

std::string ResolveHome(const std::string& override_dir) {
  if (!override_dir.empty()) return override_dir;
  if (const char* env = std::getenv("RONGHE_HOME"); env && *env) return env;
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.ronghe";
}

Status CheckSecretFileMode(const std::string& path, const std::string& what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return NotFound(path + ": no such file");
    return IoError(path + ": cannot read the " + what + ": " + std::strerror(errno));
  }
  const bool root_group_readable = st.st_uid == 0 && (st.st_mode & 037) == 0;
  if ((st.st_mode & 077) != 0 && !root_group_readable) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return FailedPrecondition(path + ": group or others can access the " + what + " (mode " + mode +
                              "); chmod 600 it");
  }
  return Status::OK();
}

}  // namespace ronghe
