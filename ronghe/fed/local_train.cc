#include "ronghe/fed/local_train.h"

#include <torch/torch.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "ronghe/train/trainer.h"

namespace ronghe::fed {

Result<LocalTrainResult> LocalTrain(nn::Model& model, const data::TensorData& train,
                                    data::Task task, int64_t num_classes,
                                    const v1::LocalSettings& s, uint64_t seed) {
  if (s.epochs() < 1 || s.batch_size() < 1 || !(s.lr() > 0)) {
    return InvalidArgument("round settings: epochs, batch_size and lr must be positive");
  }
  const int64_t n = train.size();
  if (n == 0) return FailedPrecondition("local training: no training examples");
  LocalTrainResult r;
  try {
    torch::manual_seed(seed);  // dropout
    std::vector<at::Tensor> params = model.Parameters();
    std::vector<at::Tensor> global;
    for (auto& p : params) global.push_back(p.detach().clone());
    std::unique_ptr<torch::optim::Optimizer> opt;
    if (s.optimizer() == "sgd") {
      opt = std::make_unique<torch::optim::SGD>(
          params, torch::optim::SGDOptions(s.lr()).momentum(0.9).weight_decay(s.weight_decay()));
    } else if (s.optimizer() == "adam" || s.optimizer().empty()) {
      opt = std::make_unique<torch::optim::Adam>(
          params, torch::optim::AdamOptions(s.lr()).weight_decay(s.weight_decay()));
    } else {
      return InvalidArgument("round settings: optimizer '" + s.optimizer() + "' (adam or sgd)");
    }
    at::Tensor weight;
    if (s.class_weights() == "balanced") {
      ASSIGN_OR_RETURN(weight, train::BalancedClassWeights(train.y, task, num_classes));
    } else if (!s.class_weights().empty() && s.class_weights() != "none") {
      return InvalidArgument("round settings: class_weights '" + s.class_weights() + "'");
    }
    model.SetTraining(true);
    std::mt19937_64 rng(seed);
    std::vector<int64_t> order(n);
    for (int64_t e = 0; e < s.epochs(); ++e) {
      std::iota(order.begin(), order.end(), 0);
      std::shuffle(order.begin(), order.end(), rng);
      at::Tensor perm = torch::from_blob(order.data(), {n}, torch::kInt64).clone();
      double loss_sum = 0;
      int64_t batches = 0;
      for (int64_t b = 0; b < n; b += s.batch_size()) {
        at::Tensor idx = perm.slice(0, b, std::min(n, b + s.batch_size()));
        at::Tensor x = train.x.index_select(0, idx), y = train.y.index_select(0, idx);
        opt->zero_grad();
        at::Tensor loss = train::TaskLoss(model.Forward(x), y, task, weight);
        at::Tensor total = loss;
        if (s.prox_mu() > 0) {
          at::Tensor prox = torch::zeros({}, torch::kFloat);
          for (size_t i = 0; i < params.size(); ++i)
            prox = prox + (params[i] - global[i]).pow(2).sum();
          total = loss + 0.5 * s.prox_mu() * prox;
        }
        total.backward();
        opt->step();
        loss_sum += loss.item<double>();
        ++batches;
        ++r.steps;
      }
      r.mean_loss = loss_sum / std::max<int64_t>(1, batches);
    }
    model.SetTraining(false);
  } catch (const c10::Error& e) {
    return InvalidArgument(std::string("local training: ") + e.what_without_backtrace());
  }
  return r;
}

}  // namespace ronghe::fed
