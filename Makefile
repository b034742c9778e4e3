# ronghe: the two commands on a fresh Debian 12 machine (as root, or with sudo):
#   make demo   set-up, build, fetch data, run the 5-bank federated fraud consortium (fed demo)
#   make test   set-up, build, fetch data, run the whole test suite
#   make bench  set-up, build, fetch data, run the benchmarks and rewrite docs/benchmarks.md
#   make lint   clang-format check and clang's thread-safety analysis (scripts/lint.sh)
# Variables: BUILD (build folder, default build), CTEST_ARGS (e.g. -LE slow to skip slow tests,
# -LE browser to skip the headless-Chromium tests).

BUILD ?= build
# One state folder for the fetch script and the tests, absolute even where HOME is unset.
export RONGHE_HOME ?= $(if $(HOME),$(HOME)/.ronghe,$(CURDIR)/.ronghe)
CTEST_ARGS ?=
GENERATOR := $(shell command -v ninja >/dev/null 2>&1 && echo "-G Ninja")

.PHONY: all setup data build demo test bench lint clean

all: build

setup:
	@scripts/setup.sh

data: setup
	@scripts/fetch-data.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(GENERATOR) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: setup $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $$(nproc)

demo: build data
	@scripts/demo.sh $(BUILD)

# The suite's browser tests render pages in headless Chromium: installed here, not for the demo.
test: build data
	@scripts/setup.sh browser
	cd $(BUILD) && ctest --output-on-failure $(CTEST_ARGS)

# The generated protocol headers are all lint needs from the build: no full build first.
lint: setup $(BUILD)/CMakeCache.txt
	@scripts/setup.sh lint
	cmake --build $(BUILD) --target ronghe_fed_proto ronghe_serve_proto -j $$(nproc)
	scripts/lint.sh $(BUILD)

bench: build data
	bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD)
