"""CDK infrastructure: one construct per concern, composed by ``stack.ReplenishmentStack``."""
