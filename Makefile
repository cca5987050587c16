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

BIN := target/debug/ciphercast

# Debian/Ubuntu packages: OpenCV, clang + libclang (opencv's binding
# generator), pkg-config (how the opencv crate finds OpenCV).
APT_PACKAGES := libopencv-dev clang libclang-dev pkg-config
BREW_PACKAGES := opencv llvm pkg-config
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: deps build test run-server run-client

deps:
	@if [ "$$(uname)" = Darwin ]; then \
	  for p in $(BREW_PACKAGES); do brew list --versions $$p >/dev/null 2>&1 || brew install $$p; done; \
	elif command -v dpkg-query >/dev/null 2>&1; then \
	  missing=""; \
	  for p in $(APT_PACKAGES); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	  done; \
	  if [ -n "$$missing" ]; then \
	    echo "make deps: installing$$missing"; \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	  fi; \
	else \
	  echo "make deps: not Debian, Ubuntu or macOS; install OpenCV (dev), clang and libclang yourself"; \
	fi

build: deps
	$(CARGO) build

test: deps
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test

run-server: build
	$(BIN) server --bind $(BIND) --port $(PORT) --videos $(VIDEOS)

run-client: build
	$(BIN) client --server $(SERVER) $(if $(NAME),--name "$(NAME)")
