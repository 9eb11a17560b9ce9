"""Accounts: people (local and, later, remote), their logins, sessions, profiles and instance settings."""
