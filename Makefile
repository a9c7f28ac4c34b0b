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

.PHONY: all deps build image run test vet cross sizes clean

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

test: deps vet cross
	$(GO) test -race -timeout 25m ./...

clean:
	rm -rf $(OUT)

# Peer benchmarks (root; see bench/README.md). Not part of `make test`.
.PHONY: bench bench-overlay bench-dns bench-proxy bench-voip
bench: bench-overlay bench-dns bench-proxy bench-voip

bench-overlay:
	@bash bench/overlay.sh

bench-dns:
	@bash bench/dns.sh

bench-proxy:
	@bash bench/proxy.sh

bench-voip:
	@bash bench/voip.sh
