#include "ronghe/base/config.h"

#include <toml++/toml.h>

#include <functional>
#include <set>
#include <sstream>

#include "ronghe/base/file.h"

namespace ronghe {

struct Config::Impl {
  toml::table root;
  std::string source;
  std::set<std::string> known;
  std::set<std::string> overridden;  // keys set from flags, for better unknown-key errors
};

namespace {

std::vector<std::string> SplitKey(const std::string& key) {
  std::vector<std::string> parts;
  std::stringstream ss(key);
  std::string p;
  while (std::getline(ss, p, '.')) parts.push_back(p);
  return parts;
}

const toml::node* Find(const toml::table& root, const std::string& key) {
  const toml::table* t = &root;
  auto parts = SplitKey(key);
  for (size_t i = 0; i < parts.size(); ++i) {
    const toml::node* n = t->get(parts[i]);
    if (!n) return nullptr;
    if (i + 1 == parts.size()) return n;
    t = n->as_table();
    if (!t) return nullptr;
  }
  return nullptr;
}

const char* TypeName(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    default:
      return "a date/time";
  }
}

std::string Where(const toml::node& n) {
  const auto& src = n.source();
  if (src.begin.line == 0) return "";
  return " (line " + std::to_string(src.begin.line) + ")";
}

void Insert(toml::table& root, const std::string& key, toml::node&& value) {
  toml::table* t = &root;
  auto parts = SplitKey(key);
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    toml::node* n = t->get(parts[i]);
    if (!n || !n->is_table()) {
      t->insert_or_assign(parts[i], toml::table{});
      n = t->get(parts[i]);
    }
    t = n->as_table();
  }
  t->insert_or_assign(parts.back(), std::move(value));
}

}  // namespace

Config::Config(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Config::Config(Config&&) noexcept = default;
Config& Config::operator=(Config&&) noexcept = default;
Config::~Config() = default;

Result<Config> Config::Load(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return Parse(text, path);
}

Result<Config> Config::Parse(const std::string& text, const std::string& source) {
  auto impl = std::make_unique<Impl>();
  impl->source = source;
  try {
    impl->root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    const auto& b = e.source().begin;
    return InvalidArgument(source + ":" + std::to_string(b.line) + ":" + std::to_string(b.column) +
                           ": " + std::string(e.description()));
  }
  return Config(std::move(impl));
}

Status Config::ApplyOverride(const std::string& assignment) {
  auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    return InvalidArgument("--set '" + assignment + "': expected KEY=VALUE");
  }
  std::string key = assignment.substr(0, eq);
  std::string value = assignment.substr(eq + 1);
  for (const auto& part : SplitKey(key)) {
    if (part.empty()) return InvalidArgument("--set '" + assignment + "': empty key part");
  }
  try {
    toml::table t = toml::parse("v = " + value);
    Insert(impl_->root, key, std::move(*t.get("v")));
  } catch (const toml::parse_error&) {
    Insert(impl_->root, key, toml::value<std::string>(value));
  }
  impl_->overridden.insert(key);
  return Status::OK();
}

void Config::Set(const std::string& key, double v) {
  Insert(impl_->root, key, toml::value<double>(v));
  impl_->overridden.insert(key);
}
void Config::Set(const std::string& key, int64_t v) {
  Insert(impl_->root, key, toml::value<int64_t>(v));
  impl_->overridden.insert(key);
}
void Config::Set(const std::string& key, const std::string& v) {
  Insert(impl_->root, key, toml::value<std::string>(v));
  impl_->overridden.insert(key);
}

bool Config::Has(const std::string& key) const { return Find(impl_->root, key) != nullptr; }

std::vector<std::string> Config::Keys(const std::string& table) const {
  const toml::table* t = &impl_->root;
  if (!table.empty()) {
    const toml::node* n = Find(impl_->root, table);
    t = n ? n->as_table() : nullptr;
  }
  std::vector<std::string> keys;
  if (t) {
    for (const auto& [k, v] : *t) keys.emplace_back(k.str());
  }
  return keys;
}

Status Config::ValueError(const std::string& key, const std::string& why) const {
  if (impl_->overridden.count(key)) return InvalidArgument("--set " + key + ": " + why);
  const toml::node* n = Find(impl_->root, key);
  return InvalidArgument(impl_->source + ": " + key + (n ? Where(*n) : "") + ": " + why);
}

namespace {
template <typename T>
Status ReadScalar(const Config& cfg, const toml::node* n, const std::string& key, T* out,
                  const char* want) {
  if (auto v = n->value_exact<T>()) {
    *out = *v;
    return Status::OK();
  }
  return cfg.ValueError(key, std::string("expected ") + want + ", got " + TypeName(*n));
}
}  // namespace

Status Config::Get(const std::string& key, double* out) {
  impl_->known.insert(key);
  const toml::node* n = Find(impl_->root, key);
  if (!n) return Status::OK();
  if (auto i = n->value_exact<int64_t>()) {
    *out = static_cast<double>(*i);
    return Status::OK();
  }
  return ReadScalar(*this, n, key, out, "a number");
}

Status Config::Get(const std::string& key, int64_t* out) {
  impl_->known.insert(key);
  const toml::node* n = Find(impl_->root, key);
  if (!n) return Status::OK();
  return ReadScalar(*this, n, key, out, "an integer");
}

Status Config::Get(const std::string& key, int* out) {
  int64_t v = *out;
  RETURN_IF_ERROR(Get(key, &v));
  if (v < INT32_MIN || v > INT32_MAX) return ValueError(key, "integer out of range");
  *out = static_cast<int>(v);
  return Status::OK();
}

Status Config::Get(const std::string& key, bool* out) {
  impl_->known.insert(key);
  const toml::node* n = Find(impl_->root, key);
  if (!n) return Status::OK();
  return ReadScalar(*this, n, key, out, "a boolean (true/false)");
}

Status Config::Get(const std::string& key, std::string* out) {
  impl_->known.insert(key);
  const toml::node* n = Find(impl_->root, key);
  if (!n) return Status::OK();
  return ReadScalar(*this, n, key, out, "a string");
}

namespace {
template <typename T, typename Conv>
Status ReadArray(const Config& cfg, const toml::node* n, const std::string& key,
                 std::vector<T>* out, const char* want, Conv conv) {
  const toml::array* a = n->as_array();
  if (!a) return cfg.ValueError(key, std::string("expected an array of ") + want);
  std::vector<T> vals;
  for (size_t i = 0; i < a->size(); ++i) {
    std::optional<T> v = conv((*a)[i]);
    if (!v) {
      return cfg.ValueError(key, "element " + std::to_string(i) + ": expected " + want + ", got " +
                                     TypeName((*a)[i]));
    }
    vals.push_back(*v);
  }
  *out = std::move(vals);
  return Status::OK();
}
}  // namespace

Status Config::Get(const std::string& key, std::vector<int64_t>* out) {
  impl_->known.insert(key);
  const toml::node* n = Find(impl_->root, key);
  if (!n) return Status::OK();
  return ReadArray(*this, n, key, out, "integers",
                   [](const toml::node& e) { return e.value_exact<int64_t>(); });
}

Status Config::Get(const std::string& key, std::vector<double>* out) {
  impl_->known.insert(key);
  const toml::node* n = Find(impl_->root, key);
  if (!n) return Status::OK();
  return ReadArray(*this, n, key, out, "numbers", [](const toml::node& e) -> std::optional<double> {
    if (auto i = e.value_exact<int64_t>()) return static_cast<double>(*i);
    return e.value_exact<double>();
  });
}

Status Config::Get(const std::string& key, std::vector<std::string>* out) {
  impl_->known.insert(key);
  const toml::node* n = Find(impl_->root, key);
  if (!n) return Status::OK();
  return ReadArray(*this, n, key, out, "strings",
                   [](const toml::node& e) { return e.value_exact<std::string>(); });
}

void Config::MarkKnown(const std::string& key) { impl_->known.insert(key); }

Status Config::CheckNoUnknownKeys() const {
  // Depth-first over leaves; a leaf is fine when it or one of its ancestors is known.
  std::string bad;
  std::function<void(const toml::table&, const std::string&)> walk =
      [&](const toml::table& t, const std::string& prefix) {
        for (const auto& [k, v] : t) {
          if (!bad.empty()) return;
          std::string path =
              prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
          if (impl_->known.count(path)) continue;
          if (const toml::table* sub = v.as_table()) {
            walk(*sub, path);
          } else {
            bad = path;
          }
        }
      };
  walk(impl_->root, "");
  if (bad.empty()) return Status::OK();
  const toml::node* n = Find(impl_->root, bad);
  std::string src = impl_->overridden.count(bad) ? "flag --set" : impl_->source;
  return InvalidArgument(src + ": unknown key '" + bad + "'" + (n ? Where(*n) : ""));
}

const std::string& Config::source() const { return impl_->source; }

std::string Config::ToJson() const {
  std::ostringstream ss;
  ss << toml::json_formatter{impl_->root};
  return ss.str();
}

std::string Config::ToToml() const {
  std::ostringstream ss;
  ss << impl_->root;
  return ss.str();
}

}  // namespace ronghe
