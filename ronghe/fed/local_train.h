// A participant's local training for one round: E epochs of minibatch Adam/SGD on its own data,
// starting from the global model, with FedProx's proximal term mu/2 * ||w - w_global||^2 when
// mu > 0 (Li et al., MLSys 2020). Deterministic for a given seed and thread count.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "ronghe/base/status.h"
#include "ronghe/data/source.h"
#include "ronghe/fed/wire.h"
#include "ronghe/nn/model.h"

namespace ronghe::fed {

struct LocalTrainResult {
  double mean_loss = 0;  // over the last epoch's batches (without the proximal term)
  int64_t steps = 0;
};

Result<LocalTrainResult> LocalTrain(nn::Model& model, const data::TensorData& train,
                                    data::Task task, int64_t num_classes,
                                    const v1::LocalSettings& settings, uint64_t seed);

}  // namespace ronghe::fed
