// The PROXY protocol (v1 text, v2 binary) that carries a client's address
// over a TCP hop: the header the proxy writes to targets of a group with
// `proxyProtocol`, the parser for headers from the peers a listener's
// `proxyProtocolFrom` trusts, and the CIDR blocks that list says them in.
// Pure functions on bytes, no I/O (the fuzz harness drives the parser).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

struct sockaddr;

namespace berth::proxy {

enum class ProxyProtocol { kNone, kV1, kV2 };

// An IPv4 or IPv6 address, its bytes in network order (IPv4 in the first 4).
struct IpAddress {
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};

  bool IsV4Mapped() const;
  // ::ffff:a.b.c.d as the IPv4 address a.b.c.d; any other unchanged.
  IpAddress Unmapped() const;
  // An IPv4 address as ::ffff:a.b.c.d; an IPv6 one unchanged.
  IpAddress Mapped() const;
  // The usual text: dotted quad, or RFC 5952's compressed IPv6.
  std::string ToString() const;
  bool operator==(const IpAddress& o) const { return v6 == o.v6 && bytes == o.bytes; }
};

struct SocketAddress {
  IpAddress ip;
  uint16_t port = 0;
};

// A numeric address: a dotted quad or an IPv6 address, nothing else.
std::optional<IpAddress> ParseIp(std::string_view text);
// An AF_INET or AF_INET6 socket address; nullopt for any other family.
std::optional<SocketAddress> FromSockaddr(const sockaddr* sa);

// A block of addresses: `10.0.0.0/8`, `fd00::/8`; a bare address is one address.
struct Cidr {
  IpAddress base;
  int prefix_bits = 0;

  // True when `ip` is inside. An IPv4-mapped IPv6 address is matched as the
  // IPv4 address it carries; an IPv4 address against an IPv6 block as its
  // mapped form.
  bool Contains(const IpAddress& ip) const;
  std::string ToString() const;
};

// Parses "ADDRESS[/BITS]". Refuses (with a message saying why, no path) a
// non-numeric address, bits out of 0..32 (IPv4) or 0..128 (IPv6), and an
// address with bits set past the prefix (`10.1.0.0/8`: a typo more often
// than not).
Result<Cidr> ParseCidr(std::string_view text);

// The two ends a PROXY header carries.
struct ProxyAddresses {
  SocketAddress source, destination;
};

// The most a v1 header takes, CRLF included, and the most of addresses and
// TLVs a v2 header may announce (more is refused).
constexpr size_t kMaxProxyV1Bytes = 107;
constexpr size_t kMaxProxyV2Payload = 536;

// What ParseProxyHeader made of the bytes it was given.
struct ProxyHeader {
  enum class Status { kNeedMore, kDone, kInvalid };
  Status status = Status::kNeedMore;
  size_t length = 0;  // kDone: the bytes the header took; what follows is the client's
  // kDone: the addresses of a v1 TCP4/TCP6 or v2 PROXY AF_INET/AF_INET6
  // header; nullopt for v1 UNKNOWN, v2 LOCAL and v2 AF_UNSPEC, which leave
  // the connection's own addresses.
  std::optional<ProxyAddresses> addresses;
  std::string error;  // kInvalid: why, for a log line
};

// Parses a PROXY header at the start of `bytes`, v1 or v2 by its first bytes.
// Incremental: call again with more bytes (all of them from the start) while
// it says kNeedMore; it says kInvalid as soon as the bytes so far cannot begin
// a valid header, and never needs more than 107 (v1) or 16 + 536 (v2) bytes.
ProxyHeader ParseProxyHeader(std::string_view bytes);

// The headers the proxy writes. Both ends IPv4 (an IPv4-mapped IPv6 address
// counts as IPv4): TCP4 / AF_INET; otherwise TCP6 / AF_INET6 with any IPv4 end
// mapped. v2 is the PROXY command over STREAM, with no TLVs.
std::string EncodeProxyV1(const ProxyAddresses& a);
std::string EncodeProxyV2(const ProxyAddresses& a);
inline std::string EncodeProxyHeader(ProxyProtocol version, const ProxyAddresses& a) {
  return version == ProxyProtocol::kV1 ? EncodeProxyV1(a) : version == ProxyProtocol::kV2 ? EncodeProxyV2(a) : "";
}

}  // namespace berth::proxy
