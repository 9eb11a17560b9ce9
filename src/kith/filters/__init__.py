"""Filters: muted words and phrases per context, hide or warn, with expiry."""
