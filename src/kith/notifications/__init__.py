"""Notifications: what happened to me, unread counts, filtering by type."""
