// ronghe-edge: the substation's binary. No LibTorch, no gRPC.
//   ronghe-edge serve --model FILE.rhe [--http PORT] [--host ADDR] [--socket PATH]
//   ronghe-edge info FILE.rhe
//   ronghe-edge predict --model FILE.rhe V1 V2 ...   (one forecast, raw values)
#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <thread>

#include "ronghe/base/version.h"
#include "ronghe/edge/kernels.h"
#include "ronghe/edge/runtime.h"
#include "ronghe/edge/server.h"

namespace {

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }

int Fail(const ronghe::Status& st) {
  std::fprintf(stderr, "ronghe-edge: error: %s\n", st.message().c_str());
  return st.code() == ronghe::StatusCode::kInvalidArgument ? 2 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace ronghe;
  CLI::App app{"ronghe-edge: forecasts and classifications at the edge, without LibTorch"};
  app.require_subcommand(1);
  app.set_version_flag("--version", Version());

  std::string model_path;
  edge::ServerOptions so;
  auto* serve = app.add_subcommand("serve", "Answer over a local HTTP port and/or a Unix socket");
  serve->add_option("-m,--model", model_path, "Edge artifact (.rhe)")->required();
  serve->add_option("--http", so.port, "TCP port (0 = any free port)");
  serve->add_option("--host", so.host, "Address to listen on (default 127.0.0.1)");
  serve->add_option("--socket", so.socket_path, "Unix socket path");

  auto* info = app.add_subcommand("info", "Print an edge artifact's header");
  info->add_option("model", model_path, "Edge artifact (.rhe)")->required();

  std::vector<float> values;
  auto* predict = app.add_subcommand("predict", "One answer from raw values (steps x features)");
  predict->add_option("-m,--model", model_path, "Edge artifact (.rhe)")->required();
  predict->add_option("values", values, "Raw input values, oldest step first")->required();
  CLI11_PARSE(app, argc, argv);

  auto loaded = edge::Model::Load(model_path);
  if (!loaded.ok()) return Fail(loaded.status());
  std::shared_ptr<const edge::Model> model = std::move(loaded).value();

  if (info->parsed()) {
    nlohmann::json h = model->header();
    h.erase("tensors");
    std::printf("%s\nkernels: %s\n", h.dump(2).c_str(), edge::KernelName());
    return 0;
  }
  if (predict->parsed()) {
    std::vector<float> out(static_cast<size_t>(model->outputs()));
    Status st = model->Predict(values.data(), static_cast<int64_t>(values.size()), out.data());
    if (!st.ok()) return Fail(st);
    for (float v : out) std::printf("%.6g\n", v);
    return 0;
  }
  edge::Node node;
  node.Set(model, model->header().value("model_version", ""));
  auto server = edge::Server::Start(so, &node);
  if (!server.ok()) return Fail(server.status());
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  std::printf(
      "ronghe-edge: serving %s (%s %s, version %s, kernels %s)%s%s\n", model_path.c_str(),
      model->kind().c_str(), model->precision().c_str(), node.Current().version.c_str(),
      edge::KernelName(),
      (*server)->port() >= 0 ? (" on 127.0.0.1:" + std::to_string((*server)->port())).c_str() : "",
      so.socket_path.empty() ? "" : (" and " + so.socket_path).c_str());
  std::fflush(stdout);
  while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  (*server)->Stop();
  return 0;
}
