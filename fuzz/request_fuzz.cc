// libFuzzer target: an inference request body as it arrives over HTTP, decoded (KServe v2 JSON,
// or, when the first byte is odd, the binary tensor extension with the next two bytes as the
// Inference-Header-Content-Length) and, when it decodes, turned into model batches by two
// signatures: a table model taking raw
// records (JSON inside BYTES elements) and an image model taking raw pixels.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "ronghe/serve/kserve.h"
#include "ronghe/serve/signature.h"

namespace {

const ronghe::serve::Signature& Table() {
  static auto* s = new ronghe::serve::Signature(
      std::move(ronghe::serve::Signature::FromManifest(
                    {{"task", "binary"},
                     {"classes", {"good", "bad"}},
                     {"model", {{"input_shape", {5}}, {"outputs", 1}}},
                     {"preprocessing",
                      {{"kind", "table"},
                       {"label", "Class"},
                       {"classes", {"good", "bad"}},
                       {"missing", {"", "NA"}},
                       {"numeric", {{{"name", "amount"}, {"mean", 10.0}, {"std", 2.0}}}},
                       {"categorical", {{{"name", "term"}, {"values", {"t36", "t60", "t72"}}}}}}}}))
          .value());
  return *s;
}

const ronghe::serve::Signature& Image() {
  static auto* s = new ronghe::serve::Signature(
      std::move(ronghe::serve::Signature::FromManifest(
                    {{"task", "multiclass"},
                     {"model", {{"input_shape", {1, 4, 4}}, {"outputs", 3}}},
                     {"preprocessing",
                      {{"kind", "image"}, {"mean", 0.3}, {"std", 0.4}, {"scale", 1.0 / 255}}}}))
          .value());
  return *s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ronghe::serve::DecodeLimits limits;
  limits.max_elements = 1 << 16;  // keeps each run fast; the checks are the same at any limit
  std::string_view body(reinterpret_cast<const char*>(data), size);
  size_t header_length = 0;
  if (size >= 3 && (data[0] & 1)) {
    header_length = data[1] | (size_t{data[2]} << 8);
    body.remove_prefix(3);
  }
  auto r = ronghe::serve::DecodeInferRequest(body, limits, header_length);
  if (!r.ok()) return 0;
  (void)Table().ToBatch(*r);
  (void)Image().ToBatch(*r);
  size_t out_header = 0;
  std::vector<ronghe::serve::InferTensor> echo = r->inputs;
  std::string response =
      ronghe::serve::EncodeInferResponse("m", "1", *r, echo, nlohmann::json::object(), &out_header);
  auto back = ronghe::serve::DecodeInferResponse(response, out_header);
  if (!back.ok() || back->size() != echo.size()) __builtin_trap();  // what we encode, we read
  for (size_t i = 0; i < echo.size(); ++i) {
    if ((*back)[i].data != echo[i].data) __builtin_trap();
    // JSON text cannot carry arbitrary bytes (they are replaced); the binary form carries all.
    if (r->BinaryOutput(echo[i].name) && (*back)[i].bytes != echo[i].bytes) __builtin_trap();
  }
  return 0;
}
