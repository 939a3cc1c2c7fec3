#include "serve/ws_session.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

namespace tr::serve {
namespace {

constexpr int kMaxBadMessages = 16;  // error replies before the connection is closed
constexpr auto kCloseGrace = std::chrono::seconds(5);  // then the socket is cut

std::string error_message(const std::string& message) {
  return nlohmann::json{{"type", "error"}, {"error", message}}.dump();
}

}  // namespace

WsSession::WsSession(HttpServer::Impl* server, beast::tcp_stream&& stream, std::string id)
    : srv_(server), ws_(std::move(stream)), id_(std::move(id)), kill_timer_(ws_.get_executor()) {}

WsSession::~WsSession() {
  // Reached without finish() only when the io_context is torn down with this connection
  // still open (HttpServer::stop): the session must still be closed.
  if (attached_ && !finished_) srv_->sessions->close(id_);
}

void WsSession::run(http::request<http::string_body> req) {
  Status st = srv_->sessions->attach(id_, [w = weak_from_this()](Outgoing&& m) {
    auto self = w.lock();
    return self && self->enqueue(std::move(m));
  });
  if (!st.ok()) {
    // Unknown or closed session (kBadInput: 404) or one that has its client already (409).
    finished_ = true;
    refusal_ = std::make_shared<http::response<http::string_body>>(
        st.error().kind == ErrorKind::kBadInput ? http::status::not_found : http::status::conflict,
        req.version());
    refusal_->set(http::field::server, "talkrender");
    refusal_->set(http::field::content_type, "application/json");
    refusal_->keep_alive(false);
    refusal_->body() = error_json(st.message());
    refusal_->prepare_payload();
    http::async_write(
        ws_.next_layer(), *refusal_, [self = shared_from_this()](beast::error_code, size_t) {
          beast::error_code ignored;
          self->ws_.next_layer().socket().shutdown(tcp::socket::shutdown_send, ignored);
        });
    return;
  }
  attached_ = true;
  {
    std::lock_guard lk(srv_->mu);
    auto it = srv_->ids.find(id_);
    if (it != srv_->ids.end()) it->second = weak_from_this();
  }
  srv_->ws_opened++;
  beast::get_lowest_layer(ws_).expires_never();
  websocket::stream_base::timeout t;
  t.handshake_timeout = std::chrono::seconds(10);
  t.idle_timeout = std::chrono::milliseconds(static_cast<int64_t>(srv_->o.read_timeout_s * 1000));
  t.keep_alive_pings = true;
  ws_.set_option(t);
  ws_.set_option(websocket::stream_base::decorator(
      [](websocket::response_type& res) { res.set(http::field::server, "talkrender"); }));
  ws_.read_message_max(srv_->o.max_message_bytes);
  ws_.auto_fragment(false);
  ws_.async_accept(req, beast::bind_front_handler(&WsSession::on_accept, shared_from_this()));
}

void WsSession::on_accept(beast::error_code ec) {
  if (ec) return finish();
  accepted_ = true;
  do_read();
  do_write();  // what the session sent since attach
}

void WsSession::shutdown(uint16_t code, std::string reason) {
  net::post(ws_.get_executor(), [self = shared_from_this(), code, reason = std::move(reason)] {
    if (self->close_started_ || self->finished_) return;
    self->close_after_flush_ = true;
    self->flush_code_ = code;
    self->flush_reason_ = reason;
    {
      std::lock_guard lk(self->mu_);
      self->closing_ = true;
    }
    if (self->accepted_) self->do_write();
  });
}

bool WsSession::enqueue(Outgoing&& m) {
  std::lock_guard lk(mu_);
  if (closing_) return false;
  if (queued_bytes_ + m.data.size() > srv_->o.max_queue_bytes ||
      queue_.size() >= srv_->o.max_queue_messages) {
    closing_ = true;
    srv_->ws_slow_closes++;
    net::post(ws_.get_executor(), [self = shared_from_this()] {
      self->do_close(static_cast<uint16_t>(websocket::close_code::policy_error), "client too slow");
    });
    return false;
  }
  queued_bytes_ += m.data.size();
  queue_.push_back(std::move(m));
  if (!write_posted_) {
    write_posted_ = true;
    net::post(ws_.get_executor(), [self = shared_from_this()] { self->do_write(); });
  }
  return true;
}

void WsSession::send_error(const std::string& message) {
  if (++bad_messages_ > kMaxBadMessages) {
    do_close(static_cast<uint16_t>(websocket::close_code::policy_error), "too many bad messages");
    return;
  }
  std::lock_guard lk(mu_);
  if (closing_) return;
  // Replies go through the same queue as the session's messages, within the same bound.
  std::string text = error_message(message);
  queued_bytes_ += text.size();
  queue_.push_back(Outgoing{Outgoing::Kind::kText, std::move(text)});
  if (!write_posted_) {
    write_posted_ = true;
    net::post(ws_.get_executor(), [self = shared_from_this()] { self->do_write(); });
  }
}

void WsSession::do_read() {
  ws_.async_read(rbuf_, beast::bind_front_handler(&WsSession::on_read, shared_from_this()));
}

void WsSession::on_read(beast::error_code ec, size_t) {
  if (ec) return finish();  // closed by the peer, by us, timed out, or too big (1009)
  if (!close_started_ && !close_after_flush_) {
    if (ws_.got_binary()) {
      handle_pcm();
    } else {
      handle_text();
    }
  }
  rbuf_.consume(rbuf_.size());
  do_read();  // until the close handshake ends
}

void WsSession::handle_pcm() {
  size_t n = rbuf_.size();
  if (n % 2) {
    do_close(static_cast<uint16_t>(websocket::close_code::unknown_data),  // 1003
             "PCM must be s16le 16 kHz mono: odd byte count " + std::to_string(n));
    return;
  }
  if (n == 0) return;
  std::vector<int16_t> pcm(n / 2);
  std::memcpy(pcm.data(), rbuf_.data().data(), n);  // flat_buffer: one contiguous block
  Status st = srv_->sessions->push_audio(id_, pcm.data(), pcm.size());
  if (st.ok()) return;
  if (st.error().kind == ErrorKind::kBadInput) {
    // The session is gone (idle timeout, drain, closed by DELETE).
    do_close(static_cast<uint16_t>(websocket::close_code::normal), "session closed");
    return;
  }
  // Throttled (more than the look-ahead queued) or a runtime failure: the client hears why.
  std::lock_guard lk(mu_);
  if (closing_) return;
  std::string text = error_message(st.message());
  queued_bytes_ += text.size();
  queue_.push_back(Outgoing{Outgoing::Kind::kText, std::move(text)});
  if (!write_posted_) {
    write_posted_ = true;
    net::post(ws_.get_executor(), [self = shared_from_this()] { self->do_write(); });
  }
}

void WsSession::handle_text() {
  std::string text = beast::buffers_to_string(rbuf_.data());
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) return send_error("malformed JSON control message");
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
    return send_error("a control message is a JSON object with a string \"type\"");
  std::string type = j["type"].get<std::string>();
  if (type != "speak-end" && type != "interrupt" && type != "close")
    return send_error("unknown control type \"" + type + "\" (speak-end, interrupt or close)");
  Status st = srv_->sessions->control(id_, type);
  if (!st.ok()) {
    if (st.error().kind == ErrorKind::kBadInput && type != "close") return send_error(st.message());
  }
  if (type == "close") {
    // The session's final messages are already queued (or the session is gone): close
    // once they are written.
    close_after_flush_ = true;
    flush_code_ = static_cast<uint16_t>(websocket::close_code::normal);
    flush_reason_ = "closed";
    {
      std::lock_guard lk(mu_);
      closing_ = true;
    }
    do_write();
  }
}

void WsSession::do_write() {
  if (!accepted_ || writing_ || close_started_) return;
  {
    std::lock_guard lk(mu_);
    write_posted_ = false;
    if (!queue_.empty()) {
      current_ = std::move(queue_.front());
      queue_.pop_front();
      writing_ = true;
    }
  }
  if (!writing_) {
    if (close_after_flush_) do_close(flush_code_, flush_reason_);
    return;
  }
  ws_.binary(current_.kind == Outgoing::Kind::kBinary);
  ws_.async_write(net::buffer(current_.data),
                  beast::bind_front_handler(&WsSession::on_write, shared_from_this()));
}

void WsSession::on_write(beast::error_code ec, size_t) {
  writing_ = false;
  {
    std::lock_guard lk(mu_);
    queued_bytes_ -= std::min(queued_bytes_, current_.data.size());
  }
  current_.data.clear();
  if (ec) {
    {
      std::lock_guard lk(mu_);
      closing_ = true;
    }
    beast::error_code ignored;
    beast::get_lowest_layer(ws_).socket().close(ignored);
    return;  // the read fails next and finishes
  }
  do_write();
}

void WsSession::do_close(uint16_t code, const std::string& reason) {
  if (close_started_) return;
  if (!accepted_) {
    // The handshake is still running: close right after it (on_accept).
    close_after_flush_ = true;
    flush_code_ = code;
    flush_reason_ = reason;
    std::lock_guard lk(mu_);
    closing_ = true;
    for (auto& m : queue_) queued_bytes_ -= std::min(queued_bytes_, m.data.size());
    queue_.clear();
    return;
  }
  close_started_ = true;
  {
    std::lock_guard lk(mu_);
    closing_ = true;
    for (auto& m : queue_) queued_bytes_ -= m.data.size();
    queue_.clear();
  }
  // A peer that never answers the close (or never reads) is cut off after a grace period.
  kill_timer_.expires_after(kCloseGrace);
  kill_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
    if (ec) return;
    beast::error_code ignored;
    beast::get_lowest_layer(self->ws_).socket().close(ignored);
  });
  websocket::close_reason cr(static_cast<websocket::close_code>(code), reason.substr(0, 120));
  ws_.async_close(cr, [self = shared_from_this()](beast::error_code) {});
}

void WsSession::finish() {
  if (finished_) return;
  finished_ = true;
  {
    std::lock_guard lk(mu_);
    closing_ = true;
    queue_.clear();
    queued_bytes_ = 0;
  }
  kill_timer_.cancel();
  beast::error_code ignored;
  beast::get_lowest_layer(ws_).socket().close(ignored);
  if (attached_) {
    srv_->sessions->close(id_);
    srv_->forget(id_);
  }
}

}  // namespace tr::serve
