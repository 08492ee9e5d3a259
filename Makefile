# coho's front door: every target forwards to CMake (CMakeLists.txt is the build). Targets
# that need Debian packages first run tools/deps.sh, which installs whatever is missing.
#
#   make            release build (build/)
#   make run        the load test: sock_svr + sock_client for 30 s in build/ (README.md "Load
#                   test"); flags via RUN_ARGS, e.g. make run RUN_ARGS="--duration-s 10"
#   make test       build + every ctest case
#   make sanitize   ASan+UBSan build (build-asan/) + every ctest case
#   make bench      benchmarks (build-bench/), results to compare with bench/RESULTS.md
#   make fuzz       libFuzzer targets with clang (build-fuzz/), a short run of each
#   make tsan       ThreadSanitizer build + tests (documented, not part of CI)
#   make valgrind   tests under valgrind memcheck (documented, not part of CI)
#   make format     rewrite sources with clang-format;  make format-check  checks only

JOBS     ?= $(shell nproc 2>/dev/null || echo 2)
WERROR   ?= ON
CTEST_ARGS ?=
RUN_ARGS ?=
CMAKE    := cmake
SOURCES   = $(shell git ls-files -co --exclude-standard -- '*.c' '*.h' '*.cc' '*.cpp' '*.hpp' 2>/dev/null)

.PHONY: all build deps deps-test deps-bench run test sanitize bench fuzz tsan valgrind format format-check clean

all: build

deps:
	@tools/deps.sh base
deps-test:
	@tools/deps.sh test
deps-bench:
	@tools/deps.sh bench

build: deps
	@$(CMAKE) -S . -B build -DCMAKE_BUILD_TYPE=Release -DCOHO_WERROR=$(WERROR) >/dev/null
	@$(CMAKE) --build build -j $(JOBS)

run: build
	@tools/run-main.sh build $(RUN_ARGS)

test: deps-test
	@$(CMAKE) -S . -B build -DCMAKE_BUILD_TYPE=Release -DCOHO_WERROR=$(WERROR) >/dev/null
	@$(CMAKE) --build build -j $(JOBS)
	cd build && ctest -j $(JOBS) --output-on-failure --timeout 300 $(CTEST_ARGS)

sanitize: deps-test
	@$(CMAKE) -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCOHO_WERROR=$(WERROR) \
	    -DCOHO_SANITIZE=address,undefined >/dev/null
	@$(CMAKE) --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    ctest -j $(JOBS) --output-on-failure --timeout 600 $(CTEST_ARGS)

tsan: deps-test
	@$(CMAKE) -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DCOHO_WERROR=$(WERROR) \
	    -DCOHO_SANITIZE=thread >/dev/null
	@$(CMAKE) --build build-tsan -j $(JOBS)
	cd build-tsan && ctest -j $(JOBS) --output-on-failure --timeout 900 $(CTEST_ARGS)

valgrind: deps-bench
	@$(CMAKE) -S . -B build-valgrind -DCMAKE_BUILD_TYPE=Debug -DCOHO_WERROR=$(WERROR) \
	    -DCOHO_VALGRIND=ON >/dev/null
	@$(CMAKE) --build build-valgrind -j $(JOBS)
	cd build-valgrind && ctest -j $(JOBS) --output-on-failure --timeout 1800 -L unit \
	    -T memcheck $(CTEST_ARGS)

bench: deps-bench
	@$(CMAKE) -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DCOHO_WERROR=$(WERROR) \
	    -DCOHO_BUILD_BENCH=ON -DCOHO_BUILD_TESTS=OFF >/dev/null
	@$(CMAKE) --build build-bench -j $(JOBS)
	@tools/run-bench.sh build-bench

fuzz: deps-test
	@CC=clang CXX=clang++ $(CMAKE) -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    -DCOHO_WERROR=$(WERROR) -DCOHO_BUILD_FUZZ=ON -DCOHO_BUILD_TESTS=OFF \
	    -DCOHO_BUILD_EXAMPLES=OFF -DCOHO_BUILD_LOAD=OFF >/dev/null
	@$(CMAKE) --build build-fuzz -j $(JOBS)
	@tools/run-fuzz.sh build-fuzz $${FUZZ_SECONDS:-20}

format:
	clang-format -i $(SOURCES)

format-check:
	clang-format --dry-run -Werror $(SOURCES)

clean:
	rm -rf build build-asan build-tsan build-valgrind build-bench build-fuzz
