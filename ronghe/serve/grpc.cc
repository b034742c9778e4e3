#include "ronghe/serve/grpc.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cmath>
#include <cstring>

#include "ronghe/base/version.h"
#include "ronghe/serve/inference.grpc.pb.h"

namespace ronghe::serve {

using nlohmann::json;

namespace {

grpc::Status ToGrpc(const Status& st) {
  grpc::StatusCode c;
  switch (st.code()) {
    case StatusCode::kOk:
      return grpc::Status::OK;
    case StatusCode::kInvalidArgument:
      c = grpc::StatusCode::INVALID_ARGUMENT;
      break;
    case StatusCode::kNotFound:
      c = grpc::StatusCode::NOT_FOUND;
      break;
    case StatusCode::kResourceExhausted:
      c = grpc::StatusCode::RESOURCE_EXHAUSTED;
      break;
    case StatusCode::kUnavailable:
      c = grpc::StatusCode::UNAVAILABLE;
      break;
    case StatusCode::kDeadlineExceeded:
      c = grpc::StatusCode::DEADLINE_EXCEEDED;
      break;
    case StatusCode::kFailedPrecondition:
      c = grpc::StatusCode::FAILED_PRECONDITION;
      break;
    default:
      c = grpc::StatusCode::INTERNAL;
      break;
  }
  return grpc::Status(c, st.message());
}

// Every handler's body: an exception (a c10::Error from a model, a JSON type error) answers
// INTERNAL with its message instead of ending the server.
template <typename Fn>
grpc::Status Guarded(Fn&& fn) {
  grpc::Status out;
  Status st = CatchAll([&] {
    out = fn();
    return Status::OK();
  });
  return st.ok() ? out : ToGrpc(st);
}

json ParamsToJson(const google::protobuf::Map<std::string, inference::InferParameter>& m) {
  json j = json::object();
  for (const auto& [k, v] : m) {
    switch (v.parameter_choice_case()) {
      case inference::InferParameter::kBoolParam:
        j[k] = v.bool_param();
        break;
      case inference::InferParameter::kInt64Param:
        j[k] = v.int64_param();
        break;
      case inference::InferParameter::kStringParam:
        j[k] = v.string_param();
        break;
      case inference::InferParameter::kDoubleParam:
        j[k] = v.double_param();
        break;
      default:
        break;
    }
  }
  return j;
}

void JsonToParams(const json& j, google::protobuf::Map<std::string, inference::InferParameter>* m) {
  for (auto it = j.begin(); it != j.end(); ++it) {
    inference::InferParameter p;
    const json& v = it.value();
    if (v.is_boolean())
      p.set_bool_param(v.get<bool>());
    else if (v.is_number_integer())
      p.set_int64_param(v.get<int64_t>());
    else if (v.is_number())
      p.set_double_param(v.get<double>());
    else if (v.is_string())
      p.set_string_param(v.get<std::string>());
    else
      p.set_string_param(v.dump());  // arrays/objects (e.g. escalated rows) as JSON text
    (*m)[it.key()] = p;
  }
}

template <typename T, typename Repeated>
Status CopyContents(const Repeated& src, const std::string& field, int64_t n, InferTensor* t) {
  if (static_cast<int64_t>(src.size()) != n) {
    return InvalidArgument(field + ": " + std::to_string(src.size()) +
                           " values, but the shape holds " + std::to_string(n));
  }
  t->data.assign(static_cast<size_t>(n) * sizeof(T), '\0');
  T* out = t->Mutable<T>();
  for (int64_t i = 0; i < n; ++i) {
    auto v = src.Get(static_cast<int>(i));
    if constexpr (std::is_same_v<T, uint8_t>) {
      if (v > 255)
        return InvalidArgument(field + "[" + std::to_string(i) + "]: out of range for UINT8");
    }
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
      if (!std::isfinite(v))
        return InvalidArgument(field + "[" + std::to_string(i) + "]: not finite");
    }
    out[i] = static_cast<T>(v);
  }
  return Status::OK();
}

// Protobuf request -> the same struct the JSON decoder makes, with the same checks.
Result<InferRequestMsg> FromProto(const inference::ModelInferRequest& req) {
  constexpr int64_t kMaxElements = 1 << 24;
  InferRequestMsg msg;
  msg.id = req.id();
  msg.parameters = ParamsToJson(req.parameters());
  if (auto b = msg.parameters.find("binary_data_output"); b != msg.parameters.end()) {
    msg.binary_output_all = b->is_boolean() && b->get<bool>();
    msg.parameters.erase(b);
  }
  if (req.inputs_size() == 0) return InvalidArgument("inputs: missing");
  bool raw = req.raw_input_contents_size() > 0;
  if (raw && req.raw_input_contents_size() != req.inputs_size()) {
    return InvalidArgument("raw_input_contents: " + std::to_string(req.raw_input_contents_size()) +
                           " entries for " + std::to_string(req.inputs_size()) + " inputs");
  }
  int64_t budget = kMaxElements;
  for (int i = 0; i < req.inputs_size(); ++i) {
    const auto& in = req.inputs(i);
    std::string field = "inputs[" + std::to_string(i) + "]";
    InferTensor t;
    t.name = in.name();
    auto dt = ParseDataType(in.datatype());
    if (!dt.ok()) return InvalidArgument(field + ".datatype: " + dt.status().message());
    t.datatype = *dt;
    if (in.shape_size() > 8) return InvalidArgument(field + ".shape: more than 8 dimensions");
    int64_t n = 1;
    for (int64_t d : in.shape()) {
      if (d < 0) return InvalidArgument(field + ".shape: negative dimension");
      if (d > 0 && n > budget / d)
        return InvalidArgument(field + ": more than " + std::to_string(kMaxElements) + " elements");
      n *= d;
      t.shape.push_back(d);
    }
    budget -= n;
    for (const auto& prev : msg.inputs) {
      if (prev.name == t.name) return InvalidArgument("inputs: '" + t.name + "' given twice");
    }
    if (t.datatype == DataType::kBytes) {
      if (raw) {
        const std::string& r = req.raw_input_contents(i);
        size_t pos = 0;
        while (pos < r.size()) {
          if (r.size() - pos < 4) return InvalidArgument(field + ": truncated BYTES length prefix");
          uint32_t len;
          std::memcpy(&len, r.data() + pos, 4);
          pos += 4;
          if (r.size() - pos < len)
            return InvalidArgument(field + ": BYTES element overruns its buffer");
          t.bytes.emplace_back(r.data() + pos, len);
          pos += len;
        }
      } else {
        for (const auto& b : in.contents().bytes_contents()) t.bytes.push_back(b);
      }
      if (static_cast<int64_t>(t.bytes.size()) != n) {
        return InvalidArgument(field + ": " + std::to_string(t.bytes.size()) +
                               " values, but the shape holds " + std::to_string(n));
      }
      msg.inputs.push_back(std::move(t));
      continue;
    }
    if (raw) {
      const std::string& r = req.raw_input_contents(i);
      const int64_t want = n * static_cast<int64_t>(ElementSize(t.datatype));
      if (static_cast<int64_t>(r.size()) != want) {
        return InvalidArgument(field + " ('" + t.name.substr(0, 64) + "'): raw contents hold " +
                               std::to_string(r.size()) + " bytes, shape and datatype need " +
                               std::to_string(want));
      }
      t.data = r;
      for (int64_t k = 0; k < n; ++k) {
        if (t.datatype == DataType::kBool && static_cast<unsigned char>(t.data[k]) > 1)
          return InvalidArgument(field + ": raw BOOL bytes are 0 or 1");
        if ((t.datatype == DataType::kFp32 && !std::isfinite(t.As<float>()[k])) ||
            (t.datatype == DataType::kFp64 && !std::isfinite(t.As<double>()[k]))) {
          return InvalidArgument(field + ": raw contents hold a non-finite value");
        }
      }
    } else {
      const auto& c = in.contents();
      std::string cf = field + ".contents";
      Status s;
      switch (t.datatype) {
        case DataType::kBool:
          s = CopyContents<bool>(c.bool_contents(), cf + ".bool_contents", n, &t);
          break;
        case DataType::kUint8:
          s = CopyContents<uint8_t>(c.uint_contents(), cf + ".uint_contents", n, &t);
          break;
        case DataType::kInt32:
          s = CopyContents<int32_t>(c.int_contents(), cf + ".int_contents", n, &t);
          break;
        case DataType::kInt64:
          s = CopyContents<int64_t>(c.int64_contents(), cf + ".int64_contents", n, &t);
          break;
        case DataType::kFp32:
          s = CopyContents<float>(c.fp32_contents(), cf + ".fp32_contents", n, &t);
          break;
        case DataType::kFp64:
          s = CopyContents<double>(c.fp64_contents(), cf + ".fp64_contents", n, &t);
          break;
        default:
          break;
      }
      RETURN_IF_ERROR(s);
    }
    msg.inputs.push_back(std::move(t));
  }
  for (const auto& o : req.outputs()) msg.outputs.push_back(o.name());
  return msg;
}

// One output into the response: typed contents, or (`raw`) its bytes in raw_output_contents, as
// Triton answers clients that send raw inputs.
void ToProto(const InferTensor& t, bool raw, inference::ModelInferResponse* response) {
  auto* out = response->add_outputs();
  out->set_name(t.name);
  out->set_datatype(DataTypeName(t.datatype));
  for (int64_t d : t.shape) out->add_shape(d);
  if (raw) {
    std::string* dst = response->add_raw_output_contents();
    if (t.datatype != DataType::kBytes) {
      *dst = t.data;
      return;
    }
    for (const auto& b : t.bytes) {
      uint32_t len = static_cast<uint32_t>(b.size());
      dst->append(reinterpret_cast<const char*>(&len), 4);
      *dst += b;
    }
    return;
  }
  auto* c = out->mutable_contents();
  const int64_t n =
      t.datatype == DataType::kBytes ? static_cast<int64_t>(t.bytes.size()) : t.Elements();
  switch (t.datatype) {
    case DataType::kFp32:
      c->mutable_fp32_contents()->Add(t.As<float>(), t.As<float>() + n);
      break;
    case DataType::kFp64:
      c->mutable_fp64_contents()->Add(t.As<double>(), t.As<double>() + n);
      break;
    case DataType::kInt64:
      c->mutable_int64_contents()->Add(t.As<int64_t>(), t.As<int64_t>() + n);
      break;
    case DataType::kInt32:
      c->mutable_int_contents()->Add(t.As<int32_t>(), t.As<int32_t>() + n);
      break;
    case DataType::kUint8:
      for (int64_t i = 0; i < n; ++i) c->add_uint_contents(t.As<uint8_t>()[i]);
      break;
    case DataType::kBool:
      for (int64_t i = 0; i < n; ++i) c->add_bool_contents(t.As<uint8_t>()[i] != 0);
      break;
    case DataType::kBytes:
      for (const auto& b : t.bytes) c->add_bytes_contents(b);
      break;
  }
}

class Service final : public inference::GRPCInferenceService::Service {
 public:
  explicit Service(InferenceServer* s) : s_(s) {}

  grpc::Status ServerLive(grpc::ServerContext*, const inference::ServerLiveRequest*,
                          inference::ServerLiveResponse* r) override {
    r->set_live(true);
    return grpc::Status::OK;
  }
  grpc::Status ServerReady(grpc::ServerContext*, const inference::ServerReadyRequest*,
                           inference::ServerReadyResponse* r) override {
    r->set_ready(s_->Ready());
    return grpc::Status::OK;
  }
  grpc::Status ModelReady(grpc::ServerContext*, const inference::ModelReadyRequest* q,
                          inference::ModelReadyResponse* r) override {
    return Guarded([&]() -> grpc::Status {
      Status st = s_->ModelReady(q->name(), q->version());
      if (!st.ok() && st.code() == StatusCode::kNotFound) return ToGrpc(st);
      r->set_ready(st.ok());
      return grpc::Status::OK;
    });
  }
  grpc::Status ServerMetadata(grpc::ServerContext*, const inference::ServerMetadataRequest*,
                              inference::ServerMetadataResponse* r) override {
    r->set_name("ronghe");
    r->set_version(Version());
    for (const char* e :
         {"binary_tensor_data", "model_repository", "statistics", "experiments", "cascade"})
      r->add_extensions(e);
    return grpc::Status::OK;
  }
  grpc::Status ModelMetadata(grpc::ServerContext*, const inference::ModelMetadataRequest* q,
                             inference::ModelMetadataResponse* r) override {
    return Guarded([&]() -> grpc::Status {
      auto j = s_->ModelMetadata(q->name(), q->version());
      if (!j.ok()) return ToGrpc(j.status());
      r->set_name((*j)["name"].get<std::string>());
      r->set_platform((*j)["platform"].get<std::string>());
      for (const auto& v : (*j)["versions"]) r->add_versions(v.get<std::string>());
      for (const char* side : {"inputs", "outputs"}) {
        for (const auto& t : (*j)[side]) {
          auto* m = std::string(side) == "inputs" ? r->add_inputs() : r->add_outputs();
          m->set_name(t["name"].get<std::string>());
          m->set_datatype(t["datatype"].get<std::string>());
          for (const auto& d : t["shape"]) m->add_shape(d.get<int64_t>());
        }
      }
      return grpc::Status::OK;
    });
  }
  grpc::Status ModelInfer(grpc::ServerContext*, const inference::ModelInferRequest* q,
                          inference::ModelInferResponse* r) override {
    return Guarded([&]() -> grpc::Status {
      auto start = std::chrono::steady_clock::now();
      auto msg = FromProto(*q);
      Result<InferResult> res = msg.ok() ? s_->Infer(q->model_name(), q->model_version(), *msg)
                                         : Result<InferResult>(msg.status());
      if (res.ok()) {
        r->set_model_name(res->model);
        r->set_model_version(res->version);
        r->set_id(q->id());
        JsonToParams(res->parameters, r->mutable_parameters());
        const bool raw = q->raw_input_contents_size() > 0 || msg->binary_output_all;
        for (const auto& t : res->outputs) ToProto(t, raw, r);
      }
      if (s_->access_log_enabled())
        s_->AccessLog(
            {{"ts",
              std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
                  .count()},
             {"protocol", "grpc"},
             {"method", "ModelInfer"},
             {"model", q->model_name()},
             {"version", res.ok() ? res->version : q->model_version()},
             {"status", res.ok() ? "OK" : res.status().message()},
             {"ms",
              std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                  .count()}});
      return res.ok() ? grpc::Status::OK : ToGrpc(res.status());
    });
  }
  grpc::Status RepositoryIndex(grpc::ServerContext*, const inference::RepositoryIndexRequest*,
                               inference::RepositoryIndexResponse* r) override {
    return Guarded([&]() -> grpc::Status {
      for (const auto& m : s_->RepositoryIndex()) {
        auto* x = r->add_models();
        x->set_name(m["name"].get<std::string>());
        x->set_version(m.value("version", ""));
        x->set_state(m["state"].get<std::string>());
        x->set_reason(m.value("reason", ""));
      }
      return grpc::Status::OK;
    });
  }
  grpc::Status RepositoryModelLoad(grpc::ServerContext*,
                                   const inference::RepositoryModelLoadRequest* q,
                                   inference::RepositoryModelLoadResponse*) override {
    return Guarded([&]() -> grpc::Status { return ToGrpc(s_->Load(q->model_name())); });
  }
  grpc::Status RepositoryModelUnload(grpc::ServerContext*,
                                     const inference::RepositoryModelUnloadRequest* q,
                                     inference::RepositoryModelUnloadResponse*) override {
    return Guarded([&]() -> grpc::Status { return ToGrpc(s_->Unload(q->model_name())); });
  }

 private:
  InferenceServer* s_;
};

}  // namespace

struct GrpcFrontend::Impl {
  std::unique_ptr<Service> service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  bool stopped = false;
};

GrpcFrontend::GrpcFrontend(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<GrpcFrontend>> GrpcFrontend::Start(InferenceServer* server,
                                                          const GrpcOptions& o) {
  auto impl = std::make_unique<Impl>();
  impl->service = std::make_unique<Service>(server);
  std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
  if (o.tls.enabled()) {
    ASSIGN_OR_RETURN(TlsMaterial tls, LoadTls(o.tls));
    creds = tls::GrpcServerCredentials(tls.cert_pem, tls.key_pem, tls.client_ca_pem);
  }
  grpc::ServerBuilder b;
  b.AddListeningPort(o.host + ":" + std::to_string(o.port), creds, &impl->port);
  b.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);  // a port in use is an error, not shared
  b.SetMaxReceiveMessageSize(static_cast<int>(o.max_message_bytes));
  b.SetMaxSendMessageSize(static_cast<int>(o.max_message_bytes));
  b.RegisterService(impl->service.get());
  impl->server = b.BuildAndStart();
  if (!impl->server || impl->port <= 0) {
    return Unavailable("cannot listen for gRPC on " + o.host + ":" + std::to_string(o.port) +
                       " (in use, or not an address of this host)");
  }
  return std::unique_ptr<GrpcFrontend>(new GrpcFrontend(std::move(impl)));
}

GrpcFrontend::~GrpcFrontend() { Stop(); }

int GrpcFrontend::port() const { return impl_->port; }

void GrpcFrontend::Stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(30));
  impl_->server->Wait();
}

}  // namespace ronghe::serve
