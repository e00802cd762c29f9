"""Core library shared by every Lambda: domain rules, adapters (DRS, LWA, DynamoDB, KMS), settings."""
