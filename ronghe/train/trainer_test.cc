#include "ronghe/train/trainer.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>

namespace ronghe::train {
namespace {

// Two Gaussian blobs, linearly separable up to noise.
data::LoadedData Blobs(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  data::LoadedData d;
  d.task = data::Task::kBinary;
  d.num_classes = 2;
  d.input_shape = {4};
  auto make = [](int64_t m) {
    auto y = torch::randint(0, 2, {m}, torch::kInt64);
    auto x = torch::randn({m, 4}) + (y.to(torch::kFloat32) * 2 - 1).unsqueeze(1) * 1.5;
    return data::TensorData{x, y};
  };
  d.train = make(n);
  d.val = make(n / 4);
  d.test = make(n / 4);
  return d;
}

std::unique_ptr<nn::Model> Mlp(uint64_t seed, double dropout = 0) {
  torch::manual_seed(seed);
  nn::ModelConfig c;
  c.kind = "mlp";
  c.input_shape = {4};
  c.outputs = 1;
  c.hidden = {16};
  c.dropout = dropout;
  return std::move(nn::Model::Create(c)).value();
}

TrainOptions Quiet() {
  TrainOptions o;
  o.progress = "off";
  o.batch_size = 32;
  o.lr = 0.01;
  return o;
}

TEST(TrainerTest, LearnsSeparableData) {
  auto d = Blobs(800, 1);
  auto m = Mlp(2);
  TrainOptions o = Quiet();
  o.epochs = 5;
  o.class_weights = "balanced";
  o.grad_clip = 1.0;
  o.schedule = "cosine";
  o.warmup_steps = 10;
  auto t = Trainer::Create(o, m.get(), &d, nullptr, "");
  ASSERT_TRUE(t.ok());
  auto r = (*t)->Run(false);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_GT(r->test["accuracy"], 0.9);
  EXPECT_GT(r->test["roc_auc"], 0.95);
  EXPECT_EQ(r->epochs_completed, 5);
  EXPECT_EQ(r->steps, 5 * 25);
}

TEST(TrainerTest, Bf16AutocastTrains) {
  auto d = Blobs(800, 3);
  auto m = Mlp(4);
  TrainOptions o = Quiet();
  o.epochs = 3;
  o.precision = "bf16";
  auto r = (*Trainer::Create(o, m.get(), &d, nullptr, ""))->Run(false);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_GT(r->test["accuracy"], 0.85);
}

TEST(TrainerTest, EarlyStoppingRestoresBestEpoch) {
  auto d = Blobs(400, 5);
  auto m = Mlp(6);
  TrainOptions o = Quiet();
  o.epochs = 50;
  o.lr = 0.05;
  o.patience = 2;
  o.monitor = "roc_auc";
  auto r = (*Trainer::Create(o, m.get(), &d, nullptr, ""))->Run(false);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_TRUE(r->stopped_early);
  EXPECT_LT(r->epochs_completed, 50);
  o.monitor = "rmse";  // not a classification metric
  auto m2 = Mlp(6);
  auto bad = (*Trainer::Create(o, m2.get(), &d, nullptr, ""))->Run(false);
  EXPECT_NE(bad.status().message().find("train.monitor"), std::string::npos);
}

// Resuming from a checkpoint (with dropout, so the generator state matters) ends with exactly
// the weights of an uninterrupted run.
TEST(TrainerTest, ResumeMatchesUninterruptedRun) {
  auto d = Blobs(300, 7);
  std::string ckpt = ::testing::TempDir() + "/resume_test.rhc";
  std::remove(ckpt.c_str());
  TrainOptions o = Quiet();
  o.epochs = 3;
  o.optimizer = "adam";

  auto full = Mlp(8, 0.3);
  torch::manual_seed(99);
  ASSERT_TRUE((*Trainer::Create(o, full.get(), &d, nullptr, ""))->Run(false).ok());

  auto part = Mlp(8, 0.3);
  torch::manual_seed(99);
  TrainOptions first = o;
  first.epochs = 1;
  ASSERT_TRUE((*Trainer::Create(first, part.get(), &d, nullptr, ckpt))->Run(false).ok());
  torch::manual_seed(12345);    // a fresh process would not share the generator state
  auto resumed = Mlp(77, 0.3);  // different init: everything must come from the checkpoint
  auto r = (*Trainer::Create(o, resumed.get(), &d, nullptr, ckpt))->Run(true);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_TRUE(r->resumed);
  auto a = full->NamedState(), b = resumed->NamedState();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_TRUE(torch::equal(a[i].second, b[i].second)) << a[i].first;

  // A checkpoint from other settings is refused with the key named.
  TrainOptions other = o;
  other.batch_size = 16;
  auto m = Mlp(8, 0.3);
  auto bad = (*Trainer::Create(other, m.get(), &d, nullptr, ckpt))->Run(true);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("train.batch_size"), std::string::npos)
      << bad.status().message();
}

TEST(TrainerTest, DivergenceIsAClearError) {
  auto d = Blobs(200, 9);
  d.train.x.index_put_({0, 0}, std::numeric_limits<float>::infinity());
  auto m = Mlp(10);
  TrainOptions o = Quiet();
  o.batch_size = 200;
  auto r = (*Trainer::Create(o, m.get(), &d, nullptr, ""))->Run(false);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("diverged"), std::string::npos) << r.status().message();
}

// Images at 8 and 16 px whose class is their brightness: one CNN learns both sizes, with
// bucketed batches and with pad-to-max, and evaluation reports each size.
data::LoadedData MixedImages(int64_t n) {
  torch::manual_seed(5);
  data::LoadedData d;
  d.task = data::Task::kMulticlass;
  d.num_classes = 2;
  d.input_shape = {1, 8, 8};
  d.preprocessing = {{"kind", "image"}, {"mean", 0.0}, {"std", 1.0}};
  auto make = [](int64_t m) {
    data::TensorData t;
    t.y = torch::randint(0, 2, {m}, torch::kInt64);
    t.x = torch::randn({m, 1, 8, 8}) * 0.3 + (t.y.to(torch::kFloat32) * 2 - 1).view({m, 1, 1, 1});
    for (int64_t i = 0; i < m; ++i) t.sides.push_back(i % 3 == 0 ? 16 : 8);
    return t;
  };
  d.train = make(n);
  d.val = make(n / 4);
  d.test = make(n / 4);
  return d;
}

TEST(TrainerTest, MixedSizesTrainBucketedOrPadded) {
  auto d = MixedImages(240);
  for (const char* batching : {"bucket", "pad"}) {
    torch::manual_seed(6);
    nn::ModelConfig c;
    c.kind = "cnn";
    c.input_shape = {1, 8, 8};
    c.outputs = 2;
    c.channels = {4};
    c.pool_size = 2;
    c.dense = 8;
    auto m = std::move(nn::Model::Create(c)).value();
    TrainOptions o = Quiet();
    o.epochs = 3;
    o.batching = batching;
    auto t = Trainer::Create(o, m.get(), &d, nullptr, "");
    ASSERT_TRUE(t.ok()) << t.status().message();
    auto r = (*t)->Run(false);
    ASSERT_TRUE(r.ok()) << batching << ": " << r.status().message();
    // 160 images of 8 px and 80 of 16 px in batches of 32 that never mix sizes: 5 + 3 per epoch;
    // padded: 240 / 32 = 8 per epoch.
    EXPECT_EQ(r->steps, 3 * 8) << batching;
    EXPECT_GE(r->test.at("accuracy_8px"), 0.9) << batching;
    EXPECT_GE(r->test.at("accuracy_16px"), 0.9) << batching;
  }
  // A budget below one example is refused up front, naming the key.
  auto m = Mlp(1);
  TrainOptions o = Quiet();
  o.max_elements = 100;  // a 16 px image has 256
  auto t = Trainer::Create(o, m.get(), &d, nullptr, "");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("train.max_elements"), std::string::npos)
      << t.status().message();
}

// Sequences of 3 or 6 steps whose target is the sum of their steps: the LSTM learns it from
// equal-length batches (bucketed, no padding) and from padded, packed batches.
TEST(TrainerTest, MixedLengthSequencesTrainBucketedOrPacked) {
  torch::manual_seed(8);
  data::LoadedData d;
  d.task = data::Task::kRegression;
  d.input_shape = {6, 1};
  d.preprocessing = {{"kind", "series"}, {"mean", 0.0}, {"std", 1.0}};
  auto make = [](int64_t m) {
    data::TensorData t;
    t.x = torch::zeros({m, 6, 1});
    t.y = torch::zeros({m, 1});
    for (int64_t i = 0; i < m; ++i) {
      int64_t len = i % 2 ? 3 : 6;
      t.lengths.push_back(len);
      t.x[i].narrow(0, 0, len).copy_(torch::rand({len, 1}) - 0.5);
      t.y[i][0] = t.x[i].sum();
    }
    return t;
  };
  d.train = make(512);
  d.val = make(64);
  d.test = make(128);
  for (const char* batching : {"bucket", "pad"}) {
    torch::manual_seed(9);
    nn::ModelConfig c;
    c.kind = "lstm";
    c.input_shape = {6, 1};
    c.outputs = 1;
    c.lstm_hidden = 16;
    auto m = std::move(nn::Model::Create(c)).value();
    auto before = Evaluate(*m, d.test, d.task, d.preprocessing,
                           EvalOptions{.canvas = std::string(batching) == "pad" ? 6 : 0});
    ASSERT_TRUE(before.ok()) << before.status().message();
    TrainOptions o = Quiet();
    o.epochs = 15;
    o.batching = batching;
    auto t = Trainer::Create(o, m.get(), &d, nullptr, "");
    ASSERT_TRUE(t.ok()) << t.status().message();
    auto r = (*t)->Run(false);
    ASSERT_TRUE(r.ok()) << batching << ": " << r.status().message();
    EXPECT_EQ(r->steps, 15 * 16) << batching;  // 256 + 256 in batches of 32, or 512 padded
    EXPECT_LT(r->test.at("loss"), 0.2 * before->at("loss")) << batching;
  }
}

TEST(DistillTest, TheTeacherTermMatchesAHandComputation) {
  // Regression: squared error to the teacher's forecast, summed.
  torch::Tensor s = torch::tensor({{1.0f, 2.0f}, {0.5f, -1.0f}});
  torch::Tensor t = torch::tensor({{1.5f, 2.0f}, {0.0f, -1.0f}});
  EXPECT_NEAR(DistillLossSum(s, t, data::Task::kRegression, 3.0).item<double>(), 0.5, 1e-6);
  // Multi-class: T^2 KL(softmax(t/T) || softmax(s/T)), summed over examples.
  torch::Tensor ls = torch::tensor({{2.0f, 0.0f, -1.0f}});
  torch::Tensor lt = torch::tensor({{0.0f, 1.0f, 0.0f}});
  const double T = 2.0;
  auto soft = [&](const torch::Tensor& z) { return torch::softmax(z / T, 1); };
  torch::Tensor p = soft(lt), q = soft(ls);
  double kl = (p * (p.log() - q.log())).sum().item<double>() * T * T;
  EXPECT_NEAR(DistillLossSum(ls, lt, data::Task::kMulticlass, T).item<double>(), kl, 1e-5);
  EXPECT_NEAR(DistillLossSum(lt, lt, data::Task::kMulticlass, T).item<double>(), 0, 1e-6);
  // Binary: T^2 BCE(sigmoid(s/T), sigmoid(t/T)), minimal where they agree.
  torch::Tensor b = torch::tensor({{0.7f}});
  double same = DistillLossSum(b, b, data::Task::kBinary, T).item<double>();
  EXPECT_LT(same,
            DistillLossSum(b, torch::tensor({{-2.0f}}), data::Task::kBinary, T).item<double>());
}

TEST(DistillTest, AStudentLearnsTheTeachersFunctionNotJustTheLabels) {
  // A teacher whose function differs from the labels' (an untrained network): a student trained
  // on the teacher alone (alpha 1) ends far closer to it than one trained on the labels alone
  // (alpha 0), so the teacher term drives training. A wrongly shaped teacher tensor is refused.
  data::LoadedData d = Blobs(512, 5);
  auto teacher = Mlp(11);
  teacher->SetTraining(false);
  torch::Tensor tout = teacher->Forward(d.train.x).detach();
  auto distance = [&](double alpha) {
    data::LoadedData dd = d;
    dd.train.teacher = tout;
    TrainOptions o = Quiet();
    o.distill_alpha = alpha;
    o.distill_temperature = 1.0;
    auto student = Mlp(23);
    auto st = Trainer::Create(o, student.get(), &dd, nullptr, "");
    EXPECT_TRUE(st.ok()) << st.status().message();
    auto r = (*st)->Run(false);
    EXPECT_TRUE(r.ok()) << r.status().message();
    student->SetTraining(false);
    torch::NoGradGuard no_grad;
    return (torch::sigmoid(student->Forward(d.test.x)) - torch::sigmoid(teacher->Forward(d.test.x)))
        .abs()
        .mean()
        .item<double>();
  };
  const double from_teacher = distance(1.0), from_labels = distance(0.0);
  std::printf("mean |p_student - p_teacher|: alpha 1 %.4f, alpha 0 %.4f\n", from_teacher,
              from_labels);
  EXPECT_LT(from_teacher * 3, from_labels);
  data::LoadedData bad = d;
  bad.train.teacher = torch::zeros({3, 1});
  auto student = Mlp(1);
  auto refused = Trainer::Create(Quiet(), student.get(), &bad, nullptr, "");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("teacher"), std::string::npos);
}

}  // namespace
}  // namespace ronghe::train
