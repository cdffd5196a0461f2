"""Event contracts: Avro schemas, the codec that reads and writes them, and the topic definitions."""
