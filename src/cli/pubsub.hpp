#pragma once
// `wsagent pub` and `wsagent sub`: command-line clients whose flags follow mosquitto_pub and
// mosquitto_sub (-h -p -t -m -q -r -i -C -W -v), plus --url and --token.

#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace wsagent::cli {

struct common_options {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string url;    // overrides host and port: ws://host:port/ws
  std::string token;  // sent in the auth frame
  std::string client_id;
  int qos = 0;
  int timeout_s = 10;  // for connecting, authenticating and acknowledgements
};

struct pub_options : common_options {
  std::string tag;
  std::string message;
  bool has_message = false;
  bool stdin_whole = false;   // -s: the whole of stdin is one message
  bool stdin_lines = false;   // -l: each line of stdin is a message
  bool null_message = false;  // -n: a null payload
  bool retain = false;
  bool as_string = false;  // --string: send the text as a JSON string even if it parses
  bool binary = false;     // --binary: send the bytes in a binary envelope
};

struct sub_options : common_options {
  std::vector<std::string> tags;
  int count = 0;         // -C: exit after this many messages (0: never)
  int wait_s = 0;        // -W: exit after this many seconds without (enough) messages
  bool verbose = false;  // -v: "tag payload"
  bool json = false;     // --json: the whole delivery frame
  bool binary = false;   // --binary: ask for binary frames for binary payloads
};

void add_pub_command(CLI::App& app, pub_options& o);
void add_sub_command(CLI::App& app, sub_options& o);

// Exit codes: 0 success, 1 an error (connection, auth, refused request), 27 -W timeout.
int run_pub(const pub_options& o);
int run_sub(const sub_options& o);

}  // namespace wsagent::cli
