// The line against what breaks lines: overload (a slowed model), cameras that fail, stop or never
// answer, the batcher's mixing of cameras, the novelty detector's false-alarm rate, real video,
// and an adaptation whose labels are wrong. Uses the committed example model
// (examples/serving/repo/fashion-cnn) and the fetched Fashion-MNIST and OpenCV media.
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "ronghe/data/datasets.h"
#include "ronghe/nn/artifact.h"
#include "ronghe/serve/repository.h"
#include "ronghe/store/run_store.h"
#include "ronghe/store/stream_store.h"
#include "ronghe/stream/adapt.h"
#include "ronghe/stream/novelty.h"
#include "ronghe/stream/pipeline.h"
#include "ronghe/stream/source.h"

namespace ronghe::stream {
namespace {

namespace fs = std::filesystem;

std::string Home() {
  const char* h = std::getenv("RONGHE_HOME");
  if (h && *h) return h;
  return std::string(std::getenv("HOME") ? std::getenv("HOME") : ".") + "/.ronghe";
}

class StreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = "/tmp/ronghe-stream-test-" +
           std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + "-" +
           std::to_string(::getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_ + "/repo/fashion/1");
    fs::copy_file(std::string(RONGHE_SOURCE_DIR) + "/examples/serving/repo/fashion-cnn/1/model.rhm",
                  dir_ + "/repo/fashion/1/model.rhm");
    ASSERT_TRUE(data::CheckDatasetPresent(Home(), "fashion-mnist").ok());
    const std::string d = data::DatasetDir(Home(), "fashion-mnist") + "/";
    auto set = LoadIdxImages(d + "t10k-images-idx3-ubyte.gz", d + "t10k-labels-idx1-ubyte.gz");
    ASSERT_TRUE(set.ok()) << set.status().message();
    fashion_ = *set;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<serve::ModelRepository> Repo(int64_t max_batch) {
    serve::RepositoryOptions o;
    o.dir = dir_ + "/repo";
    o.max_batch_size = max_batch;
    o.max_queue_delay_us = 0;
    o.instances = 1;
    o.embeddings = true;
    auto r = serve::ModelRepository::Open(o);
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? std::move(r).value() : nullptr;
  }

  SourceSpec Replay(const std::string& name, double fps, int64_t limit = 0, uint64_t seed = 1) {
    SourceSpec s;
    s.name = name;
    ReplayOptions r;
    r.fps = fps;
    r.limit = limit;
    r.seed = seed;
    auto set = fashion_;
    s.open = [set, r]() -> Result<std::unique_ptr<FrameSource>> { return ReplaySource(set, r); };
    return s;
  }

  PipelineOptions Options(serve::ModelRepository* repo) {
    PipelineOptions o;
    o.line = "test-line";
    o.model = "fashion";
    o.repo = repo;
    o.home = Home();
    o.calibration_frames = 1000;
    return o;
  }

  std::string dir_;
  std::shared_ptr<const ImageSet> fashion_;
};

TEST_F(StreamTest, FrameAccountingIsExactUnderOverloadAndQueuesStayBounded) {
  auto repo = Repo(8);
  PipelineOptions o = Options(repo.get());
  o.max_batch = 8;
  o.max_wait_us = 1000;
  o.queue_depth = 2;
  o.slow_model_ms = 40;  // at most 8 frames per 40 ms = 200 frames/s, against 600 offered
  std::vector<SourceSpec> cams;
  for (int i = 0; i < 12; ++i) cams.push_back(Replay("cam-" + std::to_string(i), 50, 0, i + 1));
  auto line = Pipeline::Start(o, std::move(cams));
  ASSERT_TRUE(line.ok()) << line.status().message();
  int64_t max_queued = 0;
  for (int i = 0; i < 20; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    LineStats s = (*line)->Stats();
    max_queued = std::max(max_queued, s.queued);
    // At every moment: in = decided + dropped + queued + (at most one batch) in flight.
    EXPECT_LE(s.decided + s.dropped + s.queued, s.frames_in);
    EXPECT_LE(s.frames_in - (s.decided + s.dropped + s.queued), o.max_batch);
  }
  (*line)->Stop();
  LineStats s = (*line)->Stats();
  EXPECT_LE(max_queued, 12 * 2);
  EXPECT_GT(s.dropped, 0) << "the slowed model must have fallen behind";
  EXPECT_EQ(s.queued, 0);
  for (const auto& c : s.sources) {
    EXPECT_EQ(c.frames_in, c.decided + c.dropped) << c.name;
    EXPECT_GT(c.decided, 0) << c.name << ": every camera gets its turn";
  }
  EXPECT_GT(s.mixed_batches, 0) << "one batch holds frames of several cameras";
}

TEST_F(StreamTest, BrokenCamerasAreReportedByNameWhileTheOthersGoOn) {
  auto repo = Repo(16);
  const std::string corrupt = dir_ + "/corrupt.avi";
  {
    std::ofstream f(corrupt, std::ios::binary);
    for (int i = 0; i < 100000; ++i) f.put(static_cast<char>((i * 7919) & 0xff));
  }
  std::vector<SourceSpec> cams;
  cams.push_back(Replay("good", 100));
  cams.push_back(Replay("stops", 100, 5));
  SourceSpec bad;
  bad.name = "corrupt";
  bad.open = [corrupt]() {
    VideoOptions v;
    v.url = corrupt;
    return OpenVideo(v);
  };
  cams.push_back(bad);
  SourceSpec gone;
  gone.name = "unreachable";
  gone.open = []() {
    VideoOptions v;
    v.url = "rtsp://127.0.0.1:9/none";
    v.live = true;
    v.open_timeout_s = 1;
    return OpenVideo(v);
  };
  cams.push_back(gone);
  auto line = Pipeline::Start(Options(repo.get()), std::move(cams));
  ASSERT_TRUE(line.ok()) << line.status().message();
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  (*line)->Stop();
  LineStats s = (*line)->Stats();
  std::map<std::string, SourceStats> by;
  for (const auto& c : s.sources) by[c.name] = c;
  EXPECT_EQ(by["corrupt"].state, "failed");
  EXPECT_NE(by["corrupt"].detail.find("corrupt.avi"), std::string::npos) << by["corrupt"].detail;
  EXPECT_EQ(by["unreachable"].state, "failed");
  EXPECT_NE(by["unreachable"].detail.find("rtsp://127.0.0.1:9/none"), std::string::npos);
  EXPECT_EQ(by["stops"].state, "ended");
  EXPECT_EQ(by["stops"].frames_in, 5);
  EXPECT_EQ(by["stops"].decided + by["stops"].dropped, 5);
  EXPECT_GT(by["good"].decided, 100);
  EXPECT_EQ(by["good"].frames_in, by["good"].decided + by["good"].dropped);
}

TEST_F(StreamTest, RealVideoIsDecodedToGreyFramesAndClassified) {
  const std::string vtest = data::DatasetDir(Home(), "opencv") + "/vtest.avi";
  const std::string tree = data::DatasetDir(Home(), "opencv") + "/tree.avi";
  ASSERT_TRUE(data::CheckDatasetPresent(Home(), "opencv").ok()) << "run ronghe data fetch opencv";
  VideoOptions v;
  v.url = vtest;
  v.loop = false;
  auto src = OpenVideo(v);
  ASSERT_TRUE(src.ok()) << src.status().message();
  RawFrame f;
  int64_t frames = 0;
  while (true) {
    auto got = (*src)->Read(&f);
    ASSERT_TRUE(got.ok()) << got.status().message();
    if (!*got) break;
    EXPECT_EQ(f.width, 768);
    EXPECT_EQ(f.height, 576);
    ++frames;
  }
  EXPECT_EQ(frames, 795);  // the street camera's every frame, MPEG-4 (msmpeg4) decoded
  // A looping file camera in a line, its region of interest resized to the model's input.
  auto repo = Repo(16);
  SourceSpec cam;
  cam.name = "tree";
  cam.roi = {80, 0, 160, 240};
  cam.open = [tree]() {
    VideoOptions o;
    o.url = tree;
    o.fps = 50;
    return OpenVideo(o);
  };
  auto line = Pipeline::Start(Options(repo.get()), {cam});
  ASSERT_TRUE(line.ok()) << line.status().message();
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  (*line)->Stop();
  LineStats s = (*line)->Stats();
  EXPECT_EQ(s.sources[0].state, "running");
  EXPECT_GT(s.decided, 30);
  EXPECT_EQ(s.frames_in, s.decided + s.dropped);
}

// A live camera: a stream served over HTTP by a real server (the street camera's file), read as
// delivered rather than paced, beside a replayed camera; every frame accounted for.
TEST_F(StreamTest, ALiveStreamIsReadAsDelivered) {
  ASSERT_TRUE(data::CheckDatasetPresent(Home(), "opencv").ok()) << "run ronghe data fetch opencv";
  auto server = std::make_unique<httplib::Server>();
  const std::string video = data::DatasetDir(Home(), "opencv") + "/vtest.avi";
  server->Get("/cam.avi", [video](const httplib::Request&, httplib::Response& res) {
    std::ifstream f(video, std::ios::binary);
    std::string body((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    res.set_content(body, "video/x-msvideo");
  });
  const int port = server->bind_to_any_port("127.0.0.1");
  ASSERT_GT(port, 0);
  std::thread t([&] { server->listen_after_bind(); });
  for (int i = 0; i < 500 && !server->is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  auto repo = Repo(16);
  SourceSpec cam;
  cam.name = "live";
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/cam.avi";
  cam.open = [url]() {
    VideoOptions o;
    o.url = url;
    o.live = true;
    o.open_timeout_s = 2;
    return OpenVideo(o);
  };
  std::vector<SourceSpec> cams = {cam, Replay("replay", 20)};
  auto line = Pipeline::Start(Options(repo.get()), std::move(cams));
  ASSERT_TRUE(line.ok()) << line.status().message();
  for (int i = 0; i < 1200 && (*line)->Stats().sources[0].frames_in < 50; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  (*line)->Stop();
  server->stop();
  t.join();
  LineStats s = (*line)->Stats();
  EXPECT_NE(s.sources[0].state, "failed") << s.sources[0].detail;
  EXPECT_GE(s.sources[0].frames_in, 50);
  EXPECT_EQ(s.sources[0].frames_in, s.sources[0].decided + s.sources[0].dropped);
  EXPECT_EQ(s.sources[1].frames_in, s.sources[1].decided + s.sources[1].dropped);
  EXPECT_GT(s.sources[1].decided, 0);
}

TEST_F(StreamTest, NoveltyFalseAlarmRateOnKnownClassesIsNearItsCalibratedValue) {
  auto repo = Repo(256);
  auto v = repo->Resolve("fashion", "");
  ASSERT_TRUE(v.ok());
  for (const char* score : {"energy", "mahalanobis"}) {
    SCOPED_TRACE(score);
    auto cal = CalibrateNovelty(**v, Home(), 0.05, 5000, score);
    ASSERT_TRUE(cal.ok()) << cal.status().message();
    EXPECT_NEAR(cal->measured_rate, 0.05, 0.005);
    std::vector<double> scratch;
    // On frames it was not calibrated on (the official test set), the rate stays near 5%.
    int64_t flagged = 0;
    const int64_t n = 4000;
    std::vector<float> x(static_cast<size_t>(256 * 784));
    const auto& pre = (*v)->manifest()["preprocessing"];
    const double mean = pre["mean"], sd = pre["std"], scale = pre["scale"];
    for (int64_t i = 0; i < n; i += 256) {
      const int64_t rows = std::min<int64_t>(256, n - i);
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t k = 0; k < 784; ++k) {
          x[static_cast<size_t>(r * 784 + k)] =
              static_cast<float>((fashion_->image(i + r)[k] * scale - mean) / sd);
        }
      }
      serve::InferRequest req;
      req.input = x.data();
      req.rows = rows;
      req.row_elements = 784;
      std::vector<float> out;
      req.output = &out;
      int64_t width = 0;
      ASSERT_TRUE((*v)->Run(req, &width).ok());
      for (int64_t r = 0; r < rows; ++r) {
        const float* row = out.data() + r * width;
        const double s = std::string(score) == "energy"
                             ? Energy(row, (*v)->outputs())
                             : cal->gaussians.Distance(row + (*v)->outputs(), &scratch);
        flagged += s > cal->threshold;
      }
    }
    const double rate = static_cast<double>(flagged) / static_cast<double>(n);
    EXPECT_GT(rate, 0.02);
    EXPECT_LT(rate, 0.10);
  }
}

TEST_F(StreamTest, AdaptationWithWrongLabelsIsRefusedByItsGateAndReleasesNothing) {
  // Ten frames of trousers labelled as a "new" class.
  std::vector<store::ReviewFrame> frames;
  for (int64_t i = 0; i < fashion_->count && frames.size() < 10; ++i) {
    if (fashion_->labels[static_cast<size_t>(i)] != 1) continue;
    store::ReviewFrame f;
    f.id = i;
    f.height = f.width = 28;
    f.pixels.assign(reinterpret_cast<const char*>(fashion_->image(i)), 784);
    frames.push_back(f);
  }
  AdaptRequest r;
  r.options.k = 10;
  r.options.holdout = 3;
  r.options.epochs = 5;
  r.options.replay_per_class = 50;
  r.repo = dir_ + "/repo";
  r.model = "fashion";
  r.home = dir_ + "/home";
  fs::create_directories(r.home);
  fs::create_symlink(Home() + "/data", r.home + "/data");
  r.new_class = "not-a-defect";
  r.frames = frames;
  auto res = Adapt(r);
  ASSERT_TRUE(res.ok()) << res.status().message();
  // The known classes' rows are frozen and the new class's bias is lowered until they lose
  // little on validation; frames that are really trousers then stay trousers, and the held-out
  // "new" frames are not recognised: the recall gate refuses.
  EXPECT_FALSE(res->released) << res->reason;
  EXPECT_NE(res->reason.find("new class recall"), std::string::npos) << res->reason;
  EXPECT_LT(res->new_recall, 0.5);
  EXPECT_EQ(LatestVersion(r.repo, "fashion"), 1) << "nothing released";
  // Fewer than K frames: no job at all.
  r.frames.resize(5);
  EXPECT_EQ(Adapt(r).status().code(), StatusCode::kFailedPrecondition);
}

// A line follows the repository to a new version, judges it, and rolls back one whose p99
// latency is far off the old one's (here: a model too big for the line's rate). The rollback is in
// the store: the line started again (as after a crash mid-rollout) comes back on the version it
// rolled back to, and a later good version is followed again.
TEST_F(StreamTest, ALineRollsBackAVersionTooSlowForItAndARestartedLineStaysOffIt) {
  const std::string repo_dir = dir_ + "/repo";
  std::ofstream(repo_dir + "/fashion/config.toml")
      << "[versions]\npolicy = \"latest\"\nlatest = 3\n";
  auto store = store::StreamStore::Open(dir_ + "/ronghe.db");
  ASSERT_TRUE(store.ok()) << store.status().message();
  serve::RepositoryOptions ro;
  ro.dir = repo_dir;
  ro.max_batch_size = 64;
  ro.max_queue_delay_us = 0;
  ro.instances = 1;
  auto repo = serve::ModelRepository::Open(ro);
  ASSERT_TRUE(repo.ok()) << repo.status().message();
  (*repo)->StartWatch(0.1);
  PipelineOptions o = Options(repo->get());
  o.store = store->get();
  o.novelty_score = "energy";
  o.false_alarm_rate = 0.02;
  o.rollback_window = 200;
  o.follow_every_s = 0.1;
  o.flush_every_s = 0.1;
  auto cams = [&] {
    std::vector<SourceSpec> v;
    for (int i = 0; i < 8; ++i) v.push_back(Replay("cam-" + std::to_string(i), 50, 0, i + 1));
    return v;
  };
  auto line = Pipeline::Start(o, cams());
  ASSERT_TRUE(line.ok()) << line.status().message();
  // `slow`: a model with wide convolutions (256 and 512 channels: about 230 M multiply-adds a
  // frame, 90 G a second at the line's 400 frames/s), which no CPU of this class runs at the line's
  // rate, so its queue fills and its p99 is far above the old version's. (128/256 channels was not
  // enough: CI's faster cores ran it at 2.4x the old p99, under the 3x threshold.)
  auto install = [&](int64_t version, bool slow) {
    auto a = nn::LoadArtifact(repo_dir + "/fashion/1/model.rhm");
    ASSERT_TRUE(a.ok());
    nlohmann::json m = a->manifest;
    std::unique_ptr<nn::Model> model = std::move(a->model);
    if (slow) {
      nn::ModelConfig c = model->config();
      c.channels = {256, 512};
      c.dense = 512;
      model = nn::Model::Create(c).value();
      m["model"] = c.ToJson();
    }
    const std::string tmp = repo_dir + "/.tmp",
                      dst = repo_dir + "/fashion/" + std::to_string(version);
    fs::create_directories(tmp);
    ASSERT_TRUE(nn::SaveArtifact(tmp + "/model.rhm", *model, m).ok());
    fs::rename(tmp, dst);
  };
  auto wait_for = [&](const std::function<bool()>& pred) {
    for (int i = 0; i < 600 && !pred(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    return pred();
  };
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  install(2, true);
  ASSERT_TRUE(wait_for([&] {
    auto rb = (*store)->RolledBack("test-line", "fashion");
    return rb.ok() && !rb->empty();
  })) << "no rollback; line at version "
      << (*line)->Stats().version;
  EXPECT_EQ((*store)->RolledBack("test-line", "fashion").value(), std::vector<int64_t>{2});
  EXPECT_TRUE(wait_for([&] { return (*line)->Stats().version == 1; }));
  EXPECT_TRUE((*line)->Stats().pinned);
  (*line)->Stop();
  LineStats before = (*line)->Stats();
  for (const auto& c : before.sources) EXPECT_EQ(c.frames_in, c.decided + c.dropped) << c.name;
  line->reset();

  // Started again: version 2 is the repository's newest, and this line stays off it.
  auto again = Pipeline::Start(o, cams());
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_EQ((*again)->Stats().version, 1);
  EXPECT_TRUE((*again)->Stats().pinned);
  // A good version 3 is followed and kept.
  install(3, false);
  EXPECT_TRUE(wait_for([&] { return (*again)->Stats().version == 3; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));
  EXPECT_EQ((*again)->Stats().version, 3);
  EXPECT_FALSE((*again)->Stats().pinned);
  (*again)->Stop();
  (*repo)->StopWatch();
}

}  // namespace
}  // namespace ronghe::stream
