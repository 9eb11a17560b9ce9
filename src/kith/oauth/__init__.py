"""OAuth 2 for client apps: registered applications, authorization codes (PKCE), tokens."""
