"""Accounts: people (local and remote), logins, sessions, profiles, instance settings."""
