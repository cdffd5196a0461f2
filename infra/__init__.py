"""The local stack and its operation: configuration, the Kafka broker, topics, the `gateway` command."""
