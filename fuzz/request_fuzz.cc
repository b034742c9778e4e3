// libFuzzer target: an inference request body as it arrives over HTTP, decoded (KServe v2 JSON)
// and, when it decodes, turned into model batches by two signatures: a table model taking raw
// records (JSON inside BYTES elements) and an image model taking raw pixels.
#include <cstddef>
#include <cstdint>
#include <string_view>

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
  auto r = ronghe::serve::DecodeInferRequest(
      std::string_view(reinterpret_cast<const char*>(data), size), limits);
  if (!r.ok()) return 0;
  (void)Table().ToBatch(*r);
  (void)Image().ToBatch(*r);
  return 0;
}
