// HttpServer (issue 18) against a fake SessionManager: the endpoints, their refusals, auth,
// limits and the WebSocket protocol, through Beast clients on 127.0.0.1 (port 0).
#include "serve/http_server.h"

#include <gtest/gtest.h>

#include <utility>
// Asio after <utility>: Boost 1.74's awaitable.hpp uses std::exchange without it.
#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>
#include <utility>

namespace tr::serve {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;
using json = nlohmann::json;

class FakeSessions : public SessionManager {
 public:
  std::vector<std::string> avatar_names() const override { return {"alice", "bob"}; }
  int admission_limit() const override { return 2; }
  int open_sessions() const override {
    std::lock_guard lk(mu_);
    return static_cast<int>(open_.size());
  }
  Result<SessionInfo> open(const std::string& avatar, StreamFormat format,
                           OpenRefusal* refusal) override {
    std::lock_guard lk(mu_);
    if (avatar != "alice" && avatar != "bob") {
      *refusal = OpenRefusal::kUnknownAvatar;
      return BadInput("unknown avatar \"" + avatar + "\"");
    }
    if (static_cast<int>(open_.size()) >= 2) {
      *refusal = OpenRefusal::kFull;
      return RuntimeError("full: 2 sessions open");
    }
    SessionInfo info;
    info.id = "s" + std::to_string(next_++);
    info.avatar = avatar;
    info.width = 320;
    info.height = 240;
    info.mime = format == StreamFormat::kFmp4 ? "video/mp4; codecs=\"avc1.42C01F\"" : "image/jpeg";
    open_.insert(info.id);
    return info;
  }
  Status attach(const std::string& id, SendFn send) override {
    std::lock_guard lk(mu_);
    if (!open_.count(id)) return BadInput("no session " + id);
    if (send_.count(id)) return RuntimeError("session " + id + " has a client");
    send_[id] = std::move(send);
    return Status::Ok();
  }
  Status push_audio(const std::string& id, const int16_t* pcm, size_t samples) override {
    std::lock_guard lk(mu_);
    if (!open_.count(id)) return BadInput("no session " + id);
    samples_[id] += samples;
    if (samples) last_sample_ = pcm[samples - 1];
    cv_.notify_all();
    return Status::Ok();
  }
  Status control(const std::string& id, const std::string& type) override {
    std::lock_guard lk(mu_);
    if (type != "speak-end" && type != "interrupt" && type != "close")
      return BadInput("unknown control " + type);
    controls_.push_back(type);
    cv_.notify_all();
    return Status::Ok();
  }
  void close(const std::string& id) override {
    std::lock_guard lk(mu_);
    open_.erase(id);
    send_.erase(id);
    closed_.push_back(id);
    cv_.notify_all();
  }
  Result<std::string> render_file(const std::string& avatar, const std::string& path) override {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return "MP4:" + avatar + ":" + ss.str();
  }
  std::string metrics_text() const override { return "talkrender_fake_sessions 0\n"; }
  void drain() override {}

  // Test side.
  bool send(const std::string& id, Outgoing m) {
    SendFn fn;
    {
      std::lock_guard lk(mu_);
      if (!send_.count(id)) return false;
      fn = send_[id];
    }
    return fn(std::move(m));
  }
  template <class Pred>
  bool wait(Pred p) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, std::chrono::seconds(5), [&] { return p(*this); });
  }
  bool wait_attached(const std::string& id) {
    for (int i = 0; i < 500; ++i) {
      {
        std::lock_guard lk(mu_);
        if (send_.count(id)) return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::set<std::string> open_;
  std::map<std::string, SendFn> send_;
  std::map<std::string, size_t> samples_;
  int16_t last_sample_ = 0;
  std::vector<std::string> controls_, closed_;
  int next_ = 1;
};

struct Reply {
  int status = 0;
  std::string type, body;
  json j() const { return json::parse(body, nullptr, false); }
};

class HttpServerTest : public ::testing::Test {
 protected:
  void start(std::string token = "") {
    HttpServerOptions o;
    o.listen = "127.0.0.1:0";
    o.token = std::move(token);
    o.max_message_bytes = 64 * 1024;
    o.max_body_bytes = 256 * 1024;
    o.max_queue_bytes = 1 << 20;
    o.page = "<html>page</html>";
    server_ = std::make_unique<HttpServer>(&fake_, o);
    ASSERT_TRUE(server_->start().ok());
    ASSERT_GT(server_->port(), 0);
  }
  void TearDown() override {
    if (server_) server_->stop(std::chrono::milliseconds(500));
  }

  Reply request(http::verb verb, const std::string& target, const std::string& body = "",
                const std::string& token = "") {
    net::io_context ioc;
    tcp::socket s(ioc);
    s.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), server_->port()));
    http::request<http::string_body> req{verb, target, 11};
    req.set(http::field::host, "127.0.0.1");
    if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
    if (!body.empty() || verb == http::verb::post) {
      req.body() = body;
      req.prepare_payload();
    }
    beast::error_code wec;
    http::write(s, req, wec);  // a refused body may not be read in full
    beast::flat_buffer buf;
    http::response_parser<http::string_body> p;
    p.body_limit(64 << 20);
    beast::error_code ec;
    http::read(s, buf, p, ec);
    EXPECT_FALSE(ec) << ec.message();
    Reply r;
    r.status = p.get().result_int();
    r.type = std::string(p.get()[http::field::content_type]);
    r.body = p.get().body();
    return r;
  }

  std::string open_session(const std::string& avatar = "alice") {
    Reply r = request(http::verb::post, "/v1/sessions", json{{"avatar", avatar}}.dump());
    EXPECT_EQ(r.status, 201) << r.body;
    return r.j().value("id", "");
  }

  using Ws = websocket::stream<tcp::socket>;
  std::unique_ptr<Ws> connect_ws(net::io_context& ioc, const std::string& id,
                                 beast::error_code* ec_out = nullptr,
                                 const std::string& token = "") {
    auto ws = std::make_unique<Ws>(ioc);
    ws->next_layer().connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), server_->port()));
    if (!token.empty()) {
      ws->set_option(websocket::stream_base::decorator([token](websocket::request_type& r) {
        r.set(http::field::authorization, "Bearer " + token);
      }));
    }
    beast::error_code ec;
    ws->handshake("127.0.0.1", "/v1/sessions/" + id + "/ws", ec);
    if (ec_out)
      *ec_out = ec;
    else
      EXPECT_FALSE(ec) << ec.message();
    return ws;
  }

  FakeSessions fake_;
  std::unique_ptr<HttpServer> server_;
};

TEST(ParseListen, HostsAndPorts) {
  std::string h;
  int p = -1;
  EXPECT_TRUE(parse_listen("127.0.0.1:8080", &h, &p).ok());
  EXPECT_EQ(h, "127.0.0.1");
  EXPECT_EQ(p, 8080);
  EXPECT_TRUE(parse_listen("[::1]:0", &h, &p).ok());
  EXPECT_EQ(h, "::1");
  EXPECT_FALSE(parse_listen("localhost", &h, &p).ok());
  EXPECT_FALSE(parse_listen("1.2.3.4:99999", &h, &p).ok());
  EXPECT_FALSE(parse_listen("nohost:80", &h, &p).ok());
}

TEST_F(HttpServerTest, HealthMetricsPageAndUnknownPaths) {
  start();
  Reply h = request(http::verb::get, "/health");
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.type, "application/json");
  EXPECT_EQ(h.j()["status"], "ok");
  EXPECT_EQ(h.j()["admission_limit"], 2);
  EXPECT_EQ(h.j()["sessions"], 0);
  EXPECT_EQ(h.j()["avatars"], json({"alice", "bob"}));
  Reply m = request(http::verb::get, "/metrics");
  EXPECT_EQ(m.status, 200);
  EXPECT_EQ(m.type.rfind("text/plain", 0), 0u);
  EXPECT_NE(m.body.find("talkrender_fake_sessions 0"), std::string::npos);
  EXPECT_NE(m.body.find("talkrender_http_requests_total"), std::string::npos);
  Reply p = request(http::verb::get, "/");
  EXPECT_EQ(p.status, 200);
  EXPECT_EQ(p.body, "<html>page</html>");
  Reply n = request(http::verb::get, "/nope");
  EXPECT_EQ(n.status, 404);
  EXPECT_TRUE(n.j().contains("error"));
  EXPECT_EQ(request(http::verb::get, "/v1/sessions").status, 405);
  EXPECT_EQ(request(http::verb::post, "/health").status, 405);
  EXPECT_EQ(request(http::verb::delete_, "/v1/sessions/nosuch").status, 404);
  EXPECT_EQ(request(http::verb::get, "/v1/sessions/x/ws").status, 426);
}

TEST_F(HttpServerTest, OpenSessionAndRefusals) {
  start();
  Reply r = request(http::verb::post, "/v1/sessions", R"({"avatar":"alice","format":"fmp4"})");
  ASSERT_EQ(r.status, 201) << r.body;
  json j = r.j();
  EXPECT_EQ(j["avatar"], "alice");
  EXPECT_EQ(j["width"], 320);
  EXPECT_EQ(j["height"], 240);
  EXPECT_EQ(j["fps"], 25);
  EXPECT_EQ(j["ws"], "/v1/sessions/" + j["id"].get<std::string>() + "/ws");
  EXPECT_NE(j["mime"].get<std::string>().find("video/mp4"), std::string::npos);

  Reply u = request(http::verb::post, "/v1/sessions", R"({"avatar":"carol"})");
  EXPECT_EQ(u.status, 404);
  EXPECT_NE(u.j()["error"].get<std::string>().find("carol"), std::string::npos);
  EXPECT_EQ(request(http::verb::post, "/v1/sessions", "{not json").status, 400);
  EXPECT_EQ(request(http::verb::post, "/v1/sessions", R"({"format":"fmp4"})").status, 400);
  Reply f = request(http::verb::post, "/v1/sessions", R"({"avatar":"bob","format":"gif"})");
  EXPECT_EQ(f.status, 400);
  EXPECT_NE(f.j()["error"].get<std::string>().find("gif"), std::string::npos);

  EXPECT_EQ(request(http::verb::post, "/v1/sessions", R"({"avatar":"bob","format":"jpeg"})").status,
            201);
  Reply full = request(http::verb::post, "/v1/sessions", R"({"avatar":"bob"})");
  EXPECT_EQ(full.status, 503);
  EXPECT_TRUE(full.j().contains("error"));

  Reply d = request(http::verb::delete_, "/v1/sessions/" + j["id"].get<std::string>());
  EXPECT_EQ(d.status, 200);
  EXPECT_EQ(fake_.open_sessions(), 1);
}

TEST_F(HttpServerTest, TokenRequired) {
  start("s3cret");
  EXPECT_EQ(request(http::verb::get, "/health").status, 401);
  EXPECT_EQ(request(http::verb::get, "/health", "", "wrong").status, 401);
  EXPECT_EQ(request(http::verb::get, "/health", "", "s3cret").status, 200);
  EXPECT_EQ(request(http::verb::post, "/v1/sessions", R"({"avatar":"alice"})").status, 401);
  Reply r = request(http::verb::post, "/v1/sessions", R"({"avatar":"alice"})", "s3cret");
  ASSERT_EQ(r.status, 201);
  std::string id = r.j()["id"];
  net::io_context ioc;
  beast::error_code ec;
  connect_ws(ioc, id, &ec);
  EXPECT_TRUE(ec);  // 401: the handshake is refused
  auto ws = connect_ws(ioc, id, &ec, "s3cret");
  EXPECT_FALSE(ec) << ec.message();
}

TEST_F(HttpServerTest, OversizeBodyIs413) {
  start();
  Reply r = request(http::verb::post, "/v1/sessions", std::string(100 * 1024, ' '));
  EXPECT_EQ(r.status, 413);
  Reply big = request(http::verb::post, "/v1/render?avatar=alice", std::string(300 * 1024, 'x'));
  EXPECT_EQ(big.status, 413);
  EXPECT_EQ(request(http::verb::get, "/health").status, 200);  // still serving
}

TEST_F(HttpServerTest, RenderFile) {
  start();
  Reply r = request(http::verb::post, "/v1/render?avatar=bob", "RIFFdata");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.type, "video/mp4");
  EXPECT_EQ(r.body, "MP4:bob:RIFFdata");
  EXPECT_EQ(request(http::verb::post, "/v1/render?avatar=zed", "x").status, 404);
  EXPECT_EQ(request(http::verb::post, "/v1/render", "x").status, 400);
  EXPECT_EQ(request(http::verb::post, "/v1/render?avatar=bob").status, 400);
}

TEST_F(HttpServerTest, WebSocketPcmControlAndOutgoing) {
  start();
  std::string id = open_session();
  net::io_context ioc;
  auto ws = connect_ws(ioc, id);
  ASSERT_TRUE(fake_.wait_attached(id));

  std::vector<int16_t> pcm(1600, 7);
  pcm.back() = -1234;
  ws->binary(true);
  ws->write(net::buffer(pcm.data(), pcm.size() * 2));
  ws->write(net::buffer(pcm.data(), 800 * 2));
  EXPECT_TRUE(fake_.wait([&](FakeSessions& f) { return f.samples_[id] == 2400; }));
  EXPECT_EQ(fake_.samples_[id], 2400u);

  // Garbage text: an error message, and the connection stays usable.
  ws->text(true);
  ws->write(net::buffer(std::string("{garbage")));
  beast::flat_buffer buf;
  ws->read(buf);
  EXPECT_FALSE(ws->got_binary());
  json e = json::parse(beast::buffers_to_string(buf.data()), nullptr, false);
  EXPECT_EQ(e["type"], "error");
  buf.clear();
  ws->write(net::buffer(std::string(R"({"kind":"x"})")));
  ws->read(buf);
  EXPECT_EQ(json::parse(beast::buffers_to_string(buf.data()))["type"], "error");
  buf.clear();
  ws->write(net::buffer(std::string(R"({"type":"dance"})")));
  ws->read(buf);
  EXPECT_NE(beast::buffers_to_string(buf.data()).find("dance"), std::string::npos);
  buf.clear();
  ws->write(net::buffer(std::string(R"({"type":"interrupt"})")));
  EXPECT_TRUE(fake_.wait([](FakeSessions& f) { return f.controls_.size() == 1; }));
  EXPECT_EQ(fake_.controls_.at(0), "interrupt");

  // The session's messages arrive in order, with their kinds.
  for (int i = 0; i < 40; ++i) {
    Outgoing m{i % 3 == 0 ? Outgoing::Kind::kText : Outgoing::Kind::kBinary,
               "msg" + std::to_string(i)};
    ASSERT_TRUE(fake_.send(id, std::move(m)));
  }
  for (int i = 0; i < 40; ++i) {
    ws->read(buf);
    EXPECT_EQ(ws->got_binary(), i % 3 != 0);
    EXPECT_EQ(beast::buffers_to_string(buf.data()), "msg" + std::to_string(i));
    buf.clear();
  }

  // Disconnect closes the session.
  ws->close(websocket::close_code::normal);
  EXPECT_TRUE(fake_.wait([&](FakeSessions& f) {
    return std::find(f.closed_.begin(), f.closed_.end(), id) != f.closed_.end();
  }));
}

TEST_F(HttpServerTest, WebSocketRefusalsAndCloseCodes) {
  start();
  net::io_context ioc;
  beast::error_code ec;
  connect_ws(ioc, "nosuch", &ec);
  EXPECT_TRUE(ec);  // 404

  std::string id = open_session();
  auto ws = connect_ws(ioc, id);
  ws->binary(true);
  ws->write(net::buffer(std::string("abc")));  // odd byte count
  beast::flat_buffer buf;
  ws->read(buf, ec);
  EXPECT_EQ(ec, websocket::error::closed);
  EXPECT_EQ(ws->reason().code, 1003);
  EXPECT_FALSE(std::string(ws->reason().reason.c_str()).empty());

  std::string id2 = open_session("bob");
  auto ws2 = connect_ws(ioc, id2);
  ws2->binary(true);
  // Over max_message_bytes: the server closes (1009) on the frame's header; the client may
  // see the socket end while writing or echoing the close, but it has the close's code.
  ws2->write(net::buffer(std::string(100 * 1024, 'x')), ec);
  buf.clear();
  if (!ec) ws2->read(buf, ec);
  EXPECT_TRUE(ec);
  EXPECT_EQ(ws2->reason().code, 1009) << ec.message();
  EXPECT_EQ(request(http::verb::get, "/health").status, 200);
}

TEST_F(HttpServerTest, SlowClientIsClosedWith1008) {
  start();
  std::string id = open_session();
  net::io_context ioc;
  auto ws = connect_ws(ioc, id);
  ASSERT_TRUE(fake_.wait_attached(id));
  // The client reads nothing while the session sends 64 MiB: the queue bound (1 MiB) is
  // crossed once the socket buffers are full, and send returns false without blocking.
  bool refused = false;
  for (int i = 0; i < 256 && !refused; ++i)
    refused = !fake_.send(id, Outgoing{Outgoing::Kind::kBinary, std::string(256 * 1024, 'v')});
  EXPECT_TRUE(refused);
  beast::flat_buffer buf;
  beast::error_code ec;
  while (!ec) {
    buf.clear();
    ws->read(buf, ec);
  }
  EXPECT_EQ(ec, websocket::error::closed);
  EXPECT_EQ(ws->reason().code, 1008);
}

}  // namespace
}  // namespace tr::serve
