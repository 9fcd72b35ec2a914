"""The invoker: runs invocation attempts against SDK endpoints over gRPC (DESIGN §6)."""
