# weft - the two commands a newcomer needs are `make demo` and `make test`.
# This file only drives CMake; the build itself is in CMakeLists.txt.
BUILD      ?= build
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_ARGS ?=

.PHONY: all build demo test test-asan test-tsan test-ucontext test-backends check-arm64 fuzz bench clean format

all: build

build:
	@scripts/deps.sh build
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWEFT_BUILD_TESTS=OFF $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

demo:
	@scripts/deps.sh build
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWEFT_BUILD_TESTS=OFF $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) --target demo
	@$(BUILD)/examples/demo

# The whole suite; ends with ctest's summary line.  A test that fails runs
# once more: on a shared VM a process can lose the CPU for a few hundred
# milliseconds and miss a timing bound.  The failed attempt stays in the log.
test:
	@scripts/deps.sh test
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWEFT_BUILD_TESTS=ON $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)
	@cd $(BUILD) && ctest --output-on-failure --repeat until-pass:2

# The suite under AddressSanitizer and UndefinedBehaviorSanitizer.
test-asan:
	@$(MAKE) --no-print-directory test BUILD=build-asan \
	    CMAKE_ARGS="-DWEFT_SANITIZE=address,undefined -DWEFT_BUILD_BENCH=OFF"

# The suite on the backends `make test` does not choose ($WEFT_BACKEND),
# then on io_uring, whose kernel writes into buffers, under ASan+UBSan and
# (the threaded tests) TSan.  Needs the builds of test, test-asan, test-tsan.
test-backends:
	@for b in io_uring poll; do \
	    echo "== WEFT_BACKEND=$$b"; \
	    (cd $(BUILD) && WEFT_BACKEND=$$b ctest -j2 --output-on-failure --repeat until-pass:2) || exit 1; \
	done
	@echo "== WEFT_BACKEND=io_uring, ASan+UBSan"
	@cd build-asan && WEFT_BACKEND=io_uring ctest -j2 --output-on-failure --repeat until-pass:2
	@echo "== WEFT_BACKEND=io_uring, TSan"
	@cd build-tsan && WEFT_BACKEND=io_uring ctest --output-on-failure --repeat until-pass:2 -L threads

# The threaded tests under ThreadSanitizer.
test-tsan:
	@scripts/deps.sh test
	@cmake -S . -B build-tsan -DWEFT_BUILD_TESTS=ON -DWEFT_SANITIZE=thread -DWEFT_BUILD_BENCH=OFF -DWEFT_BUILD_EXAMPLES=OFF >/dev/null
	@cmake --build build-tsan -j $(JOBS)
	@cd build-tsan && ctest --output-on-failure --repeat until-pass:2 -L threads

# The suite with the ucontext fallback instead of the assembly switch.
test-ucontext:
	@$(MAKE) --no-print-directory test BUILD=build-ucontext \
	    CMAKE_ARGS="-DWEFT_UCONTEXT=ON -DWEFT_BUILD_BENCH=OFF"

# The AArch64 switch, cross-compiled and run under qemu-user.
check-arm64:
	@scripts/deps.sh arm64
	@cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
	    -DWEFT_BUILD_TESTS=OFF -DWEFT_BUILD_EXAMPLES=OFF -DWEFT_BUILD_BENCH=OFF \
	    -DWEFT_WITH_TLS=OFF -DWEFT_WITH_ARES=OFF -DWEFT_WITH_URING=OFF >/dev/null
	@cmake --build build-arm64 -j $(JOBS) --target weft_static
	@aarch64-linux-gnu-gcc -O2 -Iinclude tests/check_switch.c build-arm64/libweft.a \
	    -lpthread -lm -o build-arm64/check_switch
	@qemu-aarch64 -L /usr/aarch64-linux-gnu build-arm64/check_switch

# The libFuzzer targets of fuzz/ built with clang under ASan+UBSan in
# build-fuzz, each run on its seed corpus for FUZZ_SECONDS (10) seconds;
# any crash, leak or sanitizer report fails.  See fuzz/run.sh.
fuzz:
	@scripts/deps.sh fuzz
	@FUZZ_BUILD=build-fuzz FUZZ_JOBS=$(JOBS) fuzz/run.sh

bench:
	@scripts/deps.sh bench
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWEFT_BUILD_TESTS=OFF $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)
	@bench/run.sh $(BUILD)

format:
	@clang-format -i include/*.h include/weft/*.h src/*.h src/*/*.c tests/*.c tests/*.h examples/*.c bench/*.c

clean:
	rm -rf build build-asan build-tsan build-ucontext build-arm64 build-fuzz
