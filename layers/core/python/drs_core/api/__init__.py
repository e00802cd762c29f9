"""The HTTP layer shared by the API functions: request/response models and error mapping."""
