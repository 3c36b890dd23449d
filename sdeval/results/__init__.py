"""The result folder's schema: rows, columns, summary, protocol; writing and reading it."""
