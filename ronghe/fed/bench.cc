#include "ronghe/fed/bench.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "ronghe/crypto/threshold.h"
#include "ronghe/fed/aggregation.h"
#include "ronghe/fed/coordinator.h"
#include "ronghe/fed/participant.h"
#include "ronghe/store/run_store.h"

namespace ronghe::fed {

namespace {

constexpr int kParties = 5;
constexpr int kThreshold = 3;

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// An MLP input -> hidden -> 1 has hidden * (input + 2) + 1 parameters.
struct Shape {
  int64_t input, hidden;
  int64_t params() const { return hidden * (input + 2) + 1; }
};
Shape ShapeFor(int64_t params) {
  const int64_t input = params < 50000 ? 64 : params < 500000 ? 128 : 1024;
  const int64_t hidden = std::max<int64_t>(1, (params - 1 + (input + 2) / 2) / (input + 2));
  return {input, hidden};
}

// Two Gaussian blobs, one per class: something for the round's local training to learn.
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

// The phases, through the scheme interface, on updates of `len` values.
Status TimePhases(const SchemeOptions& so, const crypto::ThresholdKeys* keys, int64_t len,
                  int threads, BenchRow* row) {
  ASSIGN_OR_RETURN(auto scheme, MakeScheme(so));
  ASSIGN_OR_RETURN(auto agg, AggregationScheme::Create(so));
  const crypto::MaskSeed seed = AttemptSeed("bench", 1, "nonce");
  std::mt19937 rng(7);
  std::normal_distribution<float> g(0.0f, 0.01f);
  std::vector<float> update(len);
  std::vector<std::string> wire;
  double seal = 0;
  for (int p = 0; p < kParties; ++p) {
    for (auto& v : update) v = g(rng);
    const double t0 = Now();
    ASSIGN_OR_RETURN(v1::Upload up, SealUpdate(so, *scheme, update, 1.0 / kParties, seed, threads));
    seal += Now() - t0;
    wire.push_back(up.SerializeAsString());
  }
  row->seal_s = seal / kParties;
  row->upload_bytes = static_cast<int64_t>(wire[0].size());
  double t0 = Now();
  agg->Begin(len, seed);
  for (int p = 0; p < kParties; ++p) {
    v1::Upload up;
    if (!up.ParseFromString(wire[p])) return DataLoss("bench: upload does not parse");
    RETURN_IF_ERROR(agg->Add(up, 1.0 / kParties, "party " + std::to_string(p + 1)));
  }
  row->accumulate_s = Now() - t0;
  const std::vector<mpz_class>& cts = agg->Ciphertexts();
  row->ciphertexts_decrypted = static_cast<int64_t>(cts.size());
  std::vector<mpz_class> plain;
  row->decrypt_party_s = 0;
  row->finish_s = 0;
  if (!cts.empty()) {
    std::vector<crypto::PartialDecryption> parts;
    for (int i = 0; i < kThreshold; ++i) {
      t0 = Now();
      ASSIGN_OR_RETURN(crypto::PartialDecryption part,
                       crypto::PartialDecrypt(*keys->public_key, keys->shares[i], cts, threads));
      row->decrypt_party_s = std::max(row->decrypt_party_s, Now() - t0);
      parts.push_back(std::move(part));
    }
    t0 = Now();
    for (const auto& part : parts)
      RETURN_IF_ERROR(crypto::VerifyPartial(*keys->public_key, cts, part, threads));
    ASSIGN_OR_RETURN(plain, crypto::CombineVector(*keys->public_key, parts, threads));
    row->finish_s = Now() - t0;
  }
  t0 = Now();
  ASSIGN_OR_RETURN(std::vector<float> sum, agg->Sum(plain));
  row->finish_s += Now() - t0;
  return Status::OK();
}

// One real federated round (the second of two when the model is small enough for the first to be
// mostly warm-up): five participants and the coordinator over the in-memory transport.
Result<double> TimeRound(SecureAggregation mode, const crypto::ThresholdKeys* keys,
                         const Shape& shape, const std::vector<data::LoadedData>& parts,
                         store::RunStore* store) {
  CoordinatorOptions o;
  o.consortium = "bench";
  for (int i = 0; i < kParties; ++i) o.parties.push_back("p" + std::to_string(i + 1));
  o.threshold = kThreshold;
  if (keys) o.public_key = keys->public_key;
  o.model.kind = "mlp";
  o.model.hidden = {shape.hidden};
  o.model.dropout = 0;
  o.schema = {{shape.input}, 1, "binary"};
  o.rounds = shape.params() >= 1000000 ? 1 : 2;
  o.round_deadline_s = 7200;
  o.min_participants = kParties;
  o.secure_aggregation = mode;
  o.local.set_epochs(1);
  o.local.set_batch_size(64);
  o.local.set_lr(1e-3);
  o.local.set_optimizer("sgd");
  o.retry_wait_s = 0.1;
  ASSIGN_OR_RETURN(auto coord, Coordinator::Create(o, store));
  std::vector<std::thread> threads, serves;
  std::mutex mu;
  for (int i = 0; i < kParties; ++i) {
    threads.emplace_back([&, i] {
      ParticipantOptions po;
      po.consortium = "bench";
      po.party = "p" + std::to_string(i + 1);
      if (keys) {
        po.public_key = keys->public_key;
        po.share = keys->shares[i];
      }
      po.data = &parts[i];
      po.data_json = "{}";
      po.threads = 1;  // five parties share this machine's cores
      po.give_up_after_s = 30;
      Participant p(po);
      (void)p.Run([&, i]() -> Result<std::unique_ptr<Connection>> {
        auto [mine, theirs] = MakePipe();
        std::lock_guard<std::mutex> lock(mu);
        serves.emplace_back([&coord, i, c = std::move(theirs)]() mutable {
          coord->Serve("p" + std::to_string(i + 1), *c);
        });
        return std::move(mine);
      });
    });
  }
  auto r = coord->Run();
  if (!r.ok()) coord->Stop();  // else the participants leave when told the run is done
  for (auto& t : threads) t.join();
  coord->Stop();
  for (auto& t : serves) t.join();
  if (!r.ok()) return r.status();
  if (r->rounds.empty()) return Internal("bench: no round completed");
  return r->rounds.back().seconds;
}

}  // namespace

Result<std::vector<BenchRow>> RunFedBench(const BenchOptions& o) {
  if (o.params < 100 || o.params > 100000000)
    return InvalidArgument("fed bench: --params must be 100..100000000, not " +
                           std::to_string(o.params));
  if (o.schemes.empty()) return InvalidArgument("fed bench: no scheme given");
  std::vector<SecureAggregation> modes;
  bool need_key = false;
  for (const auto& name : o.schemes) {
    auto m = ParseSecureAggregation(name);
    if (!m.ok()) {
      return InvalidArgument("--schemes: '" + name.substr(0, 64) +
                             "' is not none, paillier or paillier-masked");
    }
    modes.push_back(*m);
    need_key |= *m != SecureAggregation::kNone;
  }
  std::unique_ptr<crypto::ThresholdKeys> keys;
  if (need_key) {
    crypto::DealerOptions d;
    d.bits = o.key_bits;
    d.parties = kParties;
    d.threshold = kThreshold;
    d.insecure_for_testing = o.insecure_for_testing;
    spdlog::info("fed bench: dealing a {}-of-{} threshold Paillier key, {} bits", kThreshold,
                 kParties, o.key_bits);
    ASSIGN_OR_RETURN(crypto::ThresholdKeys k, crypto::DealThresholdKeys(d));
    keys = std::make_unique<crypto::ThresholdKeys>(std::move(k));
  }
  const Shape shape = ShapeFor(o.params);
  std::vector<data::LoadedData> parts;
  if (o.whole_round) {
    for (int i = 0; i < kParties; ++i) parts.push_back(Blobs(256, shape.input, 10 + i));
  }
  const char* tmp = std::getenv("TMPDIR");
  std::string db = std::string(tmp && *tmp ? tmp : "/tmp") + "/ronghe_fed_bench_" +
                   std::to_string(::getpid()) + ".db";
  std::unique_ptr<store::RunStore> store;
  if (o.whole_round) {
    ASSIGN_OR_RETURN(store, store::RunStore::Open(db));
  }
  std::vector<BenchRow> rows;
  Status failed;
  for (SecureAggregation mode : modes) {
    BenchRow row;
    row.scheme = SecureAggregationName(mode);
    row.params = shape.params();
    SchemeOptions so;
    so.mode = mode;
    so.max_summands = kParties;
    if (mode != SecureAggregation::kNone) so.public_key = keys->public_key;
    failed = TimePhases(so, keys.get(), shape.params(), o.threads, &row);
    if (!failed.ok()) break;
    row.round_s = -1;
    if (o.whole_round) {
      // The round's own progress lines would drown the figures.
      const auto level = spdlog::get_level();
      spdlog::set_level(std::max(level, spdlog::level::warn));
      auto r = TimeRound(mode, mode == SecureAggregation::kNone ? nullptr : keys.get(), shape,
                         parts, store.get());
      spdlog::set_level(level);
      if (!r.ok()) {
        failed = r.status();
        break;
      }
      row.round_s = *r;
    }
    spdlog::info(
        "fed bench: {} at {} params: seal {:.3f} s, accumulate {:.3f} s, decrypt/party {:.3f} s, "
        "finish {:.3f} s, round {:.2f} s, upload {} bytes",
        row.scheme, row.params, row.seal_s, row.accumulate_s, row.decrypt_party_s, row.finish_s,
        row.round_s, row.upload_bytes);
    rows.push_back(row);
  }
  store.reset();
  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((db + suffix).c_str());
  if (!failed.ok()) return failed;
  return rows;
}

std::string BenchJson(const std::vector<BenchRow>& rows) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& r : rows) {
    out.push_back({{"scheme", r.scheme},
                   {"params", r.params},
                   {"seal_s", r.seal_s},
                   {"accumulate_s", r.accumulate_s},
                   {"decrypt_party_s", r.decrypt_party_s},
                   {"finish_s", r.finish_s},
                   {"round_s", r.round_s},
                   {"upload_bytes", r.upload_bytes},
                   {"ciphertexts_decrypted", r.ciphertexts_decrypted}});
  }
  return out.dump(2);
}

}  // namespace ronghe::fed
