"""Durable jobs: a table of work to do later, claimed by workers (transactional outbox)."""
