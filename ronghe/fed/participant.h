// A participant: dials the coordinator (with backoff, for as long as it takes), trains the
// global model on its own data each round, uploads its encrypted update, and partially decrypts
// the aggregate when asked. Its data and plaintext update never leave this object: the upload
// holds ciphertexts only ("paillier") and nothing here logs update values.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "ronghe/base/status.h"
#include "ronghe/crypto/threshold.h"
#include "ronghe/data/source.h"
#include "ronghe/fed/transport.h"

namespace ronghe::fed {

struct ParticipantOptions {
  std::string consortium;  // required
  std::string party;       // required: this party's name (its certificate's CN)
  std::shared_ptr<const crypto::ThresholdPublicKey> public_key;  // required for "paillier"
  crypto::KeyShare share;                                        // this party's key share (secret)
  const data::LoadedData* data = nullptr;   // required: `train` is this party's training data
  std::string data_json;                    // DataJson(): the schema announced in Hello
  int threads = 0;                          // Default: 0 = all cores (encryption, decryption).
  size_t chunk_bytes = kDefaultChunkBytes;  // Default: 1 MiB.
  double backoff_initial_s = 0.2;           // Default: 0.2 s before the first reconnect.
  double backoff_max_s = 5;                 // Default: 5 s at most between reconnects.
  double give_up_after_s = 0;  // Default: 0 = never stop trying to reach the coordinator.
  // Fault drills (demo and tests): on receiving this round's task, die. With `crash_process`
  // the process kills itself (SIGKILL); otherwise the connection is dropped and Run() returns.
  int64_t crash_at_round = 0;
  bool crash_process = true;
};

struct ParticipantTestHooks;  // testing.h

using Dialer = std::function<Result<std::unique_ptr<Connection>>()>;

class Participant {
 public:
  explicit Participant(ParticipantOptions options);
  ~Participant();
  // Serves rounds until the coordinator says training is finished (OK), Stop() (Cancelled), a
  // crash drill (Cancelled), or give_up_after_s without reaching the coordinator (Unavailable).
  Status Run(const Dialer& dial);
  // Thread-safe; ends Run() at the next opportunity.
  void Stop();

  int64_t rounds_trained() const;
  int64_t sessions() const;  // connections made (1 + reconnects)

  struct Impl;

 private:
  friend void SetTestHooks(Participant& participant, ParticipantTestHooks hooks);
  std::unique_ptr<Impl> impl_;
};

// The data JSON a participant announces (task, classes, data options, preprocessing): what the
// coordinator writes into the federated model's manifest so `ronghe eval` can rebuild inputs.
std::string DataJson(const data::LoadedData& data, const data::DataOptions& options);

}  // namespace ronghe::fed
