"""Kafka subscriptions (DESIGN §8a): events on users' Kafka topics become invocations."""
