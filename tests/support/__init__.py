"""Helpers shared by the test suites (brokers, fixtures' plumbing)."""
