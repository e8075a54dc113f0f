// Result<T>: the value-or-error type returned across the event-loop plane, where
// nothing throws. An Error carries a category (mapped to an HTTP status at the API
// edge), a stable code (e.g. "ClusterNotFound") and a human message.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace berth {

enum class ErrorKind {
  kInvalid,              // the caller sent something wrong (400)
  kUnauthorized,         // missing or wrong credentials (401)
  kForbidden,            // credentials fine, action not allowed (403)
  kNotFound,             // the named thing does not exist (404)
  kConflict,             // the state forbids it (409)
  kTooLarge,             // over a size limit (413)
  kTimeout,              // too slow (408)
  kUnavailable,          // try again later (503)
  kInsufficientStorage,  // the disk is full (507)
  kInternal,             // our fault or the machine's (500)
};

struct Error {
  ErrorKind kind = ErrorKind::kInternal;
  std::string code;     // stable, machine-readable: "InvalidParameter", "ClusterNotFound"
  std::string message;  // for a human: what was wrong and where

  static Error Invalid(std::string message) { return {ErrorKind::kInvalid, "InvalidParameter", std::move(message)}; }
  static Error Internal(std::string message) { return {ErrorKind::kInternal, "InternalError", std::move(message)}; }
  static Error NotFound(std::string code, std::string message) {
    return {ErrorKind::kNotFound, std::move(code), std::move(message)};
  }
  static Error Conflict(std::string code, std::string message) {
    return {ErrorKind::kConflict, std::move(code), std::move(message)};
  }
  static Error Unauthorized(std::string message) {
    return {ErrorKind::kUnauthorized, "Unauthorized", std::move(message)};
  }
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  const Error& error() const { return std::get<1>(v_); }
  Error&& take_error() { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

// Result<void>: success or an Error.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }
  Error&& take_error() { return std::move(error_); }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Result<void>;

}  // namespace berth
