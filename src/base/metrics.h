// Prometheus metrics: counters, gauges and histograms in labelled families, and
// the text exposition format. Used from the loop thread; values are atomics so a
// read from another thread is safe but nothing else is.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace berth::metrics {

class Counter {
 public:
  void Inc(uint64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t Value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

class Gauge {
 public:
  void Set(double v) { v_.store(v, std::memory_order_relaxed); }
  double Value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> v_{0};
};

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v);
  const std::vector<double>& bounds() const { return bounds_; }
  uint64_t BucketCount(size_t i) const { return counts_[i].load(std::memory_order_relaxed); }  // not cumulative
  uint64_t Count() const { return count_.load(std::memory_order_relaxed); }
  double Sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_.size() + 1 (the +Inf bucket)
  std::atomic<uint64_t> count_{0};
  std::atomic<double> sum_{0};
};

enum class Type { kCounter, kGauge, kHistogram };

// A metric name with a fixed list of label names; series are made on first use.
template <class T>
class Family {
 public:
  Family(Type type, std::string name, std::string help, std::vector<std::string> labels,
         std::vector<double> bounds = {})
      : type_(type),
        name_(std::move(name)),
        help_(std::move(help)),
        labels_(std::move(labels)),
        bounds_(std::move(bounds)) {}

  // The series for these label values (in the family's label order).
  T* With(std::initializer_list<std::string_view> values);
  void Render(std::string* out) const;

 private:
  Type type_;
  std::string name_, help_;
  std::vector<std::string> labels_;
  std::vector<double> bounds_;
  std::map<std::string, std::unique_ptr<T>> series_;  // key: rendered label set
};

class Registry {
 public:
  Family<Counter>* Counters(std::string name, std::string help, std::vector<std::string> labels = {});
  Family<Gauge>* Gauges(std::string name, std::string help, std::vector<std::string> labels = {});
  Family<Histogram>* Histograms(std::string name, std::string help, std::vector<double> bounds,
                                std::vector<std::string> labels = {});
  // The whole registry in Prometheus text format 0.0.4.
  std::string Render() const;

 private:
  std::vector<std::unique_ptr<Family<Counter>>> counters_;
  std::vector<std::unique_ptr<Family<Gauge>>> gauges_;
  std::vector<std::unique_ptr<Family<Histogram>>> histograms_;
};

// Bucket bounds in seconds from 50 µs to 10 s, for latencies.
std::vector<double> LatencyBuckets();

}  // namespace berth::metrics
