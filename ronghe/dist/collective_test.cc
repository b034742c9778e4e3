#include "ronghe/dist/collective.h"

#include <unistd.h>

#include <thread>

#include <gtest/gtest.h>

#include "ronghe/base/net.h"
#include <torch/torch.h>

namespace ronghe::dist {
namespace {

int FreePort() { return FreeLoopbackPort().value(); }

TEST(CollectiveTest, TwoRanksAverageInBucketsOverGloo) {
  const int port = FreePort();
  std::vector<std::vector<at::Tensor>> tensors(2);
  std::vector<Status> status(2);
  std::vector<std::thread> ranks;
  for (int r = 0; r < 2; ++r) {
    ranks.emplace_back([&, r] {
      // Small buckets: three tensors travel in two all-reduces.
      auto c = Collective::Connect({.port = port, .rank = r, .world = 2, .timeout_s = 30, .bucket_bytes = 40});
      if (!c.ok()) {
        status[r] = c.status();
        return;
      }
      tensors[r] = {torch::full({2, 3}, float(r + 1)), torch::full({4}, float(10 * (r + 1))), torch::arange(3).to(torch::kFloat) * (r + 1)};
      status[r] = (*c)->AllReduceMean(tensors[r]);
      if (status[r].ok()) status[r] = (*c)->Barrier();
    });
  }
  for (auto& t : ranks) t.join();
  for (int r = 0; r < 2; ++r) {
    ASSERT_TRUE(status[r].ok()) << status[r].ToString();
    EXPECT_TRUE(torch::allclose(tensors[r][0], torch::full({2, 3}, 1.5f)));
    EXPECT_TRUE(torch::allclose(tensors[r][1], torch::full({4}, 15.0f)));
    EXPECT_TRUE(torch::allclose(tensors[r][2], torch::arange(3).to(torch::kFloat) * 1.5));
  }
}

// A two-layer model's gradients: rank r's batch is x_r; `skip` ranks run no backward at all.
std::vector<at::Tensor> Params() {
  return {torch::linspace(-1, 1, 15).reshape({3, 5}).requires_grad_(), torch::linspace(0, 1, 3).requires_grad_(),
          torch::linspace(1, -1, 6).reshape({2, 3}).requires_grad_(), torch::zeros({2}).requires_grad_()};
}

at::Tensor Loss(const std::vector<at::Tensor>& p, const at::Tensor& x) {
  return torch::relu(x.matmul(p[0].t()) + p[1]).matmul(p[2].t()).add(p[3]).pow(2).sum();
}

at::Tensor Batch(int r) { return torch::arange(20).reshape({4, 5}).to(torch::kFloat).div(10 * (r + 1)); }

void CheckReducer(bool rank1_skips) {
  const int port = FreePort();
  std::vector<std::vector<at::Tensor>> grads(2);
  std::vector<Status> status(2);
  std::vector<int> buckets(2);
  std::vector<std::thread> ranks;
  for (int r = 0; r < 2; ++r) {
    ranks.emplace_back([&, r] {
      auto c = Collective::Connect({.port = port, .rank = r, .world = 2, .timeout_s = 30});
      if (!c.ok()) {
        status[r] = c.status();
        return;
      }
      auto p = Params();
      GradientReducer reducer(c->get(), p, /*bucket_bytes=*/40);
      buckets[r] = reducer.num_buckets();
      for (int step = 0; step < 2 && status[r].ok(); ++step) {  // twice: the hooks re-arm
        for (auto& t : p) t.mutable_grad() = torch::Tensor();
        reducer.Prepare();
        if (!(rank1_skips && r == 1)) Loss(p, Batch(r)).backward();
        status[r] = reducer.Finish();
      }
      for (auto& t : p) grads[r].push_back(t.grad().clone());
    });
  }
  for (auto& t : ranks) t.join();
  std::vector<std::vector<at::Tensor>> local(2);
  for (int r = 0; r < 2; ++r) {
    auto p = Params();
    Loss(p, Batch(r)).backward();
    for (auto& t : p) local[r].push_back(t.grad());
  }
  for (int r = 0; r < 2; ++r) {
    ASSERT_TRUE(status[r].ok()) << status[r].ToString();
    EXPECT_GE(buckets[r], 3);  // 40-byte buckets: the reducer really cuts the model up
    for (size_t k = 0; k < 4; ++k) {
      at::Tensor want = rank1_skips ? local[0][k] / 2 : (local[0][k] + local[1][k]) / 2;
      EXPECT_TRUE(torch::allclose(grads[r][k], want, 1e-6, 1e-7)) << "rank " << r << " param " << k;
    }
  }
}

TEST(GradientReducerTest, AveragesGradientsBucketByBucketDuringBackward) { CheckReducer(false); }

TEST(GradientReducerTest, ARankWithNoExamplesContributesZeros) { CheckReducer(true); }

TEST(CollectiveTest, SumsAndBroadcastsBytes) {
  const int port = FreePort();
  std::vector<std::string> got(2);
  std::vector<at::Tensor> sums(2);
  std::vector<Status> status(2);
  std::vector<std::thread> ranks;
  for (int r = 0; r < 2; ++r) {
    ranks.emplace_back([&, r] {
      auto c = Collective::Connect({.port = port, .rank = r, .world = 2, .timeout_s = 30});
      if (!c.ok()) {
        status[r] = c.status();
        return;
      }
      sums[r] = torch::tensor({1.5 * (r + 1), 1e15}, torch::kFloat64);
      status[r] = (*c)->AllReduceSum({sums[r]});
      auto b = (*c)->BroadcastBytes(r == 0 ? std::string("config\0bytes", 12) : "ignored");
      if (b.ok()) got[r] = *b; else status[r] = b.status();
    });
  }
  for (auto& t : ranks) t.join();
  for (int r = 0; r < 2; ++r) {
    ASSERT_TRUE(status[r].ok()) << status[r].ToString();
    EXPECT_EQ(got[r], std::string("config\0bytes", 12));
    EXPECT_DOUBLE_EQ(sums[r][0].item<double>(), 4.5);
    EXPECT_DOUBLE_EQ(sums[r][1].item<double>(), 2e15);
  }
}

TEST(CollectiveTest, MissingRankIsAClearErrorWithinTheTimeout) {
  const int port = FreePort();
  auto start = std::chrono::steady_clock::now();
  auto c = Collective::Connect({.port = port, .rank = 0, .world = 2, .timeout_s = 2});
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("rank 0 of 2"), std::string::npos) << c.status().ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));  // bounded, not a hang
  EXPECT_FALSE(Collective::Connect({.rank = 2, .world = 2}).ok());
}

}  // namespace
}  // namespace ronghe::dist
