// Hub throughput by artifact size: publishing (copy + sha256 + signing), verification (sha256
// over the file, as `hub pull` checks it, against the raw hash speed), and pull over loopback
// HTTP from `hub serve`. One JSON line per size on stdout.
//   build/bench/hub_bench [--max-mib 1024] [--dir /tmp/hub-bench]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "ronghe/base/hash.h"
#include "ronghe/hub/client.h"
#include "ronghe/hub/hub.h"
#include "ronghe/hub/server.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

void WriteBytes(const std::string& path, int64_t bytes) {
  std::ofstream o(path, std::ios::binary | std::ios::trunc);
  std::vector<char> block(1 << 20);
  for (size_t i = 0; i < block.size(); ++i) block[i] = static_cast<char>((i * 2654435761u) >> 13);
  for (int64_t left = bytes; left > 0; left -= static_cast<int64_t>(block.size())) {
    o.write(block.data(), static_cast<std::streamsize>(std::min<int64_t>(left, block.size())));
  }
}

void Check(const ronghe::Status& st, const char* what) {
  if (!st.ok()) {
    std::fprintf(stderr, "hub_bench: %s: %s\n", what, st.message().c_str());
    std::exit(1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  int64_t max_mib = 1024;
  std::string dir = "/tmp/hub-bench";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--max-mib")) max_mib = std::stoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--dir")) dir = argv[i + 1];
  }
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto key = ronghe::hub::SigningKey::Generate().value();
  Check(ronghe::hub::InitHub(dir + "/hub", key, {}), "init");
  ronghe::hub::HubServeOptions so;
  so.dir = dir + "/hub";
  so.host = "127.0.0.1";
  so.port = 0;
  so.refresh_every_s = 0;
  auto server = ronghe::hub::HubServer::Start(so);
  Check(server.status(), "serve");
  std::ofstream(dir + "/card.md") << "# bench\n";
  for (int64_t mib = 1; mib <= max_mib; mib *= 4) {
    const int64_t bytes = mib << 20;
    const std::string src = dir + "/model.bin";
    WriteBytes(src, bytes);
    const std::string v = std::to_string(mib);
    auto t = Clock::now();
    Check(ronghe::hub::Publish(dir + "/hub", {src, "m", v, dir + "/card.md", {}}, key), "publish");
    const double publish_s = Since(t);
    t = Clock::now();
    auto raw = ronghe::Sha256FileHex(src);
    const double hash_s = Since(t);
    Check(raw.status(), "hash");
    double verify_s = 0, http_s = 0;
    for (int http = 0; http < 2; ++http) {
      ronghe::hub::ClientOptions o;
      o.hub = http ? "http://127.0.0.1:" + std::to_string((*server)->port()) : dir + "/hub";
      o.trust_dir = dir + "/trust-" + std::to_string(http);
      auto c = ronghe::hub::HubClient::Open(o);
      Check(c.status(), "client");
      Check((*c)->Update(), "update");
      auto m = (*c)->Find("m", v);
      Check(m.status(), "find");
      const std::string out = dir + "/pulled-" + std::to_string(http);
      t = Clock::now();
      Check((*c)->Download(*m->File("model"), out), "download");
      (http ? http_s : verify_s) = Since(t);
      fs::remove(out);
    }
    fs::remove_all(dir + "/hub/targets/m/" + v);  // keep the disk use to one size at a time
    const double mb = static_cast<double>(bytes) / 1e6;
    std::printf(
        "{\"mib\":%lld,\"sha256_mb_s\":%.0f,\"pull_dir_mb_s\":%.0f,\"pull_http_mb_s\":%.0f,"
        "\"publish_mb_s\":%.0f,\"pull_dir_s\":%.4f}\n",
        static_cast<long long>(mib), mb / hash_s, mb / verify_s, mb / http_s, mb / publish_s,
        verify_s);
    std::fflush(stdout);
  }
  (*server)->Stop();
  fs::remove_all(dir);
  return 0;
}
