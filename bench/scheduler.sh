#!/usr/bin/env bash
# The placement engine alone, in process (no server, no I/O): the time of one
# placement, Place(request, 1), in clusters of 100, 1,000 and 10,000 nodes
# (4096 CPU units, 8192 MiB each, three zones) pre-filled to 90% of CPU and memory
# with tasks of many services, for 1,000 placements of small mixed shapes with the
# ECS service default strategy (spread attribute:zone, then spread instanceId) and
# a memberOf constraint. Prints median and p90 per size, then binpack(memory) and
# a many-services run for information. Driver: bench/scheduler_bench.cc.
#
# Measures only; never fails on a timing. Exits non-zero if something broke.
# Last line: flatness=<median at 10000 / median at 100> placements_per_s=<1e6 / median at 10000>
#            (targets: flatness <= 1.5, placements_per_s >= 100000)
#
#   bench/scheduler.sh                   # builds berth_sched_bench in build/release or build/bench
#   BUILD=build-x bench/scheduler.sh     # the same under build-x
#   bench/scheduler.sh --services=20     # driver flags pass through

source "$(dirname "$0")/common.bash"

# The release tree of `make build` ($BUILD/release) when there is one (only the
# driver is left to compile), else a Release tree of its own in $BUILD/bench.
BUILD=${BUILD:-build}
if [ -f "$BUILD/release/CMakeCache.txt" ]; then BENCH_BUILD=$BUILD/release; else BENCH_BUILD=$BUILD/bench; fi
echo "bench: building berth_sched_bench in $BENCH_BUILD" >&2
if [ ! -f "$BENCH_BUILD/CMakeCache.txt" ]; then
  cmake -S . -B "$BENCH_BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null || die "cmake configure failed"
fi
cmake --build "$BENCH_BUILD" -j"$(nproc)" --target berth_sched_bench >&2 || die "building berth_sched_bench failed"

machine_note
"$BENCH_BUILD/bench/berth_sched_bench" "$@" || die "berth_sched_bench failed"
