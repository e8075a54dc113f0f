// base/metrics: counters, gauges and histograms in the Prometheus text format.
#include "base/metrics.h"

#include <catch2/catch.hpp>

using namespace berth;

TEST_CASE("metrics: counters and gauges render with HELP and TYPE", "[base][metrics]") {
  metrics::Registry reg;
  auto* requests = reg.Counters("berth_requests_total", "Requests answered", {"route", "status"});
  requests->With({"/v1/clusters", "200"})->Inc();
  requests->With({"/v1/clusters", "200"})->Inc(2);
  requests->With({"/v1/clusters", "404"})->Inc();
  reg.Gauges("berth_open", "Open things")->With({})->Set(7);

  CHECK(reg.Render() ==
        "# HELP berth_requests_total Requests answered\n"
        "# TYPE berth_requests_total counter\n"
        "berth_requests_total{route=\"/v1/clusters\",status=\"200\"} 3\n"
        "berth_requests_total{route=\"/v1/clusters\",status=\"404\"} 1\n"
        "# HELP berth_open Open things\n"
        "# TYPE berth_open gauge\n"
        "berth_open 7\n");
}

TEST_CASE("metrics: the same label values give the same series", "[base][metrics]") {
  metrics::Registry reg;
  auto* f = reg.Counters("c_total", "c", {"a"});
  CHECK(f->With({"x"}) == f->With({"x"}));
  CHECK(f->With({"x"}) != f->With({"y"}));
}

TEST_CASE("metrics: label values are escaped", "[base][metrics]") {
  metrics::Registry reg;
  reg.Counters("c_total", "c", {"path"})->With({"a\"b\\c\nd"})->Inc();
  CHECK_THAT(reg.Render(), Catch::Contains("c_total{path=\"a\\\"b\\\\c\\nd\"} 1\n"));
}

TEST_CASE("metrics: gauges keep fractions", "[base][metrics]") {
  metrics::Registry reg;
  reg.Gauges("lag_seconds", "lag")->With({})->Set(0.25);
  CHECK_THAT(reg.Render(), Catch::Contains("lag_seconds 0.25\n"));
}

TEST_CASE("metrics: histogram buckets are cumulative and end at +Inf", "[base][metrics]") {
  metrics::Registry reg;
  auto* h = reg.Histograms("batch_size", "Commands per batch", {1, 2, 4}, {"db"})->With({"main"});
  for (double v : {1.0, 1.0, 2.0, 3.0, 100.0}) h->Observe(v);
  CHECK(h->Count() == 5);
  CHECK(h->Sum() == 107);
  CHECK(h->BucketCount(0) == 2);  // per bucket, not cumulative
  CHECK(h->BucketCount(2) == 1);
  CHECK(h->BucketCount(3) == 1);

  CHECK(reg.Render() ==
        "# HELP batch_size Commands per batch\n"
        "# TYPE batch_size histogram\n"
        "batch_size_bucket{db=\"main\",le=\"1\"} 2\n"
        "batch_size_bucket{db=\"main\",le=\"2\"} 3\n"
        "batch_size_bucket{db=\"main\",le=\"4\"} 4\n"
        "batch_size_bucket{db=\"main\",le=\"+Inf\"} 5\n"
        "batch_size_sum{db=\"main\"} 107\n"
        "batch_size_count{db=\"main\"} 5\n");
}

TEST_CASE("metrics: an unlabelled histogram with fractional bounds", "[base][metrics]") {
  metrics::Registry reg;
  auto* h = reg.Histograms("latency_seconds", "Latency", {0.001, 0.25})->With({});
  h->Observe(0.0005);
  h->Observe(0.5);
  std::string text = reg.Render();
  CHECK_THAT(text, Catch::Contains("latency_seconds_bucket{le=\"0.001\"} 1\n"));
  CHECK_THAT(text, Catch::Contains("latency_seconds_bucket{le=\"0.25\"} 1\n"));
  CHECK_THAT(text, Catch::Contains("latency_seconds_bucket{le=\"+Inf\"} 2\n"));
  CHECK_THAT(text, Catch::Contains("latency_seconds_sum 0.5005\n"));
  CHECK_THAT(text, Catch::Contains("latency_seconds_count 2\n"));
}

TEST_CASE("metrics: latency buckets ascend from 50us to 10s", "[base][metrics]") {
  std::vector<double> b = metrics::LatencyBuckets();
  REQUIRE(b.size() >= 2);
  CHECK(b.front() == 0.00005);
  CHECK(b.back() == 10);
  CHECK(std::is_sorted(b.begin(), b.end()));
}
