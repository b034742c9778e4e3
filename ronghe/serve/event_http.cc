#include "ronghe/serve/event_http.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "ronghe/base/http_head.h"
#include "ronghe/base/mutex.h"
#include "ronghe/base/thread_pool.h"

namespace ronghe::serve {

namespace {

using Clock = std::chrono::steady_clock;

// Requests answered per connection per turn of a loop: a client that pipelines without end
// cannot starve the loop's other connections.
constexpr int kPipelinePerTurn = 64;
constexpr int kEvents = 256;

template <typename T>
void AppendNumber(std::string* out, T v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out->append(buf, static_cast<size_t>(end - buf));
}

std::string PeerAddress(const sockaddr_storage& a) {
  char buf[INET6_ADDRSTRLEN] = "";
  if (a.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(a).sin_addr, buf, sizeof buf);
  } else if (a.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(a).sin6_addr, buf, sizeof buf);
  }
  return buf;
}

struct Conn {
  int fd = -1;
  std::string remote;
  std::string in;       // received, from `consumed` on not yet parsed
  size_t consumed = 0;  // bytes of `in` taken by requests this turn
  size_t scanned = 0;   // where the search for the end of the header block resumes
  std::string out;      // answers not yet written, from `out_off`
  size_t out_off = 0;
  int64_t discard = 0;       // body bytes of a refused request still to read and drop
  bool close_after = false;  // close once `out` is written and nothing is left to drop
  bool peer_closed = false;  // the client shut its side: answer what came, then close
  bool dead = false;         // a socket error: close now
  bool writing = false;      // waiting for the socket to take more (EPOLLOUT)
  bool touched = false;      // in this turn's list
  bool continue_sent = false;
  bool more = false;       // requests left in `in` after this turn's share: next turn
  bool lingering = false;  // answered and shut for writing; reading what the client still
                           // sends, so that closing does not reset the answer away
  int answers = 0;         // requests of this turn not yet written to `out`
  Clock::time_point active;
};

// One request of a turn: its connection, how to frame the answer, and the answer.
struct Slot {
  Conn* conn = nullptr;
  bool started = false;  // an inference in `pending`, finished after the turn's reads
  bool close = false;
  bool http10 = false;
  size_t index = 0;  // into the loop's pools of Pending and HttpReply
};

}  // namespace

struct EventHttpServer::Impl {
  HttpApi* api = nullptr;
  EventHttpOptions options;
  int listen_fd = -1;
  int port = 0;
  std::atomic<bool> stopping{false};
  std::atomic<int> open_connections{0};
  bool stopped = false;

  struct Loop {
    Impl* impl = nullptr;
    int index = 0;
    int ep = -1;
    int wake = -1;  // eventfd: new connections in the inbox, or stop
    std::atomic<int> connections{0};
    Mutex inbox_mu;
    std::vector<std::pair<int, std::string>> inbox GUARDED_BY(inbox_mu);
    std::thread thread;

    // Owned by the loop's thread.
    std::vector<std::unique_ptr<Conn>> conns;  // by file descriptor
    std::vector<Conn*> touched;
    std::vector<Conn*> again;  // connections with requests already read but not yet parsed
    std::vector<Slot> slots;
    std::vector<std::unique_ptr<HttpApi::Pending>> pendings;
    std::vector<HttpReply> replies;
    Clock::time_point last_sweep;

    void Run();
    void Accept();
    void Adopt(int fd, std::string remote);
    void TakeInbox();
    void Read(Conn* c);
    void Parse(Conn* c);
    void Answer(Conn* c, int status, const std::string& why, bool close);
    void Serialize(const Slot& s, const HttpReply& r);
    void Flush(Conn* c);
    void Interest(Conn* c, bool want_write);
    void Close(Conn* c);
    void Linger(Conn* c);
    void Drain(Conn* c);
    void Sweep(Clock::time_point now);
    size_t NewSlot(Conn* c);
  };
  std::vector<std::unique_ptr<Loop>> loops;
};

using Loop = EventHttpServer::Impl::Loop;

void Loop::Interest(Conn* c, bool want_write) {
  if (c->writing == want_write) return;
  c->writing = want_write;
  epoll_event ev{};
  ev.events = (want_write ? EPOLLOUT : EPOLLIN) | EPOLLRDHUP;
  ev.data.fd = c->fd;
  epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

void Loop::Close(Conn* c) {
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, nullptr);
  ::close(c->fd);
  connections.fetch_sub(1, std::memory_order_relaxed);
  impl->open_connections.fetch_sub(1, std::memory_order_relaxed);
  conns[static_cast<size_t>(c->fd)].reset();
}

void Loop::Adopt(int fd, std::string remote) {
  int yes = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
  if (conns.size() <= static_cast<size_t>(fd)) conns.resize(static_cast<size_t>(fd) + 64);
  auto c = std::make_unique<Conn>();
  c->fd = fd;
  c->remote = std::move(remote);
  c->active = Clock::now();
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP;
  ev.data.fd = fd;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
    ::close(fd);
    connections.fetch_sub(1, std::memory_order_relaxed);
    impl->open_connections.fetch_sub(1, std::memory_order_relaxed);
    return;
  }
  conns[static_cast<size_t>(fd)] = std::move(c);
}

// Only loop 0 listens. Each new connection goes to the loop with the fewest, so that every core
// gets its share of the clients (one shared accept queue would hand a burst to whichever loop
// woke first).
void Loop::Accept() {
  while (true) {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    int fd = accept4(impl->listen_fd, reinterpret_cast<sockaddr*>(&addr), &len,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN, or an aborted connection: nothing more to take now
    if (impl->open_connections.load(std::memory_order_relaxed) >= impl->options.max_connections) {
      ::close(fd);
      continue;
    }
    impl->open_connections.fetch_add(1, std::memory_order_relaxed);
    Loop* target = this;
    for (auto& l : impl->loops) {
      if (l->connections.load(std::memory_order_relaxed) <
          target->connections.load(std::memory_order_relaxed)) {
        target = l.get();
      }
    }
    target->connections.fetch_add(1, std::memory_order_relaxed);
    if (target == this) {
      Adopt(fd, PeerAddress(addr));
      continue;
    }
    {
      MutexLock l(&target->inbox_mu);
      target->inbox.emplace_back(fd, PeerAddress(addr));
    }
    uint64_t one = 1;
    (void)!::write(target->wake, &one, sizeof one);
  }
}

void Loop::TakeInbox() {
  uint64_t n;
  (void)!::read(wake, &n, sizeof n);
  std::vector<std::pair<int, std::string>> taken;
  {
    MutexLock l(&inbox_mu);
    taken.swap(inbox);
  }
  for (auto& [fd, remote] : taken) Adopt(fd, std::move(remote));
}

void Loop::Read(Conn* c) {
  char buf[64 << 10];
  // Enough for one largest request and the next one's head; the rest waits in the socket.
  const size_t cap = static_cast<size_t>(impl->options.max_body_bytes) +
                     2 * static_cast<size_t>(impl->options.max_header_bytes);
  while (c->in.size() - c->consumed < cap) {
    ssize_t r = ::recv(c->fd, buf, sizeof buf, 0);
    if (r > 0) {
      c->active = Clock::now();
      size_t n = static_cast<size_t>(r), skip = 0;
      if (c->discard > 0) {
        skip = std::min<size_t>(n, static_cast<size_t>(c->discard));
        c->discard -= static_cast<int64_t>(skip);
      }
      c->in.append(buf + skip, n - skip);
      if (static_cast<size_t>(r) < sizeof buf) return;  // most likely drained
      continue;
    }
    if (r == 0) {
      c->peer_closed = true;
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      c->dead = true;
    }
    return;
  }
}

size_t Loop::NewSlot(Conn* c) {
  const size_t i = slots.size();
  if (pendings.size() <= i) {
    pendings.push_back(std::make_unique<HttpApi::Pending>());
    replies.emplace_back();
  }
  Slot s;
  s.conn = c;
  s.index = i;
  slots.push_back(s);
  ++c->answers;
  return i;
}

// An answer the loop makes itself (the request could not be framed): it closes the connection.
void Loop::Answer(Conn* c, int status, const std::string& why, bool close) {
  size_t i = NewSlot(c);
  Slot& s = slots[i];
  s.close = close;
  HttpReply& r = replies[i];
  r.status = status;
  r.content_type = "application/json";
  r.body = ErrorBody(why);
  r.served_version.clear();
  r.inference_header_length = 0;
  if (close) c->close_after = true;
}

void Loop::Parse(Conn* c) {
  const EventHttpOptions& o = impl->options;
  c->more = false;
  for (int count = 0; !c->close_after && c->discard == 0; ++count) {
    if (count == kPipelinePerTurn) {
      c->more = c->in.size() > c->consumed;
      return;
    }
    const size_t avail = c->in.size() - c->consumed;
    if (avail == 0) return;
    const char* base = c->in.data() + c->consumed;
    size_t from = c->scanned > c->consumed + 3 ? c->scanned - c->consumed - 3 : 0;
    const void* hit = memmem(base + from, avail - from, "\r\n\r\n", 4);
    if (!hit) {
      c->scanned = c->in.size();
      if (avail > static_cast<size_t>(o.max_header_bytes)) {
        Answer(c, 431,
               "request line and headers over " + std::to_string(o.max_header_bytes) + " bytes",
               true);
      }
      return;
    }
    const size_t head_len = static_cast<size_t>(static_cast<const char*>(hit) - base);
    if (head_len > static_cast<size_t>(o.max_header_bytes)) {
      return Answer(
          c, 431, "request line and headers over " + std::to_string(o.max_header_bytes) + " bytes",
          true);
    }
    HttpHead h;
    HttpHeadError err;
    if (!ParseHttpHead(std::string_view(base, head_len), &h, &err)) {
      return Answer(c, err.status, err.why, true);
    }
    const int64_t length = h.content_length;
    if (h.chunked) {
      return Answer(c, 411, "chunked request bodies are not supported: send a Content-Length",
                    true);
    }
    const size_t body_at = head_len + 4;
    if (length > o.max_body_bytes) {
      // Read and drop the body (so the client sees the answer rather than a reset), then close.
      const size_t here = std::min(avail - body_at, static_cast<size_t>(length));
      c->discard = length - static_cast<int64_t>(here);
      c->consumed += body_at + here;
      c->scanned = c->consumed;
      return Answer(c, 413,
                    "request body too large: " + std::to_string(length) + " bytes, the limit is " +
                        std::to_string(o.max_body_bytes),
                    true);
    }
    if (avail < body_at + static_cast<size_t>(length)) {
      // Not all here yet. A client that waits for "100 Continue" gets it, unless an answer of
      // this turn must go out before it.
      if (h.expect_continue && !c->continue_sent && c->answers == 0 &&
          c->out_off == c->out.size()) {
        c->out.append("HTTP/1.1 100 Continue\r\n\r\n");
        c->continue_sent = true;
      }
      c->scanned = c->consumed + head_len;  // resume the header search no earlier than this
      return;
    }
    HttpCall call;
    call.method = h.method;
    call.target = h.target;
    call.body = std::string_view(base + body_at, static_cast<size_t>(length));
    call.has_header_length = h.has_header_length;
    call.header_length = h.header_length;
    call.remote = c->remote;
    const size_t i = NewSlot(c);
    Slot& s = slots[i];
    s.close = h.close;
    s.http10 = h.http10;
    s.started = !impl->api->Start(call, pendings[i].get(), &replies[i]);
    // The call keeps nothing of `in` once started (the decoded request is the Pending's).
    c->consumed += body_at + static_cast<size_t>(length);
    c->scanned = c->consumed;
    c->continue_sent = false;
    if (h.close) c->close_after = true;
  }
}

void Loop::Serialize(const Slot& s, const HttpReply& r) {
  Conn* c = s.conn;
  std::string& o = c->out;
  o.append(s.http10 ? "HTTP/1.0 " : "HTTP/1.1 ");
  AppendNumber(&o, r.status);
  o.push_back(' ');
  o.append(HttpReason(r.status));
  o.append("\r\nContent-Type: ");
  o.append(r.content_type);
  o.append("\r\nContent-Length: ");
  AppendNumber(&o, r.body.size());
  if (r.inference_header_length > 0) {
    o.append("\r\nInference-Header-Content-Length: ");
    AppendNumber(&o, r.inference_header_length);
  }
  if (!r.served_version.empty()) {
    o.append("\r\nx-ronghe-version: ");
    o.append(r.served_version);
  }
  if (s.close) {
    o.append("\r\nConnection: close");
  } else if (s.http10) {
    o.append("\r\nConnection: keep-alive");
  }
  o.append("\r\n\r\n");
  o.append(r.body);
  --c->answers;
}

void Loop::Flush(Conn* c) {
  while (c->out_off < c->out.size()) {
    ssize_t w = ::send(c->fd, c->out.data() + c->out_off, c->out.size() - c->out_off, MSG_NOSIGNAL);
    if (w > 0) {
      c->out_off += static_cast<size_t>(w);
      c->active = Clock::now();
      continue;
    }
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      Interest(c, true);  // the rest when the socket takes more; read nothing meanwhile
      return;
    }
    if (w < 0 && errno == EINTR) continue;
    c->dead = true;
    return;
  }
  c->out.clear();
  c->out_off = 0;
  Interest(c, false);
}

// A connection closed after an error answer may still have request bytes in flight; closing
// with unread data would send a reset, and the client could lose the answer. So: shut the
// writing side, read and drop until the client closes, for at most kLinger.
constexpr auto kLinger = std::chrono::seconds(2);

void Loop::Linger(Conn* c) {
  c->lingering = true;
  c->active = Clock::now();
  ::shutdown(c->fd, SHUT_WR);
  Drain(c);
}

void Loop::Drain(Conn* c) {
  char buf[16 << 10];
  while (true) {
    ssize_t r = ::recv(c->fd, buf, sizeof buf, 0);
    if (r > 0) continue;
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    return Close(c);  // the client closed too, or an error
  }
}

void Loop::Sweep(Clock::time_point now) {
  last_sweep = now;
  const auto idle = std::chrono::seconds(impl->options.idle_timeout_s);
  for (auto& c : conns) {
    if (!c || c->more) continue;
    if (now - c->active >
        (c->lingering ? std::chrono::duration_cast<std::chrono::seconds>(kLinger) : idle)) {
      Close(c.get());
    }
  }
}

void Loop::Run() {
  epoll_event events[kEvents];
  last_sweep = Clock::now();
  std::vector<Conn*> pending_again;
  while (true) {
    int n = epoll_wait(ep, events, kEvents, again.empty() ? 1000 : 0);
    if (impl->stopping.load()) break;
    slots.clear();
    touched.clear();
    pending_again.swap(again);
    again.clear();
    for (Conn* c : pending_again) {  // pipelined requests beyond last turn's share
      if (c->dead || c->writing) continue;
      Parse(c);
      c->touched = true;
      touched.push_back(c);
    }
    for (int e = 0; e < n; ++e) {
      const int fd = events[e].data.fd;
      if (fd == impl->listen_fd) {
        Accept();
        continue;
      }
      if (fd == wake) {
        TakeInbox();
        continue;
      }
      if (static_cast<size_t>(fd) >= conns.size() || !conns[static_cast<size_t>(fd)]) continue;
      Conn* c = conns[static_cast<size_t>(fd)].get();
      const uint32_t ev = events[e].events;
      if (c->lingering) {
        Drain(c);
        continue;
      }
      if (ev & EPOLLOUT) Flush(c);
      if (!c->writing && (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) Read(c);
      if (!c->dead && !c->writing) Parse(c);
      if (!c->touched) {
        c->touched = true;
        touched.push_back(c);
      }
    }
    // Every inference this turn started is queued by now: finishing the first runs them as one
    // batch (on this thread when an instance is idle); answers go out in request order.
    for (const Slot& s : slots) {
      HttpReply& r = replies[s.index];
      if (s.started) impl->api->Finish(pendings[s.index].get(), &r);
      Serialize(s, r);
    }
    for (Conn* c : touched) {
      c->touched = false;
      if (c->consumed > 0) {
        c->in.erase(0, c->consumed);
        c->scanned -= std::min(c->scanned, c->consumed);
        c->consumed = 0;
      }
      if (!c->dead) Flush(c);
      const bool written = c->out_off == c->out.size();
      if (c->dead || (written && c->peer_closed && !c->more)) {
        Close(c);
      } else if (written && c->discard == 0 && c->close_after) {
        Linger(c);
      } else if (c->more) {
        again.push_back(c);
      }
    }
    const auto now = Clock::now();
    if (now - last_sweep > std::chrono::seconds(1)) Sweep(now);
  }
  for (auto& c : conns) {
    if (!c) continue;
    Flush(c.get());  // best effort: answers already made go out
    Close(c.get());
  }
}

EventHttpServer::EventHttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<EventHttpServer>> EventHttpServer::Start(HttpApi* api,
                                                                const EventHttpOptions& options) {
  if (options.max_body_bytes < 0 || options.max_header_bytes < 256 || options.loops < 0 ||
      options.idle_timeout_s < 1 || options.max_connections < 1) {
    return InvalidArgument("http: bad front-end options");
  }
  auto impl = std::make_unique<Impl>();
  impl->api = api;
  impl->options = options;
  const std::string where = options.host + ":" + std::to_string(options.port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(options.port);
  if (getaddrinfo(options.host.c_str(), service.c_str(), &hints, &found) != 0 || !found) {
    return Unavailable("cannot listen on " + where + " (not an address of this host)");
  }
  for (addrinfo* a = found; a && impl->listen_fd < 0; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    int yes = 1;
    // SO_REUSEADDR (restart over TIME_WAIT) only: SO_REUSEPORT would let a second server bind a
    // port in use and silently take half its connections.
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, SOMAXCONN) == 0) {
      impl->listen_fd = fd;
    } else {
      ::close(fd);
    }
  }
  freeaddrinfo(found);
  if (impl->listen_fd < 0) {
    return Unavailable("cannot listen on " + where + " (in use, or not an address of this host)");
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  getsockname(impl->listen_fd, reinterpret_cast<sockaddr*>(&bound), &len);
  impl->port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6&>(bound).sin6_port
                                                 : reinterpret_cast<sockaddr_in&>(bound).sin_port);
  const int loops = options.loops > 0 ? options.loops : DefaultThreads();
  for (int i = 0; i < loops; ++i) {
    auto l = std::make_unique<Loop>();
    l->impl = impl.get();
    l->index = i;
    l->ep = epoll_create1(EPOLL_CLOEXEC);
    l->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->ep < 0 || l->wake < 0) {
      if (l->ep >= 0) ::close(l->ep);
      if (l->wake >= 0) ::close(l->wake);
      for (auto& m : impl->loops) {
        ::close(m->ep);
        ::close(m->wake);
      }
      ::close(impl->listen_fd);
      return Internal(std::string("http: cannot create an event loop: ") + std::strerror(errno));
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = l->wake;
    epoll_ctl(l->ep, EPOLL_CTL_ADD, l->wake, &ev);
    if (i == 0) {
      ev.data.fd = impl->listen_fd;
      epoll_ctl(l->ep, EPOLL_CTL_ADD, impl->listen_fd, &ev);
    }
    impl->loops.push_back(std::move(l));
  }
  for (auto& l : impl->loops) {
    Loop* raw = l.get();
    l->thread = std::thread([raw] { raw->Run(); });
  }
  return std::unique_ptr<EventHttpServer>(new EventHttpServer(std::move(impl)));
}

EventHttpServer::~EventHttpServer() { Stop(); }

int EventHttpServer::port() const { return impl_->port; }

void EventHttpServer::Stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  impl_->stopping.store(true);
  for (auto& l : impl_->loops) {
    uint64_t one = 1;
    (void)!::write(l->wake, &one, sizeof one);
  }
  for (auto& l : impl_->loops) {
    if (l->thread.joinable()) l->thread.join();
    {
      MutexLock lock(&l->inbox_mu);
      for (auto& [fd, remote] : l->inbox) ::close(fd);
      l->inbox.clear();
    }
    ::close(l->ep);
    ::close(l->wake);
  }
  ::close(impl_->listen_fd);
}

}  // namespace ronghe::serve
