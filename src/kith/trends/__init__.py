"""Trends: hashtags, posts and links that are taking off here, scored by a periodic job and
shown only after a moderator's review (see docs/trends.md)."""
