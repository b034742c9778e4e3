#include "ronghe/fed/job.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "ronghe/base/config.h"
#include "ronghe/base/file.h"
#include "ronghe/base/signals.h"
#include "ronghe/crypto/keyfile.h"
#include "ronghe/data/source.h"
#include "ronghe/data/split.h"
#include "ronghe/fed/consortium.h"
#include "ronghe/fed/grpc_transport.h"
#include "ronghe/fed/participant.h"
#include "ronghe/store/run_store.h"
#include "ronghe/tls/tls.h"
#include "ronghe/tls/x509.h"
#include "ronghe/train/job.h"

namespace ronghe::fed {

namespace {

Result<Config> LoadConfig(const std::string& path, const std::vector<std::string>& overrides) {
  ASSIGN_OR_RETURN(Config cfg, Config::Load(path));
  for (const auto& o : overrides) RETURN_IF_ERROR(cfg.ApplyOverride(o));
  return cfg;
}

// A bundle from `fed init`: who this process is and what it holds.
struct Bundle {
  std::string dir;
  nlohmann::json identity;
  ConsortiumOptions consortium;
  std::shared_ptr<const crypto::ThresholdPublicKey> public_key;
  TlsFiles tls;
};

Result<Bundle> ReadBundle(const std::string& dir, const std::string& role) {
  Bundle b;
  b.dir = dir;
  if (dir.empty())
    return InvalidArgument("no bundle: set " + role +
                           ".bundle or pass --bundle (a folder from `ronghe fed init`)");
  ASSIGN_OR_RETURN(std::string id_text, ReadFile(dir + "/identity.json"));
  b.identity = nlohmann::json::parse(id_text, nullptr, false);
  if (b.identity.is_discarded() || !b.identity.contains("role") || !b.identity.contains("name")) {
    return DataLoss(dir + "/identity.json: not a ronghe bundle identity");
  }
  const std::string want = role == "federation" ? "coordinator" : "participant";
  if (b.identity["role"] != want) {
    return InvalidArgument(dir + ": this is the bundle of '" +
                           b.identity["name"].get<std::string>() + "' (" +
                           b.identity["role"].get<std::string>() + "), not a " + want + "'s");
  }
  ASSIGN_OR_RETURN(Config ccfg, Config::Load(dir + "/consortium.toml"));
  RETURN_IF_ERROR(ParseConsortiumOptions(ccfg, &b.consortium));
  ASSIGN_OR_RETURN(std::string pub, ReadFile(dir + "/public.json"));
  ASSIGN_OR_RETURN(b.public_key, crypto::ParsePublicKey(pub, dir + "/public.json"));
  if (b.public_key->parties() != static_cast<int>(b.consortium.parties.size()) ||
      b.public_key->threshold() != b.consortium.threshold) {
    return DataLoss(dir + ": public.json does not match consortium.toml's parties and threshold");
  }
  RETURN_IF_ERROR(tls::CheckSecretFileMode(dir + "/key.pem", "TLS key"));
  ASSIGN_OR_RETURN(b.tls, ReadTlsBundle(dir));
  ASSIGN_OR_RETURN(std::string cn, tls::VerifyLeaf(b.tls.ca_pem, b.tls.cert_pem, b.tls.key_pem));
  if (cn != b.identity["name"])
    return DataLoss(dir + ": cert.pem is for '" + cn + "', identity.json says " +
                    b.identity["name"].dump());
  return b;
}

Status ParseCoordinator(Config& cfg, CoordinatorOptions* o, GrpcServerOptions* so,
                        std::string* bundle, std::string* listen) {
  RETURN_IF_ERROR(cfg.Get("job.name", &o->job_name));
  RETURN_IF_ERROR(cfg.Get("federation.bundle", bundle));
  RETURN_IF_ERROR(cfg.Get("federation.listen", listen));
  RETURN_IF_ERROR(cfg.Get("federation.rounds", &o->rounds));
  RETURN_IF_ERROR(cfg.Get("federation.min_participants", &o->min_participants));
  RETURN_IF_ERROR(cfg.Get("federation.gather_s", &o->gather_s));
  RETURN_IF_ERROR(cfg.Get("federation.join_timeout_s", &o->join_timeout_s));
  RETURN_IF_ERROR(cfg.Get("federation.round_deadline_s", &o->round_deadline_s));
  RETURN_IF_ERROR(cfg.Get("federation.round_attempts", &o->round_attempts));
  RETURN_IF_ERROR(cfg.Get("federation.retry_wait_s", &o->retry_wait_s));
  RETURN_IF_ERROR(cfg.Get("federation.decrypt_timeout_s", &o->decrypt_timeout_s));
  RETURN_IF_ERROR(cfg.Get("federation.decrypt_strikes", &o->decrypt_strikes));
  RETURN_IF_ERROR(cfg.Get("federation.max_rejections", &o->max_rejections));
  RETURN_IF_ERROR(cfg.Get("federation.write_timeout_s", &so->write_timeout_s));
  RETURN_IF_ERROR(cfg.Get("federation.hello_timeout_s", &so->hello_timeout_s));
  RETURN_IF_ERROR(cfg.Get("federation.max_streams_per_party", &so->max_streams_per_party));
  if (o->decrypt_timeout_s < 0)
    return cfg.ValueError("federation.decrypt_timeout_s", "must be >= 0 (0 = automatic)");
  if (o->decrypt_strikes < 1) return cfg.ValueError("federation.decrypt_strikes", "must be >= 1");
  if (o->max_rejections < 1) return cfg.ValueError("federation.max_rejections", "must be >= 1");
  if (!(so->write_timeout_s > 0))
    return cfg.ValueError("federation.write_timeout_s", "must be > 0");
  if (!(so->hello_timeout_s > 0))
    return cfg.ValueError("federation.hello_timeout_s", "must be > 0");
  if (so->max_streams_per_party < 1)
    return cfg.ValueError("federation.max_streams_per_party", "must be >= 1");
  std::string strategy = "fedavg";
  RETURN_IF_ERROR(cfg.Get("federation.strategy", &strategy));
  RETURN_IF_ERROR(cfg.Get("federation.server_lr", &o->server.lr));
  RETURN_IF_ERROR(cfg.Get("federation.beta1", &o->server.beta1));
  RETURN_IF_ERROR(cfg.Get("federation.beta2", &o->server.beta2));
  RETURN_IF_ERROR(cfg.Get("federation.tau", &o->server.tau));
  std::string secure_aggregation = SecureAggregationName(o->secure_aggregation);
  RETURN_IF_ERROR(cfg.Get("federation.secure_aggregation", &secure_aggregation));
  RETURN_IF_ERROR(cfg.Get("federation.precision_bits", &o->precision_bits));
  RETURN_IF_ERROR(cfg.Get("federation.clip", &o->clip));
  int64_t seed = static_cast<int64_t>(o->seed);
  RETURN_IF_ERROR(cfg.Get("federation.seed", &seed));
  o->seed = static_cast<uint64_t>(seed);
  int64_t chunk_kib = static_cast<int64_t>(o->chunk_bytes / 1024);
  RETURN_IF_ERROR(cfg.Get("federation.chunk_kib", &chunk_kib));
  if (chunk_kib < 1 || chunk_kib > 3072)
    return cfg.ValueError("federation.chunk_kib",
                          "must be between 1 and 3072 (gRPC's limit is 4 MiB)");
  o->chunk_bytes = static_cast<size_t>(chunk_kib) * 1024;
  RETURN_IF_ERROR(cfg.Get("federation.threads", &o->threads));
  RETURN_IF_ERROR(cfg.Get("federation.keep_rounds", &o->keep_rounds));
  if (o->keep_rounds < 0) return cfg.ValueError("federation.keep_rounds", "must be >= 0 (0 = all)");
  RETURN_IF_ERROR(cfg.Get("federation.dp.noise_multiplier", &o->dp.noise_multiplier));
  RETURN_IF_ERROR(cfg.Get("federation.dp.clip_norm", &o->dp.clip_norm));
  RETURN_IF_ERROR(cfg.Get("federation.dp.delta", &o->dp.delta));
  // Local training (sent to the participants every round).
  int64_t epochs = 1, batch = 64;
  double lr = 1e-3, wd = 0, mu = 0;
  std::string opt = "adam", cw = "none";
  RETURN_IF_ERROR(cfg.Get("local.epochs", &epochs));
  RETURN_IF_ERROR(cfg.Get("local.batch_size", &batch));
  RETURN_IF_ERROR(cfg.Get("local.optimizer", &opt));
  RETURN_IF_ERROR(cfg.Get("local.lr", &lr));
  RETURN_IF_ERROR(cfg.Get("local.weight_decay", &wd));
  RETURN_IF_ERROR(cfg.Get("local.prox_mu", &mu));
  RETURN_IF_ERROR(cfg.Get("local.class_weights", &cw));
  if (epochs < 1) return cfg.ValueError("local.epochs", "must be >= 1");
  if (batch < 1) return cfg.ValueError("local.batch_size", "must be >= 1");
  if (!(lr > 0)) return cfg.ValueError("local.lr", "must be > 0");
  if (opt != "adam" && opt != "sgd")
    return cfg.ValueError("local.optimizer", "must be \"adam\" or \"sgd\"");
  if (cw != "none" && cw != "balanced")
    return cfg.ValueError("local.class_weights", "must be \"none\" or \"balanced\"");
  if (mu < 0) return cfg.ValueError("local.prox_mu", "must be >= 0");
  if (strategy == "fedprox") {
    if (mu == 0) mu = 0.01;  // FedProx without a proximal term would be FedAvg
    strategy = "fedavg";
  } else if (strategy != "fedavg" && strategy != "fedadam" && strategy != "fedyogi") {
    return cfg.ValueError("federation.strategy", "must be fedavg, fedprox, fedadam or fedyogi");
  }
  o->server.name = strategy;
  auto mode = ParseSecureAggregation(secure_aggregation);
  if (!mode.ok())
    return cfg.ValueError("federation.secure_aggregation",
                          "must be \"paillier-masked\", \"paillier\" or \"none\"");
  o->secure_aggregation = *mode;
  o->local.set_epochs(epochs);
  o->local.set_batch_size(batch);
  o->local.set_optimizer(opt);
  o->local.set_lr(lr);
  o->local.set_weight_decay(wd);
  o->local.set_prox_mu(mu);
  o->local.set_class_weights(cw);
  RETURN_IF_ERROR(nn::ParseModelConfig(cfg, &o->model));
  for (auto k : {"participant", "data", "partition"}) cfg.MarkKnown(k);
  return cfg.CheckNoUnknownKeys();
}

}  // namespace

Result<CoordinatorResult> RunCoordinatorJob(const CoordinatorJobRequest& req) {
  // Signals first: a SIGTERM from here on stops the coordinator cleanly, whichever thread (ours
  // or a library's) the kernel hands it to.
  std::atomic<Coordinator*> running{nullptr};
  std::atomic<bool> signalled{false};
  SignalWatcher signals([&](int sig) {
    spdlog::warn("signal {}: stopping after the current step; the run resumes on the next start",
                 sig);
    signalled = true;
    if (Coordinator* c = running.load()) c->Stop();
  });
  ASSIGN_OR_RETURN(Config cfg, LoadConfig(req.config_path, req.overrides));
  CoordinatorOptions o;
  GrpcServerOptions so;
  std::string bundle_dir, listen;
  RETURN_IF_ERROR(ParseCoordinator(cfg, &o, &so, &bundle_dir, &listen));
  if (!req.bundle.empty()) bundle_dir = req.bundle;
  ASSIGN_OR_RETURN(Bundle b, ReadBundle(bundle_dir, "federation"));
  o.consortium = b.consortium.id;
  o.parties = b.consortium.parties;
  o.threshold = b.consortium.threshold;
  o.public_key = b.public_key;
  o.schema = b.consortium.schema;
  if (o.schema.empty()) {
    return FailedPrecondition(bundle_dir +
                              "/consortium.toml has no [schema]: the consortium fixes the model's "
                              "input_shape, outputs and task at `fed init` (see examples/fraud/"
                              "consortium.toml; a participant prints its data's schema)");
  }
  o.runs_dir = req.home + "/runs";
  if (listen.empty()) listen = b.consortium.coordinator_address;
  if (o.min_participants > static_cast<int>(o.parties.size())) {
    return cfg.ValueError(
        "federation.min_participants",
        "the consortium has only " + std::to_string(o.parties.size()) + " parties");
  }
  ASSIGN_OR_RETURN(auto store, store::OpenHomeStore(req.home));
  int64_t resume = req.resume_run;
  if (resume == 0 && !req.fresh) {
    ASSIGN_OR_RETURN(auto runs, store->ListRuns(200, "fed"));
    for (const auto& r : runs) {  // newest first
      if (r.name != o.job_name) continue;
      if (r.status == "running") {
        return FailedPrecondition("run " + std::to_string(r.id) + " of '" + o.job_name +
                                  "' is being coordinated by pid " + std::to_string(r.pid) +
                                  " on " + r.host);
      }
      // Killed (interrupted), stopped by a signal or out of round attempts (failed): resume.
      if (r.status == "interrupted" || r.status == "failed") {
        resume = r.id;
        spdlog::info(
            "run {} of '{}' {}: resuming it (--new starts afresh)", r.id, o.job_name,
            r.status == "failed" ? "failed (" + r.error + ")" : std::string("was interrupted"));
      }
      break;
    }
  }
  ASSIGN_OR_RETURN(auto coord, Coordinator::Create(o, store.get(), resume));
  so.listen = listen;
  so.tls = b.tls;
  so.consortium = o.consortium;
  so.parties.insert(o.parties.begin(), o.parties.end());
  Coordinator* c = coord.get();
  running = c;
  if (signalled) c->Stop();  // a signal that came while the coordinator was being built
  auto server = GrpcServer::Start(
      so, [c](const std::string& party, Connection& conn) { c->Serve(party, conn); });
  if (!server.ok()) return server.status();
  spdlog::info(
      "coordinator of {} listening on {} (mutual TLS), run {}: {} rounds, {} of {} to decrypt, {} "
      "aggregation",
      o.consortium, listen, coord->run_id(), o.rounds, o.threshold, o.parties.size(),
      SecureAggregationName(o.secure_aggregation));
  auto result = coord->Run();
  // Let the participants read FINISHED before their streams are cancelled.
  if (result.ok()) std::this_thread::sleep_for(std::chrono::milliseconds(300));
  (*server)->Shutdown();
  running = nullptr;
  if (!result.ok() && signalled && result.status().code() == StatusCode::kCancelled) {
    CoordinatorResult stopped;  // drained on a signal: the run is kept and resumes next time
    stopped.run_id = c->run_id();
    stopped.rounds_completed = c->rounds_completed();
    stopped.stopped = true;
    return stopped;
  }
  return result;
}

Status RunParticipantJob(const ParticipantJobRequest& req) {
  std::atomic<Participant*> running{nullptr};
  std::atomic<bool> signalled{false};
  SignalWatcher signals([&](int sig) {
    spdlog::warn("signal {}: leaving the federation", sig);
    signalled = true;
    if (Participant* p = running.load()) p->Stop();
  });
  ASSIGN_OR_RETURN(Config cfg, LoadConfig(req.config_path, req.overrides));
  std::string bundle_dir, coordinator, server_name, column, grouping, part;
  int threads = 0;
  RETURN_IF_ERROR(cfg.Get("participant.bundle", &bundle_dir));
  RETURN_IF_ERROR(cfg.Get("participant.coordinator", &coordinator));
  RETURN_IF_ERROR(cfg.Get("participant.server_name", &server_name));
  RETURN_IF_ERROR(cfg.Get("participant.threads", &threads));
  data::DataOptions dopts;
  RETURN_IF_ERROR(data::ParseDataOptions(cfg, &dopts));
  RETURN_IF_ERROR(cfg.Get("partition.column", &column));
  RETURN_IF_ERROR(cfg.Get("partition.groups", &grouping));
  RETURN_IF_ERROR(cfg.Get("partition.part", &part));
  for (auto k : {"job", "federation", "model", "local"}) cfg.MarkKnown(k);
  RETURN_IF_ERROR(cfg.CheckNoUnknownKeys());
  if (!req.bundle.empty()) bundle_dir = req.bundle;
  ASSIGN_OR_RETURN(Bundle b, ReadBundle(bundle_dir, "participant"));
  const std::string party = b.identity["name"];
  const int index = b.identity.value("index", 0);
  RETURN_IF_ERROR(tls::CheckSecretFileMode(bundle_dir + "/share.json", "key share"));
  ASSIGN_OR_RETURN(crypto::LoadedShare share,
                   crypto::LoadShare(bundle_dir + "/share.json", b.public_key.get()));
  if (share.share.index != index)
    return DataLoss(bundle_dir + "/share.json: share index differs from identity.json's");
  if (coordinator.empty()) coordinator = b.consortium.coordinator_address;
  if (threads > 0) at::set_num_threads(threads);

  // This party's data: the rows of its partition of the training split.
  dopts.group_column = column;
  ASSIGN_OR_RETURN(data::LoadedData data, data::LoadData(dopts, req.home));
  if (!column.empty()) {
    ASSIGN_OR_RETURN(auto groups, data::NamedGrouping(grouping));
    if (part.empty()) part = party.substr(party.rfind('-') + 1);  // "bank-west" holds "west"
    auto lower = [](std::string s) {
      for (auto& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      return s;
    };
    std::vector<int64_t> keep;
    std::set<std::string> seen;
    for (size_t i = 0; i < data.train_groups.size(); ++i) {
      const std::string& v = data.train_groups[i];
      std::string g = groups.empty() ? v : (groups.count(v) ? groups.at(v) : "");
      if (g.empty())
        return cfg.ValueError("partition.groups",
                              "value '" + v + "' of column " + column + " has no group");
      seen.insert(g);
      if (lower(g) == lower(part)) keep.push_back(static_cast<int64_t>(i));
    }
    if (keep.empty()) {
      std::string names;
      for (auto& s : seen) names += (names.empty() ? "" : ", ") + s;
      return cfg.ValueError("partition.part",
                            "'" + part + "' matches no training rows; the groups are " + names);
    }
    at::Tensor sel = torch::tensor(keep, torch::kInt64);
    data.train = {data.train.x.index_select(0, sel), data.train.y.index_select(0, sel)};
    spdlog::info("{}: {} training rows of partition {} ({} = {})", party, keep.size(), part, column,
                 grouping.empty() ? "value" : grouping);
  }
  // The consortium fixed the data's schema at `fed init`: say here, before dialing, if this
  // party's data does not fit it.
  Schema mine;
  mine.input_shape = data.input_shape;
  mine.outputs = data.task == data::Task::kBinary       ? 1
                 : data.task == data::Task::kMulticlass ? data.num_classes
                                                        : data.train.y.size(1);
  mine.task = data::TaskName(data.task);
  if (b.consortium.schema.empty()) {
    return FailedPrecondition(
        bundle_dir + "/consortium.toml has no [schema]; this party's data has " + mine.ToString());
  }
  if (!(mine == b.consortium.schema)) {
    return FailedPrecondition(party + "'s data has " + mine.ToString() +
                              "; the consortium's schema (" + bundle_dir + "/consortium.toml) is " +
                              b.consortium.schema.ToString());
  }
  ParticipantOptions po;
  po.consortium = b.consortium.id;
  po.party = party;
  po.public_key = b.public_key;
  po.share = share.share;
  po.data = &data;
  po.data_json = DataJson(data, dopts);
  po.threads = threads;
  po.crash_at_round = req.crash_at_round;
  Participant p(po);
  running = &p;
  if (signalled) p.Stop();
  GrpcDialOptions d;
  d.address = coordinator;
  d.tls = b.tls;
  d.server_name = server_name;
  Status st = p.Run([&d] { return GrpcDial(d); });
  running = nullptr;
  if (signalled && st.code() == StatusCode::kCancelled) {
    spdlog::info("{}: stopped by signal", party);
    return Status::OK();
  }
  return st;
}

}  // namespace ronghe::fed
