"""Loss functions; each returns scalars and never calls backward()."""
