# cloudbox: `make run` boots the image in a VM, `make test` runs everything.
SHELL := /bin/bash
GO ?= go
HOSTARCH := $(shell $(GO) env GOHOSTARCH)
BOARD ?= $(HOSTARCH)
OUT ?= out
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
HTTP_PORT ?= 8080
SIZE ?= 2G
export SOURCE_DATE_EPOCH

# Targets every binary must cross-compile for (CGO_ENABLED=0).
CROSS := linux/amd64 linux/arm64 linux/arm/7 linux/mipsle/softfloat linux/mips/softfloat

# Router boards (OpenWrt packages) and the unit tests run for their CPUs
# under qemu-user: arch/variant/emulator. No -race there (it needs cgo).
ROUTER_BOARDS := openwrt-mipsle openwrt-mips openwrt-armv7 openwrt-aarch64
ROUTER_QEMU := mipsle/softfloat/qemu-mipsel-static mips/softfloat/qemu-mips-static arm/7/qemu-arm-static
ROUTER_TEST_PKGS := ./overlay/membership ./overlay/transport ./services ./services/proxy ./services/update ./dnsproxy ./internal/xeddsa ./internal/plainhttp
# Left out under emulation, run natively by `go test ./...`: TestScale (200
# simulated catalogs, CPU-bound: 75 s per emulated CPU) and the tests that
# time a real rate or delay (an emulated CPU is 5-20 times slower).
ROUTER_TEST_SKIP := ^(TestScale|TestBandwidthLimit|TestDigFailover)$$
# qemu-user copies the UDP_SEGMENT and UDP_GRO control messages (GSO/GRO of
# the overlay's UDP socket) without byte-swapping them ("Unsupported
# ancillary data: 17/103"), right only for little-endian guests: under
# qemu-mips the tests that send batches through the socket cannot pass.
ROUTER_TEST_SKIP_BE := ^(TestScale|TestBandwidthLimit|TestDigFailover|TestUDPBindBatches|TestUDPBindAllocs|TestDirectPath)$$

.PHONY: all deps build image run test vet cross sizes clean packages test-router

all: build

deps:
	@scripts/deps.sh

build:
	$(GO) build -o $(OUT)/ ./cmd/...

image: deps
	@mkdir -p $(OUT)
	$(GO) run ./cmd/cloudbox image --board $(BOARD) --out $(OUT)/cloudbox-$(BOARD).img --size $(SIZE) --version $(VERSION)

run: deps
	@case "$(HOSTARCH)" in amd64|arm64) ;; *) echo "make run needs an amd64 or arm64 host" >&2; exit 1;; esac
	@mkdir -p $(OUT)
	$(GO) run ./cmd/cloudbox image --board $(HOSTARCH) --out $(OUT)/cloudbox-$(HOSTARCH).img --size $(SIZE) --version $(VERSION)
	@echo "panel: http://127.0.0.1:$(HTTP_PORT)/  (Ctrl-C stops the VM)"
	$(GO) run ./cmd/cloudbox vm --image $(OUT)/cloudbox-$(HOSTARCH).img --http-port $(HTTP_PORT)

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "not gofmt-formatted:" $$unformatted >&2; exit 1; fi
	$(GO) vet ./...

# Every package builds for every target; a failure names the target.
cross:
	@set -e; for t in $(CROSS); do \
	  IFS=/ read -r os arch variant <<<"$$t"; \
	  env=(GOOS=$$os GOARCH=$$arch CGO_ENABLED=0); \
	  case $$arch in arm) env+=(GOARM=$$variant);; mips|mipsle) env+=(GOMIPS=$$variant);; esac; \
	  echo "cross-compiling for $$t"; \
	  env "$${env[@]}" $(GO) build ./... || { echo "cross-compile failed for $$t" >&2; exit 1; }; \
	  env "$${env[@]}" $(GO) build -tags router ./cmd/cloudboxd || { echo "router profile failed for $$t" >&2; exit 1; }; \
	done

# Stripped cloudboxd size per target, as in the image.
sizes:
	@for t in $(CROSS); do \
	  IFS=/ read -r os arch variant <<<"$$t"; \
	  env=(GOOS=$$os GOARCH=$$arch CGO_ENABLED=0); \
	  case $$arch in arm) env+=(GOARM=$$variant);; mips|mipsle) env+=(GOMIPS=$$variant);; esac; \
	  env "$${env[@]}" $(GO) build -trimpath -ldflags '-s -w' -o $(OUT)/sizes/cloudboxd-$$arch ./cmd/cloudboxd; \
	  printf '%-24s %s bytes\n' "$$t" "$$(stat -c %s $(OUT)/sizes/cloudboxd-$$arch)"; \
	done
	@$(MAKE) --no-print-directory packages

# One OpenWrt package per router board in $(OUT)/packages, with the size of
# the router profile of cloudboxd in it.
packages:
	@mkdir -p $(OUT)/packages
	@for b in $(ROUTER_BOARDS); do \
	  $(GO) run ./cmd/cloudbox package --board $$b --out $(OUT)/packages --version $(VERSION) 2>/dev/null | cut -c67- || exit 1; \
	done

# The unit tests of what routers run, in the router profile, for mipsle,
# mips and armv7 under qemu-user (endianness and 32-bit bugs), then the
# router profile's own code natively under -race. None of them needs root.
# About 3 minutes on 2 cores, so it is part of `make test`.
test-router: deps
	@set -e; for t in $(ROUTER_QEMU); do \
	  IFS=/ read -r arch variant qemu <<<"$$t"; \
	  env=(GOOS=linux GOARCH=$$arch CGO_ENABLED=0); \
	  case $$arch in arm) env+=(GOARM=$$variant);; *) env+=(GOMIPS=$$variant);; esac; \
	  skip='$(ROUTER_TEST_SKIP)'; [ $$arch != mips ] || skip='$(ROUTER_TEST_SKIP_BE)'; \
	  echo "unit tests for $$arch under $$qemu"; \
	  env "$${env[@]}" $(GO) test -tags router -exec $$qemu -skip "$$skip" -timeout 4m $(ROUTER_TEST_PKGS); \
	done
	$(GO) test -race -tags router -skip '^TestScale$$' -timeout 10m ./internal/plainhttp ./services ./services/proxy
	$(GO) test -race -tags router -run '^TestRouter' ./appliance

test: deps vet cross test-router
	$(GO) test -race -timeout 25m ./...

clean:
	rm -rf $(OUT)

# Peer benchmarks (root; see bench/README.md). Not part of `make test`.
.PHONY: bench bench-overlay bench-dns bench-proxy bench-update bench-storage bench-stream bench-voip
bench: bench-overlay bench-dns bench-proxy bench-storage bench-stream bench-voip

bench-overlay:
	@bash bench/overlay.sh

bench-dns:
	@bash bench/dns.sh

bench-proxy:
	@bash bench/proxy.sh

# Updates over the mesh, host mode, no root: N = 5, 20, 50 boxes.
bench-update:
	$(GO) run ./bench/updatebench $(UPDATE_BENCH_ARGS)

bench-storage:
	@bash bench/storage.sh

bench-stream:
	@bash bench/stream.sh

bench-voip:
	@bash bench/voip.sh
