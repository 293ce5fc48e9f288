"""Small helpers: distributed set-up and seeding."""
