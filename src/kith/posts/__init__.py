"""Posts: statuses, replies, boosts, likes, bookmarks, pins, polls and edit history."""
