// The HTTP + WebSocket front of `talkrender serve` (issue 18; protocol in docs/serve.md).
//
// HttpServer speaks HTTP/1.1 and WebSocket (Boost.Beast on an Asio io_context with a small
// thread pool) and calls only the SessionManager interface (session_manager.h):
//
//   GET    /                      the browser client (src/serve/page/index.html)
//   GET    /health                {"status","sessions","admission_limit","avatars"}
//   GET    /metrics               Prometheus text
//   POST   /v1/sessions           {"avatar","format"} -> 201 {"id",...,"ws"}
//   DELETE /v1/sessions/ID        closes the session
//   GET    /v1/sessions/ID/ws     WebSocket: PCM and JSON control in, the stream out
//   POST   /v1/render?avatar=A    audio file body -> video/mp4
//
// Every refusal is JSON {"error": "..."} with its status (400, 401, 404, 405, 413, 503...).
// One misbehaving client costs the others nothing: bodies and messages are bounded, reads
// time out, and each WebSocket's outgoing queue is bounded (a client that cannot keep up is
// closed with 1008 rather than slowing its session's thread).
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "common/status.h"
#include "serve/session_manager.h"

namespace tr::serve {

struct HttpServerOptions {
  std::string listen = "127.0.0.1:8080";  // HOST:PORT ([v6]:PORT); port 0: any free port
  std::string token;                      // non-empty: "Authorization: Bearer TOKEN" required
  size_t max_message_bytes = 1 << 20;     // WebSocket message in; JSON request bodies
  size_t max_body_bytes = 64 << 20;       // POST /v1/render's audio file
  size_t max_queue_bytes = 16 << 20;      // per WebSocket, outgoing bytes not yet written
  size_t max_queue_messages = 500;        // per WebSocket, outgoing messages not yet written
  size_t max_connections = 256;           // open TCP connections; more are closed at once
  int max_renders = 1;                    // concurrent POST /v1/render; more get 503
  int threads = 2;                        // io threads
  double read_timeout_s = 30;             // a request's header/body; a WebSocket without pongs
  std::string page;                       // GET /: this HTML; empty: the embedded page
  std::string tmp_dir;                    // render uploads; empty: $TMPDIR or /tmp
};

// "HOST:PORT" -> host and port (0..65535). BadInput names the problem.
Status parse_listen(const std::string& listen, std::string* host, int* port);

class HttpServer {
 public:
  // `sessions` must outlive the server.
  HttpServer(SessionManager* sessions, HttpServerOptions options);
  ~HttpServer();  // stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and listens, then serves on the options' threads; returns at once. Errors: a bad
  // address (kBadInput) or one that cannot be bound (kRuntime).
  Status start();
  // The bound port (after start(); the real one when listening on port 0).
  int port() const;
  // start(), then blocks until stop() is called from another thread.
  Status run();

  // Stops accepting connections (open ones go on). For a graceful shutdown: this, then
  // SessionManager::drain() (its final messages still reach the clients), then stop().
  void stop_accepting();
  // Closes every WebSocket with 1001 once its queue is written (waiting at most `grace`),
  // then stops the io threads and waits for them and for running renders. Idempotent.
  void stop(std::chrono::milliseconds grace = std::chrono::milliseconds(2000));

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace tr::serve
