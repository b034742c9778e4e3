#include "ronghe/serve/kserve.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

namespace ronghe::serve {
namespace {

TEST(KserveTest, DecodesFlatAndNestedData) {
  auto r = DecodeInferRequest(R"({"id":"a1","parameters":{"priority":1},
    "inputs":[{"name":"input","shape":[2,3],"datatype":"FP32","data":[[1,2,3],[4,5,6.5]]}],
    "outputs":[{"name":"probabilities"}]})");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->id, "a1");
  EXPECT_EQ(r->parameters["priority"], 1);
  ASSERT_EQ(r->inputs.size(), 1u);
  const InferTensor& t = r->inputs[0];
  EXPECT_EQ(t.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(t.tensor.scalar_type(), at::kFloat);
  EXPECT_FLOAT_EQ(t.tensor[1][2].item<float>(), 6.5f);
  EXPECT_EQ(r->outputs, (std::vector<std::string>{"probabilities"}));

  auto flat = DecodeInferRequest(
      R"({"inputs":[{"name":"pixels","shape":[1,2,2],"datatype":"UINT8","data":[0,1,254,255]}]})");
  ASSERT_TRUE(flat.ok()) << flat.status().message();
  EXPECT_EQ(flat->inputs[0].tensor.scalar_type(), at::kByte);
  EXPECT_EQ(flat->inputs[0].tensor[0][1][1].item<uint8_t>(), 255);

  auto bytes = DecodeInferRequest(
      R"({"inputs":[{"name":"record","shape":[2],"datatype":"BYTES","data":["{}","{\"a\":1}"]}]})");
  ASSERT_TRUE(bytes.ok()) << bytes.status().message();
  EXPECT_EQ(bytes->inputs[0].bytes[1], "{\"a\":1}");
}

// Each malformed body is refused with a message naming what is wrong.
TEST(KserveTest, RefusesMalformedRequestsNamingTheField) {
  struct Case {
    std::string body, expect;
  } cases[] = {
      {"{not json", "not valid JSON"},
      {"[1,2]", "must be a JSON object"},
      {R"({"inputs":[]})", "inputs: missing"},
      {R"({"inputs":[{"shape":[1],"datatype":"FP32","data":[1]}]})", "inputs[0].name"},
      {R"({"inputs":[{"name":"x","shape":[1],"datatype":"FP16","data":[1]}]})",
       "unsupported datatype 'FP16'"},
      {R"({"inputs":[{"name":"x","shape":[2],"datatype":"FP32","data":[1]}]})",
       "1 values, but the shape holds 2"},
      {R"({"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1,2]}]})",
       "more values than the shape holds"},
      {R"({"inputs":[{"name":"x","shape":[2],"datatype":"FP32","data":[1,"a"]}]})",
       "inputs[0].data[1]: FP32 wants a number"},
      {R"({"inputs":[{"name":"x","shape":[1],"datatype":"UINT8","data":[256]}]})",
       "out of range for UINT8"},
      {R"({"inputs":[{"name":"x","shape":[1],"datatype":"INT64","data":[1.5]}]})",
       "INT64 wants an integer"},
      {R"({"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1e39]}]})",
       "not a finite FP32"},
      {R"({"inputs":[{"name":"x","shape":[-1],"datatype":"FP32","data":[]}]})",
       "shape[0]: not a non-negative"},
      {R"({"inputs":[{"name":"x","shape":[100000,100000,100000],"datatype":"FP32","data":[]}]})",
       "elements"},
      {R"({"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]},{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]})",
       "given twice"},
      {R"({"id":5,"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]})",
       "id: must be a string"},
      {R"({"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}],"outputs":[{}]})",
       "outputs[0].name"},
      {std::string(100000, '['), "nests deeper than 32"},
  };
  for (const auto& c : cases) {
    auto r = DecodeInferRequest(c.body);
    ASSERT_FALSE(r.ok()) << c.body.substr(0, 80);
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(c.expect), std::string::npos)
        << c.body.substr(0, 80) << " -> " << r.status().message();
  }
}

TEST(KserveTest, EncodesResponses) {
  std::vector<InferTensor> outs = {
      MakeTensor("probabilities", at::tensor({0.25f, 0.75f}).view({1, 2})),
      MakeTensor("class", at::tensor({int64_t{1}}))};
  std::string body = EncodeInferResponse("fraud", "2", "r7", outs, {{"variant", "challenger"}});
  auto j = nlohmann::json::parse(body);
  EXPECT_EQ(j["model_name"], "fraud");
  EXPECT_EQ(j["model_version"], "2");
  EXPECT_EQ(j["id"], "r7");
  EXPECT_EQ(j["parameters"]["variant"], "challenger");
  EXPECT_EQ(j["outputs"][0]["datatype"], "FP32");
  EXPECT_EQ(j["outputs"][0]["shape"], nlohmann::json({1, 2}));
  EXPECT_DOUBLE_EQ(j["outputs"][0]["data"][1].get<double>(), 0.75);
  EXPECT_EQ(j["outputs"][1]["datatype"], "INT64");
  EXPECT_EQ(j["outputs"][1]["data"][0], 1);
}

}  // namespace
}  // namespace ronghe::serve
