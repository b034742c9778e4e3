// Encoding of the protocol's payloads (fed.proto): fixed-width big integers, float vectors,
// model state, and the chunking that keeps every gRPC message small whatever the model size.
#pragma once

#include <ATen/core/Tensor.h>
#include <gmpxx.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "ronghe/base/status.h"
#include "ronghe/fed/aggregation.h"  // SecureAggregation
#include "ronghe/fed/fed.pb.h"

namespace ronghe::fed {

// Default chunk size: 1 MiB, a quarter of gRPC's default 4 MiB receive limit.
constexpr size_t kDefaultChunkBytes = 1 << 20;

std::string EncodeFloats(const std::vector<float>& values);
Result<std::vector<float>> DecodeFloats(const std::string& bytes, size_t expected_count,
                                        const std::string& what);

// The model's float tensors, in NamedState order, flattened into one vector (integer buffers
// such as batch-norm counters are not aggregated).
struct FlatLayout {
  std::vector<std::string> names;
  std::vector<std::vector<int64_t>> shapes;
  std::vector<int64_t> offsets;  // into the flat vector
  int64_t size = 0;
};
FlatLayout LayoutOf(const std::vector<std::pair<std::string, at::Tensor>>& state);
std::vector<float> Flatten(const std::vector<std::pair<std::string, at::Tensor>>& state);
// Writes `flat` back into the float tensors of `state` (in place).
Status Unflatten(const std::vector<float>& flat,
                 std::vector<std::pair<std::string, at::Tensor>>* state);

// Model state <-> protocol tensors (float32 only).
void StateToProto(const std::vector<std::pair<std::string, at::Tensor>>& state,
                  google::protobuf::RepeatedPtrField<v1::Tensor>* out);
Result<std::vector<std::pair<std::string, at::Tensor>>> StateFromProto(
    const google::protobuf::RepeatedPtrField<v1::Tensor>& tensors, const std::string& what);

// Cuts a serialised payload into chunks of at most `chunk_bytes`.
std::vector<v1::Chunk> SplitPayload(v1::PayloadKind kind, const std::string& payload,
                                    size_t chunk_bytes);

// Reassembles one payload from its chunks, in order, refusing anything out of order, of another
// kind, or larger than `max_bytes`.
class Reassembler {
 public:
  Reassembler() = default;
  Reassembler(v1::PayloadKind kind, size_t max_bytes) : kind_(kind), max_bytes_(max_bytes) {}
  // Errors name `what`. After an error the reassembler must be discarded.
  Status Add(const v1::Chunk& chunk, const std::string& what);
  bool complete() const { return count_ > 0 && next_ == count_; }
  bool started() const { return next_ > 0; }
  std::string Take() { return std::move(data_); }

 private:
  v1::PayloadKind kind_ = v1::PAYLOAD_UNSPECIFIED;
  size_t max_bytes_ = 0;
  uint32_t count_ = 0, next_ = 0;
  std::string data_;
};

// 16 bytes from the OS CSPRNG.
std::string NewNonce();
std::string Hex(const std::string& bytes);
// What a log line or a notice may quote of a string a peer sent: at most `max_chars` bytes, each
// non-printable byte as \xNN, and "...(N bytes)" when cut, so a peer can neither flood the logs
// nor write control characters into them.
std::string Quote(const std::string& untrusted, size_t max_chars = 64);

}  // namespace ronghe::fed
