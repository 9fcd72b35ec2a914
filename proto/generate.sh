#!/usr/bin/env bash
# Regenerates the Python code for proto/*.proto. Run from anywhere; needs grpcio-tools.
# The generated modules are committed (never edited by hand) so that `pip install` needs no protoc.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. proto/endpoint.proto
