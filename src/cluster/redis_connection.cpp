#include "cluster/redis_connection.hpp"

#include <algorithm>
#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <cctype>
#include <charconv>
#include <chrono>
#include <deque>

namespace wsagent::cluster {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using clock_type = std::chrono::steady_clock;

std::string redis_endpoint::describe() const {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port) +
         (db ? "/" + std::to_string(db) : "");
}

std::string parse_redis_url(std::string_view url, redis_endpoint& out) {
  redis_endpoint e;
  if (url.starts_with("rediss://")) {
    e.tls = true;
    url.remove_prefix(9);
  } else if (url.starts_with("redis://")) {
    url.remove_prefix(8);
  } else {
    return "must start with redis:// (or rediss:// for TLS)";
  }
  if (auto at = url.rfind('@'); at != std::string_view::npos) {
    auto cred = url.substr(0, at);
    url.remove_prefix(at + 1);
    if (auto colon = cred.find(':'); colon != std::string_view::npos) {
      e.user = cred.substr(0, colon);
      e.password = cred.substr(colon + 1);
    } else {
      e.password = cred;  // redis://secret@host: a password for the default user
    }
    if (e.password.empty()) return "the password after ':' is empty";
  }
  std::string_view hostport = url, db;
  if (auto slash = url.find('/'); slash != std::string_view::npos) {
    hostport = url.substr(0, slash);
    db = url.substr(slash + 1);
  }
  std::string_view port;
  if (hostport.starts_with('[')) {
    auto close = hostport.find(']');
    if (close == std::string_view::npos) return "an IPv6 address must end with ]";
    e.host = hostport.substr(1, close - 1);
    auto rest = hostport.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return "expected :port after the IPv6 address";
      port = rest.substr(1);
    }
  } else if (auto colon = hostport.rfind(':'); colon != std::string_view::npos) {
    e.host = hostport.substr(0, colon);
    port = hostport.substr(colon + 1);
  } else {
    e.host = hostport;
  }
  if (e.host.empty()) return "no host";
  for (char c : e.host)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != ':' &&
        c != '_')
      return "the host may hold only letters, digits, '.', '-', '_' (or an IPv6 address)";
  if (!port.empty()) {
    unsigned p = 0;
    auto r = std::from_chars(port.data(), port.data() + port.size(), p);
    if (r.ec != std::errc() || r.ptr != port.data() + port.size() || p == 0 || p > 65535)
      return "the port must be a number from 1 to 65535";
    e.port = static_cast<std::uint16_t>(p);
  }
  if (!db.empty()) {
    auto r = std::from_chars(db.data(), db.data() + db.size(), e.db);
    if (r.ec != std::errc() || r.ptr != db.data() + db.size() || e.db < 0)
      return "the database after / must be a number";
  }
  out = std::move(e);
  return {};
}

std::shared_ptr<asio::ssl::context> make_redis_tls(const std::string& ca_file,
                                                   const std::string& cert_file,
                                                   const std::string& key_file,
                                                   std::string& error) {
  auto tls = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  tls->set_options(asio::ssl::context::no_sslv2 | asio::ssl::context::no_sslv3 |
                   asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
  boost::system::error_code ec;
  if (ca_file.empty())
    tls->set_default_verify_paths(ec);
  else
    tls->load_verify_file(ca_file, ec);
  if (ec) {
    error = "cannot load the trusted certificates" +
            (ca_file.empty() ? std::string() : " from " + ca_file) + ": " + ec.message();
    return nullptr;
  }
  tls->set_verify_mode(asio::ssl::verify_peer);
  if (!cert_file.empty()) {
    tls->use_certificate_chain_file(cert_file, ec);
    if (ec) {
      error = "cannot load the client certificate " + cert_file + ": " + ec.message();
      return nullptr;
    }
    tls->use_private_key_file(key_file, asio::ssl::context::pem, ec);
    if (ec) {
      error = "cannot load the client key " + key_file + ": " + ec.message();
      return nullptr;
    }
  }
  return tls;
}

namespace {

bool redirected(std::string_view error) {
  return error.starts_with("MOVED ") || error.starts_with("ASK ") ||
         error.starts_with("CLUSTERDOWN") || error.starts_with("TRYAGAIN");
}

bool is_push(const resp_value& v) {
  const auto k = v.push_kind();
  return k == "message" || k == "smessage" || k == "pmessage" || k == "subscribe" ||
         k == "ssubscribe" || k == "psubscribe" || k == "unsubscribe" || k == "sunsubscribe" ||
         k == "punsubscribe";
}

bool is_subscription(std::string_view cmd) {
  auto eq = [cmd](std::string_view s) {
    return cmd.size() == s.size() &&
           std::equal(cmd.begin(), cmd.end(), s.begin(), [](char a, char b) {
             return std::toupper(static_cast<unsigned char>(a)) == b;
           });
  };
  return eq("SUBSCRIBE") || eq("SSUBSCRIBE") || eq("PSUBSCRIBE") || eq("UNSUBSCRIBE") ||
         eq("SUNSUBSCRIBE") || eq("PUNSUBSCRIBE");
}

class connection_impl final : public redis_connection,
                              public std::enable_shared_from_this<connection_impl> {
 public:
  connection_impl(asio::io_context& io, redis_endpoint where, std::string name, callbacks cb,
                  redis_settings settings)
      : where_(std::move(where)),
        name_(std::move(name)),
        cb_(std::move(cb)),
        settings_(settings),
        socket_(io),
        resolver_(io),
        timer_(io) {}

  void start() override {
    login();
    auto self = shared_from_this();
    arm_timer(settings_.connect_timeout_ms);
    resolver_.async_resolve(
        where_.host, std::to_string(where_.port),
        [this, self](boost::system::error_code ec, const tcp::resolver::results_type& r) {
          if (closed_) return;
          if (ec) return fail("cannot resolve " + where_.host + ": " + ec.message());
          asio::async_connect(socket_, r, [this, self](boost::system::error_code ec2, auto&&) {
            if (closed_) return;
            if (ec2) return fail("cannot connect to " + where_.describe() + ": " + ec2.message());
            socket_.set_option(tcp::no_delay(true));
            if (!where_.tls) return opened();
            if (!settings_.tls) return fail("rediss:// without a TLS context");
            tls_ = std::make_unique<asio::ssl::stream<tcp::socket&>>(socket_, *settings_.tls);
            // SNI for a name (RFC 6066 has none for an address), and the name (or address)
            // the certificate must carry.
            boost::system::error_code not_ip;
            (void)asio::ip::make_address(where_.host, not_ip);
            if (not_ip &&
                !SSL_ctrl(tls_->native_handle(), SSL_CTRL_SET_TLSEXT_HOSTNAME,
                          TLSEXT_NAMETYPE_host_name, const_cast<char*>(where_.host.c_str())))
              return fail("cannot set the TLS server name");
            tls_->set_verify_callback(asio::ssl::host_name_verification(where_.host));
            tls_->async_handshake(
                asio::ssl::stream_base::client, [this, self](boost::system::error_code ec3) {
                  if (closed_) return;
                  if (ec3) return fail("TLS with " + where_.describe() + ": " + ec3.message());
                  opened();
                });
          });
        });
  }

  void opened() {
    connected_ = true;
    last_read_ = clock_type::now();
    read();
    flush();
    tick();
  }

  using redis_connection::send;
  void send(std::span<const std::string_view> args, reply_handler h) override {
    if (closed_) {
      if (h) h(lost());
      return;
    }
    append_command(out_, args);
    // (S)SUBSCRIBE and (S)UNSUBSCRIBE are answered by pushes, one per channel.
    if (args.empty() || !is_subscription(args[0]))
      waiting_.push_back({std::move(h), clock_type::now()});
    flush();
  }

  void close() override {
    if (closed_) return;
    closed_ = true;
    shut();
  }

  bool is_ready() const override { return ready_ && !closed_; }
  std::size_t waiting() const override { return waiting_.size(); }

 private:
  struct waiter {
    reply_handler h;
    clock_type::time_point sent;
  };

  static const resp_value& lost() {
    static const resp_value v{resp_value::kind::error, std::string(connection_lost), 0, {}};
    return v;
  }

  // The login goes first in the pipeline; `ready` after its last reply.
  void login() {
    auto check = [this](const resp_value& v) {
      if (v.is(resp_value::kind::error) && !closed_) fail("Redis refused the login: " + v.text);
    };
    if (!where_.password.empty()) {
      if (where_.user.empty())
        send({"AUTH", where_.password}, check);
      else
        send({"AUTH", where_.user, where_.password}, check);
    }
    if (where_.db) send({"SELECT", std::to_string(where_.db)}, check);
    send({"CLIENT", "SETNAME", name_}, [this, check](const resp_value& v) {
      check(v);
      if (closed_) return;
      ready_ = true;
      if (cb_.ready) cb_.ready();
    });
  }

  void read() {
    auto self = shared_from_this();
    auto done = [this, self](boost::system::error_code ec, std::size_t n) {
      if (closed_) return;
      if (ec)
        return fail(ec == asio::error::eof || ec == asio::ssl::error::stream_truncated
                        ? "Redis closed the connection"
                        : "read: " + ec.message());
      last_read_ = clock_type::now();
      reader_.feed(buf_.data(), n);
      resp_value v;
      for (;;) {
        const auto st = reader_.next(v);
        if (st == resp_reader::status::need_more) break;
        if (st == resp_reader::status::error)
          return fail("not a Redis reply stream: " + reader_.error());
        dispatch(v);
        if (closed_) return;
      }
      read();
    };
    if (tls_)
      tls_->async_read_some(asio::buffer(buf_), std::move(done));
    else
      socket_.async_read_some(asio::buffer(buf_), std::move(done));
  }

  void dispatch(const resp_value& v) {
    if (is_push(v) && cb_.push) {
      cb_.push(v);
      return;
    }
    if (waiting_.empty()) return fail("a reply to no command");
    // A Redis Cluster that moved the slot (resharding, a failover) or cannot serve it now:
    // the command did not run. The connection ends (its waiters, this one too, get
    // connection_lost, so a QoS 1/2 write is sent again) and the owner makes a new one to
    // whichever node the slot map names then.
    if (v.is(resp_value::kind::error) && redirected(v.text))
      return fail("Redis Cluster: " + v.text);
    auto w = std::move(waiting_.front());
    waiting_.pop_front();
    if (w.h) w.h(v);
  }

  void flush() {
    if (!connected_ || writing_ || out_.empty() || closed_) return;
    writing_ = true;
    wbuf_.swap(out_);
    auto self = shared_from_this();
    auto done = [this, self](boost::system::error_code ec, std::size_t) {
      writing_ = false;
      if (closed_) return;
      if (ec) return fail("write: " + ec.message());
      wbuf_.clear();
      flush();
    };
    if (tls_)
      asio::async_write(*tls_, asio::buffer(wbuf_), std::move(done));
    else
      asio::async_write(socket_, asio::buffer(wbuf_), std::move(done));
  }

  void arm_timer(int ms) {
    auto self = shared_from_this();
    timer_.expires_after(std::chrono::milliseconds(ms));
    timer_.async_wait([this, self](boost::system::error_code ec) {
      if (ec || closed_) return;
      if (!connected_)
        return fail("no connection to " + where_.describe() + " within " +
                    std::to_string(settings_.connect_timeout_ms) + " ms");
      tick();
    });
  }

  // Four times per reply timeout: a reply overdue kills the connection; a silent one probes.
  void tick() {
    const auto now = clock_type::now();
    const auto timeout = std::chrono::milliseconds(settings_.reply_timeout_ms);
    if (!waiting_.empty() && now - waiting_.front().sent > timeout)
      return fail("no reply from " + where_.describe() + " within " +
                  std::to_string(settings_.reply_timeout_ms) + " ms");
    if (waiting_.empty() && ready_ &&
        now - last_read_ > std::chrono::milliseconds(settings_.probe_idle_ms))
      send({"PING"});
    arm_timer(std::max(50, std::min(settings_.reply_timeout_ms, settings_.probe_idle_ms) / 4));
  }

  void fail(const std::string& why) {
    if (closed_) return;
    closed_ = true;
    shut();
    if (cb_.closed) cb_.closed(why);
  }

  void shut() {
    ready_ = false;
    boost::system::error_code ignored;
    timer_.cancel();
    resolver_.cancel();
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    auto waiting = std::move(waiting_);
    waiting_.clear();
    for (auto& w : waiting)
      if (w.h) w.h(lost());
  }

  const redis_endpoint where_;
  const std::string name_;
  const callbacks cb_;
  const redis_settings settings_;
  tcp::socket socket_;
  std::unique_ptr<asio::ssl::stream<tcp::socket&>> tls_;  // over socket_, for rediss://
  tcp::resolver resolver_;
  asio::steady_timer timer_;
  resp_reader reader_;
  std::array<char, 64 * 1024> buf_{};
  std::string out_;   // commands not yet written
  std::string wbuf_;  // the write in flight
  std::deque<waiter> waiting_;
  clock_type::time_point last_read_{};
  bool connected_ = false;
  bool ready_ = false;
  bool writing_ = false;
  bool closed_ = false;
};

}  // namespace

std::shared_ptr<redis_connection> redis_connection::create(asio::io_context& io,
                                                           redis_endpoint where, std::string name,
                                                           callbacks cb, redis_settings settings) {
  return std::make_shared<connection_impl>(io, std::move(where), std::move(name), std::move(cb),
                                           settings);
}

}  // namespace wsagent::cluster
