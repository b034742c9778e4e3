#include "ronghe/edge/format.h"

#include <cstring>

#include "ronghe/base/hash.h"

namespace ronghe::edge {

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

namespace {
constexpr size_t kAlign = 64;
size_t Pad(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
int64_t ElementBytes(const std::string& dtype) {
  return dtype == "f32" ? 4 : dtype == "i8" ? 1 : 0;
}
}  // namespace

Tensor F32Tensor(std::vector<int64_t> shape, const float* data) {
  Tensor t;
  t.dtype = "f32";
  t.shape = std::move(shape);
  t.data.assign(reinterpret_cast<const char*>(data), static_cast<size_t>(t.numel()) * 4);
  return t;
}

Result<std::string> Serialize(const Artifact& a) {
  nlohmann::json header = a.header;
  header["format"] = "ronghe.edge";
  header["format_version"] = 1;
  nlohmann::json list = nlohmann::json::array();
  size_t offset = 0;
  for (const auto& [name, t] : a.tensors) {
    int64_t eb = ElementBytes(t.dtype);
    if (eb == 0) return InvalidArgument("edge tensor '" + name + "': unknown dtype " + t.dtype);
    if (static_cast<int64_t>(t.data.size()) != t.numel() * eb)
      return InvalidArgument("edge tensor '" + name + "': data does not match its shape");
    list.push_back({{"name", name},
                    {"dtype", t.dtype},
                    {"shape", t.shape},
                    {"offset", offset},
                    {"bytes", t.data.size()}});
    offset = Pad(offset + t.data.size());
  }
  header["tensors"] = list;
  const std::string h = header.dump();
  std::string out(kMagic, sizeof kMagic);
  const auto len = static_cast<uint32_t>(h.size());
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((len >> (8 * i)) & 0xff));
  out += h;
  out.resize(Pad(out.size()), '\0');
  const size_t blob = out.size();
  out.resize(blob + offset, '\0');
  size_t at = 0;
  for (const auto& [name, t] : a.tensors) {
    std::memcpy(&out[blob + at], t.data.data(), t.data.size());
    at = Pad(at + t.data.size());
  }
  out += Sha256(out);
  return out;
}

Result<Artifact> Parse(const std::string& bytes, const std::string& source) {
  if (bytes.size() < sizeof kMagic + 4 + 32 || std::memcmp(bytes.data(), kMagic, 8) != 0) {
    return DataLoss(source + ": not a ronghe edge artifact (bad magic or too short: " +
                    std::to_string(bytes.size()) + " bytes)");
  }
  const std::string_view body(bytes.data(), bytes.size() - 32);
  if (Sha256(body) != bytes.substr(bytes.size() - 32)) {
    return DataLoss(source +
                    ": digest mismatch: the file is truncated or altered (its trailing SHA-256 "
                    "does not match its contents)");
  }
  uint32_t len = 0;
  for (int i = 0; i < 4; ++i)
    len |= static_cast<uint32_t>(static_cast<uint8_t>(bytes[8 + i])) << (8 * i);
  if (12 + static_cast<size_t>(len) > body.size())
    return DataLoss(source + ": header length " + std::to_string(len) + " runs past the file");
  Artifact a;
  a.header = nlohmann::json::parse(bytes.substr(12, len), nullptr, false);
  if (a.header.is_discarded() || !a.header.is_object())
    return DataLoss(source + ": the header is not a JSON object");
  if (a.header.value("format", "") != "ronghe.edge" || a.header.value("format_version", 0) != 1) {
    return DataLoss(source + ": unsupported format (need ronghe.edge version 1)");
  }
  const size_t blob = Pad(12 + len);
  if (blob > body.size()) return DataLoss(source + ": no tensor area");
  const size_t area = body.size() - blob;
  const auto& list = a.header.value("tensors", nlohmann::json::array());
  if (!list.is_array()) return DataLoss(source + ": header.tensors is not a list");
  for (const auto& e : list) {
    try {
      Tensor t;
      const std::string name = e.at("name").get<std::string>();
      t.dtype = e.at("dtype").get<std::string>();
      t.shape = e.at("shape").get<std::vector<int64_t>>();
      const auto offset = e.at("offset").get<uint64_t>();
      const auto n = e.at("bytes").get<uint64_t>();
      const int64_t eb = ElementBytes(t.dtype);
      if (eb == 0) return DataLoss(source + ": tensor '" + name + "': unknown dtype " + t.dtype);
      for (int64_t d : t.shape)
        if (d < 0 || d > (int64_t{1} << 31))
          return DataLoss(source + ": tensor '" + name + "': bad shape");
      if (static_cast<uint64_t>(t.numel() * eb) != n)
        return DataLoss(source + ": tensor '" + name + "': " + std::to_string(n) +
                        " bytes do not fit its shape");
      if (offset > area || n > area - offset)
        return DataLoss(source + ": tensor '" + name + "' lies outside the file");
      t.data = bytes.substr(blob + offset, n);
      if (!a.tensors.emplace(name, std::move(t)).second)
        return DataLoss(source + ": tensor '" + name + "' is listed twice");
    } catch (const nlohmann::json::exception& ex) {
      return DataLoss(source + ": malformed tensor entry: " + ex.what());
    }
  }
  return a;
}

}  // namespace ronghe::edge
