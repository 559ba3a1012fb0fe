"""Billing events: the transactional outbox (the one place that writes it)."""
