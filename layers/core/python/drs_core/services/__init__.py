"""Services: the use cases, called by thin handlers; they combine domain rules and adapters."""
