// The one thing the coordinator and participants need from a network: an ordered, reliable,
// bidirectional stream of Envelopes with an authenticated party on the other end. Two
// implementations: gRPC with mutual TLS (grpc_transport.h) and an in-memory pipe that carries
// the same serialised bytes, for tests that must see exactly what would cross the wire.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "ronghe/base/status.h"
#include "ronghe/fed/wire.h"

namespace ronghe::fed {

class Connection {
 public:
  virtual ~Connection() = default;
  // False once the stream is closed (by either side, or because the peer vanished).
  virtual bool Send(const v1::Envelope& message) = 0;
  // Blocks for the next message; false when the stream has ended.
  virtual bool Recv(v1::Envelope* message) = 0;
  // Ends the stream; a blocked Recv on either side returns false. Idempotent, thread-safe.
  virtual void Close() = 0;
  // Why the transport itself ended the stream (a peer that did not read within the write
  // deadline, a full send queue, no Hello in time); "" when it did not.
  virtual std::string CloseReason() const { return ""; }
};

// Sees every serialised message that crosses an in-memory pipe.
// to_coordinator: true for participant -> coordinator.
using WireTap = std::function<void(const std::string& bytes, bool to_coordinator)>;

// A connected pair: first is the participant's end, second the coordinator's.
std::pair<std::unique_ptr<Connection>, std::unique_ptr<Connection>> MakePipe(WireTap tap = nullptr);

}  // namespace ronghe::fed
