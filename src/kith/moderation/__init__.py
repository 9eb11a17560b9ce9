"""Moderation: reports, and the admin's actions on accounts."""
