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
