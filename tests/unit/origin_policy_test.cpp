// server.allowed_origins: which pages may open a WebSocket (net/origin_policy.hpp), and the
// upgrade answer a refused one gets.
#include <gtest/gtest.h>

#include "net/origin_policy.hpp"

namespace wsagent::net {
namespace {

TEST(OriginPolicy, TheDefaultAllowsTheSameHostAndLoopbackPagesOnly) {
  const origin_policy p;
  EXPECT_TRUE(p.allows("http://agent.example:8080", "agent.example:8080"));
  EXPECT_TRUE(p.allows("https://agent.example", "agent.example"));
  EXPECT_TRUE(p.allows("https://agent.example", "agent.example:443"));
  EXPECT_TRUE(p.allows("HTTP://Agent.Example:8080", "agent.example:8080"));
  EXPECT_TRUE(p.allows("http://localhost:3000", "127.0.0.1:8080"));
  EXPECT_TRUE(p.allows("http://127.0.0.1:5173", "127.0.0.1:8080"));
  EXPECT_TRUE(p.allows("http://[::1]:5173", "[::1]:8080"));
  EXPECT_TRUE(p.allows("http://app.localhost", "127.0.0.1:8080"));
  // A site elsewhere, even one that names the agent's host in a path or user part.
  EXPECT_FALSE(p.allows("https://evil.example", "127.0.0.1:8080"));
  EXPECT_FALSE(p.allows("http://agent.example:9999", "agent.example:8080"));
  EXPECT_FALSE(p.allows("http://localhost.evil.example", "127.0.0.1:8080"));
  EXPECT_FALSE(p.allows("http://127.0.0.1@evil.example", "127.0.0.1:8080"));
  EXPECT_FALSE(p.allows("null", "127.0.0.1:8080"));  // a file, a sandboxed frame
  EXPECT_FALSE(p.allows("http://10.0.0.1/path", "10.0.0.1"));
}

TEST(OriginPolicy, ExactOriginsAndPatterns) {
  const origin_policy p(
      {"https://dash.example.com", "https://*.plant.example", "http://10.0.0.5:*"});
  EXPECT_TRUE(p.allows("https://dash.example.com", "agent:8443"));
  EXPECT_TRUE(p.allows("https://dash.example.com:443", "agent:8443"));
  EXPECT_FALSE(p.allows("http://dash.example.com", "agent:8443"));  // the scheme counts
  EXPECT_FALSE(p.allows("https://dash.example.com:8443", "agent:8443"));
  EXPECT_TRUE(p.allows("https://line3.plant.example", "agent:8443"));
  EXPECT_TRUE(p.allows("https://a.b.plant.example", "agent:8443"));
  EXPECT_FALSE(p.allows("https://plant.example", "agent:8443"));
  EXPECT_FALSE(p.allows("https://evilplant.example", "agent:8443"));
  EXPECT_TRUE(p.allows("http://10.0.0.5:3000", "agent:8443"));
  // The list replaces the default: neither self nor loopback unless named.
  EXPECT_FALSE(p.allows("http://localhost:3000", "localhost:8080"));
  EXPECT_TRUE(origin_policy({"*"}).allows("null", "x"));
}

TEST(OriginPolicy, EntriesAreChecked) {
  for (const char* good : {"self", "loopback", "*", "https://a.example", "https://*.a.example",
                           "http://10.0.0.5:*", "http://[::1]:3000"})
    EXPECT_EQ(origin_policy::check_entry(good), "") << good;
  for (const char* bad : {"a.example", "https://a.example/path", "https://a.*.example",
                          "https://*a.example", "https://*.*.example", "self "})
    EXPECT_NE(origin_policy::check_entry(bad), "") << bad;
}

}  // namespace
}  // namespace wsagent::net
