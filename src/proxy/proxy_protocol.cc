// The PROXY protocol's headers and CIDR blocks (proxy_protocol.h), written
// from the protocol's public specification (haproxy's doc/proxy-protocol.txt).
#include "proxy/proxy_protocol.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <vector>

namespace berth::proxy {
namespace {

constexpr std::string_view kV1Prefix = "PROXY ";
// The v2 signature: CR LF CR LF NUL CR LF "QUIT" LF.
constexpr char kV2Signature[12] = {'\r', '\n', '\r', '\n', '\0', '\r', '\n', 'Q', 'U', 'I', 'T', '\n'};
constexpr size_t kV2FixedBytes = 16;
constexpr size_t kV2Inet4Bytes = 12;  // two addresses of 4 bytes, two ports
constexpr size_t kV2Inet6Bytes = 36;  // two addresses of 16 bytes, two ports

ProxyHeader NeedMore() { return {}; }

ProxyHeader Invalid(std::string why) {
  ProxyHeader h;
  h.status = ProxyHeader::Status::kInvalid;
  h.error = std::move(why);
  return h;
}

ProxyHeader Done(size_t length, std::optional<ProxyAddresses> addresses) {
  ProxyHeader h;
  h.status = ProxyHeader::Status::kDone;
  h.length = length;
  h.addresses = std::move(addresses);
  return h;
}

// True when the first min(len, want.size()) bytes of `have` are want's.
bool PrefixAgrees(std::string_view have, std::string_view want) {
  size_t n = std::min(have.size(), want.size());
  return have.substr(0, n) == want.substr(0, n);
}

std::vector<std::string_view> SplitSpaces(std::string_view line) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    size_t sp = line.find(' ', start);
    out.push_back(line.substr(start, sp == std::string_view::npos ? std::string_view::npos : sp - start));
    if (sp == std::string_view::npos) return out;
    start = sp + 1;
  }
}

// A port in decimal: 1 to 5 digits, 0..65535.
std::optional<uint16_t> ParsePortText(std::string_view text) {
  if (text.empty() || text.size() > 5) return std::nullopt;
  uint32_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  if (v > 65535) return std::nullopt;
  return static_cast<uint16_t>(v);
}

std::optional<IpAddress> ParseFamily(std::string_view text, bool v6) {
  std::optional<IpAddress> ip = ParseIp(text);
  if (!ip || ip->v6 != v6) return std::nullopt;
  return ip;
}

// "PROXY TCP4 SRC DST SPORT DPORT", "PROXY TCP6 ...", or "PROXY UNKNOWN ...":
// the line without its CRLF.
ProxyHeader ParseV1Line(std::string_view line, size_t length) {
  for (char c : line) {
    if (c < 0x20 || c > 0x7e) return Invalid("v1: a control or non-ASCII byte in the line");
  }
  std::vector<std::string_view> words = SplitSpaces(line);
  // words[0] is "PROXY": the prefix was checked before the line ended.
  if (words.size() >= 2 && words[1] == "UNKNOWN") return Done(length, std::nullopt);
  if (words.size() < 2 || (words[1] != "TCP4" && words[1] != "TCP6")) {
    return Invalid("v1: protocol must be TCP4, TCP6 or UNKNOWN");
  }
  bool v6 = words[1] == "TCP6";
  if (words.size() != 6) return Invalid("v1: expected 4 fields after " + std::string(words[1]) + ", single spaces");
  ProxyAddresses a;
  std::optional<IpAddress> src = ParseFamily(words[2], v6), dst = ParseFamily(words[3], v6);
  if (!src) return Invalid("v1: bad " + std::string(words[1]) + " source address");
  if (!dst) return Invalid("v1: bad " + std::string(words[1]) + " destination address");
  std::optional<uint16_t> sport = ParsePortText(words[4]), dport = ParsePortText(words[5]);
  if (!sport) return Invalid("v1: bad source port (0..65535 in decimal)");
  if (!dport) return Invalid("v1: bad destination port (0..65535 in decimal)");
  a.source = {*src, *sport};
  a.destination = {*dst, *dport};
  return Done(length, a);
}

ProxyHeader ParseV1(std::string_view bytes) {
  if (!PrefixAgrees(bytes, kV1Prefix)) return Invalid("not a PROXY protocol header");
  size_t window = std::min(bytes.size(), kMaxProxyV1Bytes);
  size_t lf = bytes.substr(0, window).find('\n');
  if (lf == std::string_view::npos) {
    if (bytes.size() >= kMaxProxyV1Bytes) return Invalid("v1: no CRLF within 107 bytes");
    return NeedMore();
  }
  if (lf == 0 || bytes[lf - 1] != '\r') return Invalid("v1: line ends in LF without CR");
  return ParseV1Line(bytes.substr(0, lf - 1), lf + 1);
}

uint16_t Be16(const unsigned char* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }

ProxyHeader ParseV2(std::string_view bytes) {
  if (!PrefixAgrees(bytes, std::string_view(kV2Signature, sizeof(kV2Signature)))) {
    return Invalid("not a PROXY protocol header");
  }
  if (bytes.size() < kV2FixedBytes) return NeedMore();
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  int version = p[12] >> 4, command = p[12] & 0x0f;
  int family = p[13] >> 4, transport = p[13] & 0x0f;
  size_t payload = Be16(p + 14);
  if (version != 2) return Invalid("v2: version " + std::to_string(version) + ", not 2");
  if (command > 1) return Invalid("v2: command " + std::to_string(command) + ", neither LOCAL nor PROXY");
  if (payload > kMaxProxyV2Payload) {
    return Invalid("v2: " + std::to_string(payload) + " bytes of addresses and TLVs, over " +
                   std::to_string(kMaxProxyV2Payload));
  }
  bool local = command == 0;
  size_t need = 0;
  if (!local) {
    if (family > 3) return Invalid("v2: address family " + std::to_string(family) + " unknown");
    if (family == 3) return Invalid("v2: AF_UNIX addresses on a TCP connection");
    if (family != 0 && transport != 1) return Invalid("v2: transport must be STREAM");
    need = family == 1 ? kV2Inet4Bytes : family == 2 ? kV2Inet6Bytes : 0;
    if (payload < need) return Invalid("v2: " + std::to_string(payload) + " bytes too few for the addresses");
  }
  size_t length = kV2FixedBytes + payload;
  if (bytes.size() < length) return NeedMore();
  // LOCAL (the sender's own health checks) and AF_UNSPEC keep the connection's
  // addresses; TLVs after the addresses are skipped.
  if (local || family == 0) return Done(length, std::nullopt);
  const unsigned char* at = p + kV2FixedBytes;
  ProxyAddresses a;
  size_t n = family == 1 ? 4 : 16;
  a.source.ip.v6 = a.destination.ip.v6 = family == 2;
  memcpy(a.source.ip.bytes.data(), at, n);
  memcpy(a.destination.ip.bytes.data(), at + n, n);
  a.source.port = Be16(at + 2 * n);
  a.destination.port = Be16(at + 2 * n + 2);
  return Done(length, a);
}

// Both ends in one family: IPv4 when both are (mapped or not), else IPv6.
ProxyAddresses OneFamily(const ProxyAddresses& in) {
  ProxyAddresses a = in;
  a.source.ip = a.source.ip.Unmapped();
  a.destination.ip = a.destination.ip.Unmapped();
  if (a.source.ip.v6 || a.destination.ip.v6) {
    a.source.ip = a.source.ip.Mapped();
    a.destination.ip = a.destination.ip.Mapped();
  }
  return a;
}

}  // namespace

// ---------------------------------------------------------------------------
// Addresses
// ---------------------------------------------------------------------------

bool IpAddress::IsV4Mapped() const {
  static constexpr uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return v6 && memcmp(bytes.data(), kPrefix, sizeof(kPrefix)) == 0;
}

IpAddress IpAddress::Unmapped() const {
  if (!IsV4Mapped()) return *this;
  IpAddress out;
  memcpy(out.bytes.data(), bytes.data() + 12, 4);
  return out;
}

IpAddress IpAddress::Mapped() const {
  if (v6) return *this;
  IpAddress out;
  out.v6 = true;
  out.bytes[10] = out.bytes[11] = 0xff;
  memcpy(out.bytes.data() + 12, bytes.data(), 4);
  return out;
}

std::string IpAddress::ToString() const {
  char text[INET6_ADDRSTRLEN] = {0};
  inet_ntop(v6 ? AF_INET6 : AF_INET, bytes.data(), text, sizeof(text));
  return text;
}

std::optional<IpAddress> ParseIp(std::string_view text) {
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  std::string z(text);
  IpAddress ip;
  if (inet_pton(AF_INET, z.c_str(), ip.bytes.data()) == 1) return ip;
  if (inet_pton(AF_INET6, z.c_str(), ip.bytes.data()) == 1) {
    ip.v6 = true;
    return ip;
  }
  return std::nullopt;
}

std::optional<SocketAddress> FromSockaddr(const sockaddr* sa) {
  SocketAddress out;
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    memcpy(out.ip.bytes.data(), &in->sin_addr, 4);
    out.port = ntohs(in->sin_port);
    return out;
  }
  if (sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    out.ip.v6 = true;
    memcpy(out.ip.bytes.data(), &in6->sin6_addr, 16);
    out.port = ntohs(in6->sin6_port);
    return out;
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// CIDR blocks
// ---------------------------------------------------------------------------

bool Cidr::Contains(const IpAddress& ip) const {
  IpAddress x = base.v6 ? ip.Mapped() : ip.Unmapped();
  if (x.v6 != base.v6) return false;
  int full = prefix_bits / 8, rest = prefix_bits % 8;
  if (memcmp(x.bytes.data(), base.bytes.data(), static_cast<size_t>(full)) != 0) return false;
  if (rest == 0) return true;
  auto mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (x.bytes[static_cast<size_t>(full)] & mask) == (base.bytes[static_cast<size_t>(full)] & mask);
}

std::string Cidr::ToString() const { return base.ToString() + "/" + std::to_string(prefix_bits); }

Result<Cidr> ParseCidr(std::string_view text) {
  size_t slash = text.find('/');
  std::string_view address = text.substr(0, slash);
  std::optional<IpAddress> ip = ParseIp(address);
  if (!ip) return Error::Invalid("must be an IPv4 or IPv6 address or CIDR block, not \"" + std::string(text) + "\"");
  int max_bits = ip->v6 ? 128 : 32;
  Cidr c;
  c.base = *ip;
  c.prefix_bits = max_bits;
  if (slash != std::string_view::npos) {
    std::string_view bits = text.substr(slash + 1);
    int v = 0;
    bool ok = !bits.empty() && bits.size() <= 3;
    for (char ch : bits) {
      if (ch < '0' || ch > '9') ok = false;
      v = v * 10 + (ch - '0');
    }
    if (!ok || v > max_bits) {
      return Error::Invalid("\"" + std::string(text) + "\": the prefix must be 0 to " + std::to_string(max_bits) +
                            " bits");
    }
    c.prefix_bits = v;
  }
  // Every bit past the prefix must be zero: the block is exactly its base's.
  Cidr exact = c;
  for (int i = c.prefix_bits; i < max_bits; i++) {
    exact.base.bytes[static_cast<size_t>(i / 8)] &= static_cast<uint8_t>(~(0x80 >> (i % 8)));
  }
  if (!(exact.base == c.base)) {
    return Error::Invalid("\"" + std::string(text) + "\" has bits set past its prefix (" + exact.ToString() +
                          " is the block)");
  }
  return c;
}

// ---------------------------------------------------------------------------
// Headers
// ---------------------------------------------------------------------------

ProxyHeader ParseProxyHeader(std::string_view bytes) {
  if (bytes.empty()) return NeedMore();
  if (bytes[0] == 'P') return ParseV1(bytes);
  if (bytes[0] == '\r') return ParseV2(bytes);
  return Invalid("not a PROXY protocol header");
}

std::string EncodeProxyV1(const ProxyAddresses& in) {
  ProxyAddresses a = OneFamily(in);
  std::string out = a.source.ip.v6 ? "PROXY TCP6 " : "PROXY TCP4 ";
  out.append(a.source.ip.ToString()).append(" ").append(a.destination.ip.ToString()).append(" ");
  out.append(std::to_string(a.source.port)).append(" ").append(std::to_string(a.destination.port)).append("\r\n");
  return out;
}

std::string EncodeProxyV2(const ProxyAddresses& in) {
  ProxyAddresses a = OneFamily(in);
  bool v6 = a.source.ip.v6;
  size_t n = v6 ? 16 : 4;
  size_t payload = v6 ? kV2Inet6Bytes : kV2Inet4Bytes;
  std::string out(kV2Signature, sizeof(kV2Signature));
  out.push_back('\x21');                // version 2, command PROXY
  out.push_back(v6 ? '\x21' : '\x11');  // AF_INET6 or AF_INET, STREAM
  out.push_back(static_cast<char>(payload >> 8));
  out.push_back(static_cast<char>(payload & 0xff));
  out.append(reinterpret_cast<const char*>(a.source.ip.bytes.data()), n);
  out.append(reinterpret_cast<const char*>(a.destination.ip.bytes.data()), n);
  for (uint16_t port : {a.source.port, a.destination.port}) {
    out.push_back(static_cast<char>(port >> 8));
    out.push_back(static_cast<char>(port & 0xff));
  }
  return out;
}

}  // namespace berth::proxy
