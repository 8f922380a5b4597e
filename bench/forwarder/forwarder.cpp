// wsagent_forwarder: the least a broker can do, to show how many messages per second this
// machine moves through one core. It is the ceiling bench/compare sets wsagent against, not a
// broker: MQTT 3.1.1 over TCP on 127.0.0.1, one thread, one epoll loop, exact-topic routing
// (no wildcards: '+' and '#' are literal characters), no authentication, no sessions, no
// retained messages, no bounds but a 1 MiB packet. Nothing is printed per message.
//
//   wsagent_forwarder [--port N]    (0, the default: pick a free port)
//
// It prints `listening on 127.0.0.1:<port>` once it accepts connections, and exits 0 on
// SIGINT or SIGTERM.
//
// Each loop round: epoll_wait; read what every readable connection has and handle its whole
// packets (a PUBLISH is appended, bytes unchanged, to the output buffer of every connection
// subscribed to its exact topic); then one write() per connection with pending output.
// Leftovers stay in the buffer and EPOLLOUT is armed only while a write was short. Output
// buffers are unbounded: the load generator's window is the only backpressure.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace {

constexpr std::size_t max_packet = 1024 * 1024;  // remaining length, bytes
constexpr std::size_t read_chunk = 256 * 1024;

// MQTT 3.1.1 control packet types (the high nibble of the first byte).
enum packet_type : std::uint8_t {
  connect = 1,
  publish = 3,
  puback = 4,
  subscribe = 8,
  unsubscribe = 10,
  pingreq = 12,
  disconnect = 14,
};

struct connection {
  int fd = -1;
  bool connected = false;  // CONNECT seen
  bool dead = false;       // closed this round; freed at its end
  bool pending = false;    // in the write list of this round
  bool want_out = false;   // EPOLLOUT armed: the last write was short
  std::string in;          // bytes of an incomplete packet
  std::string out;         // bytes to write, from out_sent on
  std::size_t out_sent = 0;
  std::vector<std::string> filters;
};

struct forwarder {
  int epfd = -1;
  int listen_fd = -1;
  bool accepting = true;
  std::unordered_map<std::string, std::vector<connection*>> subscribers;
  std::unordered_map<int, std::unique_ptr<connection>> connections;
  std::vector<connection*> to_write;                 // connections with output, this round
  std::vector<std::unique_ptr<connection>> to_free;  // closed this round

  void queue(connection& c, std::string_view bytes) {
    if (c.dead) return;
    c.out.append(bytes);
    if (!c.pending) {
      c.pending = true;
      to_write.push_back(&c);
    }
  }

  void close(connection& c) {
    if (c.dead) return;
    c.dead = true;
    for (const auto& f : c.filters)
      drop_subscriber(c, f);
    // Freed at the end of the round: this round's events and write list may still point to it.
    auto it = connections.find(c.fd);
    to_free.push_back(std::move(it->second));
    connections.erase(it);
    epoll_ctl(epfd, EPOLL_CTL_DEL, c.fd, nullptr);
    ::close(c.fd);
    if (!accepting) {  // a descriptor is free again
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.ptr = nullptr;
      epoll_ctl(epfd, EPOLL_CTL_MOD, listen_fd, &ev);
      accepting = true;
    }
  }

  void drop_subscriber(connection& c, const std::string& filter) {
    auto it = subscribers.find(filter);
    if (it == subscribers.end()) return;
    auto& v = it->second;
    auto pos = std::find(v.begin(), v.end(), &c);
    if (pos != v.end()) {
      *pos = v.back();
      v.pop_back();
    }
    if (v.empty()) subscribers.erase(it);
  }

  void accept_all() {
    for (;;) {
      int fd = accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE) {
          // Out of descriptors: stop polling the listener until a connection closes.
          epoll_event ev{};
          ev.data.ptr = nullptr;
          epoll_ctl(epfd, EPOLL_CTL_MOD, listen_fd, &ev);
          accepting = false;
        }
        return;
      }
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      auto c = std::make_unique<connection>();
      c->fd = fd;
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.ptr = c.get();
      if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        ::close(fd);
        continue;
      }
      connections.emplace(fd, std::move(c));
    }
  }

  // Reads what the socket has (level-triggered: a short read means it is drained for now).
  void read_from(connection& c) {
    static char buf[read_chunk];
    for (;;) {
      ssize_t n = ::read(c.fd, buf, sizeof buf);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return close(c);
      if (n < 0) return;
      if (c.in.empty()) {
        std::size_t used = handle_packets(c, std::string_view(buf, n));
        if (!c.dead && used < static_cast<std::size_t>(n)) c.in.assign(buf + used, n - used);
      } else {
        c.in.append(buf, n);
        std::size_t used = handle_packets(c, c.in);
        if (!c.dead) c.in.erase(0, used);
      }
      if (c.dead || static_cast<std::size_t>(n) < sizeof buf) return;
    }
  }

  // Handles every whole packet in `data`; returns the bytes consumed.
  std::size_t handle_packets(connection& c, std::string_view data) {
    std::size_t pos = 0;
    while (!c.dead) {
      // Fixed header: one byte of type and flags, then the remaining length in 1 to 4 bytes
      // of 7 bits each, least significant first, the high bit saying another byte follows.
      std::size_t length = 0, i = pos + 1;
      int shift = 0;
      for (;; shift += 7, ++i) {
        if (i >= data.size()) return pos;  // header incomplete
        auto b = static_cast<std::uint8_t>(data[i]);
        length |= static_cast<std::size_t>(b & 0x7f) << shift;
        if (!(b & 0x80)) break;
        if (shift == 21) {  // a fifth length byte
          close(c);
          return pos;
        }
      }
      if (length > max_packet) {
        close(c);
        return pos;
      }
      std::size_t header = i + 1 - pos;
      if (data.size() - pos < header + length) return pos;  // body incomplete
      handle_packet(c, data.substr(pos, header + length), header);
      pos += header + length;
    }
    return pos;
  }

  void handle_packet(connection& c, std::string_view packet, std::size_t header) {
    auto type = static_cast<std::uint8_t>(packet[0]) >> 4;
    auto flags = static_cast<std::uint8_t>(packet[0]) & 0x0f;
    std::string_view body = packet.substr(header);
    if (type != connect && !c.connected) return close(c);
    switch (type) {
      case connect:
        if (c.connected) return close(c);
        c.connected = true;
        return queue(c, std::string_view("\x20\x02\x00\x00", 4));
      case publish: {
        int qos = (flags >> 1) & 3;
        if (qos > 1 || body.size() < 2) return close(c);
        std::size_t topic_len = read_u16(body, 0);
        if (body.size() < 2 + topic_len + (qos ? 2 : 0)) return close(c);
        auto it = subscribers.find(std::string(body.substr(2, topic_len)));
        if (it != subscribers.end())
          for (connection* s : it->second)
            queue(*s, packet);
        if (qos == 1) {
          char ack[4] = {'\x40', '\x02', body[2 + topic_len], body[3 + topic_len]};
          queue(c, std::string_view(ack, 4));
        }
        return;
      }
      case puback:  // a subscriber acknowledging a forwarded QoS 1 message: nothing to do
        return;
      case subscribe:
      case unsubscribe: {
        if (flags != 2 || body.size() < 2) return close(c);
        std::string reply(body.substr(0, 2));  // the packet identifier, then return codes
        std::size_t pos = 2;
        while (pos < body.size()) {
          if (body.size() - pos < 2) return close(c);
          std::size_t len = read_u16(body, pos);
          std::size_t end = pos + 2 + len + (type == subscribe ? 1 : 0);
          if (end > body.size()) return close(c);
          std::string filter(body.substr(pos + 2, len));
          if (type == subscribe) {
            if (std::find(c.filters.begin(), c.filters.end(), filter) == c.filters.end()) {
              subscribers[filter].push_back(&c);
              c.filters.push_back(std::move(filter));
            }
            reply.push_back('\x00');  // granted QoS 0
          } else {
            auto f = std::find(c.filters.begin(), c.filters.end(), filter);
            if (f != c.filters.end()) {
              drop_subscriber(c, filter);
              c.filters.erase(f);
            }
          }
          pos = end;
        }
        if (pos == 2) return close(c);  // no topic filter at all
        std::string ack(1, type == subscribe ? '\x90' : '\xb0');
        for (std::size_t n = reply.size();; n >>= 7) {  // remaining length
          ack.push_back(static_cast<char>((n & 0x7f) | (n > 0x7f ? 0x80 : 0)));
          if (n <= 0x7f) break;
        }
        return queue(c, ack + reply);
      }
      case pingreq:
        return queue(c, std::string_view("\xd0\x00", 2));
      default:  // DISCONNECT, and anything this forwarder does not speak
        return close(c);
    }
  }

  static std::size_t read_u16(std::string_view s, std::size_t at) {
    return static_cast<std::size_t>(static_cast<std::uint8_t>(s[at])) << 8 |
           static_cast<std::uint8_t>(s[at + 1]);
  }

  // One write() per connection with output; a short one keeps the rest and arms EPOLLOUT.
  void flush() {
    for (connection* c : to_write) {
      c->pending = false;
      if (c->dead || c->out.size() == c->out_sent) continue;
      ssize_t n = ::write(c->fd, c->out.data() + c->out_sent, c->out.size() - c->out_sent);
      if (n < 0 && errno != EAGAIN && errno != EINTR) {
        close(*c);
        continue;
      }
      if (n > 0) c->out_sent += static_cast<std::size_t>(n);
      if (c->out_sent == c->out.size()) {
        c->out.clear();
        c->out_sent = 0;
      } else if (c->out_sent > c->out.size() / 2) {  // move the rest to the front now and then
        c->out.erase(0, c->out_sent);
        c->out_sent = 0;
      }
      bool want_out = c->out_sent != c->out.size();
      if (want_out != c->want_out) {
        epoll_event ev{};
        ev.events = want_out ? EPOLLIN | EPOLLOUT : EPOLLIN;
        ev.data.ptr = c;
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = want_out;
      }
    }
    to_write.clear();
    to_free.clear();
  }

  int run(int port) {
    // Signals arrive on a descriptor in the loop, so exiting needs no async-signal care.
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    signal(SIGPIPE, SIG_IGN);
    int sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);

    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t addr_len = sizeof addr;
    if (sigfd < 0 || listen_fd < 0 ||
        bind(listen_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        listen(listen_fd, SOMAXCONN) != 0 ||
        getsockname(listen_fd, reinterpret_cast<sockaddr*>(&addr), &addr_len) != 0) {
      std::fprintf(stderr, "wsagent_forwarder: cannot listen on 127.0.0.1:%d: %s\n", port,
                   std::strerror(errno));
      return 1;
    }

    epfd = epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = nullptr;  // the listener
    epoll_ctl(epfd, EPOLL_CTL_ADD, listen_fd, &ev);
    ev.data.ptr = &sigfd;  // the signals
    epoll_ctl(epfd, EPOLL_CTL_ADD, sigfd, &ev);

    std::printf("listening on 127.0.0.1:%u\n", static_cast<unsigned>(ntohs(addr.sin_port)));
    std::fflush(stdout);

    std::vector<epoll_event> events(1024);
    for (;;) {
      int n = epoll_wait(epfd, events.data(), static_cast<int>(events.size()), -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        std::perror("wsagent_forwarder: epoll_wait");
        return 1;
      }
      for (int i = 0; i < n; ++i) {
        void* p = events[i].data.ptr;
        if (p == nullptr) {
          accept_all();
        } else if (p == &sigfd) {
          return 0;
        } else {
          auto* c = static_cast<connection*>(p);
          if (c->dead) continue;
          if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) read_from(*c);
          if (!c->dead && (events[i].events & EPOLLOUT)) queue(*c, {});
        }
      }
      flush();
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  int port = 0;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    const char* value = nullptr;
    if (a == "--port" && i + 1 < argc)
      value = argv[++i];
    else if (a.starts_with("--port="))
      value = argv[i] + 7;
    char* end = nullptr;
    long v = value ? std::strtol(value, &end, 10) : -1;
    if (!value || *end != '\0' || v < 0 || v > 65535) {
      std::fprintf(stderr, "usage: %s [--port N]   (0, the default: pick a free port)\n", argv[0]);
      return 2;
    }
    port = static_cast<int>(v);
  }
  // Every connection is a descriptor: take all the process may have.
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  forwarder f;
  return f.run(port);
}
