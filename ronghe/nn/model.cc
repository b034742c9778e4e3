#include "ronghe/nn/model.h"

#include <torch/torch.h>

#include <map>

namespace ronghe::nn {

namespace {

// Runs every layer of `seq` but the last (the output layer).
torch::Tensor AllButLast(torch::nn::Sequential& seq, torch::Tensor h) {
  size_t i = 0;
  for (auto it = seq->begin(); it != seq->end() && i + 1 < seq->size(); ++it, ++i) {
    h = it->forward<torch::Tensor>(h);
  }
  return h;
}

// The last layer of `seq` alone.
torch::Tensor Last(torch::nn::Sequential& seq, const torch::Tensor& h) {
  auto it = seq->begin();
  for (size_t i = 0; i + 1 < seq->size(); ++i) ++it;
  return it->forward<torch::Tensor>(h);
}

struct MlpImpl : torch::nn::Module {
  MlpImpl(int64_t in, const std::vector<int64_t>& hidden, int64_t out, double dropout) {
    int64_t prev = in;
    for (size_t i = 0; i < hidden.size(); ++i) {
      layers->push_back(torch::nn::Linear(prev, hidden[i]));
      layers->push_back(torch::nn::ReLU());
      if (dropout > 0) layers->push_back(torch::nn::Dropout(dropout));
      prev = hidden[i];
    }
    layers->push_back(torch::nn::Linear(prev, out));
    register_module("layers", layers);
  }
  torch::Tensor forward(const torch::Tensor& x) { return layers->forward(x.flatten(1)); }
  torch::Tensor embed(const torch::Tensor& x) { return AllButLast(layers, x.flatten(1)); }
  torch::Tensor last(const torch::Tensor& h) { return Last(layers, h); }
  torch::nn::Sequential layers;
};

struct CnnImpl : torch::nn::Module {
  CnnImpl(int64_t in_channels, const std::vector<int64_t>& channels, int64_t pool, int64_t dense,
          int64_t out, double dropout) {
    int64_t prev = in_channels;
    for (int64_t c : channels) {
      features->push_back(
          torch::nn::Conv2d(torch::nn::Conv2dOptions(prev, c, 3).padding(1).bias(false)));
      features->push_back(torch::nn::BatchNorm2d(c));
      features->push_back(torch::nn::ReLU());
      features->push_back(torch::nn::MaxPool2d(2));
      prev = c;
    }
    // Adaptive pooling makes the head independent of the input resolution.
    features->push_back(
        torch::nn::AdaptiveAvgPool2d(torch::nn::AdaptiveAvgPool2dOptions({pool, pool})));
    head->push_back(torch::nn::Flatten());
    head->push_back(torch::nn::Linear(prev * pool * pool, dense));
    head->push_back(torch::nn::ReLU());
    if (dropout > 0) head->push_back(torch::nn::Dropout(dropout));
    head->push_back(torch::nn::Linear(dense, out));
    register_module("features", features);
    register_module("head", head);
  }
  torch::Tensor forward(const torch::Tensor& x) { return head->forward(features->forward(x)); }
  torch::Tensor embed(const torch::Tensor& x) { return AllButLast(head, features->forward(x)); }
  torch::Tensor last(const torch::Tensor& h) { return Last(head, h); }
  torch::nn::Sequential features, head;
};

// The recurrent forecaster: an LSTM or a GRU (torch's gate layouts), its last layer's final
// hidden state projected to the outputs. One template so both cells share packing and the head.
template <typename Rnn, typename Options>
struct RnnImpl : torch::nn::Module {
  RnnImpl(const char* name, int64_t in, int64_t hidden, int64_t layers, int64_t out)
      : rnn(Options(in, hidden).num_layers(layers).batch_first(true)), proj(hidden, out) {
    register_module(name, rnn);
    register_module("proj", proj);
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto out = std::get<0>(rnn->forward(x));  // [N, T, hidden]
    return proj->forward(out.select(1, out.size(1) - 1));
  }
  // Sequences of different lengths in one padded batch: packing makes the cell stop at each
  // sequence's own end, so its last hidden state never sees the padding.
  torch::Tensor forward_packed(const torch::Tensor& x, const torch::Tensor& lengths) {
    auto packed = torch::nn::utils::rnn::pack_padded_sequence(x, lengths.to(torch::kInt64).cpu(),
                                                              /*batch_first=*/true,
                                                              /*enforce_sorted=*/false);
    torch::Tensor h;  // [layers, N, hidden]
    if constexpr (std::is_same_v<Rnn, torch::nn::LSTM>) {
      h = std::get<0>(std::get<1>(rnn->forward_with_packed_input(packed)));
    } else {
      h = std::get<1>(rnn->forward_with_packed_input(packed));
    }
    return proj->forward(h.select(0, h.size(0) - 1));
  }
  Rnn rnn;
  torch::nn::Linear proj;
};
using LstmImpl = RnnImpl<torch::nn::LSTM, torch::nn::LSTMOptions>;
using GruImpl = RnnImpl<torch::nn::GRU, torch::nn::GRUOptions>;

}  // namespace

struct Model::Impl {
  std::shared_ptr<torch::nn::Module> module;
  std::function<torch::Tensor(const torch::Tensor&)> forward;
  std::function<torch::Tensor(const torch::Tensor&)> embed;  // mlp and cnn only
  std::function<torch::Tensor(const torch::Tensor&)> last;   // mlp and cnn only

  std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&)> forward_packed;

  template <typename M>
  void Set(std::shared_ptr<M> m) {
    forward = [m](const torch::Tensor& x) { return m->forward(x); };
    if constexpr (!std::is_same_v<M, LstmImpl> && !std::is_same_v<M, GruImpl>) {
      embed = [m](const torch::Tensor& x) { return m->embed(x); };
      last = [m](const torch::Tensor& h) { return m->last(h); };
    }
    module = std::move(m);
  }
};

nlohmann::json ModelConfig::ToJson() const {
  return {{"kind", kind},
          {"input_shape", input_shape},
          {"outputs", outputs},
          {"hidden", hidden},
          {"dropout", dropout},
          {"channels", channels},
          {"pool_size", pool_size},
          {"dense", dense},
          {"lstm_hidden", lstm_hidden},
          {"lstm_layers", lstm_layers}};
}

Result<ModelConfig> ModelConfig::FromJson(const nlohmann::json& j) {
  ModelConfig c;
  try {
    c.kind = j.at("kind").get<std::string>();
    c.input_shape = j.at("input_shape").get<std::vector<int64_t>>();
    c.outputs = j.at("outputs").get<int64_t>();
    c.hidden = j.at("hidden").get<std::vector<int64_t>>();
    c.dropout = j.at("dropout").get<double>();
    c.channels = j.at("channels").get<std::vector<int64_t>>();
    c.pool_size = j.at("pool_size").get<int64_t>();
    c.dense = j.at("dense").get<int64_t>();
    c.lstm_hidden = j.at("lstm_hidden").get<int64_t>();
    c.lstm_layers = j.at("lstm_layers").get<int64_t>();
  } catch (const nlohmann::json::exception& e) {
    return DataLoss(std::string("model config: ") + e.what());
  }
  return c;
}

Status ParseModelConfig(Config& cfg, ModelConfig* c) {
  RETURN_IF_ERROR(cfg.GetRequired("model.kind", &c->kind));
  if (c->kind != "mlp" && c->kind != "cnn" && c->kind != "lstm" && c->kind != "gru") {
    return cfg.ValueError("model.kind", "unknown model '" + c->kind + "' (mlp, cnn, lstm, gru)");
  }
  RETURN_IF_ERROR(cfg.Get("model.hidden", &c->hidden));
  RETURN_IF_ERROR(cfg.Get("model.dropout", &c->dropout));
  RETURN_IF_ERROR(cfg.Get("model.channels", &c->channels));
  RETURN_IF_ERROR(cfg.Get("model.pool_size", &c->pool_size));
  RETURN_IF_ERROR(cfg.Get("model.dense", &c->dense));
  RETURN_IF_ERROR(cfg.Get("model.lstm_hidden", &c->lstm_hidden));
  RETURN_IF_ERROR(cfg.Get("model.lstm_layers", &c->lstm_layers));
  if (c->dropout < 0 || c->dropout >= 1)
    return cfg.ValueError("model.dropout", "must lie in [0, 1)");
  for (int64_t h : c->hidden)
    if (h < 1) return cfg.ValueError("model.hidden", "widths must be >= 1");
  for (int64_t h : c->channels)
    if (h < 1) return cfg.ValueError("model.channels", "channel counts must be >= 1");
  if (c->pool_size < 1) return cfg.ValueError("model.pool_size", "must be >= 1");
  if (c->dense < 1) return cfg.ValueError("model.dense", "must be >= 1");
  if (c->lstm_hidden < 1) return cfg.ValueError("model.lstm_hidden", "must be >= 1");
  if (c->lstm_layers < 1) return cfg.ValueError("model.lstm_layers", "must be >= 1");
  return Status::OK();
}

Model::Model(ModelConfig config, std::unique_ptr<Impl> impl)
    : config_(std::move(config)), impl_(std::move(impl)) {}
Model::~Model() = default;

Result<std::unique_ptr<Model>> Model::Create(const ModelConfig& c) {
  if (c.outputs < 1) return InvalidArgument("model: outputs must be >= 1");
  for (int64_t d : c.input_shape)
    if (d < 1) return InvalidArgument("model: input dimensions must be >= 1");
  auto impl = std::make_unique<Impl>();
  try {
    if (c.kind == "mlp") {
      if (c.input_shape.empty()) return InvalidArgument("mlp: input shape is empty");
      int64_t in = 1;
      for (int64_t d : c.input_shape) in *= d;
      impl->Set(std::make_shared<MlpImpl>(in, c.hidden, c.outputs, c.dropout));
    } else if (c.kind == "cnn") {
      if (c.input_shape.size() != 3) {
        return InvalidArgument("cnn: needs image input [channels, height, width], got " +
                               std::to_string(c.input_shape.size()) + " dimensions");
      }
      impl->Set(std::make_shared<CnnImpl>(c.input_shape[0], c.channels, c.pool_size, c.dense,
                                          c.outputs, c.dropout));
    } else if (c.kind == "lstm" || c.kind == "gru") {
      if (c.input_shape.size() != 2) {
        return InvalidArgument(c.kind + ": needs sequence input [time, features], got " +
                               std::to_string(c.input_shape.size()) + " dimensions");
      }
      auto install = [&](auto rnn) {
        impl->Set(rnn);
        impl->forward_packed = [rnn](const torch::Tensor& x, const torch::Tensor& len) {
          return rnn->forward_packed(x, len);
        };
      };
      if (c.kind == "lstm") {
        install(std::make_shared<LstmImpl>("lstm", c.input_shape[1], c.lstm_hidden, c.lstm_layers,
                                           c.outputs));
      } else {
        install(std::make_shared<GruImpl>("gru", c.input_shape[1], c.lstm_hidden, c.lstm_layers,
                                          c.outputs));
      }
    } else {
      return InvalidArgument("unknown model kind '" + c.kind + "' (mlp, cnn, lstm, gru)");
    }
  } catch (const c10::Error& e) {
    return InvalidArgument(std::string("model: ") + e.what_without_backtrace());
  }
  return std::unique_ptr<Model>(new Model(c, std::move(impl)));
}

at::Tensor Model::Forward(const at::Tensor& x) { return impl_->forward(x); }

at::Tensor Model::Embed(const at::Tensor& x) {
  TORCH_CHECK(impl_->embed, "embeddings apply to the mlp and cnn models, not ", config_.kind);
  return impl_->embed(x);
}

at::Tensor Model::Head(const at::Tensor& embedding) {
  TORCH_CHECK(impl_->last, "embeddings apply to the mlp and cnn models, not ", config_.kind);
  return impl_->last(embedding);
}

at::Tensor Model::Forward(const at::Tensor& x, const at::Tensor& lengths) {
  TORCH_CHECK(impl_->forward_packed, "sequence lengths apply to the lstm and gru models only, not ",
              config_.kind);
  return impl_->forward_packed(x, lengths);
}
void Model::SetTraining(bool training) { impl_->module->train(training); }
torch::nn::Module& Model::module() { return *impl_->module; }

std::vector<at::Tensor> Model::Parameters() const { return impl_->module->parameters(); }

std::vector<std::pair<std::string, at::Tensor>> Model::NamedState() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& p : impl_->module->named_parameters()) out.emplace_back(p.key(), p.value());
  for (const auto& b : impl_->module->named_buffers()) out.emplace_back(b.key(), b.value());
  return out;
}

Status Model::LoadState(const std::vector<std::pair<std::string, at::Tensor>>& state) {
  std::map<std::string, at::Tensor> given(state.begin(), state.end());
  torch::NoGradGuard no_grad;
  auto mine = NamedState();
  for (auto& [name, t] : mine) {
    auto it = given.find(name);
    if (it == given.end()) return DataLoss("model state lacks tensor '" + name + "'");
    if (it->second.sizes() != t.sizes()) {
      return DataLoss("tensor '" + name + "' has shape " + c10::str(it->second.sizes()) +
                      ", the model needs " + c10::str(t.sizes()));
    }
    if (it->second.scalar_type() != t.scalar_type()) {
      return DataLoss("tensor '" + name + "' has dtype " + c10::toString(it->second.scalar_type()) +
                      ", the model needs " + c10::toString(t.scalar_type()));
    }
    t.copy_(it->second);
    given.erase(it);
  }
  if (!given.empty())
    return DataLoss("unexpected tensor '" + given.begin()->first + "' for this model");
  return Status::OK();
}

int64_t Model::NumParameters() const {
  int64_t n = 0;
  for (const auto& p : impl_->module->parameters()) n += p.numel();
  return n;
}

}  // namespace ronghe::nn
