// Errors as values. Every fallible function in talkrender returns Status or Result<T>;
// exceptions are not used across component boundaries. The error kind maps onto the CLI's
// exit codes (README: 0 ok, 2 bad input or usage, 3 runtime or I/O failure, 130 interrupted).
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace tr {

enum class ErrorKind : int {
  kBadInput = 2,      // the user's file, flag or data is wrong
  kRuntime = 3,       // I/O failure, out of memory, internal limit
  kInterrupted = 130  // SIGINT / SIGTERM
};

struct Error {
  ErrorKind kind = ErrorKind::kRuntime;
  std::string message;

  int exit_code() const { return static_cast<int>(kind); }
};

inline Error BadInput(std::string msg) { return Error{ErrorKind::kBadInput, std::move(msg)}; }
inline Error RuntimeError(std::string msg) { return Error{ErrorKind::kRuntime, std::move(msg)}; }
inline Error Interrupted(std::string msg = "interrupted") {
  return Error{ErrorKind::kInterrupted, std::move(msg)};
}

// Status: success, or an Error.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error e) : error_(std::move(e)) {}  // NOLINT: implicit by design
  static Status Ok() { return Status(); }

  bool ok() const { return !error_.has_value(); }
  explicit operator bool() const { return ok(); }
  const Error& error() const {
    assert(error_);
    return *error_;
  }
  const std::string& message() const { return error().message; }

  // Prefixes the message with context ("while loading X: ...").
  Status with_context(const std::string& ctx) const {
    if (ok()) return *this;
    return Error{error_->kind, ctx + ": " + error_->message};
  }

 private:
  std::optional<Error> error_;
};

// Result<T>: a T, or an Error.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}              // NOLINT: implicit by design
  Result(Error e) : v_(std::move(e)) {}                  // NOLINT
  Result(Status s) : v_(s.error()) { assert(!s.ok()); }  // NOLINT

  bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }

  T& value() & {
    assert(ok());
    return std::get<T>(v_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<T>(v_);
  }
  T&& value() && {
    assert(ok());
    return std::get<T>(std::move(v_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const {
    assert(!ok());
    return std::get<Error>(v_);
  }
  Status status() const { return ok() ? Status() : Status(error()); }

 private:
  std::variant<T, Error> v_;
};

}  // namespace tr

#define TR_CONCAT_INNER_(a, b) a##b
#define TR_CONCAT_(a, b) TR_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` (a Status) failed.
#define TR_RETURN_IF_ERROR(expr)                     \
  do {                                               \
    ::tr::Status tr_status_ = (expr);                \
    if (!tr_status_.ok()) return tr_status_.error(); \
  } while (0)

// `lhs = value of expr` (a Result<T>), or return its error.
#define TR_ASSIGN_OR_RETURN(lhs, expr) \
  TR_ASSIGN_OR_RETURN_IMPL_(TR_CONCAT_(tr_result_, __LINE__), lhs, expr)
#define TR_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return tmp.error();              \
  lhs = std::move(tmp).value()
