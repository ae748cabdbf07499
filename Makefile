# The whole test suite: `make test`. CI runs exactly this (see .ci/run).
GO ?= go

.PHONY: test build vet unit race python integration

test: vet unit race python

build:
	$(GO) build -o filering ./cmd/filering

vet:
	@test -z "$$(gofmt -l . | tee /dev/stderr)" || (echo "gofmt: files above need formatting" && exit 1)
	$(GO) vet ./...

unit:
	$(GO) test -count=1 ./...

race:
	$(GO) test -count=1 -race ./segment/ ./publish/ ./watch/

python:
	python3 -m unittest discover -s examples/cgi -p 'test_*.py'
