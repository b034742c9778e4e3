// Whole federations in one process: a coordinator and five participants on breast_cancer
// (split IID), over the in-memory transport (which serialises every message, so tests can read
// the wire) and over real gRPC with mutual TLS on loopback. Keys are 1024-bit test keys.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "ronghe/base/file.h"
#include "ronghe/crypto/bigint.h"
#include "ronghe/crypto/encoding.h"
#include "ronghe/crypto/packing.h"
#include "ronghe/crypto/threshold.h"
#include "ronghe/data/split.h"
#include "ronghe/fed/coordinator.h"
#include "ronghe/fed/fed.grpc.pb.h"
#include "ronghe/fed/grpc_transport.h"
#include "ronghe/fed/participant.h"
#include "ronghe/fed/testing.h"
#include "ronghe/nn/tensor_file.h"
#include "ronghe/tls/tls.h"
#include "ronghe/tls/x509.h"
#include "ronghe/train/trainer.h"

namespace ronghe::fed {
namespace {

enum class Net { kMemory, kGrpc };
const char* NetName(Net n) { return n == Net::kMemory ? "memory" : "grpc"; }

constexpr int kParties = 5;
constexpr int kThreshold = 3;
const char* kConsortium = "test-consortium";

std::string PartyName(int i) { return "bank-" + std::to_string(i + 1); }

const crypto::ThresholdKeys& Keys() {
  static const crypto::ThresholdKeys* keys = [] {
    crypto::DealerOptions d{
        .bits = 1024, .parties = kParties, .threshold = kThreshold, .insecure_for_testing = true};
    return new crypto::ThresholdKeys(std::move(crypto::DealThresholdKeys(d)).value());
  }();
  return *keys;
}

struct Pki {
  tls::PemPair ca, coordinator;
  std::vector<tls::PemPair> parties;
};
const Pki& Certs() {
  static const Pki* pki = [] {
    auto* p = new Pki;
    p->ca = tls::MakeCa(kConsortium).value();
    p->coordinator =
        tls::MakeLeaf(p->ca, {kConsortium, "coordinator", {"localhost"}, {"127.0.0.1"}, true})
            .value();
    for (int i = 0; i < kParties; ++i)
      p->parties.push_back(tls::MakeLeaf(p->ca, {kConsortium, PartyName(i)}).value());
    return p;
  }();
  return *pki;
}

// breast_cancer's training split dealt IID to the parties; val/test shared for evaluation.
const std::vector<data::LoadedData>& PartyData() {
  static const std::vector<data::LoadedData>* parts = [] {
    auto* out = new std::vector<data::LoadedData>;
    data::DataOptions o = data::DefaultDataOptions("breast_cancer");
    auto all = data::LoadData(o, ResolveHome());
    if (!all.ok()) {
      ADD_FAILURE() << "breast_cancer: " << all.status().ToString()
                    << " (run scripts/fetch-data.sh)";
      return out;
    }
    auto idx = data::PartitionIid(all->train.size(), kParties, 7);
    for (int i = 0; i < kParties; ++i) {
      data::LoadedData d = *all;
      at::Tensor sel = torch::tensor(idx[i], torch::kInt64);
      d.train = {all->train.x.index_select(0, sel), all->train.y.index_select(0, sel)};
      out->push_back(std::move(d));
    }
    return out;
  }();
  return *parts;
}

// Wraps a participant's connection to tamper with what it sends (replays, bad uploads).
class Wrapped : public Connection {
 public:
  using Mutate = std::function<std::vector<v1::Envelope>(const v1::Envelope&)>;
  Wrapped(std::unique_ptr<Connection> inner, Mutate m, std::atomic<int>* rejected)
      : inner_(std::move(inner)), mutate_(std::move(m)), rejected_(rejected) {}
  bool Send(const v1::Envelope& e) override {
    for (auto& out : mutate_(e))
      if (!inner_->Send(out)) return false;
    return true;
  }
  bool Recv(v1::Envelope* e) override {
    bool ok = inner_->Recv(e);
    if (ok && e->has_notice() && e->notice().code() == v1::Notice::REJECTED) ++*rejected_;
    return ok;
  }
  void Close() override { inner_->Close(); }

 private:
  std::unique_ptr<Connection> inner_;
  Mutate mutate_;
  std::atomic<int>* rejected_;
};

struct Scenario {
  Net net = Net::kMemory;
  std::string secure = "paillier";
  int64_t rounds = 3;
  int min_participants = 0;
  double join_timeout_s = 60;
  std::string strategy = "fedavg";
  double prox_mu = 0;
  double noise_multiplier = 0;
  int crash_party = -1;            // index of a party that dies...
  int64_t crash_round = 0;         // ...on receiving this round's task
  bool restart_crashed = false;    // and comes back at once
  int tamper_party = -1;           // sends a wrong partial decryption
  int stop_coordinator_after = 0;  // "kill" the coordinator after this round, then restart it
  std::map<int, Wrapped::Mutate> mutate;  // per party index
  WireTap tap;
  std::function<void(int, const std::vector<float>&)> observe;
  int hidden = 16;
  std::set<int> absent;  // parties the harness does not run (a test may play them)
  std::function<void(CoordinatorOptions&)> coordinator_options;
  std::function<void(GrpcServerOptions&)> server_options;
  // Called with the coordinator's port (gRPC) before the participants start.
  std::function<void(int port)> before_participants;
};

struct Outcome {
  Status status;
  CoordinatorResult result;
  std::vector<Status> participant_status;
  int rejected = 0;
  std::vector<int64_t> sessions;
  int64_t run_id = 0;
};

class Harness {
 public:
  explicit Harness(Scenario s) : s_(std::move(s)) {
    std::string dir = ::testing::TempDir() + "/ronghe_fed_runtime";
    EXPECT_TRUE(MakeDirs(dir).ok());
    std::string db =
        dir + "/" + std::to_string(::getpid()) + "-" + std::to_string(counter_++) + ".db";
    store_ = std::move(store::RunStore::Open(db)).value();
  }

  CoordinatorOptions Options() {
    CoordinatorOptions o;
    o.consortium = kConsortium;
    for (int i = 0; i < kParties; ++i) o.parties.push_back(PartyName(i));
    o.threshold = kThreshold;
    o.public_key = Keys().public_key;
    o.model.kind = "mlp";
    o.model.hidden = {s_.hidden};
    o.schema = {PartyData()[0].input_shape, 1, "binary"};
    o.model.dropout = 0;
    o.rounds = s_.rounds;
    o.min_participants = s_.min_participants;
    o.round_deadline_s = 60;
    o.join_timeout_s = s_.join_timeout_s;
    o.retry_wait_s = 0.2;
    o.local.set_epochs(1);
    o.local.set_batch_size(32);
    o.local.set_optimizer("adam");
    o.local.set_lr(0.01);
    o.local.set_prox_mu(s_.prox_mu);
    o.server.name = s_.strategy == "fedprox" ? "fedavg" : s_.strategy;
    if (o.server.name != "fedavg") o.server.lr = 0.01;
    o.secure_aggregation = ParseSecureAggregation(s_.secure).value();
    o.dp.noise_multiplier = s_.noise_multiplier;
    o.seed = 3;
    o.threads = 2;
    o.chunk_bytes = 4096;  // many chunks even for a small model: the reassembly path is exercised
    if (s_.coordinator_options) s_.coordinator_options(o);
    return o;
  }

  Outcome Run() {
    Outcome out;
    auto& data = PartyData();
    if (data.size() != kParties) {
      out.status = FailedPrecondition("no data");
      return out;
    }
    StartCoordinator(0);
    if (s_.before_participants) s_.before_participants(port_);
    std::vector<std::thread> threads;
    std::vector<Status> pstatus(kParties);
    std::vector<int64_t> sessions(kParties);
    for (int i = 0; i < kParties; ++i) {
      if (s_.absent.count(i)) continue;
      threads.emplace_back([&, i] {
        bool first = true;
        while (true) {
          ParticipantOptions po;
          po.consortium = kConsortium;
          po.party = PartyName(i);
          po.public_key = Keys().public_key;
          po.share = Keys().shares[i];
          po.data = &data[i];
          po.data_json = "{}";
          po.threads = 1;
          po.chunk_bytes = 4096;
          po.backoff_initial_s = 0.05;
          po.backoff_max_s = 0.2;
          po.give_up_after_s = 60;
          po.crash_process = false;
          if (first && i == s_.crash_party) po.crash_at_round = s_.crash_round;
          ParticipantTestHooks hooks;
          if (i == s_.tamper_party) {
            hooks.tamper_partial = [](crypto::PartialDecryption& p) { p.shares[0] += 1; };
          }
          if (s_.observe)
            hooks.observe_update = [this, i](const std::vector<float>& u) { s_.observe(i, u); };
          Participant part(po);
          SetTestHooks(part, hooks);
          {
            std::lock_guard<std::mutex> lock(mu_);
            live_[i] = &part;
          }
          Status st = part.Run([&, i] { return Dial(i); });
          {
            std::lock_guard<std::mutex> lock(mu_);
            live_[i] = nullptr;
          }
          sessions[i] += part.sessions();
          if (st.code() == StatusCode::kCancelled && first && i == s_.crash_party &&
              s_.restart_crashed) {
            first = false;
            continue;
          }
          pstatus[i] = st;
          return;
        }
      });
    }
    auto r = coordinator_->Run();
    if (s_.stop_coordinator_after > 0) {
      // The first coordinator was stopped mid-run (as by kill -9: its run is left unfinished).
      EXPECT_FALSE(r.ok());
      int64_t run = coordinator_->run_id();
      StopCoordinator();
      StartCoordinator(run);
      r = coordinator_->Run();
    }
    out.status = r.status();
    out.run_id = coordinator_->run_id();
    if (r.ok()) out.result = *r;
    if (!r.ok()) {
      // The coordinator gave up: participants would keep trying to reach it; stop them.
      std::lock_guard<std::mutex> lock(mu_);
      for (auto* p : live_)
        if (p) p->Stop();
    }
    for (auto& t : threads) t.join();
    StopCoordinator();
    out.participant_status = pstatus;
    out.sessions = sessions;
    out.rejected = rejected_;
    return out;
  }

 private:
  void StartCoordinator(int64_t resume) {
    CoordinatorOptions o = Options();
    auto c = Coordinator::Create(o, store_.get(), resume);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    if (s_.stop_coordinator_after > 0 && resume == 0) {
      SetTestHooks(**c, {.after_round = [this](int64_t round) {
        if (round == s_.stop_coordinator_after) coordinator_->Stop();
      }});
    }
    std::lock_guard<std::mutex> lock(mu_);
    coordinator_ = std::move(*c);
    if (s_.net == Net::kGrpc) {
      GrpcServerOptions so;
      so.listen = "127.0.0.1:" + std::to_string(port_);
      so.tls = {Certs().ca.cert_pem, Certs().coordinator.cert_pem, Certs().coordinator.key_pem};
      so.consortium = kConsortium;
      for (int i = 0; i < kParties; ++i) so.parties.insert(PartyName(i));
      if (s_.server_options) s_.server_options(so);
      Coordinator* coord = coordinator_.get();
      auto server = GrpcServer::Start(
          so, [coord](const std::string& party, Connection& c) { coord->Serve(party, c); });
      ASSERT_TRUE(server.ok()) << server.status().ToString();
      server_ = std::move(*server);
      port_ = server_->port();  // a restarted coordinator listens where the first one did
    }
    up_ = true;
  }

  void StopCoordinator() {
    std::unique_ptr<GrpcServer> server;
    std::unique_ptr<Coordinator> coord;
    std::vector<std::thread> serves;
    {
      std::lock_guard<std::mutex> lock(mu_);
      up_ = false;
      if (coordinator_) coordinator_->Stop();
      server = std::move(server_);
      coord = std::move(coordinator_);
      serves = std::move(serve_threads_);
    }
    if (server) server->Shutdown();
    for (auto& t : serves) t.join();
  }

  Result<std::unique_ptr<Connection>> Dial(int i) {
    std::unique_ptr<Connection> conn;
    if (s_.net == Net::kMemory) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!up_) return Unavailable("coordinator down");
      auto [mine, theirs] = MakePipe(s_.tap);
      Coordinator* coord = coordinator_.get();
      serve_threads_.emplace_back(
          [coord, i, c = std::move(theirs)]() mutable { coord->Serve(PartyName(i), *c); });
      conn = std::move(mine);
    } else {
      int port;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (!up_) return Unavailable("coordinator down");
        port = port_;
      }
      GrpcDialOptions d;
      d.address = "127.0.0.1:" + std::to_string(port);
      d.tls = {Certs().ca.cert_pem, Certs().parties[i].cert_pem, Certs().parties[i].key_pem};
      d.connect_timeout_s = 2;
      ASSIGN_OR_RETURN(conn, GrpcDial(d));
    }
    auto it = s_.mutate.find(i);
    auto m = it != s_.mutate.end() ? it->second : [](const v1::Envelope& e) {
      return std::vector<v1::Envelope>{e};
    };
    return std::unique_ptr<Connection>(new Wrapped(std::move(conn), m, &rejected_));
  }

 public:
  store::RunStore& store() { return *store_; }

 private:
  Scenario s_;
  std::unique_ptr<store::RunStore> store_;
  std::mutex mu_;
  std::unique_ptr<Coordinator> coordinator_;
  std::unique_ptr<GrpcServer> server_;
  std::vector<std::thread> serve_threads_;
  Participant* live_[kParties] = {};
  bool up_ = false;
  int port_ = 0;
  std::atomic<int> rejected_{0};
  static inline int counter_ = 0;
};

double MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i)
    m = std::max(m, std::abs(static_cast<double>(a[i]) - b[i]));
  return m;
}

double TestRocAuc(const std::vector<float>& weights) {
  nn::ModelConfig c;
  c.kind = "mlp";
  c.hidden = {16};
  c.input_shape = PartyData()[0].input_shape;
  c.outputs = 1;
  auto model = std::move(nn::Model::Create(c)).value();
  auto state = model->NamedState();
  EXPECT_TRUE(Unflatten(weights, &state).ok());
  auto m = train::Evaluate(*model, PartyData()[0].test, data::Task::kBinary, {}, 1024, "fp32");
  return m.ok() ? m->at("roc_auc") : 0;
}

// Every scenario over both transports and both secure schemes.
class FedRuntimeTest : public ::testing::TestWithParam<std::tuple<Net, std::string>> {
 protected:
  Scenario Base() const {
    Scenario s;
    s.net = std::get<0>(GetParam());
    s.secure = std::get<1>(GetParam());
    return s;
  }
  Net net() const { return std::get<0>(GetParam()); }
};

// The secure schemes and the plaintext baseline compute the same integer sums of the same
// quantised updates: the models are identical, bit for bit, every round.
TEST_P(FedRuntimeTest, SecureRunEqualsPlaintextBitForBit) {
  Scenario s = Base();
  const std::string scheme = s.secure;
  s.rounds = 3;
  // Every round waits for all five: the same contributors in both runs (a bank slow to connect on
  // a loaded machine would otherwise miss the baseline's first round and change its sums).
  s.min_participants = kParties;
  s.secure = "none";
  Outcome plain = Harness(s).Run();
  ASSERT_TRUE(plain.status.ok()) << plain.status.ToString();
  for (auto& r : plain.result.rounds) EXPECT_EQ(r.contributors.size(), 5u);
  s.secure = scheme;
  Outcome secure = Harness(s).Run();
  ASSERT_TRUE(secure.status.ok()) << secure.status.ToString();
  ASSERT_EQ(secure.result.rounds.size(), 3u);
  for (auto& r : secure.result.rounds) {
    EXPECT_EQ(r.contributors.size(), 5u);
    EXPECT_EQ(r.decryptors.size(), 3u);
    EXPECT_TRUE(r.excluded.empty());
    EXPECT_GT(r.error_bound, 0);  // quantisation, the same in every scheme
  }
  EXPECT_EQ(MaxAbsDiff(secure.result.weights, plain.result.weights), 0.0);
  EXPECT_GT(TestRocAuc(secure.result.weights), 0.95);
  for (auto& st : secure.participant_status) EXPECT_TRUE(st.ok()) << st.ToString();
}

TEST_P(FedRuntimeTest, ParticipantCrashingMidRoundDoesNotStallAndRejoins) {
  Scenario s = Base();
  s.rounds = 6;
  s.crash_party = 4;
  s.crash_round = 2;
  s.restart_crashed = true;
  Outcome o = Harness(s).Run();
  ASSERT_TRUE(o.status.ok()) << o.status.ToString();
  ASSERT_EQ(o.result.rounds.size(), 6u);
  auto has = [](const std::vector<std::string>& v, const std::string& x) {
    return std::count(v.begin(), v.end(), x) > 0;
  };
  EXPECT_TRUE(has(o.result.rounds[0].contributors, "bank-5"));
  EXPECT_FALSE(has(o.result.rounds[1].contributors, "bank-5"));
  EXPECT_EQ(o.result.rounds[1].contributors.size(), 4u);
  bool named = false;
  for (auto& e : o.result.rounds[1].excluded) named |= e.rfind("bank-5: disconnected", 0) == 0;
  EXPECT_TRUE(named);
  // It came back (a new process in real life) and contributes again. Rounds do not wait for a
  // party that joined and left, so it is in whichever round starts after it reconnects: round 6
  // at the latest, three rounds after the one it missed.
  EXPECT_TRUE(has(o.result.rounds[5].contributors, "bank-5"));
  EXPECT_GE(o.sessions[4], 2);
}

TEST_P(FedRuntimeTest, TooFewParticipantsAbandonsTheRoundAndNeverProducesAModel) {
  Scenario s = Base();
  s.rounds = 2;
  s.min_participants = 5;
  s.crash_party = 0;
  s.crash_round = 2;  // gone for good: every retry of round 2 lacks a party
  s.join_timeout_s = 2;
  Harness h(s);
  Outcome o = h.Run();
  ASSERT_FALSE(o.status.ok());
  EXPECT_NE(o.status.message().find("round 2 failed"), std::string::npos) << o.status.ToString();
  EXPECT_NE(o.status.message().find("model of round 1 is kept"), std::string::npos)
      << o.status.ToString();
}

TEST_P(FedRuntimeTest, CoordinatorStoppedAfterARoundResumesToTheSameModel) {
  Scenario s = Base();
  s.rounds = 4;
  s.secure = "none";
  s.min_participants = 5;  // every round has all five, so the two runs are comparable bit for bit
  Outcome clean = Harness(s).Run();
  ASSERT_TRUE(clean.status.ok()) << clean.status.ToString();
  s.stop_coordinator_after = 2;
  Outcome resumed = Harness(s).Run();
  ASSERT_TRUE(resumed.status.ok()) << resumed.status.ToString();
  EXPECT_TRUE(resumed.result.resumed);
  ASSERT_EQ(resumed.result.rounds.size(), 2u);  // rounds 3 and 4 ran in the second coordinator
  EXPECT_EQ(resumed.result.rounds[0].round, 3);
  EXPECT_EQ(MaxAbsDiff(resumed.result.weights, clean.result.weights), 0.0);
  for (auto& st : resumed.participant_status)
    EXPECT_TRUE(st.ok()) << st.ToString();  // reconnected by themselves
  for (int64_t n : resumed.sessions) EXPECT_GE(n, 2);
}

TEST_P(FedRuntimeTest, WrongPartialDecryptionIsExcludedNamedAndReplaced) {
  Scenario s = Base();
  s.rounds = 2;
  Outcome clean = Harness(s).Run();
  ASSERT_TRUE(clean.status.ok()) << clean.status.ToString();
  s.tamper_party = 0;  // bank-1 is asked first every round
  Outcome o = Harness(s).Run();
  ASSERT_TRUE(o.status.ok()) << o.status.ToString();
  for (auto& r : o.result.rounds) {
    EXPECT_EQ(r.decryptors.size(), 3u);
    EXPECT_EQ(std::count(r.decryptors.begin(), r.decryptors.end(), "bank-1"), 0);
    bool named = false;
    for (auto& e : r.excluded)
      named |= e.rfind("bank-1: ", 0) == 0 && e.find("does not verify") != std::string::npos;
    EXPECT_TRUE(named) << (r.excluded.empty() ? "" : r.excluded[0]);
    EXPECT_EQ(r.contributors.size(), 5u);  // its update still counts: only its shares were bad
  }
  // Decryption is exact: the same model as without the cheater.
  EXPECT_EQ(MaxAbsDiff(o.result.weights, clean.result.weights), 0.0);
}

TEST_P(FedRuntimeTest, ReplayedUploadIsRejectedAndChangesNothing) {
  Scenario s = Base();
  s.rounds = 2;
  s.secure = "none";
  s.min_participants = 5;
  Outcome clean = Harness(s).Run();
  ASSERT_TRUE(clean.status.ok()) << clean.status.ToString();
  // bank-2 replays its round-1 upload in round 2: once verbatim (old sequence numbers) and once
  // renumbered (as a buggy or malicious client would), before its real upload.
  auto recorded = std::make_shared<std::vector<v1::Envelope>>();
  auto seq = std::make_shared<uint64_t>(1000);
  s.mutate[1] = [recorded, seq](const v1::Envelope& e) {
    std::vector<v1::Envelope> out;
    bool upload = e.has_chunk() && e.chunk().kind() == v1::UPLOAD;
    if (upload && e.header().round() == 1) recorded->push_back(e);
    if (upload && e.header().round() == 2 && e.chunk().index() == 0) {
      for (auto& r : *recorded) out.push_back(r);
      for (auto r : *recorded) {
        r.mutable_header()->set_seq(++*seq);
        out.push_back(r);
      }
    }
    v1::Envelope real = e;
    if (e.header().seq() > 0 && !recorded->empty() && e.header().round() == 2)
      real.mutable_header()->set_seq(++*seq);
    out.push_back(real);
    return out;
  };
  Outcome o = Harness(s).Run();
  ASSERT_TRUE(o.status.ok()) << o.status.ToString();
  EXPECT_GE(o.rejected, 2);
  EXPECT_EQ(o.result.rounds[1].contributors.size(), 5u);
  EXPECT_EQ(MaxAbsDiff(o.result.weights, clean.result.weights), 0.0);
}

TEST_P(FedRuntimeTest, MalformedAndOversizedCiphertextsExcludeTheSenderOnly) {
  std::vector<std::string> kinds = {"not-a-unit", "oversized-ciphertext", "oversized-upload",
                                    "missing-ciphertext"};
  // Masked uploads: one block too many or too few. (With q = 2^32 a coefficient travels in four
  // bytes, so one >= q cannot be written; scheme_test covers the check for other q.)
  if (std::get<1>(GetParam()) == "paillier-masked") {
    kinds.push_back("extra-block");
    kinds.push_back("missing-block");
  }
  for (const std::string& kind : kinds) {
    SCOPED_TRACE(kind);
    Scenario s = Base();
    s.rounds = 1;
    s.mutate[2] = [kind](const v1::Envelope& e) {
      if (!e.has_chunk() || e.chunk().kind() != v1::UPLOAD) return std::vector<v1::Envelope>{e};
      v1::Envelope bad = e;
      if (kind == "oversized-upload") {
        bad.mutable_chunk()->mutable_data()->append(200000, 'x');
        return std::vector<v1::Envelope>{bad};
      }
      // The upload is a few chunks; rebuild it whole on the first and send it as one chunk.
      static thread_local std::string acc;
      acc += e.chunk().data();
      if (e.chunk().index() + 1 < e.chunk().count()) return std::vector<v1::Envelope>{};
      v1::Upload up;
      EXPECT_TRUE(up.ParseFromString(acc));
      acc.clear();
      std::string cts = up.ciphertexts();
      if (kind == "extra-block") {
        up.mutable_masked()->append(2048 * 4, '\7');
      } else if (kind == "missing-block") {
        up.mutable_masked()->resize(up.masked().size() - 2048 * 4);
      } else if (kind == "missing-ciphertext") {
        cts.resize(cts.size() - up.ciphertext_bytes());
      } else if (kind == "not-a-unit") {
        std::memset(cts.data(), 0, up.ciphertext_bytes());  // ciphertext 0 = 0: not in Z*_{n^2}
      } else {
        up.set_ciphertext_bytes(up.ciphertext_bytes() + 1);
        cts.append(cts.size() / up.ciphertext_bytes() + 1, '\1');
      }
      up.set_ciphertexts(cts);
      bad.mutable_chunk()->set_data(up.SerializeAsString());
      bad.mutable_chunk()->set_index(0);
      bad.mutable_chunk()->set_count(1);
      return std::vector<v1::Envelope>{bad};
    };
    Outcome o = Harness(s).Run();
    ASSERT_TRUE(o.status.ok()) << o.status.ToString();
    const auto& r = o.result.rounds.at(0);
    EXPECT_EQ(r.contributors.size(), 4u);
    ASSERT_EQ(r.excluded.size(), 1u);
    EXPECT_EQ(r.excluded[0].rfind("bank-3: ", 0), 0u) << r.excluded[0];
    EXPECT_GE(o.rejected, 1);
  }
}

TEST_P(FedRuntimeTest, EveryStrategyLearnsAndDpReportsEpsilon) {
  for (std::string strategy : {"fedavg", "fedprox", "fedadam", "fedyogi"}) {
    SCOPED_TRACE(strategy);
    Scenario s = Base();
    s.rounds = 3;
    s.secure = "none";
    s.strategy = strategy;
    s.prox_mu = strategy == "fedprox" ? 0.1 : 0;
    Outcome o = Harness(s).Run();
    ASSERT_TRUE(o.status.ok()) << o.status.ToString();
    EXPECT_GT(TestRocAuc(o.result.weights), 0.9);
    if (net() == Net::kGrpc) break;  // the transport does not change the arithmetic
  }
  Scenario s = Base();
  s.rounds = 2;
  s.noise_multiplier = 1.0;
  Outcome o = Harness(s).Run();
  ASSERT_TRUE(o.status.ok()) << o.status.ToString();
  EXPECT_NEAR(o.result.epsilon, GaussianEpsilon(1.0, 2, 1e-5), 1e-9);
  EXPECT_GT(o.result.epsilon, 0);
}

INSTANTIATE_TEST_SUITE_P(TransportsAndSchemes, FedRuntimeTest,
                         ::testing::Combine(::testing::Values(Net::kMemory, Net::kGrpc),
                                            ::testing::Values(std::string("paillier"),
                                                              std::string("paillier-masked"))),
                         [](const auto& info) {
                           std::string scheme = std::get<1>(info.param);
                           for (char& c : scheme)
                             if (c == '-') c = '_';
                           return std::string(NetName(std::get<0>(info.param))) + "_" + scheme;
                         });

// The issue-14 contract: with the same seed, ten rounds under "none", "paillier" and
// "paillier-masked" give identical weights after every round, because all three compute the same
// integer sums of the same quantised updates.
TEST(FedEqualityTest, TenRoundsUnderEverySchemeGiveTheSameWeightsEveryRound) {
  constexpr int64_t kRounds = 10;
  std::vector<std::vector<std::vector<float>>> per_scheme;  // [scheme][round] -> weights
  for (std::string scheme : {"none", "paillier", "paillier-masked"}) {
    SCOPED_TRACE(scheme);
    Scenario s;
    s.secure = scheme;
    s.rounds = kRounds;
    s.hidden = 8;
    s.min_participants = kParties;  // the same five contributors in every round of every run
    s.coordinator_options = [](CoordinatorOptions& o) { o.keep_rounds = 0; };  // every round
    Harness h(s);
    Outcome o = h.Run();
    ASSERT_TRUE(o.status.ok()) << o.status.ToString();
    ASSERT_EQ(o.result.rounds.size(), static_cast<size_t>(kRounds));
    for (auto& r : o.result.rounds) EXPECT_EQ(r.contributors.size(), 5u);
    std::vector<std::vector<float>> rounds;
    for (int64_t r = 1; r <= kRounds; ++r) {
      auto cp = h.store().GetCheckpoint(o.run_id, r);
      ASSERT_TRUE(cp.ok() && *cp) << "round " << r;
      auto f = nn::DecodeTensorFile((*cp)->state, "round checkpoint");
      ASSERT_TRUE(f.ok()) << f.status().ToString();
      auto t = f->Get("weights");
      ASSERT_TRUE(t.ok());
      rounds.emplace_back(t->data_ptr<float>(), t->data_ptr<float>() + t->numel());
    }
    EXPECT_EQ(rounds.back(), o.result.weights);
    per_scheme.push_back(std::move(rounds));
  }
  for (int64_t r = 0; r < kRounds; ++r) {
    EXPECT_EQ(MaxAbsDiff(per_scheme[1][r], per_scheme[0][r]), 0.0) << "paillier, round " << r + 1;
    EXPECT_EQ(MaxAbsDiff(per_scheme[2][r], per_scheme[0][r]), 0.0)
        << "paillier-masked, round " << r + 1;
  }
  // The runs learned something: the weights moved every round.
  for (int64_t r = 1; r < kRounds; ++r)
    EXPECT_GT(MaxAbsDiff(per_scheme[0][r], per_scheme[0][r - 1]), 0);
}

// What crosses the wire: ciphertexts only. The same search finds the values in a plaintext run,
// so it would notice a leak.
TEST(FedWireTest, NoPlaintextUpdateValueCrossesTheWire) {
  for (std::string mode : {"none", "paillier", "paillier-masked"}) {
    SCOPED_TRACE(mode);
    std::mutex mu;
    std::string wire;
    std::vector<std::vector<float>> updates;
    Scenario s;
    s.rounds = 1;
    s.secure = mode;
    s.tap = [&](const std::string& bytes, bool to_coordinator) {
      std::lock_guard<std::mutex> lock(mu);
      if (to_coordinator) wire += bytes;
    };
    s.observe = [&](int, const std::vector<float>& u) {
      std::lock_guard<std::mutex> lock(mu);
      updates.push_back(u);
    };
    Outcome o = Harness(s).Run();
    ASSERT_TRUE(o.status.ok()) << o.status.ToString();
    ASSERT_EQ(updates.size(), 5u);
    // Look for any two consecutive update values (8 bytes: no accidental match in a few hundred
    // KB), raw and (below) scaled by each party's weight as the plaintext mode sends them.
    int found = 0;
    for (auto& u : updates) {
      for (size_t i = 0; i + 1 < u.size(); ++i) {
        if (u[i] == 0 || u[i + 1] == 0) continue;
        float pair[2] = {u[i], u[i + 1]};
        if (wire.find(std::string(reinterpret_cast<char*>(pair), 8)) != std::string::npos) ++found;
      }
    }
    // Quantised weighted values, as "none" sends them (weight = n_i / n; the scheme's quantiser).
    int found_scaled = 0;
    const double total = [&] {
      double t = 0;
      for (auto& d : PartyData()) t += d.train.size();
      return t;
    }();
    auto quantizer = crypto::Packer::Create({16, 1.0, kParties, false}, 1024).value();
    for (size_t p = 0; p < updates.size(); ++p) {
      for (auto& d : PartyData()) {
        const double w = d.train.size() / total;
        auto& u = updates[p];
        std::vector<int32_t> q = quantizer.Quantize(u.data(), static_cast<int64_t>(u.size()), w);
        for (size_t i = 0; i + 1 < q.size(); ++i) {
          if (std::abs(q[i]) < 16 || std::abs(q[i + 1]) < 16) continue;  // too common to mean much
          int32_t pair[2] = {q[i], q[i + 1]};
          if (wire.find(std::string(reinterpret_cast<char*>(pair), 8)) != std::string::npos)
            ++found_scaled;
        }
      }
    }
    if (mode == "none") {
      EXPECT_GT(found_scaled, 100);  // the search works
    } else {
      EXPECT_EQ(found, 0);
      EXPECT_EQ(found_scaled, 0);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// One hostile member of five, played by a client written in the test (a bank's real certificate,
// raw envelopes, none of the participant's code) or by a real participant whose connection the
// test wraps. Over gRPC with mutual TLS; the honest banks are the real Participant.

std::unique_ptr<Connection> DialAs(int port, int party) {
  GrpcDialOptions d;
  d.address = "127.0.0.1:" + std::to_string(port);
  d.tls = {Certs().ca.cert_pem, Certs().parties[party].cert_pem, Certs().parties[party].key_pem};
  d.connect_timeout_s = 5;
  auto c = GrpcDial(d);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? std::move(*c) : nullptr;
}

v1::Envelope HelloAs(int party, std::vector<int64_t> shape) {
  v1::Envelope e;
  e.mutable_header()->set_consortium(kConsortium);
  e.mutable_header()->set_seq(1);
  auto* h = e.mutable_hello();
  h->set_party(PartyName(party));
  h->set_key_fingerprint(Keys().public_key->fingerprint());
  h->set_num_examples(PartyData()[party].train.size());
  for (int64_t d : shape) h->add_input_shape(d);
  h->set_outputs(1);
  h->set_task("binary");
  h->set_data_json("{}");
  return e;
}

bool Named(const RoundReport& r, const std::string& party, const std::string& text) {
  for (auto& e : r.excluded)
    if (e.rfind(party + ": ", 0) == 0 && e.find(text) != std::string::npos) return true;
  return false;
}

std::string Excluded(const RoundReport& r) {
  std::string out;
  for (auto& e : r.excluded) out += e + " | ";
  return out;
}

// Collects what the coordinator logs (spdlog's default logger) while it lives.
class LogCapture {
 public:
  LogCapture() : sink_(std::make_shared<spdlog::sinks::ostream_sink_mt>(out_)) {
    spdlog::default_logger()->sinks().push_back(sink_);
  }
  ~LogCapture() {
    auto& sinks = spdlog::default_logger()->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
  }
  std::string text() {
    sink_->flush();
    return out_.str();
  }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_;
};

// A raw client as an attacker would write it: its own gRPC channel (advertising a small
// flow-control window, as any client may) and envelopes of its choosing.
struct RawClient {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::Federation::Stub> stub;
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientReaderWriter<v1::Envelope, v1::Envelope>> stream;
};

std::unique_ptr<RawClient> RawDial(int port, int party, int window_bytes) {
  auto c = std::make_unique<RawClient>();
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, window_bytes);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  c->channel = grpc::CreateCustomChannel(
      "127.0.0.1:" + std::to_string(port),
      tls::GrpcClientCredentials(Certs().ca.cert_pem, Certs().parties[party].cert_pem,
                                 Certs().parties[party].key_pem),
      args);
  c->stub = v1::Federation::NewStub(c->channel);
  c->stream = c->stub->Session(&c->ctx);
  return c;
}

// 1. A member that sends messages the coordinator answers and never reads its stream: the
// coordinator's writes to it time out, it is disconnected and named, and every round completes.
TEST(FedHostileTest, MemberThatNeverReadsCannotStallARound) {
  Scenario s;
  s.net = Net::kGrpc;
  s.rounds = 1;  // one round says it; a second would only let Adam amplify quantisation noise
  s.secure = "none";
  s.hidden = 4096;  // a 512 KB model: far more than the attacker's flow-control window
  s.min_participants = 4;
  s.absent = {4};
  s.coordinator_options = [](CoordinatorOptions& o) { o.chunk_bytes = 64 << 10; };
  Outcome clean = Harness(s).Run();
  ASSERT_TRUE(clean.status.ok()) << clean.status.ToString();

  std::unique_ptr<RawClient> attacker;
  s.server_options = [](GrpcServerOptions& so) { so.write_timeout_s = 2; };
  s.before_participants = [&](int port) {
    attacker = RawDial(port, 4, 16 << 10);
    ASSERT_TRUE(attacker->stream->Write(HelloAs(4, PartyData()[4].input_shape)));
    // Messages the coordinator answers (each with a 1 MiB string it used to echo back).
    for (int i = 0; i < 20; ++i) {
      v1::Envelope e;
      e.mutable_header()->set_consortium(std::string(1 << 20, 'A'));
      e.mutable_header()->set_seq(2 + i);
      ASSERT_TRUE(attacker->stream->Write(e));
    }
  };
  LogCapture log;
  const auto start = std::chrono::steady_clock::now();
  Outcome o = Harness(s).Run();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(o.status.ok()) << o.status.ToString();
  ASSERT_EQ(o.result.rounds.size(), 1u);
  const RoundReport& r1 = o.result.rounds[0];
  EXPECT_TRUE(Named(r1, "bank-5", "did not read its stream for 2 s")) << Excluded(r1);
  EXPECT_EQ(r1.contributors.size(), 4u);
  // The run ends within the write deadline plus the honest rounds and a wide margin (a round
  // deadline, 60 s here, is what the stall cost per round before).
  EXPECT_LT(seconds, 30) << "the attacker stalled the run";
  // Excluded before contributing: the honest banks' updates, identical in both runs, quantised
  // with weights n_i / n over the members (the attacker was one): the two means differ by at most
  // the two rounds' quantisation bounds.
  EXPECT_LE(MaxAbsDiff(o.result.weights, clean.result.weights),
            r1.error_bound + clean.result.rounds[0].error_bound);
  // Its strings were quoted short in the log, never whole.
  EXPECT_EQ(log.text().find(std::string(100, 'A')), std::string::npos);
  attacker->ctx.TryCancel();
}

// 2. A member that uploads a valid encrypted update and never answers its decryption request:
// replaced after the per-request deadline, not asked again after two strikes, and the model is
// exactly the one without the silence (its upload still counts; decryption is exact).
TEST(FedHostileTest, SilentDecryptorIsReplacedAndThenNotAskedAgain) {
  Scenario s;
  s.net = Net::kGrpc;
  s.rounds = 3;
  s.min_participants = 5;
  Outcome clean = Harness(s).Run();
  ASSERT_TRUE(clean.status.ok()) << clean.status.ToString();
  s.coordinator_options = [](CoordinatorOptions& o) { o.decrypt_timeout_s = 2; };
  s.mutate[0] = [](const v1::Envelope& e) {  // bank-1 is asked first: it never answers
    if (e.has_chunk() && e.chunk().kind() == v1::PARTIAL) return std::vector<v1::Envelope>{};
    return std::vector<v1::Envelope>{e};
  };
  Outcome o = Harness(s).Run();
  ASSERT_TRUE(o.status.ok()) << o.status.ToString();
  ASSERT_EQ(o.result.rounds.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    const RoundReport& r = o.result.rounds[i];
    EXPECT_EQ(r.contributors.size(), 5u);
    EXPECT_EQ(r.decryptors.size(), 3u);
    EXPECT_EQ(std::count(r.decryptors.begin(), r.decryptors.end(), "bank-1"), 0);
    const char* want = i < 2 ? "no partial decryption within 2 s" : "not asked to decrypt";
    EXPECT_TRUE(Named(r, "bank-1", want)) << "round " << i + 1 << ": " << Excluded(r);
  }
  EXPECT_EQ(MaxAbsDiff(o.result.weights, clean.result.weights), 0.0);
}

// 3. A Hello with another input shape, sent before any honest bank connects, is refused before
// Welcome; it does not choose the model and nobody else is affected.
TEST(FedHostileTest, FirstHelloDoesNotChooseTheModel) {
  Scenario s;
  s.net = Net::kGrpc;
  s.rounds = 2;
  s.secure = "none";
  Outcome clean = Harness(s).Run();
  ASSERT_TRUE(clean.status.ok()) << clean.status.ToString();
  std::string refusal;
  s.before_participants = [&](int port) {
    auto c = DialAs(port, 4);
    ASSERT_TRUE(c);
    ASSERT_TRUE(c->Send(HelloAs(4, {7})));
    v1::Envelope e;
    ASSERT_TRUE(c->Recv(&e));
    ASSERT_TRUE(e.has_notice());
    EXPECT_EQ(e.notice().code(), v1::Notice::REJECTED);
    refusal = e.notice().message();
    EXPECT_FALSE(c->Recv(&e));  // and the stream ends
  };
  Outcome o = Harness(s).Run();
  ASSERT_TRUE(o.status.ok()) << o.status.ToString();
  EXPECT_NE(refusal.find("input_shape [7]"), std::string::npos) << refusal;
  EXPECT_NE(refusal.find("consortium's schema is input_shape [30]"), std::string::npos) << refusal;
  for (auto& st : o.participant_status) EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(MaxAbsDiff(o.result.weights, clean.result.weights), 0.0);
}

// Rebuilds a party's whole upload (it spans chunks) and sends it changed, as one chunk.
Wrapped::Mutate ChangeUpload(std::function<void(v1::Upload&)> change) {
  auto acc = std::make_shared<std::string>();
  return [acc, change](const v1::Envelope& e) {
    if (!e.has_chunk() || e.chunk().kind() != v1::UPLOAD) return std::vector<v1::Envelope>{e};
    *acc += e.chunk().data();
    if (e.chunk().index() + 1 < e.chunk().count()) return std::vector<v1::Envelope>{};
    v1::Upload up;
    EXPECT_TRUE(up.ParseFromString(*acc));
    acc->clear();
    change(up);
    v1::Envelope bad = e;
    bad.mutable_chunk()->set_data(up.SerializeAsString());
    bad.mutable_chunk()->set_index(0);
    bad.mutable_chunk()->set_count(1);
    return std::vector<v1::Envelope>{bad};
  };
}

// 4a. Random ciphertexts below n^2 (valid units, so each passes the upload check): the decrypted
// aggregate fails the range check, the round is retried, and nothing is ever committed.
TEST(FedHostileTest, RandomCiphertextsAreCaughtAndNeverCommitted) {
  Scenario s;
  s.net = Net::kGrpc;
  s.rounds = 2;
  s.coordinator_options = [](CoordinatorOptions& o) { o.round_attempts = 2; };
  s.mutate[2] = ChangeUpload([](v1::Upload& up) {
    const auto& pk = Keys().public_key->paillier();
    const size_t width = up.ciphertext_bytes();
    std::vector<mpz_class> junk(up.ciphertexts().size() / width);
    for (auto& c : junk) c = crypto::RandomBelow(pk.n2());
    up.set_ciphertexts(crypto::EncodeFixedWidth(junk, width));
  });
  Harness h(s);
  Outcome o = h.Run();
  ASSERT_FALSE(o.status.ok());
  EXPECT_NE(o.status.message().find("round 1 failed 2 times"), std::string::npos)
      << o.status.ToString();
  EXPECT_NE(o.status.message().find("failed the range check"), std::string::npos)
      << o.status.ToString();
  auto cp = h.store().LatestCheckpoint(o.run_id);
  ASSERT_TRUE(cp.ok());
  EXPECT_FALSE(cp->has_value()) << "a model that failed the check was committed";
}

// 4b. Plaintext mode: values of 1e30 (or NaN) from one member are refused at its upload, named,
// before anything is applied; the run completes on the honest updates.
TEST(FedHostileTest, PlaintextValuesBeyondTheClipAreRefusedAtTheUpload) {
  // Quantised values far beyond the clip (what 1e30 or an overflow would give), either sign.
  for (int32_t bad : {int32_t{1} << 30, std::numeric_limits<int32_t>::min()}) {
    SCOPED_TRACE(bad);
    Scenario s;
    s.net = Net::kGrpc;
    s.rounds = 2;
    s.secure = "none";
    s.mutate[2] = ChangeUpload([bad](v1::Upload& up) {
      std::string q = up.quantized();
      for (size_t i = 0; i + 4 <= q.size(); i += 4) std::memcpy(&q[i], &bad, 4);
      up.set_quantized(q);
    });
    Outcome o = Harness(s).Run();
    ASSERT_TRUE(o.status.ok()) << o.status.ToString();
    for (auto& r : o.result.rounds) {
      EXPECT_EQ(r.contributors.size(), 4u);
      EXPECT_TRUE(Named(r, "bank-3", "(clip times the party's weight)")) << Excluded(r);
    }
    for (float w : o.result.weights) ASSERT_TRUE(std::isfinite(w));
    EXPECT_GT(TestRocAuc(o.result.weights), 0.9);
  }
}

// 5. A member flooding refused messages: answered and logged ten times, then counted, then cut
// off; the log stays small and the run completes.
TEST(FedHostileTest, FloodOfRefusedMessagesKeepsTheLogSmall) {
  Scenario s;
  s.net = Net::kGrpc;
  s.rounds = 1;
  s.secure = "none";
  s.absent = {4};
  s.min_participants = 4;
  std::unique_ptr<Connection> attacker;
  std::atomic<int> notices{0};
  std::atomic<bool> welcomed{false};
  std::thread reader, flood;
  s.before_participants = [&](int port) {
    attacker = DialAs(port, 4);
    ASSERT_TRUE(attacker);
    ASSERT_TRUE(attacker->Send(HelloAs(4, PartyData()[4].input_shape)));
    reader = std::thread([&] {
      v1::Envelope in;
      while (attacker->Recv(&in)) {
        welcomed = welcomed || in.has_welcome();
        if (in.has_notice() && in.notice().code() == v1::Notice::REJECTED) ++notices;
      }
    });
    flood = std::thread([&] {
      for (int i = 0; i < 500; ++i) {
        v1::Envelope bad;
        bad.mutable_header()->set_consortium(std::string(64 << 10, '\n'));
        bad.mutable_header()->set_seq(2 + i);
        if (!attacker->Send(bad)) break;
      }
    });
  };
  LogCapture log;
  Outcome o = Harness(s).Run();
  flood.join();
  attacker->Close();
  reader.join();
  ASSERT_TRUE(o.status.ok()) << o.status.ToString();
  EXPECT_TRUE(welcomed);
  EXPECT_LE(notices, 10);
  const std::string text = log.text();
  EXPECT_LT(text.size(), 32u << 10) << "the log grew with the flood";
  EXPECT_NE(text.find("sent 100 refused messages within a minute"), std::string::npos);
  EXPECT_NE(text.find("\\x0a\\x0a"), std::string::npos);  // newlines escaped, not written
}

// 6. A thousand streams from one certificate that never say Hello: a few are admitted and closed
// at the hello deadline, the rest refused at once; the server's threads stay bounded.
TEST(FedGrpcTest, ThousandIdleStreamsFromOneCertificateAreBounded) {
  auto threads_now = [] {
    return std::distance(std::filesystem::directory_iterator("/proc/self/task"),
                         std::filesystem::directory_iterator{});
  };
  std::atomic<int> sessions{0}, active{0}, most_active{0};
  GrpcServerOptions so;
  so.tls = {Certs().ca.cert_pem, Certs().coordinator.cert_pem, Certs().coordinator.key_pem};
  so.consortium = kConsortium;
  for (int i = 0; i < kParties; ++i) so.parties.insert(PartyName(i));
  so.hello_timeout_s = 1;
  auto server = GrpcServer::Start(so, [&](const std::string&, Connection& c) {
    ++sessions;
    int now = ++active;
    for (int m = most_active; now > m && !most_active.compare_exchange_weak(m, now);) {
    }
    v1::Envelope e;
    while (c.Recv(&e)) {
    }
    --active;
  });
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  const auto baseline = threads_now();
  std::atomic<bool> done{false};
  std::atomic<long> most{0};
  std::thread sampler([&] {
    while (!done) {
      long n = threads_now();
      if (n > most) most = n;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  grpc::ChannelArguments args;
  auto channel = grpc::CreateCustomChannel(
      "127.0.0.1:" + std::to_string((*server)->port()),
      tls::GrpcClientCredentials(Certs().ca.cert_pem, Certs().parties[0].cert_pem,
                                 Certs().parties[0].key_pem),
      args);
  auto stub = v1::Federation::NewStub(channel);
  constexpr int kStreams = 1000;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReaderWriter<v1::Envelope, v1::Envelope>>> streams;
  for (int i = 0; i < kStreams; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    streams.push_back(stub->Session(contexts.back().get()));
  }
  int refused = 0, ended = 0;
  for (auto& st : streams) {
    grpc::Status status = st->Finish();  // returns once the server ended the stream
    ++ended;
    // Refused by the per-party limit or by the server's thread cap.
    if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) ++refused;
  }
  done = true;
  sampler.join();
  EXPECT_EQ(ended, kStreams);  // every stream ended: refused, or closed at the hello deadline
  EXPECT_EQ(refused + sessions.load(), kStreams);
  EXPECT_LE(most_active.load(), so.max_streams_per_party);
  EXPECT_LT(most.load() - baseline, 100) << "threads grew with the streams";
  std::printf("threads: %ld before, at most %ld during 1,000 streams\n",
              static_cast<long>(baseline), most.load());
  (*server)->Shutdown();
}

// Over gRPC: a client without a certificate, with one from another CA, or with the coordinator's
// own certificate is refused; no session reaches the coordinator.
TEST(FedGrpcTest, ClientsWithoutAConsortiumPartyCertificateAreRefused) {
  std::atomic<int> sessions{0};
  GrpcServerOptions so;
  so.tls = {Certs().ca.cert_pem, Certs().coordinator.cert_pem, Certs().coordinator.key_pem};
  so.consortium = kConsortium;
  so.parties = {PartyName(0)};
  auto server = GrpcServer::Start(so, [&](const std::string&, Connection& c) {
    ++sessions;
    v1::Envelope e;
    while (c.Recv(&e)) {
    }
  });
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  std::string addr = "127.0.0.1:" + std::to_string((*server)->port());
  auto try_session = [&](TlsFiles tls) -> bool {
    auto conn = GrpcDial({addr, tls, "", 2});
    if (!conn.ok()) return false;
    v1::Envelope hello;
    hello.mutable_hello()->set_party(PartyName(0));
    (*conn)->Send(hello);
    v1::Envelope e;
    return (*conn)->Recv(&e);  // refused streams end at once
  };
  tls::PemPair other_ca = tls::MakeCa(kConsortium).value();
  tls::PemPair stranger = tls::MakeLeaf(other_ca, {kConsortium, PartyName(0)}).value();
  EXPECT_FALSE(try_session({Certs().ca.cert_pem, "", ""}));  // no certificate
  EXPECT_FALSE(
      try_session({Certs().ca.cert_pem, stranger.cert_pem, stranger.key_pem}));  // another CA
  EXPECT_FALSE(try_session(
      {Certs().ca.cert_pem, Certs().coordinator.cert_pem, Certs().coordinator.key_pem}));
  EXPECT_FALSE(try_session({Certs().ca.cert_pem, Certs().parties[1].cert_pem,
                            Certs().parties[1].key_pem}));  // not in the party list
  EXPECT_EQ(sessions.load(), 0);
  // The real party gets through.
  auto conn =
      GrpcDial({addr,
                {Certs().ca.cert_pem, Certs().parties[0].cert_pem, Certs().parties[0].key_pem},
                "",
                2});
  ASSERT_TRUE(conn.ok()) << conn.status().ToString();
  v1::Envelope hello;
  ASSERT_TRUE((*conn)->Send(hello));
  for (int i = 0; i < 100 && sessions.load() == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(sessions.load(), 1);
  (*conn)->Close();
  (*server)->Shutdown();
}

}  // namespace
}  // namespace ronghe::fed
