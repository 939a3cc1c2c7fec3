// Internals of HttpServer shared by http_server.cc (listener, HTTP requests) and
// ws_session.cc (WebSockets). Not part of tr_serve's interface.
#pragma once

#include <atomic>
#include <utility>
// Asio after <utility>: Boost 1.74's awaitable.hpp uses std::exchange without it.
#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "serve/http_server.h"

namespace tr::serve {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;

class WsSession;

// One JSON error body: {"error": message}.
std::string error_json(const std::string& message);

struct HttpServer::Impl {
  Impl(SessionManager* s, HttpServerOptions opt);
  ~Impl();

  SessionManager* sessions;
  HttpServerOptions o;
  std::string page;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  std::optional<tcp::acceptor> acceptor;
  std::vector<std::thread> threads;
  int bound_port = 0;
  bool started = false;
  std::atomic<bool> accepting{false};
  std::atomic<bool> draining{false};
  std::atomic<bool> stopped{false};
  std::atomic<size_t> connections{0};

  // Counters for /metrics.
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> ws_opened{0};
  std::atomic<uint64_t> ws_slow_closes{0};

  std::mutex mu;
  std::condition_variable cv;
  // Sessions opened through this server (until closed here), and their WebSocket if any.
  std::map<std::string, std::weak_ptr<WsSession>> ids;
  int renders = 0;    // running POST /v1/render
  bool done = false;  // stop() has finished

  // Last: destroyed first, while the queued handlers may still use the members above.
  net::io_context ioc;

  void do_accept();
  bool knows(const std::string& id);
  void forget(const std::string& id);
};

}  // namespace tr::serve
