#include "ronghe/nn/tensor_file.h"

#include <torch/torch.h>

#include <cstring>
#include <limits>

#include "ronghe/base/file.h"
#include "ronghe/base/hash.h"

namespace ronghe::nn {

namespace {

constexpr char kMagic[8] = {'R', 'O', 'N', 'G', 'H', 'E', '\0', 'T'};
constexpr uint32_t kVersion = 1;
constexpr size_t kFixed = 24;
constexpr size_t kDigest = 32;
constexpr size_t kAlign = 64;

struct DtypeInfo {
  const char* name;
  at::ScalarType type;
};
const DtypeInfo kDtypes[] = {
    {"float32", at::kFloat}, {"float64", at::kDouble}, {"bfloat16", at::kBFloat16},
    {"float16", at::kHalf},  {"int64", at::kLong},     {"int32", at::kInt},
    {"uint8", at::kByte},    {"int8", at::kChar},      {"bool", at::kBool},
};

Result<at::ScalarType> DtypeFromName(const std::string& n) {
  for (const auto& d : kDtypes)
    if (n == d.name) return d.type;
  return DataLoss("unknown dtype '" + n + "'");
}
Result<std::string> DtypeName(at::ScalarType t) {
  for (const auto& d : kDtypes)
    if (t == d.type) return std::string(d.name);
  return InvalidArgument(std::string("dtype ") + c10::toString(t) + " cannot be stored");
}

void PutLe(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t GetLe(const std::string& s, size_t off, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t(static_cast<unsigned char>(s[off + i])) << (8 * i);
  return v;
}
size_t AlignUp(size_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

}  // namespace

Result<at::Tensor> TensorFile::Get(const std::string& name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return t;
  return DataLoss("no tensor '" + name + "'");
}

std::string EncodeTensorFile(const TensorFile& file) {
  nlohmann::json header;
  header["meta"] = file.meta;
  header["tensors"] = nlohmann::json::array();
  std::vector<at::Tensor> contiguous;
  size_t offset = 0;
  for (const auto& [name, t] : file.tensors) {
    at::Tensor c = t.detach().to(torch::kCPU).contiguous();
    size_t nbytes = c.numel() * c.element_size();
    auto dtype = DtypeName(c.scalar_type());
    header["tensors"].push_back({{"name", name},
                                 {"dtype", dtype.ok() ? *dtype : "invalid"},
                                 {"shape", c.sizes().vec()},
                                 {"offset", offset},
                                 {"nbytes", nbytes}});
    offset = AlignUp(offset + nbytes);
    contiguous.push_back(c);
  }
  std::string h = header.dump();
  std::string out(kMagic, sizeof kMagic);
  PutLe(out, kVersion, 4);
  PutLe(out, 0, 4);
  PutLe(out, h.size(), 8);
  out += h;
  out.resize(AlignUp(out.size()), '\0');
  size_t data_start = out.size();
  out.resize(data_start + offset, '\0');
  for (size_t i = 0; i < contiguous.size(); ++i) {
    size_t off = header["tensors"][i]["offset"].get<size_t>();
    size_t nbytes = header["tensors"][i]["nbytes"].get<size_t>();
    if (nbytes) std::memcpy(&out[data_start + off], contiguous[i].data_ptr(), nbytes);
  }
  out += Sha256(out);
  return out;
}

Result<TensorFile> DecodeTensorFile(const std::string& bytes, const std::string& source) {
  auto bad = [&](const std::string& why) { return DataLoss(source + ": " + why); };
  if (bytes.size() < kFixed + kDigest)
    return bad("truncated (too short to be a ronghe tensor file)");
  if (std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0)
    return bad("not a ronghe tensor file (bad magic)");
  uint32_t version = static_cast<uint32_t>(GetLe(bytes, 8, 4));
  if (version != kVersion) {
    return bad("format version " + std::to_string(version) +
               " is not supported (this ronghe reads " + std::to_string(kVersion) + ")");
  }
  size_t body = bytes.size() - kDigest;
  if (Sha256(std::string_view(bytes.data(), body)) != bytes.substr(body)) {
    return bad("checksum mismatch: the file is truncated, corrupt or was modified");
  }
  uint64_t hlen = GetLe(bytes, 16, 8);
  if (hlen > body - kFixed) return bad("header length exceeds the file");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes.begin() + kFixed, bytes.begin() + kFixed + hlen);
  } catch (const nlohmann::json::exception& e) {
    return bad(std::string("header is not valid JSON: ") + e.what());
  }
  size_t data_start = AlignUp(kFixed + hlen);
  if (data_start > body) return bad("data region starts past the end of the file");
  size_t data_len = body - data_start;
  TensorFile file;
  try {
    file.meta = header.at("meta");
    for (const auto& e : header.at("tensors")) {
      std::string name = e.at("name").get<std::string>();
      ASSIGN_OR_RETURN(at::ScalarType type, DtypeFromName(e.at("dtype").get<std::string>()));
      std::vector<int64_t> shape = e.at("shape").get<std::vector<int64_t>>();
      uint64_t offset = e.at("offset").get<uint64_t>();
      uint64_t nbytes = e.at("nbytes").get<uint64_t>();
      uint64_t numel = 1;
      for (int64_t d : shape) {
        if (d < 0 || (d > 0 && numel > std::numeric_limits<uint64_t>::max() / uint64_t(d))) {
          return bad("tensor '" + name + "' has an invalid shape");
        }
        numel *= uint64_t(d);
      }
      uint64_t elem = c10::elementSize(type);
      if (numel > std::numeric_limits<uint64_t>::max() / elem || numel * elem != nbytes) {
        return bad("tensor '" + name + "': shape and byte count disagree");
      }
      if (offset > data_len || nbytes > data_len - offset) {
        return bad("tensor '" + name + "' lies outside the file");
      }
      at::Tensor t = torch::empty(shape, torch::TensorOptions().dtype(type));
      if (nbytes) std::memcpy(t.data_ptr(), bytes.data() + data_start + offset, nbytes);
      file.tensors.emplace_back(std::move(name), std::move(t));
    }
  } catch (const nlohmann::json::exception& e) {
    return bad(std::string("malformed header: ") + e.what());
  } catch (const c10::Error& e) {
    return bad(std::string("cannot build tensor: ") + e.what_without_backtrace());
  }
  return file;
}

Status WriteTensorFile(const std::string& path, const TensorFile& file, mode_t mode) {
  for (const auto& [name, t] : file.tensors) {
    auto dt = DtypeName(t.scalar_type());
    if (!dt.ok()) return dt.status().WithContext(path + ": tensor '" + name + "'");
  }
  return WriteFileAtomic(path, EncodeTensorFile(file), mode);
}

Result<TensorFile> ReadTensorFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  return DecodeTensorFile(bytes, path);
}

}  // namespace ronghe::nn
