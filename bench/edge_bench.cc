// One forecast at a time on one thread (run it under `taskset -c 0`): p50 / p99 latency of the
// teacher and the student in LibTorch and of the student's edge artifacts (fp32, int8) in the edge
// runtime, on the real test windows of the teacher's data.
//   edge_bench HOME TEACHER.rhm STUDENT.rhm STUDENT-fp32.rhe STUDENT-int8.rhe
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "ronghe/data/source.h"
#include "ronghe/edge/kernels.h"
#include "ronghe/edge/runtime.h"
#include "ronghe/nn/artifact.h"

namespace {

template <typename F>
void Report(const char* name, int64_t n, F&& one) {
  std::vector<double> us;
  for (int64_t i = -200; i < 20000; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    one(((i % n) + n) % n);
    double v =
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    if (i >= 0) us.push_back(v);
  }
  std::sort(us.begin(), us.end());
  std::printf("%-22s p50 %9.1f us  p99 %9.1f us\n", name, us[us.size() / 2],
              us[static_cast<size_t>(0.99 * static_cast<double>(us.size()))]);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace ronghe;
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s HOME TEACHER.rhm STUDENT.rhm FP32.rhe INT8.rhe\n", argv[0]);
    return 2;
  }
  at::set_num_threads(1);
  auto teacher = nn::LoadArtifact(argv[2]).value();
  auto student = nn::LoadArtifact(argv[3]).value();
  auto fp32 = edge::Model::Load(argv[4]).value();
  auto int8 = edge::Model::Load(argv[5]).value();
  auto dopts = data::DataOptions::FromJson(teacher.manifest["data"]).value();
  auto d = data::LoadData(dopts, argv[1], &teacher.manifest["preprocessing"]).value();
  torch::Tensor x = d.test.x.contiguous();
  const int64_t n = x.size(0), per = fp32->input_size();
  std::printf("edge kernels: %s; %ld test windows, one at a time, one thread\n", edge::KernelName(),
              long(n));
  torch::NoGradGuard no_grad;
  Report("teacher (LibTorch)", n,
         [&](int64_t i) { (void)teacher.model->Forward(x.narrow(0, i, 1)).data_ptr<float>(); });
  Report("student (LibTorch)", n,
         [&](int64_t i) { (void)student.model->Forward(x.narrow(0, i, 1)).data_ptr<float>(); });
  float out[16];
  Report("student fp32 (edge)", n, [&](int64_t i) {
    (void)fp32->PredictStandardised(x.data_ptr<float>() + i * per, per, out);
  });
  Report("student int8 (edge)", n, [&](int64_t i) {
    (void)int8->PredictStandardised(x.data_ptr<float>() + i * per, per, out);
  });
  return 0;
}
