// Fuzzes the PROXY protocol header parser (proxy::ParseProxyHeader), which
// reads the first bytes of every connection from a peer a listener's
// proxyProtocolFrom trusts, and the CIDR blocks of that list (proxy::ParseCidr).
//
// Invariants checked besides the sanitizers: a header is never longer than the
// protocol allows (107 bytes for v1, 16 + 536 for v2) nor than the bytes given;
// every shorter prefix of a whole header needs more, and the header alone
// parses to the same result (incremental feeding agrees with one read); more
// bytes never turn a refusal into anything else; a refusal says why; the
// addresses a header carries, written again as v1 and as v2, parse back to
// themselves; a CIDR block contains its own base and its text parses back to it.
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_common.h"
#include "proxy/proxy_protocol.h"

using namespace berth;
using proxy::ProxyHeader;

namespace {

bool SameEnds(const proxy::ProxyAddresses& a, const proxy::ProxyAddresses& b) {
  return a.source.ip.Unmapped() == b.source.ip.Unmapped() && a.source.port == b.source.port &&
         a.destination.ip.Unmapped() == b.destination.ip.Unmapped() && a.destination.port == b.destination.port;
}

void RoundTrip(const proxy::ProxyAddresses& a) {
  for (const std::string& bytes : {proxy::EncodeProxyV1(a), proxy::EncodeProxyV2(a)}) {
    ProxyHeader again = proxy::ParseProxyHeader(bytes);
    if (again.status != ProxyHeader::Status::kDone || again.length != bytes.size() || !again.addresses ||
        !SameEnds(*again.addresses, a)) {
      fuzz::Fail("a header written from parsed addresses does not parse back", bytes);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) { return fuzz::QuietLogs(); }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  ProxyHeader h = proxy::ParseProxyHeader(bytes);
  switch (h.status) {
    case ProxyHeader::Status::kNeedMore:
      if (size >= 16 + proxy::kMaxProxyV2Payload) fuzz::Fail("needs more past every bound", bytes.substr(0, 64));
      break;
    case ProxyHeader::Status::kInvalid: {
      if (h.error.empty()) fuzz::Fail("a refusal without a reason", bytes.substr(0, 64));
      std::string longer(bytes);
      longer.append("\r\n\r\n");
      if (proxy::ParseProxyHeader(longer).status != ProxyHeader::Status::kInvalid)
        fuzz::Fail("more bytes took back a refusal", bytes.substr(0, 64));
      break;
    }
    case ProxyHeader::Status::kDone: {
      bool v1 = bytes[0] == 'P';
      if (h.length > size || h.length > (v1 ? proxy::kMaxProxyV1Bytes : 16 + proxy::kMaxProxyV2Payload))
        fuzz::Fail("a header longer than allowed or given", bytes.substr(0, 64));
      ProxyHeader alone = proxy::ParseProxyHeader(bytes.substr(0, h.length));
      if (alone.status != ProxyHeader::Status::kDone || alone.length != h.length ||
          alone.addresses.has_value() != h.addresses.has_value() ||
          (h.addresses && !SameEnds(*alone.addresses, *h.addresses))) {
        fuzz::Fail("the header alone parses otherwise", bytes.substr(0, h.length));
      }
      for (size_t n = 0; n < h.length; n++) {
        if (proxy::ParseProxyHeader(bytes.substr(0, n)).status != ProxyHeader::Status::kNeedMore)
          fuzz::Fail("a prefix of a whole header did not need more", bytes.substr(0, n));
      }
      if (h.addresses) RoundTrip(*h.addresses);
      break;
    }
  }

  // The first line as a CIDR block.
  std::string_view line = bytes.substr(0, bytes.find('\n'));
  auto cidr = proxy::ParseCidr(line);
  if (cidr.ok()) {
    if (!cidr->Contains(cidr->base)) fuzz::Fail("a block without its base", line);
    auto again = proxy::ParseCidr(cidr->ToString());
    if (!again.ok() || !(again->base == cidr->base) || again->prefix_bits != cidr->prefix_bits)
      fuzz::Fail("a block's text does not parse back", cidr->ToString());
  } else if (cidr.error().message.empty()) {
    fuzz::Fail("a CIDR refusal without a reason", line);
  }
  return 0;
}
