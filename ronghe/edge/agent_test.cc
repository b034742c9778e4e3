// The over-the-air agent against a real hub directory (TUF metadata, Ed25519 signatures) and real
// load series: a good update is taken, a tampered file and a NaN model are refused with the
// reason, a version that degrades after the switch is rolled back, and a restart comes back on a
// consistent version.
#include "ronghe/edge/agent.h"

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "ronghe/base/file.h"
#include "ronghe/data/source.h"
#include "ronghe/edge/export.h"
#include "ronghe/edge/format.h"
#include "ronghe/hub/hub.h"
#include "ronghe/hub/keys.h"
#include "ronghe/train/trainer.h"

namespace ronghe::edge {
namespace {

namespace fs = std::filesystem;

std::string Home() {
  const char* h = std::getenv("RONGHE_HOME");
  if (h && *h) return h;
  return std::string(std::getenv("HOME") ? std::getenv("HOME") : ".") + "/.ronghe";
}

class AgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/agent-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    key_ = std::make_unique<hub::SigningKey>(hub::SigningKey::Generate().value());
    ASSERT_TRUE(hub::InitHub(dir_ + "/hub", *key_, {}).ok());
    auto d = data::LoadData(data::DefaultDataOptions("gretl_load"), Home());
    ASSERT_TRUE(d.ok()) << d.status().message();
    data_ = std::move(d).value();
    nn::ModelConfig c;
    c.kind = "gru";
    c.input_shape = data_.input_shape;
    c.outputs = 1;
    c.lstm_hidden = 16;
    torch::manual_seed(3);
    model_ = nn::Model::Create(c).value();
    train::TrainOptions t;
    t.epochs = 15;
    t.batch_size = 32;
    t.lr = 5e-3;
    t.progress = "off";
    ASSERT_TRUE(
        train::Trainer::Create(t, model_.get(), &data_, nullptr, "").value()->Run(false).ok());
    model_->SetTraining(false);
    nlohmann::json m = {
        {"name", "load"}, {"task", "regression"}, {"preprocessing", data_.preprocessing}};
    good_ = ExportEdge(*model_, m, {}, nullptr).value();
    // The raw rows of the series from the start of the test split: what the meter reports.
    const double mean = data_.preprocessing["mean"], sd = data_.preprocessing["std"];
    const auto& cov = data_.preprocessing["covariates"][0];
    for (int64_t i = 0; i < data_.test.size(); ++i) {
      rows_.push_back(
          {static_cast<float>(data_.test.x[i][23][0].item<double>() * sd + mean),
           static_cast<float>(data_.test.x[i][23][1].item<double>() * cov["std"].get<double>() +
                              cov["mean"].get<double>())});
    }
  }

  // `bytes` published as load@version.
  void Publish(const std::string& version, const std::string& bytes) {
    const std::string src = dir_ + "/src-" + version + ".rhe";
    ASSERT_TRUE(WriteFileAtomic(src, bytes).ok());
    std::ofstream(dir_ + "/card.md") << "# load\n";
    hub::PublishRequest r;
    r.model_path = src;
    r.card_path = dir_ + "/card.md";
    r.name = "load";
    r.version = version;
    r.provenance = {{"test", true}};
    ASSERT_TRUE(hub::Publish(dir_ + "/hub", r, *key_).ok());
  }

  // The good model with its output bias moved by `shift` standard units (NaN: a broken model).
  std::string Shifted(float shift) {
    Artifact a = Parse(good_, "good").value();
    Tensor& b = a.tensors.at("proj.bias");
    reinterpret_cast<float*>(b.data.data())[0] += shift;
    return Serialize(a).value();
  }

  AgentOptions Options(const std::string& state = "state") {
    AgentOptions o;
    o.hub = dir_ + "/hub";
    o.model = "load";
    o.node = "substation-7";
    o.state_dir = dir_ + "/" + state;
    return o;
  }

  std::vector<std::string> Kinds(Agent& a) {
    std::vector<std::string> k;
    int64_t dropped = 0;
    for (const auto& e : a.TakeEvents(&dropped))
      k.push_back(e["kind"].get<std::string>() + " " + e["version"].get<std::string>());
    return k;
  }

  std::string dir_;
  std::unique_ptr<hub::SigningKey> key_;
  data::LoadedData data_;
  std::unique_ptr<nn::Model> model_;
  std::string good_;
  std::vector<std::vector<float>> rows_;
};

TEST_F(AgentTest, TakesAGoodUpdateAndRefusesATamperedFileAndANanModelWithTheReason) {
  Publish("1.0.0", good_);
  Node node;
  auto agent = Agent::Open(Options(), &node);
  ASSERT_TRUE(agent.ok()) << agent.status().message();
  ASSERT_TRUE((*agent)->CheckForUpdate().ok());
  EXPECT_EQ(node.Current().version, "1.0.0");
  for (size_t i = 0; i < 60; ++i) ASSERT_TRUE((*agent)->Observe(rows_[i]).ok());
  auto f = (*agent)->Forecast();
  ASSERT_TRUE(f.ok());
  EXPECT_GT((*f)[0], 1000);  // megawatts
  EXPECT_FALSE((*agent)->Describe()["recent_mape"].is_null());

  // A file changed on the hub after it was signed.
  Publish("1.1.0", Shifted(0.01f));
  {
    const std::string f = dir_ + "/hub/targets/load/1.1.0/model.rhe";
    std::string b = ReadFile(f).value();
    b[b.size() / 2] ^= 1;
    ASSERT_TRUE(WriteFileAtomic(f, b).ok());
  }
  ASSERT_TRUE((*agent)->CheckForUpdate().ok());
  EXPECT_EQ(node.Current().version, "1.0.0");
  // A model that forecasts NaN.
  Publish("1.2.0", Shifted(std::nanf("")));
  ASSERT_TRUE((*agent)->CheckForUpdate().ok());
  EXPECT_EQ(node.Current().version, "1.0.0");
  // A clearly worse one (2 standard deviations off), judged on the node's recent windows.
  Publish("1.3.0", Shifted(2.0f));
  ASSERT_TRUE((*agent)->CheckForUpdate().ok());
  EXPECT_EQ(node.Current().version, "1.0.0");
  int64_t dropped = 0;
  auto events = (*agent)->TakeEvents(&dropped);
  std::map<std::string, std::string> why;
  for (const auto& e : events)
    why[e["version"]] = e["kind"].get<std::string>() + ": " + e["detail"].get<std::string>();
  EXPECT_EQ(why["1.0.0"].rfind("switched", 0), 0u) << why["1.0.0"];
  EXPECT_EQ(why["1.1.0"].rfind("refused", 0), 0u) << why["1.1.0"];
  EXPECT_NE(why["1.1.0"].find("sha256"), std::string::npos) << why["1.1.0"];
  EXPECT_NE(why["1.2.0"].find("non-finite"), std::string::npos) << why["1.2.0"];
  EXPECT_NE(why["1.3.0"].find("MAPE"), std::string::npos) << why["1.3.0"];
  EXPECT_EQ((*agent)->Describe()["refused"].size(), 3u);
  // Refused versions are not fetched again.
  ASSERT_TRUE((*agent)->CheckForUpdate().ok());
  EXPECT_TRUE((*agent)->TakeEvents(&dropped).empty());
}

TEST_F(AgentTest, AVersionThatDegradesAfterTheSwitchIsRolledBackAndARestartStaysConsistent) {
  Publish("1.0.0", good_);
  Node node;
  AgentOptions o = Options();
  o.watch = 12;
  {
    auto agent = Agent::Open(o, &node).value();
    ASSERT_TRUE(agent->CheckForUpdate().ok());
    // Too little history to judge errors before switching (a node just started): 1.1.0 is
    // switched to on finite outputs and latency, and the watch catches it.
    for (size_t i = 0; i < 26; ++i) ASSERT_TRUE(agent->Observe(rows_[i]).ok());
    Publish("1.1.0", Shifted(1.5f));
    ASSERT_TRUE(agent->CheckForUpdate().ok());
    EXPECT_EQ(node.Current().version, "1.1.0");
    EXPECT_EQ(agent->Describe()["phase"], "watching");
    for (size_t i = 26; i < 26 + 13; ++i) ASSERT_TRUE(agent->Observe(rows_[i]).ok());
    EXPECT_EQ(node.Current().version, "1.0.0");
    auto kinds = Kinds(*agent);
    EXPECT_NE(std::find(kinds.begin(), kinds.end(), "rolled-back 1.1.0"), kinds.end());
    // A good 1.2.0 is taken.
    Publish("1.2.0", Shifted(0.0f));
    ASSERT_TRUE(agent->CheckForUpdate().ok());
    EXPECT_EQ(node.Current().version, "1.2.0");
  }
  // Restarted (the process was killed): the same running and previous versions.
  Node again;
  auto agent = Agent::Open(o, &again).value();
  EXPECT_EQ(again.Current().version, "1.2.0");
  EXPECT_EQ(agent->Describe()["previous"], "1.0.0");
  EXPECT_EQ(agent->Describe()["refused"], nlohmann::json::array({"1.1.0"}));
  // Killed between writing a version and state.json naming it, or with its file lost: the
  // running file is gone and the previous version runs.
  fs::remove(o.state_dir + "/versions/1.2.0.rhe");
  Node third;
  auto restored = Agent::Open(o, &third);
  ASSERT_TRUE(restored.ok()) << restored.status().message();
  EXPECT_EQ(third.Current().version, "1.0.0");
}

TEST_F(AgentTest, EventsAreBoundedWhileTheCloudIsAway) {
  Publish("1.0.0", good_);
  Node node;
  AgentOptions o = Options();
  o.max_events = 3;
  auto agent = Agent::Open(o, &node).value();
  ASSERT_TRUE(agent->CheckForUpdate().ok());
  for (int v = 1; v <= 4; ++v) {
    Publish("1.0." + std::to_string(v), Shifted(std::nanf("")));
    ASSERT_TRUE(agent->CheckForUpdate().ok());
  }
  int64_t dropped = 0;
  auto events = agent->TakeEvents(&dropped);
  EXPECT_EQ(events.size(), 3u);
  EXPECT_EQ(dropped, 2);
  EXPECT_EQ(events.back()["version"], "1.0.4");
  agent->ReturnEvents(events);  // the upload failed: they wait, still bounded
  EXPECT_EQ(agent->TakeEvents(&dropped).size(), 3u);
  // An unreachable hub is an error the caller logs; the node keeps its model.
  AgentOptions away = o;
  away.hub = "http://127.0.0.1:9";
  away.state_dir = dir_ + "/away";
  Node n2;
  auto a2 = Agent::Open(away, &n2);
  if (a2.ok()) {
    EXPECT_FALSE((*a2)->CheckForUpdate().ok());
  }
}

}  // namespace
}  // namespace ronghe::edge
