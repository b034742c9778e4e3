#include "ronghe/store/run_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstdio>

#include "ronghe/base/file.h"
#include "ronghe/base/subprocess.h"

namespace ronghe::store {
namespace {

std::string FreshDb(const std::string& name) {
  std::string dir = ::testing::TempDir() + "/ronghe_store_test";
  EXPECT_TRUE(MakeDirs(dir).ok());
  std::string p = dir + "/" + name + ".db";
  for (auto suffix : {"", "-wal", "-shm"}) std::remove((p + suffix).c_str());
  return p;
}

TEST(RunStoreTest, RecordsAJobEndToEnd) {
  auto store = RunStore::Open(FreshDb("e2e"));
  ASSERT_TRUE(store.ok()) << store.status().message();
  EXPECT_EQ(*(*store)->SchemaVersion(), RunStore::LatestSchemaVersion());
  int64_t id;
  {
    auto job = Job::Start(store->get(), "train", "mlp", R"({"lr":0.1})");
    ASSERT_TRUE(job.ok());
    id = (*job)->id();
    ASSERT_TRUE((*job)->Metrics({{1, "val", "loss", 0.5}, {1, "val", "accuracy", 0.9}}).ok());
    ASSERT_TRUE((*job)->Artifact({"model", "/tmp/m.rhm", "abc", 123}).ok());
    ASSERT_TRUE((*job)->Finish(Status::OK()).ok());
  }
  auto run = (*store)->GetRun(id);
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run->status, "succeeded");
  EXPECT_EQ(run->kind, "train");
  EXPECT_EQ(run->config_json, R"({"lr":0.1})");
  ASSERT_EQ(run->metrics.size(), 2u);
  EXPECT_EQ(run->metrics[1].name, "accuracy");
  EXPECT_DOUBLE_EQ(run->metrics[1].value, 0.9);
  ASSERT_EQ(run->artifacts.size(), 1u);
  EXPECT_EQ(run->artifacts[0].bytes, 123);
  ASSERT_TRUE(run->resources.has_value());
  EXPECT_GT(run->resources->peak_rss_bytes, 0);
  EXPECT_EQ(run->resources->device, "cpu");
  EXPECT_GT(run->finished_at, 0);
}

TEST(RunStoreTest, JobWithoutFinishIsFailedAndErrorsAreKept) {
  auto store = RunStore::Open(FreshDb("fail"));
  ASSERT_TRUE(store.ok());
  int64_t a, b;
  {
    auto job = Job::Start(store->get(), "train", "x", "{}");
    a = (*job)->id();
  }
  {
    auto job = Job::Start(store->get(), "train", "y", "{}");
    b = (*job)->id();
    ASSERT_TRUE((*job)->Finish(DataLoss("model.rhm: checksum mismatch")).ok());
  }
  EXPECT_EQ((*store)->GetRun(a)->status, "failed");
  EXPECT_EQ((*store)->GetRun(b)->error, "model.rhm: checksum mismatch");
  EXPECT_EQ((*store)->GetRun(999).status().code(), StatusCode::kNotFound);
}

TEST(RunStoreTest, ResumedJobAccumulatesResources) {
  auto store = RunStore::Open(FreshDb("resume"));
  int64_t id;
  {
    auto job = Job::Start(store->get(), "train", "x", "{}");
    id = (*job)->id();
    ASSERT_TRUE((*job)->Finish(Internal("killed")).ok());
  }
  double first = (*store)->GetRun(id)->resources->cpu_user_seconds;
  {
    auto job = Job::Resume(store->get(), id);
    ASSERT_TRUE(job.ok());
    EXPECT_EQ((*store)->GetRun(id)->status, "running");
    volatile double x = 0;
    for (int i = 0; i < 20000000; ++i) x = x + i;
    ASSERT_TRUE((*job)->Finish(Status::OK()).ok());
  }
  auto run = (*store)->GetRun(id);
  EXPECT_EQ(run->status, "succeeded");
  EXPECT_GT(run->resources->cpu_user_seconds, first);
}

TEST(RunStoreTest, DeadProcessReadsAsInterrupted) {
  std::string path = FreshDb("dead");
  // The child exits without Finish and without destructors.
  auto child = Subprocess::Fork([&]() -> int {
    auto store = RunStore::Open(path);
    auto job = Job::Start(store->get(), "train", "doomed", "{}");
    _exit(job.ok() ? 0 : 1);  // here, so that not even the Job's destructor runs
  });
  ASSERT_TRUE(child.ok());
  ASSERT_EQ(child->Wait()->AsInt(), 0);
  auto store = RunStore::Open(path);
  auto runs = (*store)->ListRuns();
  ASSERT_TRUE(runs.ok());
  ASSERT_EQ(runs->size(), 1u);
  EXPECT_EQ((*runs)[0].status, "interrupted");
}

// Several processes write at once: nothing may be lost or corrupted.
TEST(RunStoreTest, ConcurrentProcessesLoseNothing) {
  std::string path = FreshDb("concurrent");
  constexpr int kProcs = 6, kRuns = 25, kMetrics = 8;
  std::vector<Subprocess> kids;
  for (int p = 0; p < kProcs; ++p) {
    auto kid = Subprocess::Fork([&, p] {
      auto store = RunStore::Open(path);
      if (!store.ok()) {
        fprintf(stderr, "open: %s\n", store.status().ToString().c_str());
        return 2;
      }
      for (int r = 0; r < kRuns; ++r) {
        auto job = Job::Start(store->get(), "train", "p" + std::to_string(p), "{}");
        if (!job.ok()) return 3;
        for (int m = 0; m < kMetrics; ++m) {
          if (!(*job)->Metrics({{m, "train", "loss", double(p * 1000 + r)}}).ok()) return 4;
        }
        if (!(*job)->Finish(Status::OK()).ok()) return 5;
      }
      return 0;
    });
    ASSERT_TRUE(kid.ok());
    kids.push_back(std::move(*kid));
  }
  for (auto& k : kids) {
    auto status = k.Wait();
    ASSERT_TRUE(status.ok());
    ASSERT_FALSE(status->signaled);
    EXPECT_EQ(status->code, 0);
  }
  auto store = RunStore::Open(path);
  auto runs = (*store)->ListRuns(10000);
  ASSERT_TRUE(runs.ok());
  ASSERT_EQ(runs->size(), size_t(kProcs * kRuns));
  for (const auto& r : *runs) {
    EXPECT_EQ(r.status, "succeeded");
    EXPECT_EQ(r.metrics.size(), size_t(kMetrics));
    EXPECT_TRUE(r.resources.has_value());
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, nullptr);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)), "ok");
  sqlite3_finalize(st);
  sqlite3_close(db);
}

TEST(RunStoreTest, RefusesGarbageAndNewerSchemas) {
  std::string garbage = FreshDb("garbage");
  ASSERT_TRUE(WriteFileAtomic(garbage, std::string(4096, 'x')).ok());
  auto bad = RunStore::Open(garbage);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(garbage), std::string::npos) << bad.status().message();
  EXPECT_EQ(*ReadFile(garbage), std::string(4096, 'x'));  // untouched

  std::string newer = FreshDb("newer");
  {
    auto s = RunStore::Open(newer);
    ASSERT_TRUE(s.ok());
  }
  sqlite3* db = nullptr;
  sqlite3_open(newer.c_str(), &db);
  sqlite3_exec(db, "PRAGMA user_version = 99", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  auto s = RunStore::Open(newer);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("newer"), std::string::npos) << s.status().message();
}

TEST(RunStoreTest, CheckpointAndItsMetricsLandTogetherAndTheNewestWins) {
  auto store = RunStore::Open(FreshDb("checkpoint"));
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto id = (*store)->CreateRun("fed", "fraud", "{}");
  ASSERT_TRUE(id.ok());
  auto none = (*store)->LatestCheckpoint(*id);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  std::string blob("\0\1\2binary\0", 10);
  ASSERT_TRUE(
      (*store)->SaveCheckpoint(*id, {1, blob, "{\"round\":1}"}, {{1, "fed", "loss", 0.5}}).ok());
  ASSERT_TRUE((*store)
                  ->SaveCheckpoint(*id, {2, blob + "x", "{\"round\":2}"}, {{2, "fed", "loss", 0.4}})
                  .ok());
  auto cp = (*store)->LatestCheckpoint(*id);
  ASSERT_TRUE(cp.ok() && cp->has_value());
  EXPECT_EQ((*cp)->step, 2);
  EXPECT_EQ((*cp)->state, blob + "x");  // binary-safe, NULs included
  EXPECT_EQ((*cp)->meta_json, "{\"round\":2}");
  auto run = (*store)->GetRun(*id);
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run->metrics.size(), 2u);
  EXPECT_FALSE((*store)->GetCheckpoint(*id, 1)->has_value());  // keep = 1: only the newest
  ASSERT_TRUE((*store)->SaveCheckpoint(*id, {3, "c", "{}"}, {}, 0).ok());
  ASSERT_TRUE((*store)->SaveCheckpoint(*id, {4, "d", "{}"}, {}, 0).ok());
  auto third = (*store)->GetCheckpoint(*id, 3);
  ASSERT_TRUE(third.ok() && third->has_value());  // keep = 0: all of them
  EXPECT_EQ((*third)->state, "c");
}

}  // namespace
}  // namespace ronghe::store
