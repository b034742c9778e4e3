#include "ronghe/fed/participant.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <chrono>
#include <csignal>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <thread>

#include "ronghe/base/mutex.h"
#include "ronghe/crypto/encoding.h"
#include "ronghe/crypto/paillier.h"
#include "ronghe/fed/aggregation.h"
#include "ronghe/fed/local_train.h"
#include "ronghe/fed/strategy.h"
#include "ronghe/fed/testing.h"
#include "ronghe/nn/model.h"

namespace ronghe::fed {

std::string DataJson(const data::LoadedData& d, const data::DataOptions& options) {
  nlohmann::json j = {{"task", data::TaskName(d.task)},
                      {"classes", d.class_names},
                      {"data", options.ToJson()},
                      {"data_sha256", d.data_sha256},
                      {"preprocessing", d.preprocessing}};
  return j.dump();
}

struct Participant::Impl {
  ParticipantOptions o;
  std::atomic<bool> stop{false};
  std::atomic<int64_t> rounds{0}, sessions{0};
  ParticipantTestHooks hooks;
  Mutex conn_mu;
  Connection* current GUARDED_BY(conn_mu) = nullptr;
  uint64_t seq = 0;

  int64_t round = 0;
  std::string nonce, decrypted_nonce;
  int64_t values = 0;
  std::vector<mpz_class> own_upload;
  Reassembler task_in, decrypt_in;
  std::string task_nonce, decrypt_nonce;
  bool welcomed = false;

  bool Send(Connection& c, v1::Envelope e, int64_t r, const std::string& n) {
    auto* h = e.mutable_header();
    h->set_consortium(o.consortium);
    h->set_round(r);
    h->set_nonce(n);
    h->set_seq(++seq);
    return c.Send(e);
  }
  bool SendPayload(Connection& c, v1::PayloadKind kind, const std::string& payload) {
    for (auto& ch : SplitPayload(kind, payload, o.chunk_bytes)) {
      v1::Envelope e;
      *e.mutable_chunk() = std::move(ch);
      if (!Send(c, std::move(e), round, nonce)) return false;
    }
    return true;
  }
  void Fail(Connection& c, int64_t r, const std::string& n, const std::string& why) {
    spdlog::warn("{}: round {}: {}", o.party, r, why);
    v1::Envelope e;
    e.mutable_notice()->set_code(v1::Notice::FAILED);
    e.mutable_notice()->set_message(why);
    Send(c, std::move(e), r, n);
  }

  std::optional<v1::RoundTask> task;  // the current round's task (for its packing settings)

  Status HandleTask(Connection& c, const std::string& payload);
  Status HandleDecrypt(Connection& c, const std::string& payload);
  Status Session(Connection& c, bool* finished);
};

Status Participant::Impl::HandleTask(Connection& c, const std::string& payload) {
  if (o.crash_at_round == round) {
    spdlog::warn("{}: crash drill: dying in round {} after receiving the model", o.party, round);
    if (o.crash_process) {
      std::fflush(nullptr);
      std::raise(SIGKILL);
    }
    c.Close();
    return Cancelled(o.party + ": crash drill in round " + std::to_string(round));
  }
  v1::RoundTask t;
  if (!t.ParseFromString(payload)) return InvalidArgument("round task is not a RoundTask message");
  auto mode = ParseSecureAggregation(t.secure_aggregation());
  if (!mode.ok())
    return InvalidArgument("round task: unknown secure_aggregation '" +
                           Quote(t.secure_aggregation()) + "'");
  const bool secure = *mode != SecureAggregation::kNone;

  if (secure && !o.public_key)
    return FailedPrecondition("round asks for paillier but this party has no key");
  if (!(t.weight() > 0 && t.weight() <= 1) || !(t.clip() > 0))
    return InvalidArgument("round task: bad weight or clip");
  auto cfg_json = nlohmann::json::parse(t.model_config_json(), nullptr, false);
  if (cfg_json.is_discarded()) return InvalidArgument("round task: model config is not JSON");
  ASSIGN_OR_RETURN(nn::ModelConfig mc, nn::ModelConfig::FromJson(cfg_json));
  if (mc.input_shape != o.data->input_shape)
    return InvalidArgument("round task: the model's input shape differs from this party's data");
  ASSIGN_OR_RETURN(auto model, nn::Model::Create(mc));
  ASSIGN_OR_RETURN(auto global, StateFromProto(t.model(), "round task"));
  RETURN_IF_ERROR(model->LoadState(global));
  const std::vector<float> before = Flatten(model->NamedState());
  const auto start = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(LocalTrainResult tr, LocalTrain(*model, o.data->train, o.data->task,
                                                   o.data->num_classes, t.settings(), t.seed()));
  std::vector<float> update = Flatten(model->NamedState());
  for (size_t i = 0; i < update.size(); ++i) update[i] -= before[i];
  if (t.dp_clip_norm() > 0) ClipL2(&update, t.dp_clip_norm());
  const float clip = static_cast<float>(t.clip());
  for (float& x : update) x = std::clamp(x, -clip, clip);
  values = static_cast<int64_t>(update.size());
  if (hooks.observe_update) hooks.observe_update(update);

  // The round's scheme (crypto/scheme.h): quantise update * weight, then seal.
  const SchemeOptions so = SchemeOptionsOf(t, o.public_key);
  ASSIGN_OR_RETURN(std::unique_ptr<crypto::UpdateScheme> scheme, MakeScheme(so));
  ASSIGN_OR_RETURN(v1::Upload up, SealUpdate(so, *scheme, update, t.weight(),
                                             AttemptSeed(o.consortium, round, nonce), o.threads));
  up.set_train_loss(tr.mean_loss);
  own_upload.clear();
  if (secure) {
    const size_t width = crypto::CiphertextWidth(o.public_key->paillier());
    ASSIGN_OR_RETURN(own_upload,
                     crypto::DecodeFixedWidth(up.ciphertexts(), width,
                                              up.ciphertexts().size() / width, "own upload"));
  }
  std::fill(update.begin(), update.end(), 0.0f);
  task = std::move(t);
  spdlog::info("{}: round {}: trained {} steps (loss {:.4f}) in {:.2f} s; uploading {} bytes",
               o.party, round, tr.steps, tr.mean_loss,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
               up.ByteSizeLong());
  if (!SendPayload(c, v1::UPLOAD, up.SerializeAsString()))
    return Unavailable("connection lost during upload");
  ++rounds;
  return Status::OK();
}

Status Participant::Impl::HandleDecrypt(Connection& c, const std::string& payload) {
  if (!o.public_key || !task)
    return FailedPrecondition("decryption request without a paillier round");
  if (decrypted_nonce == nonce)
    return PermissionDenied("already decrypted once in this round; refusing a second request");
  v1::DecryptRequest req;
  if (!req.ParseFromString(payload))
    return InvalidArgument("decryption request is not a DecryptRequest message");
  // Only an aggregate of at least the round's minimum of uploads (the coordinator says how many;
  // a coordinator that lies about it is outside the honest-but-curious model).
  if (req.contributors() < std::max<uint32_t>(1, task->min_contributors())) {
    return PermissionDenied("asked to decrypt an aggregate of " +
                            std::to_string(req.contributors()) + " uploads; the round needs " +
                            std::to_string(task->min_contributors()));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<crypto::UpdateScheme> scheme,
                   MakeScheme(SchemeOptionsOf(*task, o.public_key)));
  const size_t width = crypto::CiphertextWidth(o.public_key->paillier());
  if (req.ciphertext_bytes() != width)
    return InvalidArgument("decryption request: wrong ciphertext width");
  ASSIGN_OR_RETURN(
      auto cts, crypto::DecodeFixedWidth(req.ciphertexts(), width, scheme->CiphertextCount(values),
                                         "decryption request"));
  // The one individual update this party can recognise is its own.
  if (cts == own_upload)
    return PermissionDenied("asked to decrypt this party's own upload, not an aggregate");
  decrypted_nonce = nonce;
  const auto start = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(crypto::PartialDecryption part,
                   crypto::PartialDecrypt(*o.public_key, o.share, cts, o.threads));
  if (hooks.tamper_partial) hooks.tamper_partial(part);
  v1::Partial pd;
  pd.set_index(part.index);
  pd.set_share_bytes(static_cast<uint32_t>(width));
  pd.set_shares(crypto::EncodeFixedWidth(part.shares, width));
  crypto::EncodedProof proof = crypto::EncodeProof(part.proof);
  pd.set_proof_e(proof.e);
  pd.set_proof_z(proof.z);
  spdlog::info("{}: round {}: partial decryption of {} ciphertexts in {:.2f} s", o.party, round,
               cts.size(),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  if (!SendPayload(c, v1::PARTIAL, pd.SerializeAsString()))
    return Unavailable("connection lost during decryption");
  return Status::OK();
}

Status Participant::Impl::Session(Connection& c, bool* finished) {
  v1::Envelope hello;
  auto* h = hello.mutable_hello();
  h->set_party(o.party);
  h->set_key_fingerprint(o.public_key ? o.public_key->fingerprint() : "");
  h->set_num_examples(o.data->train.size());
  for (int64_t d : o.data->input_shape) h->add_input_shape(d);
  h->set_outputs(o.data->task == data::Task::kBinary       ? 1
                 : o.data->task == data::Task::kMulticlass ? o.data->num_classes
                                                           : o.data->train.y.size(1));
  h->set_task(data::TaskName(o.data->task));
  h->set_data_json(o.data_json);
  h->set_software("ronghe");
  if (!Send(c, hello, 0, "")) return Unavailable("cannot send Hello");
  v1::Envelope e;
  while (!stop && c.Recv(&e)) {
    const auto& hd = e.header();
    if (hd.consortium() != o.consortium) {
      spdlog::warn("{}: ignoring a message for consortium '{}'", o.party, Quote(hd.consortium()));
      continue;
    }
    if (e.has_welcome()) {
      welcomed = true;
      spdlog::info("{}: connected (key share {}), next round {}", o.party, e.welcome().index(),
                   e.welcome().next_round());
    } else if (e.has_notice()) {
      switch (e.notice().code()) {
        case v1::Notice::FINISHED:
          *finished = true;
          spdlog::info("{}: the coordinator finished training after round {}", o.party, hd.round());
          return Status::OK();
        case v1::Notice::ROUND_ABANDONED:
          spdlog::warn("{}: round {} abandoned by the coordinator: {}", o.party, hd.round(),
                       Quote(e.notice().message(), 600));
          break;
        case v1::Notice::REJECTED:
          spdlog::warn("{}: the coordinator rejected a message: {}", o.party,
                       Quote(e.notice().message(), 600));
          if (!welcomed)
            return PermissionDenied("coordinator refused this party: " +
                                    Quote(e.notice().message(), 600));
          break;
        default:
          break;
      }
    } else if (e.has_chunk()) {
      const auto kind = e.chunk().kind();
      if (kind == v1::ROUND_TASK) {
        if (hd.nonce() != task_nonce || !task_in.started()) {
          task_nonce = hd.nonce();
          task_in = Reassembler(v1::ROUND_TASK, size_t{1} << 31);
        }
        Status st = task_in.Add(e.chunk(), "round task");
        if (st.ok() && task_in.complete()) {
          round = static_cast<int64_t>(hd.round());
          nonce = hd.nonce();
          task_nonce.clear();
          st = HandleTask(c, task_in.Take());
          if (st.code() == StatusCode::kCancelled || st.code() == StatusCode::kUnavailable)
            return st;
        }
        if (!st.ok()) Fail(c, static_cast<int64_t>(hd.round()), hd.nonce(), st.message());
      } else if (kind == v1::DECRYPT_REQUEST) {
        if (static_cast<int64_t>(hd.round()) != round || hd.nonce() != nonce) {
          Fail(c, static_cast<int64_t>(hd.round()), hd.nonce(),
               "stale decryption request (not the current round)");
          continue;
        }
        if (hd.nonce() != decrypt_nonce || !decrypt_in.started()) {
          decrypt_nonce = hd.nonce();
          decrypt_in = Reassembler(v1::DECRYPT_REQUEST, size_t{1} << 31);
        }
        Status st = decrypt_in.Add(e.chunk(), "decryption request");
        if (st.ok() && decrypt_in.complete()) {
          decrypt_nonce.clear();
          st = HandleDecrypt(c, decrypt_in.Take());
          if (st.code() == StatusCode::kUnavailable) return st;
        }
        if (!st.ok()) Fail(c, round, nonce, st.message());
      }
    }
    e = v1::Envelope();
  }
  return stop ? Cancelled("stopped") : Unavailable("connection to the coordinator ended");
}

Participant::Participant(ParticipantOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->o = std::move(options);
}
Participant::~Participant() = default;
int64_t Participant::rounds_trained() const { return impl_->rounds; }
int64_t Participant::sessions() const { return impl_->sessions; }

void Participant::Stop() {
  impl_->stop = true;
  MutexLock lock(&impl_->conn_mu);
  if (impl_->current) impl_->current->Close();
}

void SetTestHooks(Participant& participant, ParticipantTestHooks hooks) {
  participant.impl_->hooks = std::move(hooks);
}

Status Participant::Run(const Dialer& dial) {
  Impl& s = *impl_;
  if (!s.o.data || s.o.party.empty() || s.o.consortium.empty())
    return InvalidArgument("participant: party, consortium and data are required");
  std::mt19937_64 jitter(std::random_device{}());
  double backoff = s.o.backoff_initial_s;
  auto last_contact = std::chrono::steady_clock::now();
  bool warned = false;
  while (!s.stop) {
    auto conn = dial();
    if (!conn.ok()) {
      double waited =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - last_contact).count();
      if (s.o.give_up_after_s > 0 && waited > s.o.give_up_after_s) {
        return Unavailable(s.o.party + ": gave up after " +
                           std::to_string(static_cast<int>(waited)) +
                           " s: " + conn.status().message());
      }
      if (!warned)
        spdlog::warn("{}: {}; retrying with backoff", s.o.party, conn.status().message());
      warned = true;
      // Full jitter (AWS architecture blog): spreads reconnects of many parties after an outage.
      double sleep = std::uniform_real_distribution<double>(backoff / 2, backoff)(jitter);
      for (double t = 0; t < sleep && !s.stop; t += 0.05)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      backoff = std::min(backoff * 2, s.o.backoff_max_s);
      continue;
    }
    ++s.sessions;
    warned = false;
    {
      MutexLock lock(&s.conn_mu);
      s.current = conn->get();
    }
    if (s.stop) (*conn)->Close();
    bool finished = false;
    s.welcomed = false;
    Status st = s.Session(**conn, &finished);
    {
      MutexLock lock(&s.conn_mu);
      s.current = nullptr;
    }
    conn->reset();
    last_contact = std::chrono::steady_clock::now();
    if (finished) return Status::OK();
    if (st.code() == StatusCode::kCancelled || st.code() == StatusCode::kPermissionDenied)
      return st;
    if (s.welcomed) backoff = s.o.backoff_initial_s;
    if (!s.stop) spdlog::warn("{}: {}; reconnecting", s.o.party, st.message());
  }
  return Cancelled(s.o.party + ": stopped");
}

}  // namespace ronghe::fed
