#include "serve/http_server.h"

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

#include "serve/http_internal.h"
#include "serve/page_html.h"  // generated from page/index.html (CMakeLists.txt)
#include "serve/ws_session.h"

namespace tr::serve {

std::string error_json(const std::string& message) {
  return nlohmann::json{{"error", message}}.dump();
}

namespace {

using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

constexpr size_t kHeaderLimit = 16 * 1024;
constexpr size_t kMaxDrain = 128 << 20;  // unread input dropped before a close

bool valid_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
  });
}

// Compares in time independent of where the strings differ.
bool same_secret(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() != b.size();
  for (size_t i = 0; i < a.size(); ++i) diff |= a[i] ^ b[i < b.size() ? i : 0];
  return diff == 0;
}

std::string url_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size()) {
      auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
      };
      int h = hex(s[i + 1]), l = hex(s[i + 2]);
      if (h < 0 || l < 0) {
        out += s[i];
      } else {
        out += static_cast<char>(h * 16 + l);
        i += 2;
      }
    } else {
      out += s[i];
    }
  }
  return out;
}

// The value of `key` in a query string ("a=1&b=2"), decoded; nullopt when absent.
std::optional<std::string> query_param(std::string_view query, std::string_view key) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view part = query.substr(0, amp);
    size_t eq = part.find('=');
    if (url_decode(part.substr(0, eq)) == key)
      return eq == std::string_view::npos ? std::string() : url_decode(part.substr(eq + 1));
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

std::string temp_dir(const HttpServerOptions& o) {
  if (!o.tmp_dir.empty()) return o.tmp_dir;
  const char* t = std::getenv("TMPDIR");
  return t && *t ? t : "/tmp";
}

Status write_temp(const std::string& dir, const std::string& data, std::string* path) {
  std::string tmpl = dir + "/talkrender-upload-XXXXXX";
  int fd = ::mkstemp(tmpl.data());
  if (fd < 0) return RuntimeError("cannot create a temporary file in " + dir);
  size_t done = 0;
  while (done < data.size()) {
    ssize_t w = ::write(fd, data.data() + done, data.size() - done);
    if (w <= 0) {
      ::close(fd);
      ::unlink(tmpl.c_str());
      return RuntimeError("cannot write the upload to " + dir);
    }
    done += static_cast<size_t>(w);
  }
  ::close(fd);
  *path = tmpl;
  return Status::Ok();
}

class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(HttpServer::Impl* srv, tcp::socket&& socket)
      : srv_(srv), stream_(std::move(socket)) {}
  ~HttpSession() { srv_->connections--; }

  void run() {
    net::dispatch(stream_.get_executor(),
                  beast::bind_front_handler(&HttpSession::do_read, shared_from_this()));
  }

 private:
  std::chrono::milliseconds timeout() const {
    return std::chrono::milliseconds(static_cast<int64_t>(srv_->o.read_timeout_s * 1000));
  }

  void do_read() {
    parser_.emplace();
    parser_->header_limit(kHeaderLimit);
    parser_->body_limit(std::max(srv_->o.max_body_bytes, srv_->o.max_message_bytes));
    stream_.expires_after(timeout());
    http::async_read_header(stream_, buf_, *parser_,
                            beast::bind_front_handler(&HttpSession::on_header, shared_from_this()));
  }

  void on_header(beast::error_code ec, size_t) {
    if (ec == http::error::body_limit)
      return reply_error(http::status::payload_too_large, "request body too large", 11, false);
    if (ec) return read_failed(ec);
    srv_->requests++;
    const auto& req = parser_->get();
    std::string_view target(req.target().data(), req.target().size());
    std::string_view path = target.substr(0, target.find('?'));
    bool is_render = path == "/v1/render";
    // The static page is public (a browser cannot add a header to a navigation); the
    // WebSocket may carry the token as ?access_token= (browsers cannot set its headers).
    bool is_page = path == "/" && req.method() == http::verb::get;
    if (!is_page && !authorized(req, target)) {
      return reply_error(http::status::unauthorized, "missing or wrong bearer token", req.version(),
                         false);
    }
    size_t limit = is_render ? srv_->o.max_body_bytes : srv_->o.max_message_bytes;
    if (auto len = parser_->content_length(); len && *len > limit)
      return reply_error(http::status::payload_too_large,
                         "request body over " + std::to_string(limit) + " bytes", req.version(),
                         false);
    parser_->body_limit(limit);
    if (parser_->is_done()) return handle();
    if (beast::iequals(req[http::field::expect], "100-continue")) {
      http::response<http::empty_body> cont{http::status::continue_, req.version()};
      beast::error_code ignored;
      http::write(stream_, cont, ignored);
    }
    if (is_render) stream_.expires_after(std::max(timeout(), std::chrono::milliseconds(300000)));
    http::async_read(stream_, buf_, *parser_,
                     beast::bind_front_handler(&HttpSession::on_body, shared_from_this()));
  }

  void on_body(beast::error_code ec, size_t) {
    if (ec == http::error::body_limit)
      return reply_error(http::status::payload_too_large, "request body too large",
                         parser_->get().version(), false);
    if (ec) return read_failed(ec);
    handle();
  }

  void read_failed(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == net::error::operation_aborted || ec == net::error::eof ||
        ec == net::error::connection_reset) {
      beast::error_code ignored;
      stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
      stream_.socket().close(ignored);
      return;
    }
    // A malformed request: say so, then close (the parser's state is lost).
    reply_error(http::status::bad_request, "malformed HTTP request: " + ec.message(), 11, false);
  }

  bool authorized(const Request& req, std::string_view target) const {
    const std::string& token = srv_->o.token;
    if (token.empty()) return true;
    auto auth = req[http::field::authorization];
    std::string_view a(auth.data(), auth.size());
    if (a.size() > 7 && beast::iequals(beast::string_view(a.data(), 7), "Bearer ") &&
        same_secret(a.substr(7), token))
      return true;
    if (websocket::is_upgrade(req)) {
      size_t q = target.find('?');
      if (q != std::string_view::npos) {
        auto t = query_param(target.substr(q + 1), "access_token");
        if (t && same_secret(*t, token)) return true;
      }
    }
    return false;
  }

  void handle() {
    Request req = parser_->release();
    std::string target(req.target());
    std::string path = target.substr(0, target.find('?'));
    std::string query =
        target.find('?') == std::string::npos ? "" : target.substr(target.find('?') + 1);
    auto method = req.method();
    bool get = method == http::verb::get;

    if (path == "/") {
      if (!get) return method_not_allowed(req, "GET");
      return reply(req, http::status::ok, "text/html; charset=utf-8", srv_->page);
    }
    if (path == "/health") {
      if (!get) return method_not_allowed(req, "GET");
      nlohmann::json j{{"status", srv_->draining ? "draining" : "ok"},
                       {"sessions", srv_->sessions->open_sessions()},
                       {"admission_limit", srv_->sessions->admission_limit()},
                       {"avatars", srv_->sessions->avatar_names()}};
      return reply(req, http::status::ok, "application/json", j.dump());
    }
    if (path == "/metrics") {
      if (!get) return method_not_allowed(req, "GET");
      return reply(req, http::status::ok, "text/plain; version=0.0.4", metrics());
    }
    if (path == "/v1/sessions") {
      if (method != http::verb::post) return method_not_allowed(req, "POST");
      return open_session(req);
    }
    if (path == "/v1/render") {
      if (method != http::verb::post) return method_not_allowed(req, "POST");
      return render(std::move(req), query);
    }
    constexpr std::string_view kPrefix = "/v1/sessions/";
    if (path.rfind(kPrefix, 0) == 0) {
      std::string rest = path.substr(kPrefix.size());
      bool ws = rest.size() > 3 && rest.compare(rest.size() - 3, 3, "/ws") == 0;
      std::string id = ws ? rest.substr(0, rest.size() - 3) : rest;
      if (!valid_id(id)) return not_found(req);
      if (ws) {
        if (method != http::verb::get) return method_not_allowed(req, "GET");
        if (!websocket::is_upgrade(req))
          return reply_error(http::status::upgrade_required,
                             "this is a WebSocket endpoint: send an Upgrade request", req.version(),
                             req.keep_alive());
        if (!srv_->knows(id))
          return reply_error(http::status::not_found, "no session " + id, req.version(), false);
        auto session = std::make_shared<WsSession>(srv_, std::move(stream_), id);
        session->run(std::move(req));
        return;
      }
      if (method != http::verb::delete_) return method_not_allowed(req, "DELETE");
      if (!srv_->knows(id))
        return reply_error(http::status::not_found, "no session " + id, req.version(),
                           req.keep_alive());
      std::shared_ptr<WsSession> ws_session;
      {
        std::lock_guard lk(srv_->mu);
        auto it = srv_->ids.find(id);
        if (it != srv_->ids.end()) ws_session = it->second.lock();
      }
      srv_->sessions->close(id);
      srv_->forget(id);
      if (ws_session) ws_session->shutdown(1000, "session closed");
      return reply(req, http::status::ok, "application/json",
                   nlohmann::json{{"id", id}, {"closed", true}}.dump());
    }
    return not_found(req);
  }

  void open_session(const Request& req) {
    if (srv_->draining)
      return reply_error(http::status::service_unavailable, "the server is shutting down",
                         req.version(), req.keep_alive());
    auto j = nlohmann::json::parse(req.body(), nullptr, false);
    auto bad = [&](const std::string& m) {
      reply_error(http::status::bad_request, m, req.version(), req.keep_alive());
    };
    if (j.is_discarded()) return bad("the body is not valid JSON");
    if (!j.is_object()) return bad("the body must be a JSON object {\"avatar\": NAME}");
    if (!j.contains("avatar") || !j["avatar"].is_string() || j["avatar"].get<std::string>().empty())
      return bad("missing \"avatar\" (a name from GET /health)");
    StreamFormat format = StreamFormat::kFmp4;
    if (j.contains("format")) {
      if (!j["format"].is_string()) return bad("\"format\" must be \"fmp4\" or \"jpeg\"");
      std::string f = j["format"].get<std::string>();
      if (f == "jpeg") {
        format = StreamFormat::kJpegPcm;
      } else if (f != "fmp4") {
        return bad("unknown \"format\" \"" + f + "\" (fmp4 or jpeg)");
      }
    }
    OpenRefusal refusal = OpenRefusal::kNone;
    auto info = srv_->sessions->open(j["avatar"].get<std::string>(), format, &refusal);
    if (!info.ok()) {
      http::status s = http::status::bad_request;
      if (refusal == OpenRefusal::kUnknownAvatar) s = http::status::not_found;
      if (refusal == OpenRefusal::kFull) s = http::status::service_unavailable;
      if (refusal == OpenRefusal::kNone && info.error().kind == ErrorKind::kRuntime)
        s = http::status::internal_server_error;
      return reply_error(s, info.error().message, req.version(), req.keep_alive());
    }
    {
      std::lock_guard lk(srv_->mu);
      srv_->ids[info->id];
    }
    nlohmann::json out{{"id", info->id},
                       {"avatar", info->avatar},
                       {"fps", info->fps},
                       {"width", info->width},
                       {"height", info->height},
                       {"mime", info->mime},
                       {"ws", "/v1/sessions/" + info->id + "/ws"}};
    reply(req, http::status::created, "application/json", out.dump());
  }

  void render(Request req, const std::string& query) {
    auto avatar = query_param(query, "avatar");
    if (!avatar || avatar->empty())
      return reply_error(http::status::bad_request,
                         "missing ?avatar=NAME (a name from GET /health)", req.version(),
                         req.keep_alive());
    auto names = srv_->sessions->avatar_names();
    if (std::find(names.begin(), names.end(), *avatar) == names.end())
      return reply_error(http::status::not_found, "unknown avatar \"" + *avatar + "\"",
                         req.version(), req.keep_alive());
    if (req.body().empty())
      return reply_error(http::status::bad_request,
                         "empty body: send the audio file as the request body", req.version(),
                         req.keep_alive());
    {
      std::lock_guard lk(srv_->mu);
      if (srv_->renders >= srv_->o.max_renders)
        return reply_error(http::status::service_unavailable,
                           "busy: too many renders running, retry later", req.version(),
                           req.keep_alive());
      srv_->renders++;
    }
    // Rendering takes long: off the io threads; the reply comes back on this strand.
    std::thread([self = shared_from_this(), req = std::move(req), avatar = *avatar]() mutable {
      auto res = std::make_shared<Response>();
      std::string path;
      Status st = write_temp(temp_dir(self->srv_->o), req.body(), &path);
      req.body().clear();
      Result<std::string> mp4 = st.ok() ? self->srv_->sessions->render_file(avatar, path)
                                        : Result<std::string>(st.error());
      if (!path.empty()) ::unlink(path.c_str());
      res->version(req.version());
      res->keep_alive(req.keep_alive());
      res->set(http::field::server, "talkrender");
      if (mp4.ok()) {
        res->result(http::status::ok);
        res->set(http::field::content_type, "video/mp4");
        res->body() = std::move(mp4).value();
      } else {
        res->result(mp4.error().kind == ErrorKind::kBadInput ? http::status::bad_request
                                                             : http::status::internal_server_error);
        res->set(http::field::content_type, "application/json");
        // The upload's temporary name means nothing to the client: name the request.
        std::string message = mp4.error().message;
        for (size_t at; !path.empty() && (at = message.find(path)) != std::string::npos;)
          message.replace(at, path.size(), "the request body");
        res->body() = error_json(message);
      }
      res->prepare_payload();
      auto* srv = self->srv_;
      net::post(self->stream_.get_executor(), [self, res] { self->send(res); });
      self.reset();
      std::lock_guard lk(srv->mu);
      srv->renders--;
      srv->cv.notify_all();
    }).detach();
  }

  std::string metrics() const {
    std::string m = srv_->sessions->metrics_text();
    if (!m.empty() && m.back() != '\n') m += '\n';
    auto line = [&](const char* name, const char* type, const char* help, uint64_t v) {
      m += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" +
           name + " " + std::to_string(v) + "\n";
    };
    line("talkrender_http_requests_total", "counter", "HTTP requests read", srv_->requests);
    line("talkrender_http_connections", "gauge", "open TCP connections", srv_->connections);
    line("talkrender_ws_opened_total", "counter", "WebSockets attached", srv_->ws_opened);
    line("talkrender_ws_slow_closes_total", "counter",
         "WebSockets closed because the client read too slowly", srv_->ws_slow_closes);
    return m;
  }

  void not_found(const Request& req) {
    reply_error(http::status::not_found, "no such endpoint: " + std::string(req.target()),
                req.version(), req.keep_alive());
  }

  void method_not_allowed(const Request& req, const char* allow) {
    auto res =
        make(http::status::method_not_allowed, req.version(), req.keep_alive(), "application/json",
             error_json(std::string(req.method_string()) + " is not allowed here (" + allow + ")"));
    res->set(http::field::allow, allow);
    send(res);
  }

  void reply(const Request& req, http::status s, const char* type, std::string body) {
    send(make(s, req.version(), req.keep_alive(), type, std::move(body)));
  }

  void reply_error(http::status s, const std::string& message, unsigned version, bool keep_alive) {
    send(make(s, version, keep_alive, "application/json", error_json(message)));
  }

  static std::shared_ptr<Response> make(http::status s, unsigned version, bool keep_alive,
                                        const char* type, std::string body) {
    auto res = std::make_shared<Response>(s, version);
    res->set(http::field::server, "talkrender");
    res->set(http::field::content_type, type);
    res->set(http::field::cache_control, "no-store");
    res->keep_alive(keep_alive);
    res->body() = std::move(body);
    res->prepare_payload();
    return res;
  }

  void send(std::shared_ptr<Response> res) {
    stream_.expires_after(timeout());
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res](beast::error_code ec, size_t) {
                        if (ec || !res->keep_alive() || self->srv_->stopped) {
                          self->linger_close();
                          return;
                        }
                        self->do_read();
                      });
  }

  // Ends the connection after a reply that left the request (or its body) unread: the
  // rest is read and dropped for a moment first, since closing a socket with unread input
  // resets the connection and the client may lose the reply.
  void linger_close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    drain_.resize(64 * 1024);
    stream_.expires_after(std::chrono::seconds(2));
    do_drain();
  }

  void do_drain() {
    stream_.async_read_some(net::buffer(drain_),
                            [self = shared_from_this()](beast::error_code ec, size_t n) {
                              self->drained_ += n;
                              if (ec || self->drained_ > kMaxDrain) {
                                beast::error_code ignored;
                                self->stream_.socket().close(ignored);
                                return;
                              }
                              self->do_drain();
                            });
  }

  HttpServer::Impl* srv_;
  beast::tcp_stream stream_;
  beast::flat_buffer buf_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::vector<char> drain_;
  size_t drained_ = 0;
};

}  // namespace

Status parse_listen(const std::string& listen, std::string* host, int* port) {
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == listen.size())
    return BadInput("--listen " + listen + ": expected HOST:PORT, e.g. 127.0.0.1:8080");
  std::string h = listen.substr(0, colon), p = listen.substr(colon + 1);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  if (!std::all_of(p.begin(), p.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      p.size() > 5 || std::stoi(p) > 65535)
    return BadInput("--listen " + listen + ": the port must be 0..65535");
  beast::error_code ec;
  net::ip::make_address(h, ec);
  if (ec) return BadInput("--listen " + listen + ": '" + h + "' is not an IP address");
  *host = h;
  *port = std::stoi(p);
  return Status::Ok();
}

HttpServer::Impl::Impl(SessionManager* s, HttpServerOptions opt)
    : sessions(s), o(std::move(opt)), ioc(std::max(1, o.threads)) {
  page = o.page.empty() ? std::string(kIndexHtml) : o.page;
}

HttpServer::Impl::~Impl() {
  // The io_context goes first (its queued handlers still reach this object's members).
  acceptor.reset();
  work.reset();
}

void HttpServer::Impl::do_accept() {
  acceptor->async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket s) {
    if (!accepting) return;
    if (!ec) {
      if (connections >= o.max_connections) {
        beast::error_code ignored;
        s.close(ignored);
      } else {
        connections++;
        std::make_shared<HttpSession>(this, std::move(s))->run();
      }
    }
    do_accept();  // errors such as EMFILE concern one connection, not the listener
  });
}

bool HttpServer::Impl::knows(const std::string& id) {
  std::lock_guard lk(mu);
  return ids.count(id) > 0;
}

void HttpServer::Impl::forget(const std::string& id) {
  std::lock_guard lk(mu);
  ids.erase(id);
}

HttpServer::HttpServer(SessionManager* sessions, HttpServerOptions options)
    : impl_(std::make_shared<Impl>(sessions, std::move(options))) {}

HttpServer::~HttpServer() { stop(std::chrono::milliseconds(0)); }

Status HttpServer::start() {
  Impl& s = *impl_;
  if (s.started) return RuntimeError("the server is already started");
  std::string host;
  int port = 0;
  TR_RETURN_IF_ERROR(parse_listen(s.o.listen, &host, &port));
  beast::error_code ec;
  tcp::endpoint ep(net::ip::make_address(host), static_cast<uint16_t>(port));
  s.acceptor.emplace(s.ioc);
  s.acceptor->open(ep.protocol(), ec);
  if (!ec) s.acceptor->set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) s.acceptor->bind(ep, ec);
  if (!ec) s.acceptor->listen(net::socket_base::max_listen_connections, ec);
  if (ec) return RuntimeError("cannot listen on " + s.o.listen + ": " + ec.message());
  s.bound_port = s.acceptor->local_endpoint().port();
  s.started = true;
  s.accepting = true;
  s.work.emplace(s.ioc.get_executor());
  s.do_accept();
  for (int i = 0; i < std::max(1, s.o.threads); ++i) s.threads.emplace_back([&s] { s.ioc.run(); });
  return Status::Ok();
}

int HttpServer::port() const { return impl_->bound_port; }

Status HttpServer::run() {
  TR_RETURN_IF_ERROR(start());
  std::unique_lock lk(impl_->mu);
  impl_->cv.wait(lk, [this] { return impl_->done; });
  return Status::Ok();
}

void HttpServer::stop_accepting() {
  Impl& s = *impl_;
  if (!s.started || !s.accepting.exchange(false)) return;
  s.draining = true;
  net::post(s.ioc, [&s] {
    beast::error_code ignored;
    s.acceptor->close(ignored);
  });
}

void HttpServer::stop(std::chrono::milliseconds grace) {
  Impl& s = *impl_;
  if (!s.started || s.stopped.exchange(true)) return;
  stop_accepting();
  std::vector<std::shared_ptr<WsSession>> open;
  {
    std::lock_guard lk(s.mu);
    for (auto& [id, w] : s.ids)
      if (auto p = w.lock()) open.push_back(p);
  }
  for (auto& p : open) p->shutdown(1001, "server shutting down");
  open.clear();
  auto until = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < until) {
    bool any = false;
    {
      std::lock_guard lk(s.mu);
      for (auto& [id, w] : s.ids) any = any || !w.expired();
    }
    if (!any) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  s.work.reset();
  s.ioc.stop();
  for (auto& t : s.threads)
    if (t.joinable() && t.get_id() != std::this_thread::get_id()) t.join();
  std::unique_lock lk(s.mu);
  s.cv.wait(lk, [&s] { return s.renders == 0; });
  s.done = true;
  s.cv.notify_all();
}

}  // namespace tr::serve
