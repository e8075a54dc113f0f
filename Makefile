# Berth — build, test and run. `make help` lists the targets.
#
# Every target that builds first makes sure the Debian packages it needs are
# installed (third_party/deps.sh is quick when nothing is missing).

BUILD   ?= build
RELEASE := $(BUILD)/release
ASAN    := $(BUILD)/asan
TSAN    := $(BUILD)/tsan
FUZZ    := $(BUILD)/fuzz
JOBS    ?= $(shell nproc)
DATA    ?= ./berth-data
LISTEN  ?= 0.0.0.0:7070

.PHONY: all build deps test unit integration browser asan tsan format-check fuzz-regress fuzz run bench clean format tidy help deb

all: build

help:
	@echo "make deps      install build and test dependencies (Debian packages; root)"
	@echo "make           build build/berth (release, static, stripped)"
	@echo "make run       build, start Docker if needed, then run the all-in-one server (with its local"
	@echo "               agent) on $(LISTEN) with data in $(DATA)"
	@echo "make test      the whole suite: format check, unit, integration, browser (the dashboard in headless chromium),"
	@echo "               unit under ASan+UBSan and under TSan, fuzz corpus"
	@echo "make browser   the dashboard's tests in headless chromium (tests/browser; screenshots in tests/browser/out/)"
	@echo "make fuzz      run the libFuzzer harnesses for a while (FUZZ_SECONDS=60)"
	@echo "make bench     run the benchmarks in bench/ (slow; never part of make test)"
	@echo "make deb       build, then package build/berth_<version>_amd64.deb (binary, systemd units, docs)"
	@echo "make format    clang-format every source file (make format-check: check only)"
	@echo "make tidy      clang-tidy over src/"

deps:
	@./third_party/deps.sh

build: deps
	@cmake -S . -B $(RELEASE) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(RELEASE) -j$(JOBS)
	@cp $(RELEASE)/src/berth $(BUILD)/berth
	@printf 'build/berth: %s bytes, %s\n' "$$(stat -c %s $(BUILD)/berth)" "$$(file -b $(BUILD)/berth | grep -o 'statically linked.*')"

run: build
	@./packaging/ensure-docker.sh || echo "make run: no Docker engine answers; the server runs without its local agent"
	@echo "make run: the dashboard is at https://127.0.0.1:$(lastword $(subst :, ,$(LISTEN)))/ui/"
	@exec $(BUILD)/berth server --data $(DATA) --listen $(LISTEN)

# The Debian package (packaging/deb.sh): dpkg -i it, then systemctl enable --now berth-server.
deb: build
	@packaging/deb.sh $(BUILD)/berth $(BUILD)

unit: build
	@$(RELEASE)/tests/unit/berth_unit_tests

integration: build
	@python3 tests/integration/run.py --binary $(BUILD)/berth

# The dashboard in Debian's chromium, driven by playwright-core (setup.sh installs
# chromium, node and the pinned npm package when missing).
browser: build
	@tests/browser/setup.sh && tests/browser/run.sh $(BUILD)/berth

asan: deps
	@cmake -S . -B $(ASAN) -DCMAKE_BUILD_TYPE=Debug -DBERTH_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN) -j$(JOBS) --target berth_unit_tests
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		$(ASAN)/tests/unit/berth_unit_tests

# The unit tests under ThreadSanitizer: the threads berth runs besides the loop
# (the socket write thread, the WAL checkpointer, libuv's pool for file work).
tsan: deps
	@cmake -S . -B $(TSAN) -DCMAKE_BUILD_TYPE=Debug -DBERTH_TSAN=ON >/dev/null
	@cmake --build $(TSAN) -j$(JOBS) --target berth_unit_tests
	@TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$(CURDIR)/tests/unit/tsan.supp $(TSAN)/tests/unit/berth_unit_tests

$(FUZZ)/.configured: CMakeLists.txt tests/fuzz/CMakeLists.txt
	@cmake -S . -B $(FUZZ) -DCMAKE_BUILD_TYPE=Debug -DBERTH_FUZZ=ON \
		-DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ >/dev/null
	@touch $@

fuzz-regress: deps $(FUZZ)/.configured
	@cmake --build $(FUZZ) -j$(JOBS)
	@tests/fuzz/run.sh $(FUZZ) regress

fuzz: deps $(FUZZ)/.configured
	@cmake --build $(FUZZ) -j$(JOBS)
	@tests/fuzz/run.sh $(FUZZ) explore $${FUZZ_SECONDS:-60}

# The whole suite. Each part prints its own report; the last line counts suites.
test: build
	@tests/run-all.sh "$(MAKE)"

bench: build
	@for b in bench/*.sh; do echo "== $$b"; $$b || exit 1; done

format:
	@clang-format-14 -i $$(git ls-files '*.cc' '*.h')

# Every source file as `make format` would leave it (.clang-format).
format-check: deps
	@clang-format-14 --dry-run --Werror $$(git ls-files '*.cc' '*.h') && echo "format-check: $$(git ls-files '*.cc' '*.h' | wc -l) files formatted"

tidy:
	@cmake -S . -B $(RELEASE) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@clang-tidy -p $(RELEASE) --quiet $$(git ls-files 'src/*.cc')

clean:
	rm -rf $(BUILD)
