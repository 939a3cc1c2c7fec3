// talkrender serve: live talking-head sessions over HTTP + WebSocket (issue 18,
// docs/serve.md). The sessions are serve::SessionManager's; the protocol is
// serve::HttpServer's; this file parses the flags and handles the signals.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "common/files.h"
#include "common/interrupt.h"
#include "serve/http_server.h"
#include "serve/session_manager.h"

namespace tr::cli {
namespace {

std::atomic<int> g_serve_signals{0};

extern "C" void on_serve_signal(int) { g_serve_signals.fetch_add(1); }

Status check_avatars_dir(const std::string& dir) {
  if (!is_directory(dir)) return BadInput("--avatars " + dir + ": not a folder");
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.is_directory(ec)) return Status::Ok();
  }
  if (ec) return BadInput("--avatars " + dir + ": cannot list it: " + ec.message());
  return BadInput("--avatars " + dir +
                  ": no avatar folders in it (one package or dataset folder per avatar)");
}

}  // namespace

int cmd_serve(int argc, char** argv) {
  serve::ServeOptions so;
  serve::HttpServerOptions ho;
  CLI::App app{
      "Serve live lip-synced talking heads over HTTP + WebSocket. Each session plays its "
      "avatar's idle frames until speech arrives, then renders it in real time on a shared, "
      "batched model; the browser client is at http://HOST:PORT/. See docs/serve.md.",
      "talkrender serve"};
  app.add_option("--avatars", so.avatars_dir,
                 "folder of avatars (packages or datasets), one per folder; a session names "
                 "its avatar by folder name")
      ->required();
  app.add_option("--listen", ho.listen, "HOST:PORT to listen on (default 127.0.0.1:8080)");
  app.add_option("--token", ho.token,
                 "require \"Authorization: Bearer TOKEN\" on every request (the WebSocket "
                 "also takes ?access_token=TOKEN; the page at / stays public)");
  app.add_option("--max-sessions", so.max_sessions,
                 "cap on the sessions held at full fps (default 0: the measured admission "
                 "limit alone)");
  app.add_option("--headroom", so.headroom,
                 "share of the machine the admission limit promises: sessions = floor(headroom / "
                 "a session's measured share; see docs/serve.md) (default 0.6; above 1 "
                 "overcommits: frames come late)");
  app.add_option("--batch", so.batch,
                 "max frames per inference batch across sessions (default 0: from the "
                 "measurement)");
  app.add_option("--threads", so.threads, "runtime threads (default 0 = one per core)");
  app.add_option("--precision", so.precision, "auto (default), fp32 or bf16")
      ->check(CLI::IsMember({"auto", "fp32", "bf16"}));
  app.add_option("--idle-timeout", so.idle_timeout_s,
                 "seconds a session may stay without a client before it is closed "
                 "(default 60)");
  bool verbose = false;
  add_verbose_flag(app, &verbose);
  app.footer(
      "Endpoints:\n"
      "  GET  /health               {\"status\",\"sessions\",\"admission_limit\",\"avatars\"}\n"
      "  GET  /metrics              Prometheus text\n"
      "  POST /v1/sessions          {\"avatar\":NAME,\"format\":\"fmp4\"|\"jpeg\"} -> 201 "
      "{\"id\",...,\"mime\",\"ws\"}\n"
      "  DELETE /v1/sessions/ID     close a session\n"
      "  GET  /v1/sessions/ID/ws    WebSocket: binary in = PCM s16le 16 kHz mono; text in = "
      "{\"type\":\"speak-end\"|\"interrupt\"|\"close\"}; out = fMP4 fragments (or JPEG + "
      "PCM) per frame, from the moment it connects\n"
      "  POST /v1/render?avatar=NAME  audio file body -> video/mp4\n"
      "  GET  /                     browser client (WAV file or microphone)\n"
      "Errors are JSON {\"error\": \"...\"}: 400 bad request, 401 token, 404 unknown "
      "avatar/session/path, 405 method, 413 too large, 503 full. WebSocket closes: 1003 odd "
      "PCM byte count, 1008 client too slow, 1009 message too large.\n"
      "Signals: SIGTERM or Ctrl-C stops accepting, ends the open sessions (each gets a final "
      "message) and exits 0.\n"
      "Client: tools/serve_client.py. Protocol: docs/serve.md.");
  if (int rc = parse_args(app, argc, argv); rc >= 0) return rc;
  apply_verbose(verbose);
  if (Status s = check_avatars_dir(so.avatars_dir); !s.ok()) return report_error(app, s.error());
  {
    std::string host;
    int port = 0;
    if (Status s = serve::parse_listen(ho.listen, &host, &port); !s.ok())
      return report_error(app, s.error());
  }
  if (so.max_sessions < 0) return report_error(app, BadInput("--max-sessions must be >= 0"));
  if (so.batch < 0) return report_error(app, BadInput("--batch must be >= 0"));
  if (!(so.headroom >= 0.05 && so.headroom <= 4)) {
    return report_error(app, BadInput("--headroom must be in [0.05, 4]"));
  }
  if (so.threads < 0) return report_error(app, BadInput("--threads must be >= 0"));
  if (!(so.idle_timeout_s > 0 && so.idle_timeout_s <= 86400))
    return report_error(app, BadInput("--idle-timeout must be 0 .. 86400 seconds (not 0)"));

  struct sigaction sa {};
  sa.sa_handler = on_serve_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::fprintf(stderr, "talkrender serve: loading the avatars of %s and measuring...\n",
               so.avatars_dir.c_str());
  auto sessions = serve::SessionManager::create(so);
  if (!sessions.ok()) return report_error(app, sessions.error());
  serve::SessionManager* sm = sessions->get();
  serve::HttpServer server(sm, ho);
  if (Status s = server.start(); !s.ok()) return report_error(app, s.error());
  std::string host;
  int port = 0;
  (void)serve::parse_listen(ho.listen, &host, &port);
  std::fprintf(stderr,
               "talkrender serve: listening on http://%s%s%s:%d/ (%zu avatars, admission "
               "limit %d sessions)\n",
               host.find(':') != std::string::npos ? "[" : "", host.c_str(),
               host.find(':') != std::string::npos ? "]" : "", server.port(),
               sm->avatar_names().size(), sm->admission_limit());
  while (g_serve_signals.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));

  std::fprintf(stderr, "talkrender serve: stopping: draining %d sessions\n", sm->open_sessions());
  server.stop_accepting();
  sm->drain();
  set_interrupted(true);  // a POST /v1/render still running gives up
  server.stop(std::chrono::milliseconds(2000));
  std::fprintf(stderr, "talkrender serve: stopped\n");
  return 0;
}

}  // namespace tr::cli
