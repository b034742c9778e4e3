// A consortium: its id, its parties, the decryption threshold and where the coordinator listens;
// and `fed init`, which turns that into one bundle per party and one for the coordinator
// (certificates for mutual TLS, the threshold Paillier key ceremony, the config).
//
//   OUT/ca/ca.pem, ca-key.pem (0600)      the consortium CA; keep the key offline
//   OUT/coordinator/  ca.pem cert.pem key.pem(0600) public.json identity.json consortium.toml
//   OUT/<party>/      ca.pem cert.pem key.pem(0600) public.json share.json(0600) identity.json
//                     consortium.toml
#pragma once

#include <string>
#include <vector>

#include "ronghe/base/config.h"
#include "ronghe/base/status.h"

namespace ronghe::fed {

// What every party's data must look like, fixed when the consortium is created (the [schema] of
// consortium.toml, copied into every bundle): the model's input and output shapes and the task. The
// coordinator builds the model from it and refuses a Hello that differs, so no party, first or
// not, can choose the consortium's model.
struct Schema {
  std::vector<int64_t> input_shape;  // one example's shape, e.g. [98] for a tabular row
  int64_t outputs = 0;               // model outputs: 1 (binary), classes, or regression targets
  std::string task;                  // "binary" | "multiclass" | "regression"
  bool empty() const { return input_shape.empty(); }
  std::string ToString() const;  // "input_shape [98], outputs 1, task binary"
  bool operator==(const Schema& o) const {
    return input_shape == o.input_shape && outputs == o.outputs && task == o.task;
  }
};

struct ConsortiumOptions {
  std::string id;                                       // required: [A-Za-z0-9._-]{1,64}
  std::vector<std::string> parties;                     // required: party names, in index order
  int threshold = 3;                                    // Default: 3. Parties needed to decrypt.
  int key_bits = 2048;                                  // Default: 2048. Or 3072.
  std::string coordinator_address = "127.0.0.1:50051";  // Default. host:port participants dial.
  std::vector<std::string> coordinator_hosts = {"localhost",
                                                "127.0.0.1"};  // Default. Server cert SANs.
  Schema schema;  // [schema]; optional for `fed init`, required to run rounds
};

// Reads consortium.*, coordinator.* and schema.* keys.
Status ParseConsortiumOptions(Config& cfg, ConsortiumOptions* out);

// Writes every bundle under `out_dir`, which must not exist or be empty. `config_text` (the
// consortium file as written) is copied into each bundle.
Status InitConsortium(const ConsortiumOptions& options, const std::string& config_text,
                      const std::string& out_dir);

}  // namespace ronghe::fed
