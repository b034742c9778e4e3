#include <gtest/gtest.h>
#include <torch/torch.h>

#include <random>

#include "ronghe/base/file.h"
#include "ronghe/base/hash.h"
#include "ronghe/nn/artifact.h"
#include "ronghe/nn/model.h"
#include "ronghe/nn/tensor_file.h"

namespace ronghe::nn {
namespace {

ModelConfig Mlp() {
  ModelConfig c;
  c.kind = "mlp";
  c.input_shape = {10};
  c.outputs = 3;
  c.hidden = {8, 4};
  return c;
}

TEST(ModelTest, ShapesOfEachKind) {
  torch::manual_seed(0);
  auto mlp = Model::Create(Mlp());
  ASSERT_TRUE(mlp.ok());
  EXPECT_EQ((*mlp)->Forward(torch::randn({5, 10})).sizes(), (std::vector<int64_t>{5, 3}));

  ModelConfig cnn;
  cnn.kind = "cnn";
  cnn.input_shape = {1, 28, 28};
  cnn.outputs = 10;
  cnn.channels = {4, 8};
  auto m = Model::Create(cnn);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*m)->Forward(torch::randn({2, 1, 28, 28})).sizes(), (std::vector<int64_t>{2, 10}));
  // Adaptive pooling: the same CNN takes larger images.
  EXPECT_EQ((*m)->Forward(torch::randn({2, 1, 56, 56})).sizes(), (std::vector<int64_t>{2, 10}));

  ModelConfig lstm;
  lstm.kind = "lstm";
  lstm.input_shape = {48, 1};
  lstm.outputs = 2;
  auto l = Model::Create(lstm);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ((*l)->Forward(torch::randn({3, 48, 1})).sizes(), (std::vector<int64_t>{3, 2}));
}

TEST(ModelTest, RecurrentPackedSequencesIgnorePadding) {
  for (const std::string kind : {"lstm", "gru"}) {
    SCOPED_TRACE(kind);
    torch::manual_seed(3);
    ModelConfig c;
    c.kind = kind;
    c.input_shape = {12, 2};
    c.outputs = 4;
    c.lstm_hidden = 8;
    c.lstm_layers = 2;
    auto m = Model::Create(c);
    ASSERT_TRUE(m.ok()) << m.status().message();
    (*m)->SetTraining(false);
    // Three sequences of lengths 12, 5 and 1, padded with garbage that must not matter.
    torch::Tensor x = torch::randn({3, 12, 2});
    torch::Tensor lengths = torch::tensor({12, 5, 1}, torch::kInt64);
    torch::Tensor batched = (*m)->Forward(x, lengths);
    ASSERT_EQ(batched.sizes(), (std::vector<int64_t>{3, 4}));
    for (int64_t i = 0; i < 3; ++i) {
      int64_t len = lengths[i].item<int64_t>();
      torch::Tensor alone = (*m)->Forward(x.narrow(0, i, 1).narrow(1, 0, len));
      EXPECT_TRUE(torch::allclose(batched[i], alone[0], 1e-5, 1e-6)) << "sequence " << i;
    }
    torch::Tensor noisy = x.clone();
    noisy.narrow(0, 1, 1).narrow(1, 5, 7).fill_(1e3);
    EXPECT_TRUE(torch::allclose((*m)->Forward(noisy, lengths), batched, 1e-5, 1e-6));
    // The full-length row equals the unpacked forward.
    EXPECT_TRUE(torch::allclose(batched[0], (*m)->Forward(x)[0], 1e-5, 1e-6));
    auto mlp = Model::Create(Mlp());
    ASSERT_TRUE(mlp.ok());
    EXPECT_THROW((*mlp)->Forward(torch::randn({2, 10}), torch::tensor({1, 1})), c10::Error);
    // Each cell has its own weights under its own name (the edge exporter reads them).
    bool named = false;
    for (const auto& [name, t] : (*m)->NamedState()) named |= name == kind + ".weight_hh_l1";
    EXPECT_TRUE(named);
  }
}

TEST(ModelTest, CnnTakesEveryResolution) {
  torch::manual_seed(4);
  ModelConfig c;
  c.kind = "cnn";
  c.input_shape = {1, 28, 28};
  c.outputs = 10;
  c.channels = {4, 8};
  auto m = Model::Create(c);
  ASSERT_TRUE(m.ok()) << m.status().message();
  for (int64_t side : {28, 56, 112}) {
    EXPECT_EQ((*m)->Forward(torch::randn({2, 1, side, side})).sizes(),
              (std::vector<int64_t>{2, 10}))
        << side;
  }
}

TEST(ModelTest, RejectsConfigsThatDoNotFit) {
  ModelConfig c = Mlp();
  c.kind = "cnn";
  auto m = Model::Create(c);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("cnn: needs image input"), std::string::npos);
  c.kind = "transformer";
  EXPECT_FALSE(Model::Create(c).ok());
  auto cfg = Config::Parse("[model]\nkind = \"mlp\"\nhidden = [8, 0]\n", "m.toml");
  ModelConfig out;
  Status s = ParseModelConfig(*cfg, &out);
  EXPECT_NE(s.message().find("m.toml: model.hidden"), std::string::npos) << s.message();
}

TEST(ModelTest, LoadStateChecksNamesAndShapes) {
  auto a = Model::Create(Mlp());
  auto state = (*a)->NamedState();
  ModelConfig wider = Mlp();
  wider.hidden = {9, 4};
  auto b = Model::Create(wider);
  Status s = (*b)->LoadState(state);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("layers.0.weight"), std::string::npos) << s.message();
  state.pop_back();
  EXPECT_FALSE((*Model::Create(Mlp()))->LoadState(state).ok());
}

std::string TempPath(const std::string& name) { return ::testing::TempDir() + "/" + name; }

TEST(ArtifactTest, RoundTripGivesIdenticalOutputs) {
  torch::manual_seed(1);
  ModelConfig cnn;
  cnn.kind = "cnn";
  cnn.input_shape = {1, 28, 28};
  cnn.outputs = 10;
  cnn.channels = {4, 8};
  auto m = Model::Create(cnn);
  ASSERT_TRUE(m.ok());
  // Run a training-mode pass so batch-norm buffers are not their initial values.
  (*m)->SetTraining(true);
  (*m)->Forward(torch::randn({8, 1, 28, 28}) * 3 + 1);
  (*m)->SetTraining(false);
  auto x = torch::randn({4, 1, 28, 28});
  auto want = (*m)->Forward(x);
  std::string path = TempPath("cnn.rhm");
  ASSERT_TRUE(
      SaveArtifact(path, **m, {{"task", "multiclass"}, {"metrics", {{"accuracy", 0.9}}}}).ok());
  auto loaded = LoadArtifact(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_TRUE(torch::equal(loaded->model->Forward(x), want));
  EXPECT_EQ(loaded->manifest["metrics"]["accuracy"], 0.9);
  EXPECT_EQ(loaded->manifest["format"], "ronghe.model");
}

TEST(ArtifactTest, CorruptTruncatedOrTamperedFilesGiveErrorsNotCrashes) {
  torch::manual_seed(2);
  auto m = Model::Create(Mlp());
  std::string path = TempPath("mlp.rhm");
  ASSERT_TRUE(SaveArtifact(path, **m, {{"task", "multiclass"}}).ok());
  std::string good = *ReadFile(path);
  std::string bad_path = TempPath("bad.rhm");
  std::mt19937 rng(3);
  // Truncation at many lengths.
  for (size_t len = 0; len < good.size(); len += 1 + good.size() / 97) {
    ASSERT_TRUE(WriteFileAtomic(bad_path, good.substr(0, len)).ok());
    auto r = LoadArtifact(bad_path);
    ASSERT_FALSE(r.ok()) << "length " << len;
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
    EXPECT_NE(r.status().message().find(bad_path), std::string::npos);
  }
  // Single flipped bytes anywhere.
  for (int i = 0; i < 200; ++i) {
    std::string b = good;
    b[rng() % b.size()] ^= static_cast<char>(1 + rng() % 255);
    ASSERT_TRUE(WriteFileAtomic(bad_path, b).ok());
    auto r = LoadArtifact(bad_path);
    ASSERT_FALSE(r.ok());
  }
  // A tampered manifest with a recomputed digest still fails the structural checks.
  TensorFile f = *DecodeTensorFile(good, "x");
  f.meta["model"]["hidden"] = {8, 5};
  ASSERT_TRUE(WriteTensorFile(bad_path, f).ok());
  auto r = LoadArtifact(bad_path);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("shape"), std::string::npos) << r.status().message();
  f = *DecodeTensorFile(good, "x");
  f.meta["format"] = "pickle";
  ASSERT_TRUE(WriteTensorFile(bad_path, f).ok());
  EXPECT_NE(LoadArtifact(bad_path).status().message().find("not a ronghe model"),
            std::string::npos);
  EXPECT_EQ(LoadArtifact(TempPath("missing.rhm")).status().code(), StatusCode::kNotFound);
}

TEST(TensorFileTest, HostileHeadersAreRejected) {
  TensorFile f;
  f.meta = {{"k", 1}};
  f.tensors = {{"a", torch::arange(10, torch::kFloat32)}};
  std::string good = EncodeTensorFile(f);
  auto decoded = DecodeTensorFile(good, "t");
  ASSERT_TRUE(decoded.ok());
  EXPECT_TRUE(torch::equal(*decoded->Get("a"), torch::arange(10, torch::kFloat32)));
  // Rewrite the header to claim a huge tensor, then re-seal the digest.
  auto reseal = [](std::string body) {
    body.resize(body.size() - 32);
    return body + Sha256(body);
  };
  std::string b = good;
  size_t pos = b.find("\"nbytes\":40");
  ASSERT_NE(pos, std::string::npos);
  b.replace(pos, 11, "\"nbytes\":99");
  auto r = DecodeTensorFile(reseal(b), "t");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("disagree"), std::string::npos) << r.status().message();
  b = good;
  pos = b.find("\"shape\":[10]");
  b.replace(pos, 12, "\"shape\":[-1]");
  EXPECT_FALSE(DecodeTensorFile(reseal(b), "t").ok());
}

}  // namespace
}  // namespace ronghe::nn
