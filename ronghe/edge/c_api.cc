// The C API over edge::Model (ronghe_edge.h). No exception crosses it.
#include <cstring>
#include <string>

#include "ronghe/edge/ronghe_edge.h"
#include "ronghe/edge/runtime.h"

struct ronghe_edge_model {
  std::unique_ptr<ronghe::edge::Model> model;
  std::string version;
};

namespace {
void SetError(char* err, size_t len, const std::string& msg) {
  if (err == nullptr || len == 0) return;
  const size_t n = std::min(len - 1, msg.size());
  std::memcpy(err, msg.data(), n);
  err[n] = '\0';
}

ronghe_edge_model* Wrap(ronghe::Result<std::unique_ptr<ronghe::edge::Model>> r, char* err,
                        size_t err_len) {
  if (!r.ok()) {
    SetError(err, err_len, r.status().message());
    return nullptr;
  }
  auto* m = new (std::nothrow) ronghe_edge_model;
  if (m == nullptr) {
    SetError(err, err_len, "out of memory");
    return nullptr;
  }
  m->model = std::move(r).value();
  m->version = m->model->header().value("model_version", "");
  return m;
}
}  // namespace

extern "C" {

ronghe_edge_model* ronghe_edge_open(const char* path, char* err, size_t err_len) {
  if (path == nullptr) {
    SetError(err, err_len, "path is NULL");
    return nullptr;
  }
  try {
    return Wrap(ronghe::edge::Model::Load(path), err, err_len);
  } catch (const std::exception& e) {
    SetError(err, err_len, std::string(path) + ": " + e.what());
    return nullptr;
  }
}

ronghe_edge_model* ronghe_edge_open_bytes(const void* data, size_t len, char* err, size_t err_len) {
  if (data == nullptr) {
    SetError(err, err_len, "data is NULL");
    return nullptr;
  }
  try {
    return Wrap(ronghe::edge::Model::FromBytes(std::string(static_cast<const char*>(data), len),
                                               "(memory)"),
                err, err_len);
  } catch (const std::exception& e) {
    SetError(err, err_len, e.what());
    return nullptr;
  }
}

void ronghe_edge_close(ronghe_edge_model* model) { delete model; }

int64_t ronghe_edge_steps(const ronghe_edge_model* m) { return m ? m->model->steps() : 0; }
int64_t ronghe_edge_features(const ronghe_edge_model* m) { return m ? m->model->features() : 0; }
int64_t ronghe_edge_input_size(const ronghe_edge_model* m) {
  return m ? m->model->input_size() : 0;
}
int64_t ronghe_edge_output_size(const ronghe_edge_model* m) { return m ? m->model->outputs() : 0; }
const char* ronghe_edge_kind(const ronghe_edge_model* m) {
  return m ? m->model->kind().c_str() : "";
}
const char* ronghe_edge_precision(const ronghe_edge_model* m) {
  return m ? m->model->precision().c_str() : "";
}
const char* ronghe_edge_model_version(const ronghe_edge_model* m) {
  return m ? m->version.c_str() : "";
}

int ronghe_edge_predict(const ronghe_edge_model* m, const float* input, size_t input_len,
                        float* output, size_t output_len, char* err, size_t err_len) {
  if (m == nullptr || input == nullptr || output == nullptr) {
    SetError(err, err_len, "model, input and output must not be NULL");
    return 1;
  }
  if (output_len < static_cast<size_t>(m->model->outputs())) {
    SetError(err, err_len,
             "output holds " + std::to_string(output_len) + " values, the model writes " +
                 std::to_string(m->model->outputs()));
    return 1;
  }
  try {
    ronghe::Status st = m->model->Predict(input, static_cast<int64_t>(input_len), output);
    if (!st.ok()) {
      SetError(err, err_len, st.message());
      return 1;
    }
  } catch (const std::exception& e) {
    SetError(err, err_len, e.what());
    return 1;
  }
  return 0;
}

}  // extern "C"
