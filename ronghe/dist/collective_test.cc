#include "ronghe/dist/collective.h"

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <thread>

#include "ronghe/base/net.h"

namespace ronghe::dist {
namespace {

int FreePort() { return FreeLoopbackPort().value(); }

// Runs body(collective, rank) on `world` ranks, one thread each, over Gloo on loopback; returns
// each rank's status (a failed rendezvous included).
template <typename Body>
std::vector<Status> OnRanks(int world, CollectiveOptions o, Body body) {
  o.port = FreePort();
  o.world = world;
  std::vector<Status> status(world);
  std::vector<std::thread> ranks;
  for (int r = 0; r < world; ++r) {
    ranks.emplace_back([&, r, o]() mutable {
      o.rank = r;
      auto c = Collective::Connect(o);
      status[r] = c.ok() ? body(**c, r) : c.status();
    });
  }
  for (auto& t : ranks) t.join();
  return status;
}

TEST(CollectiveTest, TwoRanksAverageInBucketsOverGloo) {
  std::vector<std::vector<at::Tensor>> tensors(2);
  // Small buckets: three tensors travel in two all-reduces.
  auto status = OnRanks(2, {.timeout_s = 30, .bucket_bytes = 40}, [&](Collective& c, int r) {
    tensors[r] = {torch::full({2, 3}, float(r + 1)), torch::full({4}, float(10 * (r + 1))),
                  torch::arange(3).to(torch::kFloat) * (r + 1)};
    RETURN_IF_ERROR(c.AllReduceMean(tensors[r]));
    return c.Barrier();
  });
  for (int r = 0; r < 2; ++r) {
    ASSERT_TRUE(status[r].ok()) << status[r].ToString();
    EXPECT_TRUE(torch::allclose(tensors[r][0], torch::full({2, 3}, 1.5f)));
    EXPECT_TRUE(torch::allclose(tensors[r][1], torch::full({4}, 15.0f)));
    EXPECT_TRUE(torch::allclose(tensors[r][2], torch::arange(3).to(torch::kFloat) * 1.5));
  }
}

// A two-layer model's gradients: rank r's batch is x_r; `skip` ranks run no backward at all.
std::vector<at::Tensor> Params() {
  return {torch::linspace(-1, 1, 15).reshape({3, 5}).requires_grad_(),
          torch::linspace(0, 1, 3).requires_grad_(),
          torch::linspace(1, -1, 6).reshape({2, 3}).requires_grad_(),
          torch::zeros({2}).requires_grad_()};
}

at::Tensor Loss(const std::vector<at::Tensor>& p, const at::Tensor& x) {
  return torch::relu(x.matmul(p[0].t()) + p[1]).matmul(p[2].t()).add(p[3]).pow(2).sum();
}

at::Tensor Batch(int r) {
  return torch::arange(20).reshape({4, 5}).to(torch::kFloat).div(10 * (r + 1));
}

void CheckReducer(bool rank1_skips) {
  std::vector<std::vector<at::Tensor>> grads(2);
  std::vector<int> buckets(2);
  auto status = OnRanks(2, {.timeout_s = 30}, [&](Collective& c, int r) {
    auto p = Params();
    GradientReducer reducer(&c, p, /*bucket_bytes=*/40);
    buckets[r] = reducer.num_buckets();
    for (int step = 0; step < 2; ++step) {  // twice: the hooks re-arm
      for (auto& t : p) t.mutable_grad() = torch::Tensor();
      reducer.Prepare();
      if (!(rank1_skips && r == 1)) Loss(p, Batch(r)).backward();
      RETURN_IF_ERROR(reducer.Finish());
    }
    for (auto& t : p) grads[r].push_back(t.grad().clone());
    return Status::OK();
  });
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
  std::vector<std::string> got(2);
  std::vector<at::Tensor> sums(2);
  auto status = OnRanks(2, {.timeout_s = 30}, [&](Collective& c, int r) -> Status {
    sums[r] = torch::tensor({1.5 * (r + 1), 1e15}, torch::kFloat64);
    RETURN_IF_ERROR(c.AllReduceSum({sums[r]}));
    ASSIGN_OR_RETURN(got[r],
                     c.BroadcastBytes(r == 0 ? std::string("config\0bytes", 12) : "ignored"));
    return Status::OK();
  });
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
  EXPECT_LT(std::chrono::steady_clock::now() - start,
            std::chrono::seconds(30));  // bounded, not a hang
  EXPECT_FALSE(Collective::Connect({.rank = 2, .world = 2}).ok());
}

}  // namespace
}  // namespace ronghe::dist
