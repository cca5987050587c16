# ciphercast — `make run-server` and `make run-client` are the whole set-up.
#
# Every target that builds depends on `deps`, which installs the system
# packages the `opencv` crate needs (OpenCV headers, clang and libclang for
# its binding generator) when, and only when, they are missing.

CARGO  ?= cargo
BIND   ?= 127.0.0.1
PORT   ?= 8005
VIDEOS ?= videos
SERVER ?= 127.0.0.1:8005
NAME   ?=
DISPLAY_MODE ?= auto
FROM   ?=
FORCE  ?=

# Everything runs the release build, and `make test` builds that same one,
# so `make test` then `make run-server` compiles nothing twice. Why not the
# debug build: a class-sized session on one 2-core machine (30 clients, 5 of
# them playing in the terminal player) ran at 12 fps debug against 16 fps
# release (docs/BENCHMARKS.md, "Debug or release"). A quick edit-and-test
# loop is still `cargo test` (debug: seconds to rebuild, not a minute).
BIN := target/release/ciphercast

# Debian/Ubuntu packages: OpenCV, clang + libclang (opencv's binding
# generator), pkg-config (how the opencv crate finds OpenCV); Xvfb and
# x11-utils (xwininfo) and xdotool for the tests that open a real video
# window and press its keys; tmux for `make demo`; tshark for the Wireshark
# dissector's test.
APT_PACKAGES := libopencv-dev clang libclang-dev pkg-config xvfb x11-utils xdotool tmux tshark chromium
BREW_PACKAGES := opencv llvm pkg-config tmux wireshark
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

VIDEO_FILES = $(shell ls $(VIDEOS) 2>/dev/null | grep -iE '\.(mp4|m4v|avi|mkv|mov|webm|mpg)$$')

FUZZ_SECONDS ?= 300

.PHONY: deps build install test videos ensure-videos run-server run-client fuzz demo demo-script bench

deps:
	@command -v cargo >/dev/null 2>&1 || { echo "make deps: Rust is not installed; install it with rustup, version 1.89 or newer"; exit 1; }
	@rustc --version | awk '{ split($$2, v, "."); if (v[1] == 1 && v[2] < 89) { print "make deps: " $$0 " is too old; ciphercast needs Rust 1.89 or newer (rustup update)"; exit 1 } }'
	@if command -v rustup >/dev/null 2>&1 && ! (cargo fmt --version && cargo clippy --version) >/dev/null 2>&1; then \
	  rustup component add rustfmt clippy; \
	fi
	@if [ "$$(uname)" = Darwin ]; then \
	  for p in $(BREW_PACKAGES); do brew list --versions $$p >/dev/null 2>&1 || brew install $$p; done; \
	elif command -v dpkg-query >/dev/null 2>&1; then \
	  missing=""; \
	  for p in $(APT_PACKAGES); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	  done; \
	  if [ -n "$$missing" ]; then \
	    echo "make deps: installing$$missing"; \
	    if [ -n "$(SUDO)" ] && ! command -v sudo >/dev/null 2>&1; then \
	      echo "make deps: run as root, or install sudo, to install:$$missing"; exit 1; \
	    fi; \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	  fi; \
	else \
	  echo "make deps: not Debian, Ubuntu or macOS; install OpenCV (dev), clang and libclang yourself"; \
	fi

build: deps
	$(CARGO) build --release

# `ciphercast` on the PATH: a release build copied into ~/.cargo/bin.
install: deps
	$(CARGO) install --path . --locked

test: deps
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test --release

# Video_1 and Video_2 at 240p, 720p and 1440p, 10 s each (about 20 s to make).
# FROM=FILE (or FROM="a.mp4 b.avi"): instead, the 240p, 720p and 1440p
# ladder of your own file(s); FORCE=1 replaces files made before.
videos: build
	$(BIN) videos --out $(VIDEOS) $(if $(FROM),--from $(FROM) $(if $(FORCE),--force))

run-server: build ensure-videos
	$(BIN) server --bind $(BIND) --port $(PORT) --videos $(VIDEOS) $(if $(WEB),--web $(WEB))

ensure-videos: build
	@if [ -z "$(VIDEO_FILES)" ]; then echo "No videos in $(VIDEOS)/: generating the demo videos"; $(BIN) videos --out $(VIDEOS); fi

# Release build; the table is printed and results go to target/bench/results.json.
bench: build
	$(BIN) bench

# tmux, four panes: the server and alice, bob and carol already joined.
demo: build ensure-videos
	BIN=$(BIN) PORT=$(PORT) VIDEOS=$(VIDEOS) tools/demo.sh

# The whole story without a person, narrated step by step (also part of `make test`).
demo-script: deps
	$(CARGO) test --release --test demo_script -- --nocapture

run-client: build
	$(BIN) client --server $(SERVER) --display $(DISPLAY_MODE) $(if $(NAME),--name "$(NAME)") $(if $(PLAN),--plan $(PLAN)) $(if $(MAX_KBPS),--max-kbps $(MAX_KBPS))

# Coverage-guided fuzzing of every decoder (fuzz/), seeded with tests/corpus/.
# `-s none` needs no sanitizer runtime; RUSTC_BOOTSTRAP lets cargo-fuzz's
# flags through on a stable toolchain. A crash leaves its input in
# fuzz/artifacts/: copy it to tests/corpus/ so `make test` replays it forever.
fuzz: deps
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	mkdir -p fuzz/corpus/decoders
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run decoders corpus/decoders ../tests/corpus -s none -- -max_total_time=$(FUZZ_SECONDS)
