// wsagent: one binary, four subcommands. `serve` runs the agent; `pub` and `sub` are
// command-line clients; `bench` is the load generator. See README.md and docs/.

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>

#include "app/config.hpp"
#include "app/serve.hpp"
#include "cli/pubsub.hpp"
#include "tools/bench/bench.hpp"

#ifdef WSAGENT_MIMALLOC
#include <mimalloc.h>
#endif

extern char** environ;

namespace {

std::string version_line() {
  std::string v = std::string("wsagent ") + WSAGENT_VERSION_STRING;
#ifdef WSAGENT_MIMALLOC
  // Referencing mimalloc also keeps the allocator linked in under --as-needed.
  const int m = mi_version();
  v += " (mimalloc " + std::to_string(m / 100) + "." + std::to_string(m / 10 % 10) + "." +
       std::to_string(m % 10) + ")";
#endif
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace wsagent;
  CLI::App app(
      "wsagent: a real-time messaging agent for IoT (WebSocket, tags, MQTT's matching rules)");
  app.set_version_flag("--version", version_line());
  app.require_subcommand(1);

  auto* serve = app.add_subcommand("serve", "run the agent");
  std::string config_path;
  bool check_only = false;
  serve->add_option("-c,--config", config_path, "TOML configuration file")
      ->envname("WSAGENT_CONFIG");
  serve->add_flag("--check-config", check_only,
                  "validate the configuration, report every error, exit");
  serve->add_option_function<std::string>(
      "--listen", [&](const std::string& v) { (void)v; }, "shorthand for --server.listen");
  app::config_overrides overrides;
  app::add_config_flags(*serve, overrides);

  cli::pub_options pub;
  cli::sub_options sub;
  cli::add_pub_command(app, pub);
  cli::add_sub_command(app, sub);
  bench::bench_options bench_opts;
  bench::add_bench_command(app, bench_opts);

  for (auto* command : app.get_subcommands({}))
    command->set_version_flag("--version", version_line());

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  if (app.got_subcommand("pub")) return cli::run_pub(pub);
  if (app.got_subcommand("sub")) return cli::run_sub(sub);
  if (app.got_subcommand("bench")) return bench::run_bench(bench_opts);

  if (auto* listen = serve->get_option("--listen"); listen->count())
    overrides["server.listen"] = listen->as<std::string>();
  auto loaded = app::load_config(config_path, environ, overrides);
  if (!loaded.ok()) {
    for (const auto& e : loaded.errors)
      std::cerr << e.to_string() << "\n";
    std::cerr << "wsagent: " << loaded.errors.size() << " configuration error(s)\n";
    return 2;
  }
  if (check_only) {
    if (const auto problems = app::check_files(loaded.value); !problems.empty()) {
      for (const auto& p : problems)
        std::cerr << "wsagent: " << p << "\n";
      return 2;
    }
    std::cout << (config_path.empty() ? std::string("defaults") : config_path)
              << ": configuration is valid\n";
    return 0;
  }
  return app::serve(loaded.value, config_path);
}
