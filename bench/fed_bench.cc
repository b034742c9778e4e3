// Secure aggregation per scheme for models of 10 thousand, 100 thousand, 1 million and 10 million
// parameters: five parties, 3 of 5, a 2048-bit key, one process (ronghe/fed/bench.h says what each
// figure times). Prints one JSON array of rows {scheme, params, seal_s, accumulate_s,
// decrypt_party_s, finish_s, round_s, upload_bytes, ciphertexts_decrypted}.
//   build/bench/fed_bench [--params N[,N...]] [--schemes none,paillier,paillier-masked]
// Default: all four sizes; none and paillier-masked everywhere, paillier up to 1M (at 10M each
// decrypting party would need ~15 min per round on 2 cores: 93,000 ciphertexts).
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "ronghe/fed/bench.h"

namespace {

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_default_logger(spdlog::stderr_color_mt("fed_bench"));  // stdout is the JSON
  std::vector<int64_t> sizes = {10000, 100000, 1000000, 10000000};
  std::vector<std::string> schemes;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--params") == 0) {
      sizes.clear();
      for (const auto& n : Split(argv[i + 1])) sizes.push_back(std::stoll(n));
    } else if (std::strcmp(argv[i], "--schemes") == 0) {
      schemes = Split(argv[i + 1]);
    } else {
      std::fprintf(stderr, "usage: fed_bench [--params N[,N...]] [--schemes A,B]\n");
      return 2;
    }
  }
  nlohmann::json out = nlohmann::json::array();
  for (int64_t n : sizes) {
    ronghe::fed::BenchOptions o;
    o.params = n;
    o.schemes = schemes;
    if (o.schemes.empty()) {
      o.schemes = {"none", "paillier-masked"};
      if (n <= 1000000) o.schemes.push_back("paillier");
    }
    auto rows = ronghe::fed::RunFedBench(o);
    if (!rows.ok()) {
      std::fprintf(stderr, "fed_bench: %lld params: %s\n", static_cast<long long>(n),
                   rows.status().ToString().c_str());
      return 1;
    }
    for (auto& row : nlohmann::json::parse(ronghe::fed::BenchJson(*rows))) out.push_back(row);
  }
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}
