// The gRPC front end over loopback, called through the client class gRPC generates from
// inference.proto.
#include "ronghe/serve/grpc.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "ronghe/nn/artifact.h"
#include "ronghe/serve/inference.grpc.pb.h"
#include "ronghe/store/run_store.h"

namespace ronghe::serve {
namespace {

namespace fs = std::filesystem;

class GrpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = "/tmp/ronghe-grpc-test-" + std::to_string(::getpid());
    fs::remove_all(dir_);
    art_ = dir_ + "/repo/tab/1/model.rhm";
    fs::create_directories(fs::path(art_).parent_path());
    torch::manual_seed(5);
    nn::ModelConfig c;
    c.kind = "mlp";
    c.input_shape = {4};
    c.outputs = 3;
    c.hidden = {8};
    auto m = nn::Model::Create(c);
    ASSERT_TRUE(m.ok());
    ASSERT_TRUE(nn::SaveArtifact(art_, **m, {{"task", "multiclass"}}).ok());
    ServerOptions o;
    o.repository.dir = dir_ + "/repo";
    o.store_path = store::HomeStorePath(dir_);
    auto s = InferenceServer::Create(o);
    ASSERT_TRUE(s.ok()) << s.status().message();
    server_ = std::move(s).value();
    GrpcOptions g;
    g.host = "127.0.0.1";
    g.port = 0;
    auto f = GrpcFrontend::Start(server_.get(), g);
    ASSERT_TRUE(f.ok()) << f.status().message();
    frontend_ = std::move(f).value();
    client_ = inference::GRPCInferenceService::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(frontend_->port()), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    frontend_.reset();
    server_.reset();
    fs::remove_all(dir_);
  }
  at::Tensor Offline(const at::Tensor& x) {
    auto a = nn::LoadArtifact(art_);
    torch::NoGradGuard g;
    return a->model->Forward(x);
  }
  std::string dir_, art_;
  std::unique_ptr<InferenceServer> server_;
  std::unique_ptr<GrpcFrontend> frontend_;
  std::unique_ptr<inference::GRPCInferenceService::Stub> client_;
};

TEST_F(GrpcTest, InferEqualsOfflinePredictionsWithTypedAndRawContents) {
  {
    grpc::ClientContext ctx;
    inference::ServerReadyResponse r;
    ASSERT_TRUE(client_->ServerReady(&ctx, {}, &r).ok());
    EXPECT_TRUE(r.ready());
  }
  torch::manual_seed(1);
  at::Tensor x = torch::randn({3, 4});
  at::Tensor want = Offline(x);
  std::vector<std::vector<float>> answers;
  for (bool raw : {false, true}) {
    inference::ModelInferRequest q;
    q.set_model_name("tab");
    q.set_id("g1");
    auto* in = q.add_inputs();
    in->set_name("input");
    in->set_datatype("FP32");
    in->add_shape(3);
    in->add_shape(4);
    const float* p = x.data_ptr<float>();
    if (raw) {
      q.add_raw_input_contents(std::string(reinterpret_cast<const char*>(p), 12 * sizeof(float)));
    } else {
      for (int i = 0; i < 12; ++i) in->mutable_contents()->add_fp32_contents(p[i]);
    }
    q.add_outputs()->set_name("logits");
    grpc::ClientContext ctx;
    inference::ModelInferResponse r;
    grpc::Status st = client_->ModelInfer(&ctx, q, &r);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(r.model_name(), "tab");
    EXPECT_EQ(r.model_version(), "1");
    EXPECT_EQ(r.id(), "g1");
    ASSERT_EQ(r.outputs_size(), 1);
    const auto& o = r.outputs(0);
    std::vector<float> values;
    if (raw) {
      // Raw in, raw out (as Triton answers): the output's bytes in raw_output_contents.
      EXPECT_EQ(o.contents().fp32_contents_size(), 0);
      ASSERT_EQ(r.raw_output_contents_size(), 1);
      ASSERT_EQ(r.raw_output_contents(0).size(), 9 * sizeof(float));
      values.resize(9);
      std::memcpy(values.data(), r.raw_output_contents(0).data(), 9 * sizeof(float));
    } else {
      EXPECT_EQ(r.raw_output_contents_size(), 0);
      ASSERT_EQ(o.contents().fp32_contents_size(), 9);
      values.assign(o.contents().fp32_contents().begin(), o.contents().fp32_contents().end());
    }
    at::Tensor got = torch::tensor(values).view({3, 3});
    EXPECT_TRUE(torch::allclose(got, want, 1e-5, 1e-6)) << (raw ? "raw" : "typed");
    answers.push_back(values);
  }
  EXPECT_EQ(answers[0], answers[1]);  // typed and raw: the same floats, bit for bit
  grpc::ClientContext ctx;
  inference::ModelMetadataRequest mq;
  mq.set_name("tab");
  inference::ModelMetadataResponse mr;
  ASSERT_TRUE(client_->ModelMetadata(&ctx, mq, &mr).ok());
  EXPECT_EQ(mr.inputs(0).shape(1), 4);
}

TEST_F(GrpcTest, BadRequestsGetTheirCodes) {
  auto call = [&](inference::ModelInferRequest q) {
    grpc::ClientContext ctx;
    inference::ModelInferResponse r;
    return client_->ModelInfer(&ctx, q, &r);
  };
  inference::ModelInferRequest q;
  q.set_model_name("tab");
  auto* in = q.add_inputs();
  in->set_name("input");
  in->set_datatype("FP32");
  in->add_shape(1);
  in->add_shape(4);
  for (int i = 0; i < 3; ++i) in->mutable_contents()->add_fp32_contents(1.0f);  // one short
  grpc::Status st = call(q);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("3 values, but the shape holds 4"), std::string::npos)
      << st.error_message();
  in->mutable_contents()->add_fp32_contents(1.0f);
  q.set_model_name("nope");
  st = call(q);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  q.set_model_name("tab");
  q.add_raw_input_contents("abc");  // wrong byte count
  st = call(q);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("raw contents hold 3 bytes"), std::string::npos)
      << st.error_message();
  q.clear_raw_input_contents();
  EXPECT_TRUE(call(q).ok());  // and it still serves
}

}  // namespace
}  // namespace ronghe::serve
