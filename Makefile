# The two commands of the README:
#   make run    install what is missing, build a release build, start the agent
#   make test   install what is missing (test clients too), build, run every test
# Other targets: build, build-asan, test-asan, test-tsan, fuzz, format, format-check, clean.

PRESET ?= dev
JOBS   ?= $(shell nproc)
ARGS   ?=

.PHONY: run test deps deps-test build build-release build-asan test-asan test-tsan fuzz format format-check clean

deps:
	@scripts/install-deps.sh

deps-test:
	@scripts/install-deps.sh --test

build-release: deps
	cmake --preset release >/dev/null
	cmake --build --preset release -j $(JOBS) --target wsagent

run: build-release
	./build/release/src/app/wsagent serve $(ARGS)

build: deps-test
	cmake --preset $(PRESET) >/dev/null
	cmake --build --preset $(PRESET) -j $(JOBS)

test: build
	ctest --preset $(PRESET) -j 2 $(ARGS)

build-asan:
	$(MAKE) build PRESET=asan

test-asan:
	$(MAKE) test PRESET=asan

# ThreadSanitizer (GCC, -Wno-tsan for Asio's fences): every test, the takeover storm included.
test-tsan:
	$(MAKE) test PRESET=tsan

# libFuzzer targets for the frame reader and the native parser, FUZZ_SECONDS each (20).
fuzz: deps-test
	cmake --preset fuzz >/dev/null
	cmake --build --preset fuzz -j $(JOBS)
	ctest --preset fuzz

format:
	find src tests tools bench -name '*.cpp' -o -name '*.hpp' | xargs clang-format -i

format-check:
	find src tests tools bench -name '*.cpp' -o -name '*.hpp' | xargs clang-format --dry-run -Werror

clean:
	rm -rf build
