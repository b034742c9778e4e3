// `ronghe hub serve`: a hub directory over HTTP(S) for other hosts. It serves the files clients
// verify (metadata/, targets/, attestations/) as they are - the signatures, not the server, are
// what clients trust, so a mirror or a cache in between is fine - and never keys/ or anything
// outside the tree. GET / is a plain HTML listing (name, latest version, certification,
// metrics), GET /models/NAME a page per model with its card. The server re-signs the timestamp
// once a day so that clients do not read the hub as frozen.
#pragma once

#include <memory>
#include <string>

#include "ronghe/base/status.h"
#include "ronghe/tls/tls.h"

namespace ronghe::hub {

struct HubServeOptions {
  std::string dir;                 // the hub directory (required)
  std::string host = "0.0.0.0";    // Default: every interface.
  int port = 8080;                 // Default: 8080; 0 = any free port (tests).
  tls::TlsOptions tls;             // Default: plaintext. With a certificate: HTTPS.
  double refresh_every_s = 86400;  // Default: a day; 0 = never re-sign the timestamp.
};

class HubServer {
 public:
  static Result<std::unique_ptr<HubServer>> Start(const HubServeOptions& options);
  ~HubServer();
  int port() const;
  void Stop();
  struct Impl;

 private:
  explicit HubServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The HTML pages, from the hub directory's own current metadata.
Result<std::string> HubIndexHtml(const std::string& dir);
Result<std::string> HubModelHtml(const std::string& dir, const std::string& name);

}  // namespace ronghe::hub
