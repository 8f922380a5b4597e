// RESP (cluster/resp.hpp): commands written, replies read with hiredis's reader, and both
// against a real redis-server started by the test on a free port: plain commands, pub/sub,
// and the sharded pub/sub push (`smessage`) that hiredis's async API cannot carry.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "cluster/resp.hpp"

namespace wsagent::cluster {
namespace {

using kind = resp_value::kind;

TEST(Resp, ACommandIsAnArrayOfBulkStrings) {
  std::string out;
  append_command(out, {"SET", "k", ""});
  append_command(out, {"PUBLISH", "node:7", std::string_view("a\r\nb\0c", 6)});
  using namespace std::string_literals;  // (the payload holds a NUL)
  EXPECT_EQ(out,
            "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"
            "*3\r\n$7\r\nPUBLISH\r\n$6\r\nnode:7\r\n$6\r\na\r\nb\0c\r\n"s);
}

TEST(Resp, RepliesOfEveryKindInPiecesOfAnySize) {
  const std::string stream =
      "+OK\r\n-ERR wrong\r\n:42\r\n$5\r\nhello\r\n$-1\r\n"
      "*3\r\n$8\r\nsmessage\r\n$6\r\nnode:1\r\n$3\r\nabc\r\n*0\r\n";
  for (std::size_t chunk : {1u, 3u, 7u, 1000u}) {
    resp_reader r;
    std::vector<resp_value> got;
    for (std::size_t at = 0; at < stream.size(); at += chunk) {
      r.feed(stream.data() + at, std::min(chunk, stream.size() - at));
      resp_value v;
      while (r.next(v) == resp_reader::status::value)
        got.push_back(v);
    }
    ASSERT_EQ(got.size(), 7u) << chunk;
    EXPECT_TRUE(got[0].is(kind::status) && got[0].text == "OK");
    EXPECT_TRUE(got[1].is(kind::error) && got[1].text == "ERR wrong");
    EXPECT_TRUE(got[2].is(kind::integer) && got[2].integer == 42);
    EXPECT_TRUE(got[3].is(kind::string) && got[3].text == "hello");
    EXPECT_TRUE(got[4].is(kind::nil));
    EXPECT_EQ(got[5].push_kind(), "smessage");
    EXPECT_EQ(got[5].elements[2].text, "abc");
    EXPECT_TRUE(got[6].is(kind::array) && got[6].elements.empty());
  }
}

TEST(Resp, AnArrayClaimingTooManyElementsIsAnErrorNotAnAllocation) {
  resp_reader r;
  const std::string_view huge = "*666666660\r\n";
  r.feed(huge.data(), huge.size());
  resp_value v;
  EXPECT_EQ(r.next(v), resp_reader::status::error);
  EXPECT_EQ(r.error(), "an array of more than 1048576 elements");
  resp_reader fine;
  const std::string_view two = "*2\r\n:1\r\n:2\r\n";
  fine.feed(two.data(), two.size());
  EXPECT_EQ(fine.next(v), resp_reader::status::value);
  EXPECT_EQ(v.elements.size(), 2u);
}

TEST(Resp, AStreamThatIsNotRespIsAnErrorThatStays) {
  resp_reader r;
  r.feed("HTTP/1.1 400 Bad Request\r\n", 26);
  resp_value v;
  EXPECT_EQ(r.next(v), resp_reader::status::error);
  EXPECT_NE(r.error(), "");
  EXPECT_EQ(r.next(v), resp_reader::status::error);
}

// --- against a real redis-server ---

int free_port() {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(s);
  return ntohs(a.sin_port);
}

struct redis_process {
  pid_t pid = -1;
  int port = free_port();
  redis_process() {
    pid = ::fork();
    if (pid == 0) {
      const auto p = std::to_string(port);
      ::execlp("redis-server", "redis-server", "--port", p.c_str(), "--bind", "127.0.0.1", "--save",
               "", "--appendonly", "no", "--loglevel", "warning", nullptr);
      ::_exit(127);
    }
  }
  ~redis_process() {
    ::kill(pid, SIGTERM);
    ::waitpid(pid, nullptr, 0);
  }
};

struct connection {
  int fd = -1;
  resp_reader reader;
  explicit connection(int port) {
    for (int i = 0; i < 200 && fd < 0; ++i) {
      fd = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(static_cast<std::uint16_t>(port));
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(fd);
        fd = -1;
        std::this_thread::sleep_for(std::chrono::milliseconds(25));
      }
    }
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~connection() {
    if (fd >= 0) ::close(fd);
  }
  void send(std::initializer_list<std::string_view> args) {
    std::string out;
    append_command(out, args);
    ASSERT_EQ(::write(fd, out.data(), out.size()), static_cast<ssize_t>(out.size()));
  }
  resp_value reply() {
    resp_value v;
    while (true) {
      const auto st = reader.next(v);
      if (st == resp_reader::status::value) return v;
      if (st == resp_reader::status::error) {
        ADD_FAILURE() << reader.error();
        return v;
      }
      char buf[4096];
      const auto n = ::read(fd, buf, sizeof buf);
      if (n <= 0) {
        ADD_FAILURE() << "redis closed the connection or timed out";
        return v;
      }
      reader.feed(buf, static_cast<std::size_t>(n));
    }
  }
};

TEST(RespAgainstRedis, CommandsPubSubAndShardedPubSub) {
  redis_process redis;
  connection c(redis.port);
  ASSERT_GE(c.fd, 0) << "redis-server did not start (scripts/install-deps.sh --test installs it)";
  c.send({"PING"});
  EXPECT_EQ(c.reply().text, "PONG");
  c.send({"SET", "tag:a", std::string_view("bin\0ary", 7)});
  c.send({"GET", "tag:a"});
  c.send({"GET", "missing"});
  EXPECT_EQ(c.reply().text, "OK");  // pipelined: the answers in order
  EXPECT_EQ(c.reply().text, std::string("bin\0ary", 7));
  EXPECT_TRUE(c.reply().is(kind::nil));
  c.send({"NOSUCHCOMMAND"});
  EXPECT_TRUE(c.reply().is(kind::error));

  connection sub(redis.port);
  sub.send({"SUBSCRIBE", "node:2"});
  EXPECT_EQ(sub.reply().push_kind(), "subscribe");
  sub.send({"SSUBSCRIBE", "node:3"});
  EXPECT_EQ(sub.reply().push_kind(), "ssubscribe");
  c.send({"PUBLISH", "node:2", "m1"});
  EXPECT_EQ(c.reply().integer, 1);
  c.send({"SPUBLISH", "node:3", "m2"});
  EXPECT_EQ(c.reply().integer, 1);
  auto m = sub.reply();
  EXPECT_EQ(m.push_kind(), "message");
  EXPECT_EQ(m.elements[1].text, "node:2");
  EXPECT_EQ(m.elements[2].text, "m1");
  auto s = sub.reply();
  EXPECT_EQ(s.push_kind(), "smessage");  // what hiredis's async API aborts on
  EXPECT_EQ(s.elements[1].text, "node:3");
  EXPECT_EQ(s.elements[2].text, "m2");
}

}  // namespace
}  // namespace wsagent::cluster
