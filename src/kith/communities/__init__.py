"""Micro-communities: groups with members, roles, rules and moderation (docs/communities.md)."""
