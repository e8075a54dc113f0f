// Reading Prometheus text as the proxy renders it (Proxy::RenderMetrics).
#pragma once

#include <string>

namespace berth::testing {

// The value of the sample `series` (name and labels, as rendered) in `text`; -1 when absent.
inline double MetricValue(const std::string& text, const std::string& series) {
  size_t at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + series.size() + 2));
}

}  // namespace berth::testing
