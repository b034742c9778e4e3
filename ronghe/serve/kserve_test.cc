#include "ronghe/serve/kserve.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

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
  EXPECT_EQ(t.datatype, DataType::kFp32);
  ASSERT_EQ(t.data.size(), 6 * sizeof(float));
  EXPECT_FLOAT_EQ(t.As<float>()[5], 6.5f);
  EXPECT_EQ(r->outputs, (std::vector<std::string>{"probabilities"}));

  auto flat = DecodeInferRequest(
      R"({"inputs":[{"name":"pixels","shape":[1,2,2],"datatype":"UINT8","data":[0,1,254,255]}]})");
  ASSERT_TRUE(flat.ok()) << flat.status().message();
  EXPECT_EQ(flat->inputs[0].datatype, DataType::kUint8);
  EXPECT_EQ(flat->inputs[0].As<uint8_t>()[3], 255);

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

InferTensor Fp32(std::string name, std::vector<int64_t> shape, std::vector<float> v) {
  InferTensor t = NumericTensor(std::move(name), DataType::kFp32, std::move(shape));
  std::memcpy(t.Mutable<float>(), v.data(), v.size() * sizeof(float));
  return t;
}

TEST(KserveTest, EncodesResponses) {
  InferTensor cls = NumericTensor("class", DataType::kInt64, {1});
  cls.Mutable<int64_t>()[0] = 1;
  std::vector<InferTensor> outs = {Fp32("probabilities", {1, 2}, {0.25f, 0.75f}), cls};
  InferRequestMsg req;
  req.id = "r7";
  size_t header = 7;
  std::string body =
      EncodeInferResponse("fraud", "2", req, outs, {{"variant", "challenger"}}, &header);
  EXPECT_EQ(header, 0u);  // nothing asked in binary: plain JSON
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

// Floats are written in their shortest exact form: what a client parses is the float we had.
TEST(KserveTest, JsonFloatsRoundTripExactly) {
  std::vector<float> v = {0.1f, 1.0f / 3, 3.4028235e38f, 1.17549435e-38f, -0.0f, 123456.789f};
  InferTensor t = Fp32("x", {6}, v);
  size_t header = 0;
  std::string body = EncodeInferResponse("m", "1", {}, {t}, nlohmann::json::object(), &header);
  auto back = DecodeInferResponse(body, header);
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ((*back)[0].data, t.data);
}

// The binary tensor data extension: a request whose JSON header says binary_data_size per input
// decodes to the same tensors as its JSON form; a response asked in binary carries the same
// bytes after its header.
TEST(KserveTest, BinaryRequestsAndResponsesMatchTheJsonForm) {
  const std::string json_body = R"({"id":"b1","inputs":[
    {"name":"pixels","shape":[1,2,2],"datatype":"UINT8","data":[0,1,254,255]},
    {"name":"input","shape":[2],"datatype":"FP32","data":[1.5,-2.25]},
    {"name":"flag","shape":[2],"datatype":"BOOL","data":[true,false]},
    {"name":"record","shape":[2],"datatype":"BYTES","data":["{}","{\"a\":1}"]}],
    "outputs":[{"name":"probabilities"}]})";
  size_t header = 0;
  auto binary = ToBinaryRequest(json_body, /*binary_outputs=*/true, &header);
  ASSERT_TRUE(binary.ok()) << binary.status().message();
  ASSERT_GT(header, 0u);
  EXPECT_EQ(binary->size() - header, 4u + 8 + 2 + (4 + 2 + 4 + 7));
  auto a = DecodeInferRequest(json_body);
  auto b = DecodeInferRequest(*binary, {}, header);
  ASSERT_TRUE(a.ok()) << a.status().message();
  ASSERT_TRUE(b.ok()) << b.status().message();
  ASSERT_EQ(a->inputs.size(), b->inputs.size());
  for (size_t i = 0; i < a->inputs.size(); ++i) {
    EXPECT_EQ(a->inputs[i].name, b->inputs[i].name);
    EXPECT_EQ(a->inputs[i].datatype, b->inputs[i].datatype);
    EXPECT_EQ(a->inputs[i].shape, b->inputs[i].shape);
    EXPECT_EQ(a->inputs[i].data, b->inputs[i].data) << a->inputs[i].name;
    EXPECT_EQ(a->inputs[i].bytes, b->inputs[i].bytes) << a->inputs[i].name;
  }
  EXPECT_EQ(b->id, "b1");
  EXPECT_TRUE(b->binary_output_all);
  EXPECT_FALSE(a->BinaryOutput("probabilities"));
  EXPECT_TRUE(b->BinaryOutput("probabilities"));

  // One output asked in binary, one in JSON, by the per-output parameter.
  auto mixed = DecodeInferRequest(R"({"inputs":[{"name":"x","shape":[1],"datatype":"FP32",
    "data":[1]}],"outputs":[{"name":"p","parameters":{"binary_data":true}},{"name":"c"}]})");
  ASSERT_TRUE(mixed.ok()) << mixed.status().message();
  InferTensor c = NumericTensor("c", DataType::kInt64, {1});
  c.Mutable<int64_t>()[0] = 3;
  std::vector<InferTensor> outs = {Fp32("p", {1, 2}, {0.125f, 0.875f}), c};
  std::string body = EncodeInferResponse("m", "1", *mixed, outs, {}, &header);
  ASSERT_GT(header, 0u);
  EXPECT_EQ(body.size() - header, 8u);
  auto j = nlohmann::json::parse(body.substr(0, header));
  EXPECT_EQ(j["outputs"][0]["parameters"]["binary_data_size"], 8);
  EXPECT_FALSE(j["outputs"][0].contains("data"));
  EXPECT_EQ(j["outputs"][1]["data"][0], 3);
  auto back = DecodeInferResponse(body, header);
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ((*back)[0].data, outs[0].data);
  EXPECT_EQ((*back)[1].data, outs[1].data);
}

// Malformed binary requests are refused naming the input at fault.
TEST(KserveTest, RefusesMalformedBinaryRequestsNamingTheInput) {
  auto head = [](const std::string& inputs) { return R"({"inputs":[)" + inputs + "]}"; };
  const std::string pix =
      R"({"name":"pixels","shape":[1,4],"datatype":"UINT8","parameters":{"binary_data_size":4}})";
  const std::string x =
      R"({"name":"x","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":7}})";
  struct Case {
    std::string header, binary, expect;
    size_t header_length = 0;  // 0: the header's own length
  } cases[] = {
      // The lengths do not add up: bytes left over after the inputs.
      {head(pix), std::string(6, '\1'),
       "6 bytes follow the JSON header, but the inputs' "
       "binary_data_size add up to 4"},
      // A tensor larger than the body.
      {head(pix), std::string(3, '\1'),
       "inputs[0] ('pixels'): binary_data_size 4 runs past the "
       "body (3 bytes of binary data left)"},
      // A size that disagrees with the datatype's element size.
      {head(x), std::string(7, '\0'),
       "inputs[0] ('x'): binary_data_size 7, but shape [2] of FP32 "
       "needs 8 bytes"},
      {head(
           R"({"name":"x","shape":[1],"datatype":"FP32","data":[1],"parameters":{"binary_data_size":4}})"),
       std::string(4, '\0'), "inputs[0] ('x'): has both data and binary_data_size"},
      {head(R"({"name":"x","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":-4}})"),
       "", "binary_data_size must be a non-negative integer"},
      {head(R"({"name":"b","shape":[1],"datatype":"BOOL","parameters":{"binary_data_size":1}})"),
       "\x02", "inputs[0] ('b')[0]: BOOL bytes are 0 or 1"},
      {head(R"({"name":"s","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":6}})"),
       std::string("\x05\0\0\0ab", 6), "inputs[0] ('s'): BYTES element 0 of 5 bytes overruns"},
      {head(pix), std::string(4, '\1'), "Inference-Header-Content-Length 999 exceeds the body",
       999},
      {head(pix), std::string(4, '\1'), "JSON header", 10},
  };
  for (const auto& c : cases) {
    std::string body = c.header + c.binary;
    size_t len = c.header_length ? c.header_length : c.header.size();
    auto r = DecodeInferRequest(body, {}, len);
    ASSERT_FALSE(r.ok()) << c.expect;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(c.expect), std::string::npos)
        << c.expect << " -> " << r.status().message();
  }
  // NaN in binary FP32 is refused as in JSON.
  float nan = std::nanf("");
  std::string bin(reinterpret_cast<const char*>(&nan), 4);
  std::string h =
      head(R"({"name":"x","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":4}})");
  auto r = DecodeInferRequest(h + bin, {}, h.size());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("not a finite FP32"), std::string::npos);
  // binary_data_size without the header that says where the JSON ends.
  auto no_header = DecodeInferRequest(h);
  ASSERT_FALSE(no_header.ok());
  EXPECT_NE(no_header.status().message().find("no Inference-Header-Content-Length"),
            std::string::npos);
}

}  // namespace
}  // namespace ronghe::serve
