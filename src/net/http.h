// HTTP/1.1 message types shared by the server and the client.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace berth::net::http {

struct Header {
  std::string name;  // lower case when received
  std::string value;
};
using Headers = std::vector<Header>;

// The first header named `lower_name` (ASCII lower case), or empty.
std::string_view FindHeader(const Headers& headers, std::string_view lower_name);
bool HasHeader(const Headers& headers, std::string_view lower_name);

// `s` without the spaces and tabs (RFC 9110 "OWS") at either end: the parts of a
// list-valued header (Accept-Encoding, Cookie) as written between separators.
std::string_view TrimOws(std::string_view s);

const char* StatusText(int status);

// Percent-decoding; '+' becomes a space when `form` is set. Returns false on a bad escape.
bool UrlDecode(std::string_view in, std::string* out, bool form);
std::string UrlEncode(std::string_view in);

struct Request {
  std::string method;  // "GET"
  std::string target;  // as sent: "/v1/clusters?x=1"
  std::string path;    // the target before '?', not decoded
  std::string query;   // after '?', not decoded
  Headers headers;
  std::string body;  // empty for routes that stream their body
  int http_minor = 1;
  std::vector<std::pair<std::string, std::string>> params;  // path parameters, decoded
  bool tls = false;                                         // arrived over TLS
  std::string peer_cert_cn;      // the common name of the client's verified certificate (mutual TLS)
  std::string peer_cert_serial;  // and its serial (hex)
  std::string peer_ip;           // the client's address ("unix" on a Unix socket)

  std::string_view Header(std::string_view lower_name) const { return FindHeader(headers, lower_name); }
  std::string_view Param(std::string_view name) const;
  // The decoded value of query parameter `name`, if present.
  std::optional<std::string> Query(std::string_view name) const;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  Headers headers;
  std::string body;
};

}  // namespace berth::net::http
