"""The gRPC transport of an SDK endpoint (proto/endpoint.proto)."""
