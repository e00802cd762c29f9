"""DRS notifications as they reach us: the SNS envelope in an SQS record, and the six message types."""
