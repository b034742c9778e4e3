#include "ronghe/serve/batcher.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <functional>
#include <future>
#include <mutex>
#include <new>
#include <thread>

// A counting allocator for this test binary: every operator new while `g_counting` is set adds
// one to `g_allocations`. The request path's allocation-free claim is checked with it.
// GCC sees free() on what operator new returned and warns; here operator new is malloc.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
namespace {
std::atomic<bool> g_counting{false};
std::atomic<int64_t> g_allocations{0};
}  // namespace

void* operator new(std::size_t n) {
  if (g_counting.load(std::memory_order_relaxed))
    g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace ronghe::serve {
namespace {

constexpr int64_t kWidth = 3;

// A submitted request: its input rows, where its output goes, its ticket.
struct Call {
  std::vector<float> in, out;
  Ticket ticket;
  Status Wait() { return ticket.Wait(); }
};

void Send(DynamicBatcher& b, Call* c, float v, int64_t rows = 1, int priority = 0,
          int64_t timeout_us = 0, int64_t width = kWidth) {
  c->in.assign(static_cast<size_t>(rows * width), v);
  InferRequest r;
  r.input = c->in.data();
  r.rows = rows;
  r.row_elements = width;
  r.output = &c->out;
  r.priority = priority;
  r.timeout_us = timeout_us;
  b.Submit(r, &c->ticket);
}

std::unique_ptr<Call> Send(DynamicBatcher& b, float v, int64_t rows = 1, int priority = 0,
                           int64_t timeout_us = 0, int64_t width = kWidth) {
  auto c = std::make_unique<Call>();
  Send(b, c.get(), v, rows, priority, timeout_us, width);
  return c;
}

// A model computing f(x) per value, output as wide as the input; plain loops, no allocation once
// its output buffer has grown to the largest batch.
DynamicBatcher::RunFn Elementwise(std::function<float(float)> f) {
  return [f](Batch& b) -> Status {
    const size_t n = static_cast<size_t>(b.rows * b.row_elements);
    if (b.output->size() < static_cast<size_t>(b.max_rows * b.row_elements))
      b.output->resize(static_cast<size_t>(b.max_rows * b.row_elements));
    for (size_t i = 0; i < n; ++i) (*b.output)[i] = f(b.input[i]);
    b.output_row_elements = b.row_elements;
    return Status::OK();
  };
}

// A model that doubles its input and can be held on its first batch, so tests queue requests
// behind it deterministically (no sleeps, no timing).
struct HeldModel {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<void> entered;
  std::atomic<bool> first{true};
  std::mutex mu;
  std::vector<std::vector<float>> batches;  // first values of each row of each batch, in order

  DynamicBatcher::RunFn Fn() {
    auto twice = Elementwise([](float x) { return x * 2; });
    return [this, twice](Batch& b) -> Status {
      if (first.exchange(false)) {
        entered.set_value();
        released.wait();
      }
      {
        std::lock_guard<std::mutex> lock(mu);
        std::vector<float> v;
        for (int64_t i = 0; i < b.rows; ++i) v.push_back(b.input[i * b.row_elements]);
        batches.push_back(v);
      }
      return twice(b);
    };
  }
};

std::vector<float> Rows(float v, int64_t rows = 1) {
  return std::vector<float>(static_cast<size_t>(rows * kWidth), v);
}

TEST(BatcherTest, QueuedRequestsRunAsFullBatchesWithTheirOwnRows) {
  HeldModel m;
  auto b = DynamicBatcher::Create({.max_batch_size = 8, .max_queue_delay_us = 0}, m.Fn());
  ASSERT_TRUE(b.ok()) << b.status().message();
  auto first = Send(**b, -1);
  m.entered.get_future().wait();  // the instance is busy with request -1
  std::vector<std::unique_ptr<Call>> calls;
  for (int i = 0; i < 16; ++i) calls.push_back(Send(**b, float(i)));
  m.release.set_value();
  ASSERT_TRUE(first->Wait().ok());
  for (int i = 0; i < 16; ++i) {
    Status st = calls[i]->Wait();
    ASSERT_TRUE(st.ok()) << st.message();
    EXPECT_EQ(calls[i]->out, Rows(2.0f * i)) << i;  // each request gets back its own rows
    EXPECT_EQ(calls[i]->ticket.output_row_elements(), kWidth);
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
  auto held = Send(**b, -1);
  m.entered.get_future().wait();
  auto a = Send(**b, 1, 3);
  auto c = Send(**b, 2, 1);  // 3 + 1 = 4: a preferred size, runs without waiting 1 s
  m.release.set_value();
  ASSERT_TRUE(a->Wait().ok());
  ASSERT_TRUE(c->Wait().ok());
  EXPECT_EQ(a->out, Rows(2, 3));
  EXPECT_EQ(c->out, Rows(4, 1));
  EXPECT_EQ((*b)->Stats().batch_rows[4], 1);
  auto big = Send(**b, 1, 9);
  Status r = big->Wait();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.message().find("9 rows, more than max_batch_size 8"), std::string::npos);

  // max_batch_size 0: every request alone, whatever its rows (here more than the flat counter's
  // range, so the large-batch count is exercised too).
  HeldModel m2;
  auto off = DynamicBatcher::Create({.max_batch_size = 0}, m2.Fn());
  ASSERT_TRUE(off.ok());
  auto h = Send(**off, -1);
  m2.entered.get_future().wait();
  std::vector<std::unique_ptr<Call>> calls;
  for (int i = 0; i < 5; ++i) calls.push_back(Send(**off, float(i), 20));
  calls.push_back(Send(**off, 9, 300));
  m2.release.set_value();
  for (auto& call : calls) ASSERT_TRUE(call->Wait().ok());
  EXPECT_EQ(calls.back()->out, Rows(18, 300));
  EXPECT_EQ((*off)->Stats().batch_rows[20], 5);
  EXPECT_EQ((*off)->Stats().batch_rows[300], 1);
}

TEST(BatcherTest, FullQueueRefusesAtOnceAndTimeoutsNeverRun) {
  HeldModel m;
  auto b = DynamicBatcher::Create({.max_batch_size = 4, .max_queue_size = 3}, m.Fn());
  ASSERT_TRUE(b.ok());
  auto held = Send(**b, -1);
  m.entered.get_future().wait();
  auto expiring = Send(**b, 7, 1, 0, /*timeout_us=*/1);
  auto q1 = Send(**b, 1);
  auto q2 = Send(**b, 2);
  auto refused = Send(**b, 3);
  ASSERT_TRUE(refused->ticket.Done());  // answered while the instance is still held: at once
  Status r = refused->Wait();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.code(), StatusCode::kResourceExhausted);
  m.release.set_value();
  Status e = expiring->Wait();
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.code(), StatusCode::kDeadlineExceeded);
  ASSERT_TRUE(q1->Wait().ok());
  ASSERT_TRUE(q2->Wait().ok());
  (*b)->Shutdown();
  for (const auto& batch : m.batches) {
    for (float v : batch) EXPECT_NE(v, 7.0f);  // the timed-out request never reached the model
  }
  auto st = (*b)->Stats();
  EXPECT_EQ(st.rejected, 1);
  EXPECT_EQ(st.timed_out, 1);
}

TEST(BatcherTest, HigherPriorityRunsFirstAndRowWidthsDoNotMix) {
  HeldModel m;
  auto b = DynamicBatcher::Create({.max_batch_size = 2, .priority_levels = 2}, m.Fn());
  ASSERT_TRUE(b.ok());
  auto held = Send(**b, -1);
  m.entered.get_future().wait();
  auto low1 = Send(**b, 10, 1, 1);
  auto low2 = Send(**b, 11, 1, 1);
  auto other_width = Send(**b, 30, 1, 0, 0, /*width=*/5);
  auto high = Send(**b, 20, 1, 0);
  m.release.set_value();
  for (auto* c : {&low1, &low2, &other_width, &high}) ASSERT_TRUE((*c)->Wait().ok());
  EXPECT_EQ(other_width->out, std::vector<float>(5, 60.0f));
  (*b)->Shutdown();
  ASSERT_EQ(m.batches.size(), 4u);
  EXPECT_EQ(m.batches[1], (std::vector<float>{30}));      // priority 0, alone: its width differs
  EXPECT_EQ(m.batches[2], (std::vector<float>{20, 10}));  // the other priority-0 request, then FIFO
  EXPECT_EQ(m.batches[3], (std::vector<float>{11}));
}

TEST(BatcherTest, ErrorsReachEveryRequestOfTheBatchAndShutdownDrains) {
  auto b =
      DynamicBatcher::Create({.max_batch_size = 4, .max_queue_delay_us = 1000000, .instances = 2},
                             [](Batch& batch) -> Status {
                               if (batch.input[0] < 0) return InvalidArgument("negative input");
                               return Elementwise([](float x) { return x; })(batch);
                             });
  ASSERT_TRUE(b.ok());
  std::vector<std::unique_ptr<Call>> calls;
  for (int i = 0; i < 3; ++i) calls.push_back(Send(**b, float(i)));
  (*b)->Shutdown();  // does not wait the 1 s delay: drains now
  for (auto& c : calls) ASSERT_TRUE(c->Wait().ok());
  Status after = Send(**b, 1)->Wait();
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.code(), StatusCode::kUnavailable);

  auto bad =
      DynamicBatcher::Create({.max_batch_size = 4, .max_queue_delay_us = 0},
                             [](Batch&) -> Status { return InvalidArgument("broken model"); });
  ASSERT_TRUE(bad.ok());
  Status r = Send(**bad, 1)->Wait();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.message(), "broken model");
  // A model that writes fewer values than the batch needs fails the batch, it is not read past.
  auto short_model = DynamicBatcher::Create({.max_batch_size = 4}, [](Batch& batch) -> Status {
    batch.output->assign(1, 0.0f);
    batch.output_row_elements = 3;
    return Status::OK();
  });
  ASSERT_TRUE(short_model.ok());
  Status s = Send(**short_model, 1, 2)->Wait();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("the model returned 1 values for a batch of 2 rows"),
            std::string::npos)
      << s.message();
  EXPECT_FALSE(DynamicBatcher::Create({.max_batch_size = 4, .preferred_batch_sizes = {6}},
                                      Elementwise([](float x) { return x; }))
                   .ok());
}

// Raw bytes are normalised through the request's table while they are copied into the batch.
TEST(BatcherTest, PixelsAreNormalisedThroughTheTable) {
  auto b = DynamicBatcher::Create({.max_batch_size = 4}, Elementwise([](float x) { return x; }));
  ASSERT_TRUE(b.ok());
  std::vector<float> lut(256);
  for (int i = 0; i < 256; ++i) lut[static_cast<size_t>(i)] = (i / 255.0f - 0.5f) / 0.25f;
  std::vector<uint8_t> pixels = {0, 128, 255, 7, 8, 9};
  std::vector<float> out;
  InferRequest r;
  r.pixels = pixels.data();
  r.lut = lut.data();
  r.rows = 2;
  r.row_elements = 3;
  r.output = &out;
  ASSERT_TRUE((*b)->Run(r).ok());
  ASSERT_EQ(out.size(), 6u);
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(out[i], lut[pixels[i]]) << i;
}

// Work-conserving dispatch (the default): a lone request on an idle instance runs at once, whatever
// the queue delay; requests that arrive while the instance is busy gather into one batch. The
// batcher's own record of why each batch ran is the check, not a clock.
TEST(BatcherTest, IdleInstanceRunsALoneRequestAtOnceAndBusyOnesGather) {
  HeldModel m;
  auto b = DynamicBatcher::Create({.max_batch_size = 8, .max_queue_delay_us = 3600000000}, m.Fn());
  ASSERT_TRUE(b.ok());
  auto lone = Send(**b, -1);
  // Running, though its hour-long delay has not passed (the bound only ends a broken run).
  ASSERT_EQ(m.entered.get_future().wait_for(std::chrono::seconds(60)), std::future_status::ready)
      << "a lone request on an idle instance waited for the queue delay";
  std::vector<std::unique_ptr<Call>> calls;
  for (int i = 0; i < 3; ++i) calls.push_back(Send(**b, float(i)));
  m.release.set_value();
  ASSERT_TRUE(lone->Wait().ok());
  for (auto& c : calls) ASSERT_TRUE(c->Wait().ok());
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
  ASSERT_TRUE(Send(**delay, 5)->Wait().ok());
  st = (*delay)->Stats();
  EXPECT_EQ(st.batches_delay, 1);
  EXPECT_EQ(st.batches_idle, 0);
  EXPECT_EQ(ParseDispatchPolicy("delay").value(), DispatchPolicy::kDelay);
  EXPECT_FALSE(ParseDispatchPolicy("eager").ok());
}

// Run() on an idle batcher with nothing queued runs the request on the caller's own thread: no
// hand-off to a dispatcher and back. While the instance is busy, Run() queues like Submit().
TEST(BatcherTest, RunOnAnIdleInstanceRunsOnTheCallersThread) {
  std::mutex mu;
  std::vector<std::thread::id> ran_on;
  std::promise<void> release, entered;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> n{0};
  auto model = [&, id = Elementwise([](float x) { return x; })](Batch& batch) -> Status {
    {
      std::lock_guard<std::mutex> l(mu);
      ran_on.push_back(std::this_thread::get_id());
    }
    if (n++ == 1) {  // the second batch holds the only instance
      entered.set_value();
      released.wait();
    }
    return id(batch);
  };
  auto b = DynamicBatcher::Create({.max_batch_size = 4, .instances = 1}, model);
  ASSERT_TRUE(b.ok());
  std::vector<float> in(kWidth, 1.0f), out;
  InferRequest r;
  r.input = in.data();
  r.rows = 1;
  r.row_elements = kWidth;
  r.output = &out;
  ASSERT_TRUE((*b)->Run(r).ok());
  EXPECT_EQ(ran_on.at(0), std::this_thread::get_id());
  // Hold the instance from another thread; a Run() now cannot take it and is run by a dispatcher.
  std::thread::id holder_id, queued_id;
  std::thread holder([&] {
    holder_id = std::this_thread::get_id();
    std::vector<float> o;
    InferRequest h = r;
    h.output = &o;
    EXPECT_TRUE((*b)->Run(h).ok());
  });
  entered.get_future().wait();
  std::thread queued([&] {
    queued_id = std::this_thread::get_id();
    std::vector<float> o;
    InferRequest q = r;
    q.output = &o;
    EXPECT_TRUE((*b)->Run(q).ok());
  });
  while ((*b)->QueueSize() == 0) std::this_thread::yield();
  release.set_value();
  holder.join();
  queued.join();
  ASSERT_EQ(ran_on.size(), 3u);
  EXPECT_EQ(ran_on[1], holder_id);  // idle instance: the caller's own thread
  EXPECT_NE(ran_on[2], queued_id);  // busy instance: queued, run by a dispatcher
  auto st = (*b)->Stats();
  EXPECT_EQ(st.requests, 3);
  EXPECT_EQ(st.batches, 3);
}

// Submit(caller_runs) then Await(): what a front end started in one turn runs as one batch on
// the awaiting thread, with no dispatcher woken; each request still gets its own rows back.
TEST(BatcherTest, CallerRunsSubmissionsRunAsOneBatchOnTheAwaitingThread) {
  std::mutex mu;
  std::vector<std::thread::id> ran_on;
  auto id = Elementwise([](float x) { return x + 10; });
  auto model = [&](Batch& batch) -> Status {
    {
      std::lock_guard<std::mutex> l(mu);
      ran_on.push_back(std::this_thread::get_id());
    }
    return id(batch);
  };
  auto b = DynamicBatcher::Create({.max_batch_size = 8, .instances = 2}, model);
  ASSERT_TRUE(b.ok());
  std::vector<std::unique_ptr<Call>> calls;
  for (int i = 0; i < 6; ++i) {
    calls.push_back(std::make_unique<Call>());
    Call* c = calls.back().get();
    c->in.assign(kWidth, float(i));
    InferRequest r;
    r.input = c->in.data();
    r.rows = 1;
    r.row_elements = kWidth;
    r.output = &c->out;
    (*b)->Submit(r, &c->ticket, /*caller_runs=*/true);
  }
  EXPECT_EQ((*b)->QueueSize(), 6);  // no dispatcher took any
  for (auto& c : calls) ASSERT_TRUE((*b)->Await(&c->ticket).ok());
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(calls[static_cast<size_t>(i)]->out, std::vector<float>(kWidth, float(i) + 10));
  }
  ASSERT_EQ(ran_on.size(), 1u);
  EXPECT_EQ(ran_on[0], std::this_thread::get_id());
  auto st = (*b)->Stats();
  EXPECT_EQ(st.batches, 1);
  EXPECT_EQ(st.batch_rows[6], 1);

  // Under Triton's contract the delay still rules: Await() leaves the batch to a dispatcher.
  auto delay = DynamicBatcher::Create(
      {.max_batch_size = 8, .max_queue_delay_us = 1000, .dispatch = DispatchPolicy::kDelay}, model);
  ASSERT_TRUE(delay.ok());
  Call c;
  c.in.assign(kWidth, 1.0f);
  InferRequest r;
  r.input = c.in.data();
  r.rows = 1;
  r.row_elements = kWidth;
  r.output = &c.out;
  (*delay)->Submit(r, &c.ticket, /*caller_runs=*/true);
  ASSERT_TRUE((*delay)->Await(&c.ticket).ok());
  EXPECT_EQ((*delay)->Stats().batches_delay, 1);
  EXPECT_NE(ran_on.back(), std::this_thread::get_id());
}

// Many client threads against two instances: every request gets exactly its own rows back.
TEST(BatcherTest, ConcurrentClientsGetTheirOwnAnswers) {
  auto b = DynamicBatcher::Create({.max_batch_size = 16, .max_queue_delay_us = 200, .instances = 2},
                                  Elementwise([](float x) { return x * 2 + 1; }));
  ASSERT_TRUE(b.ok());
  std::atomic<int> wrong{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 8; ++t) {
    clients.emplace_back([&, t] {
      Call c;
      for (int i = 0; i < 200; ++i) {
        float v = float(t * 1000 + i);
        Send(**b, &c, v, 1 + i % 3);
        if (!c.Wait().ok() || c.out != Rows(2 * v + 1, 1 + i % 3)) ++wrong;
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

// The request path allocates nothing once warm: four clients reusing their buffers, two
// instances, batches of every size up to eight, and not one operator new between the marks
// (the counting allocator above). The model here is plain loops; a LibTorch model allocates in
// its own forward pass, once per batch, never per request.
TEST(BatcherTest, SteadyStateRequestsAllocateNothing) {
  auto b = DynamicBatcher::Create({.max_batch_size = 8, .instances = 2},
                                  Elementwise([](float x) { return x + 1; }));
  ASSERT_TRUE(b.ok());
  constexpr int kClients = 4;
  std::atomic<int> warm{0}, wrong{0};
  std::atomic<bool> go{false};
  std::atomic<int> done{0};
  auto all_used = [&] {
    for (int64_t n : (*b)->Stats().batches_per_instance)
      if (n < 10) return false;
    return true;
  };
  std::vector<std::thread> clients;
  for (int t = 0; t < kClients; ++t) {
    clients.emplace_back([&, t] {
      Call c;
      c.in.assign(kWidth * 2, float(t));
      c.out.reserve(kWidth * 2);
      InferRequest r;
      r.input = c.in.data();
      r.row_elements = kWidth;
      r.output = &c.out;
      // Half the clients queue (Submit + Wait), half call Run (which may run on their own thread).
      auto one = [&](int i) {
        r.rows = 1 + i % 2;
        Status st;
        if (t % 2) {
          st = (*b)->Run(r, &c.ticket);
        } else {
          (*b)->Submit(r, &c.ticket);
          st = c.ticket.Wait();
        }
        if (!st.ok() || c.out[0] != float(t) + 1) ++wrong;
      };
      // Warm: every instance has run batches (each sizes its buffers on its first batch).
      for (int i = 0; i < 300 || !all_used(); ++i) one(i);
      ++warm;
      while (!go.load()) std::this_thread::yield();
      for (int i = 0; i < 2000; ++i) one(i);
      ++done;
    });
  }
  while (warm.load() < kClients) std::this_thread::yield();
  g_allocations = 0;
  g_counting = true;
  go = true;
  while (done.load() < kClients) std::this_thread::yield();
  g_counting = false;
  for (auto& c : clients) c.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(g_allocations.load(), 0) << "allocations on the request path in steady state";
  EXPECT_GE((*b)->Stats().requests, kClients * 2300);
}

}  // namespace
}  // namespace ronghe::serve
