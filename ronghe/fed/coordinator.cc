#include "ronghe/fed/coordinator.h"

#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <thread>

#include "ronghe/base/file.h"
#include "ronghe/base/hash.h"
#include "ronghe/base/mutex.h"
#include "ronghe/crypto/encoding.h"
#include "ronghe/fed/aggregation.h"
#include "ronghe/fed/testing.h"
#include "ronghe/nn/artifact.h"
#include "ronghe/nn/tensor_file.h"

namespace ronghe::fed {

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

struct Peer {
  std::string party;
  int index = 0;
  uint64_t generation = 0;
  v1::Hello hello;
  Mutex send_mu;
  Connection* conn GUARDED_BY(send_mu) = nullptr;  // null once the connection ended
  uint64_t send_seq GUARDED_BY(send_mu) = 0;
  std::string gone_reason GUARDED_BY(send_mu);  // why the stream ended, when known
  std::atomic<int64_t> bytes{0};
  std::atomic<int64_t> inbox_bytes{0};  // received, not yet handled by the run thread
  // Run thread only:
  uint64_t last_recv_seq = 0;
  bool accepted = false;  // hello checked against the schema
  Clock::time_point reject_window{};
  int rejections = 0;  // refused messages in the current minute
  std::string GoneReason() EXCLUDES(send_mu) {
    MutexLock lock(&send_mu);
    return gone_reason;
  }
};

struct Event {
  enum Kind { kJoined, kMessage, kGone } kind;
  std::shared_ptr<Peer> peer;
  v1::Envelope envelope;
};

uint64_t RoundSeed(uint64_t seed, int64_t round) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(round) * 0xBF58476D1CE4E5B9ull;
  x ^= x >> 31;
  return x * 0x94D049BB133111EBull;
}

// How a step of a round attempt ended: go on to the next step, or abandon the attempt (to be
// retried) saying why. Fatal errors (the coordinator stopped, a store failure) are the Status of
// the Result that carries it.
struct RoundOutcome {
  bool abandoned = false;
  std::string reason;
  static RoundOutcome Continue() { return {}; }
  static RoundOutcome Abandon(std::string why) { return {true, std::move(why)}; }
};

// The state of one round attempt, shared by its steps.
struct RoundAttempt {
  int64_t round = 0;
  Clock::time_point start, deadline;
  std::string nonce;
  std::vector<std::shared_ptr<Peer>> members;  // ready when the attempt began
  std::map<std::string, double> weight_of;     // aggregation weight per member
  int64_t len = 0;                             // model values
  std::set<std::string> pending;               // members whose upload is still awaited
  std::map<std::string, Reassembler> uploads;
  double loss_sum = 0;
  std::vector<float> sum;  // the decrypted (or plain) weighted sum
  RoundReport* rep = nullptr;
  std::string What(const Peer& p, const char* payload) const {
    return "round " + std::to_string(round) + ": " + p.party + "'s " + payload;
  }
};

}  // namespace

struct Coordinator::Impl {
  CoordinatorOptions o;
  CoordinatorTestHooks hooks;
  store::RunStore* store = nullptr;
  std::unique_ptr<store::Job> job;

  Mutex mu;
  CondVar cv;
  std::map<std::string, std::shared_ptr<Peer>> peers GUARDED_BY(mu);
  std::set<std::string> ever_joined;  // parties accepted since this coordinator started (round
                                      // thread only)
  std::deque<Event> inbox GUARDED_BY(mu);
  bool stopping GUARDED_BY(mu) = false;
  uint64_t next_generation GUARDED_BY(mu) = 1;
  // The last persisted round: written by the run thread, read by transport threads (Welcome).
  int64_t completed GUARDED_BY(mu) = 0;

  // Run thread state.
  bool initialized = false;
  nn::ModelConfig model_config;
  nlohmann::json data_json;  // data options and preprocessing (from the first accepted Hello)
  std::unique_ptr<nn::Model> model;
  std::vector<float> weights;
  std::unique_ptr<ServerOptimizer> server;
  int64_t dp_rounds = 0;
  bool resumed = false;
  nlohmann::json history = nlohmann::json::array();
  SchemeOptions scheme_options;
  std::unique_ptr<AggregationScheme> scheme;
  // Why each party failed to decrypt in this run (a timeout, a bad proof, a refusal); at
  // decrypt_strikes it is not asked again.
  std::map<std::string, std::vector<std::string>> decrypt_failures;
  std::string artifact;

  bool secure() const { return o.secure_aggregation != SecureAggregation::kNone; }

  int64_t Completed() EXCLUDES(mu) {
    MutexLock lock(&mu);
    return completed;
  }
  void SetCompleted(int64_t round) EXCLUDES(mu) {
    MutexLock lock(&mu);
    completed = round;
  }

  int MinNeeded() const {
    int m = o.min_participants > 0 ? o.min_participants : o.threshold;
    if (secure()) m = std::max(m, o.threshold);
    return std::max(m, 1);
  }

  bool SendTo(Peer& p, v1::Envelope e, int64_t round, const std::string& nonce) {
    MutexLock lock(&p.send_mu);
    if (!p.conn) return false;
    auto* h = e.mutable_header();
    h->set_consortium(o.consortium);
    h->set_round(round);
    h->set_nonce(nonce);
    h->set_seq(++p.send_seq);
    p.bytes += static_cast<int64_t>(e.ByteSizeLong());
    return p.conn->Send(e);
  }

  void Notify(Peer& p, v1::Notice::Code code, const std::string& msg, int64_t round = 0,
              const std::string& nonce = "") {
    v1::Envelope e;
    e.mutable_notice()->set_code(code);
    e.mutable_notice()->set_message(msg.size() <= 512 ? msg : msg.substr(0, 512) + "...");
    SendTo(p, std::move(e), round, nonce);
  }

  bool SendPayload(Peer& p, v1::PayloadKind kind, const std::string& payload, int64_t round,
                   const std::string& nonce) {
    for (auto& c : SplitPayload(kind, payload, o.chunk_bytes)) {
      v1::Envelope e;
      *e.mutable_chunk() = std::move(c);
      if (!SendTo(p, std::move(e), round, nonce)) return false;
    }
    return true;
  }

  void Drop(Peer& p, const std::string& reason = "") {
    MutexLock lock(&p.send_mu);
    if (p.conn) {
      if (p.gone_reason.empty()) p.gone_reason = reason;
      p.conn->Close();
    }
  }

  // A refused message: its sender gets a short notice and the log a line, for the first 10 in a
  // minute; the rest are only counted, and max_rejections in a minute close the stream.
  void Reject(Peer& p, const std::string& why, int64_t round, const std::string& nonce) {
    const auto now = Clock::now();
    if (now - p.reject_window > std::chrono::minutes(1)) {
      p.reject_window = now;
      p.rejections = 0;
    }
    ++p.rejections;
    if (p.rejections <= 10) {
      spdlog::warn("round {}: rejected from {}: {}", round, p.party, why);
      Notify(p, v1::Notice::REJECTED, why, round, nonce);
    } else if (p.rejections == 11) {
      spdlog::warn("round {}: {} keeps sending refused messages; counting, not logging, them",
                   round, p.party);
    }
    if (p.rejections == o.max_rejections) {
      std::string reason =
          "sent " + std::to_string(o.max_rejections) + " refused messages within a minute";
      spdlog::warn("federation: disconnecting {}: {}", p.party, reason);
      Drop(p, reason);
    }
  }

  // Next event, or false at the deadline / on Stop.
  bool NextEvent(Event* e, Clock::time_point deadline) EXCLUDES(mu) {
    MutexLock lock(&mu);
    cv.WaitUntil(&mu, deadline, [&] {
      mu.AssertHeld();
      return stopping || !inbox.empty();
    });
    if (stopping || inbox.empty()) return false;
    *e = std::move(inbox.front());
    inbox.pop_front();
    if (e->kind == Event::kMessage) e->peer->inbox_bytes -= e->envelope.ByteSizeLong();
    return true;
  }

  bool Stopping() EXCLUDES(mu) {
    MutexLock lock(&mu);
    return stopping;
  }

  std::vector<std::shared_ptr<Peer>> ReadyPeers() EXCLUDES(mu) {
    MutexLock lock(&mu);
    std::vector<std::shared_ptr<Peer>> out;
    for (auto& [name, p] : peers)
      if (p->accepted) out.push_back(p);
    std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a->index < b->index; });
    return out;
  }

  // The consortium's model, from its schema (never from a party's Hello).
  Status InitModel() {
    model_config = o.model;
    model_config.input_shape = o.schema.input_shape;
    model_config.outputs = o.schema.outputs;
    torch::manual_seed(o.seed);
    ASSIGN_OR_RETURN(model, nn::Model::Create(model_config));
    weights = Flatten(model->NamedState());
    ASSIGN_OR_RETURN(ServerOptimizer s,
                     ServerOptimizer::Create(o.server, static_cast<int64_t>(weights.size())));
    server = std::make_unique<ServerOptimizer>(std::move(s));
    initialized = true;
    spdlog::info("federation: {} model with {} values for the consortium's schema ({})",
                 model_config.kind, weights.size(), o.schema.ToString());
    return Status::OK();
  }

  // A newly joined peer (its Hello already matched the schema in Serve).
  void Accept(const std::shared_ptr<Peer>& p) {
    if (data_json.is_null() || data_json.empty()) {
      data_json = nlohmann::json::parse(p->hello.data_json(), nullptr, false);
      if (data_json.is_discarded() || !data_json.is_object()) data_json = nlohmann::json::object();
    }
    p->accepted = true;
    ever_joined.insert(p->party);
    spdlog::info("federation: {} joined ({} examples)", p->party, p->hello.num_examples());
  }

  // Checks a message's binding. Returns "" when it belongs to (round, nonce).
  std::string CheckHeader(Peer& p, const v1::Envelope& e, int64_t round, const std::string& nonce) {
    const auto& h = e.header();
    if (h.consortium() != o.consortium)
      return "message for consortium '" + Quote(h.consortium()) + "'";
    if (h.seq() <= p.last_recv_seq) {
      return "replayed message (sequence " + std::to_string(h.seq()) + " after " +
             std::to_string(p.last_recv_seq) + ")";
    }
    p.last_recv_seq = h.seq();
    if (static_cast<int64_t>(h.round()) != round || h.nonce() != nonce) {
      return "stale message for round " + std::to_string(h.round()) + " (nonce " +
             Hex(h.nonce().substr(0, 4)) + "), current round " + std::to_string(round) +
             " (nonce " + Hex(nonce).substr(0, 8) + ")";
    }
    return "";
  }

  // Handles an event that is not part of the current exchange: joins, departures and strays.
  void Background(Event& ev, int64_t round, const std::string& nonce) {
    if (ev.kind == Event::kJoined) {
      Accept(ev.peer);
    } else if (ev.kind == Event::kMessage) {
      std::string why = CheckHeader(*ev.peer, ev.envelope, round, nonce);
      if (why.empty()) why = "unexpected message at this point of round " + std::to_string(round);
      if (ev.envelope.has_notice()) return;  // a participant's notice needs no answer
      Reject(*ev.peer, why, round, nonce);
    }
  }

  Status WaitForParticipants(int64_t round) {
    const auto begin = Clock::now();
    auto deadline =
        begin + std::chrono::milliseconds(static_cast<int64_t>(o.join_timeout_s * 1000));
    auto gathered = begin + std::chrono::milliseconds(static_cast<int64_t>(o.gather_s * 1000));
    bool said = false;
    while (true) {
      const int ready = static_cast<int>(ReadyPeers().size());
      if (initialized && ready == static_cast<int>(o.parties.size())) return Status::OK();
      if (initialized && ready >= MinNeeded()) {
        // Enough to run. Parties that have not joined this coordinator yet get a moment (they may
        // be starting right now); one that joined and left rejoins whenever it reconnects,
        // without holding up rounds.
        if (Clock::now() >= gathered || ever_joined.size() == o.parties.size()) return Status::OK();
        Event ev;
        if (NextEvent(&ev, gathered)) Background(ev, round, "");
        continue;
      }
      if (!said) {
        spdlog::info("round {}: waiting for participants ({} of {} needed connected)", round,
                     ReadyPeers().size(), MinNeeded());
        said = true;
      }
      Event ev;
      if (!NextEvent(&ev, deadline)) {
        if (Stopping()) return Cancelled("coordinator stopped");
        return DeadlineExceeded(
            "round " + std::to_string(round) + " failed: only " +
            std::to_string(ReadyPeers().size()) + " participants connected after " +
            fmt::format("{:g}", o.join_timeout_s) + " s; " + std::to_string(MinNeeded()) +
            " are needed; the model of round " + std::to_string(Completed()) +
            " is kept; restart the coordinator to resume");
      }
      Background(ev, round, "");
    }
  }

  void SleepProcessing(double seconds, int64_t round) {
    auto until = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
    Event ev;
    while (NextEvent(&ev, until)) Background(ev, round, "");
  }

  // What an exchange says when a peer leaves it: its departure, its own FAILED notice (prefix of
  // the notice's message), and a message that is not a chunk (null = ignored).
  struct ExchangeText {
    const char* gone;
    const char* failed;
    const char* not_a_chunk;
  };

  // The chunk an exchange of round `a` waits for from `ev`'s peer, or null when the event was
  // something else and has been dealt with: a stray or a join (Background), a departure or a
  // reported failure (`drop`), a message of another round or a replay (REJECTED).
  template <typename Drop>
  const v1::Chunk* ExchangeChunk(RoundAttempt& a, Event& ev, bool expected,
                                 const ExchangeText& text, Drop&& drop) {
    Peer& p = *ev.peer;
    if (!expected) {
      Background(ev, a.round, a.nonce);
      return nullptr;
    }
    if (ev.kind == Event::kGone) {
      const std::string why = p.GoneReason();
      drop(p, why.empty() ? std::string(text.gone) : text.gone + (": " + why));
      return nullptr;
    }
    if (ev.kind != Event::kMessage) return nullptr;
    const v1::Envelope& e = ev.envelope;
    std::string bad = CheckHeader(p, e, a.round, a.nonce);
    if (!bad.empty()) {
      Reject(p, bad, a.round, a.nonce);
      return nullptr;
    }
    if (e.has_notice()) {
      if (e.notice().code() == v1::Notice::FAILED)
        drop(p, text.failed + Quote(e.notice().message(), 200));
      return nullptr;
    }
    if (!e.has_chunk()) {
      if (text.not_a_chunk) Reject(p, text.not_a_chunk, a.round, a.nonce);
      return nullptr;
    }
    return &e.chunk();
  }

  // One attempt at round `round`, in its steps. On success fills `rep` and updates the weights.
  Result<RoundOutcome> RunRound(int64_t round, RoundReport* rep);
  RoundAttempt BeginAttempt(int64_t round, RoundReport* rep);
  Status SendTasks(RoundAttempt& a);
  Result<RoundOutcome> CollectUploads(RoundAttempt& a);
  Result<RoundOutcome> CheckSum(RoundAttempt& a, const std::vector<mpz_class>& plaintexts);
  Result<RoundOutcome> DecryptAggregate(RoundAttempt& a);
  Status ApplyUpdate(RoundAttempt& a);

  Status Persist(const RoundReport& rep);
  Status LoadCheckpoint();
  Status WriteArtifact();
};

RoundAttempt Coordinator::Impl::BeginAttempt(int64_t round, RoundReport* rep) {
  RoundAttempt a;
  a.round = round;
  a.rep = rep;
  a.start = Clock::now();
  a.deadline = a.start + std::chrono::milliseconds(static_cast<int64_t>(o.round_deadline_s * 1000));
  a.nonce = NewNonce();
  a.members = ReadyPeers();
  for (auto& p : a.members) p->bytes = 0;
  a.len = static_cast<int64_t>(weights.size());
  // Weights: n_i / sum n_j over the members (equal with DP, which bounds each party's influence).
  const bool dp = o.dp.noise_multiplier > 0;
  double total = 0;
  for (auto& p : a.members) total += std::max<uint64_t>(1, p->hello.num_examples());
  for (auto& p : a.members) {
    a.weight_of[p->party] =
        dp ? 1.0 / a.members.size() : std::max<uint64_t>(1, p->hello.num_examples()) / total;
  }
  scheme->Begin(a.len, AttemptSeed(o.consortium, a.round, a.nonce));
  return a;
}

// Step 1. The task: global model and settings, to every member.
Status Coordinator::Impl::SendTasks(RoundAttempt& a) {
  auto state = model->NamedState();
  RETURN_IF_ERROR(Unflatten(weights, &state));
  v1::RoundTask task;
  task.set_model_config_json(model_config.ToJson().dump());
  StateToProto(state, task.mutable_model());
  *task.mutable_settings() = o.local;
  SetSchemeOptions(scheme_options, &task);
  task.set_min_contributors(static_cast<uint32_t>(MinNeeded()));
  task.set_dp_clip_norm(o.dp.noise_multiplier > 0 ? o.dp.clip_norm : 0);
  task.set_seed(RoundSeed(o.seed, a.round));
  for (auto& p : a.members) {
    task.set_weight(a.weight_of[p->party]);
    if (!SendPayload(*p, v1::ROUND_TASK, task.SerializeAsString(), a.round, a.nonce)) {
      const std::string why = p->GoneReason();
      a.rep->excluded.push_back(p->party + ": disconnected before the round started" +
                                (why.empty() ? "" : ": " + why));
      continue;
    }
    a.pending.insert(p->party);
    a.uploads[p->party] = Reassembler(v1::UPLOAD, scheme->MaxUploadBytes());
  }
  spdlog::info("round {}: sent the model to {} participants", a.round, a.pending.size());
  return Status::OK();
}

// Step 2. Uploads, checked and added as they arrive (AggregationScheme::Add), until every member
// answered or the deadline.
Result<RoundOutcome> Coordinator::Impl::CollectUploads(RoundAttempt& a) {
  RoundReport& rep = *a.rep;
  auto exclude = [&](Peer& p, const std::string& reason) {
    rep.excluded.push_back(p.party + ": " + reason);
    a.pending.erase(p.party);
    spdlog::warn("round {}: {} excluded: {}", a.round, p.party, reason);
  };
  const ExchangeText text{"disconnected during the round", "reported: ", "expected an upload"};
  Event ev;
  while (!a.pending.empty() && NextEvent(&ev, a.deadline)) {
    Peer& p = *ev.peer;
    bool member = a.pending.count(p.party) && std::any_of(a.members.begin(), a.members.end(),
                                                          [&](auto& m) { return m.get() == &p; });
    const v1::Chunk* chunk = ExchangeChunk(a, ev, member, text, exclude);
    if (!chunk) continue;
    Reassembler& in = a.uploads[p.party];
    Status st = in.Add(*chunk, a.What(p, "upload"));
    if (st.ok() && !in.complete()) continue;
    v1::Upload up;
    if (st.ok() && !up.ParseFromString(in.Take()))
      st = InvalidArgument(a.What(p, "upload") + ": not an Upload message");
    if (st.ok()) st = scheme->Add(up, a.weight_of[p.party], a.What(p, "upload"));
    if (!st.ok()) {
      Notify(p, v1::Notice::REJECTED, st.message(), a.round, a.nonce);
      exclude(p, st.message());
      continue;
    }
    a.pending.erase(p.party);
    rep.contributors.push_back(p.party);
    a.loss_sum += std::isfinite(up.train_loss()) ? up.train_loss() : 0.0;
  }
  if (Stopping()) return Cancelled("coordinator stopped");
  for (const auto& name : a.pending)
    rep.excluded.push_back(name + ": no upload before the deadline");
  const int k = static_cast<int>(rep.contributors.size());
  if (k < MinNeeded()) {
    return RoundOutcome::Abandon("only " + std::to_string(k) + " of " +
                                 std::to_string(a.members.size()) + " participants uploaded; " +
                                 std::to_string(MinNeeded()) + " are needed");
  }
  return RoundOutcome::Continue();
}

// Step 3. Decryption of the aggregate only, by `threshold` parties, proofs verified; then the
// decoded sum's range check. Each request has a deadline: a party that has not answered by then
// is replaced by the next share holder (its late answer is ignored), and a party that failed
// decrypt_strikes times in this run is not asked again. In the plaintext mode the sum is there.
Result<RoundOutcome> Coordinator::Impl::DecryptAggregate(RoundAttempt& a) {
  RoundReport& rep = *a.rep;
  const int k = static_cast<int>(rep.contributors.size());
  std::vector<mpz_class> plaintexts;
  if (scheme->Ciphertexts().empty()) return CheckSum(a, plaintexts);
  const std::vector<mpz_class>& acc = scheme->Ciphertexts();
  const size_t width = scheme->CiphertextWidth();
  const int64_t count = static_cast<int64_t>(acc.size());
  v1::DecryptRequest req;
  req.set_ciphertext_bytes(static_cast<uint32_t>(width));
  req.set_ciphertexts(crypto::EncodeFixedWidth(acc, width));
  req.set_contributors(k);
  const std::string payload = req.SerializeAsString();
  // Automatic: 60 s plus 50 ms per ciphertext, four times a partial decryption's cost on one
  // core here (12.4 ms, docs/benchmarks.md), so three parties sharing two cores stay well inside.
  const double timeout_s = o.decrypt_timeout_s > 0 ? o.decrypt_timeout_s : 60 + 0.05 * count;
  auto contributed = [&](const Peer& p) {
    return std::count(rep.contributors.begin(), rep.contributors.end(), p.party) > 0;
  };
  std::vector<std::shared_ptr<Peer>> candidates;
  for (bool first : {true, false}) {  // contributors first: they are known to be responsive
    for (auto& p : ReadyPeers()) {
      if (contributed(*p) != first) continue;
      auto f = decrypt_failures.find(p->party);
      if (f != decrypt_failures.end() && static_cast<int>(f->second.size()) >= o.decrypt_strikes) {
        rep.excluded.push_back(p->party + ": not asked to decrypt (failed " +
                               std::to_string(f->second.size()) +
                               " times in this run, last: " + f->second.back() + ")");
        continue;
      }
      candidates.push_back(p);
    }
  }
  size_t next = 0;
  std::map<std::string, Reassembler> partials;
  std::map<std::string, Clock::time_point> due;  // per outstanding request
  std::vector<crypto::PartialDecryption> verified;
  auto ask_one = [&]() {
    while (next < candidates.size()) {
      auto& p = candidates[next++];
      if (SendPayload(*p, v1::DECRYPT_REQUEST, payload, a.round, a.nonce)) {
        partials[p->party] = Reassembler(v1::PARTIAL, count * width + 65536);
        due[p->party] = std::min(
            a.deadline,
            Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)));
        return true;
      }
    }
    return false;
  };
  for (int i = 0; i < o.threshold; ++i) ask_one();
  spdlog::info("round {}: {} uploads added; asked {} parties for partial decryptions", a.round, k,
               partials.size());
  // `strike`: the failure counts against the party for the rest of the run (not a disconnect).
  auto give_up = [&](Peer& p, const std::string& reason, bool strike) {
    rep.excluded.push_back(p.party + ": " + reason);
    spdlog::warn("round {}: {} excluded from decryption: {}", a.round, p.party, reason);
    if (strike) {
      auto& f = decrypt_failures[p.party];
      f.push_back(reason);
      if (static_cast<int>(f.size()) == o.decrypt_strikes) {
        spdlog::warn("federation: {} failed to decrypt {} times; it is not asked again in this run",
                     p.party, f.size());
      }
    }
    partials.erase(p.party);
    due.erase(p.party);
    ask_one();
  };
  const ExchangeText text{"disconnected during decryption", "refused to decrypt: ", nullptr};
  Event ev;
  while (static_cast<int>(verified.size()) < o.threshold && !partials.empty()) {
    auto first_due = std::min_element(due.begin(), due.end(),
                                      [](auto& x, auto& y) { return x.second < y.second; });
    if (!NextEvent(&ev, first_due->second)) {
      if (Stopping() || Clock::now() >= a.deadline) break;
      if (Clock::now() < first_due->second) continue;
      auto late = std::find_if(candidates.begin(), candidates.end(),
                               [&](auto& c) { return c->party == first_due->first; });
      give_up(**late, "no partial decryption within " + fmt::format("{:g}", timeout_s) + " s",
              true);
      continue;
    }
    Peer& p = *ev.peer;
    const v1::Chunk* chunk = ExchangeChunk(
        a, ev, partials.count(p.party) > 0, text,
        [&](Peer& q, const std::string& why) { give_up(q, why, why.rfind(text.failed, 0) == 0); });
    if (!chunk) continue;
    const std::string what = a.What(p, "partial decryption");
    Status st = partials[p.party].Add(*chunk, what);
    if (st.ok() && !partials[p.party].complete()) continue;
    v1::Partial pd;
    crypto::PartialDecryption part;
    if (st.ok() && !pd.ParseFromString(partials[p.party].Take()))
      st = InvalidArgument(what + ": not a Partial message");
    if (st.ok() && static_cast<int>(pd.index()) != p.index) {
      st = InvalidArgument(what + ": claims share index " + std::to_string(pd.index()) +
                           ", the party holds " + std::to_string(p.index));
    }
    if (st.ok() && pd.share_bytes() != width)
      st = InvalidArgument(what + ": shares of the wrong width");
    if (st.ok()) {
      auto shares = crypto::DecodeFixedWidth(pd.shares(), width, count, what);
      if (!shares.ok()) st = shares.status();
      if (st.ok()) {
        part.index = p.index;
        part.shares = std::move(*shares);
        part.proof = crypto::DecodeProof(pd.proof_e(), pd.proof_z());
        st = crypto::VerifyPartial(*o.public_key, acc, part, o.threads);
      }
    }
    if (!st.ok()) {
      Notify(p, v1::Notice::REJECTED, st.message(), a.round, a.nonce);
      give_up(p, st.message(), true);
      continue;
    }
    partials.erase(p.party);
    due.erase(p.party);
    rep.decryptors.push_back(p.party);
    verified.push_back(std::move(part));
  }
  if (Stopping()) return Cancelled("coordinator stopped");
  if (static_cast<int>(verified.size()) < o.threshold) {
    return RoundOutcome::Abandon("only " + std::to_string(verified.size()) +
                                 " verified partial decryptions; " + std::to_string(o.threshold) +
                                 " are needed");
  }
  ASSIGN_OR_RETURN(plaintexts, crypto::CombineVector(*o.public_key, verified, o.threads));
  return CheckSum(a, plaintexts);
}

// The decoded sum, if it passes the scheme's range check: a sum that fails it is never applied.
Result<RoundOutcome> Coordinator::Impl::CheckSum(RoundAttempt& a,
                                                 const std::vector<mpz_class>& plaintexts) {
  auto sum = scheme->Sum(plaintexts);
  if (!sum.ok()) {
    return RoundOutcome::Abandon(
        "the aggregate failed the range check (" + sum.status().message() +
        "): a contribution was not a clipped update; " +
        (o.secure_aggregation == SecureAggregation::kNone
             ? std::string("nothing was applied")
             : std::string("with encrypted uploads the coordinator cannot tell whose without "
                           "revealing honest updates; nothing was applied")));
  }
  a.sum = std::move(sum).value();
  a.rep->error_bound = scheme->ErrorBound() / scheme->total_weight();
  return RoundOutcome::Continue();
}

// Step 4. Noise (central DP), mean, server optimizer; the round's report.
Status Coordinator::Impl::ApplyUpdate(RoundAttempt& a) {
  RoundReport& rep = *a.rep;
  if (o.dp.noise_multiplier > 0) {
    AddGaussianNoise(&a.sum, o.dp.noise_multiplier * o.dp.clip_norm / a.members.size());
    ++dp_rounds;
    rep.epsilon = GaussianEpsilon(o.dp.noise_multiplier, dp_rounds, o.dp.delta);
  }
  const double wsum = scheme->total_weight();
  for (float& x : a.sum) x = static_cast<float>(x / wsum);
  RETURN_IF_ERROR(server->Apply(a.sum, &weights));
  rep.round = a.round;
  rep.train_loss = a.loss_sum / static_cast<double>(rep.contributors.size());
  rep.seconds = Seconds(a.start);
  for (auto& p : a.members) rep.max_party_bytes = std::max<int64_t>(rep.max_party_bytes, p->bytes);
  return Status::OK();
}

Result<RoundOutcome> Coordinator::Impl::RunRound(int64_t round, RoundReport* rep) {
  RoundAttempt a = BeginAttempt(round, rep);
  RETURN_IF_ERROR(SendTasks(a));
  for (auto step : {&Impl::CollectUploads, &Impl::DecryptAggregate}) {
    ASSIGN_OR_RETURN(RoundOutcome outcome, (this->*step)(a));
    if (outcome.abandoned) return outcome;
  }
  RETURN_IF_ERROR(ApplyUpdate(a));
  return RoundOutcome::Continue();
}

Status Coordinator::Impl::Persist(const RoundReport& rep) {
  nn::TensorFile f;
  auto vec = [](const std::vector<float>& v) {
    return torch::from_blob(const_cast<float*>(v.data()), {static_cast<int64_t>(v.size())},
                            torch::kFloat)
        .clone();
  };
  f.tensors.emplace_back("weights", vec(weights));
  if (!server->m().empty()) {
    f.tensors.emplace_back("server_m", vec(server->m()));
    f.tensors.emplace_back("server_v", vec(server->v()));
  }
  nlohmann::json r = {{"round", rep.round},
                      {"attempts", rep.attempts},
                      {"contributors", rep.contributors},
                      {"decryptors", rep.decryptors},
                      {"excluded", rep.excluded},
                      {"seconds", rep.seconds},
                      {"train_loss", rep.train_loss},
                      {"error_bound", rep.error_bound},
                      {"max_party_bytes", rep.max_party_bytes},
                      {"epsilon", rep.epsilon}};
  history.push_back(r);
  f.meta = {{"format", "ronghe.fed.round"},   {"round", rep.round}, {"dp_rounds", dp_rounds},
            {"model", model_config.ToJson()}, {"data", data_json},  {"history", history}};
  store::CheckpointRecord cp{rep.round, EncodeTensorFile(f), f.meta.dump()};
  std::vector<store::MetricRecord> metrics = {
      {rep.round, "fed", "train_loss", rep.train_loss},
      {rep.round, "fed", "contributors", static_cast<double>(rep.contributors.size())},
      {rep.round, "fed", "round_seconds", rep.seconds},
      {rep.round, "fed", "max_party_bytes", static_cast<double>(rep.max_party_bytes)},
      {rep.round, "fed", "error_bound", rep.error_bound}};
  if (o.dp.noise_multiplier > 0) metrics.push_back({rep.round, "fed", "epsilon", rep.epsilon});
  RETURN_IF_ERROR(store->SaveCheckpoint(job->id(), cp, metrics, o.keep_rounds));
  SetCompleted(rep.round);
  return Status::OK();
}

Status Coordinator::Impl::LoadCheckpoint() {
  ASSIGN_OR_RETURN(auto cp, store->LatestCheckpoint(job->id()));
  if (!cp) return Status::OK();  // crashed before the first round completed: start it again
  const std::string what =
      "run " + std::to_string(job->id()) + " checkpoint of round " + std::to_string(cp->step);
  ASSIGN_OR_RETURN(nn::TensorFile f, nn::DecodeTensorFile(cp->state, what));
  try {
    ASSIGN_OR_RETURN(model_config, nn::ModelConfig::FromJson(f.meta.at("model")));
    data_json = f.meta.at("data");
    history = f.meta.at("history");
    dp_rounds = f.meta.at("dp_rounds").get<int64_t>();
  } catch (const std::exception& e) {
    return DataLoss(what + ": " + e.what());
  }
  if (model_config.input_shape != o.schema.input_shape ||
      model_config.outputs != o.schema.outputs) {
    return FailedPrecondition(
        what + ": its model has input " + nlohmann::json(model_config.input_shape).dump() +
        " and " + std::to_string(model_config.outputs) + " outputs; the consortium's schema says " +
        o.schema.ToString() + " (start a new run with --new)");
  }
  ASSIGN_OR_RETURN(model, nn::Model::Create(model_config));
  ASSIGN_OR_RETURN(at::Tensor w, f.Get("weights"));
  weights.assign(w.data_ptr<float>(), w.data_ptr<float>() + w.numel());
  if (static_cast<int64_t>(weights.size()) != LayoutOf(model->NamedState()).size) {
    return DataLoss(what + ": weights do not fit the model");
  }
  ASSIGN_OR_RETURN(ServerOptimizer s,
                   ServerOptimizer::Create(o.server, static_cast<int64_t>(weights.size())));
  server = std::make_unique<ServerOptimizer>(std::move(s));
  if (!server->m().empty()) {
    ASSIGN_OR_RETURN(at::Tensor m, f.Get("server_m"));
    ASSIGN_OR_RETURN(at::Tensor v, f.Get("server_v"));
    if (m.numel() != static_cast<int64_t>(weights.size()) || v.numel() != m.numel())
      return DataLoss(what + ": optimizer state");
    std::copy(m.data_ptr<float>(), m.data_ptr<float>() + m.numel(), server->m().begin());
    std::copy(v.data_ptr<float>(), v.data_ptr<float>() + v.numel(), server->v().begin());
  }
  SetCompleted(cp->step);
  initialized = true;
  spdlog::info("federation: resuming run {} after round {}", job->id(), cp->step);
  return Status::OK();
}

Status Coordinator::Impl::WriteArtifact() {
  if (o.runs_dir.empty()) return Status::OK();
  artifact = o.runs_dir + "/" + std::to_string(job->id()) + "/model.rhm";
  auto state = model->NamedState();
  RETURN_IF_ERROR(Unflatten(weights, &state));
  nlohmann::json manifest = data_json.is_object() ? data_json : nlohmann::json::object();
  manifest["name"] = o.job_name;
  manifest["run_id"] = job->id();
  manifest["federation"] = {{"consortium", o.consortium},
                            {"rounds", Completed()},
                            {"strategy", o.server.name},
                            {"secure_aggregation", SecureAggregationName(o.secure_aggregation)},
                            {"threshold", o.threshold},
                            {"history", history}};
  RETURN_IF_ERROR(MakeDirs(std::filesystem::path(artifact).parent_path().string()));
  RETURN_IF_ERROR(nn::SaveArtifact(artifact, *model, manifest));
  ASSIGN_OR_RETURN(std::string bytes, ReadFile(artifact));
  return job->Artifact({"model", artifact, Sha256Hex(bytes), static_cast<int64_t>(bytes.size())});
}

Coordinator::Coordinator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Coordinator::~Coordinator() { Stop(); }
int64_t Coordinator::run_id() const { return impl_->job ? impl_->job->id() : 0; }
int64_t Coordinator::rounds_completed() const { return impl_->Completed(); }

Result<std::unique_ptr<Coordinator>> Coordinator::Create(CoordinatorOptions o,
                                                         store::RunStore* store,
                                                         int64_t resume_run) {
  if (o.consortium.empty() || o.parties.empty())
    return InvalidArgument("coordinator: consortium and parties are required");
  if (o.secure_aggregation != SecureAggregation::kNone && !o.public_key)
    return InvalidArgument(std::string("coordinator: ") +
                           SecureAggregationName(o.secure_aggregation) + " needs the public key");
  if (o.public_key && (o.public_key->parties() != static_cast<int>(o.parties.size()) ||
                       o.public_key->threshold() != o.threshold)) {
    return InvalidArgument("coordinator: the key is " + std::to_string(o.public_key->threshold()) +
                           " of " + std::to_string(o.public_key->parties()) +
                           ", the consortium says " + std::to_string(o.threshold) + " of " +
                           std::to_string(o.parties.size()));
  }
  if (o.schema.empty() || o.schema.outputs < 1) {
    return InvalidArgument(
        "coordinator: the consortium has no [schema] (input_shape, outputs, task) in "
        "consortium.toml; it fixes the model every party must fit (`ronghe fed participant` "
        "prints its data's schema when it differs)");
  }
  if (o.rounds < 1) return InvalidArgument("federation.rounds: must be >= 1");
  if (o.decrypt_strikes < 1) return InvalidArgument("federation.decrypt_strikes: must be >= 1");
  if (o.max_rejections < 1) return InvalidArgument("federation.max_rejections: must be >= 1");
  if (o.min_participants < 0 || o.min_participants > static_cast<int>(o.parties.size())) {
    return InvalidArgument(
        "federation.min_participants: must be between 0 and the number of parties");
  }
  if (o.dp.noise_multiplier < 0 || !(o.dp.clip_norm > 0) || !(o.dp.delta > 0 && o.dp.delta < 1)) {
    return InvalidArgument("federation.dp: noise_multiplier >= 0, clip_norm > 0, 0 < delta < 1");
  }
  RETURN_IF_ERROR(ServerOptimizer::Create(o.server, 0).status());
  auto impl = std::make_unique<Impl>();
  impl->o = std::move(o);
  impl->store = store;
  SchemeOptions& so = impl->scheme_options;
  so.mode = impl->o.secure_aggregation;
  so.precision_bits = impl->o.precision_bits;
  so.clip = impl->o.clip;
  so.max_summands = static_cast<int>(impl->o.parties.size());
  so.public_key = impl->o.public_key;
  // Refuses, naming the numbers, parameters that cannot decode exactly for the consortium.
  ASSIGN_OR_RETURN(impl->scheme, AggregationScheme::Create(so));
  nlohmann::json cfg = {{"consortium", impl->o.consortium},
                        {"parties", impl->o.parties},
                        {"threshold", impl->o.threshold},
                        {"rounds", impl->o.rounds},
                        {"strategy", impl->o.server.name},
                        {"secure_aggregation", SecureAggregationName(impl->o.secure_aggregation)},
                        {"model", impl->o.model.ToJson()},
                        {"local_epochs", impl->o.local.epochs()},
                        {"seed", impl->o.seed}};
  if (resume_run > 0) {
    ASSIGN_OR_RETURN(impl->job, store::Job::Resume(store, resume_run));
    RETURN_IF_ERROR(impl->LoadCheckpoint());
    impl->resumed = true;
  } else {
    ASSIGN_OR_RETURN(impl->job, store::Job::Start(store, "fed", impl->o.job_name, cfg.dump()));
  }
  if (!impl->initialized) RETURN_IF_ERROR(impl->InitModel());
  return std::unique_ptr<Coordinator>(new Coordinator(std::move(impl)));
}

void Coordinator::Serve(const std::string& party, Connection& conn) {
  Impl& s = *impl_;
  v1::Envelope hello;
  if (!conn.Recv(&hello)) {
    const std::string why = conn.CloseReason();
    if (!why.empty()) spdlog::warn("federation: closed a stream of {}: {}", party, why);
    return;
  }
  // Refusals happen before Welcome, so a refused party knows it is refused for good; what it sent
  // is quoted short and escaped.
  auto reject = [&](const std::string& why) {
    spdlog::warn("federation: refused {}: {}", party, why);
    v1::Envelope e;
    e.mutable_header()->set_consortium(s.o.consortium);
    e.mutable_notice()->set_code(v1::Notice::REJECTED);
    e.mutable_notice()->set_message(why);
    conn.Send(e);
  };
  if (!hello.has_hello()) return reject("the first message must be Hello");
  const v1::Hello& h = hello.hello();
  if (hello.header().consortium() != s.o.consortium) {
    return reject("Hello for consortium '" + Quote(hello.header().consortium()) + "', this is '" +
                  s.o.consortium + "'");
  }
  if (h.party() != party) {
    return reject("Hello names '" + Quote(h.party()) + "' but the certificate is '" + party + "'");
  }
  auto it = std::find(s.o.parties.begin(), s.o.parties.end(), party);
  if (it == s.o.parties.end()) return reject("'" + party + "' is not a party of " + s.o.consortium);
  if (s.o.public_key && h.key_fingerprint() != s.o.public_key->fingerprint()) {
    return reject("holds a share of key " + Quote(h.key_fingerprint()) +
                  ", the consortium key is " + s.o.public_key->fingerprint());
  }
  if (h.data_json().size() > (size_t{1} << 20))
    return reject("Hello's data description is over 1 MiB (" +
                  std::to_string(h.data_json().size()) + " bytes)");
  Schema theirs;
  theirs.input_shape.assign(h.input_shape().begin(), h.input_shape().end());
  theirs.outputs = h.outputs();
  theirs.task = Quote(h.task(), 16);
  if (!(theirs == s.o.schema)) {
    return reject(party + "'s data has " + theirs.ToString() + "; the consortium's schema is " +
                  s.o.schema.ToString());
  }
  auto peer = std::make_shared<Peer>();
  peer->party = party;
  peer->index = static_cast<int>(it - s.o.parties.begin()) + 1;
  peer->hello = h;
  {
    MutexLock lock(&peer->send_mu);
    peer->conn = &conn;
  }
  peer->last_recv_seq = hello.header().seq();
  peer->bytes += static_cast<int64_t>(hello.ByteSizeLong());
  int64_t next_round = 0;
  {
    MutexLock lock(&s.mu);
    if (s.stopping) return;
    auto old = s.peers.find(party);
    if (old != s.peers.end()) s.Drop(*old->second, "replaced by a new stream");
    peer->generation = s.next_generation++;
    s.peers[party] = peer;
    s.inbox.push_back({Event::kJoined, peer, {}});
    next_round = s.completed + 1;
    s.cv.NotifyAll();
  }
  v1::Envelope welcome;
  welcome.mutable_welcome()->set_index(peer->index);
  welcome.mutable_welcome()->set_next_round(next_round);
  s.SendTo(*peer, welcome, 0, "");
  v1::Envelope e;
  while (conn.Recv(&e)) {
    const int64_t n = static_cast<int64_t>(e.ByteSizeLong());
    peer->bytes += n;
    // A party that sends faster than the round thread handles its messages is cut off before it
    // can grow the coordinator's memory without bound.
    if ((peer->inbox_bytes += n) > static_cast<int64_t>(s.o.inbox_bytes_per_party)) {
      s.Drop(*peer, "sent more than " + std::to_string(s.o.inbox_bytes_per_party >> 20) +
                        " MiB faster than the coordinator handles it");
      break;
    }
    MutexLock lock(&s.mu);
    s.inbox.push_back({Event::kMessage, peer, std::move(e)});
    s.cv.NotifyAll();
    e = v1::Envelope();
  }
  {
    MutexLock lock(&peer->send_mu);
    if (peer->gone_reason.empty()) peer->gone_reason = conn.CloseReason();
  }
  {
    MutexLock lock(&s.mu);
    auto cur = s.peers.find(party);
    if (cur != s.peers.end() && cur->second == peer) s.peers.erase(cur);
    s.inbox.push_back({Event::kGone, peer, {}});
    s.cv.NotifyAll();
  }
  MutexLock lock(&peer->send_mu);
  peer->conn = nullptr;  // nobody sends on a connection the transport is about to destroy
  if (peer->gone_reason.empty()) {
    spdlog::info("federation: {} disconnected", party);
  } else {
    spdlog::warn("federation: {} disconnected: {}", party, peer->gone_reason);
  }
}

void Coordinator::Stop() {
  std::vector<std::shared_ptr<Peer>> all;
  {
    MutexLock lock(&impl_->mu);
    impl_->stopping = true;
    for (auto& [n, p] : impl_->peers) all.push_back(p);
    impl_->cv.NotifyAll();
  }
  for (auto& p : all) impl_->Drop(*p);
}

void SetTestHooks(Coordinator& coordinator, CoordinatorTestHooks hooks) {
  coordinator.impl_->hooks = std::move(hooks);
}

Result<CoordinatorResult> Coordinator::Run() {
  Impl& s = *impl_;
  CoordinatorResult result;
  result.run_id = s.job->id();
  result.resumed = s.resumed;
  auto body = [&]() -> Status {
    for (int64_t round = s.Completed() + 1; round <= s.o.rounds; ++round) {
      RoundReport rep;
      for (int attempt = 1;; ++attempt) {
        RETURN_IF_ERROR(s.WaitForParticipants(round));
        rep = RoundReport();
        rep.attempts = attempt;
        ASSIGN_OR_RETURN(RoundOutcome outcome, s.RunRound(round, &rep));
        if (!outcome.abandoned) break;
        const std::string& why = outcome.reason;
        spdlog::warn("round {} attempt {} abandoned: {}{}", round, attempt, why,
                     attempt < s.o.round_attempts ? "; retrying" : "");
        for (auto& p : s.ReadyPeers()) s.Notify(*p, v1::Notice::ROUND_ABANDONED, why, round, "");
        if (attempt >= s.o.round_attempts) {
          return Unavailable("round " + std::to_string(round) + " failed " +
                             std::to_string(attempt) + " times (last: " + why +
                             "); the model of round " + std::to_string(s.Completed()) +
                             " is kept; restart the coordinator to resume");
        }
        s.SleepProcessing(s.o.retry_wait_s, round);
      }
      RETURN_IF_ERROR(s.Persist(rep));
      spdlog::info(
          "round {}/{} done in {:.2f} s: {} contributors [{}], decrypted by [{}], loss {:.4f}{}",
          round, s.o.rounds, rep.seconds, rep.contributors.size(),
          fmt::join(rep.contributors, ", "), fmt::join(rep.decryptors, ", "), rep.train_loss,
          rep.excluded.empty() ? "" : fmt::format(", excluded: {}", fmt::join(rep.excluded, "; ")));
      result.rounds.push_back(rep);
      result.epsilon = rep.epsilon;
      if (s.hooks.after_round) s.hooks.after_round(round);
    }
    for (auto& p : s.ReadyPeers())
      s.Notify(*p, v1::Notice::FINISHED, "training finished", s.Completed(), "");
    return s.WriteArtifact();
  };
  Status st = body();
  Status fin = s.job->Finish(st);
  RETURN_IF_ERROR(st);
  RETURN_IF_ERROR(fin);
  result.rounds_completed = s.Completed();
  result.weights = s.weights;
  result.artifact = s.artifact;
  return result;
}

}  // namespace ronghe::fed
