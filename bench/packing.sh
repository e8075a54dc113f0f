#!/usr/bin/env bash
# Packing quality of the engine's binpack against offline First-Fit-Decreasing:
# per seed, a random stream of tasks (mixed small/medium/large, CPU and memory
# independent) is placed in order on 100 empty nodes with binpack(memory) and
# with binpack(cpu) until the first failure, and compared with the longest prefix
# of the same stream that FFD (size = cpu/4096 + memory/8192, first node that
# fits) packs onto the same empty nodes. Driver: bench/packing_bench.cc; the
# workload is described there and in bench/README.md.
#
# Measures only; exits non-zero only if something broke.
# Last line: binpack_vs_ffd=<mean of placed_binpack/placed_FFD over seeds and both fields>
#            memory=<mean> cpu=<mean>   (target binpack_vs_ffd >= 0.95)
#
#   bench/packing.sh            # 10 seeds
#   bench/packing.sh 30         # 30 seeds
#   BUILD=build-x bench/packing.sh

source "$(dirname "$0")/common.bash"

# The release tree of `make build` ($BUILD/release) when there is one (only the
# driver is left to compile), else a Release tree of its own in $BUILD/bench.
BUILD=${BUILD:-build}
if [ -f "$BUILD/release/CMakeCache.txt" ]; then BENCH_BUILD=$BUILD/release; else BENCH_BUILD=$BUILD/bench; fi
echo "bench: building berth_packing_bench in $BENCH_BUILD" >&2
if [ ! -f "$BENCH_BUILD/CMakeCache.txt" ]; then
  cmake -S . -B "$BENCH_BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null || die "cmake configure failed"
fi
cmake --build "$BENCH_BUILD" -j"$(nproc)" --target berth_packing_bench >&2 || die "building berth_packing_bench failed"

"$BENCH_BUILD/bench/berth_packing_bench" "$@" || die "berth_packing_bench failed"
