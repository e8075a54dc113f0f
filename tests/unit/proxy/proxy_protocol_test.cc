// proxy/proxy_protocol: PROXY headers written byte for byte, parsed whole and
// byte by byte, refused for every reason; CIDR blocks; and the two fields of
// the configuration document that use them.
#include "proxy/proxy_protocol.h"

#include <catch2/catch.hpp>
#include <string>

#include "proxy/config.h"

using namespace berth;
using namespace berth::proxy;

namespace {

using HeaderStatus = ProxyHeader::Status;

SocketAddress At(const char* ip, uint16_t port) {
  auto parsed = ParseIp(ip);
  REQUIRE(parsed.has_value());
  return {*parsed, port};
}

std::string Bytes(std::initializer_list<int> b) {
  std::string out;
  for (int x : b) out.push_back(static_cast<char>(x));
  return out;
}

const std::string kSig = Bytes({0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a});

// A v2 header: signature, version/command, family/transport, length, payload.
std::string V2(int ver_cmd, int fam, const std::string& payload) {
  return kSig + Bytes({ver_cmd, fam, static_cast<int>(payload.size() >> 8), static_cast<int>(payload.size() & 0xff)}) +
         payload;
}

const std::string kV4Payload = Bytes({203, 0, 113, 7, 10, 0, 0, 1, 0xc3, 0x50, 0x01, 0xbb});  // ports 50000, 443

// The error of bytes that must be refused.
std::string Refused(const std::string& bytes) {
  ProxyHeader h = ParseProxyHeader(bytes);
  REQUIRE(h.status == HeaderStatus::kInvalid);
  REQUIRE_FALSE(h.error.empty());
  return h.error;
}

}  // namespace

TEST_CASE("proxy protocol: v1 and v2 written byte for byte", "[proxy][proxy-protocol]") {
  ProxyAddresses v4{At("127.0.0.1", 50000), At("10.0.0.1", 443)};
  CHECK(EncodeProxyV1(v4) == "PROXY TCP4 127.0.0.1 10.0.0.1 50000 443\r\n");
  CHECK(EncodeProxyV2(v4) == V2(0x21, 0x11, Bytes({127, 0, 0, 1, 10, 0, 0, 1, 0xc3, 0x50, 0x01, 0xbb})));

  ProxyAddresses v6{At("2001:db8::7", 1), At("::1", 65535)};
  CHECK(EncodeProxyV1(v6) == "PROXY TCP6 2001:db8::7 ::1 1 65535\r\n");
  std::string payload = Bytes({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7,  // 2001:db8::7
                               0,    0,    0,    0,    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,  // ::1
                               0x00, 0x01, 0xff, 0xff});
  CHECK(EncodeProxyV2(v6) == V2(0x21, 0x21, payload));

  // IPv4-mapped ends are IPv4; one real IPv6 end makes both IPv6.
  ProxyAddresses mapped{At("::ffff:192.0.2.1", 1234), At("::ffff:127.0.0.1", 80)};
  CHECK(EncodeProxyV1(mapped) == "PROXY TCP4 192.0.2.1 127.0.0.1 1234 80\r\n");
  CHECK(EncodeProxyV2(mapped).substr(12, 2) == Bytes({0x21, 0x11}));
  ProxyAddresses mixed{At("192.0.2.1", 1234), At("fd00::1", 80)};
  CHECK(EncodeProxyV1(mixed) == "PROXY TCP6 ::ffff:192.0.2.1 fd00::1 1234 80\r\n");
  CHECK(EncodeProxyHeader(ProxyProtocol::kNone, v4).empty());

  // What is written parses back to the same addresses.
  for (const ProxyAddresses& a : {v4, v6}) {
    for (const std::string& bytes : {EncodeProxyV1(a), EncodeProxyV2(a)}) {
      ProxyHeader h = ParseProxyHeader(bytes + "GET /");
      REQUIRE(h.status == HeaderStatus::kDone);
      CHECK(h.length == bytes.size());
      REQUIRE(h.addresses);
      CHECK(h.addresses->source.ip == a.source.ip);
      CHECK(h.addresses->source.port == a.source.port);
      CHECK(h.addresses->destination.ip == a.destination.ip);
      CHECK(h.addresses->destination.port == a.destination.port);
    }
  }
}

TEST_CASE("proxy protocol: good v1 headers", "[proxy][proxy-protocol]") {
  std::string v4 = "PROXY TCP4 203.0.113.7 10.0.0.1 50000 443\r\n";
  ProxyHeader h = ParseProxyHeader(v4 + "rest");
  REQUIRE(h.status == HeaderStatus::kDone);
  CHECK(h.length == v4.size());
  REQUIRE(h.addresses);
  CHECK(h.addresses->source.ip.ToString() == "203.0.113.7");
  CHECK(h.addresses->source.port == 50000);
  CHECK(h.addresses->destination.ip.ToString() == "10.0.0.1");
  CHECK(h.addresses->destination.port == 443);

  h = ParseProxyHeader("PROXY TCP6 2001:db8::1 ::1 0 65535\r\n");
  REQUIRE(h.status == HeaderStatus::kDone);
  REQUIRE(h.addresses);
  CHECK(h.addresses->source.ip.v6);
  CHECK(h.addresses->source.ip.ToString() == "2001:db8::1");
  CHECK(h.addresses->source.port == 0);
  CHECK(h.addresses->destination.port == 65535);

  // UNKNOWN keeps the connection's addresses, whatever follows it on the line.
  for (std::string unknown : {"PROXY UNKNOWN\r\n", "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n"}) {
    h = ParseProxyHeader(unknown + "x");
    REQUIRE(h.status == HeaderStatus::kDone);
    CHECK(h.length == unknown.size());
    CHECK_FALSE(h.addresses);
  }

  // The longest line the protocol allows is 107 bytes with its CRLF.
  std::string longest = "PROXY UNKNOWN " + std::string(107 - 16, 'x') + "\r\n";
  REQUIRE(longest.size() == kMaxProxyV1Bytes);
  CHECK(ParseProxyHeader(longest).status == HeaderStatus::kDone);
}

TEST_CASE("proxy protocol: good v2 headers", "[proxy][proxy-protocol]") {
  std::string v4 = V2(0x21, 0x11, kV4Payload);
  ProxyHeader h = ParseProxyHeader(v4 + "GET / HTTP/1.1\r\n");
  REQUIRE(h.status == HeaderStatus::kDone);
  CHECK(h.length == 28);
  REQUIRE(h.addresses);
  CHECK(h.addresses->source.ip.ToString() == "203.0.113.7");
  CHECK(h.addresses->source.port == 50000);
  CHECK(h.addresses->destination.ip.ToString() == "10.0.0.1");
  CHECK(h.addresses->destination.port == 443);

  std::string six(36, '\0');
  six[0] = '\xfd';
  six[15] = '\x09';  // fd00::9
  six[31] = '\x01';  // ::1
  six[32] = '\x00', six[33] = '\x50', six[34] = '\x1f', six[35] = '\x90';
  h = ParseProxyHeader(V2(0x21, 0x21, six));
  REQUIRE(h.status == HeaderStatus::kDone);
  CHECK(h.length == 52);
  REQUIRE(h.addresses);
  CHECK(h.addresses->source.ip.ToString() == "fd00::9");
  CHECK(h.addresses->destination.ip.ToString() == "::1");
  CHECK(h.addresses->source.port == 80);
  CHECK(h.addresses->destination.port == 8080);

  // TLVs after the addresses are skipped, up to the bound.
  std::string tlvs = Bytes({0x04, 0x00, 0x03, 'a', 'b', 'c'});  // PP2_TYPE_NOOP, 3 bytes
  h = ParseProxyHeader(V2(0x21, 0x11, kV4Payload + tlvs) + "z");
  REQUIRE(h.status == HeaderStatus::kDone);
  CHECK(h.length == 16 + 12 + 6);
  REQUIRE(h.addresses);
  CHECK(h.addresses->source.ip.ToString() == "203.0.113.7");
  std::string most = kV4Payload + std::string(kMaxProxyV2Payload - kV4Payload.size(), '\0');
  CHECK(ParseProxyHeader(V2(0x21, 0x11, most)).status == HeaderStatus::kDone);

  // LOCAL (whatever its family says) and AF_UNSPEC keep the connection's addresses.
  for (const std::string& keep : {V2(0x20, 0x00, ""), V2(0x20, 0x11, kV4Payload), V2(0x20, 0x31, "junk"),
                                  V2(0x21, 0x00, ""), V2(0x21, 0x00, tlvs)}) {
    h = ParseProxyHeader(keep);
    REQUIRE(h.status == HeaderStatus::kDone);
    CHECK(h.length == keep.size());
    CHECK_FALSE(h.addresses);
  }
}

TEST_CASE("proxy protocol: headers fed byte by byte", "[proxy][proxy-protocol]") {
  std::string v6 = "PROXY TCP6 2001:db8::1 ::1 1 2\r\n";
  for (const std::string& header :
       {std::string("PROXY TCP4 203.0.113.7 10.0.0.1 50000 443\r\n"), v6, std::string("PROXY UNKNOWN\r\n"),
        V2(0x21, 0x11, kV4Payload), V2(0x20, 0x00, ""), V2(0x21, 0x11, kV4Payload + Bytes({0x04, 0x00, 0x01, 'x'}))}) {
    std::string bytes = header + "after";
    for (size_t n = 0; n < header.size(); n++) {
      ProxyHeader h = ParseProxyHeader(bytes.substr(0, n));
      INFO("after " << n << " bytes");
      REQUIRE(h.status == HeaderStatus::kNeedMore);
    }
    for (size_t n = header.size(); n <= bytes.size(); n++) {
      ProxyHeader h = ParseProxyHeader(bytes.substr(0, n));
      REQUIRE(h.status == HeaderStatus::kDone);
      CHECK(h.length == header.size());
    }
  }
}

TEST_CASE("proxy protocol: every refusal", "[proxy][proxy-protocol]") {
  // Not a header at all: said at the first byte that differs.
  CHECK(Refused("GET / HTTP/1.1\r\n") == "not a PROXY protocol header");
  CHECK(Refused("\x16\x03\x01") == "not a PROXY protocol header");
  CHECK(Refused("PROXI") == "not a PROXY protocol header");
  CHECK(Refused(std::string("\r\n\r\n\x00\r\nQUIX", 11)) == "not a PROXY protocol header");
  CHECK(Refused(std::string("\r\n\r\n\x01", 5)) == "not a PROXY protocol header");

  // v1: too long, bad line ends, bad fields.
  CHECK(Refused("PROXY UNKNOWN " + std::string(200, 'x')) == "v1: no CRLF within 107 bytes");
  CHECK(Refused("PROXY UNKNOWN " + std::string(107 - 15, 'x') + "\r\n") == "v1: no CRLF within 107 bytes");
  CHECK(Refused("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n") == "v1: line ends in LF without CR");
  CHECK(Refused("PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n") == "v1: a control or non-ASCII byte in the line");
  CHECK(Refused("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n") == "v1: a control or non-ASCII byte in the line");
  CHECK(Refused("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n") == "v1: protocol must be TCP4, TCP6 or UNKNOWN");
  CHECK(Refused("PROXY \r\n") == "v1: protocol must be TCP4, TCP6 or UNKNOWN");
  CHECK(Refused("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n").find("expected 4 fields") != std::string::npos);
  CHECK(Refused("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n").find("expected 4 fields") != std::string::npos);
  CHECK(Refused("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n").find("expected 4 fields") != std::string::npos);
  CHECK(Refused("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n") == "v1: bad TCP4 source address");
  CHECK(Refused("PROXY TCP4 ::1 5.6.7.8 1 2\r\n") == "v1: bad TCP4 source address");
  CHECK(Refused("PROXY TCP4 1.2.3.4 localhost 1 2\r\n") == "v1: bad TCP4 destination address");
  CHECK(Refused("PROXY TCP6 1.2.3.4 ::1 1 2\r\n") == "v1: bad TCP6 source address");
  CHECK(Refused("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n") == "v1: bad source port (0..65535 in decimal)");
  CHECK(Refused("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n") == "v1: bad source port (0..65535 in decimal)");
  CHECK(Refused("PROXY TCP4 1.2.3.4 5.6.7.8 1 999999\r\n") == "v1: bad destination port (0..65535 in decimal)");
  CHECK(Refused("PROXY TCP4 1.2.3.4 5.6.7.8 1 0x50\r\n") == "v1: bad destination port (0..65535 in decimal)");

  // v2: version, command, family, transport, lengths.
  CHECK(Refused(V2(0x11, 0x11, kV4Payload)) == "v2: version 1, not 2");
  CHECK(Refused(V2(0x31, 0x11, kV4Payload)) == "v2: version 3, not 2");
  CHECK(Refused(V2(0x22, 0x11, kV4Payload)) == "v2: command 2, neither LOCAL nor PROXY");
  CHECK(Refused(V2(0x21, 0x41, kV4Payload)) == "v2: address family 4 unknown");
  CHECK(Refused(V2(0x21, 0x31, std::string(216, 'u'))) == "v2: AF_UNIX addresses on a TCP connection");
  CHECK(Refused(V2(0x21, 0x12, kV4Payload)) == "v2: transport must be STREAM");
  CHECK(Refused(V2(0x21, 0x10, kV4Payload)) == "v2: transport must be STREAM");
  CHECK(Refused(V2(0x21, 0x11, kV4Payload.substr(0, 11))) == "v2: 11 bytes too few for the addresses");
  CHECK(Refused(V2(0x21, 0x21, kV4Payload)) == "v2: 12 bytes too few for the addresses");
  CHECK(Refused(V2(0x21, 0x11, kV4Payload + std::string(kMaxProxyV2Payload, 'x'))) ==
        "v2: 548 bytes of addresses and TLVs, over 536");
  // The bound is known from the fixed part alone: no need to wait for the rest.
  CHECK(Refused(kSig + Bytes({0x21, 0x11, 0xff, 0xff})) == "v2: 65535 bytes of addresses and TLVs, over 536");
}

TEST_CASE("proxy protocol: CIDR blocks parsed and matched", "[proxy][proxy-protocol]") {
  auto block = [](const char* text) {
    auto c = ParseCidr(text);
    INFO(text);
    REQUIRE(c.ok());
    return *c;
  };
  auto ip = [](const char* text) {
    auto x = ParseIp(text);
    REQUIRE(x.has_value());
    return *x;
  };
  Cidr ten = block("10.0.0.0/8");
  CHECK(ten.ToString() == "10.0.0.0/8");
  CHECK(ten.Contains(ip("10.255.1.2")));
  CHECK(ten.Contains(ip("::ffff:10.0.0.1")));  // a mapped IPv4 peer, as a dual-stack listener sees it
  CHECK_FALSE(ten.Contains(ip("11.0.0.1")));
  CHECK_FALSE(ten.Contains(ip("::1")));

  Cidr one = block("192.168.1.7");
  CHECK(one.prefix_bits == 32);
  CHECK(one.Contains(ip("192.168.1.7")));
  CHECK_FALSE(one.Contains(ip("192.168.1.6")));
  CHECK(block("192.168.1.7/32").Contains(ip("192.168.1.7")));

  Cidr odd = block("172.16.0.0/12");
  CHECK(odd.Contains(ip("172.31.255.255")));
  CHECK_FALSE(odd.Contains(ip("172.32.0.0")));
  CHECK(block("0.0.0.0/0").Contains(ip("8.8.8.8")));
  CHECK_FALSE(block("0.0.0.0/0").Contains(ip("2001:db8::1")));

  Cidr loop6 = block("::1/128");
  CHECK(loop6.Contains(ip("::1")));
  CHECK_FALSE(loop6.Contains(ip("::2")));
  CHECK_FALSE(loop6.Contains(ip("127.0.0.1")));
  CHECK(block("::1").prefix_bits == 128);
  Cidr ula = block("fd00::/8");
  CHECK(ula.Contains(ip("fd12:3456::1")));
  CHECK_FALSE(ula.Contains(ip("fe80::1")));
  CHECK(block("::ffff:0:0/96").Contains(ip("127.0.0.1")));  // IPv4 against an IPv6 block: its mapped form

  for (const char* bad : {"", "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0.0/-1", "10.0.0.0/8/8", "10.0.0/8",
                          "localhost", "10.0.0.0 /8", "10.0.0.0/ 8", "fe80::1%eth0", "10.0.0.0/0x8"}) {
    INFO(bad);
    CHECK_FALSE(ParseCidr(bad).ok());
  }
  auto past = ParseCidr("10.1.0.0/8");
  REQUIRE_FALSE(past.ok());
  CHECK(past.error().message == "\"10.1.0.0/8\" has bits set past its prefix (10.0.0.0/8 is the block)");
  CHECK_FALSE(ParseCidr("fd00::1/8").ok());
}

TEST_CASE("proxy protocol: the document's proxyProtocol and proxyProtocolFrom", "[proxy][proxy-protocol]") {
  auto doc = [](const std::string& group_extra, const std::string& listener_extra, const char* group = "TCP",
                const char* listener = "TCP") {
    return std::string(R"({"version": 1, "listeners": [{"port": 80, "protocol": ")") + listener +
           R"(", "defaultTargetGroup": "g")" + listener_extra + R"(}],
        "targetGroups": [{"name": "g", "protocol": ")" +
           group + R"(")" + group_extra + "}]}";
  };
  auto refusal = [](const std::string& text) {
    auto c = ParseConfig(text);
    REQUIRE_FALSE(c.ok());
    return c.error().message;
  };

  auto plain = ParseConfig(doc("", ""));
  REQUIRE(plain.ok());
  CHECK(plain->target_groups[0].proxy_protocol == ProxyProtocol::kNone);
  CHECK(plain->listeners[0].proxy_protocol_from.empty());
  auto null = ParseConfig(doc(R"(, "proxyProtocol": null)", R"(, "proxyProtocolFrom": null)"));
  REQUIRE(null.ok());
  CHECK(null->target_groups[0].proxy_protocol == ProxyProtocol::kNone);

  auto v1 = ParseConfig(doc(R"(, "proxyProtocol": "v1")", ""));
  REQUIRE(v1.ok());
  CHECK(v1->target_groups[0].proxy_protocol == ProxyProtocol::kV1);
  auto v2 = ParseConfig(doc(R"(, "proxyProtocol": "v2")", ""));
  REQUIRE(v2.ok());
  CHECK(v2->target_groups[0].proxy_protocol == ProxyProtocol::kV2);

  CHECK(refusal(doc(R"(, "proxyProtocol": "v1")", "", "HTTP", "HTTP")) ==
        "targetGroups[0].proxyProtocol: only TCP target groups send the PROXY protocol (HTTP targets get "
        "X-Forwarded-For)");
  CHECK(refusal(doc(R"(, "proxyProtocol": "v3")", "")) ==
        "targetGroups[0].proxyProtocol: must be \"v1\" or \"v2\", "
        "not \"v3\"");
  CHECK(refusal(doc(R"(, "proxyProtocol": 1)", "")) ==
        "targetGroups[0].proxyProtocol: must be \"v1\" or \"v2\", "
        "not a number");

  auto from = ParseConfig(
      doc("", R"(, "proxyProtocolFrom": ["10.0.0.0/8", "192.168.1.7", "::1/128", "fd00::/8"])", "HTTP", "HTTP"));
  REQUIRE(from.ok());
  const auto& blocks = from->listeners[0].proxy_protocol_from;
  REQUIRE(blocks.size() == 4);
  CHECK(blocks[1].ToString() == "192.168.1.7/32");
  CHECK(blocks[3].ToString() == "fd00::/8");

  CHECK(refusal(doc("", R"(, "proxyProtocolFrom": ["10.0.0.0/8", "10.0.0.0/33"])")) ==
        "listeners[0].proxyProtocolFrom[1]: \"10.0.0.0/33\": the prefix must be 0 to 32 bits");
  CHECK(refusal(doc("", R"(, "proxyProtocolFrom": ["lb.example.com"])")) ==
        "listeners[0].proxyProtocolFrom[0]: must be an IPv4 or IPv6 address or CIDR block, not \"lb.example.com\"");
  CHECK(refusal(doc("", R"(, "proxyProtocolFrom": [7])")) ==
        "listeners[0].proxyProtocolFrom[0]: must be a string, "
        "not a number");
  CHECK(refusal(doc("", R"(, "proxyProtocolFrom": "10.0.0.0/8")"))
            .rfind("listeners[0].proxyProtocolFrom: must be an "
                   "array",
                   0) == 0);
  std::string many = R"(, "proxyProtocolFrom": [)";
  for (int i = 0; i < 51; i++) many += std::string(i ? ", " : "") + "\"10.0.0." + std::to_string(i) + "\"";
  CHECK(refusal(doc("", many + "]")) == "listeners[0].proxyProtocolFrom: at most 50 entries, not 51");
}
