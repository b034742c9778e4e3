// One federated round, plaintext vs threshold Paillier, for models of about 5 thousand, 10
// thousand (the fraud MLP's shape), 100 thousand and 1 million parameters: 5 participants,
// threshold 3, 2048-bit key, in one process over the in-memory transport (which serialises every
// message, so the byte counts are what gRPC would carry, before HTTP/2 and TLS framing).
// Prints JSON: [{name, params, mode, round_s, max_party_bytes}].
//   build/bench/fed_bench [--quick | --only NAME]   (--quick: skip the 1M model)
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>

#include "ronghe/crypto/threshold.h"
#include "ronghe/fed/coordinator.h"
#include "ronghe/fed/participant.h"
#include "ronghe/store/run_store.h"

using namespace ronghe;

namespace {

constexpr int kParties = 5;

data::LoadedData Blobs(int64_t n, int64_t dim, uint64_t seed) {
  torch::manual_seed(seed);
  data::LoadedData d;
  d.task = data::Task::kBinary;
  d.num_classes = 2;
  d.input_shape = {dim};
  auto y = torch::randint(0, 2, {n}, torch::kInt64);
  auto x = torch::randn({n, dim}) + (y.to(torch::kFloat32) * 2 - 1).unsqueeze(1) * 0.5;
  d.train = {x, y};
  d.val = d.train;
  d.test = d.train;
  return d;
}

struct Row {
  std::string name;
  int64_t dim;
  std::vector<int64_t> hidden;
};

}  // namespace

int main(int argc, char** argv) {
  bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  std::string only = argc > 2 && std::strcmp(argv[1], "--only") == 0 ? argv[2] : "";
  spdlog::set_level(spdlog::level::warn);
  crypto::DealerOptions d{.bits = 2048, .parties = kParties, .threshold = 3};
  auto keys = crypto::DealThresholdKeys(d);
  if (!keys.ok()) return 1;
  std::vector<Row> rows = {{"5k", 64, {76}}, {"fraud-mlp", 124, {64, 32}}, {"100k", 256, {388}}};
  if (!quick) rows.push_back({"1M", 1024, {976}});
  nlohmann::json out = nlohmann::json::array();
  std::string db = "/tmp/ronghe_fed_bench_" + std::to_string(::getpid()) + ".db";
  auto store = std::move(store::RunStore::Open(db)).value();
  for (const auto& row : rows) {
    if (!only.empty() && row.name != only) continue;
    std::vector<data::LoadedData> parts;
    for (int i = 0; i < kParties; ++i) parts.push_back(Blobs(256, row.dim, 10 + i));
    for (std::string mode : {"none", "paillier"}) {
      fed::CoordinatorOptions o;
      o.consortium = "bench";
      for (int i = 0; i < kParties; ++i) o.parties.push_back("p" + std::to_string(i + 1));
      o.threshold = 3;
      o.public_key = keys->public_key;
      o.model.kind = "mlp";
      o.model.hidden = row.hidden;
      o.schema = {{row.dim}, 1, "binary"};
      // Round 1 warms up (first connections, allocations) and round 2 is measured; the 1M model's
      // round is long enough that one round says it all.
      o.rounds = row.name == "1M" ? 1 : 2;
      o.round_deadline_s =
          3600;  // the default 300 s is shorter than a 1M-parameter round on 2 cores
      o.min_participants = kParties;
      o.secure_aggregation = fed::ParseSecureAggregation(mode).value();
      o.local.set_epochs(1);
      o.local.set_batch_size(64);
      o.local.set_lr(1e-3);
      o.local.set_optimizer("sgd");
      auto coord = std::move(fed::Coordinator::Create(o, store.get())).value();
      std::vector<std::thread> threads, serves;
      std::mutex mu;
      for (int i = 0; i < kParties; ++i) {
        threads.emplace_back([&, i] {
          fed::ParticipantOptions po;
          po.consortium = "bench";
          po.party = "p" + std::to_string(i + 1);
          po.public_key = keys->public_key;
          po.share = keys->shares[i];
          po.data = &parts[i];
          po.data_json = "{}";
          po.threads = 1;  // five parties share this machine's cores
          fed::Participant p(po);
          (void)p.Run([&, i]() -> Result<std::unique_ptr<fed::Connection>> {
            auto [mine, theirs] = fed::MakePipe();
            std::lock_guard<std::mutex> lock(mu);
            serves.emplace_back([&coord, i, c = std::move(theirs)]() mutable {
              coord->Serve("p" + std::to_string(i + 1), *c);
            });
            return std::move(mine);
          });
        });
      }
      auto r = coord->Run();
      for (auto& t : threads) t.join();
      coord->Stop();
      for (auto& t : serves) t.join();
      if (!r.ok()) {
        std::fprintf(stderr, "%s %s: %s\n", row.name.c_str(), mode.c_str(),
                     r.status().ToString().c_str());
        return 1;
      }
      const auto& rep = r->rounds.back();
      out.push_back({{"name", row.name},
                     {"params", r->weights.size()},
                     {"mode", mode},
                     {"round_s", rep.seconds},
                     {"max_party_bytes", rep.max_party_bytes}});
      std::fprintf(stderr, "%s (%zu params) %s: round %.2f s, %lld bytes per party\n",
                   row.name.c_str(), r->weights.size(), mode.c_str(), rep.seconds,
                   static_cast<long long>(rep.max_party_bytes));
    }
  }
  std::remove(db.c_str());
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}
