#include "base/metrics.h"

#include <cstdio>

namespace berth::metrics {

namespace {

void AppendNumber(std::string* out, double v) {
  char buf[40];
  if (v == static_cast<double>(static_cast<int64_t>(v)) && v < 1e15 && v > -1e15) {
    snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v));
  } else {
    snprintf(buf, sizeof buf, "%.9g", v);
  }
  out->append(buf);
}

void AppendLabelValue(std::string* out, std::string_view v) {
  for (char c : v) {
    if (c == '\\')
      out->append("\\\\");
    else if (c == '"')
      out->append("\\\"");
    else if (c == '\n')
      out->append("\\n");
    else
      out->push_back(c);
  }
}

const char* TypeName(Type t) {
  switch (t) {
    case Type::kCounter: return "counter";
    case Type::kGauge: return "gauge";
    case Type::kHistogram: return "histogram";
  }
  return "untyped";
}

// `labels` is the rendered label set without braces (may be empty); `extra` is one
// more label pair such as le="0.1".
void AppendSeriesName(std::string* out, std::string_view name, std::string_view suffix, std::string_view labels,
                      std::string_view extra = {}) {
  out->append(name).append(suffix);
  if (labels.empty() && extra.empty()) return;
  out->push_back('{');
  out->append(labels);
  if (!labels.empty() && !extra.empty()) out->push_back(',');
  out->append(extra);
  out->push_back('}');
}

template <class T>
T* MakeSeries(const std::vector<double>&) {
  return new T();
}
template <>
Histogram* MakeSeries<Histogram>(const std::vector<double>& bounds) {
  return new Histogram(bounds);
}

void RenderValue(std::string* out, std::string_view name, std::string_view labels, const Counter& c) {
  AppendSeriesName(out, name, "", labels);
  out->push_back(' ');
  AppendNumber(out, static_cast<double>(c.Value()));
  out->push_back('\n');
}

void RenderValue(std::string* out, std::string_view name, std::string_view labels, const Gauge& g) {
  AppendSeriesName(out, name, "", labels);
  out->push_back(' ');
  AppendNumber(out, g.Value());
  out->push_back('\n');
}

void RenderValue(std::string* out, std::string_view name, std::string_view labels, const Histogram& h) {
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= h.bounds().size(); i++) {
    cumulative += h.BucketCount(i);
    std::string le = "le=\"";
    if (i < h.bounds().size()) {
      AppendNumber(&le, h.bounds()[i]);
    } else {
      le += "+Inf";
    }
    le += "\"";
    AppendSeriesName(out, name, "_bucket", labels, le);
    out->push_back(' ');
    AppendNumber(out, static_cast<double>(cumulative));
    out->push_back('\n');
  }
  AppendSeriesName(out, name, "_sum", labels);
  out->push_back(' ');
  AppendNumber(out, h.Sum());
  out->push_back('\n');
  AppendSeriesName(out, name, "_count", labels);
  out->push_back(' ');
  AppendNumber(out, static_cast<double>(h.Count()));
  out->push_back('\n');
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); i++) counts_[i].store(0);
}

void Histogram::Observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) i++;
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  double old = sum_.load(std::memory_order_relaxed);
  while (!sum_.compare_exchange_weak(old, old + v, std::memory_order_relaxed)) {
  }
}

template <class T>
T* Family<T>::With(std::initializer_list<std::string_view> values) {
  std::string key;
  size_t i = 0;
  for (std::string_view v : values) {
    if (i >= labels_.size()) break;
    if (i > 0) key.push_back(',');
    key.append(labels_[i]).append("=\"");
    AppendLabelValue(&key, v);
    key.push_back('"');
    i++;
  }
  auto it = series_.find(key);
  if (it != series_.end()) return it->second.get();
  T* series = MakeSeries<T>(bounds_);
  series_.emplace(std::move(key), std::unique_ptr<T>(series));
  return series;
}

template <class T>
void Family<T>::Render(std::string* out) const {
  out->append("# HELP ").append(name_).append(" ").append(help_).append("\n");
  out->append("# TYPE ").append(name_).append(" ").append(TypeName(type_)).append("\n");
  for (const auto& [labels, series] : series_) RenderValue(out, name_, labels, *series);
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

Family<Counter>* Registry::Counters(std::string name, std::string help, std::vector<std::string> labels) {
  counters_.push_back(
      std::make_unique<Family<Counter>>(Type::kCounter, std::move(name), std::move(help), std::move(labels)));
  return counters_.back().get();
}

Family<Gauge>* Registry::Gauges(std::string name, std::string help, std::vector<std::string> labels) {
  gauges_.push_back(std::make_unique<Family<Gauge>>(Type::kGauge, std::move(name), std::move(help), std::move(labels)));
  return gauges_.back().get();
}

Family<Histogram>* Registry::Histograms(std::string name, std::string help, std::vector<double> bounds,
                                        std::vector<std::string> labels) {
  histograms_.push_back(std::make_unique<Family<Histogram>>(Type::kHistogram, std::move(name), std::move(help),
                                                            std::move(labels), std::move(bounds)));
  return histograms_.back().get();
}

std::string Registry::Render() const {
  std::string out;
  for (const auto& f : counters_) f->Render(&out);
  for (const auto& f : gauges_) f->Render(&out);
  for (const auto& f : histograms_) f->Render(&out);
  return out;
}

std::vector<double> LatencyBuckets() {
  return {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10};
}

}  // namespace berth::metrics
