// One WebSocket of `talkrender serve` (/v1/sessions/ID/ws; protocol in docs/serve.md).
//
// In: binary messages are PCM s16le 16 kHz mono (SessionManager::push_audio; an odd byte
// count closes with 1003), text messages are JSON control {"type": "speak-end" |
// "interrupt" | "close"} (a bad one gets a {"type":"error"} text message; too many close
// with 1008). Out: the session's messages, through the SendFn given to
// SessionManager::attach. That SendFn never blocks the session's thread: it queues, and a
// queue over its bound closes the connection with 1008 "client too slow". The socket's
// end (either side) closes the session.
//
// Everything but the SendFn and shutdown() runs on the connection's strand.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>

#include "serve/http_internal.h"

namespace tr::serve {

class WsSession : public std::enable_shared_from_this<WsSession> {
 public:
  WsSession(HttpServer::Impl* server, beast::tcp_stream&& stream, std::string id);
  ~WsSession();

  // Attaches to the session (refusing the upgrade with 404/409 on failure), then accepts
  // the upgrade `req` and starts reading and writing.
  void run(http::request<http::string_body> req);
  // Thread-safe: close with `code` once the queued messages are written.
  void shutdown(uint16_t code, std::string reason);

 private:
  bool enqueue(Outgoing&& m);  // the SendFn's body; false: gone or too slow
  void send_error(const std::string& message);
  void on_accept(beast::error_code ec);
  void do_read();
  void on_read(beast::error_code ec, size_t n);
  void handle_pcm();
  void handle_text();
  void do_write();
  void on_write(beast::error_code ec, size_t n);
  void do_close(uint16_t code, const std::string& reason);
  void finish();  // once: the session is closed

  HttpServer::Impl* srv_;
  websocket::stream<beast::tcp_stream> ws_;
  std::string id_;
  beast::flat_buffer rbuf_;
  net::steady_timer kill_timer_;
  std::shared_ptr<http::response<http::string_body>> refusal_;

  // Guarded by mu_ (the SendFn runs on the session's thread).
  std::mutex mu_;
  std::deque<Outgoing> queue_;
  size_t queued_bytes_ = 0;
  bool write_posted_ = false;
  bool closing_ = false;  // no more messages are taken

  // Strand only.
  Outgoing current_;
  bool writing_ = false;
  bool accepted_ = false;
  bool close_started_ = false;
  bool close_after_flush_ = false;
  uint16_t flush_code_ = 1000;
  std::string flush_reason_;
  bool attached_ = false;
  bool finished_ = false;
  int bad_messages_ = 0;
};

}  // namespace tr::serve
