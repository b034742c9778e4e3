#include "ronghe/fed/wire.h"

#include <openssl/rand.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstring>

namespace ronghe::fed {

std::string EncodeFloats(const std::vector<float>& values) {
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "wire floats are little-endian");
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
}

Result<std::vector<float>> DecodeFloats(const std::string& bytes, size_t expected_count,
                                        const std::string& what) {
  if (bytes.size() != expected_count * sizeof(float)) {
    return InvalidArgument(what + ": " + std::to_string(bytes.size()) + " bytes, expected " +
                           std::to_string(expected_count) + " float32 values");
  }
  std::vector<float> out(expected_count);
  if (expected_count) std::memcpy(out.data(), bytes.data(), bytes.size());
  for (size_t i = 0; i < expected_count; ++i) {
    if (!std::isfinite(out[i]))
      return InvalidArgument(what + ": value " + std::to_string(i) + " is not finite");
  }
  return out;
}

FlatLayout LayoutOf(const std::vector<std::pair<std::string, at::Tensor>>& state) {
  FlatLayout l;
  for (const auto& [name, t] : state) {
    if (t.scalar_type() != at::kFloat) continue;
    l.names.push_back(name);
    l.shapes.push_back(t.sizes().vec());
    l.offsets.push_back(l.size);
    l.size += t.numel();
  }
  return l;
}

std::vector<float> Flatten(const std::vector<std::pair<std::string, at::Tensor>>& state) {
  std::vector<float> out;
  for (const auto& [name, t] : state) {
    if (t.scalar_type() != at::kFloat) continue;
    at::Tensor c = t.detach().contiguous();
    const float* p = c.data_ptr<float>();
    out.insert(out.end(), p, p + c.numel());
  }
  return out;
}

Status Unflatten(const std::vector<float>& flat,
                 std::vector<std::pair<std::string, at::Tensor>>* state) {
  size_t at = 0;
  torch::NoGradGuard no_grad;
  for (auto& [name, t] : *state) {
    if (t.scalar_type() != at::kFloat) continue;
    size_t n = static_cast<size_t>(t.numel());
    if (at + n > flat.size())
      return InvalidArgument("model update is shorter than the model (" + name + ")");
    at::Tensor src =
        torch::from_blob(const_cast<float*>(flat.data() + at), t.sizes(), torch::kFloat);
    t.copy_(src);
    at += n;
  }
  if (at != flat.size()) return InvalidArgument("model update is longer than the model");
  return Status::OK();
}

void StateToProto(const std::vector<std::pair<std::string, at::Tensor>>& state,
                  google::protobuf::RepeatedPtrField<v1::Tensor>* out) {
  out->Clear();
  for (const auto& [name, t] : state) {
    if (t.scalar_type() != at::kFloat) continue;
    at::Tensor c = t.detach().contiguous();
    v1::Tensor* pt = out->Add();
    pt->set_name(name);
    for (int64_t d : c.sizes()) pt->add_shape(d);
    pt->set_data(std::string(static_cast<const char*>(c.data_ptr()), c.numel() * sizeof(float)));
  }
}

Result<std::vector<std::pair<std::string, at::Tensor>>> StateFromProto(
    const google::protobuf::RepeatedPtrField<v1::Tensor>& tensors, const std::string& what) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& pt : tensors) {
    int64_t numel = 1;
    std::vector<int64_t> shape;
    for (int64_t d : pt.shape()) {
      if (d < 0 || d > (int64_t{1} << 32))
        return InvalidArgument(what + ": tensor " + pt.name() + " has a bad shape");
      numel *= d;
      if (numel > (int64_t{1} << 32))
        return InvalidArgument(what + ": tensor " + pt.name() + " is too large");
      shape.push_back(d);
    }
    if (static_cast<int64_t>(pt.data().size()) != numel * 4) {
      return InvalidArgument(what + ": tensor " + pt.name() + " holds " +
                             std::to_string(pt.data().size()) + " bytes for " +
                             std::to_string(numel) + " float32 values");
    }
    at::Tensor t = torch::empty(shape, torch::kFloat);
    if (numel) std::memcpy(t.data_ptr(), pt.data().data(), pt.data().size());
    out.emplace_back(pt.name(), t);
  }
  return out;
}

std::vector<v1::Chunk> SplitPayload(v1::PayloadKind kind, const std::string& payload,
                                    size_t chunk_bytes) {
  if (chunk_bytes == 0) chunk_bytes = kDefaultChunkBytes;
  uint32_t count =
      static_cast<uint32_t>(std::max<size_t>(1, (payload.size() + chunk_bytes - 1) / chunk_bytes));
  std::vector<v1::Chunk> out(count);
  for (uint32_t i = 0; i < count; ++i) {
    out[i].set_kind(kind);
    out[i].set_index(i);
    out[i].set_count(count);
    size_t begin = static_cast<size_t>(i) * chunk_bytes;
    if (begin < payload.size()) out[i].set_data(payload.substr(begin, chunk_bytes));
  }
  return out;
}

Status Reassembler::Add(const v1::Chunk& c, const std::string& what) {
  if (c.kind() != kind_) {
    return InvalidArgument(what + ": chunk of kind " + v1::PayloadKind_Name(c.kind()) +
                           ", expected " + v1::PayloadKind_Name(kind_));
  }
  if (c.count() == 0) return InvalidArgument(what + ": chunk count is 0");
  if (next_ == 0) {
    count_ = c.count();
    // Even empty chunks cost a message: refuse a declared count no real payload needs.
    if (count_ > max_bytes_ / 1024 + 16) {
      return InvalidArgument(what + ": " + std::to_string(count_) +
                             " chunks declared for at most " + std::to_string(max_bytes_) +
                             " bytes");
    }
  }
  if (c.count() != count_ || c.index() != next_) {
    return InvalidArgument(what + ": chunk " + std::to_string(c.index()) + "/" +
                           std::to_string(c.count()) + " out of order (expected " +
                           std::to_string(next_) + "/" + std::to_string(count_) + ")");
  }
  if (data_.size() + c.data().size() > max_bytes_) {
    return InvalidArgument(what + ": payload exceeds " + std::to_string(max_bytes_) + " bytes");
  }
  data_ += c.data();
  ++next_;
  return Status::OK();
}

std::string NewNonce() {
  std::string n(16, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(n.data()), 16) != 1)
    std::abort();  // no CSPRNG: never continue
  return n;
}

std::string Hex(const std::string& bytes) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += d[c >> 4];
    out += d[c & 15];
  }
  return out;
}

std::string Quote(const std::string& s, size_t max_chars) {
  static const char* d = "0123456789abcdef";
  std::string out;
  const size_t n = std::min(s.size(), max_chars);
  for (size_t i = 0; i < n; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += d[c >> 4];
      out += d[c & 15];
    }
  }
  if (n < s.size()) out += "...(" + std::to_string(s.size()) + " bytes)";
  return out;
}

}  // namespace ronghe::fed
