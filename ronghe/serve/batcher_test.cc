#include "ronghe/serve/batcher.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <atomic>
#include <future>
#include <mutex>
#include <thread>

namespace ronghe::serve {
namespace {

// A model that doubles its input and can be held on its first batch, so tests queue requests
// behind it deterministically (no sleeps, no timing).
struct HeldModel {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<void> entered;
  std::atomic<bool> first{true};
  std::mutex mu;
  std::vector<std::vector<float>> batches;  // first values of each batch, in execution order

  DynamicBatcher::RunFn Fn() {
    return [this](int, const at::Tensor& x) -> Result<at::Tensor> {
      if (first.exchange(false)) {
        entered.set_value();
        released.wait();
      }
      {
        std::lock_guard<std::mutex> lock(mu);
        std::vector<float> v;
        for (int64_t i = 0; i < x.size(0); ++i) v.push_back(x[i][0].item<float>());
        batches.push_back(v);
      }
      return x * 2;
    };
  }
};

at::Tensor Row(float v, int64_t rows = 1) { return torch::full({rows, 3}, v); }

TEST(BatcherTest, QueuedRequestsRunAsFullBatchesWithTheirOwnRows) {
  HeldModel m;
  auto b = DynamicBatcher::Create({.max_batch_size = 8, .max_queue_delay_us = 0}, m.Fn());
  ASSERT_TRUE(b.ok()) << b.status().message();
  auto first = (*b)->Submit({Row(-1)});
  m.entered.get_future().wait();  // the instance is busy with request -1
  std::vector<std::future<Result<at::Tensor>>> futs;
  for (int i = 0; i < 16; ++i) futs.push_back((*b)->Submit({Row(float(i))}));
  m.release.set_value();
  ASSERT_TRUE(first.get().ok());
  for (int i = 0; i < 16; ++i) {
    auto r = futs[i].get();
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_TRUE(torch::equal(*r, Row(2.0f * i))) << i;  // each request gets back its own rows
  }
  auto st = (*b)->Stats();
  EXPECT_EQ(st.batches, 3);
  EXPECT_EQ(st.batch_rows[8], 2);  // two full batches of 8 after the held one
  EXPECT_EQ(st.batch_rows[1], 1);
  EXPECT_EQ(m.batches[1], (std::vector<float>{0, 1, 2, 3, 4, 5, 6, 7}));  // FIFO
}

TEST(BatcherTest, MultiRowRequestsPreferredSizesAndBatchingOff) {
  HeldModel m;
  auto b = DynamicBatcher::Create(
      {.max_batch_size = 8, .max_queue_delay_us = 1000000, .preferred_batch_sizes = {1, 4}},
      m.Fn());
  ASSERT_TRUE(b.ok());
  auto held = (*b)->Submit({Row(-1)});
  m.entered.get_future().wait();
  auto a = (*b)->Submit({Row(1, 3)});
  auto c = (*b)->Submit({Row(2, 1)});  // 3 + 1 = 4: a preferred size, runs without waiting 1 s
  m.release.set_value();
  ASSERT_TRUE(a.get().ok());
  auto rc = c.get();
  ASSERT_TRUE(rc.ok());
  EXPECT_EQ(rc->size(0), 1);
  EXPECT_EQ((*b)->Stats().batch_rows[4], 1);
  auto big = (*b)->Submit({Row(1, 9)});
  auto r = big.get();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("9 rows, more than max_batch_size 8"), std::string::npos);

  // max_batch_size 0: every request alone, whatever its rows.
  HeldModel m2;
  auto off = DynamicBatcher::Create({.max_batch_size = 0}, m2.Fn());
  ASSERT_TRUE(off.ok());
  auto h = (*off)->Submit({Row(-1)});
  m2.entered.get_future().wait();
  std::vector<std::future<Result<at::Tensor>>> futs;
  for (int i = 0; i < 5; ++i) futs.push_back((*off)->Submit({Row(float(i), 20)}));
  m2.release.set_value();
  for (auto& f : futs) ASSERT_TRUE(f.get().ok());
  EXPECT_EQ((*off)->Stats().batch_rows[20], 5);
}

TEST(BatcherTest, FullQueueRefusesAtOnceAndTimeoutsNeverRun) {
  HeldModel m;
  auto b = DynamicBatcher::Create({.max_batch_size = 4, .max_queue_size = 3}, m.Fn());
  ASSERT_TRUE(b.ok());
  auto held = (*b)->Submit({Row(-1)});
  m.entered.get_future().wait();
  auto expiring = (*b)->Submit({Row(7), 0, /*timeout_us=*/1});
  auto q1 = (*b)->Submit({Row(1)});
  auto q2 = (*b)->Submit({Row(2)});
  auto refused = (*b)->Submit({Row(3)});
  auto r = refused.get();  // answered while the instance is still held: at once
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
  m.release.set_value();
  auto e = expiring.get();
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), StatusCode::kDeadlineExceeded);
  ASSERT_TRUE(q1.get().ok());
  ASSERT_TRUE(q2.get().ok());
  (*b)->Shutdown();
  for (const auto& batch : m.batches) {
    for (float v : batch) EXPECT_NE(v, 7.0f);  // the timed-out request never reached the model
  }
  auto st = (*b)->Stats();
  EXPECT_EQ(st.rejected, 1);
  EXPECT_EQ(st.timed_out, 1);
}

TEST(BatcherTest, HigherPriorityRunsFirstAndShapesDoNotMix) {
  HeldModel m;
  auto b = DynamicBatcher::Create({.max_batch_size = 2, .priority_levels = 2}, m.Fn());
  ASSERT_TRUE(b.ok());
  auto held = (*b)->Submit({Row(-1)});
  m.entered.get_future().wait();
  auto low1 = (*b)->Submit({Row(10), 1});
  auto low2 = (*b)->Submit({Row(11), 1});
  auto other_shape = (*b)->Submit({torch::full({1, 5}, 30.0f), 0});
  auto high = (*b)->Submit({Row(20), 0});
  m.release.set_value();
  for (auto* f : {&low1, &low2, &other_shape, &high}) ASSERT_TRUE(f->get().ok());
  (*b)->Shutdown();
  ASSERT_EQ(m.batches.size(), 4u);
  EXPECT_EQ(m.batches[1], (std::vector<float>{30}));      // priority 0, alone: its shape differs
  EXPECT_EQ(m.batches[2], (std::vector<float>{20, 10}));  // the other priority-0 request, then FIFO
  EXPECT_EQ(m.batches[3], (std::vector<float>{11}));
}

TEST(BatcherTest, ErrorsReachEveryRequestOfTheBatchAndShutdownDrains) {
  auto b =
      DynamicBatcher::Create({.max_batch_size = 4, .max_queue_delay_us = 1000000, .instances = 2},
                             [](int, const at::Tensor& x) -> Result<at::Tensor> {
                               if (x[0][0].item<float>() < 0)
                                 return InvalidArgument("negative input");
                               return x;
                             });
  ASSERT_TRUE(b.ok());
  std::vector<std::future<Result<at::Tensor>>> futs;
  for (int i = 0; i < 3; ++i) futs.push_back((*b)->Submit({Row(float(i))}));
  (*b)->Shutdown();  // does not wait the 1 s delay: drains now
  for (auto& f : futs) ASSERT_TRUE(f.get().ok());
  auto after = (*b)->Submit({Row(1)}).get();
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.status().code(), StatusCode::kUnavailable);

  auto bad = DynamicBatcher::Create(
      {.max_batch_size = 4, .max_queue_delay_us = 0},
      [](int, const at::Tensor&) -> Result<at::Tensor> { return InvalidArgument("broken model"); });
  ASSERT_TRUE(bad.ok());
  auto r = (*bad)->Submit({Row(1)}).get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "broken model");
  EXPECT_FALSE(
      DynamicBatcher::Create({.max_batch_size = 4, .preferred_batch_sizes = {6}},
                             [](int, const at::Tensor& x) -> Result<at::Tensor> { return x; })
          .ok());
}

// Work-conserving dispatch (the default): a lone request on an idle instance runs at once, whatever
// the queue delay; requests that arrive while the instance is busy gather into one batch. The
// batcher's own record of why each batch ran is the check, not a clock.
TEST(BatcherTest, IdleInstanceRunsALoneRequestAtOnceAndBusyOnesGather) {
  HeldModel m;
  auto b = DynamicBatcher::Create({.max_batch_size = 8, .max_queue_delay_us = 3600000000}, m.Fn());
  ASSERT_TRUE(b.ok());
  auto lone = (*b)->Submit({Row(-1)});
  // Running, though its hour-long delay has not passed (the bound only ends a broken run).
  ASSERT_EQ(m.entered.get_future().wait_for(std::chrono::seconds(60)), std::future_status::ready)
      << "a lone request on an idle instance waited for the queue delay";
  std::vector<std::future<Result<at::Tensor>>> futs;
  for (int i = 0; i < 3; ++i) futs.push_back((*b)->Submit({Row(float(i))}));
  m.release.set_value();
  ASSERT_TRUE(lone.get().ok());
  for (auto& f : futs) ASSERT_TRUE(f.get().ok());
  auto st = (*b)->Stats();
  EXPECT_EQ(st.batches, 2);
  EXPECT_EQ(st.batches_idle, 2);
  EXPECT_EQ(st.batches_delay, 0);
  EXPECT_EQ(m.batches[1], (std::vector<float>{0, 1, 2}));  // gathered while the instance was busy

  // Triton's contract stays selectable: there a lone request waits out the delay.
  HeldModel m2;
  auto delay = DynamicBatcher::Create(
      {.max_batch_size = 8, .max_queue_delay_us = 1000, .dispatch = DispatchPolicy::kDelay},
      m2.Fn());
  ASSERT_TRUE(delay.ok());
  m2.release.set_value();
  ASSERT_TRUE((*delay)->Submit({Row(5)}).get().ok());
  st = (*delay)->Stats();
  EXPECT_EQ(st.batches_delay, 1);
  EXPECT_EQ(st.batches_idle, 0);
  EXPECT_EQ(ParseDispatchPolicy("delay").value(), DispatchPolicy::kDelay);
  EXPECT_FALSE(ParseDispatchPolicy("eager").ok());
}

// Many client threads against two instances: every request gets exactly its own rows back.
TEST(BatcherTest, ConcurrentClientsGetTheirOwnAnswers) {
  auto b = DynamicBatcher::Create(
      {.max_batch_size = 16, .max_queue_delay_us = 200, .instances = 2},
      [](int, const at::Tensor& x) -> Result<at::Tensor> { return x * 2 + 1; });
  ASSERT_TRUE(b.ok());
  std::atomic<int> wrong{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 8; ++t) {
    clients.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        float v = float(t * 1000 + i);
        auto r = (*b)->Submit({Row(v, 1 + i % 3)}).get();
        if (!r.ok() || !torch::equal(*r, Row(2 * v + 1, 1 + i % 3))) ++wrong;
      }
    });
  }
  for (auto& c : clients) c.join();
  EXPECT_EQ(wrong.load(), 0);
  auto st = (*b)->Stats();
  EXPECT_EQ(st.requests, 1600);
  int64_t rows = 0;
  for (auto [n, count] : st.batch_rows) {
    EXPECT_LE(n, 16);
    rows += n * count;
  }
  EXPECT_EQ(rows, 8 * (67 * 1 + 67 * 2 + 66 * 3));
}

}  // namespace
}  // namespace ronghe::serve
