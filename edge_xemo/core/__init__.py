"""What every stage shares: timestamped data types, the event schema, queues and windows, model artifacts."""
